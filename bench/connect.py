"""Two peers in one process: join to connected / control channel open, against raw aiortc.

Baseline: two RTCPeerConnections with `iceServers=[]`, max-bundle, the negotiated channel id 0,
offer and answer handed over directly — the least work that gives the same result. peerix_nb
adds the JOIN round trip over a MemoryDriver, deflated JSON signaling and its bookkeeping, and
saves what aiortc and aioice redo per connection (bench/mesh.py `SAVINGS`); each saving is
also measured undone, in the same alternating runs. Goal (issue 17): at most 1.0x raw aiortc
(issue 2 asked for 1.3x).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection

from peerix_nb import MemoryDriver, Peer

from ._common import alternate, loadavg, machine, median, raw_configuration, spread
from .mesh import SAVINGS

RUNS = 25


async def raw_aiortc() -> float:
    """Milliseconds from the first createOffer to both negotiated channels open."""
    config = raw_configuration()
    start = time.perf_counter()
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    opened = asyncio.get_running_loop().create_future()
    count = 0

    def on_open() -> None:
        nonlocal count
        count += 1
        if count == 2 and not opened.done():
            opened.set_result(time.perf_counter())

    for pc in (a, b):
        pc.createDataChannel("", negotiated=True, id=0).on("open", on_open)
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    end = await asyncio.wait_for(opened, 20)
    await asyncio.gather(a.close(), b.close())
    return (end - start) * 1000


async def peerix() -> float:
    """Milliseconds from the first join() to the control channel open on both sides."""
    driver = MemoryDriver()
    a, b = Peer(driver=driver), Peer(driver=driver)
    opened = asyncio.gather(
        a.wait_for("control:open", timeout=20), b.wait_for("control:open", timeout=20)
    )
    start = time.perf_counter()
    await a.join(room="bench")
    await b.join(room="bench")
    await opened
    end = time.perf_counter()
    await asyncio.gather(a.leave(), b.leave())
    return (end - start) * 1000


def undone(*undo: Callable[[], contextlib.AbstractContextManager[None]]) -> Callable[[], Any]:
    """peerix() with the savings `undo` undone for the run."""

    async def case() -> float:
        with contextlib.ExitStack() as stack:
            for patch in undo:
                stack.enter_context(patch())
            return await peerix()

    return case


async def run() -> dict[str, list[float]]:
    cases: dict[str, Callable[[], Any]] = {"raw aiortc": raw_aiortc, "peerix_nb": peerix}
    for name, patch in SAVINGS.items():
        cases[f"peerix_nb, {name}"] = undone(patch)
    cases["peerix_nb, none of them (as before)"] = undone(*SAVINGS.values())
    return await alternate(RUNS, cases)


def main() -> None:
    print(f"machine: {machine()}, load average before {loadavg()}")
    results = asyncio.run(run())
    raw = median(results["raw aiortc"])
    print(f"two peers, one process, {RUNS} alternating runs each (ms to control channel open)\n")
    print("| setup | median (ms) | range (ms) | ratio to raw aiortc |\n|---|---|---|---|")
    for name, values in results.items():
        goal = " (goal <= 1.0)" if name == "peerix_nb" else ""
        print(
            f"| {name} | {median(values):.1f} | {spread(values)} | {median(values) / raw:.2f}{goal} |"
        )
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
