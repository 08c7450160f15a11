// @ts-check
// The control channel's messages (docs/PROTOCOL.md, "The control channel"): JSON text arrays
// `[name, ...]` on the negotiated channel id 0, label "". What arrives is checked here; the
// Remote acts on it (Remote._onControlMessage). Anything malformed throws an Error.

/** Largest control message accepted, in characters. */
export const MAX_CONTROL_MESSAGE = 1 << 20;
/** The control events a peer acts on; others are ignored (peerix_nb peers ping every second). */
export const CONTROL_EVENTS = ["offer", "answer", "candidate", "channel"];

/**
 * `[name, body, extra]` of a control message: a JSON array whose first item is a string.
 * @param {unknown} data what the channel delivered
 * @returns {any[]}
 */
export function parseControl(data) {
  if (typeof data !== "string") throw new Error("control message is binary, expected JSON text");
  if (data.length > MAX_CONTROL_MESSAGE) throw new Error(`control message of ${data.length} characters is too large`);
  const message = JSON.parse(data);
  if (!Array.isArray(message) || typeof message[0] !== "string") throw new Error("control message is not a JSON array [name, ...]");
  return message;
}

/**
 * The description of a control `offer` or `answer`.
 * @param {"offer" | "answer"} name
 * @param {any} body
 * @returns {RTCSessionDescriptionInit}
 */
export function controlDescription(name, body) {
  if (!body || body.type !== name || typeof body.sdp !== "string") throw new Error(`control ${name} without a valid {type, sdp} description`);
  return { type: name, sdp: body.sdp };
}

/**
 * The label map riding a control offer (MediaStream id -> label), as strings; {} if none.
 * @param {unknown} extra
 * @returns {Record<string, string>}
 */
export function offerLabels(extra) {
  /** @type {Record<string, string>} */
  const labels = {};
  if (extra && typeof extra === "object" && !Array.isArray(extra)) {
    for (const [k, v] of Object.entries(extra)) labels[String(k)] = String(v);
  }
  return labels;
}
