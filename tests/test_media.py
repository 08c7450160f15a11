"""Tests for peerix_nb.media: streams, camera-free sources, relays, taps and numpy readers.

The VP8 tests run a real in-process loopback of two aiortc RTCPeerConnections (no signaling
server, no STUN: iceServers=[] always, the default public STUN server stalls offline).
"""

from __future__ import annotations

import asyncio
import fractions
import gc
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from peerix_nb import media
from peerix_nb.errors import PeerixError
from testbed.rooms import poll_until

# ---------------------------------------------------------------------------------------------
# helpers


def _config() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


@asynccontextmanager
async def loopback(track: MediaStreamTrack) -> AsyncIterator[tuple[RTCPeerConnection, ...]]:
    """Send `track` from one RTCPeerConnection to another; yield (sender_pc, receiver_pc,
    remote_track)."""
    sender, receiver = RTCPeerConnection(_config()), RTCPeerConnection(_config())
    got: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    receiver.on("track", lambda t: got.done() or got.set_result(t))
    try:
        sender.addTransceiver(track, direction="sendonly")
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        remote = await asyncio.wait_for(got, 5)
        yield sender, receiver, remote
    finally:
        await sender.close()
        await receiver.close()


async def collect(
    track: MediaStreamTrack, seconds: float, format: str = "rgb24"
) -> list[tuple[float, np.ndarray]]:
    """(receive time, array) for every frame frames() yields during `seconds`."""
    out: list[tuple[float, np.ndarray]] = []

    async def read() -> None:
        async for array in media.frames(track, format):
            out.append((time.time(), array))

    task = asyncio.create_task(read())
    done, _ = await asyncio.wait({task}, timeout=seconds)
    task.cancel()
    await asyncio.wait({task})
    if task in done:
        task.result()  # surface an error from the reader
    return out


def make_media_file(path: Path, frames: int = 15, audio: bool = True) -> Path:
    """A tiny 160x120 mpeg4 (+ aac) mp4 whose frame i carries the stamp (i, 1000 + i)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=30)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        video.bit_rate = 1_000_000
        sound = container.add_stream("aac", rate=48000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for i in range(frames):
            image = media.write_stamp(np.full((120, 160, 3), 90, np.uint8), i, 1000.0 + i)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        if sound is not None:
            for k in range(frames * 48000 // 30 // 1024 + 1):
                n = k * 1024
                wave = (np.sin(np.arange(n, n + 1024) * 2 * np.pi * 440 / 48000) * 8000).astype(
                    np.int16
                )
                frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
                frame.sample_rate, frame.pts = 48000, n
                frame.time_base = fractions.Fraction(1, 48000)
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
    return path


class BlockingTrack(MediaStreamTrack):
    """A video track whose recv never returns (like a remote that stopped sending)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.blocked = asyncio.Event()  # set once a recv() waits

    async def recv(self) -> av.VideoFrame:
        self.blocked.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class FailingTrack(VideoStreamTrack):
    """Two green frames, then a RuntimeError (a buggy user track)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        self.n += 1
        if self.n > 2:
            raise RuntimeError("camera unplugged")
        return await super().recv()


def stamps(arrays: list[tuple[float, np.ndarray]]) -> list[tuple[float, media.Stamp]]:
    return [(t, s) for t, a in arrays if (s := media.read_stamp(a)) is not None]


# ---------------------------------------------------------------------------------------------
# MediaStream


def camera_stream() -> tuple[media.MediaStream, media.SyntheticVideoTrack, media.ToneTrack]:
    """A stream "cam" of a synthetic video track and a tone, and the two tracks."""
    video, audio = media.SyntheticVideoTrack(160, 120), media.ToneTrack()
    return media.MediaStream([video, audio], id="cam"), video, audio


async def test_media_stream_lists_its_tracks_by_kind_and_id() -> None:
    stream, video, audio = camera_stream()
    assert stream.id == "cam"
    assert stream.tracks == [video, audio]
    stream.tracks.clear()  # a copy: the stream is unchanged
    assert stream.tracks == [video, audio]
    assert stream.video_tracks == [video] and stream.audio_tracks == [audio]
    assert stream.get_tracks("video") == [video] and stream.get_tracks() == [video, audio]
    assert stream.get_track_by_id(audio.id) is audio and stream.get_track_by_id("x") is None
    stream.stop()


async def test_media_stream_holds_a_track_once_in_insertion_order() -> None:
    stream, video, audio = camera_stream()
    stream.add_track(video)  # no duplicates
    assert stream.tracks == [video, audio]
    stream.remove_track(video)
    assert stream.tracks == [audio]
    stream.remove_track(video)  # absent: nothing happens
    stream.add_track(video)
    assert stream.tracks == [audio, video]  # insertion order
    stream.stop()


async def test_media_stream_is_active_while_a_track_is_live() -> None:
    stream, _video, audio = camera_stream()
    assert stream.active and "cam" in repr(stream) and "video:live" in repr(stream)
    audio.stop()
    assert stream.active  # one track is still live
    stream.stop()
    assert not stream.active and "video:ended" in repr(stream)


async def test_media_stream_defaults_to_a_uuid4_id_and_no_tracks() -> None:
    other = media.MediaStream()
    assert len(other.id) == 36 and other.id != media.MediaStream().id  # uuid4
    assert other.tracks == [] and not other.active


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: media.MediaStream([t, "not a track"]), "MediaStreamTrack, got builtins.str"),
        (lambda t: media.MediaStream([t]).add_track(42), "MediaStreamTrack, got builtins.int"),
        (lambda t: media.MediaStream(t), "got a single ToneTrack; wrap it in a list"),
        (lambda t: media.MediaStream([t], id="has space"), "without whitespace"),
    ],
    ids=["str-in-list", "add-int", "single-track", "bad-id"],
)
async def test_media_stream_rejects_bad_input(
    make: Callable[[MediaStreamTrack], object], message: str
) -> None:
    with pytest.raises(PeerixError) as info:
        make(media.ToneTrack())
    assert info.value.code == "PEER_MEDIASTREAM_ERROR"
    assert message in info.value.message


async def test_media_stream_error_names_the_type() -> None:
    with pytest.raises(PeerixError, match=r"builtins\.dict"):
        media.MediaStream([{}])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------
# stamps and synthetic sources


@pytest.mark.parametrize("size", [(640, 480), (160, 120)], ids=["640x480", "160x120"])
async def test_synthetic_stamps_read_back_exactly(size: tuple[int, int]) -> None:
    width, height = size
    track = media.SyntheticVideoTrack(width, height, fps=30)
    try:
        before = time.time()
        frames = [await track.recv() for _ in range(4)]
        after = time.time()
    finally:
        track.stop()
    for i, frame in enumerate(frames):
        assert (frame.width, frame.height) == size
        for fmt in ("rgb24", "bgr24", "gray"):
            stamp = media.read_stamp(frame.to_ndarray(format=fmt))
            assert stamp is not None and stamp.counter == i
            assert before - 0.001 <= stamp.sent_at <= after + 0.001
    # paced in real time on the 90 kHz clock: 4 frames at 30 fps span 3/30 s
    assert frames[0].time_base == fractions.Fraction(1, 90000)
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)
    assert frames[3].pts - frames[0].pts == pytest.approx(9000, abs=900)
    assert after - before >= 0.09
    # the pattern moves
    a, b = (f.to_ndarray(format="rgb24")[60:] for f in (frames[0], frames[3]))
    assert not np.array_equal(a, b)


async def test_synthetic_uses_its_fps_not_aiortc_30() -> None:
    track = media.SyntheticVideoTrack(160, 120, fps=10)
    try:
        start = time.monotonic()
        frames = [await track.recv() for _ in range(3)]
        elapsed = time.monotonic() - start
    finally:
        track.stop()
    assert elapsed >= 0.19  # 2 intervals of 100 ms
    assert frames[2].pts - frames[0].pts == pytest.approx(18000, abs=1800)


async def test_read_stamp_rejects_damaged_or_missing_stamps() -> None:
    image = media.write_stamp(np.zeros((120, 160, 3), np.uint8), 123456, 1700000000.25)
    stamp = media.read_stamp(image)
    assert stamp == media.Stamp(123456, 1700000000.25)
    damaged = image.copy()
    damaged[4:8, 40:44] = 255 - damaged[4:8, 40:44]  # flip one payload cell
    assert media.read_stamp(damaged) is None
    assert media.read_stamp(np.zeros((120, 160, 3), np.uint8)) is None
    assert media.read_stamp(np.full((120, 160, 3), 255, np.uint8)) is None
    noise = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert media.read_stamp(noise) is None
    assert media.read_stamp(np.zeros((10, 40, 3), np.uint8)) is None  # too small for a stamp
    # counter wraps at 32 bits; microsecond time
    wrapped = media.write_stamp(np.zeros((480, 640), np.uint8), 2**32 + 5, 1.000001)
    assert media.read_stamp(wrapped) == media.Stamp(5, 1.000001)


async def test_synthetic_stream_and_tone() -> None:
    stream = media.synthetic(width=160, height=120)
    assert [t.kind for t in stream.tracks] == ["video", "audio"]
    assert [t.kind for t in media.synthetic(audio=False).tracks] == ["video"]
    assert [t.kind for t in media.synthetic(video=False).tracks] == ["audio"]
    tone = stream.audio_tracks[0]
    try:
        start = time.monotonic()
        frames = [await tone.recv() for _ in range(4)]
        elapsed = time.monotonic() - start
    finally:
        stream.stop()
    assert elapsed >= 0.055  # 3 intervals of 20 ms
    assert all(f.sample_rate == 48000 and f.samples == 960 for f in frames)
    assert [f.pts for f in frames] == [0, 960, 1920, 2880]
    assert frames[0].format.name == "s16" and frames[0].layout.name == "mono"
    samples = np.concatenate([f.to_ndarray().ravel() for f in frames]).astype(float)
    assert 0.1 * 32767 < np.abs(samples).max() < 0.3 * 32767
    # a 440 Hz sine: the strongest FFT bin of 80 ms at 48 kHz is 440 Hz
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.fft.rfftfreq(samples.size, 1 / 48000)[spectrum.argmax()] == pytest.approx(440, abs=13)
    with pytest.raises(MediaStreamError):
        await tone.recv()


async def test_synthetic_rejects_tiny_frames() -> None:
    with pytest.raises(PeerixError, match="synthetic video needs"):
        media.synthetic(width=40, height=30)


@pytest.mark.parametrize("fps", ["30", None, True, 0, -1, float("inf"), float("nan")])
async def test_sources_reject_a_bad_fps_by_name(fps: object) -> None:
    # A string used to fail inside the pacer: "'>' not supported between 'str' and 'int'".
    for make in (
        lambda: media.synthetic(fps=fps),  # type: ignore[arg-type]
        lambda: media.from_frames(lambda i, t: np.zeros((72, 96, 3), np.uint8), fps=fps),  # type: ignore[arg-type]
    ):
        with pytest.raises(PeerixError, match=r"fps\) must be a number > 0, got"):
            make()
    ntsc = media.synthetic(fps=fractions.Fraction(30000, 1001), audio=False)  # NTSC rate
    assert repr(ntsc.video_tracks[0]).startswith("<SyntheticVideoTrack 640x480 at 29.97 fps, live")


async def test_synthetic_sizes_are_integers_and_tracks_say_what_they_are() -> None:
    with pytest.raises(PeerixError, match=r"integer width and height, got '640'x480"):
        media.synthetic(width="640")  # type: ignore[arg-type]
    stream = media.synthetic(width=np.int64(160), height=np.int64(120))  # numpy ints are fine
    video, audio = stream.video_tracks[0], stream.audio_tracks[0]
    assert repr(video) == f"<SyntheticVideoTrack 160x120 at 30 fps, live, id={video.id}>"
    stream.stop()
    assert repr(audio) == f"<ToneTrack 440 Hz, ended, id={audio.id}>"


# ---------------------------------------------------------------------------------------------
# VP8 round trips


@pytest.mark.parametrize("size", [(640, 480), (160, 120)], ids=["640x480", "160x120"])
async def test_stamps_survive_vp8_loopback(size: tuple[int, int]) -> None:
    width, height = size
    source = media.synthetic(audio=False, width=width, height=height).video_tracks[0]
    try:
        async with loopback(media.relayed(source)) as (_, _, remote):
            assert isinstance(remote, RemoteStreamTrack)
            received = await collect(remote, 1.2)
    finally:
        source.stop()
    assert len(received) >= 20, len(received)
    assert all(a.shape == (height, width, 3) for _, a in received)
    read = stamps(received)
    assert len(read) >= 0.95 * len(received)  # measured: all of them
    counters = [s.counter for _, s in read]
    assert counters == sorted(set(counters))  # strictly increasing
    latencies = [t - s.sent_at for t, s in read]
    assert all(0 < x < 0.5 for x in latencies), (min(latencies), max(latencies))


async def test_relayed_track_reaches_two_receivers_at_full_rate() -> None:
    # One source published on two connections: with relayed() each sender gets every frame.
    # (Sharing the raw track between two senders makes them split its frames.)
    source = media.synthetic(audio=False, width=160, height=120).video_tracks[0]
    try:
        async with (
            loopback(media.relayed(source)) as (_, _, remote_a),
            loopback(media.relayed(source)) as (_, _, remote_b),
        ):
            first = source.frames_sent
            got_a, got_b = await asyncio.gather(collect(remote_a, 1.2), collect(remote_b, 1.2))
            sent = source.frames_sent - first
    finally:
        source.stop()
    for got in (got_a, got_b):
        counters = [s.counter for _, s in stamps(got)]
        steps = np.diff(counters)
        assert len(counters) >= 0.8 * sent, (len(counters), sent)
        assert (steps == 1).mean() >= 0.9, steps  # consecutive, not every other frame


# ---------------------------------------------------------------------------------------------
# Tap


async def test_tap_drains_remote_track_and_drops_stale_frames() -> None:
    source = media.synthetic(audio=False, width=160, height=120).video_tracks[0]
    try:
        async with loopback(media.relayed(source)) as (_, receiver, remote):
            tap = media.tap_for(remote)
            assert media.tap_for(remote) is tap and tap.kind == "video"
            # nobody reads, yet the tap keeps aiortc's receive queue empty
            await poll_until(lambda: tap.frames_received >= 15)
            assert remote._queue.qsize() <= 1
            assert tap.latest is not None

            slow = tap.subscribe(id="msid-track")
            assert slow.id == "msid-track" and slow.kind == "video"
            assert media.tap_for(slow) is tap
            # forwarding a remote track must not add a second reader: relayed() subscribes
            for forward in (media.relayed(remote), media.relayed(slow)):
                assert isinstance(forward, media.TapTrack) and forward.tap is tap
                forward.stop()
            first = media.read_stamp((await slow.recv()).to_ndarray(format="rgb24"))
            await asyncio.sleep(0.3)  # a slow reader (the test's point, not a timing guess)
            second = media.read_stamp((await slow.recv()).to_ndarray(format="rgb24"))
            third = media.read_stamp((await slow.recv()).to_ndarray(format="rgb24"))
            assert first and second and third
            assert second.counter - first.counter >= 5  # stale frames skipped, not queued
            assert third.counter > second.counter
            assert slow.frames_dropped >= 4 and slow.frames_returned == 3

            # the remote track ends with its connection: so do the tap and its readers
            reader = asyncio.create_task(collect(remote, 30))
            await poll_until(lambda: len(tap.subscribers) == 2)
            await receiver.close()
            await asyncio.wait_for(reader, 5)
            assert tap.ended and remote.readyState == "ended"
            assert slow.readyState == "ended"
            with pytest.raises(MediaStreamError):
                await slow.recv()
    finally:
        source.stop()


async def test_tap_end_propagates_from_local_source() -> None:
    source = media.SyntheticVideoTrack(160, 120)
    tap = media.tap_for(source)
    sub = tap.subscribe()
    frame = await sub.recv()
    assert media.read_stamp(frame.to_ndarray(format="rgb24")) is not None

    got: list[np.ndarray] = []

    async def read() -> None:
        async for array in media.frames(source):
            got.append(array)

    reader = asyncio.create_task(read())
    await poll_until(lambda: len(got) >= 2)
    await sub.recv()
    pending = asyncio.create_task(sub.recv())  # will be waiting when the source stops
    source.stop()
    await asyncio.wait_for(reader, 2)  # the frames() iterator ended
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, 2)
    assert tap.ended and sub.readyState == "ended"
    assert tap.subscribe().readyState == "ended"  # late subscribers are ended too


async def test_tap_aclose_is_idempotent_and_tap_for_replaces_it() -> None:
    source = media.SyntheticVideoTrack(160, 120)
    try:
        tap = media.Tap(source)
        assert media.tap_for(source) is tap  # a Tap made directly is found too
        sub = tap.subscribe()
        await sub.recv()
        waiting = asyncio.create_task(sub.recv())
        await tap.aclose()
        await tap.aclose()
        assert tap.ended and sub.readyState == "ended"
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(waiting, 2)
        fresh = media.tap_for(source)
        assert fresh is not tap and not fresh.ended
        assert (await fresh.subscribe().recv()) is not None
        await fresh.aclose()
    finally:
        source.stop()


async def test_local_tap_ends_with_its_last_subscriber_and_frees_its_source() -> None:
    # A local tap left waiting for subscribers held its source through `_taps` forever: one
    # task and one track per published-and-dropped stream (found by tests/test_soak.py).
    source = media.SyntheticVideoTrack(160, 120, fps=50)
    for _ in range(5):  # publish, unpublish, publish again... with one source
        tap = media.tap_for(source)
        sub = tap.subscribe()
        assert (await sub.recv()) is not None
        sub.stop()
        await asyncio.wait_for(asyncio.wait({tap._task}), 2)
        assert tap.ended and source.readyState == "live"
    # no guard of the ended taps still listens on the source
    assert source.listeners("ended") == []

    dropped = weakref.ref(source)
    del source, tap, sub
    gc.collect()
    assert dropped() is None, "a dropped track is kept alive by its tap"
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("peerix-tap-")]


async def test_tap_ends_when_a_source_stops_while_blocked() -> None:
    # A stopped track may never wake its pending recv() (a remote that stopped sending, a
    # MediaPlayer): relays and taps must still end.
    for source in (BlockingTrack(), RemoteStreamTrack(kind="video")):
        tap = media.Tap(source)
        iterator = media.frames(tap)
        reader = asyncio.create_task(iterator.__anext__())
        # the reader blocks in the source's recv(): ours says so, aiortc's waits on its queue
        await poll_until(
            source.blocked.is_set
            if isinstance(source, BlockingTrack)
            else lambda source=source: bool(source._queue._getters)  # type: ignore[attr-defined]
        )
        source.stop()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(reader, 2)
        assert tap.ended


async def test_relayed_survives_a_failing_source() -> None:
    source = FailingTrack()
    first, second = media.relayed(source), media.relayed(source)
    for track in (first, second):
        assert (await track.recv()) is not None

    async def read_to_the_end(track: MediaStreamTrack) -> None:
        while True:
            await track.recv()

    # a reader that died on the RuntimeError would leave these waiting forever
    for track in (first, second):
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(read_to_the_end(track), 2)


async def test_frames_break_unsubscribes() -> None:
    source = media.SyntheticVideoTrack(160, 120)
    try:
        tap = media.tap_for(source)
        async for array in media.frames(source, "bgr24"):
            assert array.shape == (120, 160, 3)
            assert len(tap.subscribers) == 1
            break
        assert tap.subscribers == []  # the dropped iterator took its subscription with it
        async with media.frames(source, "gray") as iterator:
            array = await iterator.__anext__()
            assert array.shape == (120, 160) and len(tap.subscribers) == 1
        assert tap.subscribers == []
        with pytest.raises(PeerixError, match="format"):
            media.frames(source, "yuv444p")
    finally:
        source.stop()


async def test_frames_of_audio_yields_samples() -> None:
    tone = media.ToneTrack()
    try:
        async for samples in media.frames(tone):
            assert samples.dtype == np.int16 and samples.shape == (1, 960)
            break
    finally:
        tone.stop()


# ---------------------------------------------------------------------------------------------
# from_file


async def test_from_file_plays_a_file_and_ends(tmp_path: Path) -> None:
    stream = media.from_file(make_media_file(tmp_path / "clip.mp4"))
    assert sorted(t.kind for t in stream.tracks) == ["audio", "video"]
    assert stream._resources  # the MediaPlayer stays alive with the stream
    video = stream.video_tracks[0]
    arrays = await collect(video, 5)  # ends by itself after 15 frames (~0.5 s)
    stream.stop()
    assert 10 <= len(arrays) <= 15
    assert all(a.shape == (120, 160, 3) for _, a in arrays)
    counters = [s.counter for _, s in stamps(arrays)]
    assert counters == sorted(counters) and counters[-1] >= 13


async def test_from_file_loops(tmp_path: Path) -> None:
    stream = media.from_file(make_media_file(tmp_path / "clip.mp4", audio=False), loop=True)
    try:
        got: list[int] = []
        async for array in media.frames(stream.video_tracks[0]):
            if (stamp := media.read_stamp(array)) is not None:
                got.append(stamp.counter)
            if len(got) >= 20:
                break
    finally:
        stream.stop()
    assert max(got) <= 14 and (np.diff(got) < 0).any()  # wrapped around


async def test_from_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(PeerixError) as info:
        media.from_file(missing)
    assert info.value.code == "PEER_MEDIASTREAM_ERROR"
    assert str(missing) in info.value.message and "No such file" in info.value.message
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(PeerixError) as info:
        media.from_file(garbage)
    assert info.value.code == "PEER_MEDIASTREAM_ERROR" and str(garbage) in info.value.message


# ---------------------------------------------------------------------------------------------
# from_frames


def _solid(value: int) -> np.ndarray:
    return np.full((48, 64, 3), value, np.uint8)


async def test_from_frames_with_callables() -> None:
    calls: list[tuple[int, float]] = []

    def draw(index: int, t: float) -> np.ndarray:
        calls.append((index, t))
        return _solid(10 * index)

    async def draw_async(index: int, t: float) -> np.ndarray:
        await asyncio.sleep(0)
        return _solid(200 - index)

    sync_track = media.from_frames(draw, fps=50).video_tracks[0]
    async_track = media.from_frames(draw_async, fps=50).video_tracks[0]
    try:
        sync_frames = [await sync_track.recv() for _ in range(3)]
        async_frames = [await async_track.recv() for _ in range(3)]
    finally:
        sync_track.stop()
        async_track.stop()
    assert [i for i, _ in calls] == [0, 1, 2]
    assert calls[0][1] == 0 and calls[2][1] == pytest.approx(0.04, abs=0.01)
    assert [int(f.to_ndarray(format="rgb24")[0, 0, 0]) for f in sync_frames] == [0, 10, 20]
    assert [int(f.to_ndarray(format="rgb24")[0, 0, 0]) for f in async_frames] == [200, 199, 198]
    assert (sync_frames[0].width, sync_frames[0].height) == (64, 48)


async def test_from_frames_with_async_generator_and_finite_list() -> None:
    async def generate() -> AsyncIterator[np.ndarray]:
        for value in (1, 2, 3):
            yield _solid(value)

    for source in (generate(), [_solid(1), _solid(2), _solid(3)]):
        track = media.from_frames(source, fps=100).video_tracks[0]
        values = [int((await track.recv()).to_ndarray(format="rgb24")[0, 0, 0]) for _ in range(3)]
        assert values == [1, 2, 3]
        with pytest.raises(MediaStreamError):
            await track.recv()
        assert track.readyState == "ended"

    # through frames() (a relayed tap, frames become yuv420p: values are approximate)
    track = media.from_frames([_solid(50 * v) for v in range(5)], fps=100).video_tracks[0]
    arrays = [a async for a in media.frames(track)]
    assert 1 <= len(arrays) <= 5 and abs(int(arrays[-1][0, 0, 0]) - 200) <= 3

    with pytest.raises(PeerixError, match="call it"):
        media.from_frames(generate)  # type: ignore[arg-type]


async def test_from_frames_bad_frame_ends_track_with_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad_frames = [np.zeros((48, 64, 3), np.float32), np.zeros((48, 64), np.uint8), "frame"]
    for bad in bad_frames:
        track = media.from_frames([_solid(1), bad], fps=100).video_tracks[0]
        await track.recv()
        with (
            caplog.at_level(logging.ERROR, logger="peerix_nb.media"),
            pytest.raises(PeerixError) as info,
        ):
            await track.recv()
        assert info.value.code == "PEER_MEDIASTREAM_ERROR"
        assert isinstance(info.value, MediaStreamError)  # aiortc consumers see the end
        assert "frame 1 must be an HxWx3 uint8 RGB ndarray" in info.value.message
        assert track.readyState == "ended" and track.error is info.value
        assert "frame 1 must be" in caplog.text

    def broken(index: int, t: float) -> np.ndarray:
        raise ZeroDivisionError("oops")

    track = media.from_frames(broken).video_tracks[0]
    # through a tap (relay): the reader ends, nothing crashes
    assert [a async for a in media.frames(track)] == []
    assert isinstance(track.error, PeerixError) and "ZeroDivisionError" in track.error.message


# ---------------------------------------------------------------------------------------------
# frame_callback


async def test_frame_callback_skips_frames_while_busy() -> None:
    source = media.SyntheticVideoTrack(160, 120, fps=30)
    seen: list[int] = []

    async def slow(array: np.ndarray) -> None:
        stamp = media.read_stamp(array)
        assert stamp is not None
        seen.append(stamp.counter)
        await asyncio.sleep(0.1)  # busy for 3 frame intervals

    try:
        handle = media.frame_callback(source, slow)
        await poll_until(lambda: handle.frames_processed >= 4)
        assert handle.running
        await handle.aclose()
        await handle.aclose()
    finally:
        source.stop()
    assert not handle.running and handle.error is None
    assert handle.frames_skipped >= 4
    assert (np.diff(seen) >= 2).all(), seen  # never queued


async def test_frame_callback_records_errors(caplog: pytest.LogCaptureFixture) -> None:
    source = media.SyntheticVideoTrack(160, 120, fps=30)
    calls: list[np.ndarray] = []

    def explode(array: np.ndarray) -> None:
        calls.append(array)
        if len(calls) == 2:
            raise ValueError("bad model")

    try:
        with caplog.at_level(logging.ERROR, logger="peerix_nb.media"):
            handle = media.frame_callback(source, explode)
            await asyncio.wait_for(handle.wait(), 5)
    finally:
        source.stop()
    assert isinstance(handle.error, ValueError) and handle.frames_processed == 1
    assert not handle.running and "bad model" in caplog.text
    assert media.tap_for(source).subscribers == []  # its subscription is gone
    handle.stop()  # harmless after the end


async def test_frame_callback_ends_with_the_track() -> None:
    track = media.from_frames([_solid(v) for v in range(3)], fps=100).video_tracks[0]
    got: list[int] = []
    handle = media.frame_callback(track, lambda a: got.append(int(a[0, 0, 0])))
    await asyncio.wait_for(handle.wait(), 5)
    assert handle.error is None and got and got == sorted(got)
