"""Media for peerix_nb: MediaStream, camera-free sources, fan-out and numpy frame readers.

This is the only module besides remote.py that touches aiortc. It provides:

- `MediaStream`, the Python counterpart of a browser MediaStream (a list of aiortc tracks);
- sources that need no camera: `synthetic()` (a moving pattern stamped with a frame counter
  and the send time, plus a tone), `from_file()` and `from_frames()` (numpy arrays);
- `relayed()` (one track per RTCRtpSender) and `Tap` (drains a track continuously and fans out
  its latest frame), which remote.py uses to publish and receive;
- `frames()` and `frame_callback()`, which turn any track into numpy arrays.
"""

from __future__ import annotations

import asyncio
import binascii
import fractions
import inspect
import logging
import math
import numbers
import os
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from av import AudioFrame, VideoFrame
from av.frame import Frame
from av.packet import Packet

from .errors import PeerixError

__all__ = [
    "FrameCallback",
    "FrameIterator",
    "FrameSourceTrack",
    "MediaSourceError",
    "MediaStream",
    "MediaStreamError",
    "MediaStreamTrack",
    "Stamp",
    "SyntheticVideoTrack",
    "Tap",
    "TapTrack",
    "ToneTrack",
    "frame_callback",
    "frames",
    "from_file",
    "from_frames",
    "from_widget",
    "read_stamp",
    "relayed",
    "synthetic",
    "tap_for",
    "write_stamp",
]

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90_000  # RTP clock of every video codec; aiortc's encoders expect it
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_RATE = 48_000
AUDIO_SAMPLES = 960  # 20 ms at 48 kHz, the Opus frame aiortc sends
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)

VIDEO_FORMATS = ("rgb24", "bgr24", "rgba", "bgra", "gray")

FrameFunction = Callable[[int, float], np.ndarray | Awaitable[np.ndarray]]


class MediaSourceError(PeerixError, MediaStreamError):
    """A media source failed (code PEER_MEDIASTREAM_ERROR).

    It is also an aiortc `MediaStreamError`, so an RTCRtpSender or Tap reading the
    track treats it as the end of the track instead of crashing its task.
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__("PEER_MEDIASTREAM_ERROR", message, cause)


def _check_track(track: object, what: str = "track") -> MediaStreamTrack:
    if not isinstance(track, MediaStreamTrack):
        raise PeerixError(
            "PEER_MEDIASTREAM_ERROR",
            f"{what} must be an aiortc MediaStreamTrack, got {type(track).__module__}."
            f"{type(track).__qualname__}",
        )
    return track


# ---------------------------------------------------------------------------------------------
# MediaStream


class MediaStream:
    """An ordered set of aiortc tracks with an id, like a browser MediaStream.

    The id becomes the `a=msid` stream id when the stream is published. Objects that must stay
    alive while the tracks play (a MediaPlayer) are kept on the stream.
    """

    def __init__(self, tracks: Iterable[MediaStreamTrack] = (), id: str | None = None) -> None:
        if id is None:
            id = str(uuid.uuid4())
        if not isinstance(id, str) or not id or any(c.isspace() for c in id):
            # the id is an SDP token (a=msid:<stream-id> <track-id>)
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                f"MediaStream id must be a non-empty string without whitespace, got {id!r}",
            )
        if isinstance(tracks, MediaStreamTrack):
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                f"MediaStream takes an iterable of tracks, got a single {type(tracks).__name__};"
                " wrap it in a list",
            )
        self._id = id
        self._tracks: list[MediaStreamTrack] = []
        self._resources: list[Any] = []  # kept alive with the stream (e.g. a MediaPlayer)
        for track in tracks:
            self.add_track(track)

    @property
    def id(self) -> str:
        """The stream id (the MediaStream id of `a=msid`)."""
        return self._id

    @property
    def tracks(self) -> list[MediaStreamTrack]:
        """A copy of the tracks, in insertion order."""
        return list(self._tracks)

    def get_tracks(self, kind: str | None = None) -> list[MediaStreamTrack]:
        """The tracks of one kind ("audio"/"video"), or all of them."""
        return [t for t in self._tracks if kind is None or t.kind == kind]

    def get_track_by_id(self, track_id: str) -> MediaStreamTrack | None:
        """The track with this id, or None (browser `getTrackById`)."""
        return next((t for t in self._tracks if t.id == track_id), None)

    @property
    def audio_tracks(self) -> list[MediaStreamTrack]:
        """The audio tracks."""
        return self.get_tracks("audio")

    @property
    def video_tracks(self) -> list[MediaStreamTrack]:
        """The video tracks."""
        return self.get_tracks("video")

    @property
    def active(self) -> bool:
        """True while at least one track has not ended."""
        return any(t.readyState != "ended" for t in self._tracks)

    def add_track(self, track: MediaStreamTrack) -> None:
        """Add a track; adding one that is already there does nothing."""
        _check_track(track)
        if track not in self._tracks:
            self._tracks.append(track)

    def remove_track(self, track: MediaStreamTrack) -> None:
        """Remove a track; removing one that is not there does nothing."""
        _check_track(track)
        if track in self._tracks:
            self._tracks.remove(track)

    def stop(self) -> None:
        """Stop every track (their sources stop producing, relays and taps end)."""
        for track in self._tracks:
            track.stop()

    def __repr__(self) -> str:
        kinds = ", ".join(f"{t.kind}:{t.readyState}" for t in self._tracks)
        return f"MediaStream(id={self._id!r}, active={self.active}, tracks=[{kinds}])"


# ---------------------------------------------------------------------------------------------
# Frame stamps: a band of black/white cells at the top of the frame

# 40 x 3 cells = 120 bits: 4 guard + 32 counter + 64 time + 16 CRC + 4 guard
STAMP_COLUMNS = 40
STAMP_ROWS = 3
_GUARD_HEAD = (1, 0, 1, 1)
_GUARD_TAIL = (0, 0, 1, 0)


@dataclass(frozen=True)
class Stamp:
    """What `read_stamp` found: the frame counter and the send time (time.time(), seconds)."""

    counter: int
    sent_at: float


def _stamp_cell(width: int) -> int:
    # Square cells, a function of the width only (the receiver sees the same size). VP8 codes
    # 16x16 macroblocks; aiortc's realtime encoder settings (denoiser + static threshold)
    # sometimes leave a macroblock stale when only PART of it changes. Measured over 1,200
    # frames per case: 8 px cells failed up to 68 % of frames at 640x480, 16/32 px cells
    # (whole macroblocks) never, 4 px cells rarely (0-0.8 %). So: 16 * 2^k when 40 of them fit,
    # else 4 px (aligned to VP8's 4x4 transform: one flat value per block), else 2 px.
    if width >= 16 * STAMP_COLUMNS:
        cell = 16
        while cell * 2 * STAMP_COLUMNS <= width:
            cell *= 2
        return cell
    if width >= 4 * STAMP_COLUMNS:
        return 4
    return 2 if width >= 2 * STAMP_COLUMNS else 0


def _stamp_payload(counter: int, sent_at: float) -> bytes:
    micros = round(sent_at * 1_000_000)
    return (counter % (1 << 32)).to_bytes(4, "big") + (micros % (1 << 64)).to_bytes(8, "big")


def write_stamp(image: np.ndarray, counter: int, sent_at: float | None = None) -> np.ndarray:
    """Stamp `image` (HxW or HxWxC uint8, modified in place) with a counter and a send time.

    The band is 3 rows of 40 square cells at the top-left (48 px high at 640x480, 12 px at
    160x120). Use it on your own `from_frames` images to measure latency with `read_stamp`.
    """
    if sent_at is None:
        sent_at = time.time()
    cell = _stamp_cell(image.shape[1])
    if cell < 2 or image.shape[0] < STAMP_ROWS * cell:
        raise PeerixError(
            "PEER_MEDIASTREAM_ERROR",
            f"image {image.shape[1]}x{image.shape[0]} is too small for a stamp (needs at least"
            f" {2 * STAMP_COLUMNS} pixels wide)",
        )
    payload = _stamp_payload(counter, sent_at)
    crc = binascii.crc_hqx(payload, 0xFFFF).to_bytes(2, "big")
    bits = np.concatenate(
        [
            np.array(_GUARD_HEAD, np.uint8),
            np.unpackbits(np.frombuffer(payload + crc, np.uint8)),
            np.array(_GUARD_TAIL, np.uint8),
        ]
    ).reshape(STAMP_ROWS, STAMP_COLUMNS)
    band = np.repeat(np.repeat(bits * np.uint8(255), cell, axis=0), cell, axis=1)
    if image.ndim == 3:
        band = band[:, :, None]
    image[: STAMP_ROWS * cell, : STAMP_COLUMNS * cell] = band
    return image


def read_stamp(image: np.ndarray) -> Stamp | None:
    """Read the stamp of a synthetic frame (rgb24/bgr24/rgba HxWxC, or gray HxW) at the size
    it was sent (the layout depends on the width).

    Returns None when there is no readable stamp (guard bits or CRC-16 do not match), so a
    damaged or unstamped frame never yields a wrong counter.
    """
    if image.ndim not in (2, 3):
        raise PeerixError(
            "PEER_MEDIASTREAM_ERROR", f"expected an HxW or HxWxC image, got shape {image.shape}"
        )
    cell = _stamp_cell(image.shape[1])
    if cell < 2 or image.shape[0] < STAMP_ROWS * cell:
        return None
    band = image[: STAMP_ROWS * cell, : STAMP_COLUMNS * cell]
    if band.ndim == 3:
        band = band[:, :, :3].mean(axis=2)  # channel order does not matter for gray
    # average the middle half of each cell, away from edges touched by coding
    lo, hi = cell // 4, cell - cell // 4
    cells = band.reshape(STAMP_ROWS, cell, STAMP_COLUMNS, cell)[:, lo:hi, :, lo:hi]
    bits = (cells.mean(axis=(1, 3)) > 127.5).astype(np.uint8).ravel()
    if tuple(bits[:4]) != _GUARD_HEAD or tuple(bits[-4:]) != _GUARD_TAIL:
        return None
    data = np.packbits(bits[4:-4]).tobytes()
    payload, crc = data[:12], data[12:]
    if binascii.crc_hqx(payload, 0xFFFF).to_bytes(2, "big") != crc:
        return None
    counter = int.from_bytes(payload[:4], "big")
    micros = int.from_bytes(payload[4:], "big")
    return Stamp(counter=counter, sent_at=micros / 1_000_000)


# ---------------------------------------------------------------------------------------------
# Sources


class _Pacer:
    """Real-time pacing at `rate` per second without bursts: a source that fell behind by more
    than one period resumes from now instead of catching up."""

    def __init__(self, rate: float) -> None:
        if (
            not isinstance(rate, numbers.Real)
            or isinstance(rate, bool)
            or not rate > 0
            or math.isinf(rate)
        ):
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR", f"rate (fps) must be a number > 0, got {rate!r}"
            )
        self.period = 1.0 / rate
        self._origin: float | None = None
        self._next = 0.0

    async def wait(self) -> float:
        """Sleep until the next slot; return its time in seconds since the first slot."""
        now = time.monotonic()
        if self._origin is None:
            self._origin = self._next = now
        else:
            self._next += self.period
            if self._next < now - self.period:
                self._next = now
            if self._next > now:
                await asyncio.sleep(self._next - now)
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
    """A sine tone: 48 kHz mono s16 in 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, volume: float = 0.2) -> None:
        super().__init__()
        self.frequency = frequency
        self.volume = volume
        self._pacer = _Pacer(AUDIO_RATE / AUDIO_SAMPLES)
        self._samples = 0

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
        frame = AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = AUDIO_TIME_BASE
        self._samples += AUDIO_SAMPLES
        return frame


def synthetic(
    video: bool = True,
    audio: bool = True,
    width: int = 640,
    height: int = 480,
    fps: float = 30,
) -> MediaStream:
    """A camera-free test stream: stamped scrolling bars (see `read_stamp`) and a 440 Hz tone."""
    tracks: list[MediaStreamTrack] = []
    if video:
        tracks.append(SyntheticVideoTrack(width, height, fps))
    if audio:
        tracks.append(ToneTrack())
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
            self._aiter = source.__aiter__()  # type: ignore[union-attr]
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


def from_widget(widget: Any, fps: float = 10, **options: Any) -> MediaStream:
    """A one-video-track stream of an ipywebrtc stream widget (CameraStream, VideoStream,
    WidgetStream, ...): the page captures frames and the kernel pulls them over the widget comm,
    one at a time (`peerix_nb.widgets.camera`). Works wherever the notebook is open in a browser
    (Binder included); `options` go to `widgets.camera_stream` (format, quality)."""
    from .widgets.camera import camera_stream

    return camera_stream(widget, fps, **options)


def from_frames(source: FrameSource, fps: float = 30) -> MediaStream:
    """A one-video-track stream from numpy HxWx3 uint8 RGB frames, paced at `fps`.

    `source` is `fn(index, t)` (sync or async; `t` = seconds since the first frame), or a
    (async) iterable of arrays; the track ends when the iterator is exhausted.
    """
    return MediaStream([FrameSourceTrack(source, fps)])


# ---------------------------------------------------------------------------------------------
# Fan-out: relayed() for senders


def _shareable(frame: Frame | Packet) -> Frame | Packet:
    """A video frame that several encoders may read at once: yuv420p.

    aiortc encodes in executor threads and its VP8/H264 encoders call `frame.reformat()` on
    anything not yuv420p. PyAV caches ONE reformatter (an SwsContext) per frame and runs it
    without the GIL, so two senders sharing an rgb24 frame crash or hang (seen here: segfault
    with two relayed 320x240 senders). Converting once here, in the loop, avoids that.
    """
    if isinstance(frame, VideoFrame) and frame.format.name != "yuv420p":
        converted = frame.reformat(format="yuv420p")
        converted.pts = frame.pts
        converted.time_base = frame.time_base
        return converted
    return frame


class _GuardTrack(MediaStreamTrack):
    """Reads a local source track for its Tap and ends cleanly whatever the source does.

    A source stopped while a read waits never wakes that read (a MediaPlayer track's thread
    quits without waking its queue), and a source may raise anything: the guard turns both
    into MediaStreamError, so the tap ends every subscriber. It also makes frames shareable.
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._pending: asyncio.Future[Frame | Packet] | None = None
        source.on("ended", self._on_source_ended)

    def _on_source_ended(self) -> None:
        if self._pending is not None:
            self._pending.cancel()

    def stop(self) -> None:
        super().stop()
        # The source outlives its taps (publish, unpublish, publish again): a listener left on
        # it would keep every guard alive and pile up one per tap.
        if self._source.readyState == "live":
            self._source.remove_listener("ended", self._on_source_ended)

    async def recv(self) -> Frame | Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._source.readyState != "live":
            self.stop()
            raise MediaStreamError
        self._pending = asyncio.ensure_future(self._source.recv())
        try:
            return _shareable(await self._pending)
        except asyncio.CancelledError:
            if self._source.readyState == "live":
                raise  # our reader was cancelled, not the source stopped
            self.stop()
            raise MediaStreamError from None
        except MediaStreamError:
            self.stop()
            raise
        except Exception as e:
            self.stop()
            logger.error("track %s failed, ending its tap: %r", self._source.id, e)
            raise MediaSourceError(f"track {self._source.id} failed: {e!r}", e) from e
        finally:
            self._pending = None


def relayed(track: MediaStreamTrack) -> MediaStreamTrack:
    """A new track that receives every frame of `track` (the newest, if its reader is slow):
    a subscriber of the track's Tap.

    Give each RTCRtpSender its own: aiortc senders sharing one track split its frames between
    them. Relaying a Tap subscriber (e.g. a remote track, to forward it) follows that
    subscriber and ends with it. Stopping the returned track unsubscribes it.
    """
    _check_track(track)
    tap = tap_for(track)
    return tap.subscribe(origin=track if isinstance(track, TapTrack) else None)


# ---------------------------------------------------------------------------------------------
# Tap: drain a track continuously, keep the latest frame, fan it out


class TapTrack(MediaStreamTrack):
    """A subscriber of a `Tap`: `recv()` returns the next frame newer than the last one it
    returned (stale frames are dropped, nothing queues) and raises MediaStreamError once the
    tap has ended or the track is stopped."""

    def __init__(self, tap: Tap, id: str | None = None) -> None:
        super().__init__()
        self.kind = tap.kind
        if id is not None:
            self._id = id
        self._tap = tap
        self._last_seq = 0
        self._wakeup = asyncio.Event()
        # readers made from this track (frames(), relayed()): they end when it ends
        self._derived: weakref.WeakSet[TapTrack] = weakref.WeakSet()
        self.frames_returned = 0
        self.frames_dropped = 0  # frames the tap received that this reader never saw

    @property
    def tap(self) -> Tap:
        """The tap this track reads from."""
        return self._tap

    async def recv(self) -> Frame | Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            tap = self._tap
            if tap.ended:
                self.stop()
                raise MediaStreamError
            if tap._seq > self._last_seq:
                if self._last_seq:
                    self.frames_dropped += tap._seq - self._last_seq - 1
                self._last_seq = tap._seq
                self.frames_returned += 1
                assert tap._latest is not None
                return tap._latest
            self._wakeup.clear()
            # While this read waits, the tap holds us strongly (see Tap._reading): nothing else
            # may point at the waiting task, e.g. `asyncio.ensure_future(reader())` started
            # from an event handler that keeps no reference.
            tap._reading.add(self)
            try:
                await self._wakeup.wait()
            finally:
                tap._reading.discard(self)

    def stop(self) -> None:
        super().stop()
        self._wakeup.set()
        self._tap._subscribers.discard(self)
        for derived in list(self._derived):
            derived.stop()


class Tap:
    """Consumes `source` continuously in its own task, keeps only the latest frame and fans it
    out to `subscribe()`d tracks.

    aiortc queues a remote track's decoded frames without bound, so a RemoteStreamTrack is
    read all the time, even when nobody watches. A local track (synthetic, file, numpy) is read
    only while the tap has subscribers, and its tap ends when the last one goes (a new tap is made
    on the next `tap_for`): an unpublished test pattern costs nothing, and a dropped one is
    collected. Every reader
    of a track, senders included, subscribes to its one tap (`tap_for`), so no two readers split
    its frames. Create it inside the running loop; when the source ends, the tap and its
    subscribers end.
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        _check_track(source, "Tap source")
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR", "a Tap must be created inside a running event loop"
            ) from None
        self._source = source
        self._own_reader = not isinstance(source, RemoteStreamTrack)
        self._reader = _GuardTrack(source) if self._own_reader else source
        self._listeners = asyncio.Event()  # a local tap waits on it while nobody subscribes
        self._latest: Frame | Packet | None = None
        self._seq = 0
        self._ended = False
        self._subscribers: weakref.WeakSet[TapTrack] = weakref.WeakSet()
        # The subscribers with a recv() waiting for the next frame, held strongly. asyncio
        # holds tasks only weakly: a task reading a track is held by the waiter future of the
        # subscriber's `_wakeup`, which the subscriber holds, which nothing else may hold (a
        # reader started from an event handler and forgotten). Unheld, that cycle is garbage
        # and the reader vanishes ("Task was destroyed but it is pending!") without a frame.
        # The tap itself stays alive while it reads (the loop holds its task, waiting on the
        # source; remote.py keeps a receiver's tap), so through this set a pending reader lives
        # as long as the track. Only pending reads: an idle subscriber (an iterator left by
        # `break`) stays weak, so dropping it still unsubscribes it, and a local tap whose
        # readers all left still ends. recv() removes itself however it returns.
        self._reading: set[TapTrack] = set()
        self._had_subscribers = False
        self.error: BaseException | None = None
        previous = _taps.get(source)
        if previous is not None and not previous.ended:
            logger.warning(
                "a second Tap on track %s splits its frames between them; use tap_for()",
                source.id,
            )
        _taps[source] = self  # Tap(x) and tap_for(x) agree
        self._task = self._loop.create_task(self._read(), name=f"peerix-tap-{source.id}")
        self._on_source_ended: Callable[[], object] | None = None
        if not self._own_reader:
            # RemoteStreamTrack.stop() does not wake a pending recv(): end the tap ourselves
            self._on_source_ended = self._task.cancel
            source.on("ended", self._on_source_ended)

    @property
    def kind(self) -> str:
        """The source's kind: "audio" or "video"."""
        return self._source.kind

    @property
    def source(self) -> MediaStreamTrack:
        """The track being drained."""
        return self._source

    @property
    def latest(self) -> Frame | Packet | None:
        """The most recent frame (an av VideoFrame/AudioFrame), or None before the first."""
        return self._latest

    @property
    def frames_received(self) -> int:
        """How many frames the tap has read from the source."""
        return self._seq

    @property
    def ended(self) -> bool:
        """True once the source ended or the tap was closed."""
        return self._ended

    @property
    def subscribers(self) -> list[TapTrack]:
        """The live subscriber tracks."""
        return list(self._subscribers)

    def subscribe(self, id: str | None = None, origin: TapTrack | None = None) -> TapTrack:
        """A new track following this tap (with its own `id`, e.g. the msid track id).

        With `origin` (another subscriber), the new track also ends when `origin` ends: a
        remote track that is removed ends every reader made from it, while the tap itself
        keeps draining the receiver for the next track on the same transceiver.
        """
        track = TapTrack(self, id)
        if self._ended or (origin is not None and origin.readyState != "live"):
            track.stop()
        else:
            self._subscribers.add(track)
            self._had_subscribers = True
            self._listeners.set()
            if origin is not None:
                origin._derived.add(track)
        return track

    async def _read(self) -> None:
        try:
            while True:
                if self._own_reader and not self._subscribers:
                    if self._had_subscribers:
                        # The last subscriber left (stopped or collected): end, rather than
                        # wait for the next. A waiting local tap would live forever: its task
                        # holds it, it holds its source, and `_taps` (keyed weakly by that
                        # source) holds it, so a dropped stream's tracks and this task would
                        # never go. The frame in flight is allowed to finish, not cancelled:
                        # cancelling a from_frames() source would close the user's generator.
                        break
                    self._listeners.clear()
                    await self._listeners.wait()
                    continue
                try:
                    frame = await self._reader.recv()
                except MediaStreamError:
                    break
                # subscribers may be sender tracks (forwarding): keep frames shareable
                self._latest = frame if self._own_reader else _shareable(frame)
                self._seq += 1
                self._notify()
        except Exception as e:  # a source that does not follow the track protocol
            self.error = e
            logger.error("tap on track %s failed: %r", self._source.id, e)
        finally:
            self._finish()

    def _notify(self) -> None:
        # a method, not a loop in _read(): a loop variable there would keep the last
        # subscriber alive in the coroutine's frame, and subscribers are held weakly
        for sub in list(self._subscribers):
            sub._wakeup.set()

    def _finish(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._own_reader:
            self._reader.stop()  # unsubscribe from the relay
        elif self._on_source_ended is not None and self._source.readyState == "live":
            self._source.remove_listener("ended", self._on_source_ended)
        for sub in list(self._subscribers):
            sub.stop()
        if _taps.get(self._source) is self:
            del _taps[self._source]

    async def aclose(self) -> None:
        """Stop reading and end every subscriber; safe to call more than once.

        Closing the tap of a remote track that is still live lets aiortc's queue grow again:
        close it when the connection closes, or call `tap_for()` again to get a new one.
        """
        self._task.cancel()
        if asyncio.get_running_loop() is self._loop:
            await asyncio.wait({self._task})
        self._finish()

    def __repr__(self) -> str:
        state = "ended" if self._ended else "live"
        return (
            f"Tap({self.kind} {self._source.id}, {state}, frames={self._seq},"
            f" subscribers={len(self._subscribers)})"
        )


_taps: weakref.WeakKeyDictionary[MediaStreamTrack, Tap] = weakref.WeakKeyDictionary()


def tap_for(track: MediaStreamTrack | Tap) -> Tap:
    """The open Tap whose source or subscriber is `track`, else a new Tap on `track`."""
    if isinstance(track, Tap):
        return track
    _check_track(track)
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None  # Tap() explains
    if isinstance(track, TapTrack) and not track.tap.ended and track.tap._loop is loop:
        return track.tap
    tap = _taps.get(track)
    if tap is None or tap.ended or tap._loop is not loop:
        tap = Tap(track)  # registers itself
    return tap


# ---------------------------------------------------------------------------------------------
# numpy readers


def _to_array(frame: Frame | Packet, format: str) -> np.ndarray:
    if isinstance(frame, VideoFrame):
        return frame.to_ndarray(format=format)
    if isinstance(frame, AudioFrame):
        return frame.to_ndarray()
    raise PeerixError(
        "PEER_MEDIASTREAM_ERROR",
        f"cannot convert {type(frame).__name__} to an array (is the track encoded?)",
    )


class FrameIterator:
    """Async iterator of numpy frames from one Tap subscription (see `frames`).

    Use `async with` or `aclose()` to unsubscribe early; an iterator that is dropped after
    `break` unsubscribes when it is garbage-collected (the tap holds idle subscribers weakly).
    While a step waits for a frame the tap holds it (and so the task awaiting it): a reader
    task nobody keeps, started from an event handler, runs as long as the track does.
    """

    def __init__(self, tap: Tap, format: str = "rgb24", origin: TapTrack | None = None) -> None:
        self._format = format
        self._track: TapTrack = tap.subscribe(origin=origin)

    @property
    def track(self) -> TapTrack:
        """The subscriber track (frames_returned, frames_dropped)."""
        return self._track

    def __aiter__(self) -> FrameIterator:
        return self

    async def __anext__(self) -> np.ndarray:
        try:
            frame = await self._track.recv()
        except MediaStreamError:
            raise StopAsyncIteration from None
        return _to_array(frame, self._format)

    def close(self) -> None:
        """Unsubscribe: the iterator ends."""
        self._track.stop()

    async def aclose(self) -> None:
        """Unsubscribe: the iterator ends."""
        self.close()

    async def __aenter__(self) -> FrameIterator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def frames(track: MediaStreamTrack | Tap, format: str = "rgb24") -> FrameIterator:
    """Iterate a track's frames as numpy arrays. Each step gives the newest frame; frames that
    arrive while the caller is busy are dropped, never queued. Video: HxWx3 (rgb24/bgr24),
    HxWx4 (rgba/bgra) or HxW (gray); audio: each frame's sample array. Ends with the track."""
    if format not in VIDEO_FORMATS:
        raise PeerixError(
            "PEER_MEDIASTREAM_ERROR", f"format must be one of {VIDEO_FORMATS}, got {format!r}"
        )
    origin = track if isinstance(track, TapTrack) else None
    return FrameIterator(tap_for(track), format, origin)


class FrameCallback:
    """Handle of a `frame_callback`: runs until the track ends, `stop()`/`aclose()`, or the
    function raises (then `error` holds the exception). Keeping the handle is optional: while
    it waits for a frame, the track's tap holds it (see `Tap`)."""

    def __init__(
        self,
        track: MediaStreamTrack | Tap,
        fn: Callable[[np.ndarray], Any],
        format: str = "rgb24",
    ) -> None:
        self._iter = frames(track, format)
        self._fn = fn
        self.frames_processed = 0
        self.error: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._run(), name="peerix-callback")

    @property
    def frames_skipped(self) -> int:
        """Frames dropped because `fn` was still busy."""
        return self._iter.track.frames_dropped

    @property
    def running(self) -> bool:
        """True until the callback has finished for any reason."""
        return not self._task.done()

    async def _run(self) -> None:
        try:
            async for array in self._iter:
                result = self._fn(array)
                if inspect.isawaitable(result):
                    await result
                self.frames_processed += 1
        except Exception as e:
            self.error = e
            logger.error("frame callback %r failed, stopping it: %r", self._fn, e, exc_info=e)
        finally:
            self._iter.close()

    async def wait(self) -> None:
        """Wait until the callback has finished (track ended, stopped or failed)."""
        await asyncio.wait({self._task})

    def stop(self) -> None:
        """Stop calling `fn` (the task ends at its next step)."""
        self._task.cancel()
        self._iter.close()

    async def aclose(self) -> None:
        """Stop and wait until the task has ended."""
        self.stop()
        await asyncio.wait({self._task})


def frame_callback(
    track: MediaStreamTrack | Tap, fn: Callable[[np.ndarray], Any], format: str = "rgb24"
) -> FrameCallback:
    """Call `fn(array)` (sync or async) for each frame of `track`, skipping frames while `fn`
    is busy. Exceptions from `fn` stop the callback and are kept in `handle.error`. A sync `fn`
    runs in the event loop: keep it short, or make it async and offload heavy work."""
    return FrameCallback(track, fn, format)
