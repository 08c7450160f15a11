"""Readers nobody keeps (issue 13, item 2): `frames()`, `frame_callback()` and widgets started
from an event handler, with no reference kept, must get frames for as long as the track lives.

asyncio holds tasks only weakly: a task waiting in `TapTrack.recv()` was held only by its own
cycle (task -> iterator -> TapTrack -> `_wakeup` -> waiter future -> task), so the collector
destroyed it before its first frame ("Task was destroyed but it is pending!"). Readers left by
`break`, `aclose()` or a cancelled read must still stop being subscribers, so that a local tap
with no subscribers ends and a dropped stream is freed.

Every wait is on an event or a condition with a timeout; a concurrent loop calls `gc.collect()`
meanwhile, so that a reader held by nothing is collected at once instead of by chance.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from peerix_nb import Event, media
from peerix_nb.widgets import VideoView
from testbed.rooms import leave_all, poll_until, room, wait_until
from tests.widget_comm import page, pushed, recording_comm  # noqa: F401 (autouse fixture)

SMALL = {"width": 160, "height": 120, "fps": 15}
FRAMES = 3  # a reader must see this many frames


@contextlib.asynccontextmanager
async def collecting_garbage() -> AsyncIterator[None]:
    """Run `gc.collect()` over and over while the block waits."""
    stop = asyncio.Event()

    async def collect() -> None:
        while not stop.is_set():
            gc.collect()
            await asyncio.sleep(0.005)  # let the readers run between collections

    task = asyncio.ensure_future(collect())
    try:
        yield
    finally:
        stop.set()
        await task


@contextlib.contextmanager
def destroyed_tasks() -> Iterator[list[str]]:
    """Collect the loop's "Task was destroyed but it is pending!" reports."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    reports: list[str] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "destroyed" in context.get("message", ""):
            reports.append(repr(context.get("task")))
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        yield reports
    finally:
        loop.set_exception_handler(previous)


class Readers:
    """Readers of a track started and forgotten, as a handler does: the caller keeps no task,
    iterator or handle; only what they saw, and weak references to check that they end."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.shapes: list[tuple[int, ...]] = []
        self.arrived = asyncio.Event()  # FRAMES frames seen
        self.handles: list[weakref.ref[Any]] = []

    def seen(self, array: np.ndarray) -> None:
        self.shapes.append(array.shape)
        if len(self.shapes) >= FRAMES:
            self.arrived.set()

    async def consume(self, track: media.MediaStreamTrack) -> None:
        async for array in media.frames(track):
            self.seen(array)

    def start(self, track: media.MediaStreamTrack) -> Any:
        """Start a reader of `track`; return its task or handle (the caller drops it)."""
        if self.kind == "frames":
            reader: Any = asyncio.ensure_future(self.consume(track))
        else:
            reader = media.frame_callback(track, self.seen)
        self.handles.append(weakref.ref(reader))
        return reader

    def handler(self, form: str) -> Callable[[Event], Any]:
        if form == "statement":

            def on_track(event: Event) -> None:
                self.start(event.track)

            return on_track
        # The form, `lambda e: asyncio.ensure_future(consume(e.track))`: the Peer's
        # emitter awaits (and so holds) a returned task, not a FrameCallback handle.
        return lambda event: self.start(event.track)

    def ended(self) -> bool:
        """Every reader has finished (or is gone) since its track ended."""
        for ref in self.handles:
            handle = ref()
            if handle is not None and (
                handle.running if isinstance(handle, media.FrameCallback) else not handle.done()
            ):
                return False
        return True


# == readers of a remote track, started from track:add =============================================
@pytest.mark.timeout(30)
@pytest.mark.parametrize("form", ["statement", "returns-it"])
@pytest.mark.parametrize("kind", ["frames", "frame_callback"])
async def test_a_reader_started_from_a_handler_gets_frames_until_the_track_ends(
    kind: str, form: str
) -> None:
    readers = Readers(kind)
    a, b = await room(2)
    try:
        b.on("track:add", readers.handler(form))
        with destroyed_tasks() as destroyed:
            async with collecting_garbage():
                await a.publish(media.synthetic(audio=False, **SMALL), label="cam")
                await asyncio.wait_for(readers.arrived.wait(), 15)
                assert readers.shapes[0] == (120, 160, 3)
                assert len(readers.handles) == 1
                assert readers.handles[0]() is not None  # held while it waits for frames
                # the reader ends with the track (removed by the unpublish), not before
                await a.unpublish("cam")
                await poll_until(readers.ended, what="the reader ended with its track")
        assert destroyed == []
    finally:
        await leave_all([a, b])


# == readers of a local track ======================================================================
@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["frames", "frame_callback"])
async def test_a_forgotten_reader_of_a_local_track_gets_frames_and_frees_it_when_stopped(
    kind: str,
) -> None:
    readers = Readers(kind)
    source = media.SyntheticVideoTrack(**SMALL)
    with destroyed_tasks() as destroyed:
        async with collecting_garbage():
            readers.start(source)
            await asyncio.wait_for(readers.arrived.wait(), 10)
            tap = media.tap_for(source)
            source.stop()
            await poll_until(readers.ended, what="the reader ended with its track")
            await asyncio.wait_for(asyncio.wait({tap._task}), 5)
    assert destroyed == []
    assert tap.ended and tap.subscribers == []
    dropped = weakref.ref(source)
    del source, tap
    gc.collect()
    assert dropped() is None, "a stopped track is kept alive by its former reader"


# == readers that leave: no longer subscribers =====================================================
async def read_one_and_break(track: media.MediaStreamTrack) -> None:
    async for array in media.frames(track):
        assert array.shape == (120, 160, 3)
        break


async def read_one_and_aclose(track: media.MediaStreamTrack) -> media.TapTrack:
    iterator = media.frames(track)
    await asyncio.wait_for(iterator.__anext__(), 10)
    await iterator.aclose()
    assert iterator.track.readyState == "ended"
    return iterator.track


async def cancel_a_waiting_read(track: media.MediaStreamTrack) -> None:
    iterator = media.frames(track)
    await asyncio.wait_for(iterator.__anext__(), 10)
    while True:
        reading = asyncio.ensure_future(iterator.__anext__())
        await asyncio.sleep(0)  # one loop turn: the read's first step runs
        if not reading.done():
            break  # it waits for a newer frame (one that found a newer frame returned at once)
    reading.cancel()
    # asyncio.wait, not `await reading`: the callback that wakes an awaiter holds the task
    # (and its iterator) until the awaiter yields, which would hide what is left behind
    await asyncio.wait({reading})
    assert reading.cancelled()


@pytest.mark.timeout(30)
async def test_readers_left_by_break_aclose_or_cancel_stop_being_subscribers_of_a_remote_tap():
    a, b = await room(2)
    try:
        first = asyncio.ensure_future(b.wait_for("media:first-frame", timeout=10))
        await a.publish(media.synthetic(audio=False, **SMALL), label="cam")
        track = (await first).track  # the library's own first-frame reader is done
        tap = media.tap_for(track)
        before = set(tap.subscribers)  # the remote track itself
        assert track in before

        await read_one_and_break(track)
        gc.collect()
        assert set(tap.subscribers) == before, "an iterator left by break still subscribes"

        closed = await read_one_and_aclose(track)
        assert closed not in tap.subscribers
        del closed

        await cancel_a_waiting_read(track)
        gc.collect()
        assert set(tap.subscribers) == before, "a cancelled, dropped reader still subscribes"
        assert not tap.ended  # a remote tap drains its receiver all the same
    finally:
        await leave_all([a, b])


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "leave",
    [read_one_and_break, read_one_and_aclose, cancel_a_waiting_read],
    ids=lambda f: f.__name__,
)
async def test_a_local_tap_whose_last_reader_left_ends_and_frees_its_track(leave: Any) -> None:
    source = media.SyntheticVideoTrack(**SMALL)
    tap = media.tap_for(source)
    await leave(source)
    gc.collect()
    assert tap.subscribers == []
    await asyncio.wait_for(asyncio.wait({tap._task}), 5)  # after the frame in flight
    assert tap.ended and source.readyState == "live"
    dropped = weakref.ref(source)
    del source, tap
    gc.collect()
    assert dropped() is None, "a dropped track is kept alive by its tap"


# == widgets =======================================================================================
@pytest.mark.timeout(30)
async def test_a_video_view_made_in_a_handler_and_not_kept_shows_frames() -> None:
    """VideoView reads through media too (a relayed() subscriber of the tap): made in a
    track:add handler and not kept (ipywidgets keeps it until it is closed), it shows frames."""
    views: list[weakref.ref[VideoView]] = []
    a, b = await room(2)
    try:
        b.on("track:add", lambda event: views.append(weakref.ref(VideoView(event.track))))
        with destroyed_tasks() as destroyed:
            async with collecting_garbage():
                await a.publish(media.synthetic(audio=False, **SMALL), label="cam")
                await wait_until([b], lambda: len(views) == 1)
                page(views[0](), {"type": "rendered", "frontend": "page", "views": 1})

                def shown() -> int:
                    view = views[0]()
                    return 0 if view is None else len(pushed(view, "frame"))

                await poll_until(lambda: shown() >= 2, what="frames pushed to the page")
                view = views[0]()
                assert view is not None and view.status == "live"
                view.close()
                del view
        assert destroyed == []
    finally:
        await leave_all([a, b])
