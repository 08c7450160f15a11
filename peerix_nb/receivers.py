"""Receivers follow payload-type renumbering, and audio receivers hold back less (aiortc 1.16
private state).

Why: aiortc's createOffer() renumbers every transceiver's codecs to its own payload types
(VP8=97, ...), also on m-lines the remote created with other numbers (Chrome: VP8=96, rtx=97).
The remote follows the new numbers, but an RTCRtpReceiver copies its codec map once, when it
starts, and then reads the VP8 packets as RTX of an unknown SSRC and drops them all: a browser's
camera went dark in the kernel as soon as the kernel renegotiated (tests/browser, glare with the
kernel polite). So after every exchange the started receivers get the negotiated map again
(their private codec map, through _aiortc.py), and so does the transport's RTP router, which
otherwise drops packets whose new payload type it still maps to another receiver.

Audio receivers reassemble with audio_jitter.AudioJitterBuffer instead of aiortc's buffer,
which holds 80 ms and, after one lost packet, ~300 ms for the rest of the call.
"""

from __future__ import annotations

from aiortc import RTCPeerConnection

from . import _aiortc
from .audio_jitter import AudioJitterBuffer


def refresh_codecs(pc: RTCPeerConnection) -> None:
    """Give every started receiver of `pc` the payload types negotiated last."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        codecs = _aiortc.codecs(transceiver)
        if codecs and _aiortc.receiver_started(receiver):
            table = _aiortc.receiver_codecs(receiver)
            table.clear()
            table.update({c.payloadType: c for c in codecs if c.payloadType is not None})
            # ... and the transport's router delivers those payload types to it.
            _aiortc.route_payload_types(receiver, list(table))


def use_audio_jitter_buffers(pc: RTCPeerConnection) -> None:
    """Give every audio receiver of `pc` an AudioJitterBuffer (aiortc's own holds 80 ms, and
    ~300 ms for good after one lost packet: see audio_jitter.py). Call it before the
    description that makes a receiver receive is set (offer: before setLocalDescription;
    answer: before setLocalDescription of the answer), so no packet reaches aiortc's first."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if transceiver.kind == "audio" and not isinstance(
            _aiortc.jitter_buffer(receiver), AudioJitterBuffer
        ):
            _aiortc.replace_jitter_buffer(receiver, AudioJitterBuffer())
