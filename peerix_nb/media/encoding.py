"""Encode once, send to many: a `SharedEncoder` encodes a track once per codec and fans the
encoded frames (av.Packet) out to `EncodedTrack` subscribers, one per RTCRtpSender.

Why: aiortc encodes per RTCRtpSender, so a track published to N remotes ran N encoders over
the same frames. Its sender also takes encoded av.Packets from its track (as
`MediaPlayer(decode=False)` gives them) and then only packetises them (`Encoder.pack`): every
remote keeps its own RTP stream (SSRC, sequence numbers, picture id, SRTP), and the encoding,
the costly part (3-4 ms per 640x480 VP8 frame of camera-like content here), happens once.

What the senders' remotes need from the one encoder comes in through each subscriber: a
keyframe request (PLI/FIR) from any of them makes the next frame a keyframe for all, and the
bitrate follows the lowest of their estimates. The connection layer (transceivers.py) wires
both to aiortc's sender. A new subscriber asks for a keyframe and gets nothing before one, so
a late-joining remote decodes at once.

The codec settings copy aiortc 1.16's own encoders (aiortc/codecs/vpx.py, h264.py, opus.py),
so a shared encoder sends what each sender would have sent.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import math
import multiprocessing
import weakref
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc.codecs import h264, opus, vpx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, AudioResampler, VideoFrame
from av.frame import Frame
from av.packet import Packet

from ..errors import PeerixError
from .fanout import TapTrack, relayed
from .streams import _check_track

__all__ = ["SHARED_CODECS", "EncodedTrack", "SharedEncoder", "encoded", "shared_encoders"]

logger = logging.getLogger(__name__)

#: The codecs (lower-case MIME types, as negotiated) a shared encoder can make.
SHARED_CODECS = frozenset({"video/vp8", "video/h264", "audio/opus"})

#: Encoded frames a subscriber may hold unread (~1 s of video, 0.6 s of Opus); past that it
#: lost its place and waits for the next keyframe (which it asks for when it reads again).
QUEUE_LIMIT = 32
#: A subscriber waiting for a keyframe asks again after this many frames without one.
REASK_FRAMES = 15

#: What a subscriber reports as its remote's bitrate estimate (bit/s), None if it has none.
Bitrate = Callable[[], int | None]


# -- the codecs: aiortc 1.16's settings, one context per shared encoder ------------------------


class _Codec:
    """One encoder context; `encode` runs in an executor thread, one call at a time."""

    kind = "video"
    keyframes = True  # a subscriber must start at a keyframe

    def encode(
        self, frame: Frame | Packet[Any], keyframe: bool, bitrate: int | None
    ) -> list[Packet[Any]]:
        raise NotImplementedError


class _Video(_Codec):
    """Common to VP8 and H264: the context is re-created, as aiortc does, when the size changes
    or the target bitrate moves by more than 10 %; pts must increase strictly."""

    default_bitrate: int
    min_bitrate: int
    max_bitrate: int

    def __init__(self) -> None:
        self.context: Any = None
        self._last_time: fractions.Fraction | None = None  # pts * time_base of the last frame

    def _open(self, frame: VideoFrame, bitrate: int) -> Any:
        raise NotImplementedError

    def encode(
        self, frame: Frame | Packet[Any], keyframe: bool, bitrate: int | None
    ) -> list[Packet[Any]]:
        assert isinstance(frame, VideoFrame)
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        target = max(self.min_bitrate, min(bitrate or self.default_bitrate, self.max_bitrate))
        context = self.context
        if context is not None and (
            frame.width != context.width
            or frame.height != context.height
            or abs(target - context.bit_rate) / context.bit_rate > 0.1
        ):
            context = None
        if context is None:
            context = self.context = self._open(frame, target)
        frame = self._prepared(frame, keyframe)
        out = context.encode(frame)
        if not out:
            return []  # libvpx may skip a frame; x264 (zerolatency) outputs one per frame
        # One frame, one packet (aiortc joins them too); its pts and time base are the frame's,
        # from which the sender's pack() derives the RTP timestamp.
        packet = out[0] if len(out) == 1 else Packet(b"".join(bytes(p) for p in out))
        packet.is_keyframe = any(p.is_keyframe for p in out)
        packet.pts = frame.pts
        if frame.time_base is not None:
            packet.time_base = frame.time_base
        return [packet]

    def _prepared(self, frame: VideoFrame, keyframe: bool) -> VideoFrame:
        """`frame`, or a copy with what the encoder must see: the picture type (a keyframe is
        forced through it) and a pts after the last one (libvpx refuses older ones).

        Frames are shared (the track's Tap hands one frame to every reader: other encoders,
        VideoViews, frames()), and aiortc's own encoders write `pict_type` into them, which
        two encoders of one frame would race on: a copy is made instead, only when needed.
        """
        pts, base = frame.pts, frame.time_base
        later = pts
        if (
            pts is not None
            and base
            and self._last_time is not None
            and pts * base <= self._last_time
        ):
            later = math.floor(self._last_time / base) + 1
        want_key = frame.pict_type == av.video.frame.PictureType.I
        if later == pts and want_key == keyframe:
            if pts is not None and base:
                self._last_time = pts * base
            return frame
        copy = _copy_video(frame)
        copy.pts, copy.time_base = later, base
        copy.pict_type = (
            av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        )
        if later is not None and base:
            self._last_time = later * base
        return copy


class _Vp8(_Video):
    """aiortc.codecs.vpx.Vp8Encoder's libvpx settings."""

    default_bitrate = vpx.DEFAULT_BITRATE
    min_bitrate = vpx.MIN_BITRATE
    max_bitrate = vpx.MAX_BITRATE

    def _open(self, frame: VideoFrame, bitrate: int) -> Any:
        context: Any = av.CodecContext.create("libvpx", "w")
        context.width = frame.width
        context.height = frame.height
        context.bit_rate = bitrate
        context.pix_fmt = "yuv420p"
        context.gop_size = 3000  # kf_max_dist
        context.qmin = 2  # rc_min_quantizer
        context.qmax = 56  # rc_max_quantizer
        context.options = {
            "bufsize": str(bitrate),
            "cpu-used": "-6",
            "deadline": "realtime",
            "lag-in-frames": "0",
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "noise-sensitivity": "4",
            "overshoot-pct": "15",
            "partitions": "0",
            "static-thresh": "1",
            "undershoot-pct": "100",
        }
        context.thread_count = vpx.number_of_threads(
            frame.width * frame.height, multiprocessing.cpu_count()
        )
        return context


class _H264(_Video):
    """aiortc.codecs.h264.H264Encoder's libx264 settings (Annex B out: the sender's
    `pack()` splits it into NAL units)."""

    default_bitrate = h264.DEFAULT_BITRATE
    min_bitrate = h264.MIN_BITRATE
    max_bitrate = h264.MAX_BITRATE

    def _open(self, frame: VideoFrame, bitrate: int) -> Any:
        context: Any = av.CodecContext.create("libx264", "w")
        context.width = frame.width
        context.height = frame.height
        context.bit_rate = bitrate
        context.pix_fmt = "yuv420p"
        context.framerate = fractions.Fraction(h264.MAX_FRAME_RATE, 1)
        context.time_base = fractions.Fraction(1, h264.MAX_FRAME_RATE)
        context.options = {"level": "31", "tune": "zerolatency"}
        context.profile = "Baseline"
        return context


class _Opus(_Codec):
    """aiortc.codecs.opus.OpusEncoder's settings: 48 kHz stereo s16 in 20 ms frames."""

    kind = "audio"
    keyframes = False

    def __init__(self) -> None:
        self.context: Any = av.CodecContext.create("libopus", "w")
        self.context.bit_rate = 96000
        self.context.format = "s16"
        self.context.layout = "stereo"
        self.context.options = {"application": "voip"}
        self.context.sample_rate = opus.SAMPLE_RATE
        self.context.time_base = opus.TIME_BASE
        self.resampler = AudioResampler(
            format="s16", layout="stereo", rate=opus.SAMPLE_RATE, frame_size=opus.SAMPLES_PER_FRAME
        )
        self.first_pts: int | None = None  # libopus starts at a negative pts: aiortc cancels it

    def encode(
        self, frame: Frame | Packet[Any], keyframe: bool, bitrate: int | None
    ) -> list[Packet[Any]]:
        assert isinstance(frame, AudioFrame)
        packets: list[Packet[Any]] = []
        for resampled in self.resampler.resample(frame):
            packets += self.context.encode(resampled)
        if packets and self.first_pts is None:
            self.first_pts = packets[0].pts
        for packet in packets:
            assert packet.pts is not None and self.first_pts is not None
            packet.pts -= self.first_pts
            packet.time_base = opus.TIME_BASE
        return packets


_CODECS: dict[str, type[_Codec]] = {"video/vp8": _Vp8, "video/h264": _H264, "audio/opus": _Opus}


def _copy_video(frame: VideoFrame) -> VideoFrame:
    """A new frame with `frame`'s pixels, plane by plane (any size, any line padding)."""
    copy = VideoFrame(frame.width, frame.height, frame.format.name)
    for source, target in zip(frame.planes, copy.planes, strict=True):
        rows = min(source.height, target.height)
        width = min(source.line_size, target.line_size)
        src = np.frombuffer(memoryview(source), np.uint8)[: source.height * source.line_size]
        dst = np.frombuffer(memoryview(target), np.uint8)[: target.height * target.line_size]
        dst.reshape(target.height, target.line_size)[:rows, :width] = src.reshape(
            source.height, source.line_size
        )[:rows, :width]
    return copy


# -- the shared encoder and its subscribers ----------------------------------------------------


class EncodedTrack(MediaStreamTrack):
    """A subscriber of a `SharedEncoder`: `recv()` returns its encoded frames (av.Packet) in
    order, starting at a keyframe, and raises MediaStreamError once the encoder ended or the
    track is stopped. Give one to each RTCRtpSender (it packetises what it reads)."""

    def __init__(self, encoder: SharedEncoder, bitrate: Bitrate | None) -> None:
        super().__init__()
        self.kind = encoder.kind
        self._encoder = encoder
        self._bitrate = bitrate
        self._queue: collections.deque[Packet[Any]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._synced = not encoder._codec.keyframes  # audio needs no keyframe
        self._reading = False  # a recv() waits for the next packet (pyee owns `_waiting`)
        self._asked_at: int | None = None  # the encoder's frame count at our last request
        #: Called when `poll()` has something new to say (a packet, or the end): a reader
        #: that polls waits on its own future instead of a task per packet (transceivers.py).
        self.on_ready: Callable[[], None] | None = None
        self.packets_returned = 0
        self.packets_dropped = 0  # encoded frames this subscriber never returned
        if not self._synced:
            self._ask()

    @property
    def encoder(self) -> SharedEncoder:
        """The shared encoder this track reads from."""
        return self._encoder

    @property
    def target_bitrate(self) -> int | None:
        """This subscriber's remote's bitrate estimate (bit/s), if it reported one."""
        return self._bitrate() if self._bitrate is not None else None

    def request_keyframe(self) -> None:
        """The remote lost a picture (PLI/FIR): the next frame is a keyframe, for everyone."""
        self._encoder.request_keyframe()

    def resync(self) -> None:
        """Start again at the next keyframe (asked for now): the reader lost packets."""
        if self._encoder._codec.keyframes:
            self.packets_dropped += len(self._queue)
            self._queue.clear()
            self._synced = False
            self._asked_at = None
            self._ask()

    def _ask(self) -> None:
        """Request a keyframe for ourselves, at most once per `REASK_FRAMES` frames."""
        done = self._encoder.frames_encoded
        if self._asked_at is None or done - self._asked_at >= REASK_FRAMES:
            self._asked_at = done
            self._encoder.request_keyframe()

    def _push(self, packet: Packet[Any]) -> None:
        if self._synced and len(self._queue) >= QUEUE_LIMIT:
            # Too far behind: what it holds is stale. Video restarts at a keyframe.
            self.packets_dropped += len(self._queue)
            self._queue.clear()
            self._synced = not self._encoder._codec.keyframes
            self._asked_at = None
        if not self._synced:
            if not packet.is_keyframe:
                self.packets_dropped += 1
                if self._reading:  # only a reader that reads asks
                    self._ask()
                return
            self._synced = True
        self._queue.append(packet)
        self._ready()

    def _ready(self) -> None:
        self._wakeup.set()
        if self.on_ready is not None:
            self.on_ready()

    def poll(self) -> Packet[Any] | None:
        """The next packet if one is ready, else None (then `on_ready` is called when one is,
        or when the track ends); raises MediaStreamError once ended, like `recv()`."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._queue:
            self._reading = False
            self.packets_returned += 1
            return self._queue.popleft()
        if self._encoder.ended:
            self.stop()
            raise MediaStreamError
        if not self._synced:
            self._ask()
        self._reading = True
        return None

    async def recv(self) -> Packet[Any]:
        while True:
            packet = self.poll()
            if packet is not None:
                return packet
            self._wakeup.clear()
            try:
                await self._wakeup.wait()
            finally:
                self._reading = False

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
        self._ready()
        self.on_ready = None
        self._encoder._unsubscribe(self)


class SharedEncoder:
    """Encodes `source` with `codec` once, in the loop's default executor (where aiortc's
    senders encode), and fans each encoded frame out to its `subscribe()`d tracks.

    It reads the source through its Tap (a `relayed()` subscription) while it has subscribers
    and ends when the last one leaves or the source ends (its subscribers then end too).
    `encoded()` finds the open one for a track and codec. Create it inside the running loop.
    """

    def __init__(self, source: MediaStreamTrack, codec: str) -> None:
        _check_track(source, "shared encoder source")
        codec = codec.lower()
        factory = _CODECS.get(codec)
        if factory is None:
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                f"no shared encoder for {codec!r}; known: {sorted(SHARED_CODECS)}",
            )
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                "a SharedEncoder must be created inside a running event loop",
            ) from None
        self._codec = factory()
        if self._codec.kind != source.kind:
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR", f"cannot encode a {source.kind} track as {codec}"
            )
        self.codec = codec
        self.kind = source.kind
        self._source: MediaStreamTrack | None = source
        self._source_id = source.id
        self._subscribers: weakref.WeakSet[EncodedTrack] = weakref.WeakSet()
        self._closing = False  # no subscriber left (or ended): it takes no new ones
        self._ended = False
        self._keyframe = False  # the next frame must be a keyframe
        self.frames_encoded = 0
        self.keyframes = 0
        self.error: BaseException | None = None
        # Subscribed now, not in the task: the tap keeps being read without a gap when a
        # sender moves from its own relay subscription to this encoder (transceivers.py).
        self._reader: TapTrack | None = relayed(source)
        _encoders.setdefault(source, {})[codec] = self
        self._task = self._loop.create_task(self._run(), name=f"peerix-encoder-{source.id}")

    @property
    def source(self) -> MediaStreamTrack | None:
        """The track being encoded (None once the encoder ended)."""
        return self._source

    @property
    def ended(self) -> bool:
        """True once the source ended or the last subscriber left."""
        return self._ended

    @property
    def closing(self) -> bool:
        """True once it takes no new subscribers (`encoded()` then makes a new encoder)."""
        return self._closing

    @property
    def subscribers(self) -> list[EncodedTrack]:
        """The live subscriber tracks."""
        return list(self._subscribers)

    def subscribe(self, bitrate: Bitrate | None = None) -> EncodedTrack:
        """A new track of this encoder's packets, from the next keyframe on. `bitrate`
        reports the subscriber's remote's estimate; the encoder follows the lowest."""
        track = EncodedTrack(self, bitrate)
        if self._closing:
            track.stop()
        else:
            self._subscribers.add(track)
        return track

    def request_keyframe(self) -> None:
        """Make the next encoded frame a keyframe (for every subscriber)."""
        self._keyframe = True

    def _target_bitrate(self) -> int | None:
        estimates = [b for s in list(self._subscribers) if (b := s.target_bitrate) is not None]
        return min(estimates) if estimates else None

    def _unsubscribe(self, track: EncodedTrack) -> None:
        self._subscribers.discard(track)
        if not self._subscribers:
            self._close()

    def _close(self) -> None:
        """Take no new subscriber and stop reading now (an encode in flight finishes)."""
        self._closing = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()  # wakes the task's read; the source's tap loses its subscriber
        if self._source is not None and _encoders.get(self._source, {}).get(self.codec) is self:
            del _encoders[self._source][self.codec]
            if not _encoders[self._source]:
                del _encoders[self._source]

    async def _run(self) -> None:
        try:
            while not self._closing and self._reader is not None:
                if not self._subscribers:  # every subscriber was dropped without stop()
                    break
                frame = await self._reader.recv()
                if self._closing:
                    break
                keyframe, self._keyframe = self._keyframe, False
                packets = await self._loop.run_in_executor(
                    None, self._codec.encode, frame, keyframe, self._target_bitrate()
                )
                del frame
                self.frames_encoded += 1
                for packet in packets:
                    if packet.is_keyframe and self._codec.keyframes:
                        self.keyframes += 1
                    self._fan_out(packet)
        except MediaStreamError:
            pass  # the source ended, or we stopped reading
        except Exception as e:
            self.error = e
            logger.error("shared %s encoder of track %s failed: %r", self.codec, self._source_id, e)
        finally:
            self._finish()

    def _fan_out(self, packet: Packet[Any]) -> None:
        # a method, not a loop in _run(): a loop variable there would keep the last subscriber
        # alive in the coroutine's frame, and subscribers are held weakly
        for track in list(self._subscribers):
            track._push(packet)

    def _finish(self) -> None:
        self._close()
        self._ended = True
        self._source = None  # an ended encoder must not keep an unpublished track alive
        for track in list(self._subscribers):
            track._ready()  # they return what they hold, then end

    async def aclose(self) -> None:
        """End the encoder and its subscribers; safe to call more than once."""
        self._close()
        self._task.cancel()
        if asyncio.get_running_loop() is self._loop:
            await asyncio.wait({self._task})
        self._finish()

    def __repr__(self) -> str:
        state = "ended" if self._ended else "closing" if self._closing else "live"
        return (
            f"SharedEncoder({self.codec} {self._source_id}, {state}, frames={self.frames_encoded},"
            f" keyframes={self.keyframes}, subscribers={len(self._subscribers)})"
        )


# Open encoders by source track, then codec. Keyed weakly: an encoder leaves this table when it
# closes, so an unpublished track is not held here.
_encoders: weakref.WeakKeyDictionary[MediaStreamTrack, dict[str, SharedEncoder]] = (
    weakref.WeakKeyDictionary()
)


def shared_encoders(track: MediaStreamTrack) -> list[SharedEncoder]:
    """The open shared encoders of `track` (one per codec its remotes negotiated)."""
    return [e for e in _encoders.get(track, {}).values() if not e.closing]


def encoded(track: MediaStreamTrack, codec: str, bitrate: Bitrate | None = None) -> EncodedTrack:
    """A new subscriber of `track`'s open shared encoder for `codec` (a MIME type such as
    "video/VP8"), made if there is none on this loop: what an RTCRtpSender negotiated to send
    `codec` should read instead of the track itself."""
    _check_track(track)
    codec = codec.lower()
    loop = asyncio.get_running_loop()
    encoder = _encoders.get(track, {}).get(codec)
    if encoder is None or encoder.closing or encoder._loop is not loop:
        encoder = SharedEncoder(track, codec)  # registers itself
    return encoder.subscribe(bitrate)
