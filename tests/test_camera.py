"""camera_stream without a browser: the comm is a recorder and a fake page answers the grabs.

The fake page does what camera.js does: on each `{"type": "grab"}` custom message it answers
`{"type": "frame", ...}` with an encoded image as the buffer (or `{"type": "error"}`). The real
thing (Chromium's fake camera in JupyterLab) is tests/browser/test_browser_camera.py.
"""

from __future__ import annotations

import asyncio
import fractions
from typing import Any

import av
import numpy as np
import pytest
from ipywidgets.widgets.widget import _instances

pytest.importorskip("ipywebrtc")

import ipywebrtc

from peerix_nb.media import MediaStreamError, frames
from peerix_nb.widgets import CameraFrames, from_widget
from peerix_nb.widgets.camera import decode_image
from testbed.rooms import leave_all, room
from tests.widget_comm import RecordingComm, page, pushed, recording_comm  # noqa: F401

SHAPE = (120, 160, 3)


def camera() -> Any:
    return ipywebrtc.CameraStream(constraints={"video": True, "audio": False})


def encode(image: np.ndarray, codec: str = "mjpeg") -> bytes:
    """`image` (HxWx3 RGB) as JPEG or PNG bytes, as a browser canvas would send it."""
    context = av.CodecContext.create(codec, "w")
    context.height, context.width = image.shape[:2]
    context.pix_fmt = "yuvj420p" if codec == "mjpeg" else "rgb24"
    context.time_base = fractions.Fraction(1, 30)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=context.pix_fmt)
    packets = [*context.encode(frame), *context.encode(None)]
    return b"".join(bytes(p) for p in packets)


def grabs(widget: CameraFrames) -> list[dict[str, Any]]:
    """The grab requests the kernel sent to the page."""
    return [content for content, _ in pushed(widget)]


class FakePage:
    """Answers every grab of every CameraFrames with the next gray image (10, 20, ...)."""

    def __init__(self, error: str | None = None) -> None:
        self.error = error
        self.answered = 0
        self.loop = asyncio.get_running_loop()
        self.widgets: dict[str, CameraFrames] = {}
        RecordingComm.listeners.append(self.on_kernel_message)

    def on_kernel_message(self, channel: Any, msg_type: str, data: Any) -> None:
        if msg_type != "comm_msg" or data.get("method") != "custom":
            return
        content = data["content"]
        if content.get("type") == "grab":
            self.loop.call_soon(self.answer, channel, content)  # later, as a page would

    def answer(self, channel: Any, request: dict[str, Any]) -> None:
        widget = self.widgets.get(channel.comm_id)
        if widget is None or widget.comm is None:
            return
        self.answered += 1
        if self.error:
            content, buffers = {"type": "error", "seq": request["seq"], "message": self.error}, []
        else:
            level = (10 * self.answered) % 250
            jpeg = encode(np.full(SHAPE, level, np.uint8))
            content = {"type": "frame", "seq": request["seq"], "width": 160, "height": 120}
            buffers = [jpeg]
        page(widget, content, buffers)

    def serve(self, widget: CameraFrames) -> CameraFrames:
        self.widgets[widget.comm.comm_id] = widget
        return widget


def test_decode_image_jpeg_png_and_errors() -> None:
    image = np.zeros(SHAPE, np.uint8)
    image[:, :80] = (200, 40, 40)
    png = decode_image(encode(image, "png"), "png")
    assert png.shape == SHAPE and png.dtype == np.uint8
    assert np.array_equal(png, image)
    jpeg = decode_image(encode(image), "jpeg")
    assert jpeg.shape == SHAPE
    assert abs(float(jpeg[:, :70, 0].mean()) - 200) < 8  # lossy, but the left half is red
    with pytest.raises(ValueError, match="format must be one of"):
        decode_image(b"", "gif")
    with pytest.raises(ValueError, match="could not decode"):
        decode_image(b"not an image")


def test_camera_frames_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="ipywebrtc stream widget"):
        CameraFrames(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ipywebrtc stream widget"):
        from_widget("not a widget")
    with pytest.raises(ValueError, match="format"):
        CameraFrames(camera(), format="gif")
    with pytest.raises(ValueError, match="quality"):
        CameraFrames(camera(), quality=0)


async def test_grab_round_trip() -> None:
    page = FakePage()
    source = page.serve(CameraFrames(camera()))
    first = await asyncio.wait_for(source.grab(), 5)
    second = await asyncio.wait_for(source.grab(), 5)
    assert first.shape == SHAPE and abs(float(first.mean()) - 10) < 4
    assert abs(float(second.mean()) - 20) < 4
    assert source.frames_received == 2 and source.latest is second
    assert [g["seq"] for g in grabs(source)] == [1, 2]
    assert grabs(source)[0] == {"type": "grab", "seq": 1, "format": "jpeg", "quality": 0.85}
    source.close()
    assert source.comm is None
    with pytest.raises(RuntimeError, match="closed"):
        await source.grab()


async def test_without_a_page_it_asks_again_until_closed() -> None:
    source = CameraFrames(camera(), retry=0.05)
    task = asyncio.ensure_future(source.grab())
    three = asyncio.Event()
    RecordingComm.listeners.append(lambda *_: len(grabs(source)) >= 3 and three.set())
    await asyncio.wait_for(three.wait(), 5)
    assert [g["seq"] for g in grabs(source)][:3] == [1, 2, 3]
    source.close()
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(task, 5)
    assert source.frames_received == 0


async def test_an_error_from_the_page_raises() -> None:
    page = FakePage(error="NotAllowedError: Permission denied")
    source = page.serve(CameraFrames(camera()))
    with pytest.raises(RuntimeError, match="NotAllowedError: Permission denied"):
        await asyncio.wait_for(source.grab(), 5)
    source.close()


async def test_camera_frames_reach_another_peer_as_numpy_arrays() -> None:
    alice, bob = await room(2)
    try:
        page = FakePage()
        stream = from_widget(camera(), fps=15)  # the other name of camera_stream
        (track,) = stream.video_tracks
        (source,) = [w for w in _instances.values() if isinstance(w, CameraFrames) and not w.closed]
        page.serve(source)
        await alice.publish(stream, label="camera")
        event = await bob.wait_for("stream:add", timeout=10)
        received = []
        async with frames(event.stream.video_tracks[0]) as images:
            async for image in images:
                received.append(image)
                if len(received) == 5:
                    break
        assert all(image.shape == SHAPE and image.dtype == np.uint8 for image in received)
        levels = [round(float(image.mean())) for image in received]
        assert len(set(levels)) > 1, levels  # new frames keep coming
        assert page.answered >= 5
        stream.stop()
        assert source.closed and source.comm is None  # stopping the track closes the widget
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(track.recv(), 5)
    finally:
        await leave_all([alice, bob])
