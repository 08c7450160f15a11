"""camera_stream: the browser's camera (an ipywebrtc CameraStream) as a video track in the kernel.

The camera lives in the browser: `ipywebrtc.CameraStream` calls `getUserMedia` there, and the
kernel never sees the device. `CameraFrames` is a small anywidget (camera.js beside this file)
that pulls its frames into the kernel: the kernel asks for a frame, the page draws the stream's
current frame on a canvas, encodes it (JPEG by default) and sends it back over the widget comm,
and PyAV decodes it into a numpy RGB array here. `camera_stream()` (or `from_widget()`) wraps
that in `media.from_frames`, so the camera can be published, viewed and read like any other
stream.
This is frame push over the widget comm, not WebRTC from the browser: it works wherever widgets
work (Binder, remote kernels), at 10-30 fps for 640x480.

Why not ipywebrtc's ImageRecorder: it delivers each image by syncing widget state from the
page, and ipywidgets' page side throttles state sync until the kernel reports "idle", which
ipykernel (7.4) does not do for messages it handles while a cell awaits; after one snapshot
taken during an awaiting cell, the recorder never sends again. Custom messages (used here, as
by VideoView) are not throttled.

It needs a browser showing the notebook (and the user's permission to use the camera): without
one (nbclient, CI) no frame ever comes back and the track simply produces no frame.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from typing import TYPE_CHECKING, Any, cast

import anywidget
import av
import ipywidgets
import numpy as np
import traitlets
from ipywidgets import widget_serialization

from ..media import MediaStream, from_frames
from ._common import check_options

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


def from_widget(widget: ipywebrtc.MediaStream, fps: float = 10, **options: Any) -> MediaStream:
    """A one-video-track stream of an ipywebrtc stream widget (CameraStream, VideoStream,
    WidgetStream, ...): the page captures frames and the kernel pulls them over the widget comm,
    one at a time. Works wherever the notebook is open in a browser (Binder included); `options`
    go to `camera_stream` (format, quality). Formerly `peerix_nb.media.from_widget`: media
    cannot import the widgets."""
    return camera_stream(widget, fps, **options)


__all__ = ["CameraFrames", "camera_stream", "decode_image", "from_widget"]
