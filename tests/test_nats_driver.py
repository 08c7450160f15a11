"""NatsDriver against a real nats-server started by the launcher (no mocks of NATS)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from peerix_nb import nats_server as launcher
from peerix_nb.drivers.nats import NatsDriver
from peerix_nb.errors import PeerixError
from peerix_nb.signaling import hash_part
from testbed.rooms import poll_until

FAST = {"reconnect_time_wait": 0.1}  # seconds between reconnect attempts to one server


class Inbox:
    """A handler that queues what it receives, so tests wait on messages, not on sleeps."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.seen: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        self.seen.append(data)
        self.queue.put_nowait(data)

    async def get(self, timeout: float = 10) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)


class Raw:
    """A plain nats-py subscriber on a wildcard: records the (subject, payload) on the wire."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def start(self, url: str, subject: str) -> Raw:
        self.nc = await nats.connect(url)

        async def record(msg: Any) -> None:
            self.queue.put_nowait((msg.subject, msg.data))

        await self.nc.subscribe(subject, cb=record)
        await self.nc.flush()
        return self

    async def get(self, timeout: float = 10) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.queue.get(), timeout)


def record_events(driver: NatsDriver) -> list[str]:
    names: list[str] = []
    driver.on("*", lambda e: names.append(e.name))
    return names


async def settle(*drivers: NatsDriver) -> None:
    """A PING round trip on each connection: everything sent so far was processed."""
    for driver in drivers:
        assert driver.nc is not None
        await driver.nc.flush()
    await asyncio.sleep(0)


@pytest.fixture
async def raw(nats_server: launcher.NatsServer) -> AsyncIterator[Raw]:
    observer = await Raw().start(nats_server.url, ">")
    yield observer
    await observer.nc.close()


@pytest.fixture
async def pair(nats_server: launcher.NatsServer) -> AsyncIterator[tuple[NatsDriver, NatsDriver]]:
    a = NatsDriver(nats_server.url, **FAST)
    b = NatsDriver(nats_server.url, **FAST)
    yield a, b
    await a.close()
    await b.close()


async def test_room_and_direct_messages_on_the_protocol_subjects(
    pair: tuple[NatsDriver, NatsDriver], raw: Raw
) -> None:
    a, b = pair
    a_room, a_direct, b_room, b_direct = Inbox(), Inbox(), Inbox(), Inbox()
    await a.subscribe(["lobby"], a_room)
    await a.subscribe(["lobby", "peer-a"], a_direct)
    await b.subscribe(["lobby"], b_room)
    await b.subscribe(["lobby", "peer-b"], b_direct)

    payload = bytes(range(256))  # not UTF-8: the payload is opaque bytes
    await b.dispatch(["lobby"], payload)
    assert await a_room.get() == payload
    assert await b_room.get() == payload  # NATS echoes to the sender; the peer ignores it
    assert await raw.get() == ("peerix.lobby", payload)

    await a.dispatch(["lobby", "peer-b"], b"direct")
    assert await b_direct.get() == b"direct"
    assert await raw.get() == ("peerix.lobby.peer-b", b"direct")
    await settle(a, b)
    assert a_direct.seen == [] and a_room.seen == [payload]


def test_the_package_offers_natsdriver_lazily_and_to_tab_completion() -> None:
    import peerix_nb

    assert peerix_nb.NatsDriver is NatsDriver  # DESIGN.md: `from peerix_nb import NatsDriver`
    assert "NatsDriver" in dir(peerix_nb) and "Peer" in dir(peerix_nb)
    with pytest.raises(AttributeError, match="no attribute 'NatsDrive'"):
        peerix_nb.NatsDrive  # noqa: B018


def test_bad_server_urls_are_named_at_once() -> None:
    # "http://x" failed only at join, as "Name or service not known"; 5 as "'int' object is
    # not iterable".
    with pytest.raises(ValueError, match=r"'http://127.0.0.1:4222' must start with nats://"):
        NatsDriver("http://127.0.0.1:4222")
    with pytest.raises(ValueError, match=r"'https://x' must start"):
        NatsDriver(["nats://127.0.0.1:4222", "https://x"])
    with pytest.raises(TypeError, match="servers must be a NATS URL or a list of them, got 5"):
        NatsDriver(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one server URL"):
        NatsDriver([])
    for ok in ("nats://127.0.0.1:4222", "127.0.0.1:4222", "TLS://h:4222", "ws://h:8080"):
        assert NatsDriver(ok).servers == [ok]


async def test_lazy_connect_and_active_flag(nats_server: launcher.NatsServer) -> None:
    driver = NatsDriver(nats_server.url)
    events = record_events(driver)
    assert not driver.active and driver.nc is None
    await driver.connect()
    await driver.connect()  # idempotent
    assert driver.active and events == ["active"]
    assert driver.connected_url == nats_server.url
    await driver.close()
    assert not driver.active and events == ["active", "inactive"]

    lazy = NatsDriver(nats_server.url)
    await lazy.dispatch(["lobby"], b"first use connects")
    assert lazy.active
    await lazy.close()


async def test_unsubscribe_removes_exactly_that_handler(
    pair: tuple[NatsDriver, NatsDriver],
) -> None:
    a, b = pair
    first, second = Inbox(), Inbox()
    await a.subscribe(["lobby"], first)
    await a.subscribe(["lobby"], second)
    assert a.subscriber_count() == 2
    await a.unsubscribe(["lobby"], first)
    await a.unsubscribe(["lobby"], Inbox())  # unknown handler: no-op
    assert a.subscriber_count() == 1

    await b.dispatch(["lobby"], b"m1")
    assert await second.get() == b"m1"
    await settle(a, b)
    assert first.seen == []

    await a.unsubscribe(["lobby"], second)
    assert a.subscriber_count() == 0
    marker = Inbox()
    await a.subscribe(["marker"], marker)
    await b.dispatch(["lobby"], b"m2")
    # A marker sent after m2 on the same connection: once it arrives, m2 would have too. (In
    # about 1 of 10 full-suite runs the first marker never arrived — cause not found; the
    # subscription is confirmed by a PING round trip — so it is re-sent until one arrives.)
    for _attempt in range(10):
        await b.dispatch(["marker"], b"after m2")
        try:
            assert await marker.get(timeout=1) == b"after m2"
            break
        except TimeoutError:
            continue
    else:
        raise AssertionError("no marker arrived in 10 tries")
    await settle(a)
    assert second.seen == [b"m1"]


async def test_prefix_and_empty_parts(nats_server: launcher.NatsServer, raw: Raw) -> None:
    driver = NatsDriver(nats_server.url, prefix="app.v1")
    try:
        assert driver.subject(["lobby", "", "peer"]) == "app.v1.lobby.peer"
        await driver.dispatch(["lobby", "", "peer"], b"x")
        assert await raw.get() == ("app.v1.lobby.peer", b"x")
    finally:
        await driver.close()

    bare = NatsDriver(nats_server.url, prefix="")
    assert bare.subject(["lobby"]) == "lobby"
    with pytest.raises(PeerixError, match="empty namespace"):
        bare.subject(["", ""])
    assert NatsDriver(prefix="peerix").subject(["", "lobby"]) == "peerix.lobby"
    for bad in ("a..b", "a.*", "p>", "with space"):
        with pytest.raises(ValueError, match="prefix"):
            NatsDriver(prefix=bad)


@pytest.mark.parametrize(
    "bad", ["a.b", "two words", "*", ">", "room*", "tab\there", "line\nbreak", "nul\x00"]
)
async def test_invalid_tokens_raise_a_clear_error(bad: str) -> None:
    # Nothing listens on the address: the token error must come before any connection attempt.
    driver = NatsDriver(f"nats://127.0.0.1:{launcher.free_port()}")
    for call in (
        driver.subscribe(["lobby", bad], Inbox()),
        driver.dispatch([bad], b"x"),
        driver.unsubscribe([bad], Inbox()),
    ):
        with pytest.raises(PeerixError) as info:
            await call
        assert info.value.code == "PEER_SIGNALING_ERROR"
        assert repr(bad) in info.value.message
        assert "signaling_hashing=True" in info.value.message
    assert driver.nc is None
    # Hashing makes any room name a valid token, and distinct rooms stay distinct.
    assert driver.subject([hash_part(bad)]) != driver.subject([hash_part(bad + "!")])
    with pytest.raises(PeerixError, match="list of parts"):
        driver.subject("lobby")  # type: ignore[arg-type]
    with pytest.raises(PeerixError, match="longer than"):
        driver.subject(["x" * 2000])


@pytest.mark.timeout(20)
@pytest.mark.parametrize("count", [1, 3])
async def test_connection_refused_raises_instead_of_retrying(count: int) -> None:
    urls = [f"nats://127.0.0.1:{launcher.free_port()}" for _ in range(count)]
    driver = NatsDriver(urls if count > 1 else urls[0])
    before = asyncio.all_tasks()
    with pytest.raises(PeerixError) as info:
        await driver.subscribe(["lobby"], Inbox())
    assert info.value.code == "PEER_SIGNALING_ERROR"
    for url in urls:
        assert url in info.value.message
    assert isinstance(info.value.cause, ConnectionRefusedError)
    assert not driver.active and driver.nc is None
    await asyncio.sleep(0)
    assert asyncio.all_tasks() <= before, "a failed connect must leave no nats-py task behind"


async def test_handler_errors_are_reported_and_delivery_goes_on(
    pair: tuple[NatsDriver, NatsDriver],
) -> None:
    a, b = pair
    errors: list[Any] = []
    a.on("error", lambda e: errors.append(e.error))
    got = Inbox()

    async def handler(data: bytes) -> None:
        await asyncio.sleep(0)
        if data == b"bad":
            raise ValueError("handler bug")
        got(data)

    await a.subscribe(["lobby"], handler)
    await b.dispatch(["lobby"], b"bad")
    await b.dispatch(["lobby"], b"good")
    assert await got.get() == b"good"
    assert len(errors) == 1 and isinstance(errors[0].cause, ValueError)
    assert errors[0].code == "PEER_SIGNALING_ERROR"


async def test_server_restart_inactive_then_active_and_subscriptions_survive(
    nats_server: launcher.NatsServer,
) -> None:
    calls: list[str] = []

    async def user_disconnected() -> None:
        calls.append("disconnected")

    async def user_reconnected() -> None:
        calls.append("reconnected")

    a = NatsDriver(
        nats_server.url, disconnected_cb=user_disconnected, reconnected_cb=user_reconnected, **FAST
    )
    b = NatsDriver(nats_server.url, **FAST)
    a_events, b_events = record_events(a), record_events(b)
    old, new = Inbox(), Inbox()
    try:
        await a.subscribe(["lobby"], old)
        await b.connect()

        nats_server.kill()
        await poll_until(lambda: "inactive" in a_events and "inactive" in b_events, what="inactive")
        assert not a.active and not b.active
        assert b.nc is not None
        sent = b.nc.stats["out_msgs"]
        await b.dispatch(["lobby"], b"while down")  # dropped silently, not buffered by nats-py
        assert b.nc.stats["out_msgs"] == sent
        await a.subscribe(["lobby", "peer-a"], new)  # subscribing during the outage works too

        await nats_server.arestart()
        await poll_until(lambda: a.active and b.active, what="active after restart")
        assert a_events[-1] == b_events[-1] == "active"
        await b.dispatch(["lobby"], b"after restart")
        await b.dispatch(["lobby", "peer-a"], b"direct")
        assert await old.get() == b"after restart"
        assert await new.get() == b"direct"
        assert old.seen == [b"after restart"]
        assert calls == ["disconnected", "reconnected"]
        # One error per outage, not one per failed reconnect attempt.
        assert a_events.count("error") <= 2
    finally:
        await a.close()
        await b.close()


async def test_existing_connection_is_shared_not_closed(
    nats_server: launcher.NatsServer,
) -> None:
    closed: list[bool] = []

    async def on_closed() -> None:
        closed.append(True)

    nc = await nats.connect(nats_server.url, closed_cb=on_closed)
    driver = NatsDriver(nc=nc)
    other = NatsDriver(nats_server.url)
    try:
        got = Inbox()
        await driver.subscribe(["lobby"], got)
        assert driver.active
        await other.dispatch(["lobby"], b"hi")
        assert await got.get() == b"hi"
        await driver.close()
        assert nc.is_connected and not driver.active and driver.subscriber_count() == 0
        assert nc._closed_cb is on_closed  # our chained callback was taken off again
    finally:
        await other.close()
        await nc.close()
    assert closed == [True]


async def test_closed_driver_drops_dispatches(nats_server: launcher.NatsServer, raw: Raw) -> None:
    driver = NatsDriver(nats_server.url)
    await driver.dispatch(["lobby"], b"before")
    await driver.close()
    await driver.dispatch(["lobby"], b"after close")  # dropped, no new connection
    assert driver.nc is None and not driver.active
    assert await raw.get() == ("peerix.lobby", b"before")
    await raw.nc.flush()
    assert raw.queue.empty()


async def test_cluster_failover_keeps_the_room_working() -> None:
    async with launcher.start_cluster(3) as cluster:
        a = NatsDriver(cluster.urls, **FAST)
        a_events = record_events(a)
        got = Inbox()
        await a.subscribe(["lobby"], got)
        first = a.connected_url
        assert first in cluster.urls
        victim = cluster.servers[cluster.urls.index(first)]
        survivor = next(u for u in cluster.urls if u != first)
        b = NatsDriver(survivor)
        try:
            # Interest crosses the routes asynchronously: repeat until it arrives.
            async def deliver(text: bytes) -> None:
                deadline = time.monotonic() + 10
                while text not in got.seen:
                    assert time.monotonic() < deadline, f"{text!r} not delivered across routes"
                    await b.dispatch(["lobby"], text)
                    await asyncio.sleep(0.05)

            await deliver(b"before failover")
            victim.kill()
            await poll_until(lambda: "inactive" in a_events, what="inactive after node kill")
            await poll_until(lambda: a.active, what="active on another node")
            assert a.connected_url not in (None, first)
            await deliver(b"after failover")
        finally:
            await a.close()
            await b.close()


async def test_after_giving_up_connect_restores_subscriptions(
    nats_server: launcher.NatsServer,
) -> None:
    # With a finite max_reconnect_attempts nats-py closes the connection for good.
    a = NatsDriver(nats_server.url, max_reconnect_attempts=1, **FAST)
    errors: list[Any] = []
    a.on("error", lambda e: errors.append(e.error))
    got = Inbox()
    await a.subscribe(["lobby"], got)
    nats_server.kill()
    await poll_until(lambda: a.nc is None, what="nats-py gives up reconnecting")
    assert not a.active
    assert any("gave up reconnecting" in e.message for e in errors)

    await nats_server.arestart()
    await a.connect()
    b = NatsDriver(nats_server.url)
    try:
        await b.dispatch(["lobby"], b"back")
        assert await got.get() == b"back"
    finally:
        await a.close()
        await b.close()
