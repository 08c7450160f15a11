"""Memory per connection of a 16-peer mesh and idle CPU of a connected 8-peer room, against raw
aiortc doing the same.

Each measurement runs in a fresh child process (`python -m bench.memory --child SETUP ...`), so
no run inherits another's heap; setups alternate child by child after a discarded warm-up round.
A child first builds and closes a 2-peer mesh of its setup (imports and first-use caches), then
`gc.collect()` and reads VmRSS from /proc/self/status, builds the mesh (bench.mesh: N Peers on a
MemoryDriver, or raw RTCPeerConnection pairs with `iceServers=[]`, max-bundle, the negotiated
channel id 0), collects again once every channel is open and reads VmRSS again. For idle CPU
it then waits 1 s, and divides its CPU time (time.process_time(), every thread) by the wall time
of an `--idle` second window. peerix_nb pings every connection once a second (liveness.py); the
`peerix_nb, no keepalive` setup sets `liveness.PING_INTERVAL` out of reach to price that.

Run: `python -m bench.memory [--runs 5] [--idle 10] [--memory-peers 16] [--cpu-peers 8]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ._common import loadavg, machine, median, rss_kib
from .mesh import peerix_mesh, raw_mesh

SETUPS = ("raw aiortc", "peerix_nb", "peerix_nb, no keepalive")
ROOT = Path(__file__).resolve().parent.parent


# -- the child: one mesh, one process --------------------------------------------------------------
async def child(setup: str, n: int, idle: float) -> dict[str, Any]:
    if setup == "peerix_nb, no keepalive":
        from peerix_nb import liveness

        liveness.PING_INTERVAL = 1e9  # the keepalive loop then sleeps for ever after its start

    def build(size: int, hold: Any = None) -> Any:
        return raw_mesh(size, hold=hold) if setup == "raw aiortc" else peerix_mesh(size, hold=hold)

    await build(2)  # warm-up: imports, lazy module state, first allocations
    gc.collect()
    before = rss_kib()
    out: dict[str, Any] = {"rss_before_kib": before}

    async def hold() -> None:
        gc.collect()
        out["rss_growth_kib"] = rss_kib() - before
        if idle > 0:
            await asyncio.sleep(1.0)  # settle: first keepalives, timers armed
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.sleep(idle)
            out["cpu_share"] = (time.process_time() - cpu) / (time.perf_counter() - wall)

    run = await build(n, hold)
    out["connections"] = len(run.phases)
    out["seconds"] = run.seconds
    return out


def spawn(setup: str, n: int, idle: float) -> dict[str, Any]:
    """Run one child and return what it measured."""
    command = [sys.executable, "-m", "bench.memory", "--child", setup]
    result = subprocess.run(
        [*command, "--peers", str(n), "--idle", str(idle)],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"child {setup} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def alternate(
    runs: int, setups: tuple[str, ...], n: int, idle: float
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in setups}
    for i in range(runs + 1):
        for setup in setups:
            measured = spawn(setup, n, idle)
            if i:  # the first round is a warm-up
                results[setup].append(measured)
    return results


# -- the benchmark ---------------------------------------------------------------------------------
def memory_table(results: dict[str, list[dict[str, Any]]], n: int) -> str:
    raw = median([r["rss_growth_kib"] for r in results["raw aiortc"]])
    lines = [
        f"| {n}-peer mesh | RSS before (MiB) | growth (MiB) | range (MiB) | per RTCPeerConnection (KiB) "
        "| per pair (KiB) | ratio to raw |",
        "|---|---|---|---|---|---|---|",
    ]
    for setup, runs in results.items():
        growth = [r["rss_growth_kib"] for r in runs]
        pcs = runs[0]["connections"]
        g = median(growth)
        lines.append(
            f"| {setup} | {median([r['rss_before_kib'] for r in runs]) / 1024:.1f} | "
            f"{g / 1024:.1f} | {min(growth) / 1024:.1f}-{max(growth) / 1024:.1f} | "
            f"{g / pcs:.0f} | {2 * g / pcs:.0f} | {g / raw:.2f} |"
        )
    return "\n".join(lines)


def cpu_table(results: dict[str, list[dict[str, Any]]], n: int, idle: float) -> str:
    raw = median([r["cpu_share"] for r in results["raw aiortc"]])
    lines = [
        f"| {n}-peer room, idle {idle:.0f} s | CPU (% of one core) | range (%) | ratio to raw |",
        "|---|---|---|---|",
    ]
    for setup, runs in results.items():
        shares = [r["cpu_share"] * 100 for r in runs]
        lines.append(
            f"| {setup} | {median(shares):.2f} | {min(shares):.2f}-{max(shares):.2f} | "
            f"{median(shares) / 100 / raw:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="child processes per setup")
    parser.add_argument("--idle", type=float, default=10.0, help="idle window, seconds")
    parser.add_argument("--memory-peers", type=int, default=16, help="peers of the RSS mesh")
    parser.add_argument("--cpu-peers", type=int, default=8, help="peers of the idle room")
    parser.add_argument("--child", choices=SETUPS, help=argparse.SUPPRESS)
    parser.add_argument("--peers", type=int, default=16, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.peers, args.idle))))
        return

    print(f"machine: {machine()}")
    n = args.memory_peers
    print(f"load average before: {loadavg()}")
    memory = alternate(args.runs, SETUPS[:2], n, 0.0)
    print(f"\nRSS growth, {n}-peer mesh, {args.runs} child processes per setup (median):\n")
    print(memory_table(memory, n))
    print(f"load average after: {loadavg()}")

    n = args.cpu_peers
    print(f"\nload average before: {loadavg()}")
    cpu = alternate(args.runs, SETUPS, n, args.idle)
    print(
        f"\nidle CPU, connected {n}-peer room ({n * (n - 1)} RTCPeerConnections), "
        f"{args.runs} child processes per setup (median):\n"
    )
    print(cpu_table(cpu, n, args.idle))
    ours = median([r["cpu_share"] for r in cpu["peerix_nb"]])
    quiet = median([r["cpu_share"] for r in cpu["peerix_nb, no keepalive"]])
    pcs = n * (n - 1)
    print(
        f"\nkeepalive: {(ours - quiet) * 100:.2f} % of a core for {pcs} connections pinging once a "
        f"second = {(ours - quiet) / pcs * 1e6:.0f} us of CPU per ping (sender and receiver)"
    )
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
