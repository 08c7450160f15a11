"""Two peers in one process: join to connected / control channel open, against raw aiortc.

Baseline: two RTCPeerConnections with `iceServers=[]`, max-bundle, the negotiated channel id 0,
offer and answer handed over directly — the least work that gives the same result. peerix_nb
adds the JOIN round trip over a MemoryDriver, deflated JSON signaling and its bookkeeping.
Goal (issue 2): peerix_nb within 1.3x of raw aiortc.
"""

from __future__ import annotations

import asyncio
import time

from aiortc import RTCPeerConnection

from peerix_nb import MemoryDriver, Peer

from ._common import alternate, machine, median, raw_configuration, spread

RUNS = 15


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


async def run() -> dict[str, list[float]]:
    return await alternate(RUNS, {"raw aiortc": raw_aiortc, "peerix_nb": peerix})


def main() -> None:
    results = asyncio.run(run())
    raw, ours = median(results["raw aiortc"]), median(results["peerix_nb"])
    print(f"machine: {machine()}")
    print(f"two peers, one process, {RUNS} alternating runs each (ms to control channel open)")
    print(f"  raw aiortc  median {raw:6.1f}  range {spread(results['raw aiortc'])}")
    print(f"  peerix_nb   median {ours:6.1f}  range {spread(results['peerix_nb'])}")
    print(f"  ratio peerix_nb / raw = {ours / raw:.2f}  (goal <= 1.3)")


if __name__ == "__main__":
    main()
