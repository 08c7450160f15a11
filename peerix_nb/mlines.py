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

All private names are touched here and nowhere else; aiortc is pinned to 1.16.x for this.
"""

from __future__ import annotations

import contextlib

from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters

from . import sdp


def retire_recycled(pc: RTCPeerConnection, offer_sdp: str) -> list[RTCRtpTransceiver]:
    """Take out the transceivers whose m-line position the remote `offer_sdp` gives to another
    mid; return them (the caller stops them and forgets what it kept of them)."""
    offered = sdp.mids(offer_sdp)
    transceivers: list[RTCRtpTransceiver] = pc._RTCPeerConnection__transceivers  # type: ignore[attr-defined]
    retired = []
    for transceiver in list(transceivers):
        index = transceiver._get_mline_index()
        if transceiver.mid is None or index is None or index >= len(offered):
            continue
        if offered[index] is not None and offered[index] != transceiver.mid:
            transceivers.remove(transceiver)
            retired.append(transceiver)
    return retired


async def stop(transceiver: RTCRtpTransceiver) -> None:
    """Stop a retired transceiver's sender and receiver (its RTP loops end)."""
    with contextlib.suppress(Exception):  # a never-started sender may object; nothing to do
        await transceiver.stop()


def use_extension_ids(pc: RTCPeerConnection, ids: dict[str, int]) -> None:
    """Make every transceiver's header extensions use `ids` (URI -> id), as our offer says;
    an extension without an id there is not used."""
    for transceiver in pc.getTransceivers():
        transceiver._headerExtensions = [  # type: ignore[attr-defined]
            RTCRtpHeaderExtensionParameters(id=ids[ext.uri], uri=ext.uri)
            for ext in transceiver._headerExtensions  # type: ignore[attr-defined]
            if ext.uri in ids
        ]
