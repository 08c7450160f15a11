// The test page's side of tests/interop: a plain web page running the browser Peerix peer
// (peerix_nb/browser/peer.js) on Chromium's own RTCPeerConnection, with getUserMedia's fake
// camera and microphone. Nothing here touches SDP: the page sends exactly what Chromium
// produces. The test drives it with page.evaluate through `window.harness` and reads what a
// person would see (<video> size and clock, audio packets).
//
// Two signalling paths, chosen by create({driver}):
//   "nats"  - the page's own NatsDriver over the nats-server's WebSocket listener.
//   "relay" - the kernel relay, as in a notebook: the shipped widget front end
//             (browser_peer.js createWidget, its KernelDriver) runs on a stand-in anywidget
//             model whose custom messages cross to a real peerix_nb BrowserPeer in the test
//             process (tests/interop/sides.py KernelRelay), which performs the page's
//             subscribe/unsubscribe/dispatch calls on its own NatsDriver.

import { Peer } from "/peerix/peer.js";
import { NatsDriver } from "/peerix/drivers.js";
import { NatsConnection } from "/peerix/nats.js";
import { OFFER, SignalingCodec } from "/peerix/codec.js";
import createWidget from "/peerix/browser_peer.js";

const events = [];
const messages = {}; // label -> [text]
const local = {}; // label -> MediaStream we publish
let peer = null;

function summary(event) {
  return {
    name: event.name,
    remote: event.remote ? event.remote.id : null,
    label: event.label ?? null,
    kind: event.kind ?? null,
    state: event.state ?? null,
    detail: event.detail ?? (event.error ? `${event.error.code}: ${event.error.message}` : null),
    t: performance.now(),
  };
}

function videoFor(remoteId, label) {
  return document.querySelector(`video[data-remote="${remoteId}"][data-label="${label}"]`);
}

function show(remoteId, label, stream) {
  let video = videoFor(remoteId, label);
  if (!video) {
    video = document.createElement("video");
    video.dataset.remote = remoteId;
    video.dataset.label = label;
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    document.body.appendChild(video);
  }
  video.srcObject = stream;
  video.play().catch(() => {});
}

/** Take `created` as the harness's peer: record its events, messages and remote videos. */
function adopt(created) {
  peer = created;
  peer.on("*", (event) => events.push(summary(event)));
  peer.on("channel:message", (event) => {
    (messages[event.label] ||= []).push(typeof event.data === "string" ? event.data : "<binary>");
  });
  peer.on("stream:add", (event) => show(event.remote.id, event.label, event.stream));
  peer.on("stream:remove", (event) => {
    const video = videoFor(event.remote.id, event.label);
    if (video) video.remove();
  });
}

async function createOnNats({ id, wsUrl, prefix, connectionTimeout = 15, dropOffers = 0 }) {
  const driver = new NatsDriver(new NatsConnection(wsUrl), prefix);
  if (dropOffers > 0) {
    // A lossy network between this page and the server: the first OFFERs never arrive.
    // What the page sends is untouched; only the wire loses it.
    const codec = new SignalingCodec({ compression: true });
    const dispatch = driver.dispatch.bind(driver);
    let left = dropOffers;
    driver.dispatch = async (namespace, message) => {
      const decoded = await codec.decode(message).catch(() => null);
      if (decoded && decoded.type === OFFER && left > 0) {
        left -= 1;
        events.push({ name: "test:dropped", kind: "offer", t: performance.now() });
        return;
      }
      return dispatch(namespace, message);
    };
  }
  await driver.connect();
  adopt(new Peer({ id, driver, connectionTimeout }));
}

// -- the kernel relay -------------------------------------------------------------------------
// The comm as JupyterLab 4 and ipywidgets carry a custom message: JSON content plus binary
// buffers. Page -> kernel: model.send(content, callbacks, buffers) puts each buffer's whole
// ArrayBuffer on the wire (JupyterLab's serializer takes `ArrayBuffer.isView(b) ? b.buffer :
// b`); kernel -> page: "msg:custom" handlers get (content, [DataView]). Buffers cross
// Playwright as base64.

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes.buffer;
}

const relay = { handlers: new Map(), sent: 0 }; // the stand-in model's "msg:custom" etc.

/**
 * A stand-in anywidget model with exactly the members browser_peer.js uses (on, off, send):
 * any other member throws, so a new use of the model API shows up here, not as a silent
 * `undefined`. `window.peerixRelaySend` is the Playwright binding to the kernel's widget.
 */
function relayModel(onSend) {
  const model = {
    on(name, handler) {
      if (!relay.handlers.has(name)) relay.handlers.set(name, []);
      relay.handlers.get(name).push(handler);
    },
    off(name, handler) {
      const left = (relay.handlers.get(name) || []).filter((h) => h !== handler);
      relay.handlers.set(name, left);
    },
    send(content, _callbacks, buffers = []) {
      const wire = (buffers || []).map((b) => toBase64(ArrayBuffer.isView(b) ? b.buffer : b));
      onSend(content);
      relay.sent += 1;
      window.peerixRelaySend(relay.sent, JSON.stringify(content), wire).catch((error) => {
        console.error(`relay: the kernel refused a message: ${error.message || error}`);
      });
    },
  };
  return new Proxy(model, {
    get(target, key) {
      if (typeof key !== "string" || key in target) return target[key];
      throw new Error(`the stand-in model in tests/interop/page.js has no ${key}: add it`);
    },
  });
}

/**
 * The widget front end of a BrowserPeer, started by the kernel over the relay. The widget
 * makes its Peer inside createWidget's closure; the harness needs that very object (to drive
 * it exactly as on NATS). /peerix/peer.js is one module instance, shared with browser_peer.js,
 * so the harness catches the instance as the widget subscribes its "*" handler, right after
 * `new Peer(...)` in start(), before anything can happen on it.
 */
async function createRelayed({ id }) {
  const widget = createWidget();
  let onStarted;
  const started = new Promise((resolve) => (onStarted = resolve));
  const model = relayModel((content) => {
    if (content.type === "started") onStarted(content);
  });
  const own = Object.getOwnPropertyDescriptor(Peer.prototype, "on");
  const restore = () => {
    if (own) Object.defineProperty(Peer.prototype, "on", own);
    else delete Peer.prototype.on;
  };
  Peer.prototype.on = function (name, handler) {
    restore();
    adopt(this);
    return this.on(name, handler);
  };
  try {
    widget.initialize({ model, experimental: {} }); // as anywidget does, once per model
    const el = document.createElement("div");
    document.body.appendChild(el);
    widget.render({ model, el, experimental: {} }); // "rendered": the kernel says "start"
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(() => resolve({ error: "no answer within 20 s" }), 20_000);
    });
    const answer = await Promise.race([started, late]);
    clearTimeout(timer);
    if (answer.error) throw new Error(`the widget did not start: ${answer.error}`);
  } finally {
    restore();
  }
  if (!peer || peer.id !== id) throw new Error(`the widget started peer ${peer && peer.id}, not ${id}`);
}

window.harness = {
  async create(options) {
    if (options.driver === "relay") await createRelayed(options);
    else await createOnNats(options);
    return { id: peer.id, driver: peer.driver.constructor.name };
  },

  /** Custom messages from the kernel's BrowserPeer, in order: [[json, [base64 buffer]]]. */
  fromKernel(batch) {
    for (const [json, wire] of batch) {
      const content = JSON.parse(json);
      const buffers = wire.map((text) => new DataView(fromBase64(text)));
      for (const handler of [...(relay.handlers.get("msg:custom") || [])]) {
        try {
          handler(content, buffers);
        } catch (error) {
          console.error("relay: the widget failed on a kernel message", content.type, error);
          events.push({ name: "test:relay-error", detail: String(error), t: performance.now() });
        }
      }
    }
  },

  join: (room) => peer.join(room, { name: peer.id }),
  leave: () => peer.leave(),
  open: (label) => peer.open(label),
  send: (text, label) => peer.send(text, label),
  messages: (label) => messages[label] || [],
  events: () => events,

  async publish(label, { video = true, audio = false } = {}) {
    const stream = await navigator.mediaDevices.getUserMedia({ video, audio });
    local[label] = stream;
    await peer.publish(stream, label);
  },

  async unpublish(label) {
    await peer.unpublish(label);
    for (const track of local[label].getTracks()) track.stop();
    delete local[label];
  },

  state(remoteId) {
    const remote = peer.connections.get(remoteId);
    return remote ? remote.state : null;
  },

  /** What a person sees of `label` from `remoteId`: picture size and the video's clock. */
  video(remoteId, label) {
    const video = videoFor(remoteId, label);
    if (!video) return null;
    return { width: video.videoWidth, height: video.videoHeight, time: video.currentTime };
  },

  /** Audio of `label` from `remoteId`: its track, and packets the receiver got for it. */
  async audio(remoteId, label) {
    const remote = peer.connections.get(remoteId);
    const stream = remote && remote.streams.get(label);
    if (!stream) return null;
    const tracks = stream.getAudioTracks();
    let packets = 0;
    for (const track of tracks) {
      const stats = await remote.pc.getStats(track);
      stats.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "audio") packets += s.packetsReceived || 0;
      });
    }
    return { tracks: tracks.length, packets };
  },

  streams(remoteId) {
    const remote = peer.connections.get(remoteId);
    return remote ? [...remote.streams.keys()] : [];
  },
};
window.harnessReady = true;
