"""Every private attribute of aiortc and aioice that peerix_nb touches still exists.

peerix_nb reaches aiortc's and aioice's private state only through peerix_nb/_aiortc.py, which
lists each name it uses in `_aiortc.TOUCHED`. These tests build real objects of the installed
versions and fail, naming the attribute, as soon as one of them disappears: upgrading the pinned
aiortc (or aioice) must start here. A scan of _aiortc.py's source keeps TOUCHED complete.
"""

from __future__ import annotations

import pathlib
import re
from importlib.metadata import version

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCCertificate

from peerix_nb import _aiortc, certificate
from peerix_nb.config import make_configuration
from peerix_nb.transceivers import SenderTrack


async def _objects() -> tuple[RTCPeerConnection, list[object]]:
    """A connection with a data channel and an audio transceiver, its local description set
    (so gathering ran and its candidate sockets exist), and every object reachable from it."""
    pc = RTCPeerConnection(make_configuration(None, "all"))  # no STUN: gathering is local
    certificate.use_peer_certificate(pc, pc)  # PeerCertificate, as every Peer's connection has
    pc.createDataChannel("", negotiated=True, id=0)
    transceiver = pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sctp = pc.sctp
    assert sctp is not None
    ice = sctp.transport.transport
    connection = _aiortc.ice_connection(ice)
    objects: list[object] = [pc, transceiver, transceiver.sender, transceiver.receiver]
    objects.append(getattr(transceiver.receiver, "_RTCRtpReceiver__jitter_buffer", None))
    objects += [sctp, sctp.transport, ice, connection, *_aiortc.stun_protocols(ice)]
    objects.append(RTCCertificate.generateCertificate())  # aiortc's own, not PeerCertificate
    return pc, objects


async def test_every_private_name_touched_exists() -> None:
    pc, objects = await _objects()
    try:
        missing = []
        for cls, name in _aiortc.TOUCHED:
            instance = next((o for o in objects if isinstance(o, cls) or o is cls), None)
            assert instance is not None, f"no {cls.__name__} to check {name} on: extend _objects()"
            if not hasattr(instance, name):
                missing.append(f"{cls.__module__}.{cls.__name__}.{name}")
        assert not missing, (
            f"aiortc {version('aiortc')} / aioice {version('aioice')} no longer have"
            f" {missing} (checked on {_aiortc.CHECKED_ON}): see peerix_nb/_aiortc.py"
        )
    finally:
        await pc.close()


def test_touched_lists_every_private_name_the_module_uses() -> None:
    """A private name used in _aiortc.py but missing from TOUCHED would go unchecked."""
    source = pathlib.Path(_aiortc.__file__).read_text()
    code = "\n".join(line.split("#", 1)[0] for line in source.splitlines())  # not comments
    used = set(re.findall(r"\.(_[A-Za-z]\w*)", code))
    used |= set(re.findall(r"getattr\(\w+(?:\(\w+\))?, \"(_[A-Za-z]\w*)\"", code))
    used |= {"transport"}  # StunProtocol.transport: public-looking, but undocumented state
    declared = {name for _, name in _aiortc.TOUCHED}
    assert used - declared == set(), f"used in _aiortc.py but not in TOUCHED: {used - declared}"
    assert declared - used == set(), f"in TOUCHED but not used: {declared - used}"


async def test_the_facts_the_accessors_rely_on() -> None:
    """A few of the facts _aiortc.py's comments state, checked on the installed aiortc."""
    pc = RTCPeerConnection(make_configuration(None, "all"))  # no STUN: gathering is local
    try:
        sender_track = SenderTrack("audio")
        transceiver = pc.addTransceiver(sender_track, direction="sendonly")
        # transceivers(): the live list, not getTransceivers()'s copy
        assert _aiortc.transceivers(pc) == pc.getTransceivers()
        assert _aiortc.transceivers(pc) is _aiortc.transceivers(pc)
        assert _aiortc.transceivers(pc) is not pc.getTransceivers()
        # set_msid_stream_id(): the id written into a=msid
        _aiortc.set_msid_stream_id(transceiver.sender, "published-stream")
        offer = await pc.createOffer()
        assert "a=msid:published-stream " in offer.sdp
        # pending_local_description(): set by setLocalDescription, and parsed
        await pc.setLocalDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        pending = _aiortc.pending_local_description(pc)
        assert pending is not None and [m.kind for m in pending.media] == ["audio"]
        assert _aiortc.mline_index(transceiver) == 0
        sender_track.stop()
    finally:
        await pc.close()


@pytest.mark.parametrize("package", ["aiortc", "aioice"])
def test_checked_versions_are_recorded(package: str) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", _aiortc.CHECKED_ON[package])


def test_every_rebound_global_is_still_read_by_its_function() -> None:
    """_aiortc.REBOUND: functions of aiortc/aioice run with one module global replaced (the
    certificate RTCPeerConnection.__init__ makes, the interface listing of aioice's gathering).
    If the function stopped reading that global, the replacement would silently do nothing."""
    assert _aiortc.REBOUND, "REBOUND lists nothing"
    for function, name in _aiortc.REBOUND:
        where = f"{function.__module__}.{function.__qualname__}"
        assert name in function.__code__.co_names, f"{where} no longer reads {name}"
        assert name in function.__globals__, f"{where}'s module has no {name}"


async def test_a_peer_connection_makes_no_certificate_and_gathers_from_the_given_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """peer_connection() and use_host_addresses() on the installed aiortc and aioice."""
    given = certificate.PeerCertificate.generateCertificate()
    made: list[RTCCertificate] = []
    generate = RTCCertificate.generateCertificate.__func__  # type: ignore[attr-defined]

    def counted(cls: type[RTCCertificate]) -> RTCCertificate:
        made.append(generate(cls))
        return made[-1]

    monkeypatch.setattr(RTCCertificate, "generateCertificate", classmethod(counted))
    pc = _aiortc.peer_connection(make_configuration(None, "all"), given)
    try:
        assert made == []
        pc.createDataChannel("", negotiated=True, id=0)
        assert pc.sctp is not None
        ice = pc.sctp.transport.transport
        params = pc.sctp.transport.getLocalParameters()
        assert [f.value for f in params.fingerprints] == [f.value for f in given.getFingerprints()]
        asked: list[tuple[bool, bool]] = []

        def addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            asked.append((use_ipv4, use_ipv6))
            return ["127.0.0.1"]  # aioice leaves loopback out of its own list

        _aiortc.use_host_addresses(ice, addresses)
        await pc.setLocalDescription(await pc.createOffer())
        assert asked == [(True, True)]
        hosts = [c.ip for c in ice.iceGatherer.getLocalCandidates()]
        assert hosts == ["127.0.0.1"]
    finally:
        await pc.close()


async def test_keyframe_requests_and_bitrate_estimates_of_a_sender() -> None:
    """on_keyframe_request(), sender_target_bitrate(), sender_enabled() and request_keyframe()
    on the installed aiortc: a real sender's remote asks for a keyframe (RTCP PLI) and the
    callback hears it; the sender's bitrate target exists once it read a frame and lies in
    VP8's range; a negotiated sendonly sender sends."""
    import asyncio

    from aiortc.codecs import vpx

    from peerix_nb import media

    source = media.SyntheticVideoTrack(160, 120, 15)
    config = make_configuration(None, "all")
    sending, receiving = RTCPeerConnection(config), RTCPeerConnection(config)
    loop = asyncio.get_running_loop()
    got: asyncio.Future[object] = loop.create_future()
    receiving.on("track", lambda t: got.done() or got.set_result(t))
    heard = asyncio.Event()
    try:
        transceiver = sending.addTransceiver(media.relayed(source), direction="sendonly")
        _aiortc.on_keyframe_request(transceiver.sender, heard.set)
        assert _aiortc.sender_target_bitrate(transceiver.sender) is None  # no frame read yet
        await sending.setLocalDescription(await sending.createOffer())
        await receiving.setRemoteDescription(sending.localDescription)
        await receiving.setLocalDescription(await receiving.createAnswer())
        await sending.setRemoteDescription(receiving.localDescription)
        track = await asyncio.wait_for(got, 10)
        reader = media.relayed(track)  # drains the remote track (a Tap)
        await asyncio.wait_for(reader.recv(), 10)  # a frame crossed: both sides run
        bitrate = _aiortc.sender_target_bitrate(transceiver.sender)
        assert bitrate is not None and vpx.MIN_BITRATE <= bitrate <= vpx.MAX_BITRATE
        assert _aiortc.sender_enabled(transceiver.sender)  # sendonly, negotiated
        assert await _aiortc.request_keyframe(receiving.getTransceivers()[0].receiver)
        await asyncio.wait_for(heard.wait(), 10)
        reader.stop()
    finally:
        source.stop()
        await sending.close()
        await receiving.close()
