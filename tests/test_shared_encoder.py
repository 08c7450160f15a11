"""One encoder per published track (media/encoding.py, transceivers.py), over real aiortc
connections: the remotes of a track share its encoder, a keyframe request from one reaches all,
a late joiner starts at a keyframe, and remotes that negotiated another codec get their own.

What the senders send is seen through aiortc's own VP8 encoder class, whose `encode` (a sender
encoding frames itself) and `pack` (a sender packetising encoded packets) are wrapped here to log
each VP8 frame a sender sends, with the sender (its encoder object, one per sender) and whether
it is a keyframe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
)
from aiortc.codecs import vpx
from aiortc.mediastreams import MediaStreamTrack

from peerix_nb import MemoryDriver, Peer, _aiortc, media
from peerix_nb.media.encoding import SharedEncoder, shared_encoders
from peerix_nb.transceivers import Transceivers
from testbed.rooms import leave_all, poll_until, room, wait_until

SMALL = {"width": 160, "height": 120, "fps": 15}


# -- what the senders send -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sent:
    """One VP8 frame a sender sent."""

    sender: int  # id() of the sender's aiortc encoder: one per RTCRtpSender
    via: str  # "encode" (the sender encoded a frame) or "pack" (it packetised a packet)
    key: bool
    data: bytes  # the VP8 frame


@dataclass
class SentLog:
    frames: list[Sent] = field(default_factory=list)

    def of(self, sender: int, since: int = 0) -> list[Sent]:
        return [s for s in self.frames[since:] if s.sender == sender]

    def senders(self, since: int = 0) -> set[int]:
        return {s.sender for s in self.frames[since:]}

    def keyframe_senders(self, since: int) -> set[int]:
        return {s.sender for s in self.frames[since:] if s.key}

    def quiet(self, senders: int, frames: int) -> bool:
        """Each of `senders` senders sent `frames` frames since its last keyframe."""
        last = {s: self.of(s)[-frames:] for s in self.senders()}
        return len(last) == senders and all(
            len(sent) == frames and not any(x.key for x in sent) for sent in last.values()
        )


def _is_key(vp8_frame: bytes) -> bool:
    return bool(vp8_frame) and not vp8_frame[0] & 1  # VP8 frame tag: P bit 0 = key frame


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> SentLog:
    log = SentLog()
    encode, pack = vpx.Vp8Encoder.encode, vpx.Vp8Encoder.pack

    def logged_encode(self: vpx.Vp8Encoder, frame: Any, force_keyframe: bool = False) -> Any:
        payloads, timestamp = encode(self, frame, force_keyframe)
        if payloads:  # runs in an executor thread: list.append is atomic
            data = b"".join(vpx.VpxPayloadDescriptor.parse(p)[1] for p in payloads)
            log.frames.append(Sent(id(self), "encode", _is_key(data), data))
        return payloads, timestamp

    def logged_pack(self: vpx.Vp8Encoder, packet: Any) -> Any:
        data = bytes(packet)
        log.frames.append(Sent(id(self), "pack", _is_key(data), data))
        return pack(self, packet)

    monkeypatch.setattr(vpx.Vp8Encoder, "encode", logged_encode)
    monkeypatch.setattr(vpx.Vp8Encoder, "pack", logged_pack)
    return log


# -- helpers ---------------------------------------------------------------------------------------
async def decoded(track: MediaStreamTrack, count: int) -> int:
    """Read `count` frames of a remote video track whose stamp reads (the picture decoded
    right); return how many frames it took."""
    seen = good = 0
    async for image in media.frames(track, "gray"):
        seen += 1
        good += media.read_stamp(image) is not None
        if good >= count:
            break
    return seen


def remote_video(peer: Peer, publisher: Peer, label: str) -> MediaStreamTrack:
    return peer.connections[publisher.id].streams[label].video_tracks[0]


def video_receiver(peer: Peer, publisher: Peer) -> RTCRtpReceiver:
    pc = peer.connections[publisher.id].connection
    return next(t.receiver for t in pc.getTransceivers() if t.kind == "video")


def decode_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "failed to decode" in r.getMessage()]


async def receiving(publisher: Peer, receivers: list[Peer], label: str, frames: int) -> None:
    """Every receiver shows `label` and decodes `frames` frames of its video."""
    await wait_until(
        receivers,
        lambda: all(label in r.connections[publisher.id].streams for r in receivers),
    )
    tracks = [remote_video(r, publisher, label) for r in receivers]
    await asyncio.wait_for(asyncio.gather(*(decoded(t, frames) for t in tracks)), 20)


# -- one encoder for every remote --------------------------------------------------------------------
@pytest.mark.timeout(60)
async def test_three_remotes_of_one_published_track_share_one_encoder(
    sent: SentLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiortc")
    a, *others = await room(4)
    stream = media.synthetic(**SMALL)  # video and audio
    video, audio = stream.video_tracks[0], stream.audio_tracks[0]
    try:
        await a.publish(stream, label="cam")
        await receiving(a, others, "cam", 20)

        # One VP8 encoder and one Opus encoder for the three remotes.
        (vp8,) = shared_encoders(video)
        (opus,) = shared_encoders(audio)
        assert (vp8.codec, len(vp8.subscribers)) == ("video/vp8", 3)
        assert (opus.codec, len(opus.subscribers)) == ("audio/opus", 3)
        # VP8 encodes per frame made: 1, not 3. No sender encodes; each packetises the same
        # encoded frames.
        made = video.frames_sent
        encodes = vp8.frames_encoded + sum(s.via == "encode" for s in sent.frames)
        assert 0 < encodes <= made + 1, (encodes, made)
        assert all(s.via == "pack" for s in sent.frames)
        senders = sent.senders()
        assert len(senders) == 3
        first = {s.data for s in sent.of(next(iter(senders)))}
        for sender in senders:
            assert len(first & {s.data for s in sent.of(sender)}) >= 10
        assert not decode_errors(caplog)
    finally:
        await leave_all([a, *others])
    # the encoders went with the senders
    assert shared_encoders(video) == [] and shared_encoders(audio) == []
    assert vp8.ended and opus.ended


@pytest.mark.timeout(60)
async def test_a_keyframe_request_from_one_remote_reaches_every_sender(sent: SentLog) -> None:
    a, *others = await room(4)
    try:
        await a.publish(media.synthetic(audio=False, **SMALL), label="cam")
        await receiving(a, others, "cam", 5)
        # No keyframe in flight: 8 delta frames from each sender since its last keyframe.
        await poll_until(lambda: sent.quiet(senders=3, frames=8), 15, "a quiet moment")
        senders, mark = sent.senders(), len(sent.frames)
        # b's receiver sends an RTCP PLI, as after losing a picture.
        assert await _aiortc.request_keyframe(video_receiver(others[0], a))
        await poll_until(
            lambda: all(len(sent.of(s, mark)) >= 6 for s in senders), 10, "6 frames from each"
        )
        # Every sender (not only b's) sends a keyframe within its next few frames, and it is
        # the same keyframe: encoded once, sent three times.
        keys = [next((x for x in sent.of(s, mark)[:6] if x.key), None) for s in senders]
        assert None not in keys, [[x.key for x in sent.of(s, mark)[:6]] for s in senders]
        assert len({k.data for k in keys if k is not None}) == 1
    finally:
        await leave_all([a, *others])


@pytest.mark.timeout(60)
async def test_a_late_joining_remote_starts_at_a_keyframe_and_decodes_at_once(
    sent: SentLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiortc")
    driver = MemoryDriver()
    a, b, c = await room(3, driver=driver)
    late = Peer(driver=driver)
    stream = media.synthetic(audio=False, **SMALL)
    try:
        await a.publish(stream, label="cam")
        await receiving(a, [b, c], "cam", 30)  # the encoder is long past its first keyframe
        (encoder,) = shared_encoders(stream.video_tracks[0])
        assert encoder.keyframes >= 1
        before = sent.senders()
        added = asyncio.ensure_future(late.wait_for("track:add", lambda e: e.kind == "video"))
        first = asyncio.ensure_future(late.wait_for("media:first-frame"))
        await late.join(room="room")
        await asyncio.wait_for(added, 20)
        added_at = time.monotonic()
        # Decodes within ~1 s (here typically 0.1 s): the new sender asked the shared encoder
        # for a keyframe instead of waiting for the next one (libvpx's is 3000 frames away).
        await asyncio.wait_for(first, 2.0)
        print(f"late joiner: first frame {time.monotonic() - added_at:.3f} s after track:add")
        (new_sender,) = sent.senders() - before
        assert sent.of(new_sender)[0].key  # its first frame sent was a keyframe
        assert shared_encoders(stream.video_tracks[0]) == [encoder]  # still the one encoder
        assert len(encoder.subscribers) == 3
        assert await decoded(remote_video(late, a, "cam"), 10) >= 10
        assert not decode_errors(caplog)
    finally:
        await leave_all([a, b, c, late])


@pytest.mark.timeout(60)
async def test_an_unpublished_track_leaves_no_encoder() -> None:
    a, b, c = await room(3)
    stream = media.synthetic(**SMALL)
    try:
        await a.publish(stream, label="cam")
        await receiving(a, [b, c], "cam", 3)
        encoders = [e for t in stream.tracks for e in shared_encoders(t)]
        assert len(encoders) == 2
        await a.unpublish("cam")
        await wait_until(
            [b, c], lambda: all("cam" not in p.connections[a.id].streams for p in (b, c))
        )
        await asyncio.wait_for(asyncio.wait({e._task for e in encoders}), 5)
        assert all(e.ended and not e.subscribers for e in encoders)
        assert [e for t in stream.tracks for e in shared_encoders(t)] == []
        # published again: new encoders, frames again
        await a.publish(stream, label="cam")
        await receiving(a, [b, c], "cam", 3)
        assert len([e for t in stream.tracks for e in shared_encoders(t)]) == 2
    finally:
        await leave_all([a, b, c])


# -- codecs ------------------------------------------------------------------------------------------
@dataclass
class Link:
    """A publishing connection whose senders are peerix_nb's (Transceivers) and a raw aiortc
    receiving one that may prefer a codec."""

    sending: RTCPeerConnection
    receiving: RTCPeerConnection
    media: Transceivers
    track: asyncio.Future[MediaStreamTrack]

    async def negotiate(self) -> None:
        await self.sending.setLocalDescription(await self.sending.createOffer())
        await self.receiving.setRemoteDescription(self.sending.localDescription)
        await self.receiving.setLocalDescription(await self.receiving.createAnswer())
        await self.sending.setRemoteDescription(self.receiving.localDescription)


@pytest.fixture
async def links() -> AsyncIterator[Callable[..., Any]]:
    made: list[Link] = []
    tasks: list[asyncio.Task[None]] = []

    def spawn(coroutine: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        tasks.append(task)
        return task

    async def link(stream: media.MediaStream, codec: str | None = None) -> Link:
        config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        sending, receiving = RTCPeerConnection(config), RTCPeerConnection(config)
        transceivers = Transceivers({}, lambda *a, **k: None, spawn, "link")
        transceivers.sync_outgoing(sending, {"cam": stream})
        track: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        receiving.on("track", lambda t: track.done() or track.set_result(t))
        if codec is not None:
            # aiortc fixes a transceiver's codecs when it applies the offer: prefer them before
            # (the offer's video m-line then takes this recvonly transceiver)
            transceiver = receiving.addTransceiver("video", direction="recvonly")
            caps = RTCRtpReceiver.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in caps if c.mimeType.lower() == codec])
        made.append(Link(sending, receiving, transceivers, track))
        await made[-1].negotiate()
        return made[-1]

    yield link
    for item in made:
        await item.media.close()
        await item.sending.close()
        await item.receiving.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.timeout(60)
async def test_remotes_that_negotiated_another_codec_get_their_own_encoder(
    links: Callable[..., Any],
) -> None:
    stream = media.synthetic(audio=False, **SMALL)
    video = stream.video_tracks[0]
    first = await links(stream)  # aiortc's first choice: VP8
    second = await links(stream, "video/vp8")
    third = await links(stream, "video/h264")
    tracks = [await asyncio.wait_for(link.track, 10) for link in (first, second, third)]
    readers = [asyncio.ensure_future(decoded(t, 10)) for t in tracks]
    await asyncio.wait_for(asyncio.gather(*readers), 30)  # H264 decodes too (stamps read)
    by_codec = {e.codec: e for e in shared_encoders(video)}
    assert set(by_codec) == {"video/vp8", "video/h264"}
    assert len(by_codec["video/vp8"].subscribers) == 2
    assert len(by_codec["video/h264"].subscribers) == 1
    assert all(isinstance(e, SharedEncoder) and e.frames_encoded > 0 for e in by_codec.values())
    stream.stop()


@pytest.mark.timeout(60)
async def test_a_keyframe_the_sender_dropped_before_its_direction_sends_is_made_again(
    links: Callable[..., Any], sent: SentLog, caplog: pytest.LogCaptureFixture
) -> None:
    """aiortc's sender reads and drops what its track gives while its negotiated direction does
    not send. A republish on an idle m-line subscribes at once (and gets a keyframe) but sends
    only once the new offer is answered: the first frame it sends must still be a keyframe."""
    caplog.set_level(logging.WARNING, logger="aiortc")
    first, second = (media.synthetic(audio=False, **SMALL) for _ in range(2))
    other = await links(second)  # `second` is encoded all along, for this other remote
    await asyncio.wait_for(decoded(await asyncio.wait_for(other.track, 10), 3), 20)
    others = sent.senders()  # the other remote's sender
    link = await links(first)
    received = await asyncio.wait_for(link.track, 10)
    await asyncio.wait_for(decoded(received, 5), 20)
    (transceiver,) = link.sending.getTransceivers()
    sender_track = transceiver.sender.track
    # unpublish: the m-line goes inactive, the sender idles
    assert link.media.sync_outgoing(link.sending, {})
    await link.negotiate()
    assert transceiver.currentDirection == "inactive"
    # republish `second` on it: the sender reads (and drops) packets until the next offer
    link.media.sync_outgoing(link.sending, {"cam": second})
    reader = sender_track.reader
    await poll_until(lambda: reader.packets_returned >= 3, 10, "the sender read 3 packets")
    mark = len(sent.frames)
    await link.negotiate()
    assert transceiver.currentDirection == "sendonly"

    def mine() -> list[Sent]:
        return [s for s in sent.frames[mark:] if s.sender not in others]

    await poll_until(lambda: len(mine()) >= 5, 10, "5 frames sent after the offer")
    assert mine()[0].key, [s.key for s in mine()[:5]]
    await asyncio.wait_for(decoded(received, 5), 20)
    assert not decode_errors(caplog)
    for stream in (first, second):
        stream.stop()
