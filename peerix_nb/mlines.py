"""m-lines a browser stopped and then recycled, which aiortc 1.16 cannot follow by itself.

Why: when browser Peerix unpublishes, it calls `transceiver.stop()`; its next offer rejects that
m-line (port 0, mid out of the BUNDLE group). When it publishes again, Chrome recycles the
rejected m-line: the same position in the SDP now carries a new transceiver with a NEW mid
(measured with Chromium 156: mids 0, 1, 2 -> stop 0 -> a later offer has mid 3 at position 0).
aiortc pairs transceivers with m-lines by position in several places
(`__getTransceiverByMLineIndex`: DTLS roles, receive parameters, createOffer), so the old
transceiver left at that position would take the new m-line's place and the new media would
never play. Before such an offer is applied, the old transceiver is taken out of the
connection's list and stopped; aiortc then makes a fresh one for the new mid.

Also here: the header-extension ids aiortc itself uses must follow the ones we rewrite into
our offers (sdp.py). createOffer resets every transceiver's `_headerExtensions` to aiortc's own
table (mid=1, audio level=2, abs-send-time=3), and a sender or receiver first started in
have-local-offer registers those on the BUNDLE's one RTP header-extension map: packets of the
remote, stamped with the ids we offered, are then parsed with the wrong ones (`struct.error:
unpack requires a buffer of 4 bytes` in aiortc's rtp.py, seen in the glare storm).

The private state is reached through _aiortc.py; aiortc is pinned to 1.16.x for this.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters

from . import _aiortc, sdp

#: Seconds a retired transceiver may take to stop.
STOP_TIMEOUT = 2.0


def retire_recycled(
    pc: RTCPeerConnection, offer_sdp: str, rejected: set[str]
) -> list[RTCRtpTransceiver]:
    """Take out the transceivers of `rejected` m-lines whose position the remote `offer_sdp`
    gives to another mid; return them (the caller stops them and forgets what it kept).

    Only a rejected m-line can be recycled (JSEP). Nothing else may be touched: after our own
    emulated rollback (rollback.py) positions can look shifted, and retiring a live transceiver
    there stalled the glare storm (tests/test_soak.py) with a negotiation that never ended."""
    offered = sdp.mids(offer_sdp)
    transceivers = _aiortc.transceivers(pc)
    retired = []
    for transceiver in list(transceivers):
        index = _aiortc.mline_index(transceiver)
        if transceiver.mid not in rejected or index is None or index >= len(offered):
            continue
        if offered[index] is not None and offered[index] != transceiver.mid:
            transceivers.remove(transceiver)
            retired.append(transceiver)
    return retired


async def stop(transceiver: RTCRtpTransceiver) -> None:
    """Stop a retired transceiver's sender and receiver (its RTP loops end)."""
    # Bounded: the connection's negotiation queue waits on it.
    with contextlib.suppress(Exception):  # a never-started sender may object; nothing to do
        await asyncio.wait_for(transceiver.stop(), STOP_TIMEOUT)


def use_extension_ids(pc: RTCPeerConnection, ids: dict[str, int]) -> None:
    """Make every transceiver's header extensions use `ids` (URI -> id), as our offer says;
    an extension without an id there is not used."""
    for transceiver in pc.getTransceivers():
        extensions = _aiortc.header_extensions(transceiver)
        _aiortc.set_header_extensions(
            transceiver,
            [
                RTCRtpHeaderExtensionParameters(id=ids[ext.uri], uri=ext.uri)
                for ext in extensions
                if ext.uri in ids
            ],
        )
