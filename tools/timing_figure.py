"""Regenerate README's timing table and docs/img/timeline.png from a real room.

    python tools/timing_figure.py

Three peers join one room over a MemoryDriver with a 20 ms one-way delay (so the signaling hops
show), the EventLog's `timing()` of the first peer is printed as a Markdown table, and
`plot.timeline` of all three peers' merged logs is saved as a PNG.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from peerix_nb import MemoryDriver, Peer, merge, plot
from peerix_nb.log import timing

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "timeline.png"
PHASES = ["discovery", "gathering", "signaling", "ice", "dtls", "sctp", "total"]


async def main() -> None:
    driver = MemoryDriver(20, jitter=0)
    peers = [Peer(id=name, driver=driver) for name in ("ada", "bob", "cy")]
    opened = asyncio.Event()
    pairs: set[tuple[str, str]] = set()

    def control_open(event: object) -> None:
        pairs.add((event.id, event.remote.id))  # type: ignore[attr-defined]
        if len(pairs) == 6:
            opened.set()

    for peer in peers:
        peer.on("control:open", control_open)
        await peer.join(room="readme")
    await asyncio.wait_for(opened.wait(), 20)
    frame = merge(*peers)
    await asyncio.gather(*(peer.leave() for peer in peers))

    table = timing(frame)[["peer", "remote", "role", *PHASES]].round(1)
    print("| " + " | ".join(table.columns) + " |")
    print("|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(str(value) for value in row) + " |")
    figure = plot.timeline(frame)
    figure.savefig(OUT, dpi=90)
    print(f"wrote {OUT.relative_to(OUT.parents[2])}")


if __name__ == "__main__":
    asyncio.run(main())
