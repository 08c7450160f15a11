// @ts-check
// Peerix v0.1 driver-message codec for the browser (docs/PROTOCOL.md, "Message encoding").
//
// encode: JSON.stringify([type, sender, ...payload]) -> UTF-8 -> deflate (RFC 1950, what
//         CompressionStream("deflate") and Python's zlib.compress write) -> AES-256-GCM when a
//         secret is set (key = SHA-256 of its UTF-8 bytes, random 12-byte IV prepended, the
//         16-byte tag appended by WebCrypto).
// decode: the reverse, plus a shape check; anything wrong throws a PeerixError with code
//         PEER_SIGNALING_ERROR (the peer turns it into an `error` event, never a crash).
// No flag in a packet says which steps were applied: every peer of a room needs the same
// settings. tests/vectors/vectors.json holds bytes made by Node with these exact calls.

export const JOIN = 1;
export const OFFER = 2;
export const ANSWER = 3;
export const CANDIDATE = 4;
export const LEAVE = 5;
/** @type {Record<number, MessageKind>} */
export const KINDS = { 1: "join", 2: "offer", 3: "answer", 4: "candidate", 5: "leave" };

/** Largest driver message accepted, before and after inflating (same as the Python side). */
export const MAX_MESSAGE_BYTES = 1 << 20;
/** Longest peer id (characters), and largest metadata as JSON (UTF-8 bytes): signaling.py's. */
export const MAX_ID_LENGTH = 256;
export const MAX_METADATA_BYTES = 64 * 1024;
const IV_BYTES = 12;
const BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const utf8 = new TextEncoder();
// WebCrypto and Blob take only ArrayBuffer-backed bytes (TypeScript's Uint8Array<ArrayBuffer>):
// what drivers deliver is, and toBytes() keeps its buffer; hence the casts to AB below.
/** @typedef {Uint8Array<ArrayBuffer>} AB */

/** @typedef {"join" | "offer" | "answer" | "candidate" | "leave"} MessageKind */
/**
 * A driver message, decoded and checked (parseMessage).
 * @typedef {object} Message
 * @property {number} type JOIN, OFFER, ANSWER, CANDIDATE or LEAVE
 * @property {MessageKind} kind
 * @property {string} sender
 * @property {any} [metadata] JOIN and OFFER
 * @property {RTCSessionDescriptionInit} [description] OFFER and ANSWER
 * @property {RTCIceCandidateInit | null} [candidate] CANDIDATE (null: end of candidates)
 */

/** An error with one of Peerix's codes (PEER_SIGNALING_ERROR, ...; docs/PROTOCOL.md). */
export class PeerixError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {unknown} [cause]
   */
  constructor(code, message, cause) {
    super(message);
    this.name = "PeerixError";
    this.code = code;
    if (cause !== undefined) this.cause = cause;
  }
}

/** @type {(message: string, cause?: unknown) => PeerixError} */
const fail = (message, cause) => new PeerixError("PEER_SIGNALING_ERROR", message, cause);

/** Bytes of `value` as JSON (what a JOIN or OFFER carries); throws a TypeError if it has none. @param {unknown} value @returns {number} */
export function jsonSize(value) {
  const text = JSON.stringify(value === undefined ? null : value);
  if (typeof text !== "string") throw new TypeError(`${typeof value} is not JSON-serializable`);
  return utf8.encode(text).length;
}

/** Bytes of anything a driver may hand us: Uint8Array, ArrayBuffer, DataView, other views. @param {unknown} data @returns {Uint8Array} */
export function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw fail(`driver delivered ${Object.prototype.toString.call(data)}, expected bytes`);
}

/**
 * `bytes` through a compression stream, at most `limit` bytes out.
 * @param {Uint8Array} bytes
 * @param {CompressionStream | DecompressionStream} transform
 * @param {number} limit
 * @returns {Promise<AB>}
 */
async function pipe(bytes, transform, limit) {
  const reader = new Blob([/** @type {AB} */ (bytes)]).stream().pipeThrough(transform).getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      // A zip bomb stops here, like Python's decompressobj(max_length).
      reader.cancel().catch(() => {});
      throw fail(`decompressed message exceeds ${limit} bytes`);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** zlib (RFC 1950) deflate. @param {Uint8Array} bytes @returns {Promise<AB>} */
export function deflate(bytes) {
  return pipe(bytes, new CompressionStream("deflate"), Infinity);
}

/** zlib inflate, at most `limit` bytes out. @param {Uint8Array} bytes @param {number} [limit] @returns {Promise<AB>} */
export async function inflate(bytes, limit = MAX_MESSAGE_BYTES) {
  try {
    return await pipe(bytes, new DecompressionStream("deflate"), limit);
  } catch (error) {
    if (error instanceof PeerixError) throw error;
    throw fail(`cannot decompress message: ${error.message || error}`, error);
  }
}

/** @param {Uint8Array} bytes @returns {Promise<AB>} */
export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", /** @type {AB} */ (bytes)));
}

/** Big-endian base62 (alphabet 0-9a-zA-Z, no padding, "0" for zero). @param {Uint8Array} bytes @returns {string} */
export function base62(bytes) {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  if (n === 0n) return "0";
  let out = "";
  while (n > 0n) {
    out = BASE62[Number(n % 62n)] + out;
    n /= 62n;
  }
  return out;
}

/** A namespace part as hashed by Peerix: base62(SHA-256(UTF-8 bytes)). @param {string} part @returns {Promise<string>} */
export async function hashPart(part) {
  return base62(await sha256(utf8.encode(part)));
}

/** The AES-GCM key of a secret: SHA-256 of its UTF-8 bytes. @param {string | Uint8Array} secret @returns {Promise<CryptoKey>} */
export async function deriveKey(secret) {
  const raw = await sha256(typeof secret === "string" ? utf8.encode(secret) : toBytes(secret));
  return crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

/** IV + AES-GCM(bytes) + tag. @param {CryptoKey} key @param {AB} bytes @param {AB} [iv] @returns {Promise<AB>} */
export async function encrypt(key, bytes, iv = crypto.getRandomValues(new Uint8Array(IV_BYTES))) {
  const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, bytes));
  const out = new Uint8Array(iv.length + sealed.length);
  out.set(iv, 0);
  out.set(sealed, iv.length);
  return out;
}

/** The reverse of encrypt. @param {CryptoKey} key @param {Uint8Array} bytes @returns {Promise<AB>} */
export async function decrypt(key, bytes) {
  if (bytes.length < IV_BYTES + 16) throw fail("encrypted message too short");
  try {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: /** @type {AB} */ (bytes.subarray(0, IV_BYTES)) },
      key,
      /** @type {AB} */ (bytes.subarray(IV_BYTES)),
    );
    return new Uint8Array(plain);
  } catch (error) {
    throw fail("cannot decrypt message: wrong encryption key or tampered data", error);
  }
}

/** @param {any} value @param {"offer" | "answer"} expected @returns {RTCSessionDescriptionInit} */
function description(value, expected) {
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw fail(`${expected} description must be an object`);
  }
  if (value.type !== expected) throw fail(`${expected} description has type ${value.type}`);
  if (typeof value.sdp !== "string" || !value.sdp) throw fail(`${expected} description has no SDP text`);
  return { type: expected, sdp: value.sdp };
}

/** An RTCIceCandidateInit-shaped object, or null (end of candidates). @param {any} value @returns {RTCIceCandidateInit | null} */
export function checkCandidate(value) {
  if (value === null || value === undefined) return null;
  if (typeof value !== "object" || typeof value.candidate !== "string") {
    throw fail("candidate has no 'candidate' string");
  }
  const { candidate, sdpMid = null, sdpMLineIndex = null, usernameFragment = null } = value;
  if (sdpMid !== null && typeof sdpMid !== "string") throw fail("candidate sdpMid must be a string");
  if (sdpMLineIndex !== null && !(Number.isInteger(sdpMLineIndex) && sdpMLineIndex >= 0)) {
    throw fail("candidate sdpMLineIndex must be a non-negative integer");
  }
  if (usernameFragment !== null && typeof usernameFragment !== "string") {
    throw fail("candidate usernameFragment must be a string");
  }
  return { candidate, sdpMid, sdpMLineIndex, usernameFragment };
}

/** Check a decoded JSON value against the message table of docs/PROTOCOL.md. @param {unknown} value @returns {Message} */
export function parseMessage(value) {
  if (!Array.isArray(value) || value.length < 2) throw fail("message is not a JSON array [type, sender, ...]");
  const [type, sender, ...rest] = value;
  if (!Number.isInteger(type) || !(type in KINDS)) throw fail(`unknown message type ${JSON.stringify(type)}`);
  if (typeof sender !== "string" || !sender || sender.length > MAX_ID_LENGTH) {
    throw fail("message sender must be a non-empty string id");
  }
  /** @type {Message} */
  const message = { type, kind: KINDS[type], sender };
  if ((type === JOIN && rest.length) || (type === OFFER && rest.length > 1)) {
    const metadata = type === JOIN ? rest[0] : rest[1];
    if (metadata !== null && (typeof metadata === "object" || typeof metadata === "string")) {
      const size = jsonSize(metadata);
      if (size > MAX_METADATA_BYTES) throw fail(`metadata of ${size} bytes exceeds ${MAX_METADATA_BYTES}`);
    }
  }
  if (type === JOIN) message.metadata = rest.length ? rest[0] : null;
  else if (type === OFFER) {
    if (!rest.length) throw fail("offer without description");
    message.description = description(rest[0], "offer");
    message.metadata = rest.length > 1 ? rest[1] : null;
  } else if (type === ANSWER) {
    if (!rest.length) throw fail("answer without description");
    message.description = description(rest[0], "answer");
  } else if (type === CANDIDATE) message.candidate = checkCandidate(rest.length ? rest[0] : null);
  return message;
}

/** Encodes and decodes driver messages with one peer's settings (all peers must agree). */
/** Appended to every message that cannot be decoded: a peer with other settings is only ever
 *  "undecodable" (docs/PROTOCOL.md, "Driver messages"). */
const SETTINGS_HINT =
  "(do all peers of the room use the same signaling_compression and signaling_encryption_key?)";

export class SignalingCodec {
  /** @param {{ compression?: boolean, encryptionKey?: string | Uint8Array | null, hashing?: boolean }} [options] */
  constructor({ compression = true, encryptionKey = null, hashing = false } = {}) {
    if (encryptionKey !== null && encryptionKey !== undefined && !String(encryptionKey).length) {
      throw new TypeError("encryption key must not be empty");
    }
    this.compression = !!compression;
    this.hashing = !!hashing;
    this._key = encryptionKey ? deriveKey(encryptionKey) : null; // a Promise of a CryptoKey
    /** @type {Map<string, string>} */
    this._hashes = new Map();
  }

  get encrypted() {
    return this._key !== null;
  }

  /** The bytes of `message` (`[type, sender, ...payload]`). @param {any[]} message @param {AB} [iv] @returns {Promise<AB>} */
  async encode(message, iv) {
    let data = utf8.encode(JSON.stringify(message));
    if (this.compression) data = await deflate(data);
    if (this._key) data = await encrypt(await this._key, data, iv);
    return data;
  }

  /** The checked message in `raw` bytes; throws a PeerixError. @param {unknown} raw @returns {Promise<Message>} */
  async decode(raw) {
    let data = toBytes(raw);
    if (data.length > MAX_MESSAGE_BYTES) throw fail(`message of ${data.length} bytes exceeds ${MAX_MESSAGE_BYTES}`);
    let value;
    try {
      if (this._key) data = await decrypt(await this._key, data);
      if (this.compression) data = await inflate(data);
      try {
        value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
      } catch (error) {
        throw fail(`message is not UTF-8 JSON: ${error.message}`, error);
      }
    } catch (error) {
      // Nothing in a message says which steps were applied (signaling.py SETTINGS_HINT).
      if (error instanceof PeerixError) throw fail(`${error.message} ${SETTINGS_HINT}`, error.cause);
      throw error;
    }
    return parseMessage(value);
  }

  /** The namespace as sent to the driver: every part hashed when hashing is on (cached). @param {string[]} parts @returns {Promise<string[]>} */
  async namespace(parts) {
    if (!this.hashing) return [...parts];
    const out = [];
    for (const part of parts) {
      if (!this._hashes.has(part)) this._hashes.set(part, await hashPart(part));
      out.push(this._hashes.get(part));
    }
    return out;
  }
}
