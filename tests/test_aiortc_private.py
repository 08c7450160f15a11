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
