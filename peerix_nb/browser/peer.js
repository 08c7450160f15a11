// A Peerix v0.1 room peer on the browser's own RTCPeerConnection (PROTOCOL.md, all of it).
//
// Peer: joins a room through a driver, keeps one Remote per remote peer (full mesh), fans out
// data channels and published MediaStreams. Remote: one RTCPeerConnection — the operations
// chain, offers/answers with perfect negotiation (native rollback), trickled candidates, the
// control channel, channel roles, the label map of published streams, states and timeouts.
//
// It interoperates with peerix_nb's Python peers (aiortc), which shaped a few choices noted
// where they are made; event names and fields are the Python Peer's, so the kernel can log
// them into an EventLog with the same schema.

import { Emitter } from "./events.js";
import {
  ANSWER,
  CANDIDATE,
  JOIN,
  LEAVE,
  OFFER,
  PeerixError,
  SignalingCodec,
  checkCandidate,
} from "./codec.js";
import { randomId } from "./ids.js";

const MAX_QUEUED_CANDIDATES = 100;
const MAX_CONTROL_MESSAGE = 1 << 20;
const MAX_REMOTES = 64;
/** How long a held offer (the glare test knob) waits for the remote's offer. */
const HOLD_OFFER_MS = 5000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function wrap(error, code) {
  if (error instanceof PeerixError) return error;
  return new PeerixError(code, error && error.message ? error.message : String(error), error);
}

/** `a=ice-ufrag` of an SDP (the first one: with max-bundle every m-line shares it). */
export function ufragOf(sdp) {
  const match = /^a=ice-ufrag:(\S+)/m.exec(sdp || "");
  return match ? match[1] : null;
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

/**
 * RTP header-extension ids the Python side (aiortc) always offers. aiortc numbers every offer
 * from this fixed table; Chrome refuses a remote offer that maps an id to another URI than its
 * bundle already uses ("RTP extension ID reassignment not supported"), and after a native
 * rollback it still remembers the ids of the offer it rolled back. So our offers use these ids
 * for these URIs (and keep 1-3 free for them), and the two sides never disagree.
 */
const ALIGNED_EXTMAP = {
  "urn:ietf:params:rtp-hdrext:sdes:mid": 1,
  "urn:ietf:params:rtp-hdrext:ssrc-audio-level": 2,
  "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": 3,
};

/** An offer's SDP with the header-extension ids of ALIGNED_EXTMAP (one mapping per SDP). */
export function alignExtmap(sdp) {
  const line = /^a=extmap:(\d+)(\/\w+)? (\S+)(.*)$/gm;
  const ids = new Map(); // uri -> id as offered
  for (const m of sdp.matchAll(line)) ids.set(m[3], Number(m[1]));
  const reserved = new Set(Object.values(ALIGNED_EXTMAP));
  const mapping = new Map();
  const taken = new Set(reserved);
  for (const [uri, id] of ids) {
    if (uri in ALIGNED_EXTMAP) mapping.set(uri, ALIGNED_EXTMAP[uri]);
    else if (!reserved.has(id)) {
      mapping.set(uri, id);
      taken.add(id);
    }
  }
  for (const [uri] of ids) {
    if (mapping.has(uri)) continue;
    let free = 1;
    while (taken.has(free)) free += 1;
    mapping.set(uri, free);
    taken.add(free);
  }
  return sdp.replace(line, (_all, _id, dir, uri, rest) => `a=extmap:${mapping.get(uri)}${dir || ""} ${uri}${rest}`);
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
   *   connectionTimeout (s, 0 = none), compression, hashing, encryptionKey, maxRemotes
   */
  constructor({ id = null, driver, iceServers = [], iceTransportPolicy = "all", connectionTimeout = 15,
    compression = true, hashing = false, encryptionKey = null, maxRemotes = MAX_REMOTES } = {}) {
    super();
    if (!driver) throw new TypeError("a Peer needs a driver");
    this.id = id || randomId();
    this.driver = driver;
    this.configuration = { iceServers, iceTransportPolicy, bundlePolicy: "max-bundle" };
    this.connectionTimeout = connectionTimeout;
    this.maxRemotes = maxRemotes;
    this.codec = new SignalingCodec({ compression, hashing, encryptionKey });
    this.room = "";
    this.metadata = null;
    this.joined = false;
    this._joining = null; // the pending join(), so a second call waits for it
    this.connections = new Map(); // remote id -> Remote
    this.channels = new Map(); // label -> options, for current and future remotes
    this.streams = new Map(); // label -> MediaStream we publish
    // Test knobs: holdOffers makes the next renegotiation offer over the control channel wait
    // until the remote's own offer arrives (up to HOLD_OFFER_MS), then go out first, so
    // that two publishes "at the same moment" really collide (glare tests).
    this.testing = { holdOffers: false };
    this._namespaces = [];
    this._sendChain = Promise.resolve();
    this._recvChain = Promise.resolve();
    this._onRoom = (data) => this._receive(data, false);
    this._onDirect = (data) => this._receive(data, true);
    this._driverHandlers = {
      active: () => {
        this._emit("driver:active", { state: "active" });
        if (this.joined) this._announceLater();
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
  async join(room = "default", metadata = null) {
    if (typeof room !== "string" || !room) throw new PeerixError("PEER_SIGNALING_ERROR", "room must be a non-empty string");
    if (this.joined || this._joining) {
      // One room at a time, as in peer.py: silently staying in the other room would mislead.
      if (room !== this.room) {
        throw new PeerixError("PEER_SIGNALING_ERROR",
          `this peer is already in room ${JSON.stringify(this.room)} (a peer is in one room at a time): leave() before joining ${JSON.stringify(room)}`);
      }
      return this._joining || undefined;
    }
    this.room = room;
    this.metadata = metadata;
    this._joining = this._join(room).finally(() => { this._joining = null; });
    return this._joining;
  }

  async _join(room) {
    this._namespaces = [await this.codec.namespace([room]), await this.codec.namespace([room, this.id])];
    await this.driver.subscribe(this._namespaces[0], this._onRoom);
    await this.driver.subscribe(this._namespaces[1], this._onDirect);
    for (const [name, handler] of Object.entries(this._driverHandlers)) this.driver.on(name, handler);
    this.joined = true;
    this._emit("room:join", { state: "joined", detail: room });
    if (!this.driver.active) this._emit("driver:inactive", { state: "inactive", detail: "waiting for the driver" });
    await this._announce();
  }

  async leave() {
    if (!this.joined) return;
    this.joined = false;
    for (const [name, handler] of Object.entries(this._driverHandlers)) this.driver.off(name, handler);
    try {
      if (this.driver.active) await this._dispatch(this._namespaces[0], [LEAVE, this.id], "leave", null);
    } catch (error) {
      this._report(error, "PEER_SIGNALING_ERROR");
    }
    await Promise.all([...this.connections.values()].map((r) => r.shutdown("left the room")));
    this.connections.clear();
    await this.driver.unsubscribe(this._namespaces[0], this._onRoom).catch((e) => this._report(e));
    await this.driver.unsubscribe(this._namespaces[1], this._onDirect).catch((e) => this._report(e));
    this._namespaces = [];
    this._emit("room:leave", { state: "left", detail: this.room });
  }

  async _announce(to = null) {
    if (!this.joined || !this.driver.active) return;
    const namespace = to === null ? this._namespaces[0] : await this.codec.namespace([this.room, to]);
    await this._dispatch(namespace, [JOIN, this.id, this.metadata], "join", null);
  }

  _announceLater(to = null) {
    // PROTOCOL.md: a random 0-1000 ms delay, so a room that lost its driver does not stampede.
    setTimeout(() => this._announce(to).catch((e) => this._report(e, "PEER_SIGNALING_ERROR")),
      Math.random() * 1000);
  }

  // -- driver messages ----------------------------------------------------------------------
  /**
   * Encode and dispatch in order: encoding is asynchronous (CompressionStream, WebCrypto) and a
   * small CANDIDATE must never overtake the OFFER it belongs to (the receiver would drop it,
   * having no connection for that sender yet).
   */
  _dispatch(namespace, message, kind, remote) {
    const step = this._sendChain.then(async () => {
      const data = await this.codec.encode(message);
      await this.driver.dispatch(namespace, data);
      this._emit("signal:send", { remote, kind, via: "driver", size: data.length });
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
    if (message.sender === this.id) return; // our own broadcast, echoed by the driver
    const remote = this.connections.get(message.sender) || null;
    this._emit("signal:recv", { remote, kind: message.kind, via: "driver", size: data.length,
      detail: remote ? null : message.sender });
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
        remote.shutdown("remote restarted the connection").then(() => this._admit(message));
        return;
      }
      this._admit(message);
    } else if (message.type === OFFER) {
      if (remote && remote.controlOpen) {
        if (remote.state === "connected") {
          // Renegotiation rides the control channel: a driver offer for a live connection is
          // stale or replayed and must not tear it down.
          this._ignore(message, remote, "driver offer for a live connection");
          return;
        }
        remote.shutdown("remote restarted the connection").then(() => this._admit(message));
      } else if (remote) {
        remote.receiveOffer(message.description, null, "driver");
      } else {
        this._admit(message);
      }
    } else if (message.type === ANSWER || message.type === CANDIDATE) {
      if (!remote) {
        this._emit("signal:drop", { kind: message.kind, via: "driver", detail: `no connection to ${sender}` });
        return;
      }
      if (message.type === ANSWER) remote.receiveAnswer(message.description);
      else remote.receiveCandidate(message.candidate);
    } else if (message.type === LEAVE && remote) {
      remote.shutdown("remote left");
    }
  }

  _ignore(message, remote, why) {
    this._emit("signal:ignore", { remote, kind: message.kind, via: "driver", detail: why });
  }

  _admit(message) {
    if (!this.joined) return;
    if (this.connections.size >= this.maxRemotes) {
      this._emit("signal:reject", { kind: message.kind, via: "driver",
        detail: `${message.sender}: room full (${this.maxRemotes} remotes)` });
      return;
    }
    const remote = new Remote(this, message.sender, message.metadata);
    this.connections.set(remote.id, remote);
    if (message.type === JOIN) remote.start(); // we were here first: we offer
    else remote.receiveOffer(message.description, null, "driver");
  }

  _remoteClosed(remote, failed) {
    if (this.connections.get(remote.id) === remote) this.connections.delete(remote.id);
    if (failed && this.joined) {
      // PROTOCOL.md: after `failed`, JOIN that remote directly (after 0-1 s) to try again.
      setTimeout(() => {
        const current = this.connections.get(remote.id);
        if (current && !["failed", "closed"].includes(current.state)) return;
        this._announce(remote.id).catch((e) => this._report(e, "PEER_SIGNALING_ERROR"));
      }, Math.random() * 1000);
    }
  }

  // -- data channels ------------------------------------------------------------------------
  /** Open channel `label` to every remote, now and later. */
  open(label = "default", options = {}) {
    checkLabel(label);
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

export class Remote {
  constructor(peer, id, metadata) {
    this.peer = peer;
    this.id = id;
    this.metadata = metadata;
    this.room = peer.room;
    this.polite = peer.id > id; // PROTOCOL.md: plain string comparison
    this.state = "new";
    this.streams = new Map(); // label -> remote MediaStream
    this.channels = new Map(); // label -> RTCDataChannel
    this.controlOpen = false;
    this._chain = Promise.resolve(); // the operations queue: one description at a time
    this._negotiationQueued = false;
    this._needsNegotiation = false;
    this._pendingCandidates = [];
    this._labels = {}; // remote stream id -> label, from the remote's last offer
    this._outgoing = []; // {transceiver, kind, track, streamId}
    this._incoming = new Map(); // mid -> {streamId, label, track, stream}
    this._closing = false;
    this._timer = null;
    this._offerStarted = null;
    this._remoteOfferArrived = null; // resolver, while an offer is held (testing.holdOffers)
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
    // The control channel: negotiated on both sides before the first offer (PROTOCOL.md).
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
    for (const incoming of [...this._incoming.values()]) this._endIncoming(incoming);
    this._incoming.clear();
    if (this._remoteOfferArrived) this._remoteOfferArrived();
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
    await pc.setLocalDescription({ type: "offer", sdp: alignExtmap(offer.sdp) });
    if (via === "control" && this.peer.testing.holdOffers) {
      // Glare test knob: wait for the remote's offer, then send ours first, so both cross.
      this.peer.testing.holdOffers = false; // one offer only: the re-offer after glare goes out
      this._emit("signal:hold", { kind: "offer", via, detail: "holding our offer until the remote offers" });
      await Promise.race([
        new Promise((resolve) => { this._remoteOfferArrived = resolve; }),
        sleep(HOLD_OFFER_MS),
      ]);
      this._remoteOfferArrived = null;
      if (this._closing) return;
    }
    this._sendDescription(pc.localDescription, via);
  }

  receiveOffer(description, labels, via) {
    if (this._remoteOfferArrived) this._remoteOfferArrived();
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
      this._needsNegotiation = true;
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
    if (this._needsNegotiation && this.controlOpen && this.pc.signalingState === "stable") await this._makeOffer();
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
      // PROTOCOL.md: held until the description it belongs to is applied.
      if (candidate && this._pendingCandidates.length < MAX_QUEUED_CANDIDATES) this._pendingCandidates.push(candidate);
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
      // PROTOCOL.md: unknown event names are ignored (the Python side sends ["ping"] every second).
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

  // -- data channels ------------------------------------------------------------------------
  /** Create (impolite side) or request (polite side) channel `options.label`. */
  openChannel(options) {
    const existing = this.channels.get(options.label);
    if (existing && ["connecting", "open"].includes(existing.readyState)) return;
    if (!this.controlOpen) return; // created when the control channel opens
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
    const pc = this.pc;
    const wanted = new Map(); // track -> stream
    for (const stream of this.peer.streams.values()) for (const track of stream.getTracks()) wanted.set(track, stream);
    const before = this._outgoing.map((o) => `${o.transceiver.direction}|${o.streamId}`).join(",");

    // 1. Senders whose track is no longer published (or moved to another stream) go idle.
    const assigned = new Set();
    for (const out of this._outgoing) {
      if (!out.track) continue;
      const stream = wanted.get(out.track);
      if (!stream || stream.id !== out.streamId || assigned.has(out.track)) {
        await out.transceiver.sender.replaceTrack(null);
        out.track = null;
        out.streamId = null;
      } else {
        assigned.add(out.track);
      }
    }
    // 2. New tracks take an idle sender of their kind (m-lines are never removed), or a new
    //    sendonly transceiver whose msid is the stream's id (PROTOCOL.md "Media").
    for (const [track, stream] of wanted) {
      if (assigned.has(track)) continue;
      let out = this._outgoing.find((o) => !o.track && o.kind === track.kind);
      if (out) {
        await out.transceiver.sender.replaceTrack(track);
        out.transceiver.sender.setStreams(stream);
      } else {
        const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
        out = { transceiver, kind: track.kind };
        this._outgoing.push(out);
      }
      out.track = track;
      out.streamId = stream.id;
      assigned.add(track);
    }
    // 3. Directions: send while a track is set; keep receiving what we receive.
    for (const out of this._outgoing) {
      const receiving = ["recvonly", "sendrecv"].includes(out.transceiver.direction);
      const sending = !!out.track;
      out.transceiver.direction = ["inactive", "recvonly", "sendonly", "sendrecv"][2 * sending + receiving];
    }
    const after = this._outgoing.map((o) => `${o.transceiver.direction}|${o.streamId}`).join(",");
    if (after !== before) {
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
