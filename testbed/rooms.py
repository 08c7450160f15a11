"""Rooms of real Peers over aiortc, and waits on their events (never on sleeps).

Shared by the tests and the benchmarks (bench/soak.py), so both build and wait on a room alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from peerix_nb import Event, MemoryDriver, Peer


async def poll_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait for a condition no Peer event announces (widget counters, comm messages, driver
    state), re-checking it every 10 ms; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout:g} s{': ' + what if what else ''}")
        await asyncio.sleep(0.01)


async def wait_until(
    peers: Iterable[Peer], condition: Callable[[], bool], timeout: float = 20.0
) -> None:
    """Wait until `condition()` holds, re-checking it after every event of any of `peers`."""
    peers = list(peers)
    if condition():
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def check() -> None:
        if not done.done() and condition():
            done.set_result(None)

    def on_event(_event: Event) -> None:
        # Check after every handler of this event has run (ours may be called first).
        loop.call_soon(check)

    for peer in peers:
        peer.on("*", on_event)
    try:
        await asyncio.wait_for(done, timeout)
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout} s") from None
    finally:
        for peer in peers:
            peer.off("*", on_event)


def fully_connected(peers: list[Peer]) -> bool:
    """Every peer has a connected RemotePeer for every other peer."""
    ids = {p.id for p in peers}
    return all(
        set(p.connections) == ids - {p.id}
        and all(r.state == "connected" for r in p.connections.values())
        for p in peers
    )


def channels_open(peers: list[Peer], label: str) -> bool:
    """Every connection of every peer has channel `label` open."""
    return fully_connected(peers) and all(
        (ch := r.channels.get(label)) is not None and ch.readyState == "open"
        for p in peers
        for r in p.connections.values()
    )


async def room(
    n: int,
    *,
    driver: MemoryDriver | None = None,
    room_name: str = "room",
    ids: list[str] | None = None,
    channels: Iterable[str] = (),
    **peer_options,
) -> list[Peer]:
    """`n` peers joined to one room over a fresh MemoryDriver, fully connected (and channels open)."""
    driver = driver or MemoryDriver()
    peers = [Peer(id=ids[i] if ids else None, driver=driver, **peer_options) for i in range(n)]
    for peer in peers:
        for label in channels:
            await peer.open(label)
    for i, peer in enumerate(peers):
        await peer.join(room=room_name, metadata={"name": f"p{i}"})
    await wait_until(peers, lambda: fully_connected(peers))
    for label in channels:
        await wait_until(peers, lambda label=label: channels_open(peers, label))
    return peers


async def leave_all(peers: Iterable[Peer]) -> None:
    """Every peer leaves, at once."""
    await asyncio.gather(*(p.leave() for p in peers))


async def remote_tone(sender: Peer, receiver: Peer, label: str = "tone") -> tuple[Any, Any]:
    """`sender` publishes `synthetic(video=False)` (the stamped 440 Hz tone) as `label`: that
    stream, and the remote audio track `receiver` got (the caller stops the stream)."""
    from peerix_nb.media import synthetic

    added = asyncio.ensure_future(receiver.wait_for("track:add", timeout=10))
    stream = synthetic(video=False)
    await sender.publish(stream, label=label)
    return stream, (await added).track
