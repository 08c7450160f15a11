// @ts-check
// BrowserPeer front end (anywidget ESM; bundled with codec/events/nats/drivers/peer by
// peerix_nb/browser/_bundle.py, nothing fetched at run time).
//
// One Peerix peer per page per widget, created in `initialize` and started when the kernel
// says "start" to this page (the kernel picks the first page that renders the widget, so two
// tabs showing one notebook do not make two peers with one id). Its signaling path is chosen
// by the kernel's config:
//   kernel    - KernelDriver below: subscribe/unsubscribe/dispatch become custom messages the
//               kernel performs on its own driver (MemoryDriver, NatsDriver, ...); deliveries
//               come back as binary buffers.
//   nats      - NATS over WebSocket, straight from the page (nats.js).
//   broadcast - BroadcastChannel(name) in this browser, no server.
// Every peer event goes to the kernel ({type: "event"}), which logs it in an EventLog; the
// kernel drives the peer with {type: "cmd"} messages and gets {type: "reply"} back.

import { Driver, BroadcastChannelDriver, NatsDriver } from "./drivers.js";
import { NatsConnection } from "./nats.js";
import { Peer } from "./peer.js";
import { PeerixError, toBytes } from "./codec.js";
import { randomId } from "./ids.js";
import { followModel } from "./model.js";

/** @typedef {import("./peer.js").PeerEvent} PeerEvent */
/** @typedef {import("./model.js").WidgetModel} WidgetModel */
/** @typedef {import("./drivers.js").DriverHandler} DriverHandler */
/** The kernel's config for this page's peer (BrowserPeer in peer.py). @typedef {Record<string, any>} Config */
/**
 * A video tile: a local preview or a remote stream.
 * @typedef {{ key?: string, title: string, stream: MediaStream, local: boolean, remote: string,
 *   label: string }} Tile
 */
/**
 * A tile's element: its <video>, its "enable sound" button, whether the browser refused its
 * sound (autoplay policy) so that it plays muted until a click, and whether another view of
 * this widget in the page plays the sound (one view does, or it would play twice).
 * @typedef {HTMLDivElement & { video: HTMLVideoElement, sound: HTMLButtonElement, local: boolean,
 *   blocked: boolean, elsewhere: boolean }} TileNode
 */
/** @typedef {{ name: string, text: string, self: boolean }} ChatEntry */
/**
 * A driver call performed by the kernel.
 * @typedef {(op: string, args: Record<string, any>, buffers?: Uint8Array[], wait?: boolean) => Promise<void>} KernelCall
 */

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A peer's name: its metadata's `name` (or the metadata, a string), else `fallback`. @param {any} metadata @param {string} fallback @returns {string} */
function displayName(metadata, fallback) {
  if (metadata && typeof metadata === "object" && typeof metadata.name === "string" && metadata.name) return metadata.name;
  if (typeof metadata === "string" && metadata) return metadata;
  return fallback;
}

/**
 * The kernel relay: this driver's calls become custom messages; the kernel performs them on
 * the driver the Python BrowserPeer was given and answers ({type: "driver-reply"}). Messages
 * delivered by that driver come back as {type: "deliver", sub} with the bytes as a buffer.
 */
class KernelDriver extends Driver {
  /** @param {KernelCall} call @param {boolean} active */
  constructor(call, active) {
    super({ active: !!active }); // as the kernel's driver is now; "driver-state" follows it
    this._call = call;
    /** @type {Map<number, { key: string, handler: DriverHandler }>} subscription number -> {key, handler} */
    this._subs = new Map();
    this._next = 1;
  }

  /** @param {string[]} namespace @param {DriverHandler} handler */
  async subscribe(namespace, handler) {
    const sub = this._next++;
    this._subs.set(sub, { key: namespace.join("\u0000"), handler });
    // Awaited: the kernel has subscribed before we broadcast JOIN (which would be answered).
    await this._call("subscribe", { ns: namespace, sub });
  }

  /** @param {string[]} namespace @param {DriverHandler} handler */
  async unsubscribe(namespace, handler) {
    const key = namespace.join("\u0000");
    for (const [sub, entry] of this._subs) {
      if (entry.key === key && entry.handler === handler) {
        this._subs.delete(sub);
        await this._call("unsubscribe", { sub });
        return;
      }
    }
  }

  /** @param {string[]} namespace @param {Uint8Array} message */
  async dispatch(namespace, message) {
    if (!this.active) return;
    // Not awaited: the kernel runs driver calls in order, and errors come back as events.
    this._call("dispatch", { ns: namespace }, [toBytes(message)], false);
  }

  /** Bytes the kernel's driver delivered to subscription `sub`. @param {number} sub @param {Uint8Array} bytes */
  deliver(sub, bytes) {
    const entry = this._subs.get(sub);
    if (!entry) return;
    try {
      entry.handler(bytes);
    } catch (error) {
      this.reportError(error);
    }
  }
}

/**
 * What the kernel gets for one peer event: plain JSON plus, for binary data, one buffer.
 * @param {Partial<PeerEvent> & Record<string, any>} event
 * @returns {[Record<string, any>, Uint8Array[]]}
 */
function serialize(event) {
  /** @type {Record<string, any>} */
  const out = { name: event.name };
  const remote = event.remote;
  if (remote) {
    out.remote = remote.id;
    out.remote_metadata = remote.metadata === undefined ? null : remote.metadata;
    out.polite = remote.polite;
  }
  for (const key of ["state", "label", "kind", "via", "size"]) {
    if (event[key] !== undefined && event[key] !== null) out[key] = event[key];
  }
  if (event.detail !== undefined && event.detail !== null) out.detail = String(event.detail);
  if (event.error) out.error = { code: event.error.code || "UNKNOWN_ERROR", message: event.error.message || String(event.error) };
  const buffers = [];
  if (event.name === "channel:message") {
    if (typeof event.data === "string") {
      out.data = event.data;
      out.size = new TextEncoder().encode(event.data).length;
    } else {
      const bytes = toBytes(event.data);
      out.binary = true;
      out.size = bytes.length;
      buffers.push(bytes);
    }
  }
  if (event.track) out.track_kind = event.track.kind;
  return [out, buffers];
}

function createWidget() {
  const frontend = randomId(); // this page
  /** @type {Set<ReturnType<typeof makeView>>} */
  const views = new Set();
  /** @type {Map<string, Tile>} key -> {key, title, stream, local} */
  const tiles = new Map();
  /** @type {ChatEntry[]} */
  const chat = [];
  /** @type {WidgetModel} */
  let model = null;
  /** @type {Peer} */
  let peer = null;
  /** @type {Driver} */
  let driver = null;
  /** @type {Config} */
  let config = null;
  let status = "waiting for the kernel";
  /** @type {MediaStream | null} */
  let localStream = null;
  let nextSeq = 1;
  /** @type {Map<number, { resolve: () => void, reject: (error: Error) => void }>} driver call seq -> {resolve, reject} */
  const pending = new Map();

  /** A custom message to the kernel, from this page. @param {Record<string, any>} content @param {Uint8Array[]} [buffers] */
  function send(content, buffers = []) {
    try {
      model.send({ ...content, frontend }, undefined, buffers);
    } catch {
      // the widget was closed: nothing to tell
    }
  }

  /** A driver call performed by the kernel; resolves with its reply (or at once if !wait). @type {KernelCall} */
  function call(op, args, buffers = [], wait = true) {
    const seq = nextSeq++;
    send({ type: "driver", op, seq, wait, ...args }, buffers);
    if (!wait) return Promise.resolve();
    return new Promise((resolve, reject) => pending.set(seq, { resolve, reject }));
  }

  /** @param {string} text */
  function setStatus(text) {
    status = text;
    for (const view of views) view.showStatus();
  }

  function refreshStatus() {
    if (!peer) return;
    const connected = [...peer.connections.values()].filter((r) => r.state === "connected").length;
    const where = peer.joined ? `room ${peer.room}` : "not in a room";
    const path = config.driver.kind === "kernel" ? "kernel relay"
      : config.driver.kind === "nats" ? `NATS ${config.driver.url}` : `BroadcastChannel ${config.driver.name}`;
    setStatus(`${displayName(peer.metadata, peer.id.slice(0, 8))} · ${where} · ${path} · ${connected} connected`);
  }

  // -- tiles and chat (model-level; every view renders them) -------------------------------
  /** @param {string} key @param {Tile | null} entry */
  function setTile(key, entry) {
    if (entry) tiles.set(key, { key, ...entry });
    else tiles.delete(key);
    for (const view of views) view.renderTiles();
  }

  /** @param {ChatEntry} entry */
  function addChat(entry) {
    chat.push(entry);
    if (chat.length > 200) chat.shift();
    for (const view of views) view.renderChat();
  }

  /** @param {Partial<PeerEvent>} event */
  function onPeerEvent(event) {
    const [content, buffers] = serialize(event);
    send({ type: "event", event: content }, buffers);
    const remote = event.remote;
    if (event.name === "stream:add" && config.show_remote) {
      const name = displayName(remote.metadata, remote.id.slice(0, 8));
      setTile(`${remote.id}|${event.label}`, { title: `${name} · ${event.label}`, stream: event.stream, remote: remote.id, label: event.label, local: false });
    } else if ((event.name === "track:add" || event.name === "track:remove") && remote) {
      // An audio track may join a tile's stream after the tile was made (one event per m-line).
      for (const view of views) view.refreshSound();
    } else if (event.name === "stream:remove") {
      setTile(`${remote.id}|${event.label}`, null);
    } else if (event.name === "connection:closed" && remote) {
      for (const key of [...tiles.keys()]) if (key.startsWith(`${remote.id}|`)) setTile(key, null);
    } else if (event.name === "channel:message" && event.label === config.chat_label) {
      const text = typeof event.data === "string" ? event.data : `<${toBytes(event.data).length} bytes>`;
      addChat({ name: displayName(remote && remote.metadata, remote ? remote.id.slice(0, 8) : "?"), text, self: false });
    }
    if (event.name.startsWith("connection:") || event.name.startsWith("room:") || event.name.startsWith("driver:")) refreshStatus();
  }

  // -- commands from the kernel ------------------------------------------------------------
  /** getUserMedia (camera, microphone or both, as `constraints` say) and publish it. @param {{ constraints?: MediaStreamConstraints | null, label?: string }} [args] */
  async function publishCamera({ constraints = null, label = "camera" } = {}) {
    await prepareCamera({ constraints, label });
    await peer.publish(localStream, label);
    return { stream: localStream.id, tracks: localStream.getTracks().map((t) => t.kind) };
  }

  /** getUserMedia and a local preview tile, without publishing (yet). @param {{ constraints?: MediaStreamConstraints | null, label?: string }} [args] */
  async function prepareCamera({ constraints = null, label = "camera" } = {}) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new PeerixError("PEER_MEDIASTREAM_ERROR", "no camera API here (getUserMedia needs https or localhost)");
    }
    if (!localStream) {
      try {
        localStream = await navigator.mediaDevices.getUserMedia(constraints || { video: true, audio: false });
      } catch (error) {
        const what = constraints && constraints.audio ? (constraints.video ? "camera and microphone" : "microphone") : "camera";
        throw new PeerixError("PEER_MEDIASTREAM_ERROR", `${what}: ${error.name}: ${error.message}`, error);
      }
      setTile("local|" + label, { title: `you · ${label}`, stream: localStream, local: true, label, remote: "" });
    }
    return { stream: localStream.id, tracks: localStream.getTracks().map((t) => t.kind) };
  }

  function videoState() {
    // What a person sees: every remote video element of the first view.
    const view = [...views][0];
    if (!view) return [];
    return [...view.root.querySelectorAll("video")].map((video) => ({
      remote: video.dataset.remote,
      label: video.dataset.label,
      local: video.dataset.local === "1",
      width: video.videoWidth,
      height: video.videoHeight,
      current_time: video.currentTime,
      ready_state: video.readyState,
      paused: video.paused,
      muted: video.muted,
      sound: video.dataset.sound, // "on"; "blocked" (waits for a click); "off" (own preview); "elsewhere" (another view plays it)
      audio_tracks: video.srcObject instanceof MediaStream ? video.srcObject.getAudioTracks().length : 0,
    }));
  }

  /** @type {Record<string, (args: Record<string, any>, buffers?: DataView[]) => Promise<any>>} */
  const commands = {
    join: async ({ room, metadata }) => peer.join(room || config.room, metadata === undefined ? config.metadata : metadata),
    leave: async () => peer.leave(),
    open: async ({ label, options }) => peer.open(label, options || {}),
    close: async ({ label }) => peer.close(label),
    send: async ({ label, text }, buffers) => {
      const data = buffers && buffers.length ? toBytes(buffers[0]).slice() : text;
      const count = peer.send(data, label === undefined ? null : label);
      if (count && label === config.chat_label && typeof data === "string") addChat({ name: "you", text: data, self: true });
      return count;
    },
    publish_camera: publishCamera,
    prepare_camera: prepareCamera,
    unpublish: async ({ label }) => {
      await peer.unpublish(label);
      if (localStream && label) {
        setTile("local|" + label, null);
        for (const track of localStream.getTracks()) track.stop();
        localStream = null;
      }
    },
    video_state: async () => videoState(),
    connections: async () => [...peer.connections.values()].map((r) => ({
      id: r.id, state: r.state, polite: r.polite, signaling: r.pc.signalingState,
      channels: [...r.channels.keys()], streams: [...r.streams.keys()],
    })),
  };

  /** @param {Record<string, any>} msg @param {DataView[]} buffers */
  async function runCommand(msg, buffers) {
    let reply;
    try {
      if (!peer) throw new PeerixError("UNKNOWN_ERROR", "the browser peer has not started in this page");
      const fn = commands[msg.op];
      if (!fn) throw new PeerixError("UNKNOWN_ERROR", `unknown command ${msg.op}`);
      const result = await fn(msg.args || {}, buffers);
      reply = { ok: true, result: result === undefined ? null : result };
    } catch (error) {
      reply = { ok: false, error: { code: error.code || "UNKNOWN_ERROR", message: error.message || String(error) } };
    }
    send({ type: "reply", seq: msg.seq, ...reply });
  }

  // -- starting ----------------------------------------------------------------------------
  /** @param {Record<string, any>} spec the kernel's driver config @returns {Driver} */
  function makeDriver(spec) {
    if (spec.kind === "kernel") return new KernelDriver(call, spec.active);
    if (spec.kind === "broadcast") return new BroadcastChannelDriver(spec.name);
    if (spec.kind === "nats") {
      const nc = new NatsConnection(spec.url, { user: spec.user, pass: spec.password, token: spec.token, name: `peerix ${config.id}` });
      const nats = new NatsDriver(nc, spec.prefix);
      nats.connect().catch((error) => nats.reportError(error));
      return nats;
    }
    throw new Error(`unknown driver kind ${spec.kind}`);
  }

  /** @param {Config} cfg */
  async function start(cfg) {
    config = cfg;
    driver = makeDriver(cfg.driver);
    peer = new Peer({
      id: cfg.id,
      driver,
      iceServers: cfg.ice_servers,
      iceTransportPolicy: cfg.ice_transport_policy,
      connectionTimeout: cfg.connection_timeout,
      compression: cfg.compression,
      hashing: cfg.hashing,
      encryptionKey: cfg.encryption_key,
    });
    peer.on("*", onPeerEvent);
    driver.on("error", (event) => {
      if (!peer.joined) onPeerEvent({ name: "error", error: event.error, detail: event.error.message });
    });
    refreshStatus();
    for (const label of cfg.channels) peer.open(label);
    try {
      if (cfg.camera) await publishCamera({ constraints: cfg.camera, label: cfg.camera_label });
    } catch (error) {
      onPeerEvent({ name: "error", error, detail: error.message });
    }
    if (cfg.autojoin) await peer.join(cfg.room, cfg.metadata);
    send({ type: "started" });
  }

  /** A custom message from the kernel. @param {Record<string, any>} msg @param {DataView[]} buffers */
  function onMessage(msg, buffers) {
    if (!msg || (msg.to && msg.to !== frontend)) return;
    if (msg.type === "start") {
      if (peer) return;
      start(msg.config).catch((error) => {
        setStatus(`error: ${error.message}`);
        send({ type: "event", event: { name: "error", error: { code: error.code || "UNKNOWN_ERROR", message: error.message } } });
        send({ type: "started", error: error.message });
      });
    } else if (msg.type === "standby") {
      setStatus("this widget's peer runs in another page");
    } else if (msg.type === "cmd") {
      runCommand(msg, buffers);
    } else if (msg.type === "deliver") {
      if (driver instanceof KernelDriver) driver.deliver(msg.sub, toBytes(buffers[0]).slice());
    } else if (msg.type === "driver-reply") {
      const entry = pending.get(msg.seq);
      if (!entry) return;
      pending.delete(msg.seq);
      if (msg.ok) entry.resolve();
      else entry.reject(new PeerixError(msg.error.code || "PEER_SIGNALING_ERROR", msg.error.message));
    } else if (msg.type === "driver-state") {
      if (driver instanceof KernelDriver) {
        if (msg.error) driver.reportError(new PeerixError("PEER_SIGNALING_ERROR", msg.error));
        if (msg.active !== undefined) driver.setActive(msg.active);
      }
    }
  }

  // -- views -------------------------------------------------------------------------------
  /** One view of the widget: status line, video tiles, chat. @param {HTMLElement} container */
  function makeView(container) {
    const root = el("div", "peerix-bp");
    const head = el("div", "peerix-bp-status");
    const grid = el("div", "peerix-bp-tiles");
    const chatBox = el("div", "peerix-bp-chat");
    const history = el("div", "peerix-bp-chat-history");
    const input = el("input", "peerix-bp-chat-input");
    input.type = "text";
    input.placeholder = "Message, Enter to send";
    chatBox.append(history, input);
    root.append(head, grid, chatBox);
    container.appendChild(root);
    /** @type {Map<string, TileNode>} tile key -> element */
    const rendered = new Map();

    /** The "enable sound" button shows where the browser refused sound and there is some. @param {TileNode} node */
    function showSound(node) {
      const stream = node.video.srcObject;
      const audible = stream instanceof MediaStream && stream.getAudioTracks().length > 0;
      node.sound.hidden = !(node.blocked && audible && !node.elsewhere);
      node.video.dataset.sound = node.local ? "off" : node.elsewhere ? "elsewhere"
        : node.blocked ? "blocked" : "on";
    }

    /**
     * Play a remote tile with its sound. Browsers refuse sound until the user has interacted
     * with the page (autoplay policy): then it plays muted and offers the button, whose click
     * is that interaction.
     * @param {TileNode} node
     */
    function playWithSound(node) {
      const video = node.video;
      node.elsewhere = false;
      video.muted = false;
      video.play().then(
        () => {
          node.blocked = false;
          showSound(node);
        },
        (error) => {
          if (!error || error.name !== "NotAllowedError" || !node.isConnected) return;
          node.blocked = true;
          video.muted = true; // muted media may always play: keep the picture moving
          showSound(node);
          video.play().catch(() => {});
        },
      );
    }

    input.addEventListener("keydown", (event) => {
      event.stopPropagation(); // keep JupyterLab's notebook shortcuts out of the text box
      if (event.key !== "Enter" || event.isComposing || !peer || !input.value.trim()) return;
      const text = input.value;
      input.value = "";
      commands.send({ label: config.chat_label, text }).catch(() => {});
    });

    const view = {
      root,
      showStatus() {
        head.textContent = status;
        root.dataset.status = status;
      },
      renderTiles() {
        for (const [key, node] of [...rendered]) {
          if (!tiles.has(key) || tiles.get(key).stream !== node.video.srcObject) {
            node.remove();
            rendered.delete(key);
          }
        }
        for (const [key, tile] of tiles) {
          if (rendered.has(key)) continue;
          const node = /** @type {TileNode} */ (el("div", `peerix-bp-tile${tile.local ? " is-local" : ""}`));
          const video = el("video", "peerix-bp-video");
          video.autoplay = true;
          video.muted = true; // until playWithSound; the own preview stays muted (no echo)
          video.playsInline = true;
          video.dataset.remote = tile.remote || "";
          video.dataset.label = tile.label || "";
          video.dataset.local = tile.local ? "1" : "0";
          video.srcObject = tile.stream;
          const sound = el("button", "peerix-bp-sound", "Click to enable sound");
          sound.type = "button";
          sound.title = "The browser plays sound only after a click in the page";
          sound.addEventListener("click", () => {
            for (const each of views) each.enableSound();
          });
          const elsewhere = !tile.local && [...views][0] !== view; // the first view plays sound
          Object.assign(node, { video, sound, local: tile.local, blocked: false, elsewhere });
          node.append(video, el("div", "peerix-bp-tile-title", tile.title), sound);
          showSound(node);
          grid.appendChild(node);
          rendered.set(key, node);
          if (tile.local || elsewhere) video.play().catch(() => {});
          else playWithSound(node);
        }
        grid.hidden = tiles.size === 0;
      },
      /** Tracks came or went: show or hide the sound buttons. */
      refreshSound() {
        for (const node of rendered.values()) showSound(node);
      },
      /** A click (the user's interaction): every blocked tile tries its sound again. */
      enableSound() {
        for (const node of rendered.values()) if (node.blocked && !node.elsewhere) playWithSound(node);
      },
      /** This view became the first: it plays the sound now. */
      takeSound() {
        for (const node of rendered.values()) if (node.elsewhere) playWithSound(node);
      },
      renderChat() {
        history.replaceChildren(...chat.map((m) => {
          const row = el("div", `peerix-bp-chat-msg${m.self ? " is-self" : ""}`);
          row.append(el("span", "peerix-bp-chat-name", m.name), el("span", "peerix-bp-chat-text", m.text));
          return row;
        }));
        history.scrollTop = history.scrollHeight;
        chatBox.hidden = !config || !config.chat_label;
      },
    };
    view.showStatus();
    view.renderChat();
    return view; // render() shows its tiles once it is among the views
  }

  return {
    /** @param {{ model: WidgetModel }} ctx */
    initialize(ctx) {
      model = ctx.model;
      const unfollow = followModel(model, onMessage, send);
      return () => {
        unfollow();
        if (peer) peer.leave().catch(() => {}).finally(() => driver && driver.close());
        if (localStream) for (const track of localStream.getTracks()) track.stop();
      };
    },
    /** @param {{ model: WidgetModel, el: HTMLElement }} ctx */
    render(ctx) {
      const view = makeView(ctx.el);
      views.add(view);
      view.renderTiles();
      send({ type: "rendered", views: views.size });
      return () => {
        const first = [...views][0] === view;
        views.delete(view);
        if (first && views.size) [...views][0].takeSound(); // the sound moves to the next view
        send({ type: "views", views: views.size });
      };
    },
  };
}

// anywidget calls a default-exported function once per widget model: each model gets its own
// createWidget() state (as widgets/video.js does).
export default createWidget;
