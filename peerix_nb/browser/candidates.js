// @ts-check
// Trickled ICE candidates (docs/PROTOCOL.md): a candidate is applied once the description it
// belongs to is (the same ufrag); until then it is held, at most MAX_QUEUED_CANDIDATES, by its
// Remote, or by the Peer while the sender has no Remote yet (a trickled candidate can overtake
// its OFFER on a reordering driver). Functions of the Remote or Peer whose state they use.

import { PeerixError } from "./codec.js";
import { ufragOf } from "./sdp.js";

/** @typedef {import("./remote.js").Remote} Remote */
/** @typedef {import("./peer.js").Peer} Peer */
/** @typedef {import("./codec.js").Message} Message */

/** Candidates held per remote before their description (remote.py MAX_QUEUED_CANDIDATES). */
export const MAX_QUEUED_CANDIDATES = 100;

/**
 * Apply `candidate` to `remote`'s connection, or hold it until its description is applied.
 * @param {Remote} remote
 * @param {RTCIceCandidateInit | null} candidate null: end of candidates
 */
export async function onCandidate(remote, candidate) {
  const description = remote.pc.remoteDescription;
  if (!description || (candidate && candidate.usernameFragment && candidate.usernameFragment !== ufragOf(description.sdp))) {
    // docs/PROTOCOL.md: held until the description it belongs to is applied.
    if (!candidate) return;
    if (remote._pendingCandidates.length < MAX_QUEUED_CANDIDATES) remote._pendingCandidates.push(candidate);
    else remote._emit("signal:drop", { kind: "candidate", detail: `more than ${MAX_QUEUED_CANDIDATES} candidates before their description` });
    return;
  }
  await addCandidate(remote, candidate);
}

/**
 * After a description: apply the held candidates of its ufrag (the others are stale).
 * @param {Remote} remote
 */
export async function applyQueuedCandidates(remote) {
  const queued = remote._pendingCandidates;
  remote._pendingCandidates = [];
  const ufrag = ufragOf(remote.pc.remoteDescription && remote.pc.remoteDescription.sdp);
  for (const candidate of queued) {
    if (!candidate.usernameFragment || candidate.usernameFragment === ufrag) await addCandidate(remote, candidate);
  }
}

/**
 * @param {Remote} remote
 * @param {RTCIceCandidateInit | null} candidate
 */
async function addCandidate(remote, candidate) {
  try {
    await remote.pc.addIceCandidate(candidate || undefined);
  } catch (error) {
    throw new PeerixError("PEER_ICECANDIDATE_ERROR", `bad candidate ${JSON.stringify(candidate)}: ${error.message}`, error);
  }
}

/**
 * A CANDIDATE from a sender `peer` has no Remote for: held for its OFFER (a `signal:hold`
 * row), from at most peer.maxRemotes senders, MAX_QUEUED_CANDIDATES each. False if not held.
 * @param {Peer} peer
 * @param {Message} message
 * @returns {boolean}
 */
export function holdEarly(peer, message) {
  const sender = message.sender;
  let early = peer._earlyCandidates.get(sender);
  if (!early && peer._earlyCandidates.size < peer.maxRemotes) {
    early = [];
    peer._earlyCandidates.set(sender, early);
  }
  if (early && early.length < MAX_QUEUED_CANDIDATES) {
    early.push(message.candidate);
    peer._emit("signal:hold", { kind: message.kind, via: "driver", detail: `${sender}: before its offer` });
    return true;
  }
  return false;
}
