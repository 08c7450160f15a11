"""The browser peer's room logic (browser/peer.js `Peer`, Remote's control channel) in Node.

Node has no RTCPeerConnection: these tests drive a Peer through JS drivers written the way
Peerix documents custom drivers, and, where a Remote must exist, through a small fake
RTCPeerConnection that only produces descriptions (no media, no ICE). They check what the Python
peer does (tests/test_peer.py, test_hostile.py): the driver contract, the periodic JOIN, verify,
the limits, the rows for what an inactive driver could not send, and the control-channel drain
watch behind the fast `disconnected`. Each prints JSON; Python asserts on it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS = Path(__file__).resolve().parents[1] / "peerix_nb" / "browser"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

PRELUDE = r"""
import { Peer, Remote, DrainWatch } from "PEER";
import { Driver } from "DRIVERS";
import { SignalingCodec } from "CODEC";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(condition, ms = 3000) {
  const end = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > end) throw new Error(`not true within ${ms} ms: ${condition}`);
    await sleep(5);
  }
}
/** A custom driver as Peerix documents one: the three calls over an in-process map, nothing
 *  else (it never calls setActive). It records what it dispatched. */
class DictDriver extends Driver {
  constructor(options) {
    super(options);
    this.map = new Map();
    this.log = []; // [ms, namespace, bytes]
  }
  async subscribe(ns, handler) {
    const key = ns.join(":");
    if (!this.map.has(key)) this.map.set(key, []);
    this.map.get(key).push(handler);
  }
  async unsubscribe(ns, handler) {
    const list = this.map.get(ns.join(":")) || [];
    list.splice(list.indexOf(handler), 1);
  }
  async dispatch(ns, message) {
    this.log.push([performance.now(), ns.join(":"), message]);
    for (const handler of [...(this.map.get(ns.join(":")) || [])]) setTimeout(() => handler(message), 0);
  }
}
/** Only descriptions: enough for a Remote to offer and answer through the driver. */
class FakePC {
  constructor() {
    Object.assign(this, { signalingState: "stable", connectionState: "new", iceConnectionState: "new",
      iceGatheringState: "new", localDescription: null, remoteDescription: null });
  }
  createDataChannel(label) {
    return { label, readyState: "connecting", bufferedAmount: 0, send() {}, close() { this.readyState = "closed"; } };
  }
  async createOffer() { return { type: "offer", sdp: "v=0\r\na=ice-ufrag:fake\r\n" }; }
  async createAnswer() { return { type: "answer", sdp: "v=0\r\na=ice-ufrag:fake\r\n" }; }
  async setLocalDescription(d) {
    if (!d || !d.type) d = this.signalingState === "have-remote-offer" ? await this.createAnswer() : await this.createOffer();
    if (d.type === "rollback") { this.signalingState = "stable"; this.localDescription = null; return; }
    this.localDescription = d;
    this.signalingState = d.type === "offer" ? "have-local-offer" : "stable";
  }
  async setRemoteDescription(d) {
    this.remoteDescription = d;
    this.signalingState = d.type === "offer" ? "have-remote-offer" : "stable";
  }
  async addIceCandidate() {}
  getTransceivers() { return []; }
  getSenders() { return []; }
  getReceivers() { return []; }
  close() { this.signalingState = "closed"; this.connectionState = "closed"; }
}
globalThis.RTCPeerConnection = FakePC;
function record(peer) {
  const events = [];
  peer.on("*", (e) => events.push(e));
  return events;
}
const codec = new SignalingCodec();
const kinds = (driver) => Promise.all(driver.log.map(async ([, ns, bytes]) => [ns, (await codec.decode(bytes)).kind]));
const out = {};
"""


def run(tmp_path: Path, body: str) -> Any:
    script = tmp_path / "peer_check.mjs"
    text = (PRELUDE + body + "\nconsole.log(JSON.stringify(out));\n").replace(
        '"PEER"', json.dumps((JS / "peer.js").as_uri())
    )
    text = text.replace('"DRIVERS"', json.dumps((JS / "drivers.js").as_uri()))
    text = text.replace('"CODEC"', json.dumps((JS / "codec.js").as_uri()))
    script.write_text(text)
    done = subprocess.run([NODE, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


CUSTOM_DRIVER = r"""
const driver = new DictDriver();
out.active = driver.active;
const a = new Peer({ id: "a", driver, connectionTimeout: 0 });
const b = new Peer({ id: "b", driver, connectionTimeout: 0 });
const ea = record(a), eb = record(b);
await a.join("custom", { name: "a" });
await b.join("custom", { name: "b" });
// b's JOIN reaches a, which makes a Remote and offers through the driver; b admits a on it.
await until(() => eb.some((e) => e.name === "connection:new"));
out.a = ea.filter((e) => e.remote || e.name.startsWith("signal:")).map((e) => [e.name, e.kind || null, e.remote ? e.remote.id : null]);
out.b = eb.filter((e) => e.remote || e.name.startsWith("signal:")).map((e) => [e.name, e.kind || null, e.remote ? e.remote.id : null]);
out.dispatched = await kinds(driver);
out.inactiveOrDropped = [...ea, ...eb].filter((e) => ["driver:inactive", "signal:drop"].includes(e.name)).length;
await a.leave();
await b.leave();
out.subscriptions = [...driver.map.values()].reduce((n, list) => n + list.length, 0);
"""


def test_a_custom_js_driver_with_only_the_three_calls_carries_the_room(tmp_path: Path) -> None:
    """drivers.js `Driver` starts active, as Peerix's: a driver that implements subscribe,
    unsubscribe and dispatch works as is (its JOIN was not sent: no peer ever saw another)."""
    out = run(tmp_path, CUSTOM_DRIVER)
    assert out["active"] is True
    assert ["signal:send", "join", None] in out["a"] and ["signal:send", "join", None] in out["b"]
    assert ["connection:new", None, "b"] in out["a"]  # a got b's JOIN
    assert ["signal:send", "offer", "b"] in out["a"]  # ... and offered through the driver
    assert ["connection:new", None, "a"] in out["b"]  # b admitted a on that offer
    assert ["custom:b", "offer"] in out["dispatched"]
    assert out["inactiveOrDropped"] == 0
    assert out["subscriptions"] == 0


INACTIVE_DRIVER = r"""
class ConnectsLater extends DictDriver {
  constructor() { super({ active: false }); }
}
const warnings = [];
console.warn = (...args) => warnings.push(args.join(" "));
Math.random = () => 0.95; // the re-announcement delay would be 950 ms: the first JOIN must not wait
const driver = new ConnectsLater();
const a = new Peer({ id: "a", driver, connectionTimeout: 0, reannounceFirst: 60 });
const ea = record(a);
await a.join("later", { name: "a" });
out.waits = ea.filter((e) => e.name === "driver:inactive").map((e) => [e.state, e.kind, e.detail]);
out.sentWhileInactive = ea.filter((e) => e.name === "signal:send").length;
out.warnings = warnings;
a._sendDirect("bob", [5, "a"], "leave"); // any message for the driver while it is inactive
await until(() => ea.some((e) => e.name === "signal:drop"));
out.drops = ea.filter((e) => e.name === "signal:drop").map((e) => [e.kind, e.via, e.detail, e.size > 0]);
out.dispatchedWhileInactive = driver.log.length;
const t0 = performance.now();
driver.setActive(true);
await until(() => ea.some((e) => e.name === "signal:send" && e.kind === "join"));
out.joinAfterMs = performance.now() - t0;
out.names = ea.map((e) => e.name);
out.dispatched = await kinds(driver);
await a.leave();
"""


def test_a_js_join_on_an_inactive_driver_says_so_then_sends_when_active(tmp_path: Path) -> None:
    out = run(tmp_path, INACTIVE_DRIVER)
    assert out["waits"] == [["inactive", "join", "JOIN waits for the driver to become active"]]
    assert out["sentWhileInactive"] == 0
    assert len(out["warnings"]) == 1 and "inactive" in out["warnings"][0]
    # What the inactive driver could not send is a row, as in the Python peer.
    assert out["drops"] == [["leave", "driver", "driver inactive: not sent", True]]
    assert out["dispatchedWhileInactive"] == 0
    assert out["joinAfterMs"] < 300  # at once, not after the 0-1 s re-announcement delay
    assert out["dispatched"] == [["later", "join"]]
    assert out["names"].index("driver:active") < out["names"].index("signal:send")


REANNOUNCE = r"""
// The waits the peer asks for, read from setTimeout itself: wall-clock gaps would be a timed
// assertion on a shared, noisy machine.
const realSetTimeout = globalThis.setTimeout;
let delays = [];
globalThis.setTimeout = (fn, ms, ...rest) => { delays.push(ms); return realSetTimeout(fn, ms, ...rest); };
Math.random = () => 0.5; // no jitter: each wait is exactly the interval
const driver = new DictDriver();
const a = new Peer({ id: "a", driver, reannounceFirst: 0.05, reannounceMax: 0.2 });
await a.join("again", { name: "a" });
await until(() => driver.log.length >= 5); // the JOIN and four repeats
await a.leave();
const joins = async () => (await Promise.all(driver.log.map(async ([at, ns, bytes]) => [at, ns, await codec.decode(bytes)])))
  .filter(([, , m]) => m.kind === "join");
const seen = await joins();
out.namespaces = [...new Set(seen.map(([, ns]) => ns))];
out.metadata = seen.map(([, , m]) => m.metadata.name);
out.delays = delays.filter((ms) => ms >= 20); // not the 0-5 ms waits of until() and the codec
await sleep(500);
out.afterLeave = (await joins()).length - seen.length;
// Jitter: each wait is 0.5-1.5 times the interval.
Math.random = () => 0;
delays = [];
const b = new Peer({ id: "b", driver: new DictDriver(), reannounceFirst: 0.1, reannounceMax: 1 });
await b.join("again");
out.jittered = delays.filter((ms) => ms >= 20)[0];
await b.leave();
globalThis.setTimeout = realSetTimeout;
"""


def test_the_js_peer_repeats_its_join_with_back_off_until_it_leaves(tmp_path: Path) -> None:
    """peer.py `_reannounce`: after ~first s, then doubling up to max, jittered; stops on leave.
    Intervals shrunk through the Peer's reannounceFirst/reannounceMax options."""
    out = run(tmp_path, REANNOUNCE)
    assert out["namespaces"] == ["again"] and set(out["metadata"]) == {"a"}
    # The first repeat after 50 ms, then doubling up to the 200 ms cap.
    assert out["delays"][:4] == [50, 100, 200, 200], out["delays"]
    assert len(out["metadata"]) >= 5
    assert out["afterLeave"] == 0  # leave() stops the repeats
    assert out["jittered"] == 50  # 0.5 x 100 ms


VERIFY = r"""
const driver = new DictDriver();
const asked = [];
let release;
const decided = new Promise((resolve) => { release = resolve; }); // verify answers when told
const verify = async ({ id, metadata }) => {
  asked.push([id, metadata]);
  await decided;
  if (id === "boom") throw new Error("no way");
  return !!(metadata && metadata.ok);
};
const a = new Peer({ id: "a", driver, connectionTimeout: 0, reannounceFirst: 60 });
const ea = record(a);
await a.join("v", null, verify);
const send = async (ns, message) => driver.dispatch(ns, await codec.encode(message));
const cand = { candidate: "candidate:1 1 udp 1 192.0.2.1 9 typ host", sdpMid: "0", sdpMLineIndex: 0, usernameFragment: "u" };
await send(["v"], [1, "mallory", { ok: false }]);
await send(["v", "a"], [4, "mallory", cand]); // held while verify decides, then dropped with mallory
await send(["v"], [1, "bob", { ok: true }]);
await send(["v"], [5, "bob"]); // held, then routed after bob's admission: it closes bob
await send(["v"], [1, "boom", { ok: true }]);
await until(() => ea.filter((e) => e.name === "signal:recv").length === 5); // all five arrived
out.held = [...a._admitting].map(([id, held]) => [id, held.length]);
out.connectionsWhileDeciding = a.connections.size;
release();
await until(() => ea.filter((e) => e.name === "signal:reject").length === 2 && ea.some((e) => e.name === "connection:closed"));
out.asked = asked;
out.rejects = ea.filter((e) => e.name === "signal:reject").map((e) => [e.kind, e.detail]);
out.errors = ea.filter((e) => e.name === "error").map((e) => [e.error.code, e.error.message]);
out.bob = ea.filter((e) => e.remote && e.remote.id === "bob").map((e) => [e.name, e.detail || null]);
out.others = ea.filter((e) => e.remote && e.remote.id !== "bob").length;
await a.leave();
// verify must be a function
try { await new Peer({ driver }).join("v", null, "yes"); out.badVerify = "joined"; } catch (e) { out.badVerify = e.name; }
"""


def test_js_verify_holds_a_senders_messages_and_rejects_like_the_python_peer(
    tmp_path: Path,
) -> None:
    out = run(tmp_path, VERIFY)
    assert out["asked"] == [
        ["mallory", {"ok": False}],
        ["bob", {"ok": True}],
        ["boom", {"ok": True}],
    ]
    assert out["held"] == [["mallory", 1], ["bob", 1], ["boom", 0]]
    assert out["connectionsWhileDeciding"] == 0
    assert out["rejects"] == [
        ["join", "mallory rejected by verify"],
        ["join", "boom rejected by verify"],
    ]
    assert out["errors"] == [["PEER_SIGNALING_ERROR", "verify raised Error: no way"]]
    assert out["bob"][0] == ["connection:new", "impolite"]
    assert out["bob"][-1] == ["connection:closed", "remote left"]  # the held LEAVE, in order
    assert out["others"] == 0  # mallory and boom never got a Remote
    assert out["badVerify"] == "TypeError"


LIMITS = r"""
const driver = new DictDriver();
const errors = [];
try { new Peer({ id: "x".repeat(257), driver }); out.longId = "made"; } catch (e) { out.longId = e.code; }
const a = new Peer({ id: "a", driver, connectionTimeout: 0, maxRemotes: 2, reannounceFirst: 60 });
const ea = record(a);
try { await a.join("lim", { blob: "x".repeat(65536) }); out.bigMetadata = "joined"; } catch (e) { out.bigMetadata = e.message; }
await a.join("lim");
const send = async (ns, message) => driver.dispatch(ns, await codec.encode(message));
await send(["lim"], [1, "greedy", { blob: "x".repeat(65536) }]);
await send(["lim"], [1, "y".repeat(257), null]);
await driver.dispatch(["lim"], new Uint8Array((1 << 20) + 1));
for (let i = 0; i < 5; i++) await send(["lim"], [1, `bot${i}`, null]);
const cand = { candidate: "candidate:1 1 udp 1 192.0.2.1 9 typ host", sdpMid: "0", sdpMLineIndex: 0, usernameFragment: "u" };
for (let i = 0; i < 101; i++) await send(["lim", "a"], [4, "early", cand]);
await until(() => ea.filter((e) => e.name === "signal:drop" && /no connection to early/.test(e.detail)).length === 1);
out.errors = ea.filter((e) => e.name === "error").map((e) => e.error.message);
out.rejects = ea.filter((e) => e.name === "signal:reject").map((e) => e.detail);
out.connections = [...a.connections.keys()].sort();
out.holds = ea.filter((e) => e.name === "signal:hold").length;
// 256 channels per remote: the 257th label fails at once at the opener ...
for (let i = 0; i < 256; i++) a.open(`c${i}`);
try { a.open("one-too-many"); out.open257 = "opened"; } catch (e) { out.open257 = e.code; }
a.open("c0"); // the same label again is not a new channel
// ... and a remote's 257th channel is refused (an error) and closed.
const remote = a.connections.get("bot0");
for (let i = 0; i < 256; i++) remote.channels.set(`r${i}`, { readyState: "open", close() {} });
const extra = { label: "extra", readyState: "connecting", closed: false, close() { this.closed = true; } };
remote._registerChannel(extra);
out.extraClosed = extra.closed;
out.extraError = ea.filter((e) => e.name === "error").map((e) => [e.error.code, e.error.message]).pop();
// 100 candidates held before the remote description, then a drop row each.
const other = a.connections.get("bot1");
for (let i = 0; i < 102; i++) await other._onCandidate({ ...cand });
out.pending = other._pendingCandidates.length;
out.candidateDrops = ea.filter((e) => e.name === "signal:drop" && e.remote === other).map((e) => e.detail);
await a.leave();
"""


def test_js_limits_match_the_python_peer(tmp_path: Path) -> None:
    out = run(tmp_path, LIMITS)
    assert out["longId"] == "PEER_SIGNALING_ERROR"
    assert out["bigMetadata"] == "metadata is 65547 bytes as JSON; the limit is 65536"
    errors = out["errors"]
    assert any("metadata of 65547 bytes exceeds 65536" in m for m in errors), errors
    assert any("sender must be a non-empty string id" in m for m in errors), errors
    assert any("exceeds 1048576" in m for m in errors), errors
    assert out["rejects"] == [f"bot{i}: room full (2 remotes)" for i in (2, 3, 4)]
    assert out["connections"] == ["bot0", "bot1"]
    assert out["holds"] == 100  # early candidates: 100 held, the 101st dropped
    assert out["open257"] == "PEER_DATACHANNEL_ERROR"
    assert out["extraClosed"] is True
    assert out["extraError"] == [
        "PEER_DATACHANNEL_ERROR",
        'channel "extra" refused: 256 channels to bot0 already',
    ]
    assert out["pending"] == 100
    assert out["candidateDrops"] == ["more than 100 candidates before their description"] * 2


LIVENESS = r"""
const events = [];
function fakeRemote(control, pc) {
  const remote = Object.create(Remote.prototype);
  Object.assign(remote, { id: "b", state: "connected", controlOpen: false, _closing: false, _control: control,
    _liveness: null, _stalled: false, _timer: null, _needsNegotiation: false, _incoming: new Map(),
    channels: new Map(), pc, _enqueue: () => Promise.resolve(),
    peer: { connectionTimeout: 0, channels: new Map(), _remoteClosed() {},
      _emit: (name, f) => events.push([name, f.state ?? null, f.detail ?? null]) } });
  return remote;
}
// A control channel whose sends pile up while `stuck` (the SCTP stack takes nothing).
const control = { readyState: "open", bufferedAmount: 0, stuck: false, sent: [],
  send(data) { this.sent.push(data); if (this.stuck) this.bufferedAmount += data.length; } };
const pc = { connectionState: "connected", close() {} };
const remote = fakeRemote(control, pc);
remote._onControlOpen(control); // starts the pings and the watch
out.started = remote._liveness !== null && control.sent[0] === '["ping"]';
clearInterval(remote._liveness.timer); // driven by hand below, with explicit times
const t0 = Math.ceil(performance.now()) + 1; // whole ms: sums of 250 stay exact
let t = t0;
const tick = (ms) => { for (const end = t + ms; t < end;) { t += 250; remote._livenessTick(t); } };
const log = () => events.splice(0).filter(([n]) => n.startsWith("connection:"));
tick(2000);
out.pingsIn2s = control.sent.length;
out.healthy = log();
control.stuck = true;
control.bufferedAmount = 500;
tick(2250);
out.before = log(); // not yet: 2.25 s without progress
tick(500);
out.stalled = log();
// Slow progress is progress: a buffer that drains a little per tick is not a stall.
control.stuck = false;
control.bufferedAmount = 0;
tick(250);
out.drained = log();
control.bufferedAmount = 5000;
for (let i = 0; i < 20; i++) { control.bufferedAmount -= 10; tick(250); }
out.slow = log();
// A stall while ICE is down too: draining does not say connected (ICE has not).
control.stuck = true;
tick(3000);
pc.connectionState = "disconnected";
control.stuck = false;
control.bufferedAmount = 0;
tick(500);
out.iceDown = log();
await remote.shutdown("done");
out.stopped = remote._liveness === null;
out.closed = log();
// DrainWatch alone: bytes queued since the last look count as drained when the buffer did not grow.
const watch = new DrainWatch(1000);
out.watch = [watch.alive(0, 100, 100), watch.alive(900, 100, 0), watch.alive(1100, 100, 0),
  watch.alive(1200, 100, 8), watch.alive(2300, 0, 0)];
"""


def test_js_control_channel_drain_watch_gives_the_fast_disconnected(tmp_path: Path) -> None:
    """liveness.py's behaviour in the page: pings every second on the control channel, data
    outstanding without drain progress for 2.5 s is `disconnected`, draining again `connected`
    (unless ICE is down); shutdown stops it (else Node would not exit)."""
    out = run(tmp_path, LIVENESS)
    assert out["started"] is True
    assert out["pingsIn2s"] == 3  # at 0, 1 and 2 s
    assert out["healthy"] == [] and out["before"] == []
    assert out["stalled"] == [
        ["connection:disconnected", "disconnected", "control channel not draining"]
    ]
    assert out["drained"] == [
        ["connection:connected", "connected", "control channel draining again"]
    ]
    assert out["slow"] == []
    assert out["iceDown"] == [
        ["connection:disconnected", "disconnected", "control channel not draining"]
    ]
    assert out["stopped"] is True
    assert out["closed"] == [["connection:closed", "closed", "done"]]
    assert out["watch"] == [True, True, False, True, True]


CONTROL_DEADLINE = r"""
const driver = new DictDriver();
const a = new Peer({ id: "a", driver, connectionTimeout: 0.3 });
const b = new Peer({ id: "b", driver, connectionTimeout: 0.3 });
const ea = record(a);
await a.join("deadline");
await b.join("deadline");
await until(() => a.connections.has("b") && b.connections.has("a"));
// ICE and DTLS say connected on both sides; only b's control channel opens.
const ra = a.connections.get("b"), rb = b.connections.get("a");
for (const r of [ra, rb]) { r.pc.connectionState = "connected"; r.pc.onconnectionstatechange(); }
rb._control.readyState = "open";
rb._control.onopen();
out.bTimerAfterOpen = rb._timer;
await until(() => ea.some((e) => e.name === "connection:failed"));
out.aFailed = ea.filter((e) => e.name === "connection:failed").map((e) => e.detail);
await a.leave();
await b.leave();
"""


def test_js_connected_without_a_control_channel_fails_at_the_deadline(tmp_path: Path) -> None:
    """remote.py's rule in the page: the connection timeout holds past `connected` until the
    control channel opens (a tampered fingerprint: DTLS succeeds on one side only)."""
    out = run(tmp_path, CONTROL_DEADLINE)
    assert out["bTimerAfterOpen"] is None  # control open and connected: the deadline is off
    assert out["aFailed"] == ["connected, but the control channel did not open within 0.3 s"]
