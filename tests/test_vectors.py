"""Interop with browser Peerix: Python's codec against bytes made by a real JS engine (Node).

tests/vectors/vectors.json is written by tests/vectors/make_vectors.mjs (JSON.stringify,
CompressionStream("deflate"), WebCrypto AES-GCM, SHA-256 + BigInt base62). The last tests
run Node on Python's output, so both directions are covered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from peerix_nb.signaling import (
    SignalingCodec,
    base62,
    compress,
    decompress,
    decrypt,
    derive_key,
    encrypt,
    hash_part,
    parse_message,
    to_json,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "vectors.json").read_text("utf-8"))
SECRET: str = VECTORS["secret"]
MESSAGES: list[dict[str, Any]] = VECTORS["messages"]
NODE = shutil.which("node")


def by_name(items: list[dict[str, Any]]) -> Any:
    return pytest.mark.parametrize("vector", items, ids=[v["name"] for v in items])


def test_key_is_sha256_of_the_secret() -> None:
    assert derive_key(SECRET).hex() == VECTORS["key"]


@by_name(MESSAGES)
def test_to_json_matches_json_stringify(vector: dict[str, Any]) -> None:
    assert to_json(vector["value"]).hex() == vector["json"]


@by_name(MESSAGES)
def test_python_reads_js_deflate(vector: dict[str, Any]) -> None:
    assert decompress(bytes.fromhex(vector["deflate"])).hex() == vector["json"]


@by_name(MESSAGES)
def test_python_decrypts_js_aes_gcm(vector: dict[str, Any]) -> None:
    key = derive_key(SECRET)
    assert decrypt(key, bytes.fromhex(vector["aesgcm"])).hex() == vector["json"]
    assert decrypt(key, bytes.fromhex(vector["pipeline"])).hex() == vector["deflate"]


@by_name(MESSAGES)
def test_python_encrypt_reproduces_js_bytes(vector: dict[str, Any]) -> None:
    key = derive_key(SECRET)
    json_bytes, deflated = bytes.fromhex(vector["json"]), bytes.fromhex(vector["deflate"])
    assert encrypt(key, json_bytes, iv=bytes.fromhex(vector["iv"])).hex() == vector["aesgcm"]
    pipeline = encrypt(key, deflated, iv=bytes.fromhex(vector["iv_pipeline"]))
    assert pipeline.hex() == vector["pipeline"]


@by_name(MESSAGES)
def test_codec_decodes_every_js_setting(vector: dict[str, Any]) -> None:
    expected = parse_message(vector["value"])
    cases = [
        (SignalingCodec(compression=False), "json"),
        (SignalingCodec(), "deflate"),
        (SignalingCodec(compression=False, encryption_key=SECRET), "aesgcm"),
        (SignalingCodec(encryption_key=SECRET), "pipeline"),
    ]
    for codec, field in cases:
        assert codec.decode(bytes.fromhex(vector[field])) == expected, field


# What a Python caller would pass for the vectors whose JS value JSON cannot carry.
PYTHON_VALUES: dict[str, Any] = {"integral_floats": [1.0, -0.0, 2.5]}


@pytest.mark.parametrize("vector", VECTORS["json_edges"], ids=lambda v: v["name"])
def test_to_json_edge_cases(vector: dict[str, Any]) -> None:
    value = PYTHON_VALUES.get(vector["name"], vector["value"])
    assert to_json(value).hex() == vector["json"]


@pytest.mark.parametrize("vector", VECTORS["hashes"], ids=lambda v: repr(v["input"][:12]))
def test_hash_part_matches_js(vector: dict[str, Any]) -> None:
    assert hash_part(vector["input"]) == vector["hash"]
    assert base62(bytes.fromhex(vector["sha256"])) == vector["hash"]


@pytest.mark.parametrize("vector", VECTORS["base62"], ids=lambda v: v["bytes"])
def test_base62_matches_js_bigint(vector: dict[str, Any]) -> None:
    assert base62(bytes.fromhex(vector["bytes"])) == vector["base62"]


# -- Python -> JavaScript -----------------------------------------------------------------
NODE_READER = r"""
const utf8 = new TextDecoder('utf-8', { fatal: true });
const run = async (bytes, through) => new Uint8Array(await new Response(
  new Blob([bytes]).stream().pipeThrough(through)).arrayBuffer());
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
(async () => {
  const raw = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(cases.secret));
  const key = await crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['decrypt']);
  const out = [];
  for (const c of cases.items) {
    let data = Buffer.from(c.hex, 'hex');
    if (c.encrypted) {
      data = new Uint8Array(await crypto.subtle.decrypt(
        { name: 'AES-GCM', iv: data.slice(0, 12) }, key, data.slice(12)));
    }
    if (c.compressed) data = await run(data, new DecompressionStream('deflate'));
    out.push(JSON.parse(utf8.decode(data)));
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.mark.skipif(NODE is None, reason="node (Node.js >= 18) not installed: no JS engine")
def test_node_reads_python_output() -> None:
    values = [v["value"] for v in MESSAGES]
    items = []
    for value in values:
        json_bytes = to_json(value)
        items += [
            {"hex": compress(json_bytes).hex(), "compressed": True, "encrypted": False},
            {
                "hex": encrypt(derive_key(SECRET), json_bytes).hex(),
                "compressed": False,
                "encrypted": True,
            },
            {
                "hex": SignalingCodec(encryption_key=SECRET).encode(value).hex(),
                "compressed": True,
                "encrypted": True,
            },
        ]
    assert NODE is not None
    done = subprocess.run(
        [NODE, "-e", NODE_READER],
        input=json.dumps({"secret": SECRET, "items": items}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    decoded = json.loads(done.stdout)
    assert decoded == [value for value in values for _ in range(3)]
