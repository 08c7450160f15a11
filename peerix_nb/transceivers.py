"""The media of one connection: outgoing senders and incoming tracks (docs/PROTOCOL.md "Media").

Every sender holds one `SenderTrack` for life, whose source is a published track, swapped on
republish and cleared on unpublish (direction `inactive`, m-line kept and reused); it reads the
track's shared encoder (media/encoding.py: one encoder per track and codec, whatever the number
of remotes) or, for codecs it cannot make, a relay subscription of its frames. Incoming tracks are named by (mid, msid stream id) and drained by a
`media.Tap` from the moment they appear. `Transceivers` does this for one RemotePeer: it is
told when to look (after each exchange, when the published streams change) and reports what
it saw as events; it does not negotiate (the RemotePeer does, when `sync_outgoing` says so).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, Packet, VideoFrame

from . import _aiortc, mlines

if TYPE_CHECKING:
    from .media import MediaStream, Tap, TapTrack

#: What a Transceivers reports with: `emit(name, **fields)` (an event about its remote).
Emit = Callable[..., None]
#: How it starts a background task owned by its remote: `spawn(coroutine, name)`.
Spawn = Callable[[Coroutine[Any, Any, None], str], Any]


class SenderTrack(MediaStreamTrack):
    """The track an RTCRtpSender holds for its whole life; its source can be swapped or removed.

    Why: aiortc's sender loop ends for good when its track's recv() raises, and stopping a relay
    proxy that the loop is waiting on leaves that wait hanging. So each sender reads from this
    wrapper, which switches between published tracks (or idles with no source) without ever
    ending while the connection lives.

    What it reads of a source: once the sender runs, its codec is fixed (aiortc picks it once);
    if a shared encoder can make that codec (media/encoding.py), the encoded packets of the
    source's one `SharedEncoder` for it, which the sender only packetises: a track sent to N
    remotes is encoded once, not N times. Before that, and for other codecs, a relay
    subscription of the source's frames, which the sender encodes itself. `bind()` passes the
    remote's keyframe requests and bitrate estimate on to the shared encoder.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None  # the published track
        self._reader: MediaStreamTrack | None = None  # what recv() reads of it
        self._transceiver: RTCRtpTransceiver | None = None
        self._codec: str | None = None  # the sender's codec (lower-case MIME type) once it runs
        self._lost = False  # the sender dropped packets we gave it (its direction did not send)
        self._wakeup: asyncio.Future[None] | None = None
        # Time stamps stay increasing across sources: a republished track starts again at
        # pts 0, and libvpx refuses a frame older than the last one ("Invalid data found when
        # processing input"), which ends the sender for good; RTP timestamps going back would
        # confuse the remote's jitter buffer as much.
        self._last: tuple[int, Any] | None = None  # pts and time base of the last frame
        self._offset = 0  # added to the current source's pts
        self._fresh = False  # the next frame is the current source's first

    def bind(self, transceiver: RTCRtpTransceiver) -> None:
        """Belong to `transceiver`, whose sender holds this track: its negotiated codec picks
        the shared encoder, and its remote's keyframe requests and bitrate estimate reach it."""
        self._transceiver = transceiver
        _aiortc.on_keyframe_request(transceiver.sender, self._keyframe_requested)

    @property
    def reader(self) -> MediaStreamTrack | None:
        """What the sender reads now: a relay subscription of the source (frames) or a
        subscriber of its shared encoder (`media.encoding.EncodedTrack`, packets)."""
        return self._reader

    def set_source(self, source: MediaStreamTrack | None) -> None:
        """Send the published track `source` from now on, or nothing (None)."""
        old, self._source = self._source, source
        reader = self._reader
        if source is not old:
            self._fresh = True
            self._reader = self._open(source) if source is not None else None
        self._wake()
        if reader is not None and reader is not self._reader:
            reader.stop()

    def _open(self, source: MediaStreamTrack) -> MediaStreamTrack:
        """A reader of `source`: its shared encoder's packets if one can make the sender's
        codec, else its frames (a relay subscription: senders sharing a track would split its
        frames)."""
        from .media import relayed
        from .media.encoding import encoded

        if self._shared(source):
            assert self._codec is not None
            return encoded(source, self._codec, self._target_bitrate)
        return relayed(source)

    def _shared(self, source: MediaStreamTrack) -> bool:
        """Whether a shared encoder makes what the sender sends of `source`."""
        from .media.encoding import SHARED_CODECS

        codec = self._codec
        return codec in SHARED_CODECS and codec.startswith(f"{source.kind}/")

    def _started(self) -> None:
        """The sender reads for the first time: it runs, and its codec is the transceiver's
        first negotiated one, for the sender's whole life (aiortc starts a sender once)."""
        transceiver = self._transceiver
        codecs = _aiortc.codecs(transceiver) if transceiver is not None else []
        self._codec = codecs[0].mimeType.lower() if codecs else ""
        source, reader = self._source, self._reader
        if source is not None and self._shared(source):
            self._reader = self._open(source)
            if reader is not None:
                reader.stop()  # after: the source's tap keeps a subscriber throughout

    def _target_bitrate(self) -> int | None:
        transceiver = self._transceiver
        return _aiortc.sender_target_bitrate(transceiver.sender) if transceiver else None

    def _keyframe_requested(self) -> None:
        """The remote asked for a keyframe (PLI/FIR): a shared encoder makes one for all.
        (A sender that encodes itself was already told by aiortc.)"""
        request = getattr(self._reader, "request_keyframe", None)
        if request is not None:
            request()

    async def recv(self) -> Any:
        from .media.encoding import EncodedTrack

        loop = asyncio.get_running_loop()
        if self._codec is None:
            self._started()
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            source, reader = self._source, self._reader
            try:
                if source is None or reader is None:
                    self._wakeup = loop.create_future()
                    await self._wakeup
                    continue
                if isinstance(reader, EncodedTrack):
                    # A shared encoder's packets: one future per wait, woken by the packet or
                    # by a swap of the source (no task per packet, unlike frames below).
                    item = reader.poll()
                    if item is None:
                        self._wakeup = loop.create_future()
                        reader.on_ready = self._wake
                        await self._wakeup
                        continue
                    if not self._sending():
                        self._lost = True  # the sender drops what we return now
                    elif self._lost:
                        self._lost = False
                        if not item.is_keyframe:
                            # The remote missed packets (a keyframe among them, maybe): it
                            # could not decode the deltas that follow. Restart at a keyframe.
                            reader.resync()
                            continue
                else:
                    item = await self._read(reader, loop)
                    if item is None:
                        continue  # the source was swapped while we waited
                return self._stamped(item)
            except MediaStreamError:
                if reader is not None and reader is self._reader:
                    # the published track ended: idle, keep the sender
                    self._source = self._reader = None
                    reader.stop()
            finally:
                # Idling with these set would keep the unpublished source alive: a finished
                # read's MediaStreamError has a traceback that holds the old subscriber, its
                # tap, the tap's last frame and the source track.
                del source, reader

    async def _read(self, reader: MediaStreamTrack, loop: asyncio.AbstractEventLoop) -> Any:
        """The next frame of `reader`, or None if the source is swapped meanwhile."""
        self._wakeup = loop.create_future()
        pending = asyncio.ensure_future(reader.recv())
        try:
            try:
                await asyncio.wait((pending, self._wakeup), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                pending.cancel()
                raise
            if not pending.done():
                pending.cancel()
                return None
            return pending.result()
        finally:
            del pending  # see recv()

    def _sending(self) -> bool:
        transceiver = self._transceiver
        return transceiver is None or _aiortc.sender_enabled(transceiver.sender)

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _stamped(self, item: Any) -> Any:
        """`item` (a frame, or an encoded packet), or a copy of it placed after the last one
        sent (see `_last`)."""
        if not isinstance(item, VideoFrame | AudioFrame | Packet) or item.pts is None:
            return item
        base = item.time_base
        if self._fresh:
            self._fresh = False
            self._offset = 0
            if self._last is not None and base:
                last = int(self._last[0] * self._last[1] / base)
                if item.pts <= last:
                    self._offset = last + max(self._step(item), 1) - item.pts
        if self._offset:
            # Frames and packets are shared by every sender of a track: re-stamp a copy.
            item = _copy_item(item)
            item.pts += self._offset
        self._last = (item.pts, base)
        return item

    def _step(self, item: VideoFrame | AudioFrame | Packet[Any]) -> int:
        """One frame's duration in `item`'s time base (a video frame: 1/30 s)."""
        assert item.time_base is not None
        if isinstance(item, AudioFrame):
            return item.samples
        if isinstance(item, Packet) and self.kind == "audio":
            return item.duration or int(Fraction(AUDIO_FRAME_SECONDS) / item.time_base)
        return int(Fraction(1, 30) / item.time_base)

    def stop(self) -> None:
        super().stop()
        self.set_source(None)


#: The length of one Opus frame aiortc sends.
AUDIO_FRAME_SECONDS = Fraction(20, 1000)


def _copy_item(
    item: VideoFrame | AudioFrame | Packet[Any],
) -> VideoFrame | AudioFrame | Packet[Any]:
    """A copy of a frame or packet with the same pts and time base."""
    copy: VideoFrame | AudioFrame | Packet[Any]
    if isinstance(item, Packet):
        copy = Packet(bytes(item))
        copy.is_keyframe = item.is_keyframe
        copy.duration = item.duration
    elif isinstance(item, VideoFrame):
        copy = VideoFrame.from_ndarray(item.to_ndarray(), format=item.format.name)
    else:
        audio = AudioFrame.from_ndarray(
            item.to_ndarray(), format=item.format.name, layout=item.layout.name
        )
        audio.sample_rate = item.sample_rate
        copy = audio
    copy.pts, copy.time_base = item.pts, item.time_base
    return copy


@dataclass(slots=True)
class _Outgoing:
    """A transceiver we send on, with the wrapper track its sender holds."""

    transceiver: RTCRtpTransceiver
    track: SenderTrack
    source: MediaStreamTrack | None = None
    stream_id: str | None = None


@dataclass(slots=True)
class _Incoming:
    """One life of a remote track on one transceiver (the mid keying it in `incoming`)."""

    label: str
    track: TapTrack  # subscribed to the receiver's tap
    stream: MediaStream  # its id is the msid stream id

    @property
    def stream_id(self) -> str:
        return self.stream.id


def _direction(send: bool, recv: bool) -> str:
    return ("inactive", "recvonly", "sendonly", "sendrecv")[send * 2 + recv]


class Transceivers:
    """The senders and remote tracks of one remote's RTCPeerConnection.

    `streams` is the remote's own dict (label -> remote MediaStream), kept up to date here;
    `labels` (remote stream id -> label) comes from the remote's last offer.
    """

    def __init__(
        self, streams: dict[str, MediaStream], emit: Emit, spawn: Spawn, name: str
    ) -> None:
        self.streams = streams
        self.labels: dict[str, str] = {}
        self.outgoing: dict[RTCRtpTransceiver, _Outgoing] = {}
        self.incoming: dict[str, _Incoming] = {}  # mid -> the remote track it carries now
        self.taps: dict[str, Tap] = {}  # mid -> the tap draining its receiver
        self._emit = emit
        self._spawn = spawn
        self._name = name  # for task names

    # -- outgoing ---------------------------------------------------------------------------
    def sync_outgoing(self, pc: RTCPeerConnection, published: Mapping[str, MediaStream]) -> bool:
        """Bring the senders in line with the `published` streams; True if the connection
        needs a new offer (a direction or a stream id changed)."""
        # One sender per (track, stream): a track published in two streams (two labels) is
        # sent twice, once under each stream id, so that the remote shows both.
        wanted: dict[tuple[int, str], MediaStreamTrack] = {}
        for stream in published.values():
            for track in stream.tracks:
                wanted[(id(track), stream.id)] = track
        before = {t: (t.direction, out.stream_id) for t, out in self.outgoing.items()}

        # 1. Senders whose track is no longer published (or moved to another stream) go idle.
        assigned: set[tuple[int, str]] = set()
        for out in self.outgoing.values():
            if out.source is None or out.stream_id is None:
                continue
            key = (id(out.source), out.stream_id)
            if key not in wanted or key in assigned:
                out.track.set_source(None)
                out.source = out.stream_id = None
            else:
                assigned.add(key)

        # 2. New tracks take an idle sender of their kind, or a new sendonly transceiver.
        for key, track in wanted.items():
            if key in assigned:
                continue
            stream_id = key[1]
            idle = next(
                (
                    o
                    for o in self.outgoing.values()
                    if o.source is None and o.track.kind == track.kind
                ),
                None,
            )
            if idle is None:
                sender_track = SenderTrack(track.kind)
                transceiver = pc.addTransceiver(sender_track, direction="sendonly")
                sender_track.bind(transceiver)
                idle = self.outgoing[transceiver] = _Outgoing(transceiver, sender_track)
            out = idle
            out.track.set_source(track)
            out.source, out.stream_id = track, stream_id
            # aiortc writes a random per-connection stream id into a=msid; Peerix receivers
            # group tracks and find labels by the published MediaStream's id.
            _aiortc.set_msid_stream_id(out.transceiver.sender, stream_id)
            assigned.add(key)

        # 3. Directions follow: send while a source is set, keep receiving what we receive.
        for transceiver, out in self.outgoing.items():
            receiving = transceiver.direction in ("recvonly", "sendrecv")
            transceiver.direction = _direction(out.source is not None, receiving)
        after = {t: (t.direction, out.stream_id) for t, out in self.outgoing.items()}
        return after != before

    # -- incoming ---------------------------------------------------------------------------
    def sync_incoming(self, pc: RTCPeerConnection) -> None:
        """Turn the negotiated directions and msids into track/stream add and remove events."""
        # aiortc's own parse of the remote description: not `pc.remoteDescription`, which would
        # write it out as text to be parsed a second time.
        remote = _aiortc.remote_session_or_none(pc)
        if pc.signalingState != "stable" or remote is None:
            return
        if not self.incoming and not pc.getTransceivers():
            return  # data channels only: no m-line can carry a track
        remote_media = {m.rtp.muxId: m for m in remote.media}
        current: dict[str, tuple[RTCRtpTransceiver, str, str]] = {}
        for transceiver in pc.getTransceivers():
            mid = transceiver.mid
            media = remote_media.get(mid) if mid is not None else None
            if mid is None or media is None:
                continue
            if transceiver.currentDirection not in ("recvonly", "sendrecv"):
                continue
            stream_id, _, track_id = (media.msid or "").partition(" ")
            current[mid] = (
                transceiver,
                stream_id or f"mid-{mid}",
                track_id or transceiver.receiver.track.id,
            )
        for mid, incoming in list(self.incoming.items()):
            if mid not in current or current[mid][1] != incoming.stream_id:
                del self.incoming[mid]
                self._end(incoming)
        for mid, (transceiver, stream_id, track_id) in current.items():
            if mid not in self.incoming:
                self._start(mid, transceiver, stream_id, track_id)
        self._apply_labels()

    def _apply_labels(self) -> None:
        """Rename remote streams whose label the last offer's map gives differently.

        A stream can first arrive in an ANSWER, which carries no label map (docs/PROTOCOL.md: labels
        ride only on offers): after a glare, the polite side's new stream reuses an idle m-line
        that its answer already sends on. It is shown under its id until the remote's next offer
        names it; then it is announced again, as stream:remove under the old name and
        stream:add under the label, with the same stream and tracks.
        """
        for old, stream in list(self.streams.items()):
            new = self.labels.get(stream.id, stream.id)
            if new == old or new in self.streams:
                continue
            del self.streams[old]
            self.streams[new] = stream
            for incoming in self.incoming.values():
                if incoming.stream is stream:
                    incoming.label = new
            self._emit("stream:remove", stream=stream, label=old, detail=stream.id)
            self._emit("stream:add", stream=stream, label=new, detail=stream.id)

    def _start(
        self, mid: str, transceiver: RTCRtpTransceiver, stream_id: str, track_id: str
    ) -> None:
        from .media import MediaStream, tap_for

        tap = self.taps.get(mid)
        if tap is None or tap.ended:
            # One tap per receiver, for the connection's life: it drains the receiver even
            # between tracks (aiortc queues remote frames without bound otherwise).
            tap = self.taps[mid] = tap_for(transceiver.receiver.track)
        track = tap.subscribe(id=track_id)
        label = self.labels.get(stream_id, stream_id)
        stream = next((s for s in self.streams.values() if s.id == stream_id), None)
        new_stream = stream is None
        if stream is None:
            stream = MediaStream(id=stream_id)
            self.streams[label] = stream
        stream.add_track(track)
        self.incoming[mid] = _Incoming(label, track, stream)
        if new_stream:
            self._emit("stream:add", stream=stream, label=label, detail=stream_id)
        self._emit(
            "track:add", stream=stream, track=track, label=label, kind=track.kind, detail=stream_id
        )
        self._spawn(self._first_frame(tap, track, label), f"remote:{self._name}:first-frame")

    async def _first_frame(self, tap: Tap, track: TapTrack, label: str) -> None:
        """A log row when the first frame of a remote track arrives (the timing breakdown)."""
        reader = tap.subscribe(origin=track)
        try:
            await reader.recv()
        except MediaStreamError:
            return  # the track ended before any frame
        finally:
            reader.stop()
        self._emit("media:first-frame", track=track, label=label, kind=track.kind)

    def _end(self, incoming: _Incoming) -> None:
        """The remote track's life is over: it (and readers made from it) end, the tap stays."""
        stream, track, label = incoming.stream, incoming.track, incoming.label
        track.stop()
        stream.remove_track(track)
        self._emit(
            "track:remove",
            stream=stream,
            track=track,
            label=label,
            kind=track.kind,
            detail=incoming.stream_id,
        )
        if not stream.tracks and self.streams.get(label) is stream:
            del self.streams[label]
            self._emit("stream:remove", stream=stream, label=label, detail=incoming.stream_id)

    # -- the transceivers themselves -------------------------------------------------------
    async def retire(self, transceiver: RTCRtpTransceiver) -> None:
        """Forget a transceiver whose m-line the remote recycled (mlines.py), and stop it."""
        self.outgoing.pop(transceiver, None)
        tap = self.taps.pop(transceiver.mid, None) if transceiver.mid else None
        if tap is not None:
            await tap.aclose()
        await mlines.stop(transceiver)

    async def close(self) -> None:
        """The connection ends: remote tracks end, taps close, senders lose their sources."""
        for incoming in list(self.incoming.values()):
            self._end(incoming)
        self.incoming.clear()
        for tap in self.taps.values():
            await tap.aclose()
        self.taps.clear()
        for out in self.outgoing.values():
            out.track.set_source(None)


def accept_incoming_media(pc: RTCPeerConnection) -> None:
    """Let the remote send on m-lines we created sendonly (a browser's addTrack reuses them)."""
    for transceiver in pc.getTransceivers():
        remote_sends = _aiortc.offer_direction(transceiver) in ("recvonly", "sendrecv")
        if remote_sends and transceiver.direction in ("sendonly", "inactive"):
            transceiver.direction = (
                "sendrecv" if transceiver.direction == "sendonly" else "recvonly"
            )
