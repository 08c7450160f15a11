"""Media in rooms over real aiortc connections: publish/unpublish/republish, glare, late joiners,
fan-out to several remotes, frames as numpy, m-line reuse (docs/PROTOCOL.md "Media")."""

from __future__ import annotations

import asyncio
import gc
import itertools
import weakref

import pytest

from peerix_nb import MemoryDriver, Peer, PeerixError, media
from testbed.rooms import channels_open, leave_all, room, wait_until
from tests.util import Recorder

SMALL = {"width": 160, "height": 120, "fps": 15}


def stream_events(rec: Recorder) -> list[tuple[str, str | None, str | None]]:
    return [
        (e.name, e.label, e.track.kind if e.track is not None else None)
        for e in rec.events
        if e.name.startswith(("stream:", "track:"))
    ]


def has_stream(peer: Peer, remote: Peer, label: str, kinds: set[str]) -> bool:
    r = peer.connections.get(remote.id)
    stream = r.streams.get(label) if r else None
    return stream is not None and {t.kind for t in stream.tracks} == kinds


def no_stream(peer: Peer, remote: Peer, label: str) -> bool:
    r = peer.connections.get(remote.id)
    return r is not None and label not in r.streams


@pytest.mark.parametrize("ids", [["a", "b"], ["b", "a"]])
@pytest.mark.parametrize("repeat", range(3))
async def test_peerix_media_scenario_both_publish_at_once(ids, repeat):
    """Both publish `camera` (video+audio) at the same moment (glare), then both unpublish."""
    a, b = await room(2, ids=[f"{i}{repeat}" for i in ids], channels=["chat"])
    rec_a, rec_b = Recorder(a), Recorder(b)
    await asyncio.gather(
        a.publish(media.synthetic(**SMALL), label="camera"),
        b.publish(media.synthetic(**SMALL), label="camera"),
    )
    await wait_until(
        [a, b],
        lambda: (
            has_stream(a, b, "camera", {"audio", "video"})
            and has_stream(b, a, "camera", {"audio", "video"})
        ),
    )
    for rec in (rec_a, rec_b):
        events = stream_events(rec)
        assert events[0] == ("stream:add", "camera", None)
        assert sorted(events[1:]) == [
            ("track:add", "camera", "audio"),
            ("track:add", "camera", "video"),
        ]
        assert not rec.errors()
    await asyncio.gather(a.unpublish("camera"), b.unpublish("camera"))
    await wait_until([a, b], lambda: no_stream(a, b, "camera") and no_stream(b, a, "camera"))
    for rec in (rec_a, rec_b):
        events = stream_events(rec)[3:]
        assert sorted(events[:2]) == [
            ("track:remove", "camera", "audio"),
            ("track:remove", "camera", "video"),
        ]
        assert events[2:] == [("stream:remove", "camera", None)]
        assert not rec.errors()
    # the data channel kept working through all the renegotiation
    a.send("still", label="chat")
    assert (await b.wait_for("channel:message", timeout=5)).data == "still"
    await leave_all([a, b])


async def test_republish_with_fewer_tracks_removes_only_those():
    a, b = await room(2)
    rec = Recorder(b)
    await a.publish(media.synthetic(**SMALL), label="camera")
    await wait_until([b], lambda: has_stream(b, a, "camera", {"audio", "video"}))
    video_before = b.connections[a.id].streams["camera"].get_tracks("video")[0]
    await a.publish(media.synthetic(audio=False, **SMALL), label="camera")
    await wait_until([b], lambda: has_stream(b, a, "camera", {"video"}))
    assert stream_events(rec)[3:] == [("track:remove", "camera", "audio")]
    # the video track is the same one and frames keep coming from the new source
    assert b.connections[a.id].streams["camera"].get_tracks("video")[0] is video_before
    counters = []
    async for image in media.frames(video_before):
        stamp = media.read_stamp(image)
        if stamp is not None:
            counters.append(stamp.counter)
        if len(counters) >= 3:
            break
    await leave_all([a, b])


async def test_publish_before_join_and_late_joiner_get_the_stream():
    driver = MemoryDriver()
    a = Peer(driver=driver)
    await a.publish(media.synthetic(audio=False, **SMALL), label="screen")
    b = Peer(driver=driver)
    await a.join(room="m")
    await b.join(room="m")
    await wait_until([a, b], lambda: has_stream(b, a, "screen", {"video"}))
    c = Peer(driver=driver)
    rec_c = Recorder(c)
    await c.join(room="m")
    await wait_until([a, b, c], lambda: has_stream(c, a, "screen", {"video"}))
    assert ("stream:add", "screen", None) in stream_events(rec_c)
    await leave_all([a, b, c])


async def test_remote_frames_are_numpy_arrays_of_the_published_size():
    a, b = await room(2)
    got = asyncio.get_running_loop().create_future()
    b.once("track:add", lambda e: got.set_result(e))
    await a.publish(media.synthetic(audio=False, width=320, height=240, fps=15), label="cam")
    event = await asyncio.wait_for(got, 10)
    assert event.track.kind == "video" and event.label == "cam" and event.remote.id == a.id
    shapes = []
    async for image in media.frames(event.track, format="rgb24"):
        shapes.append((image.shape, str(image.dtype)))
        if len(shapes) == 3:
            break
    assert shapes == [((240, 320, 3), "uint8")] * 3
    frame = b.events.to_frame()
    rows = frame[frame["event"] == "track:add"]
    assert rows["kind"].tolist() == ["video"] and rows["label"].tolist() == ["cam"]
    assert rows["detail"].tolist() == [a.streams["cam"].id]
    await leave_all([a, b])


async def test_one_publisher_reaches_two_receivers_with_all_frames():
    a, b, c = await room(3)
    await a.publish(media.synthetic(audio=False, width=160, height=120, fps=20), label="cam")
    await wait_until(
        [b, c], lambda: has_stream(b, a, "cam", {"video"}) and has_stream(c, a, "cam", {"video"})
    )

    async def counters(receiver: Peer) -> list[int]:
        track = receiver.connections[a.id].streams["cam"].get_tracks("video")[0]
        seen: list[int] = []
        async for image in media.frames(track):
            stamp = media.read_stamp(image)
            if stamp is not None:
                seen.append(stamp.counter)
            if len(seen) >= 30:
                return seen
        return seen

    for seen in await asyncio.gather(counters(b), counters(c)):
        steps = [later - earlier for earlier, later in itertools.pairwise(seen)]
        # every frame reaches every receiver (a split track would alternate: steps of 2)
        assert sum(1 for s in steps if s == 1) >= 0.8 * len(steps), seen
    await leave_all([a, b, c])


async def test_twenty_republish_cycles_reuse_m_lines():
    a, b = await room(2)
    for i in range(20):
        await a.publish(media.synthetic(**SMALL), label=f"cam{i % 2}")
        await wait_until([b], lambda i=i: has_stream(b, a, f"cam{i % 2}", {"audio", "video"}))
        await a.unpublish(f"cam{i % 2}")
        await wait_until([b], lambda i=i: no_stream(b, a, f"cam{i % 2}"))
    for p, other in ((a, b), (b, a)):
        transceivers = p.connections[other.id].connection.getTransceivers()
        assert len(transceivers) <= 2, [(t.kind, t.mid, t.direction) for t in transceivers]
    await leave_all([a, b])


async def test_publish_while_a_data_transfer_is_running():
    a, b = await room(2, channels=["bulk"])
    received = []
    b.on("channel:message", lambda e: received.append(len(e.data)))
    blob = b"x" * 16384
    for _ in range(300):
        a.send(blob, label="bulk")
    await a.publish(media.synthetic(audio=False, **SMALL), label="cam")
    await wait_until(
        [a, b], lambda: has_stream(b, a, "cam", {"video"}) and len(received) == 300, timeout=30
    )
    await leave_all([a, b])


async def test_both_sides_republish_repeatedly_converge():
    a, b = await room(2, ids=["a", "b"], channels=["chat"])
    for i in range(4):
        video_only = i % 2 == 1
        await asyncio.gather(
            a.publish(media.synthetic(audio=not video_only, **SMALL), label="cam"),
            b.publish(media.synthetic(audio=not video_only, **SMALL), label="cam"),
        )
        kinds = {"video"} if video_only else {"audio", "video"}
        await wait_until(
            [a, b],
            lambda kinds=kinds: has_stream(a, b, "cam", kinds) and has_stream(b, a, "cam", kinds),
        )
    await wait_until([a, b], lambda: channels_open([a, b], "chat"))
    await leave_all([a, b])


async def test_publish_accepts_a_bare_track_and_a_stream_alone():
    a, b = await room(2)
    track = media.synthetic(audio=False, **SMALL).video_tracks[0]
    await a.publish(track, label="bare")
    stream = media.synthetic(video=False)
    await a.publish(stream)  # label = the stream's id
    await wait_until(
        [b], lambda: has_stream(b, a, "bare", {"video"}) and has_stream(b, a, stream.id, {"audio"})
    )
    await leave_all([a, b])


async def test_readers_of_a_removed_remote_track_end_and_the_receiver_keeps_draining():
    a, b = await room(2)
    added = asyncio.get_running_loop().create_future()
    b.once("track:add", lambda e: added.set_result(e))
    await a.publish(media.synthetic(audio=False, **SMALL), label="cam")
    first = await asyncio.wait_for(added, 10)
    reader = media.frames(first.track)
    assert (await asyncio.wait_for(reader.__anext__(), 10)).shape == (120, 160, 3)
    removed = b.wait_for("track:remove", timeout=10)
    await a.unpublish("cam")
    assert (await removed).track is first.track
    async with asyncio.timeout(10):
        async for _ in reader:
            pass  # ends once the track is removed
    remote = b.connections[a.id]
    taps = list(remote._media.taps.values())
    assert taps and not any(tap.ended for tap in taps)
    # the same transceiver carries the next stream: a new track, frames flowing again
    again = asyncio.get_running_loop().create_future()
    b.once("track:add", lambda e: again.set_result(e))
    await a.publish(media.synthetic(audio=False, **SMALL), label="cam2")
    second = await asyncio.wait_for(again, 10)
    assert second.track is not first.track and second.label == "cam2"
    assert list(remote._media.taps.values()) == taps
    async for image in media.frames(second.track):
        assert image.shape == (120, 160, 3)
        break
    await leave_all([a, b])


async def test_an_unpublished_local_source_is_no_longer_read():
    a, b = await room(2)
    track = media.synthetic(audio=False, **SMALL).video_tracks[0]
    await a.publish(track, label="cam")
    await wait_until([b], lambda: has_stream(b, a, "cam", {"video"}))
    tap = media.tap_for(track)
    assert tap.frames_received > 0 and tap.subscribers
    await a.unpublish("cam")
    await wait_until([b], lambda: no_stream(b, a, "cam"))
    assert not tap.subscribers
    before = tap.frames_received
    await asyncio.sleep(0.5)  # a negative check needs a window: 7 frames at 15 fps if still read
    assert tap.frames_received <= before + 1
    await leave_all([a, b])


async def test_an_unpublished_and_dropped_stream_is_freed_while_the_connection_lives():
    # The sender's wrapper track kept its last finished read (a task whose MediaStreamError
    # traceback held the old subscriber, its tap, the tap's last frame and the source) while
    # it idled: a dropped stream lived until the next publish (found by tests/test_soak.py,
    # where the count of live Taps depended on timing).
    a, b = await room(2)
    try:
        for _ in range(3):
            stream = media.synthetic(**SMALL)
            first = asyncio.ensure_future(b.wait_for("media:first-frame", timeout=10))
            await a.publish(stream, label="cam")
            await first  # frames flowed through the sender's wrapper
            # Taken now: once a tap has ended, tap_for() would make a new one that never ends.
            taps = [media.tap_for(track) for track in stream.tracks]
            await a.unpublish("cam")
            await wait_until([b], lambda: no_stream(b, a, "cam"))
            await asyncio.wait_for(asyncio.wait({tap._task for tap in taps}), 5)
            dropped = [weakref.ref(track) for track in stream.tracks]
            del stream, taps
            gc.collect()
            assert [ref() for ref in dropped] == [None, None], "an unpublished stream is held"
        assert a.connections[b.id].connection.connectionState == "connected"
    finally:
        await leave_all([a, b])


async def test_one_stream_under_two_labels_shows_under_both():
    # Remotes name streams by id: the second label used to be lost (b showed only "one").
    a, b = await room(2)
    stream = media.synthetic(audio=False, **SMALL)
    await a.publish(stream, label="one")
    await a.publish(stream, label="two")
    await wait_until(
        [b], lambda: has_stream(b, a, "one", {"video"}) and has_stream(b, a, "two", {"video"})
    )
    shown = b.connections[a.id].streams
    assert shown["one"].id == stream.id and shown["two"].id != stream.id
    await leave_all([a, b])
    stream.stop()


async def test_publishing_an_ended_track_says_so():
    # It was accepted: the remote got a stream that never delivered a frame.
    a = Peer(driver=MemoryDriver())
    stream = media.synthetic(**SMALL)
    stream.video_tracks[0].stop()
    with pytest.raises(PeerixError, match=r"cannot publish 'cam': its video track .* has ended"):
        a.publish(stream, label="cam")
    assert "cam" not in a.streams
    stream.stop()
