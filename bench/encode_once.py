"""One encoder per published track (issue 17): a publisher and R receivers in one process, camera-
like 640x480 30 fps video, peerix_nb (one shared VP8 encoder for the R remotes) against raw aiortc
doing the same work (R RTCPeerConnection pairs, each sender encoding its own
`media.relayed(track)` subscription of the same source, as aiortc does).

The content costs what a camera costs: `CameraLikeTrack` pans smoothly over a photo-like texture
(random detail from 2 to 160 px) with light sensor noise, 2.7-4.3 ms per frame to encode with
aiortc's VP8 settings here (500 kbit/s to 1.5 Mbit/s), where `media.synthetic()`'s flat bars cost
~2.6 ms and compress to nothing. Each frame carries `media.write_stamp` (a counter and the send
time) in its luma plane; receivers read it from the gray image, so the frames per second count
distinct frames that decoded right.

peerix_nb: 1 + R `Peer`s on a MemoryDriver; the publisher calls `publish()`; each receiver reads
the track of its `track:add` with `media.frames(track, "gray")`. Raw aiortc: receivers read
`recv()` and `to_ndarray(format="gray")`. After every receiver's first frame and 1 s to settle, a
`--window` second window counts frames per receiver and the CPU time per wall second of every
thread, grouped: the event loop (packetisation, SRTP both ways, jitter buffers, the numpy
conversion, the source), the encoders (the loop's default executor, where aiortc's senders and
peerix_nb's shared encoder encode) and the decoders (one aiortc thread per receiver). The same
CPU is also given per frame delivered (one remote's decoded frame): on a loaded machine one
setup may deliver fewer frames than the other, and then spends less per second for that reason
only; the goals use the per-second ratio when both setups delivered >= 28 frames/s at every
receiver, else the per-frame one. peerix_nb is measured once its room is fully connected.

`--raw-shared` adds a third setup: the raw pairs with each sender reading a subscriber of the
source's shared encoder (`media.encoding.encoded`), what encoding once gives without the rest of
peerix_nb. `--audio` measures the same with a 48 kHz tone only (Opus: one shared encoder against one per
sender); `--profile` runs cProfile (with a CPU clock) over the event loop for one window of
each setup, 3 receivers, and prints where its time goes by part of the stack. Goals (issue 17), with 3 receivers: encoder threads
<= 0.45x raw, whole process <= 0.72x raw, every receiver >= 28 frames/s; with 6 receivers whole
process <= 0.6x raw.

Run: `python -m bench.encode_once [--runs 2] [--window 5] [--receivers 1 3 6] [--raw-shared]
[--audio] [--profile]` (`--runs 0 --profile`: the profile only).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import fractions
import functools
import pstats
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from av.frame import Frame

from peerix_nb import MemoryDriver, Peer, media
from peerix_nb.events import Event
from peerix_nb.media.encoding import encoded, shared_encoders
from testbed.rooms import fully_connected, wait_until

from ._common import alternate, loadavg, machine, median, raw_configuration
from .media import SETTLE, Receiver, Result, measure, raw_arrays

VIDEO_RATE = 90_000
TIME_BASE = fractions.Fraction(1, VIDEO_RATE)


# -- camera-like content ---------------------------------------------------------------------------
def _upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a small random grid: smooth detail at the grid's scale."""
    y = np.linspace(0, grid.shape[0] - 1.001, height)
    x = np.linspace(0, grid.shape[1] - 1.001, width)
    y0, x0 = y.astype(int), x.astype(int)
    wy, wx = (y - y0)[:, None], (x - x0)[None, :]
    top = grid[y0][:, x0] * (1 - wx) + grid[y0][:, x0 + 1] * wx
    bottom = grid[y0 + 1][:, x0] * (1 - wx) + grid[y0 + 1][:, x0 + 1] * wx
    return np.asarray(top * (1 - wy) + bottom * wy)


def _texture(
    rng: np.random.Generator, height: int, width: int, scales: dict[int, float]
) -> np.ndarray:
    """Detail at several scales (px: weight), normalised to 0..1, like a photo's."""
    image = np.zeros((height, width), np.float32)
    for scale, weight in scales.items():
        image += weight * _upsample(
            rng.random((height // scale + 2, width // scale + 2)), height, width
        )
    image -= image.min()
    return image / image.max()


@functools.lru_cache(maxsize=2)
def _scene(
    width: int, height: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Luma and chroma textures twice the frame size (the camera pans over them) and 8 frames of
    sensor noise (+-3 levels, as uint8 to add modulo 256: luma stays within 16..235)."""
    rng = np.random.default_rng(seed)
    luma = _texture(
        rng, height * 2, width * 2, {2: 0.12, 4: 0.18, 8: 0.2, 16: 0.2, 48: 0.25, 160: 0.35}
    )
    y = (16 + 219 * luma).astype(np.uint8)
    chroma = {8: 0.3, 32: 0.3, 96: 0.4}
    u = (128 + 60 * (_texture(rng, height, width, chroma) - 0.5)).astype(np.uint8)
    v = (128 + 60 * (_texture(rng, height, width, chroma) - 0.5)).astype(np.uint8)
    noise = [rng.integers(-3, 4, (height, width)).astype(np.uint8) for _ in range(8)]
    return y, u, v, noise


class CameraLikeTrack(MediaStreamTrack):
    """A camera-like 640x480 yuv420p source at `fps`: a smooth pan (Lissajous, ~40-70 px/s) over
    a textured scene with sensor noise, each frame stamped (`media.write_stamp`) in its luma.
    Paced in real time without bursts; pts on the 90 kHz clock."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30, seed: int = 7) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._y, self._u, self._v, self._noise = _scene(width, height, seed)
        self._period = 1 / fps
        self._start: float | None = None
        self._next = 0.0
        self.frames_sent = 0

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = self._next = now
        else:
            self._next = max(self._next + self._period, now - self._period)
            if self._next > now:
                await asyncio.sleep(self._next - now)
        if self.readyState != "live":
            raise MediaStreamError
        t = self._next - self._start
        w, h = self.width, self.height
        ox = int(w / 2 * (1 + np.sin(2 * np.pi * t / 7.0))) & ~1
        oy = int(h / 2 * (1 + np.sin(2 * np.pi * t / 5.3))) & ~1
        planes = np.empty((h * 3 // 2, w), np.uint8)
        luma = planes[:h]
        np.add(self._y[oy : oy + h, ox : ox + w], self._noise[self.frames_sent % 8], out=luma)
        q = h // 4
        planes[h : h + q] = self._u[oy // 2 : oy // 2 + h // 2, ox // 2 : ox // 2 + w // 2].reshape(
            q, w
        )
        planes[h + q :] = self._v[oy // 2 : oy // 2 + h // 2, ox // 2 : ox // 2 + w // 2].reshape(
            q, w
        )
        media.write_stamp(luma, self.frames_sent, time.time())
        frame = VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = round(t * VIDEO_RATE)
        frame.time_base = TIME_BASE
        self.frames_sent += 1
        return frame


# -- one run of each setup -------------------------------------------------------------------------
def _source(kind: str) -> MediaStreamTrack:
    return CameraLikeTrack() if kind == "video" else media.ToneTrack()


async def _audio_counter(receiver: Receiver, track: MediaStreamTrack) -> None:
    """Audio has no stamp: count frames as they come (the window's fps is frames per second)."""
    n = 0
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return
        if not receiver.first.done():
            receiver.first.set_result(None)
        if receiver.measuring:
            n += 1
            receiver.counters.add(n)


async def raw_run(
    count: int,
    window: float,
    kind: str,
    profile: cProfile.Profile | None = None,
    shared: bool = False,
) -> Result:
    """R raw aiortc pairs; with `shared`, each sender reads a subscriber of the source's
    `media.encoding` shared encoder (encoded packets) instead of its own relay (frames)."""
    config = raw_configuration()
    source = _source(kind)
    pcs: list[RTCPeerConnection] = []
    senders: list[MediaStreamTrack] = []
    receivers = [Receiver() for _ in range(count)]
    tasks: list[asyncio.Task[None]] = []
    try:
        for receiver in receivers:
            a, b = RTCPeerConnection(config), RTCPeerConnection(config)
            pcs += (a, b)
            # one reader per sender: aiortc senders sharing a track would split its frames
            codec = "video/vp8" if kind == "video" else "audio/opus"
            relay = encoded(source, codec) if shared else media.relayed(source)
            senders.append(relay)
            a.addTrack(relay)

            @b.on("track")
            def on_track(track: MediaStreamTrack, receiver: Receiver = receiver) -> None:
                reader = media.relayed(track) if kind == "audio" else None
                job = (
                    _audio_counter(receiver, reader)
                    if reader is not None
                    else receiver.consume(raw_arrays(track))
                )
                tasks.append(asyncio.ensure_future(job))

            await a.setLocalDescription(await a.createOffer())
            await b.setRemoteDescription(a.localDescription)
            await b.setLocalDescription(await b.createAnswer())
            await a.setRemoteDescription(b.localDescription)
        return await _measured(receivers, window, profile)
    finally:
        for track in (*senders, source):
            track.stop()
        await asyncio.gather(*(pc.close() for pc in pcs))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def peerix_run(
    count: int, window: float, kind: str, profile: cProfile.Profile | None = None
) -> Result:
    driver = MemoryDriver()
    publisher = Peer(id="publisher", driver=driver)
    peers = [Peer(id=f"receiver{i}", driver=driver) for i in range(count)]
    receivers = [Receiver() for _ in range(count)]
    tasks: list[asyncio.Task[None]] = []
    stream = media.MediaStream([_source(kind)])

    def reader(receiver: Receiver) -> Callable[[Event], None]:
        def on_track(e: Event) -> None:
            if e.kind == kind and e.remote is not None and e.remote.id == "publisher":
                if kind == "audio":
                    job = _audio_counter(receiver, media.relayed(e.track))
                else:
                    job = receiver.consume(media.frames(e.track, format="gray"))
                tasks.append(asyncio.ensure_future(job))

        return on_track

    for peer, receiver in zip(peers, receivers, strict=True):
        peer.on("track:add", reader(receiver))
    room = f"encode-once-{uuid.uuid4().hex[:8]}"
    try:
        await publisher.publish(stream, label="camera")
        await publisher.join(room=room)
        for peer in peers:
            await peer.join(room=room)
        # Steady state: the receivers' own connections (a room is a full mesh) are up before
        # the window, so it measures video, not their setup.
        await wait_until([publisher, *peers], lambda: fully_connected([publisher, *peers]), 30)
        result = await _measured(receivers, window, profile)
        for encoder in shared_encoders(stream.tracks[0]):
            ENCODERS.append((count, kind, encoder.frames_encoded, encoder.keyframes))
        return result
    finally:
        stream.stop()
        await asyncio.gather(*(p.leave() for p in (publisher, *peers)))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _measured(
    receivers: list[Receiver], window: float, profile: cProfile.Profile | None
) -> Result:
    if profile is None:
        return await measure(receivers, window)
    await measure(receivers, 0.01)  # the first frames and the settle time, not profiled
    # cProfile follows the thread that enabled it: this one, the event loop. What it sees is
    # the next measure(): its settle second and the window.
    profile.enable()
    try:
        return await measure(receivers, window)
    finally:
        profile.disable()


#: (receivers, kind, frames encoded, keyframes) of each peerix_nb run's shared encoder(s).
ENCODERS: list[tuple[int, str, int, int]] = []


# -- the benchmark ---------------------------------------------------------------------------------
#: Raw aiortc pairs whose senders read one shared encoder (media.encoding): what encoding once
#: saves without the rest of peerix_nb (rooms, taps, readers, control channels).
RAW_SHARED = "raw aiortc, shared encoder"


async def run(
    args: argparse.Namespace, kind: str, counts: list[int]
) -> dict[int, dict[str, list[Result]]]:
    results: dict[int, dict[str, list[Result]]] = {}
    for count in counts:
        cases: dict[str, Callable[[], Awaitable[Result]]] = {
            "raw aiortc": functools.partial(raw_run, count, args.window, kind),
            "peerix_nb": functools.partial(peerix_run, count, args.window, kind),
        }
        if args.raw_shared:
            cases[RAW_SHARED] = functools.partial(raw_run, count, args.window, kind, shared=True)
        results[count] = await alternate(args.runs, cases)
        print(f"  {kind}, {count} receiver(s) done (load {loadavg()})", flush=True)
    return results


GROUPS = ("event loop", "encoders", "decoders")


def _medians(runs: list[Result]) -> dict[str, float]:
    """Medians over runs: CPU s/s by thread group, frames/s, and the same CPU per frame
    delivered (ms; a frame delivered = one remote's decoded frame), which stays comparable when
    a loaded machine lets one setup deliver fewer frames than the other."""
    row = {g: median([r.groups.get(g, 0.0) for r in runs]) for g in GROUPS}
    row["cpu"] = median([r.cpu for r in runs])
    row["fps"] = median([min(r.fps) for r in runs])
    row["delivered"] = median([sum(r.fps) for r in runs])
    for g in GROUPS:
        row[f"{g} ms"] = median([1000 * r.groups.get(g, 0.0) / sum(r.fps) for r in runs])
    row["cpu ms"] = median([1000 * r.cpu / sum(r.fps) for r in runs])
    return row


def report(
    results: dict[int, dict[str, list[Result]]], kind: str, args: argparse.Namespace
) -> dict[int, dict[str, float]]:
    """Print the tables; return, per receiver count, the ratios peerix_nb / raw."""
    what = (
        "640x480 camera-like VP8 at 30 fps"
        if kind == "video"
        else "48 kHz tone, Opus (50 frames/s)"
    )
    print(
        f"\n{what}, one publisher, {args.runs} alternating runs per setup after a warm-up, "
        f"{args.window:.0f} s windows, medians of runs\n"
    )
    print(
        "| receivers | setup | frames/s, slowest receiver | frames/s, all | CPU s/s | event loop "
        "| encoders | decoders | CPU ratio | encoders ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios: dict[int, dict[str, float]] = {}
    rows: dict[int, dict[str, dict[str, float]]] = {}
    for count, by_setup in results.items():
        rows[count] = {name: _medians(runs) for name, runs in by_setup.items()}
        raw = rows[count]["raw aiortc"]
        for name, row in rows[count].items():
            print(
                f"| {count} | {name} | {row['fps']:.1f} | {row['delivered']:.1f} "
                f"| {row['cpu']:.3f} | {row['event loop']:.3f} | {row['encoders']:.3f} "
                f"| {row['decoders']:.3f} | {row['cpu'] / raw['cpu']:.2f} "
                f"| {row['encoders'] / raw['encoders']:.2f} |"
            )
            if name == "peerix_nb":
                ratios[count] = {
                    "cpu": row["cpu"] / raw["cpu"],
                    "encoders": row["encoders"] / raw["encoders"],
                    "cpu per frame": row["cpu ms"] / raw["cpu ms"],
                    "encoders per frame": row["encoders ms"] / raw["encoders ms"],
                    "fps": row["fps"],
                    "raw fps": raw["fps"],
                }
    print(
        "\nCPU per frame delivered (one remote's decoded frame), ms: what each remote costs,"
        " by thread group\n"
    )
    print(
        "| receivers | setup | CPU | encode (encoder threads) | packetise, SRTP, receive, "
        "convert (event loop) | decode (decoder threads) | CPU ratio | encode ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for count, by_name in rows.items():
        raw = by_name["raw aiortc"]
        for name, row in by_name.items():
            print(
                f"| {count} | {name} | {row['cpu ms']:.2f} | {row['encoders ms']:.2f} "
                f"| {row['event loop ms']:.2f} | {row['decoders ms']:.2f} "
                f"| {row['cpu ms'] / raw['cpu ms']:.2f} "
                f"| {row['encoders ms'] / raw['encoders ms']:.2f} |"
            )
    unreadable = sum(r.unreadable for by in results.values() for rs in by.values() for r in rs)
    if kind == "video":
        print(f"\nframes whose stamp could not be read: {unreadable}")
    for count in results:
        runs = [(f, k) for c, what, f, k in ENCODERS if c == count and what == kind]
        if runs:
            frames, keys = sum(f for f, _ in runs), sum(k for _, k in runs)
            print(
                f"peerix_nb, {count} receiver(s): {len(runs)} shared {kind} encoder(s) (one per"
                f" run), {frames} frames encoded, {keys} keyframes"
            )
    return ratios


def goals(ratios: dict[int, dict[str, float]]) -> None:
    """The goals of issue 17. CPU ratios are per second when both setups delivered >= 28
    frames/s at every receiver, else per frame delivered (a starved setup spends less per
    second because it delivers less)."""

    def line(figure: str, value: float, goal: str, met: bool) -> None:
        print(f"| {figure} | {value:.2f} | {goal} | {'yes' if met else 'NO'} |")

    def cpu(r: dict[str, float], key: str) -> tuple[str, float]:
        if min(r["fps"], r["raw fps"]) >= 28:
            return "per second", r[key]
        return "per frame delivered", r[f"{key} per frame"]

    print("\n| goal (issue 17) | measured | goal | met |\n|---|---|---|---|")
    three = ratios.get(3)
    if three:
        how, value = cpu(three, "encoders")
        line(
            f"3 receivers: encoder threads' CPU, ratio to raw ({how})",
            value,
            "<= 0.45",
            value <= 0.45,
        )
        how, value = cpu(three, "cpu")
        line(
            f"3 receivers: whole process CPU, ratio to raw ({how})", value, "<= 0.72", value <= 0.72
        )
        line("3 receivers: frames/s, slowest receiver", three["fps"], ">= 28", three["fps"] >= 28)
    six = ratios.get(6)
    if six:
        how, value = cpu(six, "cpu")
        line(f"6 receivers: whole process CPU, ratio to raw ({how})", value, "<= 0.6", value <= 0.6)
        line("6 receivers: frames/s, slowest receiver", six["fps"], "(report)", True)
    one = ratios.get(1)
    if one:
        how, value = cpu(one, "cpu")
        line(f"1 receiver: whole process CPU, ratio to raw ({how})", value, "(report)", True)


# -- profile ---------------------------------------------------------------------------------------
PARTS: list[tuple[str, tuple[str, ...]]] = [
    (
        "sender: RTP packets, pack()",
        ("rtcrtpsender.py", "codecs/vpx.py", "codecs/h264.py", "codecs/opus.py", "clock.py"),
    ),
    ("SRTP, DTLS, sockets", ("rtcdtlstransport.py", "pylibsrtp", "srtp_", "sendto", "recvfrom")),
    ("ICE", ("rtcicetransport.py", "aioice")),
    ("RTP parsing, header extensions", ("aiortc/rtp.py",)),
    ("receiver: jitter buffer, NACK, REMB", ("rtcrtpreceiver.py", "jitterbuffer.py", "rate.py")),
    (
        "frames to numpy, stamps",
        ("to_ndarray", "media/readers.py", "media/stamps.py", "bench/media.py"),
    ),
    ("taps, relays, sender tracks", ("media/fanout.py", "transceivers.py")),
    ("shared encoder (loop side)", ("media/encoding.py",)),
    ("source (frame making)", ("bench/encode_once.py", "media/sources.py", "from_ndarray")),
    ("peerix_nb other", ("peerix_nb/",)),
    (
        "asyncio, threads hand-over",
        ("asyncio/", "epoll", "_thread.lock", "SimpleQueue", "selectors.py"),
    ),
]


def _part(filename: str, function: str) -> str:
    where = f"{filename}:{function}"
    for part, needles in PARTS:
        if any(n in where for n in needles):
            return part
    return "other"


def profile_report(name: str, profile: cProfile.Profile, frames: float) -> None:
    """The event loop's own CPU time by part of the stack, per frame delivered."""
    stats = pstats.Stats(profile)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_part: dict[str, float] = {}
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        part = _part(filename, function)
        by_part[part] = by_part.get(part, 0.0) + tottime
    total = sum(by_part.values())
    print(
        f"\n{name}: the event loop's CPU time per frame delivered ({frames:.0f} frames; cProfile"
        " with a CPU clock, which adds its own overhead to every Python call)\n"
    )
    print("| part | us per frame | share |\n|---|---|---|")
    for part, seconds in sorted(by_part.items(), key=lambda kv: -kv[1]):
        print(f"| {part} | {seconds / frames * 1e6:.0f} | {seconds / total:.0%} |")
    print(f"| total | {total / frames * 1e6:.0f} | 100% |")
    pstats.Stats(profile).sort_stats("tottime").print_stats(15)


async def profile_runs(args: argparse.Namespace) -> None:
    count = 3
    setups: dict[str, Callable[[cProfile.Profile], Awaitable[Result]]] = {
        "raw aiortc": lambda p: raw_run(count, args.window, "video", p),
        "peerix_nb": lambda p: peerix_run(count, args.window, "video", p),
    }
    if args.raw_shared:
        setups[RAW_SHARED] = lambda p: raw_run(count, args.window, "video", p, shared=True)
    for name, fn in setups.items():
        profile = cProfile.Profile(time.thread_time)  # CPU time: load elsewhere does not count
        result = await fn(profile)
        frames = sum(result.fps) * (args.window + SETTLE)  # the profile covers both
        profile_report(f"{name}, {count} receivers", profile, frames)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.encode_once", description=__doc__)
    parser.add_argument("--runs", type=int, default=2, help="runs per setup and receiver count")
    parser.add_argument("--window", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--receivers", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--audio", action="store_true", help="also Opus, 3 receivers")
    parser.add_argument("--profile", action="store_true", help="cProfile the loop, 3 receivers")
    parser.add_argument("--raw-shared", action="store_true", help=f"a third setup: {RAW_SHARED}")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"load average before: {loadavg()}")
    if args.runs > 0:  # --runs 0 --profile: the profile only
        video = asyncio.run(run(args, "video", args.receivers))
        goals(report(video, "video", args))
    if args.audio and args.runs > 0:
        audio = asyncio.run(run(args, "audio", [3]))
        report(audio, "audio", args)
    if args.profile:
        asyncio.run(profile_runs(args))
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
