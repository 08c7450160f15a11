"""Widget logic without a browser: the comm is a recorder, the browser is `_handle_msg`.

Messages are fed exactly as the JS front ends send them (custom messages: "rendered",
"views", "ack", "send", "groups"); what the kernel pushes is read from the recorder. Peers
are real (aiortc over a MemoryDriver), as in test_peer.py.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import numpy as np
import pytest

from peerix_nb import MemoryDriver, Peer
from peerix_nb.media import frames as media_frames
from peerix_nb.media import from_frames, synthetic
from peerix_nb.widgets import ChatBox, EventsView, RoomWidget, VideoView
from peerix_nb.widgets.video import JpegEncoder
from testbed.rooms import leave_all, poll_until, room, wait_until
from tests.widget_comm import page, pushed, recording_comm  # noqa: F401 (autouse fixture)


def browser(widget: Any, content: dict[str, Any]) -> None:
    """Deliver a custom message from the JS front end, as the comm would."""
    page(widget, content)


def frames(widget: Any) -> list[tuple[dict[str, Any], bytes]]:
    return [(c, b[0]) for c, b in pushed(widget) if c.get("type") == "frame"]


def decode_jpeg(data: bytes) -> av.VideoFrame:
    codec = av.CodecContext.create("mjpeg", "r")
    (frame,) = codec.decode(av.Packet(data))
    return frame


# -- VideoView -----------------------------------------------------------------------------------
async def test_jpeg_encoder_round_trip() -> None:
    stream = synthetic(audio=False, width=320, height=240)
    frame = await stream.video_tracks[0].recv()
    jpeg = JpegEncoder().encode(frame)
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    decoded = decode_jpeg(jpeg)
    assert (decoded.width, decoded.height) == (320, 240)
    stream.stop()


async def test_video_waits_for_a_view_then_keeps_two_frames_in_flight() -> None:
    stream = synthetic(audio=False, width=160, height=120)
    view = VideoView(stream)
    await asyncio.sleep(0.2)  # frames are being produced; nobody watches yet
    assert view.status == "waiting" and frames(view) == []

    browser(view, {"type": "rendered", "frontend": "page", "views": 1})
    await poll_until(lambda: len(frames(view)) == 2)
    assert view.status == "live"
    await asyncio.sleep(0.3)  # ~9 more source frames while nothing is acknowledged
    assert len(frames(view)) == 2 and view.in_flight == 2 and view.max_in_flight == 2
    content, jpeg = frames(view)[0]
    assert content["seq"] == 1 and (content["width"], content["height"]) == (160, 120)
    assert decode_jpeg(jpeg).width == 160

    browser(view, {"type": "ack", "frontend": "page", "seq": 2, "delay": 0})  # cumulative
    await poll_until(lambda: len(frames(view)) == 4)
    assert view.frames_acked == 2 and view.max_in_flight == 2
    # the frames made while waiting were dropped in the kernel (counted at the next read)
    assert view.frames_dropped >= 3
    assert frames(view)[2][0]["seq"] == 3
    view.close()
    stream.stop()


async def test_video_acks_pace_the_stream_and_measure_latency() -> None:
    stream = synthetic(audio=False, width=160, height=120)
    view = VideoView(stream)
    browser(view, {"type": "rendered", "frontend": "page", "views": 1})
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # a fast browser: ack whatever arrived
        if view.in_flight:
            browser(view, {"type": "ack", "frontend": "page", "seq": frames(view)[-1][0]["seq"]})
        await asyncio.sleep(0.005)
    stats = view.stats
    assert stats["frames_sent"] >= 20 and stats["max_in_flight"] <= 2, stats
    assert stats["fps"] > 15 and stats["frames_lost"] == 0, stats
    assert stats["latency_kind"] == "e2e" and 0 < stats["latency_ms"] < 500, stats
    assert frames(view)[-1][0]["latency"] is not None  # the overlay gets a number
    view.close()
    stream.stop()


async def test_video_max_fps_limits_the_push_rate() -> None:
    stream = synthetic(audio=False, width=160, height=120)
    view = VideoView(stream, max_fps=5)
    browser(view, {"type": "rendered", "frontend": "page", "views": 1})
    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        if view.in_flight:
            browser(view, {"type": "ack", "frontend": "page", "seq": frames(view)[-1][0]["seq"]})
        await asyncio.sleep(0.005)
    assert 4 <= view.frames_sent <= 7
    view.close()
    stream.stop()


async def test_video_lost_acks_free_their_slots_after_ack_timeout() -> None:
    stream = synthetic(audio=False, width=160, height=120)
    view = VideoView(stream, ack_timeout=0.2)
    browser(view, {"type": "rendered", "frontend": "page", "views": 1})
    await poll_until(lambda: view.frames_lost >= 4)
    assert view.frames_sent >= 5 and view.max_in_flight == 2
    view.close()
    stream.stop()


async def test_video_pauses_without_views_and_resumes() -> None:
    stream = synthetic(audio=False, width=160, height=120)
    view = VideoView(stream)
    browser(view, {"type": "rendered", "frontend": "page", "views": 1})
    await poll_until(lambda: len(frames(view)) == 2)
    browser(view, {"type": "views", "frontend": "page", "views": 0})  # output cleared
    await poll_until(lambda: view.status == "paused")
    assert view.in_flight == 0
    sent = len(frames(view))
    await asyncio.sleep(0.2)
    assert len(frames(view)) == sent
    browser(view, {"type": "rendered", "frontend": "page", "views": 1})
    await poll_until(lambda: len(frames(view)) == sent + 2)
    assert view.status == "live"
    view.close()
    stream.stop()


async def test_video_several_pages_share_per_frame_acks() -> None:
    stream = synthetic(audio=False, width=160, height=120)
    view = VideoView(stream)
    browser(view, {"type": "rendered", "frontend": "a", "views": 2})  # one page, two views
    browser(view, {"type": "rendered", "frontend": "b", "views": 1})  # another page
    await poll_until(lambda: len(frames(view)) == 2)
    browser(view, {"type": "ack", "frontend": "a", "seq": 2})
    browser(view, {"type": "ack", "frontend": "b", "seq": 2})  # the slower page: ignored
    assert view.frames_acked == 2 and view.stats["views"] == 3
    browser(view, {"type": "views", "frontend": "a", "views": 0})
    assert view.stats["views"] == 1 and view.status != "paused"  # page b still watches
    view.close()
    stream.stop()


async def test_video_shows_the_end_of_the_track_and_close_releases_it() -> None:
    stream = synthetic(audio=False, width=160, height=120)
    track = stream.video_tracks[0]
    view = VideoView(stream)
    browser(view, {"type": "rendered", "frontend": "page", "views": 1})
    await poll_until(lambda: len(frames(view)) >= 1)
    stream.stop()
    await view.wait_status("ended", timeout=5)
    assert "ended" in view.message and view.in_flight == 0
    assert view.running  # still alive: set_source() may give it another track
    other = synthetic(audio=False, width=320, height=240)
    view.set_source(other)
    await poll_until(lambda: frames(view)[-1][0]["width"] == 320)
    assert view.status == "live"
    view.close()
    await poll_until(lambda: not view.running)
    assert view.comm is None
    from peerix_nb.media import tap_for

    assert tap_for(other.video_tracks[0]).subscribers == []  # nothing of ours left reading
    assert track.readyState == "ended"
    other.stop()


async def test_video_of_a_remote_track_ends_with_it_and_never_shows_the_next_stream() -> None:
    """The remote unpublishes: the view ends. The remote's next stream reuses the same
    transceiver (and so the same tap): the ended view must not start showing it."""
    a, b = await room(2, channels=["chat"])
    try:
        added = asyncio.ensure_future(b.wait_for("track:add", timeout=10))
        await a.publish(synthetic(audio=False, width=160, height=120), label="one")
        track = (await added).track
        view = VideoView(track)
        browser(view, {"type": "rendered", "frontend": "page", "views": 1})
        await poll_until(lambda: len(frames(view)) >= 1)
        await a.unpublish("one")
        await view.wait_status("ended", timeout=5)
        shown = len(frames(view))
        browser(view, {"type": "ack", "frontend": "page", "seq": frames(view)[-1][0]["seq"]})
        added = asyncio.ensure_future(b.wait_for("media:first-frame", timeout=10))
        await a.publish(synthetic(audio=False, width=320, height=240), label="two")
        await added  # the next stream's frames are flowing on b
        assert view.status == "ended" and len(frames(view)) == shown
        view.close()
    finally:
        await leave_all([a, b])


async def test_video_preview_of_a_generator_source_leaves_it_usable() -> None:
    """Switching a preview away from a from_frames() stream fed by an async generator, or
    closing it, must not close the generator: the stream may be published or shown elsewhere."""

    async def gradient() -> AsyncIterator[np.ndarray]:
        n = 0
        while True:
            n += 1
            await asyncio.sleep(0.03)  # a computed frame: the read in flight waits in here
            yield np.full((120, 160, 3), n % 256, dtype=np.uint8)

    stream = from_frames(gradient(), fps=1000)  # paced by the generator, not the track
    view = VideoView(stream)
    browser(view, {"type": "rendered", "frontend": "page", "views": 1})
    await poll_until(lambda: len(frames(view)) >= 1)
    other = synthetic(audio=False, width=320, height=240)
    view.set_source(other)
    await poll_until(lambda: frames(view)[-1][0]["width"] == 320)
    view.close()
    await poll_until(lambda: not view.running)
    other.stop()
    async with media_frames(stream.video_tracks[0]) as later:
        array = await asyncio.wait_for(later.__anext__(), 5)
    assert array.shape == (120, 160, 3)
    stream.stop()


async def test_video_looks_for_stamps_again_on_a_new_source() -> None:
    """Past 30 unstamped frames the view stops reading stamps; a synthetic() source set
    afterwards must still get its capture-to-screen latency."""
    plain = from_frames(lambda i, t: np.zeros((120, 160, 3), np.uint8), fps=200)
    view = VideoView(plain)
    browser(view, {"type": "rendered", "frontend": "page", "views": 1})

    async def ack_until(condition: Callable[[], bool]) -> None:
        async def acking() -> bool:
            if view.in_flight:
                seq = frames(view)[-1][0]["seq"]
                browser(view, {"type": "ack", "frontend": "page", "seq": seq, "delay": 0})
            return condition()

        deadline = time.monotonic() + 10
        while not await acking():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.005)

    await ack_until(lambda: view.frames_sent > 35)
    stamped = synthetic(audio=False, width=160, height=120)
    view.set_source(stamped)
    await ack_until(lambda: view.stats["latency_kind"] == "e2e")
    view.close()
    plain.stop()
    stamped.stop()


async def test_video_says_when_no_view_rendered_in_time() -> None:
    stream = synthetic(audio=False, width=160, height=120)
    view = VideoView(stream, rendered_timeout=0.1)
    await poll_until(lambda: "no view rendered" in view.message)
    assert view.status == "waiting"
    view.close()
    stream.stop()


async def test_video_without_a_video_track_waits_for_one() -> None:
    audio_only = synthetic(video=False)
    view = VideoView(audio_only)
    browser(view, {"type": "rendered", "frontend": "page", "views": 1})
    await poll_until(lambda: view.status == "no video")
    video = synthetic(audio=False, width=160, height=120)
    view.set_source(video)
    await poll_until(lambda: len(frames(view)) >= 1)
    view.close()
    audio_only.stop()
    video.stop()


async def test_video_rejects_what_it_cannot_show() -> None:
    stream = synthetic(width=160, height=120)
    with pytest.raises(ValueError, match="audio"):
        VideoView(stream.audio_tracks[0])
    with pytest.raises(TypeError, match="MediaStream"):
        VideoView("camera")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_fps"):
        VideoView(stream, max_fps=0)
    stream.stop()


def test_video_outside_a_loop_says_so() -> None:
    view = VideoView(None)
    assert view.status == "error" and "running asyncio loop" in view.message
    view.close()


# -- ChatBox -------------------------------------------------------------------------------------
async def test_chat_sends_what_is_typed_and_shows_every_remote() -> None:
    a, b, c = await room(3, channels=["chat"])
    box = ChatBox(a)
    got_b, got_c = (
        asyncio.ensure_future(b.wait_for("channel:message", timeout=10)),
        asyncio.ensure_future(c.wait_for("channel:message", timeout=10)),
    )
    browser(box, {"type": "send", "text": "hello all"})
    assert (await got_b).data == "hello all" and (await got_c).data == "hello all"
    mine = box.messages[-1]
    assert mine["self"] and mine["name"] == "p0" and mine["text"] == "hello all" and mine["to"] == 2

    b.send("from b", label="chat")
    c.send(b"\x00\x01\x02", label="chat")
    await poll_until(lambda: len(box.messages) == 3)
    by_name = {m["name"]: m for m in box.messages}
    assert by_name["p1"]["text"] == "from b" and not by_name["p1"]["self"]
    assert by_name["p2"]["text"] == "<3 bytes>" and by_name["p2"]["kind"] == "bytes"
    assert all(isinstance(m["time"], float) for m in box.messages)
    assert box.error == ""

    box.close()
    b.send("after close", label="chat")
    await a.wait_for("channel:message", timeout=10)
    assert len(box.messages) == 3  # no longer listening
    await leave_all([a, b, c])


async def test_chat_says_why_nothing_was_sent() -> None:
    peer = Peer(driver=MemoryDriver())
    box = ChatBox(peer, label="talk")
    await poll_until(lambda: "talk" in peer.channels)  # opened for remotes to come
    browser(box, {"type": "send", "text": "anyone?"})
    assert "not sent" in box.error and "talk" in box.error
    assert box.messages == []
    browser(box, {"type": "send", "text": "   "})  # blank: ignored
    box.close()


async def test_chat_keeps_the_last_messages() -> None:
    a, b = await room(2, channels=["chat"])
    box = ChatBox(a, max_messages=3)
    for i in range(5):
        box.send_message(f"m{i}")
    assert [m["text"] for m in box.messages] == ["m2", "m3", "m4"]
    box.close()
    await leave_all([a, b])


# -- EventsView ----------------------------------------------------------------------------------
async def test_events_view_follows_the_log() -> None:
    driver = MemoryDriver()
    a = Peer(driver=driver)
    view = EventsView(a, last=500, refresh=0.01)
    assert view.rows == []
    b = Peer(driver=driver)
    await a.join(room="ev", metadata={"name": "a"})
    await b.join(room="ev")
    await wait_until([a, b], lambda: any(r.state == "connected" for r in a.connections.values()))
    await poll_until(lambda: view.total == len(a.events) and len(view.rows) == len(a.events))
    logged = [row["event"] for row in a.events]
    assert [row[2] for row in view.rows] == logged  # the log's own rows, in order
    assert "connection:connected" in logged and view.rows[0][2] == "room:join"
    assert {"connection", "room", "signal"} <= set(view.known_groups)
    await leave_all([a, b])
    await poll_until(lambda: view.rows[-1][2] == "room:leave")
    view.close()


async def test_events_view_filters_groups_and_keeps_the_last_rows() -> None:
    a, b = await room(2, channels=["chat"])
    view = EventsView(a, last=3, refresh=0.01)
    assert len(view.rows) == 3 and [r[2] for r in view.rows] == [r["event"] for r in a.events][-3:]
    browser(view, {"type": "groups", "groups": ["connection"]})
    assert view.groups == ["connection"]
    assert view.rows and all(r[2].startswith("connection:") for r in view.rows)
    b.send("ping", label="chat")
    await a.wait_for("channel:message", timeout=10)
    await asyncio.sleep(0.05)
    assert all(r[2].startswith("connection:") for r in view.rows)  # channel rows filtered out
    view.groups = []  # from Python too
    await poll_until(lambda: view.rows[-1][2] == "channel:message")
    assert view.rows[-1][8] == "ping"  # detail column
    view.close()
    await leave_all([a, b])


# -- RoomWidget ----------------------------------------------------------------------------------
async def test_room_widget_join_roster_tiles_and_leave() -> None:
    driver = MemoryDriver()
    ada, bob = Peer(driver=driver), Peer(driver=driver)
    widget = RoomWidget(ada, room="lobby", name="ada")
    assert "No remotes" in widget.roster.value and widget.leave_button.disabled
    await bob.open("chat")
    await bob.publish(synthetic(audio=False, width=160, height=120), label="camera")
    await bob.join(room="lobby", metadata={"name": "bob"})

    widget.join_button.click()  # as the browser's click does
    assert widget.join_button.disabled and "joining" in widget.status.value
    await wait_until([ada], lambda: any(r.state == "connected" for r in ada.connections.values()))
    await poll_until(lambda: 'data-state="connected"' in widget.roster.value)
    assert ">bob<" in widget.roster.value and " ms</td>" in widget.roster.value
    assert ada.metadata == {"name": "ada"} and "chat" in ada.channels
    await poll_until(lambda: len(widget.tiles.children) == 1)
    tile_view = widget.tiles.children[0].children[0]
    assert isinstance(tile_view, VideoView) and tile_view.title == "bob · camera"
    assert "1 connected" in widget.status.value and not widget.leave_button.disabled

    await bob.unpublish("camera")  # the stream goes: so does its tile
    await poll_until(lambda: len(widget.tiles.children) == 0)
    assert not tile_view.running

    widget.leave_button.click()
    await poll_until(lambda: "not in a room" in widget.status.value)
    assert "No remotes" in widget.roster.value and not widget.join_button.disabled
    widget.close()
    await bob.leave()


async def test_room_widget_shows_errors_raised_at_once_and_later() -> None:
    widget = RoomWidget(Peer(driver=MemoryDriver()), room="  ", name="ada")
    widget.join_button.click()
    assert "room must be a non-empty string" in widget.status.value
    assert not widget.join_button.disabled

    class BrokenDriver(MemoryDriver):
        async def subscribe(self, namespace, handler):  # type: ignore[no-untyped-def]
            raise RuntimeError("signaling server unreachable")

    broken = RoomWidget(Peer(driver=BrokenDriver()), room="lobby")
    broken.join_button.click()
    await poll_until(lambda: "unreachable" in broken.status.value)
    assert "PEER_SIGNALING_ERROR" in broken.status.value and "not in a room" in broken.status.value
    assert not broken.join_button.disabled
    widget.close()
    broken.close()


@pytest.mark.parametrize("widget", [RoomWidget, ChatBox, EventsView])
async def test_widgets_given_something_else_than_a_peer_say_so(
    widget: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    # They used to fail deep inside (AttributeError: 'str' object has no attribute 'on'), and a
    # half-made RoomWidget raised again from its __del__ when collected.
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(TypeError, match=rf"^{widget.__name__} needs a peerix_nb Peer.*, got str$"):
        widget("lobby")
    gc.collect()
    assert unraisable == []


async def test_widgets_refuse_keyword_arguments_they_do_not_have_and_bad_values() -> None:
    # traitlets only warns about them (a DeprecationWarning a notebook hides): VideoView(s, fps=5)
    # quietly ran at 30 fps.
    peer, stream = Peer(driver=MemoryDriver()), synthetic(audio=False, width=96, height=72)
    for make, message in [
        (
            lambda: VideoView(stream, fps=5),
            r"^VideoView\(\) got an unexpected keyword argument"
            r" 'fps' \(did you mean 'max_fps'\?\)$",
        ),
        (lambda: RoomWidget(peer, rooom="x"), r"'rooom' \(did you mean 'room'\?\)"),
        (lambda: ChatBox(peer, lable="x"), r"'lable' \(did you mean 'label'\?\)"),
        (lambda: EventsView(peer, lastt=5), r"'lastt' \(did you mean 'last'\?\)"),
    ]:
        with pytest.raises(TypeError, match=message):
            make()
    for bad, message in [
        ({"max_fps": "30"}, "max_fps must be a number > 0, got '30'"),
        ({"max_fps": 0}, "max_fps must be a number > 0"),
        ({"ack_timeout": -1}, "ack_timeout must be a number > 0"),
        ({"rendered_timeout": None}, "rendered_timeout must be a number > 0"),
        ({"qscale": 1}, "qscale must be an integer from 2"),
        ({"qscale": 4.5}, "qscale must be an integer from 2"),
    ]:
        with pytest.raises(ValueError, match=message):
            VideoView(stream, **bad)
    view = VideoView(stream, layout={"width": "200px"})  # a trait of every widget is fine
    assert view.layout.width == "200px"
    view.close()
    stream.stop()


async def test_room_widget_shows_peer_error_events_and_closes_cleanly() -> None:
    a, b = await room(2, channels=["chat"])

    def handler_count() -> int:
        return sum(len(v) for v in a._emitter._handlers.values())

    before = handler_count()
    widget = RoomWidget(a)  # made after joining: shows what is there
    assert widget.room_field.value == "room" and widget.name_field.value == "p0"
    assert 'data-state="connected"' in widget.roster.value and " ms</td>" in widget.roster.value

    def broken_handler(event):  # type: ignore[no-untyped-def]
        raise ValueError("my handler broke")

    a.on("channel:message", broken_handler)
    b.send("x", label="chat")
    await poll_until(lambda: "my handler broke" in widget.status.value)
    widget.close()
    a.off("channel:message", broken_handler)
    assert handler_count() == before  # the widget took every handler of its own with it
    assert a.joined  # closing the widget does not leave the room
    await leave_all([a, b])
