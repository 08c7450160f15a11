// A Peerix v0.1 room peer on the browser's own RTCPeerConnection (docs/PROTOCOL.md, all of it).
//
// Peer: joins a room through a driver, keeps one Remote per remote peer (full mesh), fans out
// data channels and published MediaStreams. Remote: one RTCPeerConnection — the operations
// chain, offers/answers with perfect negotiation (native rollback), trickled candidates, the
// control channel, channel roles, the label map of published streams, states and timeouts.
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
  checkCandidate,
  jsonSize,
} from "./codec.js";
import { randomId } from "./ids.js";

// Limits, the Python peer's (remote.py, peer.py, signaling.py; the codec checks message size,
// metadata and sender ids): past one, an `error` event or a `signal:reject`/`signal:drop` row,
// and the peer carries on.
const MAX_QUEUED_CANDIDATES = 100;
/** A renegotiation offer without an answer this long is withdrawn and made again (remote.py
 *  OFFER_TIMEOUT): a remote busy with its own offer may ignore ours without a word. */
const OFFER_TIMEOUT_MS = 3000;
/** After answering a colliding offer, wait this long before offering our own changes again, so
 *  the re-offer does not reach the remote while it still applies our answer (REOFFER_DELAY). */
const REOFFER_DELAY_MS = 200;
const MAX_CONTROL_MESSAGE = 1 << 20;
const MAX_REMOTES = 64;
/** Messages held per sender while `verify` decides about it (peer.py MAX_HELD_MESSAGES). */
const MAX_HELD_MESSAGES = 100;
/** Data channels per remote (remote.py MAX_CHANNELS): more only come from a runaway remote. */
export const MAX_CHANNELS = 256;
/**
 * A joined peer repeats its room JOIN after ~REANNOUNCE_FIRST s, then at doubling intervals up
 * to REANNOUNCE_MAX s, while it stays joined (peer.py). JOIN has no acknowledgement: a JOIN lost
 * on its way, or the direct JOIN retry after `failed`, would leave that pair with no attempt on
 * either side, for good. A peer already connected to the sender ignores a room JOIN (`_route`),
 * so a repeat costs one message.
 */
export const REANNOUNCE_FIRST = 1;
export const REANNOUNCE_MAX = 30;
/** Seconds between control-channel pings, and without drain progress before `disconnected`
 *  (liveness.py's PING_INTERVAL and STALL_AFTER; see Remote._startLiveness). */
export const PING_INTERVAL = 1;
export const STALL_AFTER = 2.5;
const PING = '["ping"]';
const utf8 = new TextEncoder();

function wrap(error, code) {
  if (error instanceof PeerixError) return error;
  return new PeerixError(code, error && error.message ? error.message : String(error), error);
}

/** `a=ice-ufrag` of an SDP (the first one: with max-bundle every m-line shares it). */
export function ufragOf(sdp) {
  const match = /^a=ice-ufrag:(\S+)/m.exec(sdp || "");
  return match ? match[1] : null;
}

/** The mids of an SDP's m-lines, in order, as one string (to match an answer to its offer). */
function mids(sdp) {
  return [...(sdp || "").matchAll(/^a=mid:(\S+)/gm)].map((m) => m[1]).join(" ");
}

/** mid -> {streamId, trackId} of every m-line of an SDP, from its a=mid and a=msid lines. */
export function msidsOf(sdp) {
  const out = new Map();
  for (const section of (sdp || "").split(/\r?\nm=/).slice(1)) {
    const mid = /^a=mid:(\S+)/m.exec(section);
    if (!mid) continue;
    const msid = /^a=msid:(\S+)(?: (\S+))?/m.exec(section);
    out.set(mid[1], { streamId: msid ? msid[1] : "", trackId: msid && msid[2] ? msid[2] : "" });
  }
  return out;
}

function channelInit(options) {
  const init = { ordered: options.ordered !== false };
  if (options.maxRetransmits != null) init.maxRetransmits = options.maxRetransmits;
  if (options.maxPacketLifeTime != null) init.maxPacketLifeTime = options.maxPacketLifeTime;
  if (options.protocol) init.protocol = options.protocol;
  return init;
}

/** The `["channel", {...}]` request body, as the Python side writes it. */
function channelWire(options) {
  const body = { label: options.label, ordered: options.ordered !== false };
  if (options.maxRetransmits != null) body.maxRetransmits = options.maxRetransmits;
  if (options.maxPacketLifeTime != null) body.maxPacketLifeTime = options.maxPacketLifeTime;
  if (options.protocol) body.protocol = options.protocol;
  return body;
}

function checkLabel(label) {
  if (typeof label !== "string" || !label || label.length > 1024) {
    throw new PeerixError("PEER_DATACHANNEL_ERROR",
      `channel label must be a non-empty string (the empty label is the control channel), got ${JSON.stringify(label)}`);
  }
}

export class Peer extends Emitter {
  /**
   * @param {object} options id, driver (required), iceServers ([] = none), iceTransportPolicy,
   *   connectionTimeout (s, 0 = none), compression, hashing, encryptionKey, maxRemotes,
   *   reannounceFirst and reannounceMax (s: the periodic JOIN, REANNOUNCE_FIRST/MAX)
   */
  constructor({ id = null, driver, iceServers = [], iceTransportPolicy = "all", connectionTimeout = 15,
    compression = true, hashing = false, encryptionKey = null, maxRemotes = MAX_REMOTES,
    reannounceFirst = REANNOUNCE_FIRST, reannounceMax = REANNOUNCE_MAX } = {}) {
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
    this.configuration = { iceServers, iceTransportPolicy, bundlePolicy: "max-bundle" };
    this.connectionTimeout = connectionTimeout;
    this.maxRemotes = maxRemotes;
    this.reannounceFirst = reannounceFirst;
    this.reannounceMax = reannounceMax;
    this.codec = new SignalingCodec({ compression, hashing, encryptionKey });
    this.room = "";
    this.metadata = null;
    this.joined = false;
    this._joining = null; // the pending join(), so a second call waits for it
    this.connections = new Map(); // remote id -> Remote
    this.channels = new Map(); // label -> options, for current and future remotes
    this.streams = new Map(); // label -> MediaStream we publish
    this._namespaces = [];
    this._sendChain = Promise.resolve();
    this._recvChain = Promise.resolve();
    this._verify = null;
    this._admitting = new Map(); // sender -> messages held while verify decides: [[message, direct]]
    // Candidates from senders we have no Remote for yet (a trickled candidate can overtake its
    // OFFER on a reordering driver): at most maxRemotes senders and MAX_QUEUED_CANDIDATES
    // each, applied when the OFFER comes (peer.py does the same).
    this._earlyCandidates = new Map();
    this._announced = false; // the room JOIN went out since join() (or waits for the driver)
    this._generation = 0; // one per join and leave: timers and verify calls of an old one stop
    this._reannounceTimer = null;
    this._onRoom = (data) => this._receive(data, false);
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
      error: (event) => this._report(event.error || "driver error", "PEER_SIGNALING_ERROR"),
    };
  }

  // -- events -------------------------------------------------------------------------------
  _emit(name, fields = {}) {
    this.emit(name, { name, id: this.id, ...fields });
  }

  _report(error, code = "UNKNOWN_ERROR", remote = null) {
    const wrapped = wrap(error, code);
    this._emit("error", { remote, error: wrapped, detail: `${wrapped.code}: ${wrapped.message}` });
  }

  // -- joining and leaving ------------------------------------------------------------------
  /**
   * Join `room`, announcing `metadata` (JSON, at most MAX_METADATA_BYTES). `verify({id,
   * metadata})` may refuse a peer asking to connect: it returns a boolean or a Promise of one;
   * that sender's messages are held meanwhile, and a refusal is a `signal:reject` row.
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

  _announceLater(to = null) {
    // docs/PROTOCOL.md: a random 0-1000 ms delay, so a room that lost its driver does not stampede.
    setTimeout(() => this._announce(to).catch((e) => this._report(e, "PEER_SIGNALING_ERROR")),
      Math.random() * 1000);
  }

  /** The periodic JOIN (see REANNOUNCE_FIRST): jittered, doubling, until leave(). */
  _startReannounce() {
    const generation = this._generation;
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

  /** A message to one remote through the driver (used by Remote). */
  _sendDirect(remoteId, message, kind) {
    if (!this.joined) return;
    const remote = this.connections.get(remoteId) || null;
    this.codec.namespace([this.room, remoteId])
      .then((namespace) => this._dispatch(namespace, message, kind, remote))
      .catch((error) => this._report(error, "PEER_SIGNALING_ERROR", remote));
  }

  /** Decode and route in arrival order (decoding is asynchronous too). */
  _receive(data, direct) {
    this._recvChain = this._recvChain.then(() => this._handle(data, direct)).catch((e) => this._report(e));
  }

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
      if (!remote && message.type === CANDIDATE && message.candidate) {
        let early = this._earlyCandidates.get(sender);
        if (!early && this._earlyCandidates.size < this.maxRemotes) {
          early = [];
          this._earlyCandidates.set(sender, early);
        }
        if (early && early.length < MAX_QUEUED_CANDIDATES) {
          early.push(message.candidate);
          this._emit("signal:hold", { kind: message.kind, via: "driver", detail: `${sender}: before its offer` });
          return;
        }
      }
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

  _ignore(message, remote, why) {
    this._emit("signal:ignore", { remote, kind: message.kind, via: "driver", detail: why });
  }

  /** Run `verify` for a new remote (JOIN or OFFER), holding its later messages meanwhile. */
  _admit(message, direct) {
    if (!this.joined) return;
    const sender = message.sender;
    if (this.connections.size + this._admitting.size >= this.maxRemotes) {
      this._earlyCandidates.delete(sender);
      this._emit("signal:reject", { kind: message.kind, via: "driver",
        detail: `${sender}: room full (${this.maxRemotes} remotes)` });
      return;
    }
    const held = [];
    this._admitting.set(sender, held);
    this._admitTask(message, held, this._generation).catch((e) => this._report(e));
  }

  async _admitTask(message, held, generation) {
    const sender = message.sender;
    let accepted = false;
    try {
      accepted = await this._verified(sender, message.metadata);
    } finally {
      if (this._admitting.get(sender) === held) this._admitting.delete(sender);
    }
    // Taken whatever the outcome: left behind, a refused sender's entry would hold a place.
    const early = this._earlyCandidates.get(sender) || [];
    this._earlyCandidates.delete(sender);
    if (!this.joined || generation !== this._generation) return;
    if (!accepted) {
      this._emit("signal:reject", { kind: message.kind, via: "driver", detail: `${sender} rejected by verify` });
      return;
    }
    const remote = new Remote(this, sender, message.metadata);
    this.connections.set(remote.id, remote);
    if (message.type === JOIN) {
      remote.start(); // we were here first: we offer (earlier candidates are stale)
    } else {
      remote.receiveOffer(message.description, null, "driver");
      for (const candidate of early) remote.receiveCandidate(candidate); // held for that offer
    }
    for (const [later, laterDirect] of held) this._route(later, laterDirect);
  }

  async _verified(sender, metadata) {
    if (!this._verify) return true;
    try {
      return !!(await this._verify({ id: sender, metadata }));
    } catch (error) {
      this._report(new PeerixError("PEER_SIGNALING_ERROR",
        `verify raised ${error && error.message ? `${error.name || "Error"}: ${error.message}` : String(error)}`, error));
      return false;
    }
  }

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
  /** Open channel `label` to every remote, now and later. */
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

  close(label) {
    this.channels.delete(label);
    for (const remote of this.connections.values()) remote.closeChannel(label);
  }

  /** Send on channel `label` of every remote (or on every open channel); returns the count. */
  send(data, label = null) {
    let sent = 0;
    for (const remote of this.connections.values()) sent += remote.send(data, label);
    return sent;
  }

  // -- media --------------------------------------------------------------------------------
  /** Publish `stream` under `label` to every remote; the same label again swaps its tracks. */
  async publish(stream, label = null) {
    if (!(stream instanceof MediaStream)) throw new PeerixError("PEER_MEDIASTREAM_ERROR", "publish() needs a MediaStream");
    label = label || stream.id;
    this.streams.set(label, stream);
    await Promise.all([...this.connections.values()].map((r) => r.syncStreams()));
  }

  async unpublish(label) {
    if (!this.streams.has(label)) throw new PeerixError("PEER_MEDIASTREAM_ERROR", `no stream is published under label ${label}`);
    this.streams.delete(label);
    await Promise.all([...this.connections.values()].map((r) => r.syncStreams()));
  }
}

/**
 * Fast `disconnected` in the page: the browser counterpart of liveness.py.
 *
 * Why: the Python peer sends `["ping"]` on the control channel every PING_INTERVAL and watches
 * SCTP acknowledgements progress in aiortc's private state (aiortc has no `disconnected` of its
 * own). A page cannot see SCTP acknowledgements. The nearest thing it can see is the control
 * channel's `bufferedAmount`: bytes handed to send() that the browser's SCTP stack has not sent
 * yet. SCTP sends new data only while its congestion and receive windows have room, and only
 * acknowledgements make room, so data that stays buffered with no progress for STALL_AFTER means
 * the remote (or the path) stopped acknowledging: `disconnected`; draining again: `connected`.
 * It is a weaker signal than the Python one, because unacknowledged data that the stack has
 * already sent is not "buffered": measured in Chromium 156 against a frozen remote browser
 * (SIGSTOP), the 8-byte pings fitted in the stalled window and bufferedAmount stayed 0 for 20 s,
 * while the browser's own ICE said `disconnected` after ~5.3 s; pings padded to 1.2 kB made it
 * grow ~2 s after the freeze (a stall seen at ~4.5 s). So the ICE `disconnected`
 * (_onConnectionState) stays the main signal in a page, this watch catches what is stuck behind
 * larger control messages (offers, candidates, channel requests), and the pings stay the
 * Python peer's 8 bytes (browser Peerix ignores them), not 1.2 kB a second per remote for ~1 s.
 */
export class DrainWatch {
  constructor(stallAfterMs = STALL_AFTER * 1000) {
    this.stallAfter = stallAfterMs;
    this._lastBuffered = 0;
    this._stalledSince = null;
  }

  /**
   * `buffered`: the channel's bufferedAmount now; `queued`: bytes handed to send() since the
   * previous call. False once data has waited `stallAfter` ms without any of it draining.
   */
  alive(now, buffered, queued = 0) {
    const drained = this._lastBuffered + queued - buffered > 0;
    if (!buffered) this._stalledSince = null;
    else if (drained || this._stalledSince === null) this._stalledSince = now;
    this._lastBuffered = buffered;
    return this._stalledSince === null || now - this._stalledSince < this.stallAfter;
  }
}

export class Remote {
  constructor(peer, id, metadata) {
    this.peer = peer;
    this.id = id;
    this.metadata = metadata;
    this.room = peer.room;
    this.polite = peer.id > id; // docs/PROTOCOL.md: plain string comparison
    this.state = "new";
    this.streams = new Map(); // label -> remote MediaStream
    this.channels = new Map(); // label -> RTCDataChannel
    this.controlOpen = false;
    this._chain = Promise.resolve(); // the operations queue: one description at a time
    this._negotiationQueued = false;
    this._needsNegotiation = false;
    this._pendingCandidates = [];
    this._labels = {}; // remote stream id -> label, from the remote's last offer
    this._outgoing = []; // {transceiver, kind, track, label, streamId}: what we send
    this._incoming = new Map(); // mid -> {streamId, label, track, stream}
    this._closing = false;
    this._timer = null;
    this._offerStarted = null;
    this._offerTimer = null; // OFFER_TIMEOUT_MS of our pending renegotiation offer
    this._offerSeq = 0; // counts our offers, so a late timer knows its offer is gone
    this._reofferTimer = null;
    this._rolledBack = false; // the current exchange answered after a rollback
    this._liveness = null; // the control channel's pings and drain watch (_startLiveness)
    this._stalled = false; // `disconnected` came from that watch
    this.pc = this._createConnection();
    this._emit("connection:new", { state: "new", detail: this.polite ? "polite" : "impolite" });
    this._armTimeout();
  }

  _emit(name, fields = {}) {
    this.peer._emit(name, { remote: this, ...fields });
  }

  _report(error, code) {
    this.peer._report(error, code, this);
  }

  _setState(state, detail = null) {
    if (this.state === state || this.state === "closed") return;
    this.state = state;
    this._emit(`connection:${state}`, { state, detail });
  }

  // -- the connection -----------------------------------------------------------------------
  _createConnection() {
    const pc = new RTCPeerConnection(this.peer.configuration);
    pc.onconnectionstatechange = () => {
      if (pc === this.pc) this._onConnectionState(pc.connectionState);
    };
    pc.onicegatheringstatechange = () => {
      if (pc === this.pc) this._emit("ice:gathering", { state: pc.iceGatheringState });
    };
    pc.oniceconnectionstatechange = () => {
      if (pc === this.pc) this._emit("ice:state", { state: pc.iceConnectionState });
    };
    pc.onicecandidate = ({ candidate }) => {
      // Browsers trickle; aiortc does not, but accepts trickled candidates.
      if (pc !== this.pc || !candidate || !candidate.candidate) return;
      this._sendCandidate(candidate.toJSON());
    };
    pc.ondatachannel = ({ channel }) => {
      if (pc === this.pc) this._registerChannel(channel);
    };
    // The control channel: negotiated on both sides before the first offer (docs/PROTOCOL.md).
    const control = pc.createDataChannel("", { negotiated: true, id: 0 });
    control.onopen = () => this._onControlOpen(control);
    control.onclose = () => {
      if (control === this._control && !this._closing) this.shutdown("control channel closed");
    };
    control.onmessage = ({ data }) => this._onControlMessage(control, data);
    this._control = control;
    return pc;
  }

  _onConnectionState(state) {
    if (state === "connecting" && this.state === "new") this._setState("connecting");
    else if (state === "connected") {
      this._cancelTimeout();
      if (["new", "connecting", "disconnected"].includes(this.state)) this._setState("connected");
    } else if (state === "disconnected") {
      if (this.state === "connected") {
        this._setState("disconnected", "ICE disconnected");
        this._armTimeout();
      }
    } else if (state === "failed") this.fail("ICE or DTLS failed");
    else if (state === "closed" && !this._closing) this.shutdown("connection closed");
  }

  _armTimeout() {
    this._cancelTimeout();
    const timeout = this.peer.connectionTimeout;
    if (timeout > 0) this._timer = setTimeout(() => this._onTimeout(), timeout * 1000);
  }

  _cancelTimeout() {
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
  }

  _onTimeout() {
    this._timer = null;
    const timeout = this.peer.connectionTimeout;
    if (["new", "connecting"].includes(this.state)) this.fail(`not connected within ${timeout} s`);
    else if (this.state === "disconnected") this.fail(`disconnected for ${timeout} s`);
  }

  async fail(reason) {
    if (["failed", "closed"].includes(this.state)) return;
    this._setState("failed", reason);
    await this.shutdown(reason, true);
  }

  async shutdown(reason = "", failed = false) {
    if (this._closing) return;
    this._closing = true;
    this._cancelTimeout();
    this._cancelOfferTimer();
    clearTimeout(this._reofferTimer);
    this._stopLiveness();
    for (const incoming of [...this._incoming.values()]) this._endIncoming(incoming);
    this._incoming.clear();
    try {
      this.pc.close();
    } catch {
      // closing must finish whatever the browser thinks
    }
    this.channels.clear();
    this._setState("closed", reason || null);
    this.peer._remoteClosed(this, failed);
  }

  // -- the operations queue -----------------------------------------------------------------
  _enqueue(op, code) {
    if (this._closing) return Promise.resolve();
    const step = this._chain.then(async () => {
      if (this._closing) return;
      try {
        await op();
      } catch (error) {
        this._report(error, code);
        if (code === "PEER_NEGOTIATION_ERROR" && !this.pc.remoteDescription) {
          // The first exchange cannot be applied: this connection can never work.
          this.shutdown(`first negotiation failed: ${error.message || error}`);
        }
      }
    });
    this._chain = step;
    return step;
  }

  start() {
    this._enqueue(async () => {
      const pc = this.pc;
      // Skip if the remote's offer got here first: its exchange set up the connection.
      if (pc.signalingState === "stable" && !pc.remoteDescription && !pc.localDescription) await this._makeOffer();
    }, "PEER_NEGOTIATION_ERROR");
  }

  /** Ask for an offer (coalesced: one queued negotiation at a time). */
  negotiate() {
    if (this._negotiationQueued) return;
    this._negotiationQueued = true;
    this._enqueue(async () => {
      this._negotiationQueued = false;
      if (this.pc.signalingState !== "stable" || !this.controlOpen) {
        // Later: when the current exchange completes or the control channel opens.
        this._needsNegotiation = true;
        return;
      }
      await this._makeOffer();
    }, "PEER_NEGOTIATION_ERROR");
  }

  async _makeOffer() {
    this._needsNegotiation = false;
    const pc = this.pc;
    const via = this.controlOpen ? "control" : "driver";
    this._offerStarted = { at: performance.now(), via };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this._sendDescription(pc.localDescription, via);
    if (via === "control") this._armOfferTimer();
  }

  _armOfferTimer() {
    this._cancelOfferTimer();
    const seq = ++this._offerSeq;
    this._offerTimer = setTimeout(() => {
      this._offerTimer = null;
      if (seq === this._offerSeq) this._enqueue(() => this._withdraw(seq), "PEER_NEGOTIATION_ERROR");
    }, OFFER_TIMEOUT_MS);
  }

  _cancelOfferTimer() {
    clearTimeout(this._offerTimer);
    this._offerTimer = null;
  }

  /** Our offer got no answer: take it back (native rollback) and make it again. */
  async _withdraw(seq) {
    if (seq !== this._offerSeq || this.pc.signalingState !== "have-local-offer") return;
    await this.pc.setLocalDescription({ type: "rollback" });
    this._emit("signal:withdraw", { kind: "offer", via: "control",
      detail: `no answer within ${OFFER_TIMEOUT_MS / 1000} s: offering again` });
    await this._makeOffer();
  }

  receiveOffer(description, labels, via) {
    this._enqueue(() => this._onOffer(description, labels, via), "PEER_NEGOTIATION_ERROR");
  }

  receiveAnswer(description) {
    this._enqueue(() => this._onAnswer(description), "PEER_NEGOTIATION_ERROR");
  }

  receiveCandidate(candidate) {
    this._enqueue(() => this._onCandidate(candidate), "PEER_ICECANDIDATE_ERROR");
  }

  async _onOffer(description, labels, via) {
    const started = performance.now();
    const pc = this.pc;
    if (pc.signalingState !== "stable") {
      // Perfect negotiation: the impolite side keeps its offer and ignores the remote's; the
      // polite side rolls its own back (natively), answers, and offers again afterwards.
      if (!this.polite) {
        this._emit("signal:ignore", { kind: "offer", via, detail: "glare: the impolite side keeps its offer" });
        return;
      }
      await pc.setLocalDescription({ type: "rollback" });
      this._cancelOfferTimer();
      this._needsNegotiation = true;
      this._rolledBack = true;
      this._emit("signal:rollback", { kind: "offer", via, detail: "glare: the polite side rolls back" });
    }
    if (labels) this._labels = labels;
    await pc.setRemoteDescription(description);
    await pc.setLocalDescription(); // the answer
    this._sendDescription(pc.localDescription, via);
    this._emit("negotiation:done", { kind: "remote", via, detail: `${(performance.now() - started).toFixed(1)} ms` });
    await this._afterExchange();
  }

  async _onAnswer(description) {
    const pc = this.pc;
    if (pc.signalingState !== "have-local-offer") {
      this._emit("signal:ignore", { kind: "answer", detail: `no offer pending (${pc.signalingState})` });
      return;
    }
    if (mids(description.sdp) !== mids(pc.localDescription && pc.localDescription.sdp)) {
      // The answer to an offer we withdrew, arriving late: it does not fit the pending offer.
      this._emit("signal:ignore", { kind: "answer", detail: "answer to a withdrawn offer" });
      return;
    }
    this._cancelOfferTimer();
    await pc.setRemoteDescription(description);
    if (this._offerStarted) {
      const { at, via } = this._offerStarted;
      this._offerStarted = null;
      this._emit("negotiation:done", { kind: "local", via, detail: `${(performance.now() - at).toFixed(1)} ms` });
    }
    await this._afterExchange();
  }

  async _afterExchange() {
    await this._applyQueuedCandidates();
    this._syncIncoming();
    if (this._rolledBack) {
      // Offer our rolled-back changes once the remote has had time to apply our answer.
      this._rolledBack = false;
      this._reofferTimer = setTimeout(() => this.negotiate(), REOFFER_DELAY_MS);
    } else if (this._needsNegotiation && this.controlOpen && this.pc.signalingState === "stable") {
      await this._makeOffer();
    }
  }

  _sendDescription(description, via) {
    const desc = { type: description.type, sdp: description.sdp };
    if (via === "control" && this.controlOpen) {
      if (desc.type === "offer") {
        // The label map rides every offer: MediaStream id -> label of what we publish.
        const labels = {};
        for (const [label, stream] of this.peer.streams) labels[stream.id] = label;
        this._sendControl(["offer", desc, labels], "offer");
      } else {
        this._sendControl(["answer", desc], "answer");
      }
    } else if (desc.type === "offer") {
      this.peer._sendDirect(this.id, [OFFER, this.peer.id, desc, this.peer.metadata], "offer");
    } else {
      this.peer._sendDirect(this.id, [ANSWER, this.peer.id, desc], "answer");
    }
  }

  // -- candidates ---------------------------------------------------------------------------
  _sendCandidate(candidate) {
    if (this.controlOpen) this._sendControl(["candidate", candidate], "candidate");
    else this.peer._sendDirect(this.id, [CANDIDATE, this.peer.id, candidate], "candidate");
  }

  async _onCandidate(candidate) {
    const remote = this.pc.remoteDescription;
    if (!remote || (candidate && candidate.usernameFragment && candidate.usernameFragment !== ufragOf(remote.sdp))) {
      // docs/PROTOCOL.md: held until the description it belongs to is applied.
      if (!candidate) return;
      if (this._pendingCandidates.length < MAX_QUEUED_CANDIDATES) this._pendingCandidates.push(candidate);
      else this._emit("signal:drop", { kind: "candidate", detail: `more than ${MAX_QUEUED_CANDIDATES} candidates before their description` });
      return;
    }
    await this._addCandidate(candidate);
  }

  async _applyQueuedCandidates() {
    const queued = this._pendingCandidates;
    this._pendingCandidates = [];
    const ufrag = ufragOf(this.pc.remoteDescription && this.pc.remoteDescription.sdp);
    for (const candidate of queued) {
      if (!candidate.usernameFragment || candidate.usernameFragment === ufrag) await this._addCandidate(candidate);
    }
  }

  async _addCandidate(candidate) {
    try {
      await this.pc.addIceCandidate(candidate || undefined);
    } catch (error) {
      throw new PeerixError("PEER_ICECANDIDATE_ERROR", `bad candidate ${JSON.stringify(candidate)}: ${error.message}`, error);
    }
  }

  // -- the control channel ------------------------------------------------------------------
  _onControlOpen(control) {
    if (control !== this._control || this._closing) return;
    this.controlOpen = true;
    this._emit("control:open", { state: "open" });
    this._startLiveness(control);
    for (const options of this.peer.channels.values()) this.openChannel(options);
    this._enqueue(() => this._syncOutgoing(), "PEER_MEDIASTREAM_ERROR");
    if (this._needsNegotiation) this.negotiate();
  }

  _sendControl(message, kind) {
    const data = JSON.stringify(message);
    try {
      this._control.send(data);
    } catch (error) {
      this._report(error, "PEER_SIGNALING_ERROR");
      return;
    }
    if (this._liveness) this._liveness.queued += utf8.encode(data).length; // what bufferedAmount counts
    this._emit("signal:send", { kind, via: "control", size: data.length });
  }

  _onControlMessage(control, data) {
    if (control !== this._control || this._closing) return;
    try {
      if (typeof data !== "string") throw new Error("control message is binary, expected JSON text");
      if (data.length > MAX_CONTROL_MESSAGE) throw new Error(`control message of ${data.length} characters is too large`);
      const message = JSON.parse(data);
      if (!Array.isArray(message) || typeof message[0] !== "string") throw new Error("control message is not a JSON array [name, ...]");
      const [name, body, extra] = message;
      if (name === "ping" && this._liveness) this._liveness.heard = performance.now();
      // docs/PROTOCOL.md: unknown event names are ignored (peerix_nb peers ping every second).
      if (!["offer", "answer", "candidate", "channel"].includes(name)) return;
      this._emit("signal:recv", { kind: name, via: "control", size: data.length });
      if (name === "channel") this._onChannelRequest(body);
      else if (name === "candidate") this.receiveCandidate(checkCandidate(body));
      else {
        if (!body || body.type !== name || typeof body.sdp !== "string") throw new Error(`control ${name} without a valid {type, sdp} description`);
        if (name === "offer") {
          const labels = {};
          if (extra && typeof extra === "object" && !Array.isArray(extra)) {
            for (const [k, v] of Object.entries(extra)) labels[String(k)] = String(v);
          }
          this.receiveOffer({ type: "offer", sdp: body.sdp }, labels, "control");
        } else {
          this.receiveAnswer({ type: "answer", sdp: body.sdp });
        }
      }
    } catch (error) {
      this._report(wrap(error, "PEER_SIGNALING_ERROR"), "PEER_SIGNALING_ERROR");
    }
  }

  // -- liveness (see DrainWatch for why) ----------------------------------------------------
  /** Ping on the control channel every PING_INTERVAL and watch it drain, until shutdown. */
  _startLiveness(control) {
    this._stopLiveness();
    // heard: when the remote's last ping came. A remote that pings (a peerix_nb peer, not
    // browser Peerix) and stops for STALL_AFTER is gone: the page's strongest signal, since
    // neither SCTP acks nor (for small pings) bufferedAmount show a silent remote.
    const live = { control, watch: new DrainWatch(), lastPing: -Infinity, queued: 0, timer: null, heard: null };
    live.timer = setInterval(() => this._livenessTick(), (PING_INTERVAL * 1000) / 4);
    this._liveness = live;
    this._livenessTick();
  }

  _stopLiveness() {
    if (this._liveness) clearInterval(this._liveness.timer);
    this._liveness = null;
  }

  _livenessTick(now = performance.now()) {
    const live = this._liveness;
    if (!live) return;
    const control = live.control;
    if (this._closing || control !== this._control || control.readyState !== "open") {
      this._stopLiveness();
      return;
    }
    if (now - live.lastPing >= PING_INTERVAL * 1000) {
      try {
        control.send(PING);
        live.queued += PING.length;
      } catch {
        // the channel is closing: its onclose ends the remote
      }
      live.lastPing = now;
    }
    const queued = live.queued;
    live.queued = 0;
    const silent = live.heard !== null && now - live.heard >= STALL_AFTER * 1000;
    const alive = live.watch.alive(now, control.bufferedAmount, queued) && !silent;
    if (!alive && this.state === "connected") {
      this._stalled = true;
      this._setState("disconnected", silent ? "no ping from the remote" : "control channel not draining");
      this._armTimeout();
    } else if (alive && this._stalled) {
      this._stalled = false;
      // Back to connected only if ICE agrees (its own `disconnected` waits for ICE).
      if (this.state === "disconnected" && this.pc.connectionState === "connected") {
        this._cancelTimeout();
        this._setState("connected", "control channel draining again");
      }
    }
  }

  _tooManyChannels(label) {
    if (this.channels.has(label) || this.channels.size < MAX_CHANNELS) return false;
    this._report(new PeerixError("PEER_DATACHANNEL_ERROR",
      `channel ${JSON.stringify(label)} refused: ${MAX_CHANNELS} channels to ${this.id} already`), "PEER_DATACHANNEL_ERROR");
    return true;
  }

  // -- data channels ------------------------------------------------------------------------
  /** Create (impolite side) or request (polite side) channel `options.label`. */
  openChannel(options) {
    const existing = this.channels.get(options.label);
    if (existing && ["connecting", "open"].includes(existing.readyState)) return;
    if (!this.controlOpen) return; // created when the control channel opens
    if (this._tooManyChannels(options.label)) return;
    if (this.polite) {
      this._sendControl(["channel", channelWire(options)], "channel");
      return;
    }
    try {
      this._registerChannel(this.pc.createDataChannel(options.label, channelInit(options)));
    } catch (error) {
      this._report(error, "PEER_DATACHANNEL_ERROR");
    }
  }

  _onChannelRequest(body) {
    if (this.polite) return; // only the impolite side creates channels
    if (!body || typeof body !== "object" || typeof body.label !== "string" || !body.label) {
      this._report(new PeerixError("PEER_DATACHANNEL_ERROR", "bad channel request"), "PEER_DATACHANNEL_ERROR");
      return;
    }
    this.openChannel(body);
  }

  closeChannel(label) {
    const channel = this.channels.get(label);
    if (channel) channel.close();
  }

  _registerChannel(channel) {
    const label = channel.label;
    if (this._tooManyChannels(label)) {
      channel.close();
      return;
    }
    channel.binaryType = "arraybuffer";
    const old = this.channels.get(label);
    this.channels.set(label, channel); // one channel per label: the newer replaces the older
    if (old && old !== channel) old.close();
    const onOpen = () => this._emit("channel:open", { channel, label, state: "open" });
    channel.onopen = onOpen;
    channel.onclose = () => {
      if (this.channels.get(label) === channel) this.channels.delete(label);
      this._emit("channel:close", { channel, label, state: "closed" });
    };
    channel.onerror = (event) => this._emit("channel:error", { channel, label,
      error: new PeerixError("PEER_DATACHANNEL_ERROR", String(event.error && event.error.message || "channel error")) });
    channel.onmessage = ({ data }) => this._emit("channel:message", { channel, label, data });
    this._emit("channel:new", { channel, label, state: channel.readyState });
    if (channel.readyState === "open") onOpen();
  }

  send(data, label = null) {
    if (label !== null) {
      const channel = this.channels.get(label);
      if (!channel || channel.readyState !== "open") return 0;
      channel.send(data);
      return 1;
    }
    let sent = 0;
    for (const channel of this.channels.values()) {
      if (channel.readyState === "open") {
        channel.send(data);
        sent += 1;
      }
    }
    return sent;
  }

  // -- outgoing media -----------------------------------------------------------------------
  syncStreams() {
    if (!this.controlOpen || this._closing) return Promise.resolve(); // done when it opens
    return this._enqueue(() => this._syncOutgoing(), "PEER_MEDIASTREAM_ERROR");
  }

  async _syncOutgoing() {
    // As browser Peerix does (docs/PROTOCOL.md "Media"): a republish under the same label swaps
    // a track of the same kind with replaceTrack, new tracks get their own sendonly
    // transceiver, and what is no longer published is stopped: the next offer rejects its
    // m-line (port 0), and the browser may recycle that m-line later.
    const pc = this.pc;
    const wanted = new Map(); // track -> {stream, label}
    for (const [label, stream] of this.peer.streams) {
      for (const track of stream.getTracks()) wanted.set(track, { stream, label });
    }
    let changed = false;

    // 1. Senders whose track is no longer published (or moved to another stream) go idle.
    const assigned = new Set();
    for (const out of this._outgoing) {
      const want = wanted.get(out.track);
      if (!want || want.stream.id !== out.streamId || assigned.has(out.track)) {
        out.track = null;
      } else {
        assigned.add(out.track);
      }
    }
    // 2. New tracks: an idle sender of the same label and kind swaps its track (republish),
    //    else a new sendonly transceiver whose msid is the stream's id.
    for (const [track, { stream, label }] of wanted) {
      if (assigned.has(track)) continue;
      let out = this._outgoing.find((o) => !o.track && o.kind === track.kind && o.label === label);
      if (out) {
        await out.transceiver.sender.replaceTrack(track);
        out.transceiver.sender.setStreams(stream);
        if (out.streamId !== stream.id) changed = true; // the msid changes: renegotiate
      } else {
        const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
        out = { transceiver, kind: track.kind };
        this._outgoing.push(out);
        changed = true;
      }
      out.track = track;
      out.label = label;
      out.streamId = stream.id;
      assigned.add(track);
    }
    // 3. Unpublished: stopped for good.
    for (const out of this._outgoing.filter((o) => !o.track)) {
      out.transceiver.stop();
      changed = true;
    }
    this._outgoing = this._outgoing.filter((o) => o.track);
    if (changed) {
      if (pc.signalingState === "stable") await this._makeOffer();
      else this._needsNegotiation = true;
    }
  }


  // -- incoming media -----------------------------------------------------------------------
  /** Turn the negotiated directions and msids into track/stream add and remove events. */
  _syncIncoming() {
    const pc = this.pc;
    if (pc.signalingState !== "stable" || !pc.remoteDescription) return;
    const media = msidsOf(pc.remoteDescription.sdp);
    const current = new Map();
    for (const transceiver of pc.getTransceivers()) {
      const mid = transceiver.mid;
      const m = mid !== null ? media.get(mid) : null;
      if (!m || !["recvonly", "sendrecv"].includes(transceiver.currentDirection)) continue;
      const streamId = m.streamId && m.streamId !== "-" ? m.streamId : `mid-${mid}`;
      current.set(mid, { transceiver, streamId });
    }
    for (const [mid, incoming] of [...this._incoming]) {
      if (!current.has(mid) || current.get(mid).streamId !== incoming.streamId) {
        this._incoming.delete(mid);
        this._endIncoming(incoming);
      }
    }
    for (const [mid, { transceiver, streamId }] of current) {
      if (!this._incoming.has(mid)) this._startIncoming(mid, transceiver, streamId);
    }
    this._applyLabels();
  }

  /** A stream first seen in an answer (no label map: labels ride on offers) is shown under its
   *  id; when an offer names it, announce it again under its label (remote.py does the same). */
  _applyLabels() {
    for (const [old, stream] of [...this.streams]) {
      const label = this._labels[stream.peerixId] || stream.peerixId;
      if (label === old || this.streams.has(label)) continue;
      this.streams.delete(old);
      this.streams.set(label, stream);
      for (const incoming of this._incoming.values()) {
        if (incoming.stream === stream) incoming.label = label;
      }
      this._emit("stream:remove", { stream, label: old, detail: stream.peerixId });
      this._emit("stream:add", { stream, label, detail: stream.peerixId });
    }
  }

  _startIncoming(mid, transceiver, streamId) {
    const track = transceiver.receiver.track;
    const label = this._labels[streamId] || streamId;
    let stream = [...this.streams.values()].find((s) => s.peerixId === streamId);
    const isNew = !stream;
    if (!stream) {
      // Our own MediaStream object, named by the msid stream id (its label from the last offer).
      stream = new MediaStream();
      Object.defineProperty(stream, "peerixId", { value: streamId });
      this.streams.set(label, stream);
    }
    stream.addTrack(track);
    this._incoming.set(mid, { mid, streamId, label, track, stream });
    if (isNew) this._emit("stream:add", { stream, label, detail: streamId });
    this._emit("track:add", { stream, track, label, kind: track.kind, detail: streamId });
  }

  _endIncoming({ stream, track, label, streamId }) {
    stream.removeTrack(track);
    this._emit("track:remove", { stream, track, label, kind: track.kind, detail: streamId });
    if (!stream.getTracks().length && this.streams.get(label) === stream) {
      this.streams.delete(label);
      this._emit("stream:remove", { stream, label, detail: streamId });
    }
  }
}
