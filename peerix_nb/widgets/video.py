"""VideoView: a video track shown inline, as JPEG frames pushed over the widget comm.

Why this path: a browser cannot always reach the kernel with WebRTC (Binder, remote kernels),
but the widget comm always works. Frames go kernel -> browser as binary buffers of custom
messages, JPEG-encoded by PyAV's mjpeg encoder (PyAV already comes with aiortc; it encodes
the decoder's YUV frames directly, ~1.2-1.6 ms for 640x480, no RGB conversion).

Flow control (after vispy/jupyter_rfb): every frame carries a sequence number and the
browser acknowledges it once drawn; at most `MAX_IN_FLIGHT` (2) frames are unacknowledged.
While the kernel waits for an ack it reads nothing: the track's Tap keeps only the newest
frame, so a slow browser makes frames drop in the kernel, never queue. Acks are cumulative
and per frame (not per view): the browser decodes each frame once per page and draws it on
every view of the widget, so one widget shown in several cells costs one stream; with several
pages open, the fastest page paces the kernel and slower pages keep only their newest frame.
An ack that never comes (page closed) frees its slot after `ack_timeout` seconds.

The browser says "rendered" when a view appears and reports its view count when one goes;
frames are pushed only while some view exists ("run all" race: a cell can run before the
browser rendered the widget).

Sound: given a MediaStream with an audio track, the view also plays it (widgets/audio.py's
AudioPump: PCM chunks into an AudioWorklet jitter buffer), with a mute toggle and a level
meter on the picture; `stats["audio"]` says what the page played. `audio=False` keeps it
silent. Each is sent as soon as the kernel has it and nothing delays the picture, so the sound
lags it by ~130-170 ms (bench/audio.py measures both latencies in one run): ~60 ms are
aiortc's audio jitter buffer (4 Opus packets held before decoding), ~60 ms the page's.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, cast

import anywidget
import av
import numpy as np
import traitlets

from ..media import (
    VIDEO_TIME_BASE,
    MediaStream,
    MediaStreamError,
    MediaStreamTrack,
    Tap,
    TapTrack,
    read_stamp,
    relayed,
)
from ._common import (
    Resources,
    check_options,
    count_views,
    describe,
    logger,
    running_loop,
    wait_trait,
)
from .audio import AudioPump, audio_track, with_audio_player

MAX_IN_FLIGHT = 2

VideoSource = MediaStream | MediaStreamTrack | Tap | None


class JpegEncoder:
    """Encodes av VideoFrames (any pixel format) to baseline JPEG with PyAV's mjpeg codec.

    `qscale` is the mjpeg quantizer (2 = best, 31 = smallest); 5 gives ~40 KB for a noisy
    640x480 camera frame and ~10 KB for the synthetic test pattern.
    """

    def __init__(self, qscale: int = 5) -> None:
        self.qscale = qscale
        self._context: Any = None
        self._size: tuple[int, int] | None = None

    def encode(self, frame: av.VideoFrame) -> bytes:
        # mjpeg's 4:2:0 needs even dimensions; yuvj420p is the full-range format JPEG uses.
        size = (max(2, frame.width & ~1), max(2, frame.height & ~1))
        if size != self._size:
            context = av.CodecContext.create("mjpeg", "w")
            context.width, context.height = size
            context.pix_fmt = "yuvj420p"
            context.time_base = VIDEO_TIME_BASE
            context.options = {"qmin": str(self.qscale), "qmax": str(self.qscale)}
            self._context, self._size = context, size
        image = frame.reformat(width=size[0], height=size[1], format="yuvj420p")
        image.pts = None
        packets = self._context.encode(image)
        return b"".join(bytes(p) for p in packets)


def _stamp_time(frame: av.VideoFrame) -> float | None:
    """The send time stamped on a synthetic frame (media.read_stamp), read from luma only."""
    if frame.format.name in ("yuv420p", "yuvj420p", "nv12", "gray"):
        plane = frame.planes[0]
        luma = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        image: np.ndarray[Any, Any] = luma[:, : plane.width]
    else:
        image = frame.to_ndarray(format="gray")
    stamp = read_stamp(image)
    return stamp.sent_at if stamp is not None else None


def video_track(source: VideoSource) -> MediaStreamTrack | None:
    """The track a VideoView shows for `source`: a video track, a stream's first live video
    track (None when it has none yet), or a Tap's source."""
    if source is None:
        return None
    if isinstance(source, Tap):
        source = source.source
    if isinstance(source, MediaStream):
        tracks = source.video_tracks
        live = [t for t in tracks if t.readyState == "live"]
        return (live or tracks)[0] if tracks else None
    if isinstance(source, MediaStreamTrack):
        if source.kind != "video":
            raise ValueError(f"VideoView shows video, got a {source.kind} track")
        return source
    raise TypeError(
        "VideoView needs a peerix_nb MediaStream, a video MediaStreamTrack or a Tap, "
        f"got {type(source).__name__}"
    )


@dataclass(slots=True)
class _Sent:
    at: float  # time.monotonic() when sent
    wall: float  # time.time() when sent
    stamp: float | None  # synthetic capture time, if the frame had one


class VideoView(anywidget.AnyWidget):
    """Shows a video track inline (fps and latency in a corner); works wherever widgets do.

    `VideoView(track_or_stream, max_fps=30)`: a MediaStream shows its first video track and
    plays its first audio track (`audio=False`: picture only; `muted` toggles the sound, also
    from the page; `stats["audio"]` says what the page played, as AudioView's). The view stops
    by itself when the track ends and when the widget is closed; `set_source()` switches to
    another track. Local streams (what you publish) can be previewed too.
    """

    _esm = with_audio_player("video.js")
    _css = "\n".join(
        pathlib.Path(__file__).with_name(name).read_text(encoding="utf-8")
        for name in ("video.css", "audio.css")
    )

    status = traitlets.Unicode("waiting").tag(sync=True)  # waiting|live|paused|no video|ended|error
    message = traitlets.Unicode("").tag(sync=True)  # why, for humans (shown over the picture)
    title = traitlets.Unicode("").tag(sync=True)  # shown top-left, e.g. "bob · camera"
    max_fps = traitlets.Float(30.0).tag(sync=True)
    # A knob for tests and demos: the browser delays each ack by this much (a slow browser).
    ack_delay_ms = traitlets.Int(0).tag(sync=True)
    muted = traitlets.Bool(False).tag(sync=True)  # the sound of a stream with audio

    def __init__(
        self,
        source: VideoSource = None,
        max_fps: float = 30,
        *,
        title: str = "",
        ack_timeout: float = 3.0,
        rendered_timeout: float = 10.0,
        qscale: int = 5,
        audio: bool = True,
        muted: bool = False,
        **kwargs: Any,
    ) -> None:
        for name, value in (
            ("max_fps", max_fps),
            ("ack_timeout", ack_timeout),
            ("rendered_timeout", rendered_timeout),
        ):
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if not isinstance(qscale, int) or isinstance(qscale, bool) or not 2 <= qscale <= 31:
            raise ValueError(
                f"qscale must be an integer from 2 (best) to 31 (smallest), got {qscale!r}"
            )
        if not isinstance(audio, bool) or not isinstance(muted, bool):
            raise TypeError(f"audio and muted must be True or False, got {audio!r}, {muted!r}")
        track = video_track(source)  # raises on a bad source before any comm opens
        check_options(type(self), kwargs)
        super().__init__(max_fps=float(max_fps), title=title, muted=muted, **kwargs)
        self.ack_timeout = ack_timeout
        self.rendered_timeout = rendered_timeout
        self._encoder = JpegEncoder(qscale)
        self._resources = Resources(self._show_error)
        self._source: VideoSource = source
        self._track = track
        self._views: dict[str, int] = {}  # browser page (frontend id) -> views on that page
        self._rendered = asyncio.Event()  # set while any view exists
        self._credit = asyncio.Event()  # set on each ack (and on any change)
        self._changed = asyncio.Event()  # source or views changed
        self._sub: TapTrack | None = None
        self._inflight: OrderedDict[int, _Sent] = OrderedDict()
        self._seq = 0
        self._fps_skipped = 0  # frames skipped to stay under max_fps
        self._ack_times: deque[float] = deque(maxlen=512)
        self._first_ack: float | None = None
        self._encode_ms: deque[float] = deque(maxlen=60)
        self._rtt_ms: float | None = None
        self._latency_ms: float | None = None
        self._latency_kind = (
            ""  # "e2e": capture -> screen (stamped frames); "kernel": send -> screen
        )
        self._stamp_misses = 0
        self.frames_sent = 0
        self.frames_acked = 0
        self.frames_lost = 0  # sent but never acked within ack_timeout
        self.max_in_flight = 0
        self.bytes_sent = 0
        self.latency_samples: deque[float] = deque(maxlen=600)  # ms, capture -> drawn
        self._dropped_before = 0  # frames skipped by earlier subscriptions
        self.audio = audio
        self._audio = AudioPump(self, self._resources)
        self._audio.set_track(self._sound_track(source))
        self.on_msg(self._resources.hop(self._on_browser_message))
        self._task = self._resources.spawn(self._run(), "video") if running_loop() else None
        if self._task is not None:
            self._resources.spawn(self._audio.run(), "video-audio")
        if self._task is None:
            self._set_status("error", "VideoView needs a running asyncio loop (a Jupyter kernel)")

    @traitlets.validate("max_fps")
    def _valid_fps(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not value > 0:
            raise traitlets.TraitError(f"max_fps must be > 0, got {value!r}")
        return value

    # -- public -----------------------------------------------------------------------------
    @property
    def track(self) -> MediaStreamTrack | None:
        """The video track being shown (None: waiting for one)."""
        return self._track

    @property
    def running(self) -> bool:
        """True until the view is closed (it keeps waiting for views or tracks meanwhile)."""
        return not self._resources.closed and self._task is not None and not self._task.done()

    @property
    def in_flight(self) -> int:
        """Frames sent and not yet acknowledged by the browser."""
        return len(self._inflight)

    @property
    def frames_dropped(self) -> int:
        """Source frames not sent: the browser was slower than the track (they were replaced
        by newer ones in the Tap while the kernel waited for an ack; counted at the next read),
        or max_fps is lower than the track's rate."""
        current = self._sub.frames_dropped if self._sub is not None else 0
        return self._dropped_before + current + self._fps_skipped

    @property
    def fps(self) -> float:
        """Frames acknowledged per second over the last two seconds."""
        if self._first_ack is None:
            return 0.0
        now = time.monotonic()
        recent = sum(1 for t in self._ack_times if now - t <= 2.0)
        return recent / max(min(2.0, now - self._first_ack), 0.1)

    @property
    def stats(self) -> dict[str, Any]:
        """Kernel-side counters of the frame flow (sent/acked/dropped/lost, fps, latency)."""
        encode = list(self._encode_ms)
        return {
            "status": self.status,
            "views": sum(self._views.values()),
            "frames_sent": self.frames_sent,
            "frames_acked": self.frames_acked,
            "frames_dropped": self.frames_dropped,
            "frames_lost": self.frames_lost,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "bytes_sent": self.bytes_sent,
            "fps": round(self.fps, 2),
            "encode_ms": round(sum(encode) / len(encode), 3) if encode else None,
            "rtt_ms": None if self._rtt_ms is None else round(self._rtt_ms, 2),
            "latency_ms": None if self._latency_ms is None else round(self._latency_ms, 2),
            "latency_kind": self._latency_kind,
            "audio": self._audio.stats if self._audio.track is not None else None,
        }

    @property
    def audio_latency_samples(self) -> deque[float]:
        """Capture-to-speaker latencies (ms) of the stamped sound the page played."""
        return self._audio.latency_samples

    def _sound_track(self, source: VideoSource) -> MediaStreamTrack | None:
        """The audio track played with the picture: a stream's first one, unless audio=False."""
        if not self.audio or not isinstance(source, MediaStream):
            return None
        return audio_track(source, "VideoView")

    def set_source(self, source: VideoSource) -> None:
        """Show another track or stream (None: show nothing until given one)."""
        track = video_track(source)
        self._source = source
        self._audio.set_track(self._sound_track(source))
        if track is self._track:
            return
        self._track = track
        self._interrupt()

    def refresh_source(self) -> None:
        """Pick the source stream's video track again (after tracks were added or removed)."""
        self.set_source(self._source)

    async def wait_rendered(self, timeout: float | None = None) -> None:
        """Wait until some browser view of this widget exists."""
        await asyncio.wait_for(self._rendered.wait(), timeout)

    async def wait_status(self, status: str, timeout: float | None = None) -> None:
        """Wait until the view's status is `status` ("live", "ended", ...)."""
        await wait_trait(self, "status", status, timeout)

    def close(self) -> None:
        """Stop pushing frames, release the track and close the widget."""
        resources = getattr(self, "_resources", None)  # None: __init__ raised (bad source)
        if resources is not None:
            resources.close()
            self._audio.close()
            if self._sub is not None:
                self._sub.stop()
        super().close()

    # -- browser messages -------------------------------------------------------------------
    def _on_browser_message(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        frontend = str(content.get("frontend", ""))
        if kind in ("rendered", "views"):
            count_views(self._views, frontend, content)
            if frontend not in self._views:
                self._audio.forget_page(frontend)
            self._audio.set_rendered(bool(self._views))
            if self._views:
                self._rendered.set()
            else:
                self._rendered.clear()
                self._interrupt()
            self._changed.set()
            self._credit.set()
        elif kind == "ack":
            self._on_ack(int(content.get("seq", -1)), float(content.get("delay", 0) or 0))
        else:
            self._audio.handle(content)

    def _on_ack(self, seq: int, delay_ms: float) -> None:
        now = time.monotonic()
        acked = [s for s in self._inflight if s <= seq]  # acks are cumulative
        if not acked:
            return  # a duplicate (another page) or one that already timed out
        for s in acked:
            sent = self._inflight.pop(s)
            self.frames_acked += 1
            self._ack_times.append(now)
            if self._first_ack is None:
                self._first_ack = now
            if s != seq:
                continue
            # the browser drew `seq`, then waited `delay_ms` (a deliberately slow browser)
            rtt = max(0.0, (now - sent.at) * 1000.0 - delay_ms)
            self._rtt_ms = rtt if self._rtt_ms is None else 0.8 * self._rtt_ms + 0.2 * rtt
            if sent.stamp is not None:
                self._latency_ms = (sent.wall - sent.stamp) * 1000.0 + rtt / 2.0
                self._latency_kind = "e2e"
            else:
                self._latency_ms = rtt / 2.0
                self._latency_kind = "kernel"
            self.latency_samples.append(self._latency_ms)
        self._credit.set()

    # -- the frame pump ---------------------------------------------------------------------
    def _interrupt(self) -> None:
        """Wake the pump: the source or the views changed."""
        self._changed.set()
        self._credit.set()
        if self._sub is not None:
            self._sub.stop()  # wakes a pending recv() with MediaStreamError

    async def _run(self) -> None:
        ever_rendered = warned = False
        while True:
            self._changed.clear()
            if not self._rendered.is_set():
                if ever_rendered or warned:
                    if ever_rendered:
                        self._set_status("paused", "no view is showing this widget")
                    await self._rendered.wait()
                    continue
                self._set_status("waiting", "waiting for the browser to show the widget")
                try:
                    await asyncio.wait_for(self._rendered.wait(), self.rendered_timeout)
                except TimeoutError:
                    warned = True
                    self._set_status(
                        "waiting",
                        f"no view rendered within {self.rendered_timeout:g} s: frames start when "
                        "the widget is displayed",
                    )
                    logger.warning("VideoView %s: %s", self.model_id, self.message)
                continue
            ever_rendered = True
            track = self._track
            if track is None:
                self._set_status("no video", "waiting for a video track")
                await self._changed.wait()
                continue
            if track.readyState == "ended" or await self._show(track):
                self._set_status("ended", "the track ended")
                await self._changed.wait()  # until set_source() or close()

    async def _show(self, track: MediaStreamTrack) -> bool:
        """Push frames of `track` until it ends (True) or something changed (False)."""
        # relayed(): a reader of a remote track ends when that track ends, though the tap
        # keeps draining its transceiver for the next one (which may be another stream).
        sub = self._sub = relayed(track)
        tap = sub.tap
        self._stamp_misses = 0  # a new track may carry stamps (a synthetic() one)
        self._set_status("live", "")
        try:
            await self._push_frames(sub)
        except MediaStreamError:
            pass
        finally:
            self._dropped_before += sub.frames_dropped
            sub.stop()
            self._sub = None
            self._inflight.clear()
            # A local tap ends by itself once nobody reads it (media.Tap), after the frame in
            # flight: closing it here would cancel that read, and with it a from_frames() source.
            ended = tap.ended or track.readyState == "ended"
        return ended

    async def _push_frames(self, sub: TapTrack) -> None:
        loop = asyncio.get_running_loop()
        due: float | None = None  # when max_fps allows the next frame (loop time)
        while True:
            await self._wait_credit(sub)
            # The newest frame (older ones were dropped by the Tap); a video track's, so a VideoFrame.
            frame = cast(av.VideoFrame, await sub.recv())
            if not self._rendered.is_set():
                raise MediaStreamError  # the last view went away: back to waiting
            # max_fps on a schedule, not "1/max_fps after the last send": a source running at
            # max_fps with some jitter then loses no frames and none waits (measured: pacing
            # after the last send dropped 10 % of a 30 fps source and added ~30 ms of latency).
            period = 1.0 / self.max_fps
            now = loop.time()
            if due is None:
                due = now
            if now < due - period / 4:  # early beyond jitter: skip, the Tap has a newer one next
                self._fps_skipped += 1
                continue
            due = max(due + period, now + period / 2)  # after a stall: no catch-up burst
            started = time.perf_counter()
            jpeg = self._encoder.encode(frame)
            stamp = self._read_stamp(frame)
            self._encode_ms.append((time.perf_counter() - started) * 1000.0)
            self._seq += 1
            self._inflight[self._seq] = _Sent(time.monotonic(), time.time(), stamp)
            self.max_in_flight = max(self.max_in_flight, len(self._inflight))
            self.frames_sent += 1
            self.bytes_sent += len(jpeg)
            content = {
                "type": "frame",
                "seq": self._seq,
                "width": frame.width,
                "height": frame.height,
                "latency": None if self._latency_ms is None else round(self._latency_ms, 1),
                "latency_kind": self._latency_kind,
            }
            self.send(content, buffers=[jpeg])

    async def _wait_credit(self, sub: TapTrack) -> None:
        while len(self._inflight) >= MAX_IN_FLIGHT:
            if sub.readyState != "live":
                raise MediaStreamError
            self._credit.clear()
            oldest = next(iter(self._inflight.values()))
            remaining = oldest.at + self.ack_timeout - time.monotonic()
            if remaining <= 0:
                # the page that should ack is gone (closed tab, cleared output): free the slots
                self.frames_lost += len(self._inflight)
                self._inflight.clear()
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._credit.wait(), remaining)

    def _read_stamp(self, frame: av.VideoFrame) -> float | None:
        if self._stamp_misses >= 30:
            return None  # not a synthetic source: stop looking
        try:
            stamp = _stamp_time(frame)
        except Exception:
            stamp = None
        self._stamp_misses = 0 if stamp is not None else self._stamp_misses + 1
        return stamp

    # -- showing state ----------------------------------------------------------------------
    def _set_status(self, status: str, message: str) -> None:
        if self._resources.closed:
            return
        with self.hold_sync():
            self.status = status
            self.message = message

    def _show_error(self, error: BaseException, where: str) -> None:
        self._set_status("error", describe(error))


__all__ = ["MAX_IN_FLIGHT", "JpegEncoder", "VideoView", "video_track"]
