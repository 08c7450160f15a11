"""Rooms of 4 over a faulty MemoryDriver (loss x delay x duplication, several seeds), and the
cost of a TURN relay on join-to-connected.

Run: `python -m bench.faults [--full] [--seeds N] [--bound 30] [--timeout 5] [--turn-runs N]
[--delays 0,50,200] [--losses 0,0.1,0.2,0.3] [--duplicates 0,0.2] [--json FILE]
[--early-stop] [--no-turn] [--no-matrix]`. Prints Markdown tables
(docs/RELIABILITY.md holds a copy with what they mean).

Two presets: the default (quick, ~1 min, what `make bench` runs) is the corners of the matrix,
delays 0 and 200 ms x losses 0 and 20 % x duplication 20 %, 2 seeds each, and 5 TURN runs;
`--full` is the complete matrix of docs/RELIABILITY.md (3 delays x 4 losses x 2 duplication
rates, 5 seeds each, 10 TURN runs; ~16 min). An option given explicitly overrides the preset.

Each matrix run joins 4 peers (each opening a `chat` channel) over
`MemoryDriver(delay, loss=..., duplicate=..., seed=...)` with `connection_timeout` = --timeout,
and waits until every pair has its channel open, or `--bound` seconds have passed since the
first join. The room is measured by testbed/faulty_room.py, the code tests/test_reliability.py
checks. A pair whose JOIN was lost is tried again at the sender's next periodic JOIN (peer.py,
REANNOUNCE_*), so a quiet room can still change; `--early-stop` stops a run that has been quiet
for ~1.5 s + 125 % of the delay (right only for a library that never repeats JOINs).

TURN: two peers, `a` joined; the clock starts when `b` joins and stops when both report
`connection:connected`. Direct (host candidates, no ICE server) and relay-only through a local
coturn alternate run by run after one discarded warm-up each.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

from peerix_nb import MemoryDriver, Peer
from testbed.faulty_room import RoomOutcome, run_room
from testbed.turn_server import TurnServer, TurnServerError

from ._common import alternate, loadavg, machine, median, percentile

LOSSES = (0.0, 0.1, 0.2, 0.3)
DELAYS = (0.0, 50.0, 200.0)
DUPLICATES = (0.0, 0.2)

# Presets: the complete matrix (docs/RELIABILITY.md) and the quick one `make bench` runs.
FULL: dict[str, Any] = {
    "seeds": 5,
    "turn_runs": 10,
    "delays": DELAYS,
    "losses": LOSSES,
    "duplicates": DUPLICATES,
}
QUICK: dict[str, Any] = {
    "seeds": 2,
    "turn_runs": 5,
    "delays": (0.0, 200.0),
    "losses": (0.0, 0.2),
    "duplicates": (0.2,),
}


@dataclass(frozen=True, slots=True)
class Setting:
    delay: float
    loss: float
    duplicate: float


def settings(
    delays: tuple[float, ...] = DELAYS,
    losses: tuple[float, ...] = LOSSES,
    duplicates: tuple[float, ...] = DUPLICATES,
) -> list[Setting]:
    return [Setting(d, loss, dup) for d in delays for loss in losses for dup in duplicates]


def run_record(outcome: RoomOutcome) -> dict[str, Any]:
    """One matrix run as JSON-friendly data."""
    return {
        "delay_ms": outcome.delay,
        "loss": outcome.loss,
        "duplicate": outcome.duplicate,
        "seed": outcome.seed,
        "connection_timeout": outcome.connection_timeout,
        "full": outcome.full,
        "seconds": round(outcome.seconds, 3),
        "unconnected_pairs": outcome.closed_pairs,
        "lost_join_pairs": outcome.lost_join_pairs,
        "failed": outcome.failed,
        "retries": outcome.retries,
        "errors": len(outcome.errors),
        "longest_attempt_s": max((a.seconds or 0.0) for a in outcome.attempts),
    }


async def matrix(
    grid: list[Setting], seeds: int, bound: float, timeout: float, early_stop: bool
) -> list[dict[str, Any]]:
    records = []
    for setting in grid:
        for seed in range(seeds):
            outcome = await run_room(
                delay=setting.delay,
                loss=setting.loss,
                duplicate=setting.duplicate,
                seed=seed,
                connection_timeout=timeout,
                bound=bound,
                early_stop=early_stop,
            )
            print(f"  {outcome.summary()}", flush=True)
            records.append(run_record(outcome))
    return records


def matrix_table(records: list[dict[str, Any]], grid: list[Setting], bound: float) -> str:
    lines = [
        f"| delay (ms) | loss | dup | full within {bound:g} s | median (s) | p90 (s) "
        "| failed attempts / run | retries / run | pairs never connected / run | of which last JOIN lost |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setting in grid:
        runs = [
            r
            for r in records
            if (r["delay_ms"], r["loss"], r["duplicate"])
            == (setting.delay, setting.loss, setting.duplicate)
        ]
        if not runs:
            continue
        full = [r["seconds"] for r in runs if r["full"]]
        n = len(runs)
        unconnected = sum(len(r["unconnected_pairs"]) for r in runs)
        lost = sum(len(r["lost_join_pairs"]) for r in runs)
        lines.append(
            f"| {setting.delay:g} | {setting.loss:.0%} | {setting.duplicate:.0%} "
            f"| {len(full)}/{n} | {_s(median(full) if full else None)} "
            f"| {_s(percentile(full, 90) if full else None)} "
            f"| {sum(r['failed'] for r in runs) / n:.1f} | {sum(r['retries'] for r in runs) / n:.1f} "
            f"| {unconnected / n:.1f} | {lost}/{unconnected} |"
        )
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


# -- TURN vs direct -------------------------------------------------------------------------------
async def join_to_connected(ice_servers: Any, policy: str) -> float:
    """Milliseconds from b's join to both peers connected (a joined first)."""
    driver = MemoryDriver()
    options = {"ice_servers": ice_servers, "ice_transport_policy": policy}
    a, b = Peer(driver=driver, **options), Peer(driver=driver, **options)
    loop = asyncio.get_running_loop()
    connected = [loop.create_future(), loop.create_future()]
    for peer, future in zip((a, b), connected, strict=True):
        peer.once("connection:connected", lambda e, f=future: f.done() or f.set_result(None))
    try:
        await a.join(room="turn-bench")
        start = time.perf_counter()
        await b.join(room="turn-bench")
        await asyncio.wait_for(asyncio.gather(*connected), 20)
        return (time.perf_counter() - start) * 1000
    finally:
        await asyncio.gather(a.leave(), b.leave())


async def turn_vs_direct(runs: int) -> dict[str, list[float]] | str:
    try:
        server = TurnServer()
    except TurnServerError as error:
        return str(error)
    async with server:
        cases = {
            "direct (host candidates)": lambda: join_to_connected(None, "all"),
            "TURN relay (coturn, relay-only)": lambda: join_to_connected(
                server.ice_servers(), "relay"
            ),
        }
        return await alternate(runs, cases)


def turn_table(results: dict[str, list[float]]) -> str:
    lines = [
        "| path | median (ms) | p90 (ms) | runs, sorted (ms) |",
        "|---|---|---|---|",
    ]
    for name, values in results.items():
        runs = ", ".join(f"{v:.0f}" for v in sorted(values))
        lines.append(f"| {name} | {median(values):.1f} | {percentile(values, 90):.1f} | {runs} |")
    direct, relay = (median(v) for v in results.values())
    lines.append(f"| ratio relay / direct (medians) | **{relay / direct:.2f}** | | |")
    return "\n".join(lines)


def grid_of(args: argparse.Namespace) -> list[Setting]:
    return settings(args.delays, args.losses, args.duplicates)


def numbers(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "loadavg_start": loadavg(),
        "settings": vars(args),
    }
    print(f"date: {out['date']}\nmachine: {out['machine']}\nload average: {out['loadavg_start']}")
    if not args.no_matrix:
        started = time.monotonic()
        out["matrix"] = await matrix(
            grid_of(args), args.seeds, args.bound, args.timeout, args.early_stop
        )
        out["matrix_seconds"] = round(time.monotonic() - started, 1)
    if not args.no_turn:
        out["turn"] = await turn_vs_direct(args.turn_runs)
    out["loadavg_end"] = loadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument(
        "--full", action="store_true", help="the complete matrix of docs/RELIABILITY.md (~16 min)"
    )
    parser.add_argument("--seeds", type=int, default=None, help="runs per setting (seeds 0..N-1)")
    parser.add_argument("--bound", type=float, default=30.0, help="seconds a run may take")
    parser.add_argument("--timeout", type=float, default=5.0, help="connection_timeout (s)")
    parser.add_argument("--turn-runs", type=int, default=None, help="TURN/direct runs each")
    parser.add_argument("--delays", type=numbers, default=None, help="ms, comma-separated")
    parser.add_argument("--losses", type=numbers, default=None, help="e.g. 0,0.1,0.3")
    parser.add_argument("--duplicates", type=numbers, default=None, help="e.g. 0,0.2")
    parser.add_argument("--json", default=None, help="also write every run to this file")
    parser.add_argument(
        "--early-stop", action="store_true", help="stop a run once it has been quiet for a while"
    )
    parser.add_argument("--no-turn", action="store_true", help="skip TURN vs direct")
    parser.add_argument("--no-matrix", action="store_true", help="skip the fault matrix")
    args = parser.parse_args()
    args.preset = "full" if args.full else "quick"
    for name, value in (FULL if args.full else QUICK).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    print(
        f"preset: {args.preset}"
        + ("" if args.full else " (`python -m bench.faults --full`: the complete matrix)")
    )
    out = asyncio.run(run(args))
    if "matrix" in out:
        print(
            f"\nfault matrix: rooms of 4, {args.seeds} seeds per setting, connection_timeout "
            f"{args.timeout:g} s ({out['matrix_seconds']} s in all)\n"
        )
        print(matrix_table(out["matrix"], grid_of(args), args.bound))
    if "turn" in out:
        print(f"\njoin to connected, 2 peers, {args.turn_runs} alternating runs each\n")
        turn = out["turn"]
        print(turn if isinstance(turn, str) else turn_table(turn))
    print(f"\nload average at the end: {out['loadavg_end']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
