"""Sources that need no camera: `synthetic()` (stamped scrolling bars and a stamped tone),
`from_file()` (aiortc's MediaPlayer) and `from_frames()` (numpy arrays from a function or an
iterator)."""

from __future__ import annotations

import asyncio
import fractions
import inspect
import logging
import math
import numbers
import operator
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import numpy as np
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from av.frame import Frame

from ..errors import PeerixError
from .stamps import STAMP_COLUMNS, STAMP_ROWS, _stamp_cell, write_audio_stamp, write_stamp
from .streams import MediaSourceError, MediaStream

__all__ = [
    "FrameSourceTrack",
    "SyntheticVideoTrack",
    "ToneTrack",
    "from_file",
    "from_frames",
    "synthetic",
]

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90_000  # RTP clock of every video codec; aiortc's encoders expect it
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_RATE = 48_000
AUDIO_SAMPLES = 960  # 20 ms at 48 kHz, the Opus frame aiortc sends
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
SYNTHETIC_STAMP_EVERY = 25  # synthetic() audio: an audio stamp every 25 frames (0.5 s)

FrameFunction = Callable[[int, float], np.ndarray | Awaitable[np.ndarray]]


class _Pacer:
    """Real-time pacing at `rate` per second without bursts: a source that fell behind by more
    than one period resumes from now instead of catching up. With `catch_up=n` it makes up for
    up to n periods first, as a sound card does (its samples wait in its buffer): an audio
    source that skipped whenever the loop was late would lose sound, not just be late."""

    def __init__(self, rate: float, catch_up: int = 0) -> None:
        if (
            not isinstance(rate, numbers.Real)
            or isinstance(rate, bool)
            or not rate > 0
            or math.isinf(rate)
        ):
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR", f"rate (fps) must be a number > 0, got {rate!r}"
            )
        self.period: float = 1.0 / rate
        self._catch_up: int = catch_up
        self._origin: float | None = None
        self._next: float = 0.0
        self.behind: float = 0.0  # how late (s) the slot wait() returned is (time.monotonic())

    async def wait(self) -> float:
        """Sleep until the next slot; return its time in seconds since the first slot."""
        now = time.monotonic()
        if self._origin is None:
            self._origin = self._next = now
        else:
            self._next += self.period
            if self._next < now - self.period * (1 + self._catch_up):
                self._next = now
            if self._next > now:
                await asyncio.sleep(self._next - now)
        self.behind = max(0.0, time.monotonic() - self._next)
        return self._next - self._origin


def _test_pattern(width: int, height: int) -> np.ndarray:
    """Eight colour bars over a vertical ramp, twice as wide as the frame so that any
    horizontal offset is one slice."""
    colours = np.array(
        [
            [235, 235, 235],
            [235, 235, 16],
            [16, 235, 235],
            [16, 235, 16],
            [235, 16, 235],
            [235, 16, 16],
            [16, 16, 235],
            [60, 60, 60],
        ],
        np.float32,
    )
    x = np.arange(width)
    bars = colours[(x * len(colours)) // width]  # W x 3
    ramp = np.linspace(1.0, 0.45, height, dtype=np.float32)[:, None, None]
    pattern = (bars[None, :, :] * ramp).astype(np.uint8)
    return np.concatenate([pattern, pattern], axis=1)


class SyntheticVideoTrack(MediaStreamTrack):
    """Scrolling colour bars at `fps`, each frame stamped with `write_stamp` (counter from 0,
    time.time() when the frame is made). pts use the 90 kHz video clock and real time."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30) -> None:
        super().__init__()
        if not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (width, height)
        ):
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                f"synthetic video needs integer width and height, got {width!r}x{height!r}",
            )
        if width < 2 * STAMP_COLUMNS or height < STAMP_ROWS * _stamp_cell(width) + 2:
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                f"synthetic video needs at least {2 * STAMP_COLUMNS} pixels wide and room for"
                f" the stamp, got {width}x{height}",
            )
        width, height = int(width), int(height)
        self.width, self.height, self.fps = width, height, fps
        self._pacer = _Pacer(fps)
        self._pattern = _test_pattern(width, height)
        self._speed = width / 2.0  # pixels per second: one full scroll every 2 s
        self.frames_sent = 0

    def __repr__(self) -> str:
        return _track_repr(self, f"{self.width}x{self.height} at {float(self.fps):g} fps")

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        t = await self._pacer.wait()
        if self.readyState != "live":
            raise MediaStreamError
        offset = int(t * self._speed) % self.width
        image = self._pattern[:, offset : offset + self.width].copy()
        write_stamp(image, self.frames_sent, time.time())
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = round(t * VIDEO_CLOCK_RATE)
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame


def _track_repr(track: MediaStreamTrack, what: str) -> str:
    return f"<{type(track).__name__} {what}, {track.readyState}, id={track.id}>"


class ToneTrack(MediaStreamTrack):
    """A sine tone: 48 kHz mono s16 in 20 ms frames, paced in real time (frames a late loop
    missed, up to 200 ms of them, come at once after it, as from a sound card's buffer).

    With `stamp_every=n` (synthetic() uses 25: two per second), frame 12 and every n-th after
    it is replaced by an audio stamp (`media.write_audio_stamp`: a 20 ms burst of 1-13 kHz
    carriers holding a counter from 0 and the time.time() the frame was due), which a receiver
    finds again after Opus with `media.AudioStampReader` to measure latency end to end. 0: a
    pure tone.
    """

    kind = "audio"

    def __init__(self, frequency: float = 440.0, volume: float = 0.2, stamp_every: int = 0) -> None:
        super().__init__()
        try:
            every = operator.index(stamp_every)  # an int, numpy's included
        except TypeError:
            every = -1
        if isinstance(stamp_every, bool) or every < 0:
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                f"stamp_every must be an integer >= 0 (frames), got {stamp_every!r}",
            )
        self.frequency = frequency
        self.volume = volume
        self.stamp_every = every
        # a late loop is caught up on (up to 200 ms), as a sound card's buffer would
        self._pacer = _Pacer(AUDIO_RATE / AUDIO_SAMPLES, catch_up=10)
        self._samples = 0
        self.frames_sent = 0
        self.stamps_sent = 0

    def __repr__(self) -> str:
        return _track_repr(self, f"{self.frequency:g} Hz")

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._pacer.wait()
        if self.readyState != "live":
            raise MediaStreamError
        n = np.arange(self._samples, self._samples + AUDIO_SAMPLES, dtype=np.float64)
        wave = np.sin((2 * np.pi * self.frequency / AUDIO_RATE) * n) * (self.volume * 32767)
        samples = wave.astype(np.int16)
        every = self.stamp_every
        if every and self.frames_sent % every == every // 2:
            # the time the frame was due (captured), not the time a late loop made it
            due = time.time() - self._pacer.behind
            write_audio_stamp(samples, self.stamps_sent, due, self.volume)
            self.stamps_sent += 1
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = AUDIO_TIME_BASE
        self._samples += AUDIO_SAMPLES
        self.frames_sent += 1
        return frame


def synthetic(
    video: bool = True,
    audio: bool = True,
    width: int = 640,
    height: int = 480,
    fps: float = 30,
) -> MediaStream:
    """A camera-free test stream: stamped scrolling bars (see `read_stamp`) and a 440 Hz tone
    with an audio stamp twice a second (see `ToneTrack`, `AudioStampReader`)."""
    tracks: list[MediaStreamTrack] = []
    if video:
        tracks.append(SyntheticVideoTrack(width, height, fps))
    if audio:
        tracks.append(ToneTrack(stamp_every=SYNTHETIC_STAMP_EVERY))
    return MediaStream(tracks)


def from_file(
    path: str | os.PathLike[str],
    loop: bool = False,
    *,
    format: str | None = None,
    options: dict[str, str] | None = None,
) -> MediaStream:
    """A stream playing a media file (or device, with `format`/`options`) in real time through
    aiortc's MediaPlayer; `loop=True` repeats a seekable file."""
    name = os.fspath(path)
    try:
        player = MediaPlayer(name, format=format, options=options, loop=loop)
    except AssertionError as e:  # MediaPlayer asserts that loop playback can seek
        raise PeerixError(
            "PEER_MEDIASTREAM_ERROR", f"cannot loop media file {name!r}: it is not seekable", e
        ) from e
    except Exception as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise PeerixError(
            "PEER_MEDIASTREAM_ERROR", f"cannot open media file {name!r}: {reason}", e
        ) from e
    tracks = [t for t in (player.audio, player.video) if t is not None]
    if not tracks:
        raise PeerixError(
            "PEER_MEDIASTREAM_ERROR", f"media file {name!r} has no audio or video stream"
        )
    stream = MediaStream(tracks)
    stream._resources.append(player)
    return stream


FrameSource = FrameFunction | Iterable[np.ndarray] | AsyncIterator[np.ndarray]


_END = object()


class FrameSourceTrack(MediaStreamTrack):
    """A video track made of numpy RGB frames from a function, an iterable or an async iterator
    (see `from_frames`). A bad frame or a raising source ends the track with a
    `MediaSourceError`, kept in `error`."""

    kind = "video"

    def __init__(self, source: FrameSource, fps: float = 30) -> None:
        super().__init__()
        self._pacer = _Pacer(fps)
        self._fn: FrameFunction | None = None
        self._aiter: AsyncIterator[np.ndarray] | None = None
        self._iter: Iterator[np.ndarray] | None = None
        if inspect.isgeneratorfunction(source) or inspect.isasyncgenfunction(source):
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                f"from_frames got the generator function {source.__name__!r}: call it and pass"
                " the generator",
            )
        if hasattr(source, "__aiter__"):
            self._aiter = source.__aiter__()
        elif callable(source):
            self._fn = source
        elif isinstance(source, Iterable):
            self._iter = iter(source)
        else:
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                "from_frames needs a function fn(index, t), an iterable or an async iterator"
                f" of arrays, got {type(source).__name__}",
            )
        self.frames_sent = 0
        self.error: MediaSourceError | None = None

    def _fail(self, message: str, cause: BaseException | None = None) -> MediaSourceError:
        self.error = MediaSourceError(message, cause)
        logger.error("frame source track %s ended: %s", self.id, self.error.message)
        self.stop()
        return self.error

    async def _next_array(self, index: int, t: float) -> Any:
        """The next array, or _END when the iterator is exhausted."""
        if self._fn is not None:
            result = self._fn(index, t)
            return await result if inspect.isawaitable(result) else result
        if self._aiter is not None:
            try:
                return await self._aiter.__anext__()
            except StopAsyncIteration:
                return _END
        assert self._iter is not None
        # a StopIteration escaping a coroutine becomes RuntimeError (PEP 479): use a default
        return next(self._iter, _END)

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        t = await self._pacer.wait()
        if self.readyState != "live":
            raise MediaStreamError
        index = self.frames_sent
        try:
            array = await self._next_array(index, t)
        except Exception as e:
            raise self._fail(f"frame source raised {type(e).__name__}: {e}", e) from e
        if array is _END:
            self.stop()
            raise MediaStreamError
        if (
            not isinstance(array, np.ndarray)
            or array.dtype != np.uint8
            or array.ndim != 3
            or array.shape[2] != 3
            or array.shape[0] < 2
            or array.shape[1] < 2
        ):
            got = (
                f"ndarray dtype={array.dtype} shape={array.shape}"
                if isinstance(array, np.ndarray)
                else type(array).__name__
            )
            raise self._fail(f"frame {index} must be an HxWx3 uint8 RGB ndarray, got {got}")
        frame = VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
        frame.pts = round(t * VIDEO_CLOCK_RATE)
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame


def from_frames(source: FrameSource, fps: float = 30) -> MediaStream:
    """A one-video-track stream from numpy HxWx3 uint8 RGB frames, paced at `fps`.

    `source` is `fn(index, t)` (sync or async; `t` = seconds since the first frame), or a
    (async) iterable of arrays; the track ends when the iterator is exhausted.
    """
    return MediaStream([FrameSourceTrack(source, fps)])
