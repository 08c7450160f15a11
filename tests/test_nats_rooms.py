"""Rooms over a real nats-server, with peers in separate processes (tests/nats_peer_proc.py).

What NATS carries is only the first exchange: once the control channel is open, channels and
renegotiation ride the connection itself, so a NATS outage must not hurt an established call,
and a restarted server must let new peers in. Also: failures surface as PeerixErrors, a killed
peer is noticed in seconds (liveness.py), and a failed connection is retried by a direct JOIN.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from peerix_nb import Peer, PeerixError
from peerix_nb import nats_server as launcher
from peerix_nb.drivers.nats import NatsDriver
from peerix_nb.signaling import ANSWER, SignalingCodec, hash_part
from testbed.peer_procs import PeerProc, PeerProcs, connected_pairwise
from testbed.rooms import channels_open, fully_connected, wait_until
from tests.util import Recorder

FAST = {"reconnect_time_wait": 0.1}


def room_name() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def procs(nats_server: launcher.NatsServer) -> AsyncIterator[PeerProcs]:
    """Peer processes on the test's nats-server, all ended after the test (killed if need be)."""
    async with PeerProcs(nats_server.url) as group:
        yield group


def assert_no_errors(*peers: PeerProc, outages: int = 0) -> None:
    """No error events, except the driver's report of each NATS outage (one, not one per retry)."""
    for peer in peers:
        errors = peer.errors()
        lost = [e for e in errors if e["error"]["code"] == "PEER_SIGNALING_ERROR"]
        assert len(lost) <= outages and len(errors) == len(lost), (
            f"{peer.id} reported errors:\n{peer.tail()}"
        )


async def chat(peers: list[PeerProc], label: str, since: int | list[int] = 0) -> None:
    """Every peer sends on `label`; every other one gets exactly that text from that sender."""
    marks = since if isinstance(since, list) else [since] * len(peers)
    for peer in peers:
        reply = await peer.command("send", label=label, data=f"{label} from {peer.id}")
        assert reply["result"] >= len(peers) - 1  # also to peers outside `peers`
    for peer, mark in zip(peers, marks, strict=True):
        for other in peers:
            if other is peer:
                continue
            got = await peer.wait("channel:message", since=mark, remote=other.id, label=label)
            assert got["data"] == f"{label} from {other.id}"


async def open_everywhere(peers: list[PeerProc], label: str, opener: PeerProc | None) -> None:
    """Open `label` (from `opener` only, or from every peer) and wait until all ends are open."""
    for peer in [opener] if opener else peers:
        await peer.command("open", label=label)
    for peer in peers:
        for other in peers:
            if other is not peer:
                await peer.wait("channel:open", label=label, remote=other.id)


# -- rooms across processes ----------------------------------------------------------------------
@pytest.mark.parametrize("count", [2, 3])
async def test_processes_connect_pairwise_chat_and_leave(procs: PeerProcs, count: int) -> None:
    room = room_name()
    peers = [await procs.start(f"p{i}", room) for i in range(count)]
    await connected_pairwise(peers)
    await open_everywhere(peers, "chat", opener=None)  # both ends of a pair ask: one channel
    await chat(peers, "chat")

    leaver, stay = peers[0], peers[1:]
    marks = [p.mark() for p in stay]
    await leaver.command("leave")
    await leaver.wait("room:leave")
    for peer, mark in zip(stay, marks, strict=True):
        await peer.wait("connection:closed", since=mark, remote=leaver.id)
    # The others keep their connections to each other.
    for peer, mark in zip(stay, marks, strict=True):
        assert not [e for e in peer.find("connection:closed", mark) if e["remote"] != leaver.id]
    assert_no_errors(*peers)


async def test_nats_outage_keeps_calls_and_a_restart_lets_new_peers_in(
    nats_server: launcher.NatsServer, procs: PeerProcs
) -> None:
    room = room_name()
    a, b = await procs.start("a", room), await procs.start("b", room)
    await connected_pairwise([a, b])

    before = [a.mark(), b.mark()]
    nats_server.kill()
    for peer in (a, b):
        await peer.wait("driver:inactive")
    marks = [a.mark(), b.mark()]
    # A new channel while NATS is down: the request and the channel ride the connection.
    await open_everywhere([a, b], "after", opener=b)
    await chat([a, b], "after", since=marks)
    assert not b.find("signal:send", marks[1], via="driver")

    await nats_server.arestart()
    for peer, mark in zip((a, b), marks, strict=True):
        event = await peer.wait("driver:active", since=mark)
        # Back online, a joined peer announces itself again (docs/PROTOCOL.md, 0-1000 ms later).
        await peer.wait("signal:send", since=peer.events.index(event), kind="join", via="driver")
    # The call itself never noticed the outage.
    for peer, mark in zip((a, b), before, strict=True):
        changes = [e["name"] for e in peer.events[mark:] if e["name"].startswith("connection:")]
        assert changes == [], changes

    c = await procs.start("c", room)
    await connected_pairwise([a, b, c])
    # `after` was opened by b for current and future remotes: c gets it too.
    await c.wait("channel:open", label="after", remote="b")
    await b.wait("channel:open", label="after", remote="c")  # the creator's end opens last
    since = [p.mark() for p in (b, c)]
    await chat([b, c], "after", since=since)
    assert_no_errors(a, b, outages=1)
    assert_no_errors(c)


async def test_publish_while_nats_is_down_renegotiates_over_the_control_channel(
    nats_server: launcher.NatsServer, procs: PeerProcs
) -> None:
    room = room_name()
    a, b = await procs.start("a", room), await procs.start("b", room)
    await connected_pairwise([a, b])
    nats_server.kill()
    await a.wait("driver:inactive")
    mark = a.mark()
    await a.command("publish", label="cam")
    track = await b.wait("track:add", remote="a", label="cam")
    assert track["kind"] == "video"
    await b.wait("stream:add", remote="a", label="cam")
    # The new offer went over the control channel; nothing could go through NATS.
    assert a.find("signal:send", mark, kind="offer", via="control")
    assert not a.find("signal:send", mark, via="driver")
    assert_no_errors(a, b, outages=1)


# -- failures ------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
async def test_join_without_a_server_raises_and_can_join_later() -> None:
    port = launcher.free_port()
    url = f"nats://127.0.0.1:{port}"
    driver = NatsDriver(url, **FAST)
    peer = Peer(id="lonely", driver=driver)
    try:
        with pytest.raises(PeerixError) as info:
            await peer.join(room="lobby")
        assert info.value.code == "PEER_SIGNALING_ERROR"
        assert url in info.value.message
        assert not peer.joined and not driver.active

        async with launcher.start(port) as server:
            other = Peer(id="other", driver=NatsDriver(server.url, **FAST))
            try:
                await peer.join(room="lobby")
                assert peer.joined
                await other.join(room="lobby")
                await wait_until([peer, other], lambda: fully_connected([peer, other]))
            finally:
                await other.leave()
                await other.driver.close()
    finally:
        await peer.leave()
        await driver.close()


async def test_sigkill_is_noticed_then_failed_and_closed(procs: PeerProcs) -> None:
    room = room_name()
    timeout = 3.0
    peers = [await procs.start(i, room, timeout=timeout) for i in ("a", "b", "victim")]
    a, b, victim = peers
    await connected_pairwise(peers)
    await open_everywhere(peers, "chat", opener=None)  # mid-call: channels open and used
    await chat(peers, "chat")

    marks = [a.mark(), b.mark()]
    killed_at = victim.kill()
    seconds = []
    for peer, mark in zip((a, b), marks, strict=True):
        event = await peer.wait("connection:disconnected", 15, mark, remote="victim")
        seconds.append(event["t"] - killed_at)  # both stamps are time.monotonic()
    print(f"\nSIGKILL -> connection:disconnected: {', '.join(f'{s:.2f} s' for s in seconds)}")
    assert max(seconds) < 12, "liveness is meant to notice a dead peer in < 5 s"
    for peer, mark in zip((a, b), marks, strict=True):
        disconnected = peer.find("connection:disconnected", mark, remote="victim")[0]
        failed = await peer.wait("connection:failed", 15, mark, remote="victim")
        closed = await peer.wait("connection:closed", 15, mark, remote="victim")
        # `failed` comes connection_timeout after `disconnected` (with scheduling slack).
        assert timeout - 0.5 <= failed["t"] - disconnected["t"] < timeout + 3
        assert closed["t"] >= failed["t"]
    # The survivors' own connection never wavered.
    for peer, other in ((a, b), (b, a)):
        assert not peer.find("connection:disconnected", remote=other.id)
    await chat([a, b], "chat", since=[a.mark(), b.mark()])


class DropFirstAnswer(NatsDriver):
    """A NatsDriver that loses the first ANSWER it is asked to send (a lossy signaling path)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.codec = SignalingCodec()  # the Peer's default settings: compressed, no key
        self.dropped: list[bytes] = []

    async def dispatch(self, namespace: Any, message: bytes) -> None:
        if not self.dropped and self.codec.decode(message).type == ANSWER:
            self.dropped.append(message)
            return
        await super().dispatch(namespace, message)


async def test_failed_connection_is_retried_by_a_direct_join(
    nats_server: launcher.NatsServer,
) -> None:
    # Only a gives up quickly, so exactly one side retries: a clean failed -> retry -> connected.
    a = Peer(id="a", driver=NatsDriver(nats_server.url, **FAST), connection_timeout=2)
    lossy = DropFirstAnswer(nats_server.url, **FAST)
    b = Peer(id="b", driver=lossy, connection_timeout=30)
    a_log, b_log = Recorder(a), Recorder(b)
    try:
        await a.join(room="retry")
        await b.join(room="retry")  # a offers, b's answer is lost: a never connects
        failed = await a.wait_for("connection:failed", timeout=10)
        assert failed.remote.id == "b" and "not connected within" in failed.detail
        await wait_until([a, b], lambda: fully_connected([a, b]), timeout=20)
        assert len(lossy.dropped) == 1

        # After `failed`, a sent a JOIN directly to b (docs/PROTOCOL.md); b dropped its stale
        # connection and offered anew: a's log goes failed -> closed -> new -> ... -> connected.
        sent_joins = [e for e in a_log.events if e.name == "signal:send" and e.kind == "join"]
        direct = [e for e in sent_joins if e.detail == "to b"]
        assert sent_joins[0].detail is None  # the room announcement (repeated later, peer.py)
        # At most one direct retry, after `failed` (none if b's periodic JOIN got there first
        # and the new attempt was already under way when the retry was due).
        assert len(direct) <= 1
        assert all(a_log.events.index(e) > a_log.events.index(failed) for e in direct)
        names = a_log.names("connection:")
        after = names[names.index("connection:failed") :]
        assert after[:3] == ["connection:failed", "connection:closed", "connection:new"]
        assert after[-1] == "connection:connected"
        restarted = [e for e in b_log.events if e.name == "connection:closed"]
        assert [e.detail for e in restarted] == ["remote restarted the connection"]
        assert "connection:failed" not in b_log.names()

        await a.open("chat")
        await wait_until([a, b], lambda: channels_open([a, b], "chat"))
        a.send("through the retried connection", label="chat")
        got = await b.wait_for("channel:message", timeout=10)
        assert (got.remote.id, got.data) == ("a", "through the retried connection")
    finally:
        await asyncio.gather(a.leave(), b.leave())
        await asyncio.gather(a.driver.close(), b.driver.close())


async def test_when_both_sides_fail_one_retry_wins_without_churn(
    nats_server: launcher.NatsServer,
) -> None:
    a = Peer(id="a", driver=NatsDriver(nats_server.url, **FAST), connection_timeout=1.5)
    lossy = DropFirstAnswer(nats_server.url, **FAST)
    b = Peer(id="b", driver=lossy, connection_timeout=1.5)
    logs = [Recorder(a), Recorder(b)]
    try:
        await a.join(room="churn")
        await b.join(room="churn")
        await wait_until(
            [a, b], lambda: all("connection:failed" in log.names() for log in logs), timeout=10
        )
        await wait_until([a, b], lambda: fully_connected([a, b]), timeout=20)
        # Both rejoin timers (0-1 s after `failed`) have now fired or are about to: give them
        # the rest of that second, then the retried connection must still be the same one.
        first = {p.id: p.connections[q.id] for p, q in ((a, b), (b, a))}
        with pytest.raises(asyncio.TimeoutError):
            await a.wait_for("connection:closed", timeout=1.2)
        assert {p.id: p.connections.get(q.id) for p, q in ((a, b), (b, a))} == first
        for log in logs:
            assert "remote restarted the connection" not in [e.detail for e in log.events]
    finally:
        await asyncio.gather(a.leave(), b.leave())
        await asyncio.gather(a.driver.close(), b.driver.close())


# -- room names ----------------------------------------------------------------------------------
async def test_room_names_with_dots_and_spaces_need_hashing(
    nats_server: launcher.NatsServer, procs: PeerProcs
) -> None:
    observer = await nats.connect(nats_server.url)
    subjects: list[str] = []

    async def record(msg: Any) -> None:
        subjects.append(msg.subject)

    await observer.subscribe(">", cb=record)
    await observer.flush()
    driver = NatsDriver(nats_server.url, **FAST)
    plain = Peer(id="plain", driver=driver)
    hashed = Peer(id="hashed", driver=driver, signaling_hashing=True)
    try:
        for bad in ("lobby.v2", "two words"):
            with pytest.raises(PeerixError) as info:
                await plain.join(room=bad)
            assert info.value.code == "PEER_SIGNALING_ERROR"
            assert repr(bad) in info.value.message
            assert "signaling_hashing=True" in info.value.message
            assert not plain.joined

        room = "team.alpha beta"
        await hashed.join(room=room)
        other = await procs.start("other", room, hashing=True)
        await other.wait("connection:connected", remote="hashed")
        await wait_until(
            [hashed], lambda: getattr(hashed.connections.get("other"), "state", "") == "connected"
        )
        await hashed.open("chat")
        await other.wait("channel:open", label="chat", remote="hashed")
        inbox = Recorder(hashed, "channel:message")  # it may arrive before the send's reply
        assert (await other.command("send", label="chat", data="hashed hi"))["result"] == 1
        await wait_until([hashed], lambda: bool(inbox.events), timeout=10)
        got = inbox.events[0]
        assert (got.remote.id, got.data) == ("other", "hashed hi")
    finally:
        await hashed.leave()
        await driver.close()
        await observer.flush()
        await observer.close()

    room_hash = hash_part(room)
    expected = {f"peerix.{room_hash}"} | {
        f"peerix.{room_hash}.{hash_part(pid)}" for pid in ("hashed", "other")
    }
    assert f"peerix.{room_hash}" in subjects  # the JOIN broadcasts
    assert f"peerix.{room_hash}.{hash_part('hashed')}" in subjects  # other's offer to hashed
    assert set(subjects) <= expected, set(subjects) - expected
    for subject in subjects:
        assert room not in subject and "alpha" not in subject.split(".")
        assert "hashed" not in subject.split(".") and "other" not in subject.split(".")
