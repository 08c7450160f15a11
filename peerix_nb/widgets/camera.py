"""from_widget: the browser's camera and microphone (an ipywebrtc stream widget) as tracks in
the kernel.

The camera lives in the browser: `ipywebrtc.CameraStream` calls `getUserMedia` there, and the
kernel never sees the device. Two small anywidgets (camera.js beside this file) carry it over
the widget comm:
- pictures, pulled: `CameraFrames` asks for a frame, the page draws the stream's current frame
  on a canvas, encodes it (JPEG by default) and sends it back, and PyAV decodes it into a numpy
  RGB array here; `camera_stream()` wraps that in `media.from_frames` (10-30 fps at 640x480);
- sound, pushed: `AudioChunks` asks once, then the page's AudioWorklet sends 20 ms chunks of
  48 kHz s16 PCM, acknowledged in a bounded window, into a `WidgetAudioTrack`.
`from_widget()` puts both in one MediaStream, which can be published, viewed and read like any
other. Not WebRTC from the browser: it works wherever widgets work (Binder, remote kernels).

Why not ipywebrtc's ImageRecorder: it delivers each image by syncing widget state from the
page, and ipywidgets' page side throttles state sync until the kernel reports "idle", which
ipykernel (7.4) does not do for messages it handles while a cell awaits; after one snapshot
taken during an awaiting cell, the recorder never sends again. Custom messages (used here, as
by VideoView) are not throttled.

It needs a browser showing the notebook (and the user's permission to use the camera and
microphone): without one (nbclient, CI) nothing ever comes back and the tracks simply produce
no frame.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import numbers
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import anywidget
import av
import ipywidgets
import numpy as np
import traitlets
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame
from av.frame import Frame
from ipywidgets import widget_serialization

from ..media import MediaSourceError, MediaStream, from_frames
from ..media.sources import AUDIO_RATE, AUDIO_SAMPLES, AUDIO_TIME_BASE
from ._common import Resources, check_options, running_loop

if TYPE_CHECKING:
    import ipywebrtc
    from av.video.codeccontext import VideoCodecContext

logger = logging.getLogger("peerix_nb.widgets")

#: Image formats the browser can encode a frame in (canvas.toBlob), and their PyAV decoders.
DECODERS = {"jpeg": "mjpeg", "png": "png", "webp": "webp"}


def decode_image(data: bytes, format: str = "jpeg") -> np.ndarray:
    """An encoded image (JPEG, PNG or WebP bytes) as an HxWx3 uint8 RGB array, with PyAV."""
    if format not in DECODERS:
        raise ValueError(f"format must be one of {', '.join(DECODERS)}, got {format!r}")
    codec = cast("VideoCodecContext", av.CodecContext.create(DECODERS[format], "r"))
    try:
        decoded = codec.decode(av.Packet(bytes(data)))
    except av.FFmpegError as error:
        raise ValueError(
            f"could not decode a {format} image of {len(data)} bytes: {error}"
        ) from None
    if not decoded:
        raise ValueError(f"could not decode a {format} image of {len(data)} bytes")
    rgb: np.ndarray = decoded[0].to_ndarray(format="rgb24")
    return rgb


def _check_camera(camera: Any) -> None:
    if not isinstance(camera, ipywidgets.Widget) or camera._model_module != "jupyter-webrtc":
        raise TypeError(
            "expected an ipywebrtc stream widget (CameraStream, VideoStream, WidgetStream, ...; "
            f"pip install ipywebrtc), got {type(camera).__name__}"
        )


class CameraFrames(anywidget.AnyWidget):
    """Frames of an ipywebrtc `CameraStream` as numpy RGB arrays, one per `await grab()`.

    Also a frame source for `media.from_frames` (`await frames(index, t)` grabs a frame). The
    widget needs no view: creating it is enough, in a notebook open in a browser. A request
    that is not answered within `retry` seconds is sent again (the page may not have loaded
    the widget yet); after `warn_after` seconds without any frame, a warning is logged once
    (logger `peerix_nb.widgets`). An error from the page (camera permission denied, no camera)
    raises `RuntimeError`. `close()` stops it (the camera itself stays on).
    """

    _esm = pathlib.Path(__file__).with_name("camera.js")

    camera = traitlets.Instance(ipywidgets.Widget).tag(sync=True, **widget_serialization)

    def __init__(
        self,
        camera: ipywebrtc.CameraStream,
        *,
        format: str = "jpeg",
        quality: float = 0.85,
        retry: float = 1.0,
        warn_after: float = 10.0,
        **kwargs: Any,
    ) -> None:
        _check_camera(camera)
        if format not in DECODERS:
            raise ValueError(f"format must be one of {', '.join(DECODERS)}, got {format!r}")
        if not 0 < quality <= 1:
            raise ValueError(f"quality must be in (0, 1], got {quality!r}")
        check_options(type(self), kwargs)
        super().__init__(camera=camera, **kwargs)
        self.format = format
        self.quality = quality
        self.retry = retry
        self.warn_after = warn_after
        self.frames_received = 0
        self.latest: np.ndarray | None = None
        self.closed = False
        self._seq = 0
        self._pending: asyncio.Future[tuple[dict[str, Any], bytes]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned = False
        self.on_msg(self._on_browser_message)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<CameraFrames {self.format} {state}, {self.frames_received} frames>"

    async def grab(self) -> np.ndarray:
        """Ask the page for the camera's current frame and wait for it (HxWx3 uint8 RGB)."""
        if self.closed:
            raise RuntimeError("this CameraFrames is closed")
        if self._pending is not None:
            raise RuntimeError("grab() is already waiting for a frame: await one at a time")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._pending = pending = loop.create_future()
        waited = 0.0
        try:
            while True:
                self._request()
                try:
                    content, data = await asyncio.wait_for(asyncio.shield(pending), self.retry)
                    break
                except TimeoutError:
                    waited += self.retry
                    if not self._warned and waited >= self.warn_after and self.latest is None:
                        self._warned = True
                        logger.warning(
                            "no camera frame after %.0f s: is the notebook open in a browser, "
                            "and has it been allowed to use the camera?",
                            waited,
                        )
        finally:
            self._pending = None
        if content.get("type") == "error":
            raise RuntimeError(f"the browser could not grab a camera frame: {content['message']}")
        image = decode_image(data, self.format)
        self.latest = image
        self.frames_received += 1
        return image

    async def __call__(self, index: int, t: float) -> np.ndarray:
        """The `from_frames` source signature: each frame is a new grab."""
        return await self.grab()

    def close(self) -> None:
        """Stop grabbing frames and close the widget (not the camera)."""
        if getattr(self, "closed", True):  # closed, or __init__ did not get that far
            super().close()
            return
        self.closed = True
        pending, loop = self._pending, self._loop
        if pending is not None and loop is not None:
            loop.call_soon_threadsafe(
                _settle, pending, ({"type": "error", "message": "closed"}, b""), True
            )
        super().close()

    # -- the page protocol ------------------------------------------------------------------
    def _request(self) -> None:
        self._seq += 1
        self.send(
            {"type": "grab", "seq": self._seq, "format": self.format, "quality": self.quality}
        )

    def _on_browser_message(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        # Runs where ipykernel handles the comm message: hand over to the loop thread-safely.
        if not isinstance(content, dict) or content.get("type") not in ("frame", "error"):
            return
        if content["type"] == "frame" and not buffers:
            return
        pending, loop = self._pending, self._loop
        if pending is None or loop is None:
            return  # an answer to a request already answered (a retry crossed it)
        data = bytes(buffers[0]) if buffers else b""
        if content["type"] == "error":
            content = {"type": "error", "message": str(content.get("message", "unknown error"))}
        loop.call_soon_threadsafe(_settle, pending, (content, data), False)


def _settle(
    future: asyncio.Future[tuple[dict[str, Any], bytes]],
    result: tuple[dict[str, Any], bytes],
    closing: bool,
) -> None:
    if future.done():
        return
    if closing:
        future.set_exception(RuntimeError("this CameraFrames was closed"))
    else:
        future.set_result(result)


# -- the microphone: audio pushed by the page -------------------------------------------------

#: What the page sends: 48 kHz s16 PCM in whole 20 ms frames (960 samples per channel).
AUDIO_CHANNELS = (1, 2)
#: Frames the kernel keeps for a slow reader (200 ms); past that the oldest is dropped.
AUDIO_QUEUE_FRAMES = 10
#: The kernel acknowledges every this many 20 ms frames (a message carries one or more); the
#: page keeps at most `window` frames unacknowledged.
AUDIO_ACK_FRAMES = 5


class WidgetAudioTrack(MediaStreamTrack):
    """An audio track fed with PCM chunks that a page pushes (see `AudioChunks`).

    `recv()` returns the frames in arrival order, paced by arrival (no clock of its own): 20 ms
    `AudioFrame`s, 48 kHz, s16, mono (or stereo, as the page sends), `pts` in samples since the
    page started capturing (`time_base` 1/48000), so a chunk the page dropped leaves a gap in
    `pts` instead of shifting later frames. At most `queue_frames` wait for a slow reader; past
    that the oldest is dropped and counted in `frames_dropped`. A chunk that is not valid PCM
    is refused (`chunks_rejected`, `rejection` says why) without ending the track; an error
    from the page (no microphone, permission denied) ends it with `error` (a
    `MediaSourceError`), which `recv()` then raises.
    """

    kind = "audio"

    def __init__(self, queue_frames: int = AUDIO_QUEUE_FRAMES) -> None:
        super().__init__()
        if (
            not isinstance(queue_frames, numbers.Integral)
            or isinstance(queue_frames, bool)
            or queue_frames < 1
        ):
            raise ValueError(f"queue_frames must be an integer >= 1, got {queue_frames!r}")
        self.queue_frames: int = int(queue_frames)
        self._frames: collections.deque[AudioFrame] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._next_pts: int = 0  # the lowest pts the next chunk may have
        self.chunks_received: int = 0
        self.frames_received: int = 0
        self.frames_dropped: int = 0  # dropped here: the reader was slower than the page
        self.page_dropped: int = 0  # dropped in the page (it reports its own count)
        self.chunks_rejected: int = 0
        self.rejection: str | None = None  # why the last chunk was refused
        self.error: MediaSourceError | None = None
        #: Called at the first `recv()`: the source starts then, so a track nobody reads (a
        #: CameraStream's default audio, when only the pictures are used) captures nothing.
        self.on_demand: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return (
            f"<WidgetAudioTrack {self.readyState}, {self.frames_received} frames, "
            f"{self.frames_dropped + self.page_dropped} dropped, id={self.id}>"
        )

    @property
    def next_pts(self) -> int:
        """The lowest pts the next chunk may have: where the samples taken so far end."""
        return self._next_pts

    @property
    def queued(self) -> int:
        """Frames waiting for `recv()`."""
        return len(self._frames)

    def push(self, header: dict[str, Any], data: bytes) -> int:
        """Take one chunk from the page: `header` (`rate`, `channels`, `pts`, `dropped`) and
        `data`, little-endian s16 samples (interleaved if stereo) of whole 20 ms frames. Returns
        how many frames it made; a bad chunk raises `MediaSourceError` saying what is wrong."""
        if self.readyState != "live":
            return 0
        rate, channels, pts = header.get("rate"), header.get("channels"), header.get("pts")
        if rate != AUDIO_RATE:
            raise MediaSourceError(f"audio chunk at {rate!r} Hz: the kernel takes {AUDIO_RATE}")
        if channels not in AUDIO_CHANNELS:
            raise MediaSourceError(f"audio chunk with {channels!r} channels: 1 or 2 expected")
        if not isinstance(pts, int) or isinstance(pts, bool) or pts < self._next_pts:
            raise MediaSourceError(
                f"audio chunk pts {pts!r}: expected an integer >= {self._next_pts} (samples)"
            )
        frame_bytes = 2 * channels * AUDIO_SAMPLES
        if not data or len(data) % frame_bytes:
            raise MediaSourceError(
                f"audio chunk of {len(data)} bytes: expected whole 20 ms frames of {frame_bytes}"
                f" bytes ({AUDIO_SAMPLES} s16 samples x {channels} channel(s))"
            )
        dropped = header.get("dropped", 0)
        if isinstance(dropped, int) and dropped > self.page_dropped:
            self.page_dropped = dropped
        samples = np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)
        layout = "mono" if channels == 1 else "stereo"
        count: int = len(data) // frame_bytes
        per_frame = AUDIO_SAMPLES * channels
        for i in range(count):
            chunk = samples[i * per_frame : (i + 1) * per_frame].reshape(1, -1)
            frame = AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate = AUDIO_RATE
            frame.pts = pts + i * AUDIO_SAMPLES
            frame.time_base = AUDIO_TIME_BASE
            if len(self._frames) >= self.queue_frames:
                self._frames.popleft()
                self.frames_dropped += 1
            self._frames.append(frame)
        self._next_pts = pts + count * AUDIO_SAMPLES
        self.chunks_received += 1
        self.frames_received += count
        self._wake()
        return count

    def reject(self, error: MediaSourceError) -> None:
        """Count a refused chunk; the first refusal of each kind is logged (no traceback)."""
        self.chunks_rejected += 1
        if error.message != self.rejection:
            logger.error("audio track %s refused a chunk from the page: %s", self.id, error.message)
        self.rejection = error.message

    def fail(self, message: str) -> None:
        """End the track with a `MediaSourceError` (an error the page reported)."""
        if self.readyState != "live":
            return
        self.error = MediaSourceError(message)
        logger.error("audio track %s ended: %s", self.id, message)
        self.stop()

    async def recv(self) -> Frame:
        demand, self.on_demand = self.on_demand, None
        if demand is not None:
            demand()
        while True:
            if self.readyState != "live":
                raise self.error or MediaStreamError
            if self._frames:
                return self._frames.popleft()
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter

    def stop(self) -> None:
        """End the track: `recv()` raises, the page stops capturing (its widget closes)."""
        self._frames.clear()
        super().stop()
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class AudioChunks(anywidget.AnyWidget):
    """The audio of an ipywebrtc stream widget, pushed by the page into `track` (an aiortc
    audio track, `WidgetAudioTrack`).

    When `track` is first read, the kernel asks the page to capture (again every `retry`
    seconds until a chunk comes: the page may not have loaded the widget yet; after
    `warn_after` seconds without one a warning is logged once). The page (camera.js) captures
    the stream's audio with an AudioWorklet at 48 kHz and sends 20 ms chunks of s16 PCM as
    binary custom messages: one per message while the kernel keeps up, several in one when it
    lags. Bounded on both ends: the kernel acknowledges what it took; the page keeps at most
    `window` chunks (1 s) unacknowledged and 25 more waiting, then drops the oldest (counted in
    `track.page_dropped`); the kernel keeps at most `queue_frames` for a slow reader
    (`track.frames_dropped`). When several pages show the notebook, the first that sends is
    heard and the others are told to stop; after `source_timeout` seconds without a chunk
    from it (the page was reloaded or closed), every page is asked again. Stopping the track
    closes the widget and the page's capture (the microphone itself belongs to the ipywebrtc
    widget and stays on).
    """

    _esm = pathlib.Path(__file__).with_name("camera.js")

    camera = traitlets.Instance(ipywidgets.Widget).tag(sync=True, **widget_serialization)

    def __init__(
        self,
        camera: ipywebrtc.MediaStream,
        *,
        queue_frames: int = AUDIO_QUEUE_FRAMES,
        window: int = 50,
        retry: float = 1.0,
        warn_after: float = 10.0,
        source_timeout: float = 5.0,
        **kwargs: Any,
    ) -> None:
        _check_camera(camera)
        if not isinstance(window, numbers.Integral) or isinstance(window, bool) or window < 1:
            raise ValueError(f"window must be an integer >= 1 (chunks), got {window!r}")
        for name, value in (
            ("retry", retry),
            ("warn_after", warn_after),
            ("source_timeout", source_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        track = WidgetAudioTrack(queue_frames)
        check_options(type(self), kwargs)
        super().__init__(camera=camera, **kwargs)
        self.track: WidgetAudioTrack = track
        self.window: int = int(window)
        self.retry: float = float(retry)
        self.warn_after: float = float(warn_after)
        self.source_timeout: float = float(source_timeout)
        self.closed: bool = False
        self._source: str | None = None  # the page that is heard
        self._offset: int = 0  # added to its pts: a page counts from 0, the track goes on
        self._last_chunk: float = 0.0
        self._unacked: int = 0  # frames taken since the last ack
        self._asked_at: float | None = None
        self._warned: bool = False
        self._resources: Resources = Resources(self._on_error)
        self.on_msg(self._resources.hop(self._on_browser_message))
        track.on("ended", self.close)
        track.on_demand = self._listen  # capture when the track is first read

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<AudioChunks {state}, {self.track!r}>"

    def close(self) -> None:
        """Stop the page's capture, end the track and close the widget."""
        if getattr(self, "closed", True):  # closed, or __init__ did not get that far
            super().close()
            return
        self.closed = True
        self._resources.close()
        with contextlib.suppress(Exception):  # the comm may be gone already
            self.send({"type": "stop"})
        self.track.stop()
        super().close()

    def _on_error(self, error: BaseException, where: str) -> None:
        pass  # Resources already logged it; the track's counters say the rest

    def _listen(self) -> None:
        """Ask the pages to capture, and again every `retry` s until a chunk has come."""
        if self.closed or self._source is not None:
            return
        self.send({"type": "listen", "rate": AUDIO_RATE, "window": self.window})
        loop = running_loop()
        if loop is None:
            return  # no loop (a plain script): asked once
        now = loop.time()
        if self._asked_at is None:
            self._asked_at = now
        elif not self._warned and now - self._asked_at >= self.warn_after:
            self._warned = True
            logger.warning(
                "no audio from the page after %.0f s: is the notebook open in a browser, and "
                "has it been allowed to use the microphone?",
                now - self._asked_at,
            )
        self._resources.later(self.retry, self._listen)

    def _watch(self) -> None:
        """While a page is heard: if it has been silent for `source_timeout`, ask again."""
        loop = running_loop()
        if self.closed or self._source is None or loop is None:
            return
        silent = loop.time() - self._last_chunk
        if silent < self.source_timeout:
            self._resources.later(self.retry, self._watch)
            return
        logger.warning("no audio from the page for %.0f s: asking every page again", silent)
        self._source = None
        self._asked_at = None
        self._listen()

    def _on_browser_message(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        if self.closed or not isinstance(content, dict):
            return
        kind, frontend = content.get("type"), str(content.get("frontend", ""))
        if kind not in ("audio", "error"):
            return
        if self._source is None:
            self._source = frontend  # the first page that speaks is heard
            self._offset = self.track.next_pts
            self._resources.later(self.retry, self._watch)
        elif frontend != self._source:
            self.send({"type": "stop", "to": frontend})
            return
        loop = running_loop()
        self._last_chunk = loop.time() if loop is not None else 0.0
        if kind == "error":
            message = str(content.get("message") or "unknown error")
            self.track.fail(f"the browser could not capture the audio: {message}")
            return
        header, pts = content, content.get("pts")
        if isinstance(pts, int) and not isinstance(pts, bool):
            header = {**content, "pts": pts + self._offset}
        try:
            count = self.track.push(header, bytes(buffers[0]) if buffers else b"")
        except MediaSourceError as error:
            self.track.reject(error)
            count = 1
        self._unacked += max(count, 1)
        seq = content.get("seq")
        if isinstance(seq, int) and self._unacked >= AUDIO_ACK_FRAMES:
            self._unacked = 0  # cumulative: every message up to `seq` is taken
            self.send({"type": "ack", "seq": seq, "to": frontend})


def camera_stream(
    camera: ipywebrtc.CameraStream,
    fps: float = 10,
    *,
    format: str = "jpeg",
    quality: float = 0.85,
) -> MediaStream:
    """A one-video-track MediaStream of `camera`'s frames, at most `fps` per second.

    Publish it (`await peer.publish(stream, label="camera")`), preview it with `VideoView`, or
    read it with `media.frames`. The `CameraFrames` widget behind it is closed when the track
    is stopped (`stream.stop()`). Frames come only while the notebook is open in a browser that
    may use the camera.
    """
    source = CameraFrames(camera, format=format, quality=quality)
    stream = from_frames(source, fps=fps)
    for track in stream.tracks:
        track.on("ended", source.close)
    return stream


def _kinds(widget: Any) -> tuple[bool, bool]:
    """What an ipywebrtc stream widget carries, (audio, video), as far as the kernel can tell:
    a CameraStream what its getUserMedia constraints ask for, an AudioStream sound only, the
    others (VideoStream, WidgetStream, ImageStream, ...) pictures."""
    model = getattr(widget, "_model_name", "")
    if model == "AudioStreamModel":
        return True, False
    if model == "CameraStreamModel":
        constraints = getattr(widget, "constraints", None) or {}
        return bool(constraints.get("audio")), bool(constraints.get("video"))
    return False, True


def from_widget(
    widget: ipywebrtc.MediaStream,
    fps: float = 10,
    *,
    audio: bool | None = None,
    video: bool | None = None,
    **options: Any,
) -> MediaStream:
    """A MediaStream of an ipywebrtc stream widget's pictures and sound, carried over the
    widget comm, so it works wherever the notebook is open in a browser (Binder included).

    Which tracks: by default what the widget has (a `CameraStream` what its constraints ask
    for, e.g. `CameraStream(constraints={"audio": True, "video": True})` gives both; an
    `AudioStream` sound only; VideoStream, WidgetStream, ... pictures); `audio=`/`video=` say
    otherwise. Video: the kernel pulls frames, at most `fps` per second (`options`: format,
    quality; see `camera_stream`). Audio: the page pushes 20 ms PCM chunks (`AudioChunks`),
    into a `WidgetAudioTrack`.

    Audio layout: the track's frames are 20 ms `AudioFrame`s, 48 kHz, s16, mono, pts in
    samples (time_base 1/48000); `media.frames(track)` gives each as an int16 array of shape
    (1, 960) (PyAV's packed layout: one row, channels interleaved). Published and received
    by a kernel peer, it comes out of aiortc's Opus decoder as 48 kHz s16 stereo: (1, 1920),
    left and right interleaved (L0 R0 L1 R1 ...); `array.reshape(-1, 2)` gives one column per
    channel. Divide by 32768 for floats in [-1, 1).

    Stopping the stream (`stream.stop()`) closes the widgets behind it. Formerly
    `peerix_nb.media.from_widget`: media cannot import the widgets.
    """
    _check_camera(widget)
    for name, value in (("audio", audio), ("video", video)):
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{name} must be True, False or None (the widget's own), got {value!r}")
    has_audio, has_video = _kinds(widget)
    audio = has_audio if audio is None else audio
    video = has_video if video is None else video
    if not (audio or video):
        raise ValueError(
            f"nothing to carry: {type(widget).__name__} has neither audio nor video here"
            " (CameraStream constraints {'audio': ..., 'video': ...}, or audio=/video=)"
        )
    if options and not video:
        raise TypeError(f"{', '.join(options)}: options of the video, and video is off")
    stream = camera_stream(widget, fps, **options) if video else MediaStream()
    if audio:
        stream.add_track(AudioChunks(widget).track)
    return stream


__all__ = [
    "AudioChunks",
    "CameraFrames",
    "WidgetAudioTrack",
    "camera_stream",
    "decode_image",
    "from_widget",
]
