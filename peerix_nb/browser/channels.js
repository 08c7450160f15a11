// @ts-check
// Data-channel options, shared by Peer (for every remote) and Remote (one): the options a user
// opens a channel with, what RTCPeerConnection.createDataChannel takes from them, and the
// `["channel", {...}]` request the polite side sends (channels.py's ChannelOptions), and a
// Remote's channels once they exist (one per label, events for each).

import { PeerixError } from "./codec.js";

/** Data channels per remote (remote.py MAX_CHANNELS): more only come from a runaway remote. */
export const MAX_CHANNELS = 256;

/** @typedef {import("./remote.js").Remote} Remote */
/**
 * How to open channel `label` (Peer.open's options, and the body of a `["channel", {...}]`
 * request).
 * @typedef {object} ChannelOptions
 * @property {string} label
 * @property {boolean} [ordered] true unless false
 * @property {number | null} [maxRetransmits]
 * @property {number | null} [maxPacketLifeTime]
 * @property {string} [protocol]
 */

/**
 * What createDataChannel takes from `options`.
 * @param {ChannelOptions} options
 * @returns {RTCDataChannelInit}
 */
export function channelInit(options) {
  /** @type {RTCDataChannelInit} */
  const init = { ordered: options.ordered !== false };
  if (options.maxRetransmits != null) init.maxRetransmits = options.maxRetransmits;
  if (options.maxPacketLifeTime != null) init.maxPacketLifeTime = options.maxPacketLifeTime;
  if (options.protocol) init.protocol = options.protocol;
  return init;
}

/**
 * The `["channel", {...}]` request body, as the Python side writes it.
 * @param {ChannelOptions} options
 * @returns {ChannelOptions}
 */
export function channelWire(options) {
  /** @type {ChannelOptions} */
  const body = { label: options.label, ordered: options.ordered !== false };
  if (options.maxRetransmits != null) body.maxRetransmits = options.maxRetransmits;
  if (options.maxPacketLifeTime != null) body.maxPacketLifeTime = options.maxPacketLifeTime;
  if (options.protocol) body.protocol = options.protocol;
  return body;
}

/**
 * Throws unless `label` can name a user channel.
 * @param {unknown} label
 * @returns {asserts label is string}
 */
export function checkLabel(label) {
  if (typeof label !== "string" || !label || label.length > 1024) {
    throw new PeerixError("PEER_DATACHANNEL_ERROR",
      `channel label must be a non-empty string (the empty label is the control channel), got ${JSON.stringify(label)}`);
  }
}

/**
 * Refuse a channel past MAX_CHANNELS to `remote` (an `error` event): true when refused.
 * @param {Remote} remote
 * @param {string} label
 */
export function tooManyChannels(remote, label) {
  if (remote.channels.has(label) || remote.channels.size < MAX_CHANNELS) return false;
  remote._report(new PeerixError("PEER_DATACHANNEL_ERROR",
    `channel ${JSON.stringify(label)} refused: ${MAX_CHANNELS} channels to ${remote.id} already`), "PEER_DATACHANNEL_ERROR");
  return true;
}

/**
 * `channel` (ours or the remote's) becomes `remote`'s channel for its label, replacing an
 * older one; its state changes and messages become `channel:*` events.
 * @param {Remote} remote
 * @param {RTCDataChannel} channel
 */
export function registerChannel(remote, channel) {
  const label = channel.label;
  if (tooManyChannels(remote, label)) {
    channel.close();
    return;
  }
  channel.binaryType = "arraybuffer";
  const old = remote.channels.get(label);
  remote.channels.set(label, channel); // one channel per label: the newer replaces the older
  if (old && old !== channel) old.close();
  // Once: a channel the remote created may already be open here and still fire `open` later
  // (seen in Chromium 156: two channel:open rows in the same millisecond).
  let opened = false;
  const onOpen = () => {
    if (opened) return;
    opened = true;
    remote._emit("channel:open", { channel, label, state: "open" });
  };
  channel.onopen = onOpen;
  channel.onclose = () => {
    if (remote.channels.get(label) === channel) remote.channels.delete(label);
    remote._emit("channel:close", { channel, label, state: "closed" });
  };
  channel.onerror = (event) => remote._emit("channel:error", { channel, label,
    error: new PeerixError("PEER_DATACHANNEL_ERROR", String(event.error && event.error.message || "channel error")) });
  channel.onmessage = ({ data }) => remote._emit("channel:message", { channel, label, data });
  remote._emit("channel:new", { channel, label, state: channel.readyState });
  if (channel.readyState === "open") onOpen();
}
