"""Room behaviour over real aiortc connections on a MemoryDriver (the Peerix browser scenarios and more)."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest

from peerix_nb import Driver, MemoryDriver, Peer, PeerixError
from peerix_nb import peer as peer_module
from testbed.rooms import channels_open, fully_connected, leave_all, room, wait_until
from tests.util import Recorder


async def test_scenario_1_two_peers_join_and_leave():
    """Peerix scenario 1: each sees new -> connecting -> connected for the other, then closed."""
    driver = MemoryDriver()
    a, b = Peer(driver=driver), Peer(driver=driver)
    rec_a, rec_b = Recorder(a, "connection"), Recorder(b, "connection")
    await a.join(room="s1", metadata={"name": "a"})
    await b.join(room="s1", metadata={"name": "b"})
    await wait_until([a, b], lambda: fully_connected([a, b]))
    for rec, other, meta in ((rec_a, b, {"name": "b"}), (rec_b, a, {"name": "a"})):
        assert rec.names() == ["connection:new", "connection:connecting", "connection:connected"]
        assert all(e.remote.id == other.id and e.remote.metadata == meta for e in rec.events)
        assert [e.state for e in rec.events] == ["new", "connecting", "connected"]
    await a.leave()
    await wait_until([b], lambda: not b.connections)
    await b.leave()
    assert rec_a.names()[-1] == "connection:closed" and rec_b.names()[-1] == "connection:closed"
    assert not a.connections and not b.connections
    assert driver.subscriber_count() == 0


async def test_scenario_2_channels_send_and_close():
    """Peerix scenario 2: channel1 opened before joining; labelled and unlabelled sends; both close."""
    driver = MemoryDriver()
    a, b = Peer(driver=driver), Peer(driver=driver)
    rec_a, rec_b = Recorder(a, "channel"), Recorder(b, "channel")
    await a.open("channel1")
    await b.open("channel1")
    await a.join(room="s2")
    await b.join(room="s2")
    await wait_until([a, b], lambda: channels_open([a, b], "channel1"))
    assert "channel:open" in rec_a.names() and "channel:open" in rec_b.names()

    assert a.send("labelled", label="channel1") == 1
    got = await b.wait_for("channel:message", timeout=5)
    assert (got.label, got.data, got.remote.id) == ("channel1", "labelled", a.id)
    assert b.send("unlabelled") == 1
    got = await a.wait_for("channel:message", timeout=5)
    assert (got.label, got.data) == ("channel1", "unlabelled")

    await a.close("channel1")
    await b.close("channel1")
    await wait_until(
        [a, b], lambda: "channel:close" in rec_a.names() and "channel:close" in rec_b.names()
    )
    assert a.send("nobody") == 0
    await leave_all([a, b])


async def test_three_and_more_peers_connect_pairwise_and_chat():
    peers = await room(4, channels=["chat"])
    got = {p.id: [] for p in peers}
    for p in peers:
        p.on("channel:message", lambda e, p=p: got[p.id].append((e.remote.id, e.data)))
    assert peers[0].send("from 0", label="chat") == 3
    await wait_until(peers, lambda: all(got[p.id] == [(peers[0].id, "from 0")] for p in peers[1:]))
    assert got[peers[0].id] == []
    await leave_all(peers)


async def test_leave_and_rejoin_reconnects():
    driver = MemoryDriver()
    peers = await room(3, driver=driver, channels=["chat"])
    first = peers[0]
    await first.leave()
    await wait_until(peers, lambda: all(first.id not in p.connections for p in peers[1:]))
    await first.join(room="room", metadata={"again": True})
    await wait_until(peers, lambda: channels_open(peers, "chat"))
    assert all(p.connections[first.id].metadata == {"again": True} for p in peers[1:])
    await leave_all(peers)


async def test_join_twice_and_leave_twice_are_no_ops():
    a = Peer(driver=MemoryDriver())
    await a.leave()  # not joined: nothing happens
    first = a.join(room="x")
    assert a.join(room="x") is first  # while joining: the same join
    await first
    await a.join(room="x")  # joined: nothing happens
    assert a.room == "x"
    await a.leave()
    await a.leave()
    assert not a.joined


async def test_joining_another_room_while_in_one_says_so():
    # It used to do nothing: the peer stayed in `x` while the caller believed it was in `y`.
    a = Peer(driver=MemoryDriver())
    pending = a.join(room="x")
    with pytest.raises(RuntimeError, match=r"already in room 'x'.*leave\(\) before joining 'y'"):
        a.join(room="y")  # while the join to x is still running
    await pending
    with pytest.raises(RuntimeError, match="already in room 'x'"):
        a.join(room="y")
    assert a.room == "x" and a.joined
    await a.leave()
    await a.join(room="y")  # after leave() the other room is fine
    assert a.room == "y"
    await a.leave()


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_verify_rejects_by_metadata(asynchronous):
    driver = MemoryDriver()

    def decide(info):
        return info.metadata.get("role") != "intruder" and info["id"]

    async def decide_async(info):
        await asyncio.sleep(0)
        return decide(info)

    host = Peer(driver=driver)
    friend, intruder = Peer(driver=driver), Peer(driver=driver)
    await host.join(
        room="v", metadata={"role": "host"}, verify=decide_async if asynchronous else decide
    )
    rec = Recorder(host)
    await intruder.join(room="v", metadata={"role": "intruder"})
    await friend.join(room="v", metadata={"role": "friend"})
    await wait_until(
        [host, friend],
        lambda: host.id in friend.connections and friend.connections[host.id].state == "connected",
    )
    assert intruder.id not in host.connections
    assert host.id not in intruder.connections
    assert any(e.name == "signal:reject" and intruder.id in e.detail for e in rec.events)
    await leave_all([host, friend, intruder])


async def test_wrong_encryption_key_never_connects_and_reports_errors():
    driver = MemoryDriver()
    a = Peer(driver=driver, signaling_encryption_key="right")
    b = Peer(driver=driver, signaling_encryption_key="right")
    c = Peer(driver=driver, signaling_encryption_key="wrong")
    rec_a, rec_c = Recorder(a), Recorder(c)
    await a.join(room="e")
    await c.join(room="e")  # a cannot read c's JOIN
    await b.join(room="e")  # c cannot read b's JOIN, nor a's offer to b (not sent to c)
    await wait_until([a, b], lambda: fully_connected([a, b]))
    await wait_until([a, c], lambda: rec_a.errors() and rec_c.errors())
    assert all(e.error.code == "PEER_SIGNALING_ERROR" for e in rec_a.errors() + rec_c.errors())
    assert c.id not in a.connections and not c.connections
    await leave_all([a, b, c])


async def test_binary_messages_arrive_byte_exact():
    a, b = await room(2, channels=["bin"])
    payloads = [os.urandom(n) for n in (1, 1000, 60_000)] + [
        b"",
        bytearray(b"xy"),
        memoryview(b"mv"),
    ]
    received = []
    b.on("channel:message", lambda e: received.append(e.data))
    for payload in payloads:
        a.send(payload, label="bin")
    await wait_until([b], lambda: len(received) == len(payloads))
    assert received == [bytes(p) for p in payloads]
    assert all(isinstance(r, bytes) for r in received)
    await leave_all([a, b])


@pytest.mark.parametrize("who", ["polite", "impolite", "both"])
async def test_channels_opened_by_either_side_or_both_open(who):
    # ids fix the roles: "b" > "a", so b is polite and a impolite
    a, b = await room(2, ids=["a", "b"])
    assert b.connections["a"].polite and not a.connections["b"].polite
    openers = {"polite": [b], "impolite": [a], "both": [a, b]}[who]
    await asyncio.gather(*(p.open("late") for p in openers))
    await wait_until([a, b], lambda: channels_open([a, b], "late"))
    a.send("ping", label="late")
    assert (await b.wait_for("channel:message", timeout=5)).data == "ping"
    assert (
        len(
            [
                c
                for c in a.connections["b"].connection.sctp._data_channels.values()
                if c.label == "late"
            ]
        )
        == 1
    )
    await leave_all([a, b])


@pytest.mark.parametrize("ids", [["a", "b"], ["b", "a"]])
async def test_burst_of_simultaneous_opens_converges(ids):
    a, b = await room(2, ids=ids)
    labels = [f"ch{i}" for i in range(12)]
    await asyncio.gather(*(p.open(label) for label in labels for p in (a, b)))
    for label in labels:
        await wait_until([a, b], lambda label=label: channels_open([a, b], label))
    for p in (a, b):
        remote = next(iter(p.connections.values()))
        assert sorted(remote.channels) == sorted(labels)
        live = [c for c in remote.connection.sctp._data_channels.values() if c.label]
        assert sorted(c.label for c in live) == sorted(labels)
    await leave_all([a, b])


@pytest.mark.parametrize("repeat", range(5))
async def test_simultaneous_joins_resolve_first_offer_glare(repeat):
    """Both peers JOIN at the same instant, both offer first; the polite side starts over."""
    driver = MemoryDriver(delay=5, seed=repeat)
    peers = [Peer(driver=driver, id=f"p{repeat}-{i}") for i in range(3)]
    for p in peers:
        await p.open("chat")
    await asyncio.gather(*(p.join(room="glare") for p in peers))
    await wait_until(peers, lambda: channels_open(peers, "chat"))
    await leave_all(peers)


async def test_remote_api_open_send_close():
    a, b = await room(2, ids=["a", "b"])
    remote = a.connections["b"]
    await remote.open("direct", ordered=False, max_retransmits=0)
    await wait_until([a, b], lambda: channels_open([a, b], "direct"))
    channel = b.connections["a"].channels["direct"]
    assert channel.ordered is False and channel.maxRetransmits == 0
    assert "direct" not in a.channels  # only this remote, not the peer's configuration
    remote.send("one", label="direct")
    assert (await b.wait_for("channel:message", timeout=5)).data == "one"
    with pytest.raises(PeerixError) as info:
        remote.send("x", label="missing")
    assert info.value.code == "PEER_DATACHANNEL_ERROR"
    await remote.close("direct")
    await wait_until([a, b], lambda: "direct" not in b.connections["a"].channels)
    await leave_all([a, b])


@pytest.mark.parametrize("opener", ["a", "b"])  # "a" < "b": a is impolite, b asks a to create
async def test_channels_beyond_the_limit_fail_at_the_opener_and_are_refused(opener):
    # open() beyond remote.MAX_CHANNELS used to return as if it worked: the channel was refused
    # by whichever side creates channels, and only that side heard of it (an error event there).
    from peerix_nb.remote import MAX_CHANNELS

    a, b = await room(2, ids=["a", "b"], channels=["chat"])
    peer, other = (a, b) if opener == "a" else (b, a)
    errors: list[str] = []
    other.on("error", lambda e: errors.append(str(e.error)))
    labels = [f"c{i}" for i in range(MAX_CHANNELS - 1)]  # with "chat": exactly the limit
    await asyncio.gather(*(peer.open(label) for label in labels))
    await wait_until([a, b], lambda: all(channels_open([a, b], x) for x in labels), timeout=30)
    with pytest.raises(PeerixError, match=rf"'one-more': a peer opens at most {MAX_CHANNELS}"):
        peer.open("one-more")
    await peer.open("c0", ordered=False)  # a label already open is not a new channel
    # a remote that asks for more anyway (here: through the per-remote API) is refused
    await other.connections[peer.id].open("from-the-other-side")
    await wait_until([other], lambda: any("refused" in m for m in errors))
    assert "from-the-other-side" not in other.connections[peer.id].channels
    await leave_all([a, b])


async def test_bad_arguments_raise_clear_errors_at_once():
    p = Peer(driver=MemoryDriver())
    with pytest.raises(ValueError, match="room"):
        p.join(room="")
    with pytest.raises(TypeError, match="JSON"):
        p.join(room="r", metadata={"x": object()})
    with pytest.raises(ValueError, match="label"):
        p.open("")
    with pytest.raises(ValueError, match="not both"):
        p.open("x", max_retransmits=1, max_packet_life_time=1)
    with pytest.raises(TypeError, match="str or bytes"):
        p.send(123)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stun:"):
        Peer(ice_servers=[{"urls": "http://example.org"}])
    with pytest.raises(ValueError, match="username"):
        Peer(ice_servers=[{"urls": "turn:127.0.0.1:3478"}])
    with pytest.raises(ValueError, match="ice_transport_policy"):
        Peer(ice_transport_policy="none")
    with pytest.raises(TypeError, match="Driver"):
        Peer(driver="nats")  # type: ignore[arg-type]
    with pytest.raises(PeerixError, match="MediaStream"):
        p.publish("camera")  # type: ignore[arg-type]
    with pytest.raises(PeerixError, match="no stream"):
        p.unpublish("nothing")
    assert not p.joined


def test_async_methods_outside_a_loop_explain_themselves():
    p = Peer(driver=MemoryDriver())
    with pytest.raises(RuntimeError, match="running asyncio event loop"):
        p.join(room="x")


async def test_ice_servers_accept_peerix_dicts_and_rtc_ice_servers():
    from aiortc import RTCIceServer

    p = Peer(
        ice_servers=[
            {"urls": ["stun:127.0.0.1:3478"]},
            RTCIceServer("stun:127.0.0.1:1"),
            {"urls": "turn:127.0.0.1:3478", "username": "u", "credential": "p"},
        ]
    )
    servers = p._configuration.iceServers
    assert [s.urls for s in servers] == [
        ["stun:127.0.0.1:3478"],
        "stun:127.0.0.1:1",
        "turn:127.0.0.1:3478",
    ]
    assert Peer()._configuration.iceServers == []  # never aiortc's default public STUN server


async def test_default_driver_is_shared_in_process():
    a, b = Peer(), Peer()
    assert a.driver is b.driver
    await a.join(room="shared-default")
    await b.join(room="shared-default")
    await wait_until([a, b], lambda: fully_connected([a, b]))
    await leave_all([a, b])


class DictDriver(Driver):
    """A custom driver written the way Peerix documents one: the three calls over an in-process
    dict, and nothing else (it never calls set_active)."""

    def __init__(self) -> None:
        super().__init__()
        self.handlers: dict[str, list] = {}

    async def subscribe(self, namespace, handler):
        self.handlers.setdefault(":".join(namespace), []).append(handler)

    async def unsubscribe(self, namespace, handler):
        self.handlers[":".join(namespace)].remove(handler)

    async def dispatch(self, namespace, message):
        loop = asyncio.get_running_loop()
        for handler in list(self.handlers.get(":".join(namespace), [])):
            loop.call_soon(handler, message)


async def test_a_custom_driver_with_only_the_three_calls_connects_peers():
    """docs/PROTOCOL.md: the base Driver starts active, so a driver that implements subscribe,
    unsubscribe and dispatch works as is (its JOINs were silently dropped: one signal:drop)."""
    driver = DictDriver()
    assert driver.active
    a, b = Peer(driver=driver), Peer(driver=driver)
    rec_a = Recorder(a)
    for p in (a, b):
        await p.open("chat")
        await p.join(room="custom")
    await wait_until([a, b], lambda: channels_open([a, b], "chat"))
    assert a.send("over a custom driver", label="chat") == 1
    assert (await b.wait_for("channel:message", timeout=5)).data == "over a custom driver"
    assert "signal:drop" not in rec_a.names() and "driver:inactive" not in rec_a.names()
    await leave_all([a, b])
    assert not any(driver.handlers.values())


class ConnectsLater(DictDriver):
    """A driver that must connect first: inactive until it says otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.set_active(False)


async def test_join_on_an_inactive_driver_says_so_and_joins_when_it_becomes_active(
    caplog, monkeypatch
):
    """join() on an inactive driver cannot send its JOIN: a `driver:inactive` event and a
    warning say so (it was a silent success), and the JOIN goes out as soon as the driver is
    active, without the 0-1 s re-announcement delay (pinned near 1 s here to tell them apart)."""
    monkeypatch.setattr(peer_module.random, "random", lambda: 0.95)
    driver = ConnectsLater()
    a, b = Peer(id="a", driver=driver), Peer(id="b", driver=driver)
    recs = [Recorder(a), Recorder(b)]
    with caplog.at_level(logging.WARNING, logger="peerix_nb"):
        await a.join(room="later")
        await b.join(room="later")
    for rec in recs:
        waits = [e for e in rec.events if e.name == "driver:inactive"]
        assert [(e.kind, e.detail) for e in waits] == [
            ("join", "JOIN waits for the driver to become active")
        ]
        assert "signal:send" not in rec.names()
    warnings = [r.getMessage() for r in caplog.records if r.name == "peerix_nb"]
    assert len(warnings) == 2 and all("is inactive" in w for w in warnings)

    sent: dict[str, float] = {}
    for p in (a, b):
        p.on("signal:send", lambda e: e.kind == "join" and sent.setdefault(e.id, time.monotonic()))
    started = time.monotonic()
    driver.set_active(True)
    await wait_until([a, b], lambda: fully_connected([a, b]))
    assert sorted(sent) == ["a", "b"] and max(sent.values()) - started < 0.5
    await leave_all([a, b])
