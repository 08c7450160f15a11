"""Receivers follow payload-type renumbering (aiortc 1.16 private state).

Why: aiortc's createOffer() renumbers every transceiver's codecs to its own payload types
(VP8=97, ...), also on m-lines the remote created with other numbers (Chrome: VP8=96, rtx=97).
The remote follows the new numbers, but an RTCRtpReceiver copies its codec map once, when it
starts, and then reads the VP8 packets as RTX of an unknown SSRC and drops them all: a browser's
camera went dark in the kernel as soon as the kernel renegotiated (tests/browser, glare with the
kernel polite). So after every exchange the started receivers get the negotiated map again.
"""

from __future__ import annotations

from aiortc import RTCPeerConnection


def refresh_codecs(pc: RTCPeerConnection) -> None:
    """Give every started receiver of `pc` the payload types negotiated last."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        codecs = transceiver._codecs
        if codecs and getattr(receiver, "_RTCRtpReceiver__started", False):
            table = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
            table.clear()
            table.update({codec.payloadType: codec for codec in codecs})
