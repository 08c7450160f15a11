"""Soak and glare storm (issue 9): does a long-lived process leak, and does every operation
complete when both sides of many pairs act at random moments?

Run: `python -m bench.soak [--join-leave 500] [--publish 200] [--every 50] [--warmup 10]
[--storm 60] [--pairs 4] [--seed 1] [--json FILE]` (`--join-leave 0 --publish 0` runs only the
storm, `--storm 0` only the soak; `--quick` is the CI size: 40 + 50 cycles, 15 s of storm).
The default run takes ~2 minutes on 2 cores (it prints an estimate first). tests/test_soak.py
runs the same code, reduced, with assertions; docs/RELIABILITY.md §6 keeps the figures.

Soak, in one process, each soak in both of its modes (the leaking `new` mode last):

- join/leave: a 3-peer room on one MemoryDriver. Each cycle, all three join at once, wait
  until every pair is connected with its `chat` channel open, p0's message reaches p1 and p2,
  and all leave. `same` peers: the same three Peer objects every cycle (a notebook's
  Join/Leave buttons); `fresh`: three new Peers per cycle (the previous ones dropped).
- publish/unpublish: two connected peers. Each cycle, `a` publishes a small synthetic stream
  (160x120 at 15 fps + a tone), `b` sees `stream:add` and the first video frame, `a`
  unpublishes, `b` sees `stream:remove`. `new` streams: a new `media.synthetic()` per cycle,
  dropped after its unpublish (as `await peer.publish(media.synthetic())` in a notebook cell
  leaves it); `same`: one stream published again every cycle.

A sample (`gc.collect()` first, once no task has ended for 0.1 s: see `settled_tasks`) reads
open file descriptors (/proc/self/fd), asyncio tasks, threads, VmRSS, and counts of live
library objects, after `--warmup` cycles and then every `--every` cycles. Growth is reported per 100 cycles: end to end, and as a least-squares slope
over the samples.

Glare storm: `--pairs` pairs, each in its own room (so a pair's renegotiations only collide
with each other, and 4 rooms of 2 cost 8 RTCPeerConnections, not the 56 of one room of 8).
Pair k joins in one of four orders: impolite first, polite first, both at once (either call
first). For `--storm` seconds both sides of every pair, at random moments (seeded), open a new
channel label (sometimes the other side's newest label), publish a new stream, republish under
a published label (new tracks, new kinds), or unpublish; at other random moments both sides of
a pair act in the same loop turn (forced glare). Then every operation's task must finish, every
opened label must be open on both sides, every published stream must be on the remote with the
kinds last published and deliver a frame of each kind, every unpublished label must be gone,
and no `error` event may have happened.
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
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiortc import RTCPeerConnection

from peerix_nb import Event, MemoryDriver, Peer, media
from peerix_nb.remote import RemotePeer
from tests.util import channels_open, wait_until

from ._common import loadavg, machine, percentile, rss_kib

#: A small stream: the encoders and decoders run, but cheaply (2 shared cores).
SMALL = {"width": 160, "height": 120, "fps": 15}
#: Storm streams are smaller still: up to 16 of them play at once.
TINY = {"width": 96, "height": 72, "fps": 10}
CHAT = "chat"
#: Seconds any single wait of a cycle may take before the soak reports a hang.
STEP_TIMEOUT = 20.0


# == measuring =====================================================================================
def live_objects() -> dict[str, int]:
    """Live instances of the classes a leak would keep: Peers, RemotePeers, aiortc connections,
    Taps and local synthetic tracks (one pass over the gc-tracked heap)."""
    kinds: dict[str, type] = {
        "Peer": Peer,
        "RemotePeer": RemotePeer,
        "RTCPeerConnection": RTCPeerConnection,
        "Tap": media.Tap,
        "SyntheticVideoTrack": media.SyntheticVideoTrack,
    }
    counts = dict.fromkeys(kinds, 0)
    for obj in gc.get_objects():
        for name, cls in kinds.items():
            if isinstance(obj, cls):
                counts[name] += 1
    return counts


@dataclass(slots=True)
class Sample:
    """What one sample read, after `gc.collect()`."""

    cycle: int
    seconds: float  # since the first sample
    fds: int
    tasks: int
    threads: int
    rss_kib: int
    objects: dict[str, int]
    extra: dict[str, int]


def take_sample(cycle: int, t0: float, extra: dict[str, int] | None = None) -> Sample:
    gc.collect()
    return Sample(
        cycle=cycle,
        seconds=time.perf_counter() - t0,
        fds=len(os.listdir("/proc/self/fd")),
        tasks=len(asyncio.all_tasks()),
        threads=threading.active_count(),
        rss_kib=rss_kib(),
        objects=live_objects(),
        extra=extra or {},
    )


def thread_names() -> list[str]:
    """Threads alive now, by name: `MainThread`, aiortc's `audio-decoder`/`video-decoder` (one
    per started receiver) and the loop's default executor workers `asyncio_N` (encoders)."""
    return sorted(t.name for t in threading.enumerate())


def task_names(tasks: Iterable[asyncio.Task[Any]] | None = None) -> list[str]:
    """Pending asyncio tasks by name (tap tasks collapsed), for a leak report."""
    names: collections.Counter[str] = collections.Counter()
    for task in asyncio.all_tasks() if tasks is None else tasks:
        name = task.get_name()
        if name.startswith("peerix-tap-"):
            name = "peerix-tap-*"
        elif name.startswith("Task-"):
            coro = task.get_coro()
            name = f"Task ({getattr(coro, '__qualname__', coro)})"
        names[name] += 1
    return [f"{name} x{n}" if n > 1 else name for name, n in sorted(names.items())]


def other_tasks() -> list[asyncio.Task[Any]]:
    """Pending tasks except the caller's."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current]


async def settled_tasks(timeout: float = 3.0) -> list[asyncio.Task[Any]]:
    """The tasks still pending once none of them has ended for 0.1 s (or after `timeout` s).

    Teardown takes a moment: a closed connection's transports finish their tasks, a tap whose
    last reader went away reads one more frame of its source (up to a frame period, more under
    load: those are waited for) before it ends. A leaked task never ends, so waiting for the
    quiet moment hides no leak."""
    deadline = time.perf_counter() + timeout
    # A local tap whose last reader left ends after the frame in flight, which on a loaded
    # machine can take longer than the quiet window below: wait for those by name.
    finishing = [
        tap._task
        for tap in list(media._taps.values())
        if tap._own_reader and tap._had_subscribers and not tap.subscribers and not tap.ended
    ]
    if finishing:
        await asyncio.wait(finishing, timeout=timeout)
    tasks = other_tasks()
    while tasks and time.perf_counter() < deadline:
        # A condition wait: re-check after the pending tasks have had a few turns.
        await asyncio.wait(tasks, timeout=0.1)
        now = other_tasks()
        if len(now) >= len(tasks) and not any(t.done() for t in tasks):
            break  # nothing ended for 0.1 s: what is left stays
        tasks = now
    return other_tasks()


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 with fewer than two distinct x)."""
    if len({x for x, _ in points}) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    num = sum((x - mx) * (y - my) for x, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return num / den


@dataclass(slots=True)
class SoakResult:
    """Samples of one soak, per-cycle durations, and the process after the room was torn down."""

    name: str
    cycles: int
    warmup: int
    samples: list[Sample]
    cycle_seconds: list[float]
    after: Sample | None = None  # after the last leave, when the soak ends
    threads_seen: list[str] = field(default_factory=list)
    threads_left: list[str] = field(default_factory=list)
    tasks_left: list[str] = field(default_factory=list)  # names, other than the caller

    @property
    def baseline(self) -> Sample:
        return self.samples[0]

    @property
    def last(self) -> Sample:
        return self.samples[-1]

    def value(self, sample: Sample, metric: str) -> float:
        if metric in ("fds", "tasks", "threads", "rss_kib"):
            return float(getattr(sample, metric))
        if metric in sample.objects:
            return float(sample.objects[metric])
        return float(sample.extra[metric])

    def growth(self, metric: str) -> float:
        """Last sample minus the baseline."""
        return self.value(self.last, metric) - self.value(self.baseline, metric)

    def per_100(self, metric: str) -> float:
        """End-to-end growth per 100 cycles."""
        span = self.last.cycle - self.baseline.cycle
        return self.growth(metric) * 100 / span if span else 0.0

    def slope_per_100(self, metric: str) -> float:
        """Least-squares growth per 100 cycles over every sample."""
        return 100 * slope([(s.cycle, self.value(s, metric)) for s in self.samples])

    def table(self) -> str:
        """The samples as a Markdown table, then growth per 100 cycles."""
        extra = list(self.samples[0].extra)
        objects = [k for k in self.samples[0].objects if any(s.objects[k] for s in self.samples)]
        head = ["cycle", "s", "fds", "tasks", "threads", "RSS MiB", *extra, *objects]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

        def row(label: str, s: Sample) -> str:
            cells = [label, f"{s.seconds:.0f}", str(s.fds), str(s.tasks), str(s.threads)]
            cells.append(f"{s.rss_kib / 1024:.1f}")
            cells += [str(s.extra.get(k, "")) for k in extra]
            cells += [str(s.objects.get(k, 0)) for k in objects]
            return "| " + " | ".join(cells) + " |"

        zero = [k for k in self.samples[0].objects if k not in objects]
        for s in self.samples:
            lines.append(row(str(s.cycle), s))
        if self.after is not None:
            lines.append(row("after", self.after))
        metrics = ["fds", "tasks", "threads", "rss_kib", *extra, *objects]

        def fmt(metric: str, value: float) -> str:
            return f"{value / 1024:+.2f}" if metric == "rss_kib" else f"{value:+.1f}"

        per = [fmt(m, self.per_100(m)) for m in metrics]
        fit = [fmt(m, self.slope_per_100(m)) for m in metrics]
        lines.append("| per 100 cycles, end to end | | " + " | ".join(per) + " |")
        lines.append("| per 100 cycles, slope | | " + " | ".join(fit) + " |")
        if zero:
            lines.append(f"\nLive {', '.join(zero)}: 0 at every sample.")
        return "\n".join(lines)

    def summary(self) -> str:
        d = sorted(self.cycle_seconds)
        rss = self.per_100("rss_kib") / 1024
        return (
            f"{self.name}: {self.cycles} cycles in {sum(d):.1f} s (cycle median "
            f"{statistics.median(d) * 1000:.0f} ms, p90 {percentile(d, 90) * 1000:.0f} ms, max "
            f"{d[-1] * 1000:.0f} ms); growth from cycle {self.baseline.cycle} to "
            f"{self.last.cycle}: fds {self.growth('fds'):+.0f}, tasks {self.growth('tasks'):+.0f}, "
            f"threads {self.growth('threads'):+.0f}, RSS {self.growth('rss_kib') / 1024:+.1f} MiB "
            f"({rss:+.2f} MiB per 100 cycles, slope {self.slope_per_100('rss_kib') / 1024:+.2f})"
        )

    def record(self) -> dict[str, Any]:
        return asdict(self)


class Soak:
    """Runs `cycle(i)` `cycles` times after `warmup` cycles, sampling every `every` cycles."""

    def __init__(
        self,
        name: str,
        cycles: int,
        every: int,
        warmup: int,
        extra: Callable[[], dict[str, int]] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.name, self.cycles, self.every, self.warmup = name, cycles, every, warmup
        self.extra = extra or dict
        self.progress = progress
        self.t0 = 0.0  # perf_counter() at the baseline sample

    async def run(self, cycle: Callable[[int], Awaitable[None]]) -> SoakResult:
        for i in range(self.warmup):
            await cycle(-1 - i)
        await settled_tasks()  # see settled_tasks: teardown still in flight is not a leak
        self.t0 = t0 = time.perf_counter()
        samples = [take_sample(0, t0, self.extra())]
        durations: list[float] = []
        threads: set[str] = set(thread_names())
        for i in range(self.cycles):
            started = time.perf_counter()
            await cycle(i)
            durations.append(time.perf_counter() - started)
            threads.update(thread_names())
            done = i + 1
            if done % self.every == 0 or done == self.cycles:
                await settled_tasks()
                samples.append(take_sample(done, t0, self.extra()))
                if self.progress is not None:
                    s = samples[-1]
                    self.progress(
                        f"  {self.name} {done}/{self.cycles}: {s.seconds:.0f} s, fds {s.fds}, "
                        f"tasks {s.tasks}, threads {s.threads}, RSS {s.rss_kib / 1024:.1f} MiB"
                    )
        return SoakResult(
            self.name, self.cycles, self.warmup, samples, durations, threads_seen=sorted(threads)
        )

    async def run_and_close(
        self,
        cycle: Callable[[int], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
    ) -> SoakResult:
        """`run`, then `close()` the scenario and sample what it left behind."""
        try:
            result = await self.run(cycle)
        finally:
            await close()
        left = await settled_tasks()
        result.after = take_sample(self.cycles, self.t0, self.extra())
        result.tasks_left = task_names(left)
        result.threads_left = thread_names()
        return result


def expect(
    peer: Peer, name: str, where: Callable[[Event], bool] | None = None, timeout: float = 20.0
) -> Awaitable[Event]:
    """The next event `name` of `peer` matching `where`, subscribed NOW (Peer.wait_for only
    subscribes once its coroutine starts), failing with a clear error after `timeout`."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Event] = loop.create_future()

    def check(event: Event) -> None:
        if not future.done() and (where is None or where(event)):
            future.set_result(event)

    peer.on(name, check)

    async def wait() -> Event:
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AssertionError(f"{peer.id}: no {name} within {timeout} s") from None
        finally:
            peer.off(name, check)

    return asyncio.ensure_future(wait())


# == join/leave soak ===============================================================================
class JoinLeave:
    """A 3-peer room joined and left once per cycle (see the module docstring)."""

    def __init__(self, peers: str = "same", size: int = 3) -> None:
        if peers not in ("same", "fresh"):
            raise ValueError(f"peers must be 'same' or 'fresh', got {peers!r}")
        self.mode, self.size = peers, size
        self.driver = MemoryDriver()
        self.peers: list[Peer] = []

    def make_peers(self) -> None:
        self.peers = [Peer(id=f"p{i}", driver=self.driver) for i in range(self.size)]

    def extra(self) -> dict[str, int]:
        return {
            "log rows": sum(len(p.events) for p in self.peers),
            "driver subs": self.driver.subscriber_count(),
        }

    async def cycle(self, i: int) -> None:
        if not self.peers or self.mode == "fresh":
            self.make_peers()
            for peer in self.peers:
                await peer.open(CHAT)
        peers = self.peers
        sender, receivers = peers[0], peers[1:]
        text = f"cycle {i}"
        got = [
            expect(r, "channel:message", lambda e: e.label == CHAT and e.data == text)
            for r in receivers
        ]
        # All join at once: some cycles start with both sides of a pair offering (glare).
        await asyncio.gather(
            *(p.join(room="soak", metadata={"name": p.id, "cycle": i}) for p in peers)
        )
        await wait_until(peers, lambda: channels_open(peers, CHAT), timeout=STEP_TIMEOUT)
        sent = sender.send(text, label=CHAT)
        if sent != len(receivers):
            raise AssertionError(f"cycle {i}: message sent on {sent} channels")
        await asyncio.gather(*got)
        await asyncio.gather(*(p.leave() for p in peers))
        if any(p.connections or p.joined for p in peers):
            raise AssertionError(f"cycle {i}: a peer still has connections after leave()")

    async def close(self) -> None:
        await asyncio.gather(*(p.leave() for p in self.peers))
        self.peers = []


async def join_leave_soak(
    cycles: int,
    every: int,
    warmup: int = 10,
    peers: str = "same",
    progress: Callable[[str], None] | None = None,
) -> SoakResult:
    """`cycles` join/leave cycles of a 3-peer room (see JoinLeave), sampled every `every`."""
    room = JoinLeave(peers)
    soak = Soak(f"join/leave, {peers} peers", cycles, every, warmup, room.extra, progress)
    return await soak.run_and_close(room.cycle, room.close)


# == publish/unpublish soak ========================================================================
class PublishCycles:
    """Two connected peers; `a` publishes and unpublishes once per cycle (module docstring)."""

    def __init__(self, streams: str = "new", frames: bool = True) -> None:
        if streams not in ("new", "same"):
            raise ValueError(f"streams must be 'new' or 'same', got {streams!r}")
        self.mode, self.frames = streams, frames
        self.driver = MemoryDriver()
        self.a = Peer(id="a", driver=self.driver)
        self.b = Peer(id="b", driver=self.driver)
        self.same = media.synthetic(**SMALL) if streams == "same" else None
        self.negotiations = 0
        self.b.on("negotiation:done", self._count)

    def _count(self, _event: Event) -> None:
        self.negotiations += 1

    async def start(self) -> None:
        """Join both and wait until the control channel is open on both sides (renegotiation
        rides it; `chat` opens only after it)."""
        for peer in (self.a, self.b):
            await peer.open(CHAT)
        await self.a.join(room="publish")
        await self.b.join(room="publish")
        await wait_until(
            [self.a, self.b], lambda: channels_open([self.a, self.b], CHAT), timeout=STEP_TIMEOUT
        )

    def extra(self) -> dict[str, int]:
        a_remote = self.a.connections.get("b")
        return {
            "transceivers": len(a_remote.connection.getTransceivers()) if a_remote else -1,
            "negotiations": self.negotiations,
        }

    async def cycle(self, i: int) -> None:
        a, b = self.a, self.b
        stream = self.same or media.synthetic(**SMALL)
        added = expect(b, "stream:add", lambda e: e.label == "cam")
        first = (
            expect(b, "media:first-frame", lambda e: e.label == "cam" and e.kind == "video")
            if self.frames
            else None
        )
        await asyncio.wait_for(a.publish(stream, label="cam"), STEP_TIMEOUT)
        await added
        if first is not None:
            await first
        removed = expect(b, "stream:remove", lambda e: e.label == "cam")
        await asyncio.wait_for(a.unpublish("cam"), STEP_TIMEOUT)
        await removed

    async def close(self) -> None:
        await asyncio.gather(self.a.leave(), self.b.leave())
        if self.same is not None:
            self.same.stop()


async def publish_soak(
    cycles: int,
    every: int,
    warmup: int = 10,
    streams: str = "new",
    frames: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SoakResult:
    """`cycles` publish/unpublish cycles between two connected peers, sampled every `every`."""
    pair = PublishCycles(streams, frames)
    await pair.start()
    soak = Soak(
        f"publish/unpublish, {streams} streams", cycles, every, warmup, pair.extra, progress
    )
    return await soak.run_and_close(pair.cycle, pair.close)


# == glare storm ===================================================================================
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


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "loadavg_before": loadavg(),
        "soaks": [],
    }
    _print(f"machine: {out['machine']}; load average {out['loadavg_before']}; {out['date']}")
    # Measured here (2 cores, quiet): ~45 ms per join/leave cycle and ~10 ms per publish/unpublish
    # cycle (each soak runs in two modes), plus warm-ups, samples and the storm's settling.
    cycles = 2 * (args.join_leave + args.warmup) * 0.05 + 2 * (args.publish + args.warmup) * 0.02
    estimate = cycles + (args.storm + 15 if args.storm else 0)
    _print(f"estimated duration: {estimate / 60:.1f} min (more on a loaded machine)")
    started = time.perf_counter()
    plans: list[tuple[str, Callable[[], Awaitable[SoakResult]]]] = []
    if args.join_leave:
        for mode in ("same", "fresh"):
            plans.append(
                (
                    f"join/leave {mode}",
                    lambda mode=mode: join_leave_soak(
                        args.join_leave, args.every, args.warmup, mode, _print
                    ),
                )
            )
    if args.publish:
        for mode in ("same", "new"):  # `new` leaks taps (see the report): it runs last
            plans.append(
                (
                    f"publish {mode}",
                    lambda mode=mode: publish_soak(
                        args.publish, args.every, args.warmup, mode, True, _print
                    ),
                )
            )
    for _name, plan in plans:
        result = await plan()
        out["soaks"].append(result.record())
        _print(f"\n### {result.name}\n\n{result.table()}\n\n{result.summary()}")
        _print(f"threads seen: {', '.join(result.threads_seen)}")
        _print(f"threads left after the last leave: {', '.join(result.threads_left)}")
        _print(f"tasks left after the last leave: {', '.join(result.tasks_left) or 'none'}\n")
    if args.storm:
        storm = await glare_storm(args.storm, args.pairs, args.seed, progress=_print)
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
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--join-leave", type=int, default=500, help="join/leave cycles (0: skip)")
    parser.add_argument(
        "--publish", type=int, default=200, help="publish/unpublish cycles (0: skip)"
    )
    parser.add_argument("--every", type=int, default=50, help="sample every N cycles")
    parser.add_argument("--warmup", type=int, default=10, help="cycles before the baseline sample")
    parser.add_argument("--storm", type=float, default=60.0, help="storm seconds (0: skip)")
    parser.add_argument("--pairs", type=int, default=4, help="storm pairs")
    parser.add_argument("--seed", type=int, default=1, help="storm seed")
    parser.add_argument(
        "--quick", action="store_true", help="the CI size: 40 + 50 cycles, 15 s storm"
    )
    parser.add_argument("--json", help="write every sample and the storm outcome to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.join_leave, args.publish, args.every, args.warmup, args.storm = 40, 50, 10, 5, 15.0
    out = asyncio.run(run_all(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
