// @ts-check
// What the page peer reads from SDP text: the ICE ufrag a trickled candidate must match, the
// mids that tie an answer to its offer, and the msid of each m-line (incoming stream ids).
// Read only: the page sends exactly what its RTCPeerConnection produces (docs/PROTOCOL.md).

/** @typedef {{ streamId: string, trackId: string }} Msid */

/**
 * `a=ice-ufrag` of an SDP (the first one: with max-bundle every m-line shares it).
 * @param {string | null | undefined} sdp
 * @returns {string | null}
 */
export function ufragOf(sdp) {
  const match = /^a=ice-ufrag:(\S+)/m.exec(sdp || "");
  return match ? match[1] : null;
}

/**
 * The mids of an SDP's m-lines, in order, as one string (to match an answer to its offer).
 * @param {string | null | undefined} sdp
 * @returns {string}
 */
export function mids(sdp) {
  return [...(sdp || "").matchAll(/^a=mid:(\S+)/gm)].map((m) => m[1]).join(" ");
}

/**
 * mid -> {streamId, trackId} of every m-line of an SDP, from its a=mid and a=msid lines.
 * @param {string | null | undefined} sdp
 * @returns {Map<string, Msid>}
 */
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
