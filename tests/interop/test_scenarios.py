"""The scenario table: one behaviour, proven for every pair of implementations.

Each scenario is written once against tests/interop/sides.py and runs for (kernel, kernel),
(kernel, browser) in both politeness roles, and (browser, browser). Side `a` is the impolite
one, `b` the polite one. A browser side is a plain page in headless Chromium running
peerix_nb/browser/peer.js untouched, signalling over the nats-server's WebSocket listener
("browser") or through the kernel relay of a real BrowserPeer widget onto a kernel NatsDriver
("browser_relay": the shipped widget front end, browser_peer.js, in the page).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.interop.conftest import LOOP
from tests.interop.sides import BrowserSide, Side, until

PAIRS = [
    pytest.param("kernel", "kernel", id="kernel-kernel"),
    pytest.param("kernel", "browser", id="kernel-browser"),  # the browser is polite
    pytest.param("browser", "kernel", id="browser-kernel"),  # the kernel is polite
    pytest.param("browser", "browser", id="browser-browser"),
    # The same page, signalling through the kernel relay instead of its own WebSocket.
    pytest.param("kernel", "browser_relay", id="kernel-browser_relay"),
    pytest.param("browser_relay", "kernel", id="browser_relay-kernel"),
    pytest.param("browser", "browser_relay", id="browser-browser_relay"),
]
pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope=LOOP)]
every_pair = pytest.mark.parametrize(("impl_a", "impl_b"), PAIRS)


async def connected(a: Side, b: Side) -> None:
    await until(lambda: _both(a, b, "connected"), f"{a.id} and {b.id} connected")


async def _both(a: Side, b: Side, state: str) -> bool:
    return await a.state(b.id) == state and await b.state(a.id) == state


async def chat_both_ways(a: Side, b: Side, label: str = "chat") -> None:
    """Messages both ways on `label`, once the channel is open on both sides."""
    await until(lambda: _sent(a, f"hello from {a.id}", label), f"{a.id} sends on {label!r}")
    await until(lambda: _sent(b, f"hello from {b.id}", label), f"{b.id} sends on {label!r}")
    await until(lambda: _got(b, f"hello from {a.id}", label), f"{b.id} gets {a.id}'s message")
    await until(lambda: _got(a, f"hello from {b.id}", label), f"{a.id} gets {b.id}'s message")


async def _sent(side: Side, text: str, label: str) -> bool:
    try:
        return await side.send(text, label) == 1
    except Exception:
        return False  # the channel is not open yet


async def _got(side: Side, text: str, label: str) -> bool:
    return text in await side.messages(label)


async def no_errors(*sides: Side) -> None:
    for side in sides:
        assert await side.errors() == [], f"{side.id} ({side.impl}) reported errors"


@every_pair
async def test_join_chat_both_channel_roles_and_leave(pair, impl_a: str, impl_b: str) -> None:
    a, b = await pair(impl_a, impl_b)
    await a.open("from-a")  # a is impolite: it creates the channel itself
    await b.open("from-b")  # b is polite: it asks a to create it
    await a.join("room")
    await b.join("room")
    await connected(a, b)
    await chat_both_ways(a, b, "from-a")
    await chat_both_ways(a, b, "from-b")
    for side in (a, b):  # one channel:open per channel, whichever side created it
        opened = [n for n in await side.names() if n == "channel:open"]
        assert len(opened) == 2, f"{side.id} ({side.impl}): {len(opened)} channel:open for 2"
    await b.leave()  # LEAVE: a closes its connection to b
    await until(lambda: _closed(a, b.id), f"{a.id} closes {b.id} after its LEAVE")
    await no_errors(a, b)


async def _closed(side: Side, remote: str) -> bool:
    return await side.state(remote) in (None, "closed")


@every_pair
async def test_video_and_audio_published_before_join(pair, impl_a: str, impl_b: str) -> None:
    a, b = await pair(impl_a, impl_b)
    await a.open("chat")
    await a.publish("cam-a", video=True, audio=True)
    await b.publish("cam-b", video=True, audio=True)
    await a.join("room")
    await b.join("room")
    await connected(a, b)
    await b.receives(a.id, "cam-a", {"video", "audio"})
    await a.receives(b.id, "cam-b", {"video", "audio"})
    await chat_both_ways(a, b)
    await no_errors(a, b)


@every_pair
async def test_media_published_after_connect(pair, impl_a: str, impl_b: str) -> None:
    a, b = await pair(impl_a, impl_b)
    await a.join("room")
    await b.join("room")
    await connected(a, b)
    await a.publish("cam-a", video=True, audio=True)
    await b.receives(a.id, "cam-a", {"video", "audio"})
    await b.publish("cam-b", video=True, audio=True)
    await a.receives(b.id, "cam-b", {"video", "audio"})
    await no_errors(a, b)


@every_pair
async def test_both_publish_at_the_same_moment(pair, impl_a: str, impl_b: str) -> None:
    a, b = await pair(impl_a, impl_b)
    await a.open("chat")
    await a.join("room")
    await b.join("room")
    await connected(a, b)
    await asyncio.gather(
        a.publish("cam-a", video=True, audio=True), b.publish("cam-b", video=True, audio=True)
    )
    await b.receives(a.id, "cam-a", {"video", "audio"})
    await a.receives(b.id, "cam-b", {"video", "audio"})
    await chat_both_ways(a, b)
    await no_errors(a, b)


@every_pair
async def test_unpublish_and_republish_under_the_same_label(pair, impl_a: str, impl_b: str) -> None:
    a, b = await pair(impl_a, impl_b)
    await a.open("chat")
    await a.join("room")
    await b.join("room")
    await connected(a, b)
    for sender, receiver in ((a, b), (b, a)):
        await sender.publish("cam", video=True, audio=False)
        await receiver.receives(sender.id, "cam", {"video"})
        await sender.unpublish("cam")
        await until(
            lambda s=sender, r=receiver: _gone(r, s.id, "cam"),
            f"{receiver.id} drops {sender.id}'s unpublished 'cam'",
        )
        await sender.publish("cam", video=True, audio=True)
        await receiver.receives(sender.id, "cam", {"video", "audio"})
    await chat_both_ways(a, b)
    await no_errors(a, b)


async def _gone(side: Side, remote: str, label: str) -> bool:
    return label not in await side.streams(remote)


@every_pair
@pytest.mark.timeout(90)
async def test_lost_offer_fails_then_the_direct_join_connects(
    pair, impl_a: str, impl_b: str
) -> None:
    # a is in the room first, so it makes the first offer: the wire loses it.
    a, b = await pair(impl_a, impl_b, connection_timeout=4, drop_offers=(1, 0))
    await a.open("chat")
    await a.join("room")
    await b.join("room")
    await connected(a, b)
    assert "connection:failed" in await a.names(), "the lost offer must end in failed"
    await chat_both_ways(a, b)


VICTIMS = [
    pytest.param("kernel", "browser", id="kernel-watches-browser"),
    pytest.param("browser", "kernel", id="kernel-watches-impolite-browser"),
    pytest.param("browser", "browser", id="browser-watches-browser"),
    pytest.param("kernel", "browser_relay", id="kernel-watches-browser_relay"),
]


@pytest.mark.parametrize(("impl_a", "impl_b"), VICTIMS)
async def test_a_killed_page_is_disconnected_within_5_s(pair, impl_a: str, impl_b: str) -> None:
    """A page whose renderer dies sends nothing more (no LEAVE, no close): the other side
    must notice on its own. (A killed kernel process: tests/test_reliability.py.)"""
    a, b = await pair(impl_a, impl_b)
    await a.open("chat")
    await a.join("room")
    await b.join("room")
    await connected(a, b)
    await chat_both_ways(a, b)
    victim, watcher = (b, a) if isinstance(b, BrowserSide) else (a, b)
    started = time.monotonic()
    await victim.crash()
    await until(
        lambda: _not_connected(watcher, victim.id),
        f"{watcher.id} notices {victim.id} is gone",
        timeout=10,
    )
    took = time.monotonic() - started
    assert took < 5, f"{watcher.id} noticed the killed page after {took:.1f} s"


async def _not_connected(side: Side, remote: str) -> bool:
    return await side.state(remote) in ("disconnected", "failed", "closed", None)
