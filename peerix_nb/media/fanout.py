"""Fan-out of a track to several readers: `Tap` drains a track continuously and keeps its
latest frame for `TapTrack` subscribers (or queues every frame, bounded, for audio readers);
`tap_for()` finds a track's one tap; `relayed()` gives each RTCRtpSender its own subscriber.
remote.py uses them to publish and receive."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from av import VideoFrame
from av.frame import Frame
from av.packet import Packet

from ..errors import PeerixError
from .streams import MediaSourceError, _check_track

__all__ = ["Tap", "TapTrack", "relayed", "tap_for"]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Fan-out: relayed() for senders


def _shareable(frame: Frame | Packet[Any]) -> Frame | Packet[Any]:
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
        self._pending: asyncio.Future[Frame | Packet[Any]] | None = None
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

    async def recv(self) -> Frame | Packet[Any]:
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


AUDIO_QUEUE = 10  # frames (200 ms) an audio reader of relayed() may fall behind


def relayed(track: MediaStreamTrack, queue: int | None = None) -> TapTrack:
    """A new track that receives every frame of `track` (the newest, if its reader is slow;
    with `queue=n`, every frame, up to `n` unread): a subscriber of the track's Tap. By
    default audio is queued (`AUDIO_QUEUE`): a sender whose encoder ran late must still send
    every 20 ms frame (a skipped one is a click), and video is not (a late picture is stale).

    Give each RTCRtpSender its own: aiortc senders sharing one track split its frames between
    them. Relaying a Tap subscriber (e.g. a remote track, to forward it) follows that
    subscriber and ends with it. Stopping the returned track unsubscribes it.
    """
    _check_track(track)
    tap = tap_for(track)
    if queue is None:
        queue = AUDIO_QUEUE if tap.kind == "audio" else 0
    return tap.subscribe(origin=track if isinstance(track, TapTrack) else None, queue=queue)


# ---------------------------------------------------------------------------------------------
# Tap: drain a track continuously, keep the latest frame, fan it out


class TapTrack(MediaStreamTrack):
    """A subscriber of a `Tap`: `recv()` returns the next frame newer than the last one it
    returned (stale frames are dropped, nothing queues) and raises MediaStreamError once the
    tap has ended or the track is stopped.

    With `queue=n` (audio: every 20 ms frame matters, a dropped one is a click) it returns
    every frame in order instead, keeping at most `n` unread: past that the oldest is dropped
    (counted in `frames_dropped`), so a slow reader still never makes memory grow.
    """

    def __init__(self, tap: Tap, id: str | None = None, queue: int = 0) -> None:
        super().__init__()
        self._queue: deque[Frame | Packet[Any]] | None = deque(maxlen=queue) if queue else None
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

    async def recv(self) -> Frame | Packet[Any]:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            tap = self._tap
            if tap.ended:
                self.stop()
                raise MediaStreamError
            if self._queue is not None:
                if self._queue:
                    self.frames_returned += 1
                    return self._queue.popleft()
            elif tap._seq > self._last_seq:
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

    def _offer(self, frame: Frame | Packet[Any]) -> None:
        """The tap has a new frame: queue it (a queued reader) and wake a waiting recv()."""
        queue = self._queue
        if queue is not None:
            if len(queue) == queue.maxlen:
                self.frames_dropped += 1  # the deque drops the oldest
            queue.append(frame)
        self._wakeup.set()

    def stop(self) -> None:
        super().stop()
        self._wakeup.set()
        if self._queue is not None:
            self._queue.clear()
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
        self._latest: Frame | Packet[Any] | None = None
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
    def latest(self) -> Frame | Packet[Any] | None:
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

    def subscribe(
        self, id: str | None = None, origin: TapTrack | None = None, queue: int = 0
    ) -> TapTrack:
        """A new track following this tap (with its own `id`, e.g. the msid track id).

        With `origin` (another subscriber), the new track also ends when `origin` ends: a
        remote track that is removed ends every reader made from it, while the tap itself
        keeps draining the receiver for the next track on the same transceiver. With `queue=n`
        it returns every frame from now on, at most `n` unread (see `TapTrack`).
        """
        if not isinstance(queue, int) or isinstance(queue, bool) or queue < 0:
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR", f"queue must be an integer >= 0, got {queue!r}"
            )
        track = TapTrack(self, id, queue)
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
        frame = self._latest
        assert frame is not None
        for sub in list(self._subscribers):
            sub._offer(frame)

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
