"""Glare storm (issue 9): does every operation complete when both sides of many pairs act at
random moments?

Run: `python -m bench.glare_storm [--seconds 60] [--pairs 4] [--seed 1] [--json FILE]`
(`--quick` is the CI size: 15 s). A run takes `--seconds` plus ~15 s of settling on 2 cores.
tests/test_soak.py runs the same code, reduced, with assertions; docs/RELIABILITY.md §6 keeps
the figures.

`--pairs` pairs, each in its own room (so a pair's renegotiations only collide with each other,
and 4 rooms of 2 cost 8 RTCPeerConnections, not the 56 of one room of 8). Pair k joins in one
of four orders: impolite first, polite first, both at once (either call first). For
`--seconds` seconds both sides of every pair, at random moments (seeded), open a new channel
label (sometimes the other side's newest label), publish a new stream, republish under a
published label (new tracks, new kinds), or unpublish; at other random moments both sides of a
pair act in the same loop turn (forced glare). Then every operation's task must finish, every
opened label must be open on both sides, every published stream must be on the remote with the
kinds last published and deliver a frame of each kind, every unpublished label must be gone,
and no `error` event may have happened. Tasks, file descriptors and threads are counted before
the storm and after every peer has left (bench/_leaks.py).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import gc
import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from peerix_nb import Event, MemoryDriver, Peer, media
from peerix_nb.remote import RemotePeer
from testbed.rooms import wait_until

from ._common import loadavg, machine, percentile
from ._leaks import other_tasks, settled_tasks, task_names, thread_names

#: Storm streams are small: up to 16 of them play at once (2 shared cores).
TINY = {"width": 96, "height": 72, "fps": 10}

KINDS = ({"video"}, {"audio"}, {"video", "audio"})
#: Streams one side has published at once, at most (each is encoded and decoded for real).
MAX_STREAMS = 2
#: Channels per pair, at most (a remote refuses more than remote.MAX_CHANNELS = 256).
MAX_PAIR_CHANNELS = 200


@dataclass(slots=True)
class Op:
    """One operation of the storm: what, on which label, its task and how long it took."""

    side: str
    kind: str  # open | open-same | publish | republish | unpublish
    label: str
    task: asyncio.Task[None]
    started: float
    seconds: float | None = None


class Side:
    """One side of a storm pair: its peer and what it has asked for."""

    def __init__(self, peer: Peer, rng: random.Random) -> None:
        self.peer = peer
        self.rng = rng
        self.other: Side
        self.channels: list[str] = []  # labels this side opened (or re-opened)
        self.published: dict[str, set[str]] = {}  # label -> kinds last published
        self.unpublished: set[str] = set()
        self.ops: list[Op] = []
        self.errors: list[Event] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.streams_made = 0
        self.channels_made = 0
        peer.on("error", self.errors.append)
        peer.on("*", self._count)

    def _count(self, event: Event) -> None:
        if event.name in ("signal:rollback", "signal:restart", "negotiation:done"):
            self.counts[event.name] += 1
        elif event.name == "signal:ignore" and "glare" in str(event.detail):
            self.counts["glare ignored"] += 1

    def _start(self, kind: str, label: str, task: asyncio.Task[None]) -> None:
        op = Op(self.peer.id, kind, label, task, time.perf_counter())

        def finished(_task: asyncio.Task[None]) -> None:
            op.seconds = time.perf_counter() - op.started

        task.add_done_callback(finished)
        self.ops.append(op)

    def act(self, pair_channels: int) -> None:
        """One random operation, started now (its task is kept, not awaited here)."""
        rng = self.rng
        choice = rng.choices(
            ("open", "open-same", "publish", "republish", "unpublish"), (35, 5, 20, 20, 20)
        )[0]
        if choice.startswith("open") and pair_channels >= MAX_PAIR_CHANNELS:
            choice = "republish"
        if choice in ("republish", "unpublish") and not self.published:
            choice = "publish"
        if choice == "publish" and len(self.published) >= MAX_STREAMS:
            choice = rng.choice(("republish", "unpublish"))
        if choice == "open-same" and not self.other.channels:
            choice = "open"

        if choice == "open":
            self.channels_made += 1
            label = f"{self.peer.id}-c{self.channels_made}"
            self.channels.append(label)
            self._start(choice, label, self.peer.open(label))
        elif choice == "open-same":
            # The other side's newest label, maybe still being created: the same label
            # requested from both ends.
            label = self.other.channels[-1]
            self.channels.append(label)
            self._start(choice, label, self.peer.open(label))
        elif choice == "publish":
            self.streams_made += 1
            label = f"{self.peer.id}-s{self.streams_made}"
            self._publish(choice, label)
        elif choice == "republish":
            label = rng.choice(sorted(self.published))
            self._publish(choice, label)
        else:
            label = rng.choice(sorted(self.published))
            del self.published[label]
            self.unpublished.add(label)
            self._start(choice, label, self.peer.unpublish(label))

    def _publish(self, kind: str, label: str) -> None:
        kinds = self.rng.choice(KINDS)
        stream = media.synthetic(video="video" in kinds, audio="audio" in kinds, **TINY)
        self.published[label] = set(kinds)
        self.unpublished.discard(label)
        self._start(kind, label, self.peer.publish(stream, label=label))

    # -- the end state ------------------------------------------------------------------------
    def remote(self) -> RemotePeer | None:
        return self.peer.connections.get(self.other.peer.id)

    def mislabelled(self) -> list[str]:
        """Published labels the remote shows under the stream's id instead (the glare label bug
        tests/test_soak.py::test_a_stream_first_seen_in_an_answer_gets_its_label covers)."""
        there = self.other.remote()
        out = []
        for label, kinds in self.published.items():
            stream = self.peer.streams.get(label)
            if there is None or stream is None or label in there.streams:
                continue
            shown = there.streams.get(stream.id)
            if shown is not None and {t.kind for t in shown.tracks} == kinds:
                out.append(f"stream {label} shown as {stream.id} at {self.other.peer.id}")
        return out

    def problems(self) -> list[str]:
        """What is not (yet) as this side asked, seen from both ends of the pair (a stream
        shown under its id instead of its label is left to `mislabelled`)."""
        out: list[str] = []
        wrong = {line.split()[1] for line in self.mislabelled()}
        here, there = self.remote(), self.other.remote()
        if here is None or there is None or "connected" not in (here.state, there.state):
            return [f"{self.peer.id}: pair not connected"]
        me, them = self.peer.id, self.other.peer.id
        for label in self.channels:
            for at, end in ((me, here), (them, there)):
                ch = end.channels.get(label)
                if ch is None or ch.readyState != "open":
                    state = ch.readyState if ch is not None else "missing"
                    out.append(f"channel {label} {state} at {at}")
        for label, kinds in self.published.items():
            if label in wrong:
                continue
            stream = there.streams.get(label)
            seen = {t.kind for t in stream.tracks} if stream is not None else set()
            if seen != kinds:
                out.append(f"stream {label}: {sorted(seen)} at {them}, want {sorted(kinds)}")
        for label in self.unpublished:
            if label in there.streams:
                out.append(f"stream {label} still at {them} after unpublish")
        return out


@dataclass(slots=True)
class StormResult:
    """What a storm did and how it ended."""

    seconds: float
    pairs: int
    seed: int
    ops: dict[str, int]  # by kind, all pairs
    ops_unfinished: list[str]
    op_seconds_max: float
    op_seconds_p99: float
    settle_seconds: float  # from the last op to the end state holding
    problems: list[str]  # end-state mismatches left after the settle timeout
    mislabelled: list[str]  # published streams shown under their id, not their label
    frames_missing: list[str]  # published tracks that delivered no frame
    errors: list[str]
    counts: dict[str, int]  # rollbacks, restarts, glare ignores, negotiations
    channels: int
    streams_published: int
    tasks_before: int
    tasks_after: int  # tasks left after every peer left (settled)
    tasks_after_names: list[str]
    fds_before: int
    fds_after: int
    threads_before: int
    threads_after: int
    threads_after_names: list[str]
    join_orders: list[str]

    def summary(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items()))
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return (
            f"storm: {self.pairs} pairs, {self.seconds:.0f} s, seed {self.seed}: "
            f"{sum(self.ops.values())} operations ({ops}); unfinished {len(self.ops_unfinished)}; "
            f"slowest operation {self.op_seconds_max:.2f} s (p99 {self.op_seconds_p99:.2f} s); "
            f"end state {'held' if not self.problems else 'NOT reached'} "
            f"{self.settle_seconds:.2f} s after the last operation "
            f"({len(self.mislabelled)} streams shown under their id); {self.channels} channels, "
            f"{self.streams_published} streams published at the end, "
            f"{len(self.frames_missing)} without frames; {len(self.errors)} error events; {counts}"
        )


async def _first_frame(track: Any, timeout: float) -> bool:
    """Whether a frame of the remote `track` arrives within `timeout` seconds."""
    reader = media.relayed(track)  # a reader of its own: the track's other readers lose nothing
    try:
        await asyncio.wait_for(reader.recv(), timeout)
        return True
    except (TimeoutError, media.MediaStreamError):
        return False
    finally:
        reader.stop()


JOIN_ORDERS = (
    "impolite first",
    "polite first",
    "at once, impolite called first",
    "at once, polite called first",
)


async def glare_storm(
    seconds: float,
    pairs: int = 4,
    seed: int = 1,
    max_gap: float = 0.6,
    settle: float = 30.0,
    progress: Callable[[str], None] | None = None,
) -> StormResult:
    """Both sides of `pairs` pairs act at random moments for `seconds` (module docstring)."""
    rng = random.Random(seed)
    gc.collect()
    tasks_before = len(other_tasks())
    fds_before = len(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()
    driver = MemoryDriver()
    sides: list[tuple[Side, Side]] = []
    orders: list[str] = []
    for k in range(pairs):
        # ids: "k-a" < "k-b", so a is the impolite side (docs/PROTOCOL.md: the smaller id).
        a = Side(Peer(id=f"{k}-a", driver=driver), random.Random(rng.random()))
        b = Side(Peer(id=f"{k}-b", driver=driver), random.Random(rng.random()))
        a.other, b.other = b, a
        sides.append((a, b))
        order = JOIN_ORDERS[k % len(JOIN_ORDERS)]
        orders.append(f"pair {k}: {order}")
        first, second = (a, b) if "impolite" in order.split(",")[-1] else (b, a)
        if order.startswith("at once"):
            await asyncio.gather(
                first.peer.join(room=f"storm{k}"), second.peer.join(room=f"storm{k}")
            )
        else:
            await first.peer.join(room=f"storm{k}")
            await second.peer.join(room=f"storm{k}")
    # The storm starts at once: the first operations race the first connection.
    everyone = [s for pair in sides for s in pair]
    peers = [s.peer for s in everyone]
    deadline = time.perf_counter() + seconds

    def pair_channels(side: Side) -> int:
        return len(set(side.channels) | set(side.other.channels))

    async def one_side(side: Side) -> None:
        while True:
            await asyncio.sleep(side.rng.uniform(0, max_gap))
            if time.perf_counter() >= deadline:
                return
            side.act(pair_channels(side))

    async def bursts(a: Side, b: Side, rng: random.Random) -> None:
        # Both sides of the pair in the same loop turn: their offers cross on the wire.
        while True:
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            if time.perf_counter() >= deadline:
                return
            a.act(pair_channels(a))
            b.act(pair_channels(b))

    async def report() -> None:
        while time.perf_counter() < deadline:
            await asyncio.sleep(min(10.0, max(0.0, deadline - time.perf_counter())))
            if progress is not None:
                done = sum(len(s.ops) for s in everyone)
                progress(f"  storm: {done} operations, {len(asyncio.all_tasks())} tasks")

    drivers = [one_side(s) for s in everyone]
    drivers += [bursts(a, b, random.Random(rng.random())) for a, b in sides]
    await asyncio.gather(*drivers, report())
    last_op = time.perf_counter()

    # Every operation's task finishes (they start at once; a hang shows up here).
    all_ops = [op for s in everyone for op in s.ops]
    await asyncio.wait([op.task for op in all_ops], timeout=settle)
    unfinished = [f"{op.side} {op.kind} {op.label}" for op in all_ops if not op.task.done()]
    for op in all_ops:
        if op.task.done() and not op.task.cancelled() and op.task.exception() is not None:
            unfinished.append(f"{op.side} {op.kind} {op.label}: {op.task.exception()!r}")

    # The end state: what each side asked for holds at both ends of its pair.
    def problems() -> list[str]:
        return [p for s in everyone for p in s.problems()]

    with contextlib.suppress(AssertionError):  # what is left is reported, not raised
        await wait_until(peers, lambda: not problems(), timeout=settle)
    left = problems()
    settled = time.perf_counter() - last_op
    mislabelled = [m for s in everyone for m in s.mislabelled()]

    # Each published stream plays: a frame of every kind reaches the remote.
    missing: list[str] = []
    checks = []
    for side in everyone:
        there = side.other.remote()
        for label in side.published:
            stream = there.streams.get(label) if there is not None else None
            for track in stream.tracks if stream is not None else []:
                checks.append((f"{side.peer.id} {label} {track.kind}", _first_frame(track, 10.0)))
    for name, ok in zip(
        (n for n, _ in checks), await asyncio.gather(*(c for _, c in checks)), strict=True
    ):
        if not ok:
            missing.append(name)

    counts: collections.Counter[str] = collections.Counter()
    for side in everyone:
        counts.update(side.counts)
    durations = sorted(op.seconds for op in all_ops if op.seconds is not None)
    errors = [f"{s.peer.id}: {e.error}" for s in everyone for e in s.errors]
    channels = sum(len(set(a.channels) | set(b.channels)) for a, b in sides)
    streams = sum(len(s.published) for s in everyone)
    by_kind = collections.Counter(op.kind for op in all_ops)

    await asyncio.gather(*(p.leave() for p in peers))
    for items in (sides, everyone, peers, all_ops, checks):
        items.clear()  # drop the peers before counting what is left
    gc.collect()
    tasks_left = await settled_tasks()
    return StormResult(
        seconds=seconds,
        pairs=pairs,
        seed=seed,
        ops=dict(by_kind),
        ops_unfinished=unfinished,
        op_seconds_max=durations[-1] if durations else 0.0,
        op_seconds_p99=percentile(durations, 99) if durations else 0.0,
        settle_seconds=settled,
        problems=left,
        mislabelled=mislabelled,
        frames_missing=missing,
        errors=errors,
        counts=dict(counts),
        channels=channels,
        streams_published=streams,
        tasks_before=tasks_before,
        tasks_after=len(tasks_left),
        tasks_after_names=task_names(tasks_left),
        fds_before=fds_before,
        fds_after=len(os.listdir("/proc/self/fd")),
        threads_before=threads_before,
        threads_after=threading.active_count(),
        threads_after_names=thread_names(),
        join_orders=orders,
    )


# == the benchmark =================================================================================
def _print(text: str) -> None:
    print(text, flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "loadavg_before": loadavg(),
    }
    _print(f"machine: {out['machine']}; load average {out['loadavg_before']}; {out['date']}")
    started = time.perf_counter()
    storm = await glare_storm(args.seconds, args.pairs, args.seed, progress=_print)
    out["storm"] = asdict(storm)
    _print(f"\n### glare storm\n\n{storm.summary()}")
    _print("join orders: " + "; ".join(storm.join_orders))
    for what, items in (
        ("unfinished operations", storm.ops_unfinished),
        ("end-state problems", storm.problems),
        ("streams shown under their id", storm.mislabelled),
        ("tracks without frames", storm.frames_missing),
        ("error events", storm.errors),
    ):
        if items:
            _print(f"{what}: " + "; ".join(items[:20]))
    _print(
        f"before/after (all peers left): tasks {storm.tasks_before} -> {storm.tasks_after} "
        f"({', '.join(storm.tasks_after_names) or 'none'}), fds {storm.fds_before} -> "
        f"{storm.fds_after}, threads {storm.threads_before} -> {storm.threads_after} "
        f"({', '.join(storm.threads_after_names)})"
    )
    out["seconds"] = time.perf_counter() - started
    out["loadavg_after"] = loadavg()
    _print(f"\ntook {out['seconds'] / 60:.1f} min; load average after: {out['loadavg_after']}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.glare_storm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="storm seconds")
    parser.add_argument("--pairs", type=int, default=4, help="pairs, one room each")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument("--quick", action="store_true", help="the CI size: a 15 s storm")
    parser.add_argument("--json", help="write the storm outcome to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 15.0
    out = asyncio.run(run(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
