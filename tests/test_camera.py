"""camera_stream without a browser: the comm is a recorder and a fake page answers the grabs.

The fake page does what camera.js does: on each `{"type": "grab"}` custom message it answers
`{"type": "frame", ...}` with an encoded image as the buffer (or `{"type": "error"}`). The real
thing (Chromium's fake camera in JupyterLab) is tests/browser/test_browser_camera.py.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
from typing import Any

import av
import numpy as np
import pytest
from ipywidgets.widgets.widget import _instances

pytest.importorskip("ipywebrtc")

import ipywebrtc
import ipywidgets

from peerix_nb.errors import PeerixError
from peerix_nb.media import MediaSourceError, MediaStreamError, frames
from peerix_nb.widgets import CameraFrames, from_widget
from peerix_nb.widgets.camera import AudioChunks, WidgetAudioTrack, decode_image
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


# -- the microphone: PCM chunks pushed by the page --------------------------------------------
RATE, SAMPLES = 48_000, 960  # 20 ms frames


def tone(start: int, frames: int = 1, frequency: float = 440.0, volume: float = 0.3) -> bytes:
    """`frames` 20 ms of a sine from sample `start`, as the page sends it (s16 little-endian)."""
    n = np.arange(start, start + frames * SAMPLES)
    wave = np.sin(2 * np.pi * frequency * n / RATE) * volume * 32767
    return wave.astype("<i2").tobytes()


def chunk(seq: int, pts: int, **header: Any) -> dict[str, Any]:
    """The header camera.js sends with a chunk."""
    base = {"type": "audio", "seq": seq, "pts": pts, "rate": RATE, "channels": 1, "dropped": 0}
    return {**base, "frontend": "P1", **header}


def microphone(audio: bool = True, video: bool = False) -> Any:
    return ipywebrtc.CameraStream(constraints={"audio": audio, "video": video})


def audio_chunks() -> list[AudioChunks]:
    return [w for w in _instances.values() if isinstance(w, AudioChunks)]


async def test_chunks_become_20ms_frames_with_sample_pts() -> None:
    track = WidgetAudioTrack()
    assert track.kind == "audio" and track.readyState == "live"
    assert track.push(chunk(1, 0), tone(0)) == 1
    assert track.push(chunk(2, SAMPLES, dropped=0), tone(SAMPLES, frames=3)) == 3
    # The page dropped two chunks: the next one's pts says where it belongs.
    assert track.push(chunk(3, 6 * SAMPLES, dropped=2), tone(6 * SAMPLES)) == 1
    frames_out = [await asyncio.wait_for(track.recv(), 1) for _ in range(5)]
    assert [f.pts for f in frames_out] == [0, 960, 1920, 2880, 5760]
    for frame in frames_out:
        assert isinstance(frame, av.AudioFrame)
        assert (frame.sample_rate, frame.samples, frame.format.name) == (RATE, SAMPLES, "s16")
        assert frame.layout.name == "mono" and frame.time_base == fractions.Fraction(1, RATE)
    # The samples are the page's, in order: frame 2 is samples 1920..2879 of the tone.
    expected = np.frombuffer(tone(2 * SAMPLES), "<i2")
    assert np.array_equal(frames_out[2].to_ndarray().reshape(-1), expected)
    assert (track.chunks_received, track.frames_received, track.page_dropped) == (3, 5, 2)
    assert track.frames_dropped == 0 and track.queued == 0
    # Stereo chunks come out stereo (s16 packed: channels interleaved in one row).
    assert track.push(chunk(4, 7 * SAMPLES, channels=2), tone(0, frames=2)) == 1
    stereo = await track.recv()
    assert stereo.layout.name == "stereo" and stereo.to_ndarray().shape == (1, 2 * SAMPLES)


async def test_a_slow_reader_loses_the_oldest_frames_not_memory() -> None:
    track = WidgetAudioTrack(queue_frames=3)
    for i in range(5):
        track.push(chunk(i + 1, i * SAMPLES), tone(i * SAMPLES))
    assert track.queued == 3 and track.frames_dropped == 2
    assert [(await track.recv()).pts for _ in range(3)] == [2 * 960, 3 * 960, 4 * 960]
    # One message of 8 frames into a queue of 3 keeps the newest 3.
    track.push(chunk(6, 5 * SAMPLES), tone(5 * SAMPLES, frames=8))
    assert track.queued == 3 and track.frames_dropped == 7
    assert (await track.recv()).pts == 10 * SAMPLES
    with pytest.raises(ValueError, match="queue_frames must be an integer >= 1"):
        WidgetAudioTrack(queue_frames=0)


async def test_bad_chunks_are_refused_with_a_reason() -> None:
    track = WidgetAudioTrack()
    track.push(chunk(1, 0), tone(0))
    for header, data, reason in [
        (chunk(2, 960, rate=44_100), tone(960), "at 44100 Hz: the kernel takes 48000"),
        (chunk(2, 960, channels=6), tone(960), "6 channels: 1 or 2 expected"),
        (chunk(2, 0), tone(0), r"pts 0: expected an integer >= 960"),
        (chunk(2, "960"), tone(960), r"pts '960': expected an integer"),
        (chunk(2, 960), tone(960)[:-2], "1918 bytes: expected whole 20 ms frames of 1920"),
        (chunk(2, 960), b"", "0 bytes"),
    ]:
        with pytest.raises(MediaSourceError, match=reason):
            track.push(header, data)
    assert track.readyState == "live" and track.frames_received == 1  # nothing taken, still on


async def test_audio_chunks_protocol_listen_ack_and_one_page(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chunks = AudioChunks(microphone(), retry=0.05)
    track = chunks.track
    # Nobody reads the track: nothing is asked of the page, nor scheduled to be.
    assert pushed(chunks, "listen") == [] and not chunks._resources._timers
    first = asyncio.ensure_future(track.recv())  # the first read asks the page
    listened = asyncio.Event()
    RecordingComm.listeners.append(lambda *_: len(pushed(chunks, "listen")) >= 3 and listened.set())
    await asyncio.wait_for(listened.wait(), 5)  # asked again while no page answers
    assert pushed(chunks, "listen")[0][0] == {"type": "listen", "rate": RATE, "window": 50}

    # Page P1 speaks first: it is heard, acknowledged every 5 frames (cumulatively).
    page(chunks, chunk(1, 0), [tone(0, frames=2)])
    page(chunks, chunk(2, 2 * SAMPLES), [tone(2 * SAMPLES, frames=2)])
    assert pushed(chunks, "ack") == []
    page(chunks, chunk(3, 4 * SAMPLES), [tone(4 * SAMPLES)])
    assert [c for c, _ in pushed(chunks, "ack")] == [{"type": "ack", "seq": 3, "to": "P1"}]
    asked = len(pushed(chunks, "listen"))
    # A second page is told to stop; its chunk is not taken.
    page(chunks, chunk(1, 0, frontend="P2"), [tone(0)])
    assert [c for c, _ in pushed(chunks, "stop")] == [{"type": "stop", "to": "P2"}]
    assert track.frames_received == 5

    # A bad chunk is refused, counted, logged once in one line, acknowledged; the track goes on.
    caplog.clear()
    page(chunks, chunk(4, 5 * SAMPLES), [b"\x00" * 7])
    page(chunks, chunk(5, 5 * SAMPLES), [b"\x00" * 7])
    assert track.chunks_rejected == 2 and track.readyState == "live"
    assert "7 bytes: expected whole 20 ms frames" in (track.rejection or "")
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is None, errors
    assert "refused a chunk from the page" in errors[0].getMessage()
    assert (await first).pts == 0
    assert [(await track.recv()).pts for _ in range(4)] == [960, 1920, 2880, 3840]

    # Closing: the pages stop, the track ends (a waiting recv() too), nothing is left running.
    comm = chunks.comm
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)  # let it start waiting
    chunks.close()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 1)
    assert track.readyState == "ended" and chunks.comm is None and chunks.closed
    assert sent(comm)[-1] == {"type": "stop"}
    assert len(sent(comm, "listen")) == asked  # no more asking once a page spoke
    assert not chunks._resources._timers and not len(chunks._resources._tasks)


def sent(comm: RecordingComm, kind: str | None = None) -> list[dict[str, Any]]:
    """The custom messages the kernel sent through `comm` (readable after the widget closed)."""
    return [
        data["content"]
        for msg_type, data, _ in comm.log
        if msg_type == "comm_msg"
        and data.get("method") == "custom"
        and (kind is None or data["content"].get("type") == kind)
    ]


async def test_an_error_from_the_page_ends_the_track_and_stopping_closes_the_widget() -> None:
    chunks = AudioChunks(microphone())
    reading = asyncio.ensure_future(chunks.track.recv())
    await asyncio.sleep(0)
    assert pushed(chunks, "listen")
    error = {"type": "error", "message": "NotAllowedError: Permission denied", "frontend": "P1"}
    page(chunks, error)
    assert chunks.track.readyState == "ended" and chunks.closed and chunks.comm is None
    with pytest.raises(MediaSourceError, match="could not capture the audio: NotAllowedError"):
        await asyncio.wait_for(reading, 1)
    with pytest.raises(MediaSourceError, match="could not capture the audio: NotAllowedError"):
        await chunks.track.recv()
    # And the other way round: stopping the track closes its widget.
    other = AudioChunks(microphone())
    other.track.stop()
    assert other.closed and other.comm is None
    for options, error, message in [
        ({"window": 0}, ValueError, "window must be an integer >= 1"),
        ({"retry": -1}, ValueError, "retry must be a number of seconds > 0"),
        ({"queue_frames": 1.5}, ValueError, "queue_frames must be an integer"),
        ({"windw": 3}, TypeError, "did you mean 'window'"),
    ]:
        with pytest.raises(error, match=message):
            AudioChunks(microphone(), **options)
    with pytest.raises(TypeError, match="ipywebrtc stream widget"):
        AudioChunks("mic")  # type: ignore[arg-type]


async def test_from_widget_carries_what_the_widget_has() -> None:
    def kinds(widget: Any, **options: Any) -> list[str]:
        stream = from_widget(widget, **options)
        result = [t.kind for t in stream.tracks]
        stream.stop()
        return result

    assert kinds(microphone(audio=True, video=True)) == ["video", "audio"]
    assert kinds(microphone(audio=True, video=False)) == ["audio"]
    assert kinds(microphone(audio=False, video=True)) == ["video"]
    assert kinds(ipywebrtc.CameraStream()) == ["video", "audio"]  # ipywebrtc's default: both
    assert kinds(ipywebrtc.AudioStream(audio=ipywidgets.Audio(value=b""))) == ["audio"]
    assert kinds(microphone(audio=True, video=True), audio=False) == ["video"]
    assert kinds(ipywebrtc.VideoStream(video=ipywidgets.Video(value=b"")), audio=True) == [
        "video",
        "audio",
    ]
    assert not [w for w in audio_chunks() if not w.closed]  # stop() closed every one
    with pytest.raises(TypeError, match="audio must be True, False or None"):
        from_widget(microphone(), audio="yes")
    with pytest.raises(ValueError, match="nothing to carry"):
        from_widget(microphone(audio=False, video=False))
    with pytest.raises(TypeError, match="quality: options of the video"):
        from_widget(microphone(audio=True), quality=0.5)


async def test_microphone_chunks_reach_another_peer_through_opus() -> None:
    """A fake page pushes a 440 Hz tone in real time; bob hears it through a real aiortc
    connection (Opus), with the layout from_widget documents."""
    alice, bob = await room(2)
    stream = from_widget(microphone())
    (chunks,) = [w for w in audio_chunks() if not w.closed]
    listened = asyncio.Event()
    RecordingComm.listeners.append(lambda *_: pushed(chunks, "listen") and listened.set())

    async def fake_page() -> None:  # camera.js: 20 ms chunks as the AudioWorklet makes them
        await listened.wait()
        pacer = asyncio.get_running_loop().time()
        for seq in itertools.count(1):
            pts = (seq - 1) * SAMPLES
            page(chunks, chunk(seq, pts), [tone(pts)])
            pacer += 0.02
            await asyncio.sleep(max(0.0, pacer - asyncio.get_running_loop().time()))

    pusher = asyncio.ensure_future(fake_page())
    try:
        await alice.publish(stream, label="mic")
        event = await bob.wait_for("stream:add", timeout=10)
        (heard,) = event.stream.audio_tracks
        arrays = []
        async with frames(heard) as reader:
            async for array in reader:
                arrays.append(array)
                if len(arrays) == 50:  # 1 s
                    break
        assert {a.shape for a in arrays} == {(1, 2 * SAMPLES)} and arrays[0].dtype == np.int16
        left = np.concatenate([a.reshape(-1, 2)[:, 0] for a in arrays[-25:]]) / 32768
        assert float(np.sqrt(np.mean(left**2))) > 0.1  # the tone's RMS is 0.3 / sqrt(2)
        spectrum = np.abs(np.fft.rfft(left))
        assert abs(float(np.fft.rfftfreq(len(left), 1 / RATE)[spectrum.argmax()]) - 440) < 5
        assert chunks.track.page_dropped == 0 and chunks.track.chunks_rejected == 0
    finally:
        pusher.cancel()
        stream.stop()
        await leave_all([alice, bob])
    assert chunks.closed


# -- the browser peer's microphone options (the page itself: tests/browser) --------------------
async def test_browser_peer_microphone_options_become_getusermedia_constraints() -> None:
    from peerix_nb import MemoryDriver
    from peerix_nb.browser import BrowserPeer
    from peerix_nb.browser.peer import capture_constraints

    def config(**options: Any) -> Any:
        bp = BrowserPeer("r", driver=MemoryDriver(), **options)
        bp.close()
        return bp._config["camera"]

    assert config() is None
    assert config(camera=True) == {"video": True, "audio": False}
    assert config(microphone=True) == {"video": False, "audio": True}
    assert config(camera=True, microphone=True) == {"video": True, "audio": True}
    assert config(camera={"width": 320}, microphone={"echoCancellation": False}) == {
        "video": {"width": 320},
        "audio": {"echoCancellation": False},
    }
    # camera= has always taken whole getUserMedia constraints: still does.
    assert config(camera={"video": {"width": 320}, "audio": True}) == {
        "video": {"width": 320},
        "audio": True,
    }
    assert capture_constraints({"video": True}, True) == {"video": True, "audio": True}
    for options, error, message in [
        ({"microphone": "on"}, TypeError, "microphone must be True, False or getUserMedia"),
        ({"microphone": 1}, TypeError, "microphone must be True, False or getUserMedia"),
        ({"camera": {"audio": True}, "microphone": True}, ValueError, "microphone is given twice"),
    ]:
        with pytest.raises(error, match=message):
            BrowserPeer("r", driver=MemoryDriver(), **options)


async def test_browser_peer_publish_camera_checks_audio_and_video() -> None:
    from peerix_nb import MemoryDriver
    from peerix_nb.browser import BrowserPeer

    bp = BrowserPeer("lobby", driver=MemoryDriver())
    page(bp, {"type": "rendered", "views": 1, "frontend": "P1"})
    calls = [
        bp.publish_camera(),
        bp.publish_camera(audio=True),
        bp.publish_camera(video=False, audio={"echoCancellation": False}, label="mic"),
        bp.prepare_camera({"video": True, "audio": True}),
    ]
    args = [c["args"] for c, _ in pushed(bp, "cmd")]
    assert args == [
        {"constraints": {"video": True, "audio": False}, "label": "camera"},
        {"constraints": {"video": True, "audio": True}, "label": "camera"},
        {"constraints": {"video": False, "audio": {"echoCancellation": False}}, "label": "mic"},
        {"constraints": {"video": True, "audio": True}, "label": "camera"},
    ]
    for call, options, error, message in [
        (bp.publish_camera, {"audio": "yes"}, TypeError, "audio must be True, False or getUser"),
        (bp.publish_camera, {"video": False}, ValueError, "nothing to capture"),
        (bp.prepare_camera, {"video": False, "audio": False}, ValueError, "nothing to capture"),
        (bp.publish_camera, {"label": ""}, ValueError, "label must be a non-empty string"),
        (bp.publish_camera, {"constraints": "video"}, TypeError, "constraints must be a dict"),
        (
            bp.publish_camera,
            {"constraints": {"video": True}, "audio": True},
            ValueError,
            "either constraints or video=/audio=",
        ),
    ]:
        with pytest.raises(error, match=message):
            call(**options)
    assert len(pushed(bp, "cmd")) == 4  # nothing bad went to the page
    bp.close()
    for call in calls:
        with pytest.raises(PeerixError, match="closed"):
            await call


async def test_a_page_that_went_silent_is_replaced_by_the_next_that_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reloaded page is a new page: after `source_timeout` without a chunk from the heard
    one, the kernel asks every page again, and the new page's pts (from 0) continue the track."""
    chunks = AudioChunks(microphone(), retry=0.02, source_timeout=0.1)
    track = chunks.track
    reading = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    page(chunks, chunk(1, 0), [tone(0, frames=3)])
    assert (await reading).pts == 0
    asked = len(pushed(chunks, "listen"))
    again = asyncio.Event()
    RecordingComm.listeners.append(lambda *_: len(pushed(chunks, "listen")) > asked and again.set())
    await asyncio.wait_for(again.wait(), 5)  # P1 said nothing for 0.1 s: every page is asked
    assert "asking every page again" in caplog.text
    page(chunks, chunk(1, 0, frontend="P2"), [tone(0)])
    assert track.chunks_rejected == 0 and pushed(chunks, "stop") == []
    assert [(await track.recv()).pts for _ in range(3)] == [960, 1920, 3 * SAMPLES]
    # P1 coming back now is the second page: told to stop.
    page(chunks, chunk(2, 3 * SAMPLES), [tone(0)])
    assert [c for c, _ in pushed(chunks, "stop")] == [{"type": "stop", "to": "P1"}]
    chunks.close()
    assert not chunks._resources._timers
