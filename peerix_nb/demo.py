"""`python -m peerix_nb demo`: three peers in one process connect over a MemoryDriver and chat.

Prints what happened as the event DataFrame and a table of connect times per remote, the
quickest way to see the library work on a fresh machine.
"""

from __future__ import annotations

import asyncio
import functools

from . import Event, MemoryDriver, Peer

NAMES = ("ada", "grace", "linus")


async def run(names: tuple[str, ...] = NAMES, timeout: float = 20.0) -> list[Peer]:
    """Join `names` into one room, exchange one chat message each, leave; return the peers."""
    driver = MemoryDriver()
    peers = [Peer(id=name, driver=driver) for name in names]  # readable ids for a demo
    inbox: dict[str, list[str]] = {name: [] for name in names}
    expected = len(peers) - 1
    all_delivered = asyncio.Event()

    def deliver(event: Event, name: str) -> None:
        assert event.remote is not None  # channel events always name their remote
        inbox[name].append(f"{event.remote.metadata['name']}: {event.data}")
        if all(len(lines) == expected for lines in inbox.values()):
            all_delivered.set()

    for peer, name in zip(peers, names, strict=True):
        peer.on("channel:message", functools.partial(deliver, name=name))
        await peer.open("chat")
    opened: set[tuple[str, str]] = set()
    everyone_open = asyncio.Event()

    def channel_open(event: Event) -> None:
        assert event.remote is not None
        opened.add((event.id, event.remote.id))
        if len(opened) == len(peers) * expected:
            everyone_open.set()

    for peer in peers:
        peer.on("channel:open", channel_open)
    for peer, name in zip(peers, names, strict=True):
        await peer.join(room="demo", metadata={"name": name})
    await asyncio.wait_for(everyone_open.wait(), timeout)
    for peer, name in zip(peers, names, strict=True):
        peer.send(f"hello from {name}", label="chat")
    await asyncio.wait_for(all_delivered.wait(), timeout)
    for name in names:
        for line in inbox[name]:
            print(f"[{name}] {line}")
    await asyncio.gather(*(peer.leave() for peer in peers))
    return peers


def main() -> int:
    import pandas as pd

    peers = asyncio.run(run())
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_rows", 60):
        first = peers[0]
        print(f"\nEvents of {first.id}:")
        print(first.events.to_frame().drop(columns=["time", "peer", "room"]).to_string(max_rows=60))
        print("\nWhere the time went, per connection attempt (ms):")
        timing = pd.concat([peer.events.timing() for peer in peers], ignore_index=True)
        print(timing.drop(columns=["time", "start", "reason"]).round(1).to_string())
    return 0
