"""Join-to-connected over NATS between two processes vs MemoryDriver in one process; and how long
a SIGKILLed peer takes to show up as `disconnected` at the survivor.

Run: `python -m bench.nats_join [--runs 7] [--kill-runs 5]`. Setups alternate run by run (A B A
B ...) after one discarded warm-up each, so drift on a shared machine hits both alike. Times are
time.monotonic() stamps taken inside the peers (one clock for every process on Linux), from the
moment the second peer is told to join (the first one has already joined).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from peerix_nb import MemoryDriver, Peer
from peerix_nb import nats_server as launcher
from testbed.nats_peer_proc import event_record
from testbed.peer_procs import PeerProc, PeerProcs

from ._common import machine

Record = dict[str, Any]
MEMORY = "MemoryDriver, 1 process"
NATS = "NATS, 2 processes"

#: (row name, which peer's events, how to spot the event), in the order they happen.
PHASES: list[tuple[str, str, Callable[[Record], bool]]] = [
    ("JOIN reaches a", "a", lambda e: e["name"] == "signal:recv" and e.get("kind") == "join"),
    ("OFFER reaches b", "b", lambda e: e["name"] == "signal:recv" and e.get("kind") == "offer"),
    ("ANSWER reaches a", "a", lambda e: e["name"] == "signal:recv" and e.get("kind") == "answer"),
    ("connected (a)", "a", lambda e: e["name"] == "connection:connected"),
    ("connected (both)", "both", lambda e: e["name"] == "connection:connected"),
    ("control open (both)", "both", lambda e: e["name"] == "control:open"),
]


def phase_times(events: dict[str, list[Record]], t0: float) -> dict[str, float]:
    """Milliseconds from `t0` to each phase (the later of the two peers for 'both' rows)."""
    times: dict[str, float] = {}
    for name, who, match in PHASES:
        stamps = []
        for peer in ("a", "b") if who == "both" else (who,):
            stamps.append(next(e["t"] for e in events[peer] if e["t"] >= t0 and match(e)))
        times[name] = (max(stamps) - t0) * 1000
    return times


def room() -> str:
    return f"bench-{uuid.uuid4().hex[:8]}"


# -- one run of each setup ------------------------------------------------------------------------
async def memory_run() -> dict[str, float]:
    """Two peers in this process over a MemoryDriver."""
    driver = MemoryDriver()
    a, b = Peer(id="a", driver=driver), Peer(id="b", driver=driver)
    events: dict[str, list[Record]] = {"a": [], "b": []}
    for peer in (a, b):
        peer.on("*", lambda e, log=events[peer.id]: log.append(event_record(e)))
    name = room()
    try:
        await a.join(room=name)
        both_open = asyncio.gather(
            a.wait_for("control:open", timeout=20), b.wait_for("control:open", timeout=20)
        )
        t0 = time.monotonic()
        await b.join(room=name)
        await both_open
        return phase_times(events, t0)
    finally:
        await asyncio.gather(a.leave(), b.leave())


async def nats_run(a: PeerProc, b: PeerProc) -> dict[str, float]:
    """Two peer processes over the embedded nats-server (warm: they join a fresh room each run)."""
    name = room()
    await a.command("join", room=name)
    marks = {"a": a.mark(), "b": b.mark()}
    t0 = time.monotonic()
    b.send_command("join", room=name)
    for peer, other in ((a, b), (b, a)):
        await peer.wait("control:open", since=marks[peer.id], remote=other.id)
    events = {"a": a.events[marks["a"] :], "b": b.events[marks["b"] :]}
    times = phase_times(events, t0)
    await asyncio.gather(a.command("leave"), b.command("leave"))
    return times


async def kill_run(procs: PeerProcs, survivor: PeerProc, index: int) -> float:
    """Seconds from SIGKILL of a fresh peer process to `connection:disconnected` at `survivor`."""
    name = room()
    await survivor.command("join", room=name)
    victim = await procs.start(f"victim{index}", name)
    since = survivor.mark()
    for peer, other in ((survivor, victim), (victim, survivor)):
        await peer.wait("control:open", remote=other.id)
    # Keepalives go out once a second from control:open: kill at a random phase of that cycle.
    await asyncio.sleep(random.random())
    killed_at = victim.kill()
    event = await survivor.wait("connection:disconnected", 30, since, remote=victim.id)
    await victim.aclose()
    await survivor.command("leave")
    return event["t"] - killed_at


# -- the benchmark --------------------------------------------------------------------------------
def median_table(title: str, columns: dict[str, list[dict[str, float]]]) -> str:
    """A markdown table: one row per phase, the median of each setup's runs in ms, and the ratio."""
    names = list(columns)
    head = f"| {title} | " + " | ".join(f"{n} (ms)" for n in names) + " | ratio |"
    lines = [head, "|" + "---|" * (len(names) + 2)]
    for phase, _, _ in PHASES:
        medians = [statistics.median(run[phase] for run in columns[n]) for n in names]
        ratio = medians[1] / medians[0] if medians[0] else float("nan")
        cells = " | ".join(f"{m:.1f}" for m in medians)
        lines.append(f"| {phase} | {cells} | {ratio:.2f} |")
    return "\n".join(lines)


async def run(runs: int, kill_runs: int) -> None:
    async with launcher.start() as server, PeerProcs(server.url) as procs:
        a = await procs.start("a", "unused", join=False)
        b = await procs.start("b", "unused", join=False)
        await memory_run()  # warm-up, discarded
        await nats_run(a, b)
        results: dict[str, list[dict[str, float]]] = {
            MEMORY: [],
            NATS: [],
        }
        for i in range(runs):
            order = [(MEMORY, None), (NATS, (a, b))]
            for label, pair in order if i % 2 == 0 else order[::-1]:
                times = await memory_run() if pair is None else await nats_run(*pair)
                results[label].append(times)
        print(f"machine: {machine()}")
        print(
            f"\nJoin to connected, median of {runs} runs each (alternating; ratio = NATS / memory):\n"
        )
        print(median_table("phase (from b's join)", results))

        survivor = await procs.start("survivor", "unused", join=False)
        kills = [await kill_run(procs, survivor, i) for i in range(kill_runs)]
        print(
            f"\nSIGKILL of a peer process -> connection:disconnected at the survivor ({kill_runs} runs):\n"
        )
        print("| median (s) | min (s) | max (s) | runs (s) |\n|---|---|---|---|")
        print(
            f"| {statistics.median(kills):.2f} | {min(kills):.2f} | {max(kills):.2f} | "
            + ", ".join(f"{k:.2f}" for k in kills)
            + " |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.nats_join", description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="join runs per setup")
    parser.add_argument("--kill-runs", type=int, default=5, help="SIGKILL runs")
    args = parser.parse_args(argv)
    asyncio.run(run(args.runs, args.kill_runs))


if __name__ == "__main__":
    main()
