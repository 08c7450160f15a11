"""Codec unit tests: round trips, interop with reference zlib/cryptography calls, hashing, garbage."""

from __future__ import annotations

import hashlib
import json
import os
import zlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from peerix_nb import PeerixError
from peerix_nb.signaling import (
    ANSWER,
    CANDIDATE,
    JOIN,
    LEAVE,
    MAX_MESSAGE_BYTES,
    OFFER,
    SignalingCodec,
    base62,
    decrypt,
    derive_key,
    encrypt,
    hash_part,
    to_json,
)

OFFER_MSG = [
    OFFER,
    "peer-a",
    {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"},
    {"name": "Ada ✓"},
]
CANDIDATE_MSG = [
    CANDIDATE,
    "peer-b",
    {
        "candidate": "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "abcd",
    },
]


@pytest.mark.parametrize("compression", [True, False])
@pytest.mark.parametrize("key", [None, "secret", b"\x00raw-bytes"])
@pytest.mark.parametrize(
    "message",
    [
        [JOIN, "a", {"name": "x", "n": [1, 2]}],
        [JOIN, "a"],
        OFFER_MSG,
        [ANSWER, "b", {"type": "answer", "sdp": "v=0"}],
        CANDIDATE_MSG,
        [CANDIDATE, "b", None],
        [LEAVE, "a"],
    ],
)
def test_round_trip(compression, key, message):
    codec = SignalingCodec(compression=compression, encryption_key=key)
    decoded = codec.decode(codec.encode(message))
    assert decoded.type == message[0] and decoded.sender == message[1]
    if message[0] in (OFFER, ANSWER):
        assert decoded.description == message[2]
    if message[0] == OFFER:
        assert decoded.metadata == message[3]
    if message[0] == JOIN and len(message) > 2:
        assert decoded.metadata == message[2]
    if message[0] == CANDIDATE:
        assert decoded.candidate == message[2]


def test_plain_encoding_is_compact_utf8_json():
    codec = SignalingCodec(compression=False)
    assert codec.encode([JOIN, "a", {"name": "Zoë"}]) == '[1,"a",{"name":"Zoë"}]'.encode()


def test_compression_is_zlib_rfc1950():
    codec = SignalingCodec()
    data = codec.encode(OFFER_MSG)
    assert json.loads(zlib.decompress(data)) == OFFER_MSG
    # and what zlib.compress writes decodes too
    assert codec.decode(zlib.compress(to_json(OFFER_MSG))).sender == "peer-a"


def test_encryption_matches_reference_aesgcm():
    secret = "correct horse"
    key = hashlib.sha256(secret.encode()).digest()
    assert derive_key(secret) == key
    iv = bytes(range(12))
    assert encrypt(key, b"hello", iv) == iv + AESGCM(key).encrypt(iv, b"hello", None)
    # a reference ciphertext (compressed JSON, random IV) decodes with the same secret
    blob = os.urandom(12)
    ciphertext = blob + AESGCM(key).encrypt(blob, zlib.compress(to_json([LEAVE, "z"])), None)
    assert SignalingCodec(encryption_key=secret).decode(ciphertext).type == LEAVE


def test_each_encryption_uses_a_fresh_iv():
    codec = SignalingCodec(encryption_key="k")
    assert codec.encode([LEAVE, "a"])[:12] != codec.encode([LEAVE, "a"])[:12]


def test_wrong_key_and_tampering_are_signaling_errors():
    data = SignalingCodec(encryption_key="right").encode(OFFER_MSG)
    with pytest.raises(PeerixError) as info:
        SignalingCodec(encryption_key="wrong").decode(data)
    assert info.value.code == "PEER_SIGNALING_ERROR" and "key" in info.value.message
    tampered = bytearray(data)
    tampered[20] ^= 1
    with pytest.raises(PeerixError):
        SignalingCodec(encryption_key="right").decode(bytes(tampered))
    with pytest.raises(PeerixError):
        decrypt(derive_key("right"), b"short")


def test_base62_and_hashing():
    assert base62(b"") == "0" and base62(b"\x00\x00") == "0"
    assert base62(b"\x3d") == "Z" and base62(b"\x3e") == "10"
    digest = hashlib.sha256(b"lobby").digest()
    n, out = int.from_bytes(digest, "big"), ""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    while n:
        n, r = divmod(n, 62)
        out = alphabet[r] + out
    assert hash_part("lobby") == out
    assert SignalingCodec(hashing=True).namespace(["lobby", "p1"]) == [
        hash_part("lobby"),
        hash_part("p1"),
    ]
    assert SignalingCodec().namespace(["lobby", "p1"]) == ["lobby", "p1"]


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "decompress"),
        (b"\x00\x01garbage", "decompress"),
        (zlib.compress(b"{not json"), "JSON"),
        (zlib.compress(b"\xff\xfe"), "UTF-8"),
        (zlib.compress(b'{"a": 1}'), "array"),
        (zlib.compress(b"[1]"), "array"),
        (zlib.compress(b'[9, "a"]'), "unknown message type 9"),
        (zlib.compress(b'["1", "a"]'), "integer"),
        (zlib.compress(b'[true, "a"]'), "integer"),
        (zlib.compress(b"[1, 5]"), "sender"),
        (zlib.compress(b'[1, ""]'), "sender"),
        (zlib.compress(b'[2, "a"]'), "offer without"),
        (zlib.compress(b'[2, "a", {"type": "answer", "sdp": "x"}]'), "type"),
        (zlib.compress(b'[3, "a", {"type": "answer"}]'), "SDP"),
        (zlib.compress(b'[4, "a", {"candidate": 5}]'), "candidate"),
        (zlib.compress(b'[4, "a", {"candidate": "x", "sdpMLineIndex": -1}]'), "sdpMLineIndex"),
        (zlib.compress(b"[" * 100_000), "JSON"),
        (zlib.compress(b" " * (MAX_MESSAGE_BYTES + 10)), "exceeds"),
        (b"x" * (MAX_MESSAGE_BYTES + 1), "exceeds"),
    ],
)
def test_garbage_is_a_signaling_error(payload, reason):
    with pytest.raises(PeerixError) as info:
        SignalingCodec().decode(payload)
    assert info.value.code == "PEER_SIGNALING_ERROR"
    assert reason.lower() in info.value.message.lower()


def test_non_bytes_input_is_rejected():
    with pytest.raises(PeerixError):
        SignalingCodec().decode("text")  # type: ignore[arg-type]


def test_bad_settings_are_rejected_up_front():
    with pytest.raises(ValueError):
        SignalingCodec(encryption_key="")
    with pytest.raises(TypeError):
        SignalingCodec(encryption_key=123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sender", "receiver"),
    [
        (SignalingCodec(compression=True), SignalingCodec(compression=False)),
        (SignalingCodec(compression=False), SignalingCodec(compression=True)),
        (SignalingCodec(encryption_key="one"), SignalingCodec(encryption_key="two")),
        (SignalingCodec(), SignalingCodec(encryption_key="two")),
        (SignalingCodec(encryption_key="one"), SignalingCodec()),
    ],
    ids=["deflated-to-plain", "plain-to-deflate", "wrong-key", "plain-to-key", "key-to-plain"],
)
def test_a_peer_with_other_settings_gets_an_error_naming_them(sender, receiver) -> None:
    # A message does not say which steps were applied: the error must say what to compare,
    # so a room with mismatched settings is never silently empty (README, plain web pages).
    with pytest.raises(PeerixError) as caught:
        receiver.decode(sender.encode([1, "a", {"name": "a"}]))
    assert caught.value.code == "PEER_SIGNALING_ERROR"
    assert "signaling_compression" in str(caught.value)
    assert "signaling_encryption_key" in str(caught.value)
