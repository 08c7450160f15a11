// @ts-check
// A Remote's media (remote.py's senders and incoming tracks): our senders follow what the Peer
// publishes, as browser Peerix does; incoming tracks are named by (mid, msid stream id) and
// shown under the label the remote's last offer gave their stream. Functions of the Remote
// whose state they read and write (remote._outgoing, _incoming, _labels, streams).

import { msidsOf } from "./sdp.js";

/** @typedef {import("./remote.js").Remote} Remote */
/** A remote stream: our own MediaStream named by the msid stream id. @typedef {MediaStream & { peerixId?: string }} RemoteStream */
/**
 * A sender of ours: its track (null once unpublished), under which label and stream id.
 * @typedef {{ transceiver: RTCRtpTransceiver, kind: string, track?: MediaStreamTrack | null,
 *   label?: string, streamId?: string }} Outgoing
 */
/**
 * An incoming track, by mid.
 * @typedef {{ mid: string, streamId: string, label: string, track: MediaStreamTrack,
 *   stream: RemoteStream }} Incoming
 */

// -- outgoing media -------------------------------------------------------------------------
/**
 * Bring `remote`'s senders in line with `remote.peer.streams`; offer if that changed any.
 * @param {Remote} remote
 */
export async function syncOutgoing(remote) {
  // As browser Peerix does (docs/PROTOCOL.md "Media"): a republish under the same label swaps
  // a track of the same kind with replaceTrack, new tracks get their own sendonly
  // transceiver, and what is no longer published is stopped: the next offer rejects its
  // m-line (port 0), and the browser may recycle that m-line later.
  const pc = remote.pc;
  /** @type {Map<MediaStreamTrack, { stream: MediaStream, label: string }>} */
  const wanted = new Map(); // track -> {stream, label}
  for (const [label, stream] of remote.peer.streams) {
    for (const track of stream.getTracks()) wanted.set(track, { stream, label });
  }
  let changed = false;

  // 1. Senders whose track is no longer published (or moved to another stream) go idle.
  const assigned = new Set();
  for (const out of remote._outgoing) {
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
    let out = remote._outgoing.find((o) => !o.track && o.kind === track.kind && o.label === label);
    if (out) {
      await out.transceiver.sender.replaceTrack(track);
      out.transceiver.sender.setStreams(stream);
      if (out.streamId !== stream.id) changed = true; // the msid changes: renegotiate
    } else {
      const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      out = { transceiver, kind: track.kind };
      remote._outgoing.push(out);
      changed = true;
    }
    out.track = track;
    out.label = label;
    out.streamId = stream.id;
    assigned.add(track);
  }
  // 3. Unpublished: stopped for good.
  for (const out of remote._outgoing.filter((o) => !o.track)) {
    out.transceiver.stop();
    changed = true;
  }
  remote._outgoing = remote._outgoing.filter((o) => o.track);
  if (changed) {
    if (pc.signalingState === "stable") await remote._makeOffer();
    else remote._needsNegotiation = true;
  }
}

// -- incoming media -------------------------------------------------------------------------
/**
 * Turn the negotiated directions and msids into track/stream add and remove events.
 * @param {Remote} remote
 */
export function syncIncoming(remote) {
  const pc = remote.pc;
  if (pc.signalingState !== "stable" || !pc.remoteDescription) return;
  const media = msidsOf(pc.remoteDescription.sdp);
  /** @type {Map<string, { transceiver: RTCRtpTransceiver, streamId: string }>} */
  const current = new Map();
  for (const transceiver of pc.getTransceivers()) {
    const mid = transceiver.mid;
    const m = mid !== null ? media.get(mid) : null;
    if (!m || !["recvonly", "sendrecv"].includes(transceiver.currentDirection)) continue;
    const streamId = m.streamId && m.streamId !== "-" ? m.streamId : `mid-${mid}`;
    current.set(mid, { transceiver, streamId });
  }
  for (const [mid, incoming] of [...remote._incoming]) {
    if (!current.has(mid) || current.get(mid).streamId !== incoming.streamId) {
      remote._incoming.delete(mid);
      endIncoming(remote, incoming);
    }
  }
  for (const [mid, { transceiver, streamId }] of current) {
    if (!remote._incoming.has(mid)) startIncoming(remote, mid, transceiver, streamId);
  }
  applyLabels(remote);
}

/**
 * A stream first seen in an answer (no label map: labels ride on offers) is shown under its
 * id; when an offer names it, announce it again under its label (remote.py does the same).
 * @param {Remote} remote
 */
function applyLabels(remote) {
  for (const [old, stream] of [...remote.streams]) {
    const label = remote._labels[stream.peerixId] || stream.peerixId;
    if (label === old || remote.streams.has(label)) continue;
    remote.streams.delete(old);
    remote.streams.set(label, stream);
    for (const incoming of remote._incoming.values()) {
      if (incoming.stream === stream) incoming.label = label;
    }
    remote._emit("stream:remove", { stream, label: old, detail: stream.peerixId });
    remote._emit("stream:add", { stream, label, detail: stream.peerixId });
  }
}

/**
 * @param {Remote} remote
 * @param {string} mid
 * @param {RTCRtpTransceiver} transceiver
 * @param {string} streamId
 */
function startIncoming(remote, mid, transceiver, streamId) {
  const track = transceiver.receiver.track;
  const label = remote._labels[streamId] || streamId;
  /** @type {RemoteStream} */
  let stream = [...remote.streams.values()].find((s) => s.peerixId === streamId);
  const isNew = !stream;
  if (!stream) {
    // Our own MediaStream object, named by the msid stream id (its label from the last offer).
    stream = new MediaStream();
    Object.defineProperty(stream, "peerixId", { value: streamId });
    remote.streams.set(label, stream);
  }
  stream.addTrack(track);
  remote._incoming.set(mid, { mid, streamId, label, track, stream });
  if (isNew) remote._emit("stream:add", { stream, label, detail: streamId });
  remote._emit("track:add", { stream, track, label, kind: track.kind, detail: streamId });
}

/**
 * An incoming track is gone (its m-line, or the whole connection); its stream with its last.
 * @param {Remote} remote
 * @param {Incoming} incoming
 */
export function endIncoming(remote, { stream, track, label, streamId }) {
  stream.removeTrack(track);
  remote._emit("track:remove", { stream, track, label, kind: track.kind, detail: streamId });
  if (!stream.getTracks().length && remote.streams.get(label) === stream) {
    remote.streams.delete(label);
    remote._emit("stream:remove", { stream, label, detail: streamId });
  }
}
