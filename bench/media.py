"""Video between peers in one process: a 640x480 30 fps `media.synthetic(audio=False)` stream
from one publisher to 1, 2 and 3 receivers, against raw aiortc sending the same track.

peerix_nb: 1 + R `Peer`s on a MemoryDriver in one room; the publisher calls `publish()` and each
receiver reads the remote track it gets on `track:add` with `media.frames(track, "gray")`.
Baseline: R raw RTCPeerConnection pairs (`iceServers=[]`, max-bundle), the sending side of each
holding its own `media.relayed(track)` subscription (aiortc senders sharing one track would
split its frames), the receiving side reading the `track` it gets with `recv()` and
`to_ndarray(format="gray")`. Both read each frame's stamp (`media.read_stamp`: counter and
send time, written when the frame is made, before encoding), so latency is make -> VP8 encode
-> RTP/SRTP over loopback -> jitter buffer -> decode -> numpy. After every receiver has its
first frame and 1 s to settle, a `--window` second window counts distinct frames per receiver,
latency percentiles, and process CPU time per wall second, split by thread: the event loop,
aiortc's encoder threads (the default executor) and its decoder threads. Goal (issue 3): >= 28
frames/s delivered with one receiver.

Run: `python -m bench.media [--runs 5] [--window 5] [--receivers 1 2 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from peerix_nb import MemoryDriver, Peer, media
from peerix_nb.events import Event

from ._common import alternate, loadavg, machine, median, percentile, raw_configuration

TIMEOUT = 30.0
SETTLE = 1.0


# -- CPU time per thread group ---------------------------------------------------------------------
def thread_group(thread: threading.Thread) -> str:
    if thread is threading.main_thread():
        return "event loop"
    if thread.name.startswith("asyncio_"):
        return "encoders"  # aiortc encodes in the loop's default executor
    if thread.name.endswith("-decoder"):
        return "decoders"
    return "other threads"


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every live Python thread, by native id, with its group."""
    times: dict[int, tuple[str, float]] = {}
    for thread in threading.enumerate():
        if thread.ident is None or thread.native_id is None:
            continue
        with contextlib.suppress(OSError, ProcessLookupError):
            clock = time.pthread_getcpuclockid(thread.ident)
            times[thread.native_id] = (thread_group(thread), time.clock_gettime(clock))
    return times


def cpu_by_group(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    groups: dict[str, float] = {}
    for tid, (group, seconds) in after.items():
        start = before.get(tid, (group, 0.0))[1]
        groups[group] = groups.get(group, 0.0) + seconds - start
    return groups


# -- receivers -------------------------------------------------------------------------------------
@dataclass
class Receiver:
    """Reads one remote video track; counts frames and latencies while `measuring`."""

    first: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    measuring: bool = False
    counters: set[int] = field(default_factory=set)
    latencies_ms: list[float] = field(default_factory=list)
    unreadable: int = 0

    async def consume(self, arrays: AsyncIterator[np.ndarray]) -> None:
        async for image in arrays:
            now = time.time()
            stamp = media.read_stamp(image)
            if not self.first.done():
                self.first.set_result(None)
            if not self.measuring:
                continue
            if stamp is None:
                self.unreadable += 1
                continue
            if stamp.counter not in self.counters:
                self.counters.add(stamp.counter)
                self.latencies_ms.append((now - stamp.sent_at) * 1000)


async def raw_arrays(track: MediaStreamTrack) -> AsyncIterator[np.ndarray]:
    """A raw remote track's frames as gray numpy images, read as they arrive."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        yield frame.to_ndarray(format="gray")


@dataclass
class Result:
    receivers: int
    fps: list[float]  # per receiver
    latencies_ms: list[float]  # every receiver's frames, pooled
    cpu: float  # process CPU seconds per wall second over the window
    groups: dict[str, float]  # CPU s/s per thread group
    unreadable: int


async def measure(receivers: list[Receiver], window: float) -> Result:
    """Wait for every receiver's first frame, settle, then measure one window."""
    await asyncio.wait_for(asyncio.gather(*(r.first for r in receivers)), TIMEOUT)
    await asyncio.sleep(SETTLE)
    threads, cpu, wall = thread_cpu(), time.process_time(), time.perf_counter()
    for r in receivers:
        r.measuring = True
    await asyncio.sleep(window)
    for r in receivers:
        r.measuring = False
    elapsed = time.perf_counter() - wall
    cpu = (time.process_time() - cpu) / elapsed
    groups = {k: v / elapsed for k, v in cpu_by_group(threads, thread_cpu()).items()}
    return Result(
        len(receivers),
        [len(r.counters) / elapsed for r in receivers],
        [x for r in receivers for x in r.latencies_ms],
        cpu,
        groups,
        sum(r.unreadable for r in receivers),
    )


# -- one run of each setup -------------------------------------------------------------------------
async def raw_run(count: int, window: float) -> Result:
    config = raw_configuration()
    source = media.SyntheticVideoTrack(640, 480, 30)
    pcs: list[RTCPeerConnection] = []
    senders: list[MediaStreamTrack] = []
    receivers = [Receiver() for _ in range(count)]
    tasks: list[asyncio.Task[None]] = []
    try:
        for receiver in receivers:
            a, b = RTCPeerConnection(config), RTCPeerConnection(config)
            pcs += (a, b)
            relay = media.relayed(source)
            senders.append(relay)
            a.addTrack(relay)

            @b.on("track")
            def on_track(track: MediaStreamTrack, receiver: Receiver = receiver) -> None:
                tasks.append(asyncio.ensure_future(receiver.consume(raw_arrays(track))))

            await a.setLocalDescription(await a.createOffer())
            await b.setRemoteDescription(a.localDescription)
            await b.setLocalDescription(await b.createAnswer())
            await a.setRemoteDescription(b.localDescription)
        return await measure(receivers, window)
    finally:
        for track in (*senders, source):
            track.stop()
        await asyncio.gather(*(pc.close() for pc in pcs))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def peerix_run(count: int, window: float) -> Result:
    driver = MemoryDriver()
    publisher = Peer(id="publisher", driver=driver)
    peers = [Peer(id=f"receiver{i}", driver=driver) for i in range(count)]
    receivers = [Receiver() for _ in range(count)]
    tasks: list[asyncio.Task[None]] = []
    stream = media.synthetic(audio=False)

    def reader(receiver: Receiver) -> Callable[[Event], None]:
        def on_track(e: Event) -> None:
            if e.kind == "video" and e.remote is not None and e.remote.id == "publisher":
                frames = media.frames(e.track, format="gray")
                tasks.append(asyncio.ensure_future(receiver.consume(frames)))

        return on_track

    for peer, receiver in zip(peers, receivers, strict=True):
        peer.on("track:add", reader(receiver))
    room = f"media-{uuid.uuid4().hex[:8]}"
    try:
        await publisher.publish(stream, label="camera")
        await publisher.join(room=room)
        for peer in peers:
            await peer.join(room=room)
        return await measure(receivers, window)
    finally:
        stream.stop()
        await asyncio.gather(*(p.leave() for p in (publisher, *peers)))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- the benchmark ---------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> dict[int, dict[str, list[Result]]]:
    results: dict[int, dict[str, list[Result]]] = {}
    for count in args.receivers:
        results[count] = await alternate(
            args.runs,
            {
                "raw aiortc": functools.partial(raw_run, count, args.window),
                "peerix_nb": functools.partial(peerix_run, count, args.window),
            },
        )
    return results


def report(results: dict[int, dict[str, list[Result]]], args: argparse.Namespace) -> None:
    print(
        f"640x480 VP8 at 30 fps, one publisher, {args.runs} alternating runs per setup, "
        f"{args.window:.0f} s windows (fps and CPU: median of runs; latency: all frames pooled)\n"
    )
    print(
        "| receivers | setup | frames/s per receiver (min of receivers) | latency p50 (ms) | "
        "p95 (ms) | CPU s/s | event loop | encoders | decoders | ratio CPU to raw |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for count, by_setup in results.items():
        raw_cpu = median([r.cpu for r in by_setup["raw aiortc"]])
        for name, runs in by_setup.items():
            fps = median([min(r.fps) for r in runs])
            lat = [x for r in runs for x in r.latencies_ms]
            cpu = median([r.cpu for r in runs])
            group = {
                g: median([r.groups.get(g, 0.0) for r in runs])
                for g in ("event loop", "encoders", "decoders")
            }
            print(
                f"| {count} | {name} | {fps:.1f} | {percentile(lat, 50):.1f} | "
                f"{percentile(lat, 95):.1f} | {cpu:.2f} | {group['event loop']:.2f} | "
                f"{group['encoders']:.2f} | {group['decoders']:.2f} | {cpu / raw_cpu:.2f} |"
            )
    unreadable = sum(r.unreadable for by in results.values() for rs in by.values() for r in rs)
    print(f"\nframes whose stamp could not be read: {unreadable}")
    one = results.get(1)
    if one:
        fps = median([min(r.fps) for r in one["peerix_nb"]])
        print(
            f"goal: >= 28 frames/s with one receiver: {fps:.1f} ({'met' if fps >= 28 else 'NOT met'})"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.media", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per setup and receiver count")
    parser.add_argument("--window", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--receivers", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"load average before: {loadavg()}")
    results = asyncio.run(run(args))
    report(results, args)
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
