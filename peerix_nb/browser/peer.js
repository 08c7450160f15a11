// @ts-check
// A Peerix v0.1 room peer on the browser's own RTCPeerConnection (docs/PROTOCOL.md, all of it).
//
// Peer (peer.py's): joins a room through a driver, keeps one Remote (remote.js) per remote peer
// (full mesh), admits newcomers (verify), and fans out data channels and published
// MediaStreams. Beside it: admission.js (verify), candidates.js (candidates before their
// OFFER), remote.js (one RTCPeerConnection) and what that uses: channels.js, control.js,
// liveness.js, media.js, sdp.js.
//
// It sends exactly what the browser's RTCPeerConnection produces, as browser Peerix does: the
// Python peers (aiortc) adapt to browsers, never the reverse (docs/PROTOCOL.md). Event names and
// fields are the Python Peer's, so the kernel can log them into an EventLog with the same schema.

import { Emitter } from "./events.js";
import {
  ANSWER,
  CANDIDATE,
  JOIN,
  LEAVE,
  MAX_ID_LENGTH,
  MAX_METADATA_BYTES,
  OFFER,
  PeerixError,
  SignalingCodec,
  jsonSize,
} from "./codec.js";
import { randomId } from "./ids.js";
import { admit } from "./admission.js";
import { MAX_CHANNELS, checkLabel } from "./channels.js";
import { DrainWatch, PING_INTERVAL, STALL_AFTER } from "./liveness.js";
import { holdEarly } from "./candidates.js";
import { Remote } from "./remote.js";
import { msidsOf, ufragOf } from "./sdp.js";

// What code imported from peer.js before the page peer was split into modules.
export { DrainWatch, MAX_CHANNELS, PING_INTERVAL, Remote, STALL_AFTER, msidsOf, ufragOf };

// Limits, the Python peer's (peer.py, signaling.py; the codec checks message size, metadata
// and sender ids): past one, an `error` event or a `signal:reject`/`signal:drop` row, and the
// peer carries on.
const MAX_REMOTES = 64;
/** Messages held per sender while `verify` decides about it (peer.py MAX_HELD_MESSAGES). */
const MAX_HELD_MESSAGES = 100;
/**
 * A joined peer repeats its room JOIN after ~REANNOUNCE_FIRST s, then at doubling intervals up
 * to REANNOUNCE_MAX s, while it stays joined (peer.py). JOIN has no acknowledgement: a JOIN lost
 * on its way, or the direct JOIN retry after `failed`, would leave that pair with no attempt on
 * either side, for good. A peer already connected to the sender ignores a room JOIN (`_route`),
 * so a repeat costs one message.
 */
export const REANNOUNCE_FIRST = 1;
export const REANNOUNCE_MAX = 30;

/** @typedef {import("./drivers.js").Driver} Driver */
/** @typedef {import("./codec.js").Message} Message */
/** @typedef {import("./channels.js").ChannelOptions} ChannelOptions */
/**
 * @typedef {object} PeerOptions
 * @property {string | null} [id] this peer's id (random if none)
 * @property {Driver} driver required: how driver messages travel (drivers.js)
 * @property {RTCIceServer[]} [iceServers] [] = none
 * @property {RTCIceTransportPolicy} [iceTransportPolicy]
 * @property {number} [connectionTimeout] seconds to connect (or reconnect), 0 = none
 * @property {boolean} [compression]
 * @property {boolean} [hashing]
 * @property {string | Uint8Array | null} [encryptionKey]
 * @property {number} [maxRemotes]
 * @property {number} [reannounceFirst] seconds: the periodic JOIN (REANNOUNCE_FIRST)
 * @property {number} [reannounceMax] seconds (REANNOUNCE_MAX)
 */
/**
 * What every handler gets: `name` and `id` (this peer's), and the fields that apply (the
 * Python Peer's Event).
 * @typedef {object} PeerEvent
 * @property {string} name
 * @property {string} id
 * @property {Remote | null} [remote]
 * @property {string} [state]
 * @property {string} [kind]
 * @property {import("./remote.js").Via} [via]
 * @property {number} [size]
 * @property {string | null} [detail]
 * @property {string} [label]
 * @property {PeerixError} [error]
 * @property {RTCDataChannel} [channel]
 * @property {any} [data]
 * @property {MediaStream} [stream]
 * @property {MediaStreamTrack} [track]
 */
/**
 * Decides whether a peer asking to connect may: a boolean, or a Promise of one.
 * @typedef {(request: { id: string, metadata: any }) => boolean | Promise<boolean>} Verify
 */

/**
 * `error` as a PeerixError (with `code` unless it is one already).
 * @param {any} error
 * @param {string} code
 * @returns {PeerixError}
 */
function wrap(error, code) {
  if (error instanceof PeerixError) return error;
  return new PeerixError(code, error && error.message ? error.message : String(error), error);
}

export class Peer extends Emitter {
  /** @param {PeerOptions} options (`driver` is required) */
  constructor({ id = null, driver, iceServers = [], iceTransportPolicy = "all", connectionTimeout = 15,
    compression = true, hashing = false, encryptionKey = null, maxRemotes = MAX_REMOTES,
    reannounceFirst = REANNOUNCE_FIRST, reannounceMax = REANNOUNCE_MAX } = /** @type {PeerOptions} */ ({})) {
    super();
    if (!driver) throw new TypeError("a Peer needs a driver");
    if (id !== null && (typeof id !== "string" || !id || id.length > MAX_ID_LENGTH)) {
      throw new PeerixError("PEER_SIGNALING_ERROR",
        `peer id must be a non-empty string of at most ${MAX_ID_LENGTH} characters, got ${JSON.stringify(id)}`);
    }
    if (!Number.isInteger(maxRemotes) || maxRemotes < 1) {
      throw new TypeError(`maxRemotes must be a positive integer, got ${maxRemotes}`);
    }
    this.id = id || randomId();
    this.driver = driver;
    /** @type {RTCConfiguration} */
    this.configuration = { iceServers, iceTransportPolicy, bundlePolicy: "max-bundle" };
    this.connectionTimeout = connectionTimeout;
    this.maxRemotes = maxRemotes;
    this.reannounceFirst = reannounceFirst;
    this.reannounceMax = reannounceMax;
    this.codec = new SignalingCodec({ compression, hashing, encryptionKey });
    this.room = "";
    /** @type {any} */
    this.metadata = null;
    this.joined = false;
    /** @type {Promise<void> | null} the pending join(), so a second call waits for it */
    this._joining = null;
    /** @type {Map<string, Remote>} remote id -> Remote */
    this.connections = new Map();
    /** @type {Map<string, ChannelOptions>} label -> options, for current and future remotes */
    this.channels = new Map();
    /** @type {Map<string, MediaStream>} label -> MediaStream we publish */
    this.streams = new Map();
    /** @type {string[][]} the room's namespace and ours, as sent to the driver */
    this._namespaces = [];
    /** @type {Promise<unknown>} */
    this._sendChain = Promise.resolve();
    /** @type {Promise<unknown>} */
    this._recvChain = Promise.resolve();
    /** @type {Verify | null} */
    this._verify = null;
    /** @type {Map<string, [Message, boolean][]>} sender -> messages held while verify decides: [[message, direct]] */
    this._admitting = new Map();
    // Candidates from senders we have no Remote for yet (a trickled candidate can overtake its
    // OFFER on a reordering driver): at most maxRemotes senders and MAX_QUEUED_CANDIDATES
    // each, applied when the OFFER comes (peer.py does the same).
    /** @type {Map<string, RTCIceCandidateInit[]>} */
    this._earlyCandidates = new Map();
    this._announced = false; // the room JOIN went out since join() (or waits for the driver)
    this._generation = 0; // one per join and leave: timers and verify calls of an old one stop
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._reannounceTimer = null;
    /** @param {Uint8Array} data */
    this._onRoom = (data) => this._receive(data, false);
    /** @param {Uint8Array} data */
    this._onDirect = (data) => this._receive(data, true);
    this._driverHandlers = {
      active: () => {
        this._emit("driver:active", { state: "active" });
        if (!this.joined) return;
        // An attempt still `new` has not completed its first exchange, which goes through the
        // driver: its offer or answer may have been dropped while the driver was inactive.
        for (const remote of [...this.connections.values()]) {
          if (remote.state === "new") remote.fail("signaling interrupted: the driver was inactive");
        }
        // The random delay spreads the re-announcements of a room whose driver came back; a
        // JOIN that never went out (join() while inactive) is a first one: it goes now.
        if (this._announced) this._announceLater();
        else this._announce().catch((e) => this._report(e, "PEER_SIGNALING_ERROR"));
      },
      inactive: () => this._emit("driver:inactive", { state: "inactive" }),
      /** @param {{ error?: any }} event */
      error: (event) => this._report(event.error || "driver error", "PEER_SIGNALING_ERROR"),
    };
  }

  // -- events -------------------------------------------------------------------------------
  /** @param {string} name @param {Record<string, any>} [fields] */
  _emit(name, fields = {}) {
    this.emit(name, { name, id: this.id, ...fields });
  }

  /**
   * An `error` event (`error` wrapped into a PeerixError with `code`).
   * @param {any} error
   * @param {string} [code]
   * @param {Remote | null} [remote]
   */
  _report(error, code = "UNKNOWN_ERROR", remote = null) {
    const wrapped = wrap(error, code);
    this._emit("error", { remote, error: wrapped, detail: `${wrapped.code}: ${wrapped.message}` });
  }

  // -- joining and leaving ------------------------------------------------------------------
  /**
   * Join `room`, announcing `metadata` (JSON, at most MAX_METADATA_BYTES). `verify({id,
   * metadata})` may refuse a peer asking to connect: it returns a boolean or a Promise of one;
   * that sender's messages are held meanwhile, and a refusal is a `signal:reject` row.
   * @param {string} [room]
   * @param {any} [metadata]
   * @param {Verify | null} [verify]
   * @returns {Promise<void>}
   */
  async join(room = "default", metadata = null, verify = null) {
    if (typeof room !== "string" || !room) throw new PeerixError("PEER_SIGNALING_ERROR", "room must be a non-empty string");
    if (verify !== null && verify !== undefined && typeof verify !== "function") {
      throw new TypeError("verify must be a function taking {id, metadata} and returning a boolean (or a Promise of one)");
    }
    let size;
    try {
      size = jsonSize(metadata);
    } catch (error) {
      throw new TypeError(`metadata must be JSON-serializable: ${error.message}`);
    }
    if (size > MAX_METADATA_BYTES) {
      throw new PeerixError("PEER_SIGNALING_ERROR", `metadata is ${size} bytes as JSON; the limit is ${MAX_METADATA_BYTES}`);
    }
    if (this.joined || this._joining) {
      // One room at a time, as in peer.py: silently staying in the other room would mislead.
      if (room !== this.room) {
        throw new PeerixError("PEER_SIGNALING_ERROR",
          `this peer is already in room ${JSON.stringify(this.room)} (a peer is in one room at a time): leave() before joining ${JSON.stringify(room)}`);
      }
      return this._joining || undefined;
    }
    this.room = room;
    this.metadata = metadata === undefined ? null : metadata;
    this._verify = verify || null;
    this._joining = this._join(room).finally(() => { this._joining = null; });
    return this._joining;
  }

  /** @param {string} room */
  async _join(room) {
    this._generation += 1;
    this._namespaces = [await this.codec.namespace([room]), await this.codec.namespace([room, this.id])];
    await this.driver.subscribe(this._namespaces[0], this._onRoom);
    await this.driver.subscribe(this._namespaces[1], this._onDirect);
    for (const [name, handler] of Object.entries(this._driverHandlers)) this.driver.on(name, handler);
    this.joined = true;
    this._announced = false;
    this._emit("room:join", { state: "joined", detail: room });
    if (!this.driver.active) this._announceWaits();
    await this._announce();
    this._startReannounce();
  }

  /** Leave the room: LEAVE to it, every connection closed. @returns {Promise<void>} */
  async leave() {
    if (!this.joined) return;
    this.joined = false;
    this._generation += 1;
    clearTimeout(this._reannounceTimer);
    this._reannounceTimer = null;
    for (const [name, handler] of Object.entries(this._driverHandlers)) this.driver.off(name, handler);
    try {
      if (this.driver.active) await this._dispatch(this._namespaces[0], [LEAVE, this.id], "leave", null);
    } catch (error) {
      this._report(error, "PEER_SIGNALING_ERROR");
    }
    await Promise.all([...this.connections.values()].map((r) => r.shutdown("left the room")));
    this.connections.clear();
    this._admitting.clear();
    this._earlyCandidates.clear();
    await this.driver.unsubscribe(this._namespaces[0], this._onRoom).catch((e) => this._report(e));
    await this.driver.unsubscribe(this._namespaces[1], this._onDirect).catch((e) => this._report(e));
    this._namespaces = [];
    this._emit("room:leave", { state: "left", detail: this.room });
  }

  /** The room JOIN, or a direct one `to` a remote. @param {string | null} [to] */
  async _announce(to = null) {
    if (!this.joined || !this.driver.active) return;
    const namespace = to === null ? this._namespaces[0] : await this.codec.namespace([this.room, to]);
    const detail = to === null ? null : `to ${to}`; // a direct JOIN: the retry after `failed`
    const sent = await this._dispatch(namespace, [JOIN, this.id, this.metadata], "join", null, detail);
    if (sent && to === null) this._announced = true;
  }

  /** join() with an inactive driver: nobody can see us yet. Say so where a user looks (an event
   *  and a console warning) rather than a silent "successful" join; the JOIN goes out as soon
   *  as the driver becomes active (the "active" handler). */
  _announceWaits() {
    const detail = "JOIN waits for the driver to become active";
    console.warn(`peerix: peer ${this.id} joined room ${JSON.stringify(this.room)} but its driver is inactive: ${detail}`);
    this._emit("driver:inactive", { state: "inactive", kind: "join", detail });
  }

  /** @param {string | null} [to] */
  _announceLater(to = null) {
    // docs/PROTOCOL.md: a random 0-1000 ms delay, so a room that lost its driver does not stampede.
    setTimeout(() => this._announce(to).catch((e) => this._report(e, "PEER_SIGNALING_ERROR")),
      Math.random() * 1000);
  }

  /** The periodic JOIN (see REANNOUNCE_FIRST): jittered, doubling, until leave(). */
  _startReannounce() {
    const generation = this._generation;
    /** @param {number} interval seconds */
    const next = (interval) => {
      // Jittered, so that a room that joined together does not announce together.
      this._reannounceTimer = setTimeout(async () => {
        this._reannounceTimer = null;
        if (!this.joined || generation !== this._generation) return;
        try {
          await this._announce();
        } catch (error) {
          this._report(error, "PEER_SIGNALING_ERROR"); // a driver hiccup must not end the repeats
        }
        if (this.joined && generation === this._generation) next(Math.min(interval * 2, this.reannounceMax));
      }, interval * (0.5 + Math.random()) * 1000);
    };
    next(this.reannounceFirst);
  }

  // -- driver messages ----------------------------------------------------------------------
  /**
   * Encode and dispatch in order: encoding is asynchronous (CompressionStream, WebCrypto) and a
   * small CANDIDATE must never overtake the OFFER it belongs to (the receiver would drop it,
   * having no connection for that sender yet). Resolves to false when the driver is inactive:
   * docs/PROTOCOL.md says nothing is dispatched then, and the log says so (a `signal:drop` row).
   * @param {string[]} namespace
   * @param {any[]} message
   * @param {string} kind
   * @param {Remote | null} remote
   * @param {string | null} [detail]
   * @returns {Promise<boolean>}
   */
  _dispatch(namespace, message, kind, remote, detail = null) {
    const step = this._sendChain.then(async () => {
      const data = await this.codec.encode(message);
      if (!this.driver.active) {
        this._emit("signal:drop", { remote, kind, via: "driver", size: data.length, detail: "driver inactive: not sent" });
        return false;
      }
      await this.driver.dispatch(namespace, data);
      this._emit("signal:send", { remote, kind, via: "driver", size: data.length, detail });
      return true;
    });
    this._sendChain = step.catch(() => {});
    return step;
  }

  /**
   * A message to one remote through the driver (used by Remote).
   * @param {string} remoteId
   * @param {any[]} message
   * @param {string} kind
   */
  _sendDirect(remoteId, message, kind) {
    if (!this.joined) return;
    const remote = this.connections.get(remoteId) || null;
    this.codec.namespace([this.room, remoteId])
      .then((namespace) => this._dispatch(namespace, message, kind, remote))
      .catch((error) => this._report(error, "PEER_SIGNALING_ERROR", remote));
  }

  /**
   * Decode and route in arrival order (decoding is asynchronous too).
   * @param {Uint8Array} data
   * @param {boolean} direct sent to our own namespace
   */
  _receive(data, direct) {
    this._recvChain = this._recvChain.then(() => this._handle(data, direct)).catch((e) => this._report(e));
  }

  /** @param {Uint8Array} data @param {boolean} direct */
  async _handle(data, direct) {
    if (!this.joined) return;
    let message;
    try {
      message = await this.codec.decode(data);
    } catch (error) {
      this._emit("signal:drop", { via: "driver", size: data && data.length, detail: error.message });
      this._report(error, "PEER_SIGNALING_ERROR");
      return;
    }
    if (!this.joined || message.sender === this.id) return; // our own broadcast, echoed by the driver
    const remote = this.connections.get(message.sender) || null;
    this._emit("signal:recv", { remote, kind: message.kind, via: "driver", size: data.length,
      detail: remote ? null : message.sender });
    const held = this._admitting.get(message.sender);
    if (held) {
      // verify is deciding about this sender: its messages wait, up to a limit.
      if (held.length < MAX_HELD_MESSAGES) held.push([message, direct]);
      else this._emit("signal:drop", { kind: message.kind, via: "driver",
        detail: `${message.sender}: more than ${MAX_HELD_MESSAGES} messages while verify decides` });
      return;
    }
    this._route(message, direct);
  }

  /** @param {Message} message @param {boolean} direct */
  _route(message, direct) {
    const sender = message.sender;
    const remote = this.connections.get(sender);
    if (message.type === JOIN) {
      if (remote) {
        if (remote.state === "connected" || (!direct && !["failed", "closed"].includes(remote.state))) {
          // A re-announcement (driver back) or a replay: a live connection stays.
          if (direct) this._ignore(message, remote, "JOIN for a live connection");
          return;
        }
        // A direct JOIN: the remote lost us and starts over.
        remote.shutdown("remote restarted the connection").then(() => this._admit(message, true));
        return;
      }
      this._admit(message, direct);
    } else if (message.type === OFFER) {
      if (remote && remote.controlOpen) {
        if (remote.state === "connected") {
          // Renegotiation rides the control channel: a driver offer for a live connection is
          // stale or replayed and must not tear it down.
          this._ignore(message, remote, "driver offer for a live connection");
          return;
        }
        remote.shutdown("remote restarted the connection").then(() => this._admit(message, true));
      } else if (remote) {
        remote.receiveOffer(message.description, null, "driver");
      } else {
        this._admit(message, direct);
      }
    } else if (message.type === ANSWER || message.type === CANDIDATE) {
      if (!remote && message.type === CANDIDATE && message.candidate && holdEarly(this, message)) return;
      if (!remote) {
        this._emit("signal:drop", { kind: message.kind, via: "driver", detail: `no connection to ${sender}` });
        return;
      }
      if (message.type === ANSWER) remote.receiveAnswer(message.description);
      else remote.receiveCandidate(message.candidate);
    } else if (message.type === LEAVE) {
      this._earlyCandidates.delete(sender);
      if (remote) remote.shutdown("remote left");
    }
  }

  /** @param {Message} message @param {Remote} remote @param {string} why */
  _ignore(message, remote, why) {
    this._emit("signal:ignore", { remote, kind: message.kind, via: "driver", detail: why });
  }

  /**
   * Run `verify` for a new remote (JOIN or OFFER), holding its later messages meanwhile.
   * @param {Message} message
   * @param {boolean} direct
   */
  _admit(message, direct) {
    admit(this, message, direct);
  }

  /**
   * Remote `remote` closed (after `failed` if so): forget it, and JOIN it again after a failure.
   * @param {Remote} remote
   * @param {boolean} failed
   */
  _remoteClosed(remote, failed) {
    if (this.connections.get(remote.id) === remote) this.connections.delete(remote.id);
    if (failed && this.joined) {
      // docs/PROTOCOL.md: after `failed`, JOIN that remote directly (after 0-1 s) to try again.
      setTimeout(() => {
        const current = this.connections.get(remote.id);
        if (this._admitting.has(remote.id) || (current && !["failed", "closed"].includes(current.state))) {
          return; // the remote retried first: its JOIN already gave us a new connection
        }
        this._announce(remote.id).catch((e) => this._report(e, "PEER_SIGNALING_ERROR"));
      }, Math.random() * 1000);
    }
  }

  // -- data channels ------------------------------------------------------------------------
  /**
   * Open channel `label` to every remote, now and later.
   * @param {string} [label]
   * @param {Partial<ChannelOptions>} [options] ordered, maxRetransmits, maxPacketLifeTime, protocol
   */
  open(label = "default", options = {}) {
    checkLabel(label);
    if (!this.channels.has(label) && this.channels.size >= MAX_CHANNELS) {
      // The remote would refuse it (MAX_CHANNELS) and only the remote would know.
      throw new PeerixError("PEER_DATACHANNEL_ERROR",
        `cannot open channel ${JSON.stringify(label)}: a peer opens at most ${MAX_CHANNELS} channels (remotes refuse more); close() one first`);
    }
    const entry = { ...options, label };
    this.channels.set(label, entry);
    for (const remote of this.connections.values()) remote.openChannel(entry);
  }

  /** Close channel `label` to every remote, and open it to no later one. @param {string} label */
  close(label) {
    this.channels.delete(label);
    for (const remote of this.connections.values()) remote.closeChannel(label);
  }

  /**
   * Send on channel `label` of every remote (or on every open channel); returns the count.
   * @param {string | ArrayBuffer | ArrayBufferView | Blob} data
   * @param {string | null} [label]
   * @returns {number}
   */
  send(data, label = null) {
    let sent = 0;
    for (const remote of this.connections.values()) sent += remote.send(data, label);
    return sent;
  }

  // -- media --------------------------------------------------------------------------------
  /**
   * Publish `stream` under `label` to every remote; the same label again swaps its tracks.
   * @param {MediaStream} stream
   * @param {string | null} [label] the stream's id if none
   * @returns {Promise<void>}
   */
  async publish(stream, label = null) {
    if (!(stream instanceof MediaStream)) throw new PeerixError("PEER_MEDIASTREAM_ERROR", "publish() needs a MediaStream");
    label = label || stream.id;
    this.streams.set(label, stream);
    await Promise.all([...this.connections.values()].map((r) => r.syncStreams()));
  }

  /** Stop sending the stream published under `label`. @param {string} label @returns {Promise<void>} */
  async unpublish(label) {
    if (!this.streams.has(label)) throw new PeerixError("PEER_MEDIASTREAM_ERROR", `no stream is published under label ${label}`);
    this.streams.delete(label);
    await Promise.all([...this.connections.values()].map((r) => r.syncStreams()));
  }
}
