"""The one place that reads or writes aiortc's and aioice's private state.

aiortc 1.16 lacks things a Peerix peer needs (rollback, one certificate per peer, statistics for
data channels, ...). The modules that work around it (rollback.py, liveness.py, certificate.py,
receivers.py, mlines.py, network.py, stats.py, remote.py) keep the logic and the reasons; they
reach private state only through the small functions here. Each function says which fact forces
it. All were checked on aiortc 1.16.0 and aioice 0.13.0 (pyproject.toml pins aiortc 1.16.x).
`TOUCHED` names every private attribute and method used here, and
tests/test_aiortc_private.py checks each one against the installed aiortc and aioice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aioice.ice import Connection, StunProtocol
from aiortc import (
    RTCDtlsTransport,
    RTCIceTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSctpTransport,
)
from aiortc.rtcdtlstransport import RTCCertificate

if TYPE_CHECKING:
    from aioice.ice import CandidatePair
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters
    from aiortc.sdp import SessionDescription
    from aiortc.stats import RTCStatsReport

#: The versions every access below was checked on.
CHECKED_ON = {"aiortc": "1.16.0", "aioice": "0.13.0"}

#: (class, private name) for every attribute or method this module touches.
TOUCHED: list[tuple[type, str]] = []

F = TypeVar("F", bound=Callable[..., Any])


def _touches(cls: type, *names: str) -> Callable[[F], F]:
    """Record that the decorated function uses `names` of `cls` (see TOUCHED)."""

    def mark(fn: F) -> F:
        TOUCHED.extend((cls, name) for name in names)
        return fn

    return mark


# -- RTCPeerConnection ---------------------------------------------------------------------------


@_touches(RTCPeerConnection, "_RTCPeerConnection__transceivers")
def transceivers(pc: RTCPeerConnection) -> list[RTCRtpTransceiver]:
    """The connection's own transceiver list, not a copy.

    getTransceivers() returns a copy, and aiortc pairs transceivers with m-lines by their place
    in this list: rollback.py and mlines.py must take transceivers out of it (and put them back).
    """
    return cast("list[RTCRtpTransceiver]", pc._RTCPeerConnection__transceivers)  # type: ignore[attr-defined]


@_touches(RTCPeerConnection, "_RTCPeerConnection__seenMids")
def seen_mids(pc: RTCPeerConnection) -> set[str]:
    """The mids aiortc will not hand out again: a rolled-back offer's mids must be freed here."""
    return cast("set[str]", pc._RTCPeerConnection__seenMids)  # type: ignore[attr-defined]


@_touches(RTCPeerConnection, "_RTCPeerConnection__pendingLocalDescription")
def pending_local_description(pc: RTCPeerConnection) -> SessionDescription | None:
    """The parsed local description aiortc keeps as "pending".

    aiortc never promotes a pending description to current: after the first exchange the
    offerer's local description stays pending, and the next offer overwrites it.
    """
    return cast(
        "SessionDescription | None",
        pc._RTCPeerConnection__pendingLocalDescription,  # type: ignore[attr-defined]
    )


@_touches(RTCPeerConnection, "_RTCPeerConnection__pendingLocalDescription")
def set_pending_local_description(
    pc: RTCPeerConnection, description: SessionDescription | None
) -> None:
    """Go back to an earlier local description (there is no rollback to do it)."""
    pc._RTCPeerConnection__pendingLocalDescription = description  # type: ignore[attr-defined]


@_touches(RTCPeerConnection, "_RTCPeerConnection__remoteDescription")
def remote_session(pc: RTCPeerConnection) -> SessionDescription:
    """The remote description as aiortc parsed it (pending, else current); the public
    `remoteDescription` is SDP text, which would have to be parsed again."""
    return cast(
        "SessionDescription",
        pc._RTCPeerConnection__remoteDescription(),  # type: ignore[attr-defined]
    )


@_touches(RTCPeerConnection, "_RTCPeerConnection__setSignalingState")
def set_signaling_state(pc: RTCPeerConnection, state: str) -> None:
    """Set the signaling state and emit `signalingstatechange` as aiortc itself does; a
    `rollback` description, the public way, corrupts aiortc 1.16's state."""
    pc._RTCPeerConnection__setSignalingState(state)  # type: ignore[attr-defined]


@_touches(RTCPeerConnection, "_RTCPeerConnection__certificates")
def set_certificates(pc: RTCPeerConnection, certificates: list[RTCCertificate]) -> None:
    """The certificates `pc`'s DTLS transports will use (read when each is created).

    aiortc makes a fresh one per connection and has no RTCConfiguration.certificates."""
    pc._RTCPeerConnection__certificates = certificates  # type: ignore[attr-defined]


# -- RTCRtpTransceiver, RTCRtpSender, RTCRtpReceiver ---------------------------------------------


@_touches(RTCRtpTransceiver, "_RTCRtpTransceiver__mid", "_set_mline_index")
def forget_mid(transceiver: RTCRtpTransceiver) -> None:
    """Clear a transceiver's mid and m-line index: nothing public unassigns them, and a
    rolled-back offer must leave its new transceivers as if never offered."""
    transceiver._RTCRtpTransceiver__mid = None  # type: ignore[attr-defined]
    transceiver._set_mline_index(None)  # type: ignore[arg-type]


@_touches(RTCRtpTransceiver, "_get_mline_index")
def mline_index(transceiver: RTCRtpTransceiver) -> int | None:
    """The m-line position aiortc pairs the transceiver with (no public equivalent)."""
    return transceiver._get_mline_index()


@_touches(RTCRtpTransceiver, "_codecs")
def codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs negotiated last for the transceiver, with their payload types (aiortc has no
    getParameters()); empty if aiortc no longer has them."""
    return list(getattr(transceiver, "_codecs", None) or [])


@_touches(RTCRtpTransceiver, "_headerExtensions")
def header_extensions(transceiver: RTCRtpTransceiver) -> list[RTCRtpHeaderExtensionParameters]:
    """The header extensions (URI, id) the transceiver's sender and receiver will use."""
    return transceiver._headerExtensions


@_touches(RTCRtpTransceiver, "_headerExtensions")
def set_header_extensions(
    transceiver: RTCRtpTransceiver, extensions: list[RTCRtpHeaderExtensionParameters]
) -> None:
    """Replace them: createOffer() resets them to aiortc's own table of ids."""
    transceiver._headerExtensions = extensions


@_touches(RTCRtpTransceiver, "_offerDirection")
def offer_direction(transceiver: RTCRtpTransceiver) -> str | None:
    """The direction the remote's last offer gave this m-line (public `direction` is ours)."""
    return transceiver._offerDirection


@_touches(RTCRtpSender, "_stream_id")
def set_msid_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """The stream id aiortc writes into the sender's `a=msid` (random per sender otherwise):
    Peerix receivers group tracks and find labels by the published stream's id."""
    sender._stream_id = stream_id


@_touches(RTCRtpReceiver, "_RTCRtpReceiver__started")
def receiver_started(receiver: RTCRtpReceiver) -> bool:
    """Whether the receiver started (it copied its codec map then, and never again)."""
    return bool(getattr(receiver, "_RTCRtpReceiver__started", False))


@_touches(RTCRtpReceiver, "_RTCRtpReceiver__codecs")
def receiver_codecs(receiver: RTCRtpReceiver) -> dict[int, RTCRtpCodecParameters]:
    """The receiver's own payload type -> codec map (not a copy)."""
    return cast(
        "dict[int, RTCRtpCodecParameters]",
        receiver._RTCRtpReceiver__codecs,  # type: ignore[attr-defined]
    )


@_touches(RTCDtlsTransport, "_rtp_router")
def route_payload_types(receiver: RTCRtpReceiver, payload_types: list[int]) -> None:
    """Route RTP packets of `payload_types` on the receiver's transport to it, and no others.

    The BUNDLE's one RtpRouter maps payload type -> receivers when a receiver starts and never
    again, and drops a packet whose SSRC's receiver is not listed under its payload type: after
    our offer renumbers the codecs (Chrome's opus=111 becomes 96, which was Chrome's VP8), the
    browser's audio went to the video entry and was dropped (found by tests/interop)."""
    table = receiver.transport._rtp_router.payload_type_table
    for receivers in table.values():
        receivers.discard(receiver)
    for payload_type in payload_types:
        table.setdefault(payload_type, set()).add(receiver)


# -- certificates ---------------------------------------------------------------------------------


@_touches(RTCCertificate, "_create_ssl_context")
def create_ssl_context(certificate: RTCCertificate, srtp_profiles: list[Any]) -> Any:
    """aiortc's own OpenSSL context for `certificate`.

    RTCDtlsTransport calls `certificate._create_ssl_context(profiles)` for every transport;
    certificate.PeerCertificate overrides that method (same name) to build each context once,
    and builds it with this."""
    return RTCCertificate._create_ssl_context(certificate, srtp_profiles)


# -- SCTP and DTLS --------------------------------------------------------------------------------


@_touches(RTCSctpTransport, "_sent_queue")
def sctp_unacknowledged(sctp: RTCSctpTransport) -> int:
    """Data chunks sent and not yet acknowledged by the remote's SCTP stack."""
    return len(sctp._sent_queue)


@_touches(RTCSctpTransport, "_last_sacked_tsn")
def sctp_last_acknowledged(sctp: RTCSctpTransport) -> int:
    """The highest cumulative TSN the remote acknowledged."""
    return sctp._last_sacked_tsn


@_touches(RTCSctpTransport, "_srtt")
def sctp_srtt(sctp: RTCSctpTransport) -> float | None:
    """SCTP's smoothed round-trip time in seconds (RFC 4960 6.3.1), None until an ack was
    timed; getStats() has no RTT for data."""
    srtt = getattr(sctp, "_srtt", None)
    return float(srtt) if srtt is not None else None


@_touches(RTCDtlsTransport, "_get_stats")
def dtls_stats(dtls: RTCDtlsTransport) -> RTCStatsReport | None:
    """The DTLS transport's byte/packet counters (DTLS, SCTP and SRTP alike); getStats()
    reports them only for connections with RTP streams. None if aiortc lost the method."""
    get_stats = getattr(dtls, "_get_stats", None)
    return get_stats() if get_stats is not None else None


# -- aioice, behind an RTCIceTransport ------------------------------------------------------------


@_touches(RTCIceTransport, "_connection")
def ice_connection(ice: RTCIceTransport) -> Connection | None:
    """The aioice Connection behind an aiortc ICE transport (None if aiortc changed)."""
    return getattr(ice, "_connection", None)


@_touches(Connection, "_nominated")
def nominated_pairs(ice: RTCIceTransport) -> dict[int, CandidatePair]:
    """ICE component -> the selected candidate pair (its local_candidate and remote_candidate
    are public aioice); no report names the pair."""
    return dict(getattr(ice_connection(ice), "_nominated", None) or {})


@_touches(Connection, "_protocols")
def stun_protocols(ice: RTCIceTransport) -> list[StunProtocol]:
    """One StunProtocol per local candidate (host sockets, TURN allocations), created while
    gathering, i.e. inside setLocalDescription."""
    return list(getattr(ice_connection(ice), "_protocols", None) or ())


@_touches(StunProtocol, "transport")
def datagram_transport(protocol: StunProtocol) -> Any:
    """The asyncio DatagramTransport (or aioice TurnTransport) that every STUN check, DTLS
    record, SRTP/SRTCP and SCTP packet of the candidate goes out through."""
    return getattr(protocol, "transport", None)


@_touches(StunProtocol, "transport")
def set_datagram_transport(protocol: StunProtocol, transport: Any) -> None:
    """Replace it: `send_stun` and `send_data` read the attribute at each send, so this takes
    effect at once, and putting the original back undoes it."""
    protocol.transport = transport
