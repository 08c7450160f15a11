"""Bad input and failures: undecodable or hostile driver messages, bad SDP, control-channel garbage,
connection timeouts and the direct JOIN retry. The peer reports, keeps working, and leaks nothing."""

from __future__ import annotations

import asyncio
import os
import re
import zlib

import pytest

from peerix_nb import MemoryDriver, Peer
from peerix_nb.signaling import ANSWER, OFFER, SignalingCodec
from testbed.rooms import channels_open, fully_connected, leave_all, room, wait_until
from tests.util import DropFirst, Recorder


async def test_garbage_on_the_driver_is_an_error_event_and_changes_nothing():
    driver = MemoryDriver()
    a, b = await room(2, driver=driver, room_name="g", channels=["chat"])
    rec = Recorder(a)
    codec = SignalingCodec()
    junk = [
        os.urandom(40),
        zlib.compress(b"{not json"),
        zlib.compress(b'[42, "x"]'),
        zlib.compress(b'{"type": "join"}'),
        codec.encode(
            [2, "stranger", {"type": "answer", "sdp": "v=0"}]
        ),  # offer with an answer inside
        codec.encode([4, "nobody-here", {"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host"}]),
        codec.encode([3, "nobody-here", {"type": "answer", "sdp": "v=0\r\n"}]),
        codec.encode([1, a.id, {"claims": "to be a"}]),  # a JOIN claiming the receiver's own id
    ]
    for data in junk:
        await driver.dispatch(["g"], data)
    await wait_until([a], lambda: len(rec.errors()) >= 5)
    codes = {e.error.code for e in rec.errors()}
    assert codes == {"PEER_SIGNALING_ERROR"}
    assert set(a.connections) == {b.id}
    assert "nobody-here" not in a.connections and a.id not in a.connections
    assert any(e.name == "signal:drop" for e in rec.events)
    a.send("still here", label="chat")
    assert (await b.wait_for("channel:message", timeout=5)).data == "still here"
    await leave_all([a, b])


async def test_bad_sdp_in_a_first_offer_is_a_negotiation_error_and_the_remote_is_dropped():
    driver = MemoryDriver()
    a = Peer(driver=driver)
    rec = Recorder(a)
    await a.join(room="sdp")
    codec = SignalingCodec()
    await driver.dispatch(
        ["sdp", a.id],
        codec.encode([2, "evil", {"type": "offer", "sdp": "v=0\r\nm=garbage\r\n"}, {}]),
    )
    await wait_until(
        [a], lambda: rec.errors() and "evil" not in a.connections and rec.names("connection:closed")
    )
    assert rec.errors()[0].error.code == "PEER_NEGOTIATION_ERROR"
    assert not a.connections
    # and the peer still connects to a real newcomer
    b = Peer(driver=driver)
    await b.join(room="sdp")
    await wait_until([a, b], lambda: fully_connected([a, b]))
    await leave_all([a, b])


async def test_control_channel_garbage_from_a_connected_remote():
    a, b = await room(2, ids=["a", "b"], channels=["chat"])
    rec = Recorder(a)
    control = b.connections["a"]._control
    for text in [
        "not json",
        "{}",
        "[]",
        "[1, 2]",
        '["offer", "no description"]',
        '["answer", {"type": "x"}]',
        '["candidate", {"candidate": 7}]',
        '["channel", "not an object"]',
        '["channel", {"label": ""}]',
    ]:
        control.send(text)
    control.send(b"\x00binary")
    control.send('["some-future-event", {"x": 1}]')  # unknown names are ignored, not errors
    await wait_until([a], lambda: len(rec.errors()) >= 10)
    assert len(rec.errors()) == 10
    assert a.connections["b"].state == "connected"
    b.send("after", label="chat")
    assert (await a.wait_for("channel:message", timeout=5)).data == "after"
    await leave_all([a, b])


async def test_timeout_fails_the_connection_then_a_direct_join_reconnects():
    driver = DropFirst(ANSWER)  # the first answer is lost: nobody connects in time
    a, b = Peer(driver=driver, connection_timeout=1), Peer(driver=driver, connection_timeout=1)
    rec_a, rec_b = Recorder(a, "connection"), Recorder(b, "connection")
    await a.open("chat")
    await a.join(room="t")
    await b.join(room="t")
    await wait_until(
        [a, b],
        lambda: rec_a.names("connection:failed") and rec_b.names("connection:failed"),
        timeout=10,
    )
    await wait_until([a, b], lambda: channels_open([a, b], "chat"), timeout=15)
    for rec in (rec_a, rec_b):
        names = rec.names()
        failed = names.index("connection:failed")
        # The failed connection's next event is its close; the new connection's events may
        # interleave with the close (the direct JOIN can arrive while aiortc is still closing).
        old = rec.events[failed].remote
        after = rec.events[failed + 1 :]
        assert [e.name for e in after if e.remote is old][:1] == ["connection:closed"]
        assert [e.name for e in after if e.remote is not old].count("connection:new") >= 1
        assert names[-1] == "connection:connected"
        detail = rec.events[failed].detail
        assert "not connected within 1.0 s" in detail
    await leave_all([a, b])


async def test_join_with_failing_driver_raises_and_leaves_peer_usable():
    class Broken(MemoryDriver):
        fail = True

        async def subscribe(self, namespace, handler):
            if self.fail:
                raise ConnectionError("driver is down")
            await super().subscribe(namespace, handler)

    driver = Broken()
    a = Peer(driver=driver)
    with pytest.raises(Exception) as info:
        await a.join(room="x")
    assert getattr(info.value, "code", None) == "PEER_SIGNALING_ERROR" and "driver is down" in str(
        info.value
    )
    assert not a.joined and driver.subscriber_count() == 0
    driver.fail = False
    await a.join(room="x")
    assert a.joined
    await a.leave()


async def test_leave_cancels_everything_and_unsubscribes():
    driver = MemoryDriver()
    peers = await room(3, driver=driver, channels=["chat"])
    await leave_all(peers)
    assert driver.subscriber_count() == 0
    for p in peers:
        assert not p.connections and len(p._tasks) == 0
    await asyncio.sleep(0)


async def test_leave_is_bounded_when_aiortc_never_finishes_closing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Injected fault: one RTCPeerConnection.close() that never returns. leave() still ends
    after CLOSE_TIMEOUT, says so in an `error` event, and the close runs on to its end."""
    from peerix_nb import remote as remote_module

    monkeypatch.setattr(remote_module, "CLOSE_TIMEOUT", 0.3)
    a, b = await room(2)
    pc = a.connections[b.id].connection
    real_close = pc.close
    release = asyncio.Event()

    async def stuck_close() -> None:
        await release.wait()
        await real_close()

    pc.close = stuck_close  # type: ignore[method-assign]
    errors: list[str] = []
    a.on("error", lambda e: errors.append(str(e.error)))
    await asyncio.wait_for(a.leave(), 5)  # would wait forever without the bound
    assert any("took over 0.3 s" in message for message in errors), errors
    assert len(remote_module._slow_closes) == 1
    release.set()  # the left-over close finishes and is forgotten
    (slow,) = remote_module._slow_closes
    await asyncio.wait_for(asyncio.wait({slow}), 5)
    assert remote_module._slow_closes == set() and pc.connectionState == "closed"
    await b.leave()


class FingerprintFlipper(MemoryDriver):
    """A man in the middle that changes the DTLS fingerprint of every OFFER it relays: the
    answerer rejects the offerer's certificate, while the offerer's own DTLS handshake (it
    checks the answerer's true fingerprint) completes and its connection says `connected`."""

    def __init__(self) -> None:
        super().__init__()
        self.codec = SignalingCodec()
        self.flipped = 0

    async def dispatch(self, namespace, message):  # type: ignore[no-untyped-def]
        decoded = self.codec.decode(message)
        if decoded.type == OFFER:
            sdp = decoded.description["sdp"]
            flipped = re.sub(
                r"(a=fingerprint:sha-256 )([0-9A-F])", lambda m: m[1] + "01"[m[2] == "0"], sdp
            )
            description = {**decoded.description, "sdp": flipped}
            message = self.codec.encode([OFFER, decoded.sender, description, decoded.metadata])
            self.flipped += 1
        await super().dispatch(namespace, message)


async def test_a_connection_whose_control_channel_never_opens_fails_on_both_sides():
    # Found by notebook 07: with a tampered fingerprint the answerer fails DTLS, but the
    # offerer's connection reports `connected` and no control channel ever opens. The
    # connection timeout must cover "connected" until the control channel is open, or the
    # offerer keeps a dead remote until ICE consent expires (~30 s) and ignores direct JOINs.
    driver = FingerprintFlipper()
    a = Peer(id="a", driver=driver, connection_timeout=3)
    b = Peer(id="b", driver=driver, connection_timeout=3)
    a_failed = asyncio.ensure_future(a.wait_for("connection:failed", timeout=15))
    b_failed = asyncio.ensure_future(b.wait_for("connection:failed", timeout=15))
    await a.join(room="mitm")
    await b.join(room="mitm")
    failures = await asyncio.gather(a_failed, b_failed)
    assert driver.flipped >= 1
    details = sorted(str(e.detail) for e in failures)
    assert any("control channel" in d for d in details), details  # the offerer's reason
    await leave_all([a, b])
