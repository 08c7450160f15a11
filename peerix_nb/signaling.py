"""Driver messages of the Peerix v0.1 wire format: JSON arrays, deflate, AES-GCM, hashed namespaces.

encode: JSON array `[type, sender, ...payload]` (compact, UTF-8, like JS `JSON.stringify`)
        -> zlib deflate (RFC 1950) if compression is on -> AES-256-GCM if a key is set
        (key = SHA-256 of the secret, 12-byte random IV prepended, 16-byte tag appended).
decode: the reverse, and a shape check of every field; anything wrong is a PeerixError
        with code PEER_SIGNALING_ERROR, never an exception from deep inside a codec.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import PeerixError

JOIN, OFFER, ANSWER, CANDIDATE, LEAVE = 1, 2, 3, 4, 5
KINDS = {JOIN: "join", OFFER: "offer", ANSWER: "answer", CANDIDATE: "candidate", LEAVE: "leave"}

#: Largest driver message accepted, before and after decompression (a zip bomb stops here).
MAX_MESSAGE_BYTES = 1 << 20
#: Longest peer id accepted from the wire.
MAX_ID_LENGTH = 256
#: Largest metadata (as JSON) a peer may announce; it rides every JOIN and first OFFER.
MAX_METADATA_BYTES = 64 * 1024

BASE62_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_IV_BYTES = 12


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded driver message."""

    type: int
    sender: str
    metadata: Any = None  # JOIN and OFFER
    description: dict[str, str] | None = None  # OFFER and ANSWER: {"type", "sdp"}
    candidate: dict[str, Any] | None = None  # CANDIDATE; None means end of candidates

    @property
    def kind(self) -> str:
        return KINDS[self.type]


def _fail(reason: str, cause: BaseException | None = None) -> PeerixError:
    return PeerixError("PEER_SIGNALING_ERROR", reason, cause=cause)


# -- primitives (also used by the interop test vectors) --------------------------------------
def js_number(x: float) -> str:
    """A float as JavaScript's Number.prototype.toString writes it (ECMA-262 Number::toString).

    Python writes 1.0, -0.0 and 5e-07 where JavaScript writes 1, 0 and 5e-7; NaN and the
    infinities become null, as in JSON.stringify. repr() gives the shortest round-trip digits,
    which is what JavaScript uses too; only the layout differs.
    """
    if x != x or x in (math.inf, -math.inf):
        return "null"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k, n = len(digits), int(exponent) + len(digits)  # value = 0.digits * 10**n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _replace_floats(value: Any, found: dict[str, str], token: str) -> Any:
    if isinstance(value, float):
        key = f"{token}{len(found)}"
        found[key] = js_number(value)
        return key
    if isinstance(value, dict):
        return {k: _replace_floats(v, found, token) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_floats(v, found, token) for v in value]
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def to_json(value: Any) -> bytes:
    """Serialize like JavaScript's `JSON.stringify`: no spaces, non-ASCII kept as UTF-8,
    numbers laid out as JavaScript does, lone surrogates escaped (checked against Node)."""
    floats: dict[str, str] = {}
    token = f"\x00{uuid.uuid4().hex}:"
    value = _replace_floats(value, floats, token)
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for key, number in floats.items():
        text = text.replace(json.dumps(key, ensure_ascii=False), number, 1)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate (a str Python can hold but UTF-8 cannot): escape it like JS does.
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()


#: Appended to every message that cannot be decoded (docs/PROTOCOL.md, "Driver messages").
SETTINGS_HINT = (
    "(do all peers of the room use the same signaling_compression and signaling_encryption_key?)"
)


def compress(data: bytes) -> bytes:
    """zlib-wrapped deflate, what `CompressionStream("deflate")` and `zlib.compress` write."""
    return zlib.compress(data)


def decompress(data: bytes, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit)
    except zlib.error as error:
        raise _fail(f"cannot decompress message: {error}", error) from None
    if inflater.unconsumed_tail:
        raise _fail(f"decompressed message exceeds {limit} bytes")
    if not inflater.eof:
        raise _fail("cannot decompress message: truncated data")
    return out


def derive_key(secret: str | bytes) -> bytes:
    """AES-256 key from a shared secret: SHA-256 of its UTF-8 bytes, as browser Peerix does."""
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    return hashlib.sha256(raw).digest()


def encrypt(key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
    """IV (12 bytes) + AES-GCM ciphertext + tag (16 bytes), like WebCrypto's output after the IV."""
    iv = os.urandom(_IV_BYTES) if iv is None else iv
    return iv + AESGCM(key).encrypt(iv, data, None)


def decrypt(key: bytes, data: bytes) -> bytes:
    if len(data) < _IV_BYTES + 16:
        raise _fail("encrypted message too short")
    try:
        return AESGCM(key).decrypt(data[:_IV_BYTES], data[_IV_BYTES:], None)
    except InvalidTag:
        raise _fail("cannot decrypt message: wrong encryption key or tampered data") from None


def base62(data: bytes) -> str:
    """Big-endian base62 of `data` (alphabet 0-9a-zA-Z, no padding, "0" for zero)."""
    n = int.from_bytes(data, "big")
    if n == 0:
        return "0"
    digits = []
    while n:
        n, r = divmod(n, 62)
        digits.append(BASE62_ALPHABET[r])
    return "".join(reversed(digits))


def hash_part(part: str) -> str:
    """A namespace part as hashed by Peerix: base62(SHA-256(UTF-8 bytes))."""
    return base62(hashlib.sha256(part.encode()).digest())


# -- shape checks ----------------------------------------------------------------------------
def _description(value: Any, expected: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(f"{expected} description must be an object, got {type(value).__name__}")
    if value.get("type") != expected:
        raise _fail(f"{expected} description has type {value.get('type')!r}")
    sdp = value.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise _fail(f"{expected} description has no SDP text")
    return {"type": expected, "sdp": sdp}


def check_candidate(value: Any) -> dict[str, Any] | None:
    """Validate an RTCIceCandidateInit-shaped dict (None = end of candidates)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(f"candidate must be an object, got {type(value).__name__}")
    cand = value.get("candidate")
    if not isinstance(cand, str):
        raise _fail("candidate has no 'candidate' string")
    mid = value.get("sdpMid")
    index = value.get("sdpMLineIndex")
    ufrag = value.get("usernameFragment")
    if mid is not None and not isinstance(mid, str):
        raise _fail("candidate sdpMid must be a string")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise _fail("candidate sdpMLineIndex must be a non-negative integer")
    if ufrag is not None and not isinstance(ufrag, str):
        raise _fail("candidate usernameFragment must be a string")
    return {"candidate": cand, "sdpMid": mid, "sdpMLineIndex": index, "usernameFragment": ufrag}


def parse_message(value: Any) -> Message:
    """Check a decoded JSON value against the message table of docs/PROTOCOL.md."""
    if not isinstance(value, list) or len(value) < 2:
        raise _fail("message is not a JSON array [type, sender, ...]")
    mtype, sender = value[0], value[1]
    if not isinstance(mtype, int) or isinstance(mtype, bool):
        raise _fail(f"message type must be an integer, got {mtype!r}")
    if mtype not in KINDS:
        raise _fail(f"unknown message type {mtype}")
    if not isinstance(sender, str) or not sender or len(sender) > MAX_ID_LENGTH:
        raise _fail("message sender must be a non-empty string id")
    rest = value[2:]
    if mtype in (JOIN, OFFER) and len(rest) > (0 if mtype == JOIN else 1):
        metadata = rest[0] if mtype == JOIN else rest[1]
        if metadata is not None and not isinstance(metadata, (bool, int, float)):
            size = len(to_json(metadata))
            if size > MAX_METADATA_BYTES:
                raise _fail(f"metadata of {size} bytes exceeds {MAX_METADATA_BYTES}")
    if mtype == JOIN:
        return Message(JOIN, sender, metadata=rest[0] if rest else None)
    if mtype == OFFER:
        if not rest:
            raise _fail("offer without description")
        desc = _description(rest[0], "offer")
        return Message(OFFER, sender, description=desc, metadata=rest[1] if len(rest) > 1 else None)
    if mtype == ANSWER:
        if not rest:
            raise _fail("answer without description")
        return Message(ANSWER, sender, description=_description(rest[0], "answer"))
    if mtype == CANDIDATE:
        return Message(CANDIDATE, sender, candidate=check_candidate(rest[0] if rest else None))
    return Message(LEAVE, sender)


# -- the codec -------------------------------------------------------------------------------
class SignalingCodec:
    """Encodes and decodes driver messages with one peer's settings (all peers must agree)."""

    def __init__(
        self,
        compression: bool = True,
        encryption_key: str | bytes | None = None,
        hashing: bool = False,
    ) -> None:
        if encryption_key is not None and not isinstance(encryption_key, (str, bytes)):
            raise TypeError("signaling_encryption_key must be a str or bytes secret")
        if encryption_key is not None and len(encryption_key) == 0:
            raise ValueError("signaling_encryption_key must not be empty")
        self.compression = bool(compression)
        self.hashing = bool(hashing)
        self._key = derive_key(encryption_key) if encryption_key is not None else None

    @property
    def encrypted(self) -> bool:
        return self._key is not None

    def encode(self, message: Sequence[Any]) -> bytes:
        data = to_json(list(message))
        if self.compression:
            data = compress(data)
        if self._key is not None:
            data = encrypt(self._key, data)
        return data

    def decode(self, data: Any) -> Message:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise _fail(f"driver delivered {type(data).__name__}, expected bytes")
        data = bytes(data)
        if len(data) > MAX_MESSAGE_BYTES:
            raise _fail(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
        try:
            if self._key is not None:
                data = decrypt(self._key, data)
            if self.compression:
                data = decompress(data)
            try:
                value = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as error:
                raise _fail(f"message is not UTF-8 JSON: {error}", error) from None
        except PeerixError as error:
            # Nothing in a message says which steps were applied: a peer with other settings
            # is only ever "undecodable". Say which settings to compare, never stay silent.
            raise _fail(f"{error.message} {SETTINGS_HINT}", error.cause) from None
        return parse_message(value)

    def namespace(self, parts: Sequence[str]) -> list[str]:
        """The namespace as sent to the driver: parts hashed when hashing is on."""
        return [hash_part(p) for p in parts] if self.hashing else list(parts)
