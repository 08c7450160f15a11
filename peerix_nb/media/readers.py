"""Numpy readers of any track: `frames()` (an async iterator of arrays) and `frame_callback()`
(a function called per frame), both Tap subscribers that drop stale frames, never queue."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from av.frame import Frame
from av.packet import Packet

from ..errors import PeerixError
from .fanout import Tap, TapTrack, tap_for

__all__ = ["FrameCallback", "FrameIterator", "frame_callback", "frames"]

logger = logging.getLogger(__name__)

VIDEO_FORMATS = ("rgb24", "bgr24", "rgba", "bgra", "gray")


def _to_array(frame: Frame | Packet[Any], format: str) -> np.ndarray:
    if isinstance(frame, VideoFrame):
        return frame.to_ndarray(format=format)
    if isinstance(frame, AudioFrame):
        return frame.to_ndarray()
    raise PeerixError(
        "PEER_MEDIASTREAM_ERROR",
        f"cannot convert {type(frame).__name__} to an array (is the track encoded?)",
    )


class FrameIterator:
    """Async iterator of numpy frames from one Tap subscription (see `frames`).

    Use `async with` or `aclose()` to unsubscribe early; an iterator that is dropped after
    `break` unsubscribes when it is garbage-collected (the tap holds idle subscribers weakly).
    While a step waits for a frame the tap holds it (and so the task awaiting it): a reader
    task nobody keeps, started from an event handler, runs as long as the track does.
    """

    def __init__(self, tap: Tap, format: str = "rgb24", origin: TapTrack | None = None) -> None:
        self._format = format
        self._track: TapTrack = tap.subscribe(origin=origin)

    @property
    def track(self) -> TapTrack:
        """The subscriber track (frames_returned, frames_dropped)."""
        return self._track

    def __aiter__(self) -> FrameIterator:
        return self

    async def __anext__(self) -> np.ndarray:
        try:
            frame = await self._track.recv()
        except MediaStreamError:
            raise StopAsyncIteration from None
        return _to_array(frame, self._format)

    def close(self) -> None:
        """Unsubscribe: the iterator ends."""
        self._track.stop()

    async def aclose(self) -> None:
        """Unsubscribe: the iterator ends."""
        self.close()

    async def __aenter__(self) -> FrameIterator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def frames(track: MediaStreamTrack | Tap, format: str = "rgb24") -> FrameIterator:
    """Iterate a track's frames as numpy arrays. Each step gives the newest frame; frames that
    arrive while the caller is busy are dropped, never queued. Video: HxWx3 (rgb24/bgr24),
    HxWx4 (rgba/bgra) or HxW (gray). Ends with the track.

    Audio: each 20 ms frame's samples as PyAV gives them (`format` does not apply), int16 at
    48 kHz, 960 samples per frame, in a (1, samples x channels) array, channels interleaved:
    a remote track (aiortc's Opus decoder) gives packed stereo, shape (1, 1920) (L, R, L, R;
    both equal for a mono sender: `a.reshape(-1, 2)[:, 0]`); a local `synthetic()` tone gives
    mono, shape (1, 960). Other sources (files) may differ: planar formats are (channels,
    samples). A slow audio reader loses whole frames; to get every one, read a queued
    subscriber instead (`media.relayed(track, queue=n)`, as AudioView does)."""
    if format not in VIDEO_FORMATS:
        raise PeerixError(
            "PEER_MEDIASTREAM_ERROR", f"format must be one of {VIDEO_FORMATS}, got {format!r}"
        )
    origin = track if isinstance(track, TapTrack) else None
    return FrameIterator(tap_for(track), format, origin)


class FrameCallback:
    """Handle of a `frame_callback`: runs until the track ends, `stop()`/`aclose()`, or the
    function raises (then `error` holds the exception). Keeping the handle is optional: while
    it waits for a frame, the track's tap holds it (see `Tap`)."""

    def __init__(
        self,
        track: MediaStreamTrack | Tap,
        fn: Callable[[np.ndarray], Any],
        format: str = "rgb24",
    ) -> None:
        self._iter = frames(track, format)
        self._fn = fn
        self.frames_processed = 0
        self.error: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._run(), name="peerix-callback")

    @property
    def frames_skipped(self) -> int:
        """Frames dropped because `fn` was still busy."""
        return self._iter.track.frames_dropped

    @property
    def running(self) -> bool:
        """True until the callback has finished for any reason."""
        return not self._task.done()

    async def _run(self) -> None:
        try:
            async for array in self._iter:
                result = self._fn(array)
                if inspect.isawaitable(result):
                    await result
                self.frames_processed += 1
        except Exception as e:
            self.error = e
            logger.error("frame callback %r failed, stopping it: %r", self._fn, e, exc_info=e)
        finally:
            self._iter.close()

    async def wait(self) -> None:
        """Wait until the callback has finished (track ended, stopped or failed)."""
        await asyncio.wait({self._task})

    def stop(self) -> None:
        """Stop calling `fn` (the task ends at its next step)."""
        self._task.cancel()
        self._iter.close()

    async def aclose(self) -> None:
        """Stop and wait until the task has ended."""
        self.stop()
        await asyncio.wait({self._task})


def frame_callback(
    track: MediaStreamTrack | Tap, fn: Callable[[np.ndarray], Any], format: str = "rgb24"
) -> FrameCallback:
    """Call `fn(array)` (sync or async) for each frame of `track`, skipping frames while `fn`
    is busy. Exceptions from `fn` stop the callback and are kept in `handle.error`. A sync `fn`
    runs in the event loop: keep it short, or make it async and offload heavy work."""
    return FrameCallback(track, fn, format)
