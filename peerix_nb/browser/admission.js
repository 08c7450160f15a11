// @ts-check
// Admission (peer.py's verify): a sender the Peer has no Remote for asks to connect (its JOIN or
// OFFER); past the room limit it is refused, else `verify` decides while its later messages
// wait, and an accepted sender gets its Remote. Functions of the Peer whose state they read and
// write (peer._admitting, _earlyCandidates, connections).

import { JOIN, PeerixError } from "./codec.js";
import { Remote } from "./remote.js";

/** @typedef {import("./peer.js").Peer} Peer */
/** @typedef {import("./codec.js").Message} Message */

/**
 * Run `verify` for a new remote (JOIN or OFFER), holding its later messages meanwhile.
 * @param {Peer} peer
 * @param {Message} message
 * @param {boolean} direct
 */
export function admit(peer, message, direct) {
  if (!peer.joined) return;
  const sender = message.sender;
  if (peer.connections.size + peer._admitting.size >= peer.maxRemotes) {
    peer._earlyCandidates.delete(sender);
    peer._emit("signal:reject", { kind: message.kind, via: "driver",
      detail: `${sender}: room full (${peer.maxRemotes} remotes)` });
    return;
  }
  /** @type {[Message, boolean][]} */
  const held = [];
  peer._admitting.set(sender, held);
  admitTask(peer, message, held, peer._generation).catch((e) => peer._report(e));
}

/**
 * @param {Peer} peer
 * @param {Message} message
 * @param {[Message, boolean][]} held the sender's messages that came meanwhile
 * @param {number} generation the Peer's join when verify was asked
 */
async function admitTask(peer, message, held, generation) {
  const sender = message.sender;
  let accepted = false;
  try {
    accepted = await verified(peer, sender, message.metadata);
  } finally {
    if (peer._admitting.get(sender) === held) peer._admitting.delete(sender);
  }
  // Taken whatever the outcome: left behind, a refused sender's entry would hold a place.
  const early = peer._earlyCandidates.get(sender) || [];
  peer._earlyCandidates.delete(sender);
  if (!peer.joined || generation !== peer._generation) return;
  if (!accepted) {
    peer._emit("signal:reject", { kind: message.kind, via: "driver", detail: `${sender} rejected by verify` });
    return;
  }
  const remote = new Remote(peer, sender, message.metadata);
  peer.connections.set(remote.id, remote);
  if (message.type === JOIN) {
    remote.start(); // we were here first: we offer (earlier candidates are stale)
  } else {
    remote.receiveOffer(message.description, null, "driver");
    for (const candidate of early) remote.receiveCandidate(candidate); // held for that offer
  }
  for (const [later, laterDirect] of held) peer._route(later, laterDirect);
}

/**
 * The Peer's `verify` answer for `sender`; one that throws is a refusal and an `error` event.
 * @param {Peer} peer
 * @param {string} sender
 * @param {any} metadata
 * @returns {Promise<boolean>}
 */
async function verified(peer, sender, metadata) {
  if (!peer._verify) return true;
  try {
    return !!(await peer._verify({ id: sender, metadata }));
  } catch (error) {
    peer._report(new PeerixError("PEER_SIGNALING_ERROR",
      `verify raised ${error && error.message ? `${error.name || "Error"}: ${error.message}` : String(error)}`, error));
    return false;
  }
}
