// @ts-check
// Remote: one RTCPeerConnection to one remote peer of the room (remote.py's RemotePeer) — the
// operations chain, offers/answers with perfect negotiation (native rollback) and the
// withdrawal of an unanswered offer, trickled candidates, the control channel and its liveness
// pings, channel roles, the label map of published streams, states and timeouts.
//
// It sends exactly what the browser's RTCPeerConnection produces, as browser Peerix does
// (docs/PROTOCOL.md). It reaches its Peer only through RemoteHost below. Its parts that stand
// alone are functions of the Remote beside it: candidates.js (held until their description),
// channels.js (one per label), control.js (what arrives on the control channel), liveness.js
// (the fast `disconnected`), media.js (senders and incoming tracks).

import { ANSWER, CANDIDATE, OFFER, PeerixError, checkCandidate } from "./codec.js";
import { applyQueuedCandidates, onCandidate } from "./candidates.js";
import { channelInit, channelWire, registerChannel, tooManyChannels } from "./channels.js";
import { CONTROL_EVENTS, controlDescription, offerLabels, parseControl } from "./control.js";
import { PingWatch, livenessTick } from "./liveness.js";
import { endIncoming, syncIncoming, syncOutgoing } from "./media.js";
import { mids } from "./sdp.js";

/** A renegotiation offer without an answer this long is withdrawn and made again (remote.py
 *  OFFER_TIMEOUT): a remote busy with its own offer may ignore ours without a word. */
const OFFER_TIMEOUT_MS = 3000;
/** After answering a colliding offer, wait this long before offering our own changes again, so
 *  the re-offer does not reach the remote while it still applies our answer (REOFFER_DELAY). */
const REOFFER_DELAY_MS = 200;
const utf8 = new TextEncoder();

/** @typedef {"new" | "connecting" | "connected" | "disconnected" | "failed" | "closed"} ConnectionState */
/** How a signaling message travels: through the driver, or on the control channel. @typedef {"driver" | "control"} Via */
/** @typedef {import("./channels.js").ChannelOptions} ChannelOptions */
/** @typedef {import("./media.js").RemoteStream} RemoteStream */
/** @typedef {import("./media.js").Outgoing} Outgoing */
/** @typedef {import("./media.js").Incoming} Incoming */
/**
 * What a Remote uses of its Peer (peer.js), and nothing more: the seam between the two.
 * @typedef {object} RemoteHost
 * @property {string} id
 * @property {string} room
 * @property {any} metadata
 * @property {RTCConfiguration} configuration
 * @property {number} connectionTimeout seconds, 0 = none
 * @property {Map<string, ChannelOptions>} channels the channels to open to every remote
 * @property {Map<string, MediaStream>} streams label -> what we publish
 * @property {(name: string, fields?: Record<string, any>) => void} _emit
 * @property {(error: any, code?: string, remote?: Remote | null) => void} _report
 * @property {(remoteId: string, message: any[], kind: string) => void} _sendDirect
 * @property {(remote: Remote, failed: boolean) => void} _remoteClosed
 */

export class Remote {
  /**
   * @param {RemoteHost} peer
   * @param {string} id the remote's peer id
   * @param {any} metadata what its JOIN or OFFER announced
   */
  constructor(peer, id, metadata) {
    this.peer = peer;
    this.id = id;
    this.metadata = metadata;
    this.room = peer.room;
    this.polite = peer.id > id; // docs/PROTOCOL.md: plain string comparison
    /** @type {ConnectionState} */
    this.state = "new";
    /** @type {Map<string, RemoteStream>} label -> remote MediaStream */
    this.streams = new Map();
    /** @type {Map<string, RTCDataChannel>} label -> RTCDataChannel */
    this.channels = new Map();
    this.controlOpen = false;
    /** @type {Promise<void>} the operations queue: one description at a time */
    this._chain = Promise.resolve();
    this._negotiationQueued = false;
    this._needsNegotiation = false;
    /** @type {RTCIceCandidateInit[]} */
    this._pendingCandidates = [];
    /** @type {Record<string, string>} remote stream id -> label, from the remote's last offer */
    this._labels = {};
    /** @type {Outgoing[]} {transceiver, kind, track, label, streamId}: what we send */
    this._outgoing = [];
    /** @type {Map<string, Incoming>} mid -> {streamId, label, track, stream} */
    this._incoming = new Map();
    this._closing = false;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._timer = null;
    /** @type {{ at: number, via: Via } | null} */
    this._offerStarted = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._offerTimer = null; // OFFER_TIMEOUT_MS of our pending renegotiation offer
    this._offerSeq = 0; // counts our offers, so a late timer knows its offer is gone
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._reofferTimer = null;
    this._rolledBack = false; // the current exchange answered after a rollback
    /** @type {PingWatch | null} the control channel's pings and drain watch (_startLiveness) */
    this._liveness = null;
    this._stalled = false; // `disconnected` came from that watch
    /** @type {RTCDataChannel} set by _createConnection */
    this._control = null;
    this.pc = this._createConnection();
    this._emit("connection:new", { state: "new", detail: this.polite ? "polite" : "impolite" });
    this._armTimeout();
  }

  /** @param {string} name @param {Record<string, any>} [fields] */
  _emit(name, fields = {}) {
    this.peer._emit(name, { remote: this, ...fields });
  }

  /** @param {any} error @param {string} code */
  _report(error, code) {
    this.peer._report(error, code, this);
  }

  /** @param {ConnectionState} state @param {string | null} [detail] */
  _setState(state, detail = null) {
    if (this.state === state || this.state === "closed") return;
    this.state = state;
    this._emit(`connection:${state}`, { state, detail });
  }

  // -- the connection -----------------------------------------------------------------------
  /** @returns {RTCPeerConnection} */
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

  /** @param {RTCPeerConnectionState} state */
  _onConnectionState(state) {
    if (state === "connecting" && this.state === "new") this._setState("connecting");
    else if (state === "connected") {
      // The deadline holds until the control channel is open too: a DTLS handshake can finish
      // on this side while the remote rejected our certificate (a tampered fingerprint), and
      // then no channel ever opens (docs/PROTOCOL.md, connection timeout).
      if (this.controlOpen) this._cancelTimeout();
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
    else if (this.state === "connected" && !this.controlOpen) {
      this.fail(`connected, but the control channel did not open within ${timeout} s`);
    }
  }

  /** `failed`, then closed (the Peer JOINs this remote again). @param {string} reason */
  async fail(reason) {
    if (["failed", "closed"].includes(this.state)) return;
    this._setState("failed", reason);
    await this.shutdown(reason, true);
  }

  /**
   * Close the connection for good (`closed`) and tell the Peer.
   * @param {string} [reason]
   * @param {boolean} [failed]
   */
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
  /**
   * Run `op` after every earlier operation; its failure is an `error` event with `code`.
   * @param {() => Promise<void>} op
   * @param {string} code
   * @returns {Promise<void>}
   */
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

  /** The first offer: we were in the room first. */
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
    /** @type {Via} */
    const via = this.controlOpen ? "control" : "driver";
    this._emit("negotiation:start", { kind: "local", via });
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

  /** Our offer got no answer: take it back (native rollback) and make it again. @param {number} seq */
  async _withdraw(seq) {
    if (seq !== this._offerSeq || this.pc.signalingState !== "have-local-offer") return;
    await this.pc.setLocalDescription({ type: "rollback" });
    this._emit("signal:withdraw", { kind: "offer", via: "control",
      detail: `no answer within ${OFFER_TIMEOUT_MS / 1000} s: offering again` });
    await this._makeOffer();
  }

  /**
   * @param {RTCSessionDescriptionInit} description
   * @param {Record<string, string> | null} labels the label map riding a control offer
   * @param {Via} via
   */
  receiveOffer(description, labels, via) {
    this._enqueue(() => this._onOffer(description, labels, via), "PEER_NEGOTIATION_ERROR");
  }

  /** @param {RTCSessionDescriptionInit} description */
  receiveAnswer(description) {
    this._enqueue(() => this._onAnswer(description), "PEER_NEGOTIATION_ERROR");
  }

  /** @param {RTCIceCandidateInit | null} candidate null: end of candidates */
  receiveCandidate(candidate) {
    this._enqueue(() => this._onCandidate(candidate), "PEER_ICECANDIDATE_ERROR");
  }

  /**
   * @param {RTCSessionDescriptionInit} description
   * @param {Record<string, string> | null} labels
   * @param {Via} via
   */
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
    this._emit("negotiation:start", { kind: "remote", via });
    if (labels) this._labels = labels;
    await pc.setRemoteDescription(description);
    await pc.setLocalDescription(); // the answer
    this._sendDescription(pc.localDescription, via);
    this._emit("negotiation:done", { kind: "remote", via, detail: `${(performance.now() - started).toFixed(1)} ms` });
    await this._afterExchange();
  }

  /** @param {RTCSessionDescriptionInit} description */
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
    await applyQueuedCandidates(this);
    this._syncIncoming();
    if (this._rolledBack) {
      // Offer our rolled-back changes once the remote has had time to apply our answer.
      this._rolledBack = false;
      this._reofferTimer = setTimeout(() => this.negotiate(), REOFFER_DELAY_MS);
    } else if (this._needsNegotiation && this.controlOpen && this.pc.signalingState === "stable") {
      await this._makeOffer();
    }
  }

  /** @param {RTCSessionDescriptionInit} description @param {Via} via */
  _sendDescription(description, via) {
    const desc = { type: description.type, sdp: description.sdp };
    if (via === "control" && this.controlOpen) {
      if (desc.type === "offer") {
        // The label map rides every offer: MediaStream id -> label of what we publish.
        /** @type {Record<string, string>} */
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
  /** @param {RTCIceCandidateInit} candidate */
  _sendCandidate(candidate) {
    if (this.controlOpen) this._sendControl(["candidate", candidate], "candidate");
    else this.peer._sendDirect(this.id, [CANDIDATE, this.peer.id, candidate], "candidate");
  }

  /** @param {RTCIceCandidateInit | null} candidate */
  _onCandidate(candidate) {
    return onCandidate(this, candidate);
  }

  // -- the control channel ------------------------------------------------------------------
  /** @param {RTCDataChannel} control */
  _onControlOpen(control) {
    if (control !== this._control || this._closing) return;
    this.controlOpen = true;
    if (this.state === "connected") this._cancelTimeout();
    this._emit("control:open", { state: "open" });
    this._startLiveness(control);
    for (const options of this.peer.channels.values()) this.openChannel(options);
    this._enqueue(() => this._syncOutgoing(), "PEER_MEDIASTREAM_ERROR");
    if (this._needsNegotiation) this.negotiate();
  }

  /**
   * @param {any[]} message `[name, ...]`, sent as JSON text
   * @param {string} kind for the `signal:send` row
   */
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

  /** @param {RTCDataChannel} control @param {any} data */
  _onControlMessage(control, data) {
    if (control !== this._control || this._closing) return;
    try {
      const [name, body, extra] = parseControl(data);
      if (name === "ping" && this._liveness) this._liveness.heard = performance.now();
      // docs/PROTOCOL.md: unknown event names are ignored (peerix_nb peers ping every second).
      if (!CONTROL_EVENTS.includes(name)) return;
      this._emit("signal:recv", { kind: name, via: "control", size: data.length });
      if (name === "channel") this._onChannelRequest(body);
      else if (name === "candidate") this.receiveCandidate(checkCandidate(body));
      else if (name === "offer") this.receiveOffer(controlDescription(name, body), offerLabels(extra), "control");
      else this.receiveAnswer(controlDescription(name, body));
    } catch (error) {
      // The Peer's _report turns it into a PeerixError with this code.
      this._report(error, "PEER_SIGNALING_ERROR");
    }
  }

  // -- liveness (see DrainWatch in liveness.js for why) -------------------------------------
  /** Ping on the control channel every PING_INTERVAL and watch it drain, until shutdown. @param {RTCDataChannel} control */
  _startLiveness(control) {
    this._stopLiveness();
    this._liveness = new PingWatch(control, () => this._livenessTick());
    this._livenessTick();
  }

  _stopLiveness() {
    if (this._liveness) this._liveness.stop();
    this._liveness = null;
  }

  /** @param {number} [now] ms */
  _livenessTick(now = performance.now()) {
    livenessTick(this, now);
  }

  // -- data channels ------------------------------------------------------------------------
  /** Create (impolite side) or request (polite side) channel `options.label`. @param {ChannelOptions} options */
  openChannel(options) {
    const existing = this.channels.get(options.label);
    if (existing && ["connecting", "open"].includes(existing.readyState)) return;
    if (!this.controlOpen) return; // created when the control channel opens
    if (tooManyChannels(this, options.label)) return;
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

  /** @param {any} body a `["channel", {...}]` request from the polite remote */
  _onChannelRequest(body) {
    if (this.polite) return; // only the impolite side creates channels
    if (!body || typeof body !== "object" || typeof body.label !== "string" || !body.label) {
      this._report(new PeerixError("PEER_DATACHANNEL_ERROR", "bad channel request"), "PEER_DATACHANNEL_ERROR");
      return;
    }
    this.openChannel(body);
  }

  /** @param {string} label */
  closeChannel(label) {
    const channel = this.channels.get(label);
    if (channel) channel.close();
  }

  /** @param {RTCDataChannel} channel */
  _registerChannel(channel) {
    registerChannel(this, channel);
  }

  /**
   * Send on channel `label` (or on every open channel); returns how many channels sent it.
   * @param {string | ArrayBuffer | ArrayBufferView | Blob} data
   * @param {string | null} [label]
   * @returns {number}
   */
  send(data, label = null) {
    if (label !== null) {
      const channel = this.channels.get(label);
      if (!channel || channel.readyState !== "open") return 0;
      channel.send(/** @type {any} */ (data));
      return 1;
    }
    let sent = 0;
    for (const channel of this.channels.values()) {
      if (channel.readyState === "open") {
        channel.send(/** @type {any} */ (data));
        sent += 1;
      }
    }
    return sent;
  }

  // -- outgoing media -----------------------------------------------------------------------
  /** Bring our senders in line with what the Peer publishes (once the control channel is open). */
  syncStreams() {
    if (!this.controlOpen || this._closing) return Promise.resolve(); // done when it opens
    return this._enqueue(() => this._syncOutgoing(), "PEER_MEDIASTREAM_ERROR");
  }

  _syncOutgoing() {
    return syncOutgoing(this);
  }

  _syncIncoming() {
    syncIncoming(this);
  }

  /** @param {Incoming} incoming */
  _endIncoming(incoming) {
    endIncoming(this, incoming);
  }
}
