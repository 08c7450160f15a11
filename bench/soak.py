"""Soak (issue 9): does a long-lived process leak when a room is joined and left, and a stream
published and unpublished, hundreds of times?

Run: `python -m bench.soak [--join-leave 500] [--publish 200] [--every 50] [--warmup 10]
[--json FILE]` (`--join-leave 0` or `--publish 0` skips that soak; `--quick` is the CI size:
40 + 50 cycles). The default run takes ~1 minute on 2 cores (it prints an estimate first).
tests/test_soak.py runs the same code, reduced, with assertions; docs/RELIABILITY.md §6 keeps
the figures. The glare storm is bench/glare_storm.py.

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

A sample (bench/_leaks.py: `gc.collect()` first, once no task has ended for 0.1 s, see
`settled_tasks`) reads open file descriptors (/proc/self/fd), asyncio tasks, threads, VmRSS,
and counts of live library objects, after `--warmup` cycles and then every `--every` cycles.
Growth is reported per 100 cycles: end to end, and as a least-squares slope over the samples.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from peerix_nb import Event, MemoryDriver, Peer, media
from testbed.rooms import channels_open, wait_until

from ._common import loadavg, machine, percentile
from ._leaks import Sample, settled_tasks, take_sample, task_names, thread_names

#: A small stream: the encoders and decoders run, but cheaply (2 shared cores).
SMALL = {"width": 160, "height": 120, "fps": 15}
CHAT = "chat"
#: Seconds any single wait of a cycle may take before the soak reports a hang.
STEP_TIMEOUT = 20.0


# == measuring =====================================================================================
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
    # cycle (each soak runs in two modes), plus warm-ups and samples.
    estimate = 2 * (args.join_leave + args.warmup) * 0.05 + 2 * (args.publish + args.warmup) * 0.02
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
    parser.add_argument("--quick", action="store_true", help="the CI size: 40 + 50 cycles")
    parser.add_argument("--json", help="write every sample to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.join_leave, args.publish, args.every, args.warmup = 40, 50, 10, 5
    out = asyncio.run(run_all(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
