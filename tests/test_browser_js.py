"""The browser peer's JavaScript without a browser: codec bytes, bundling, SDP helpers, and
the remote-stream label logic.

Node (>= 18 has CompressionStream and WebCrypto, like browsers) imports the package's ES
modules directly and must produce and accept the same bytes as the Python codec and the
vectors Node made for it (tests/vectors). Skipped when `node` is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from peerix_nb.browser._bundle import bundle
from peerix_nb.signaling import SignalingCodec

JS = Path(__file__).resolve().parents[1] / "peerix_nb" / "browser"
VECTORS = Path(__file__).with_name("vectors") / "vectors.json"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")

SCRIPT = r"""
import { SignalingCodec, base62, hashPart, deflate, parseMessage } from "CODEC";
import { msidsOf, ufragOf } from "PEER";
const input = JSON.parse(await new Promise((r) => { let s = ""; process.stdin.on("data", (d) => s += d); process.stdin.on("end", () => r(s)); }));
const hex = (b) => Buffer.from(b).toString("hex");
const unhex = (h) => new Uint8Array(Buffer.from(h, "hex"));
const out = { vectors: [], decoded: [], encoded: [], hashes: [], base62: [] };
const v = input.vectors;
const plain = new SignalingCodec({ compression: true });
const sealed = new SignalingCodec({ compression: true, encryptionKey: v.secret });
for (const m of v.messages) {
  const iv = unhex(m.iv_pipeline);
  out.vectors.push({ name: m.name,
    json: hex(await new SignalingCodec({ compression: false }).encode(m.value)) === m.json,
    deflate: hex(await plain.encode(m.value)) === m.deflate,
    pipeline: hex(await sealed.encode(m.value, iv)) === m.pipeline,
    roundtrip: JSON.stringify((await sealed.decode(unhex(m.pipeline)))) });
}
for (const h of v.hashes) out.hashes.push((await hashPart(h.input)) === h.hash);
for (const b of v.base62) out.base62.push(base62(unhex(b.bytes)) === b.base62);
const py = new SignalingCodec({ compression: true, encryptionKey: input.secret });
for (const h of input.python) out.decoded.push(await py.decode(unhex(h)));
for (const m of input.to_python) out.encoded.push(hex(await py.encode(m)));
// Hostile input: wrong key, garbage, a deflate bomb.
const errors = [];
for (const bad of [unhex("00".repeat(40)), unhex(input.python[0]).slice(0, 20)]) {
  try { await py.decode(bad); errors.push("decoded"); } catch (e) { errors.push(e.code); }
}
try { await plain.decode(await deflate(new Uint8Array(2 << 20))); errors.push("decoded"); } catch (e) { errors.push(e.code); }
try { parseMessage([9, "x"]); errors.push("parsed"); } catch (e) { errors.push(e.code); }
out.errors = errors;
const sdp = "v=0\r\na=ice-ufrag:abcd\r\nm=application 9 UDP\r\na=mid:0\r\nm=video 9 UDP\r\na=mid:1\r\na=msid:stream-1 track-1\r\n";
out.sdp = { ufrag: ufragOf(sdp), msids: Object.fromEntries(msidsOf(sdp)) };
console.log(JSON.stringify(out));
"""


@needs_node
def test_js_codec_matches_vectors_and_python(tmp_path: Path) -> None:
    script = tmp_path / "check.mjs"
    script.write_text(
        SCRIPT.replace("CODEC", (JS / "codec.js").as_uri()).replace(
            "PEER", (JS / "peer.js").as_uri()
        )
    )
    secret = "shared secret ✓"
    codec = SignalingCodec(compression=True, encryption_key=secret)
    sdp = "v=0\r\na=ice-ufrag:Zq3e\r\n"
    python = [
        [1, "ada", {"name": "Ada ✓", "n": 1.5}],
        [2, "ada", {"type": "offer", "sdp": sdp}, {"name": "Ada"}],
        [
            4,
            "ada",
            {
                "candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host",
                "sdpMid": "0",
                "sdpMLineIndex": 0,
                "usernameFragment": "Zq3e",
            },
        ],
        [5, "ada"],
    ]
    to_python = [
        [3, "bob", {"type": "answer", "sdp": sdp}],
        [1, "bob", {"name": "Bob 🦊"}],
        [5, "bob"],
    ]
    stdin = json.dumps(
        {
            "vectors": json.loads(VECTORS.read_text()),
            "secret": secret,
            "python": [codec.encode(m).hex() for m in python],
            "to_python": to_python,
        }
    )
    run = subprocess.run(
        [NODE, str(script)], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    for row in out["vectors"]:
        assert row["json"] and row["deflate"] and row["pipeline"], row
    assert all(out["hashes"]) and all(out["base62"])
    # Python -> JS: every field as the Python side meant it.
    kinds = [m["kind"] for m in out["decoded"]]
    assert kinds == ["join", "offer", "candidate", "leave"]
    assert out["decoded"][0]["metadata"] == {"name": "Ada ✓", "n": 1.5}
    assert out["decoded"][1]["description"] == {"type": "offer", "sdp": sdp}
    assert out["decoded"][2]["candidate"]["usernameFragment"] == "Zq3e"
    # JS -> Python.
    decoded = [codec.decode(bytes.fromhex(h)) for h in out["encoded"]]
    assert [m.kind for m in decoded] == ["answer", "join", "leave"]
    assert decoded[1].metadata == {"name": "Bob 🦊"}
    assert out["errors"] == ["PEER_SIGNALING_ERROR"] * 4
    assert out["sdp"] == {
        "ufrag": "abcd",
        "msids": {
            "1": {"streamId": "stream-1", "trackId": "track-1"},
            "0": {"streamId": "", "trackId": ""},
        },
    }


LABELS_SCRIPT = r"""
import { Remote } from "PEER";
// Node has no WebRTC: the smallest MediaStream and RTCPeerConnection _syncIncoming reads.
globalThis.MediaStream = class { constructor() { this.tracks = []; }
  addTrack(t) { this.tracks.push(t); } removeTrack(t) { this.tracks = this.tracks.filter((x) => x !== t); }
  getTracks() { return this.tracks; } };
const events = [];
const remote = Object.create(Remote.prototype);
Object.assign(remote, { id: "b", streams: new Map(), _labels: {}, _incoming: new Map(),
  peer: { _emit: (name, f) => events.push([name, f.label ?? null]) } });
const video = { receiver: { track: { kind: "video", id: "t2" } }, mid: "1", currentDirection: "recvonly" };
const sdp = (msid) => "v=0\r\nm=application 9 UDP\r\na=mid:0\r\nm=video 9 UDP\r\na=mid:1\r\n" + msid;
const pc = { signalingState: "stable", getTransceivers: () => [video] };
remote.pc = pc;
const seen = () => ({ events: events.splice(0), streams: [...remote.streams.keys()] });
const out = [];
// 1. b's stream s2 first arrives in b's ANSWER (after a glare): no label map yet.
pc.remoteDescription = { sdp: sdp("a=msid:s2 t2\r\n") };
remote._syncIncoming(); out.push(seen());
// 2. b's next OFFER names it: announced again under its label, once.
remote._labels = { s2: "two" };
remote._syncIncoming(); out.push(seen());
remote._syncIncoming(); out.push(seen());
// 3. b unpublishes it: removed under the label it now has.
video.currentDirection = "inactive";
remote._syncIncoming(); out.push(seen());
console.log(JSON.stringify(out));
"""


@needs_node
def test_js_relabels_a_stream_first_seen_in_an_answer(tmp_path: Path) -> None:
    """browser/peer.js does what remote.py does (tests/test_soak.py proves it over aiortc): a
    stream that first arrives in an answer shows under its id until an offer's label map names
    it, then is announced again under its label, and later leaves under that label."""
    script = tmp_path / "labels.mjs"
    script.write_text(LABELS_SCRIPT.replace("PEER", (JS / "peer.js").as_uri()))
    run = subprocess.run([NODE, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    answer, offer, again, gone = json.loads(run.stdout)
    assert answer == {"events": [["stream:add", "s2"], ["track:add", "s2"]], "streams": ["s2"]}
    assert offer == {"events": [["stream:remove", "s2"], ["stream:add", "two"]], "streams": ["two"]}
    assert again == {"events": [], "streams": ["two"]}
    assert gone == {"events": [["track:remove", "two"], ["stream:remove", "two"]], "streams": []}


JOIN_SCRIPT = r"""
import { Peer } from "PEER";
import { BroadcastChannelDriver } from "DRIVERS";
const driver = new BroadcastChannelDriver("join-test");  // Node has BroadcastChannel too
const peer = new Peer({ id: "solo", driver });
const out = {};
const first = peer.join("x");
const second = peer.join("x");  // while joining: waits for that join, subscribes nothing more
try { await peer.join("y"); out.other = "joined"; } catch (e) { out.other = `${e.code}: ${e.message}`; }
await Promise.all([first, second]);
out.subscriptions = [...driver._subs.map.values()].map((handlers) => handlers.length);
try { await peer.join("y"); out.otherJoined = "joined"; } catch (e) { out.otherJoined = e.code; }
out.again = await peer.join("x");
out.room = peer.room;
await peer.leave();
await peer.join("y");
out.afterLeave = peer.room;
await peer.leave();
driver.close();
console.log(JSON.stringify(out));
"""


@needs_node
def test_js_join_is_one_room_at_a_time(tmp_path: Path) -> None:
    """browser/peer.js agrees with Peer.join: the same room again is the same join, another
    room while in one is an error that says to leave first (it was silently ignored)."""
    script = tmp_path / "join.mjs"
    script.write_text(
        JOIN_SCRIPT.replace("PEER", (JS / "peer.js").as_uri()).replace(
            "DRIVERS", (JS / "drivers.js").as_uri()
        )
    )
    run = subprocess.run([NODE, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["subscriptions"] == [1, 1]  # [room] and [room, id], once each
    assert out["other"] == (
        'PEER_SIGNALING_ERROR: this peer is already in room "x" (a peer is in one room at a'
        ' time): leave() before joining "y"'
    )
    assert out["otherJoined"] == "PEER_SIGNALING_ERROR"
    assert out["room"] == "x" and out["afterLeave"] == "y"


@needs_node
@pytest.mark.parametrize("entry", ["browser_peer.js", "broadcast.js"])
def test_bundles_are_one_valid_module(tmp_path: Path, entry: str) -> None:
    text = bundle(entry)
    assert "import " not in "\n".join(
        line for line in text.splitlines() if line.lstrip().startswith("import ")
    )
    path = tmp_path / entry.replace(".js", ".mjs")
    path.write_text(text)
    run = subprocess.run([NODE, "--check", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert text.count("export default") == 1


def test_bundler_refuses_unknown_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from peerix_nb.browser import _bundle

    (tmp_path / "a.js").write_text('import x from "./b.js";\nexport default 1;\n')
    monkeypatch.setattr(_bundle, "HERE", tmp_path)
    with pytest.raises(ValueError, match="only `import"):
        _bundle.bundle.__wrapped__("a.js")
