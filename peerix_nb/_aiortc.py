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

import asyncio
import base64
import secrets
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aioice.ice import Connection, StunProtocol
from aiortc import (
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSctpTransport,
)
from aiortc.jitterbuffer import JitterBuffer
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


@_touches(RTCRtpReceiver, "_RTCRtpReceiver__jitter_buffer")
def jitter_buffer(receiver: RTCRtpReceiver) -> Any:
    """The object `receiver` reassembles its RTP packets with (see replace_jitter_buffer)."""
    return getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)


@_touches(JitterBuffer, "_origin")
def replace_jitter_buffer(receiver: RTCRtpReceiver, buffer: Any) -> bool:
    """Make `receiver` reassemble its RTP packets with `buffer` (an object with aiortc's
    `JitterBuffer.add(packet) -> (pli_flag, frame or None)`); False if it already took a packet
    (then it keeps its own: nothing it holds is lost).

    aiortc 1.16's RTCRtpReceiver makes its JitterBuffer in __init__, takes no option, and calls
    only its `add()` for each packet (see audio_jitter.py for why audio needs another)."""
    current = jitter_buffer(receiver)
    if isinstance(current, JitterBuffer) and current._origin is not None:
        return False
    receiver._RTCRtpReceiver__jitter_buffer = buffer  # type: ignore[attr-defined]
    return True


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


# -- connection setup: what aiortc and aioice would redo for every connection ---------------------

#: (function, global name) for each aiortc/aioice function `_with_globals` runs with that module
#: global replaced; tests/test_aiortc_private.py checks that each function still reads it.
REBOUND: list[tuple[Callable[..., Any], str]] = []


class _Namespace(dict[str, Any]):
    """The globals of a `_with_globals` copy: its replaced names, then its module's own, read
    live (so a later change to the module shows), and nothing copied: a connection keeps a
    dict of one or two names, not of its module's ~70."""

    def __init__(self, replaced: dict[str, Any], module: dict[str, Any]) -> None:
        super().__init__(replaced)
        self.module = module

    def __missing__(self, name: str) -> Any:
        return self.module[name]  # KeyError: then Python looks in the builtins


def _with_globals(function: F, **replaced: Any) -> F:
    """`function`'s own code, reading `replaced` instead of its module's globals of those names.

    The copy reads its globals from a `_Namespace`, the module from behind it: the module, and
    everyone else calling the function, keep the originals. Patching the module attribute
    instead would be seen by every thread's loop at once (and by raw aiortc in the same
    process)."""
    module = function.__globals__
    namespace = _Namespace({"__builtins__": module["__builtins__"], **replaced}, module)
    copy = types.FunctionType(
        function.__code__,
        namespace,
        function.__name__,
        function.__defaults__,
        function.__closure__,  # `super()` in __init__ reads the class from its closure cell
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    return cast("F", copy)


class _GivenCertificate:
    """Stands for aiortc's RTCCertificate class in RTCPeerConnection.__init__: its
    generateCertificate() hands out one existing certificate instead of making a new one."""

    def __init__(self, certificate: RTCCertificate) -> None:
        self.certificate = certificate

    def generateCertificate(self) -> RTCCertificate:  # aiortc's name
        return self.certificate


REBOUND.append((RTCPeerConnection.__init__, "RTCCertificate"))
#: aiortc's private method that makes each ICE + DTLS transport (name-mangled).
_CREATE_DTLS_TRANSPORT: Callable[..., Any] = (
    RTCPeerConnection._RTCPeerConnection__createDtlsTransport  # type: ignore[attr-defined]
)


def peer_connection(configuration: Any, certificate: RTCCertificate) -> RTCPeerConnection:
    """A new RTCPeerConnection whose DTLS transports use `certificate`; it never makes its own.

    aiortc 1.16's RTCPeerConnection.__init__ begins with `self.__certificates =
    [RTCCertificate.generateCertificate()]` (a new EC key and self-signed certificate, ~0.15 ms
    here, most of the constructor) and has no RTCConfiguration.certificates to pass one in: its
    own __init__ runs here with `RTCCertificate` standing for `certificate`."""
    init = _with_globals(RTCPeerConnection.__init__, RTCCertificate=_GivenCertificate(certificate))
    pc = RTCPeerConnection.__new__(RTCPeerConnection)
    init(pc, configuration)
    _gather_with_quick_credentials(pc)
    return pc


def ice_credentials() -> tuple[str, str]:
    """A fresh ICE username fragment (4 ice-chars) and password (22), from one read of the
    OS's random source: the base64 alphabet is exactly RFC 8839's ice-char, so 3 random bytes
    make 4 characters (24 bits, as aioice's 4 of 62; the password 132 bits, aioice's 131)."""
    text = base64.b64encode(secrets.token_bytes(21)).decode("ascii")
    return text[:4], text[4:26]


def _quick_gatherer(**options: Any) -> RTCIceGatherer:
    """Stands for RTCIceGatherer in RTCPeerConnection.__createDtlsTransport: the same gatherer,
    with credentials from `ice_credentials` when aiortc passes none (its first transport)."""
    if options.get("local_username") is None and options.get("local_password") is None:
        options["local_username"], options["local_password"] = ice_credentials()
    return RTCIceGatherer(**options)


REBOUND.append((_CREATE_DTLS_TRANSPORT, "RTCIceGatherer"))


@_touches(RTCPeerConnection, "_RTCPeerConnection__createDtlsTransport")
def _gather_with_quick_credentials(pc: RTCPeerConnection) -> None:
    """Give `pc`'s ICE transports credentials from `ice_credentials`.

    aioice 0.13 makes each connection's ufrag and password one character at a time with
    `secrets.choice`, one read of the OS's random source per character: 26 system calls,
    ~0.1-0.2 ms here, as long as the certificate aiortc made. aiortc lets a gatherer take given
    credentials (its bundled transports do), but its first one gets none: this connection's
    own __createDtlsTransport becomes aiortc's code with `RTCIceGatherer` standing for
    `_quick_gatherer` (an attribute of the instance; the class is untouched)."""
    create = _with_globals(_CREATE_DTLS_TRANSPORT, RTCIceGatherer=_quick_gatherer)
    pc._RTCPeerConnection__createDtlsTransport = types.MethodType(create, pc)  # type: ignore[attr-defined]


REBOUND.append((Connection.gather_candidates, "get_host_addresses"))


def use_host_addresses(ice: RTCIceTransport, addresses: Callable[..., list[str]]) -> None:
    """Make the ICE gathering behind `ice` take its host addresses from
    `addresses(use_ipv4=..., use_ipv6=...)` instead of listing the network interfaces.

    aioice 0.13's Connection.gather_candidates calls its module's `get_host_addresses`, which
    walks every network interface (ifaddr, ~0.3 ms here) for every connection, and takes no list
    from its caller: this one Connection's gather_candidates becomes aioice's own code with
    `get_host_addresses` standing for `addresses` (an attribute of the instance; call it before
    setLocalDescription, which gathers)."""
    connection = ice_connection(ice)
    if connection is None:
        return
    gather = _with_globals(Connection.gather_candidates, get_host_addresses=addresses)
    connection.gather_candidates = types.MethodType(gather, connection)  # type: ignore[method-assign]


class _CheckListOutcome(asyncio.Queue[int]):
    """aioice's queue of check-list outcomes (completed, failed) that also calls `wake` when
    one arrives."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self.wake = wake

    def put_nowait(self, item: int) -> None:
        super().put_nowait(item)
        self.wake()


class _ChecksPacing:
    """Stands for the asyncio module in aioice's Connection.connect: its `sleep`, the 20 ms
    pacing between two checks, ends at once when the check list has an outcome; everything
    else is asyncio's."""

    def __init__(self) -> None:
        self.outcome = False
        self.waiter: asyncio.Future[None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    def wake(self) -> None:
        self.outcome = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        if self.outcome:
            return result
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        timer = loop.call_later(delay, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None
        return result


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


REBOUND.append((Connection.connect, "asyncio"))


@_touches(Connection, "_check_list_state")
def end_checks_when_done(ice: RTCIceTransport) -> None:
    """Make the ICE connect behind `ice` return as soon as its check list has an outcome.

    aioice 0.13's Connection.connect starts one check every 20 ms (`await asyncio.sleep(0.02)`,
    RFC 8445's Ta pacing) and looks whether the check list is done only when that sleep ends:
    a pair nominated 1 ms after the first check still waits out the 20 ms, and only then does
    aiortc start DTLS, on both sides (`bench.connect`: 20 of a pair's ~30 ms). Here this one
    Connection's connect is aioice's own code whose `asyncio.sleep` ends early once the check
    list's outcome is queued (its `_check_list_state`, replaced by a queue that says so): checks
    are still started 20 ms apart, none is started after the outcome, and the outcome is the
    same. Call it before setLocalDescription/setRemoteDescription can start the connect."""
    connection = ice_connection(ice)
    if connection is None:
        return
    pacing = _ChecksPacing()
    connection._check_list_state = _CheckListOutcome(pacing.wake)
    connect = _with_globals(Connection.connect, asyncio=pacing)
    connection.connect = types.MethodType(connect, connection)  # type: ignore[method-assign]


@_touches(RTCPeerConnection, "_RTCPeerConnection__remoteDescription")
def remote_session_or_none(pc: RTCPeerConnection) -> SessionDescription | None:
    """The remote description as aiortc parsed it, or None before one is set.

    `pc.remoteDescription` writes the whole parsed description out as SDP text on every read
    (~16 us for a data-only one, more with media), and parsing that text again costs ~70 us:
    a check for None, a ufrag or the msids need neither."""
    return cast(
        "SessionDescription | None",
        pc._RTCPeerConnection__remoteDescription(),  # type: ignore[attr-defined]
    )


# -- one encoder per published track (transceivers.py, media/encoding.py) -------------------------


@_touches(RTCRtpSender, "_send_keyframe")
def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` as well whenever the sender's remote asks for a keyframe (PLI or FIR).

    aiortc's sender answers both with `self._send_keyframe()`, which only sets a flag that it
    reads when it encodes a frame itself: a sender whose track gives it encoded packets (a
    shared encoder) never reads it, and nothing public reports the request. The method is looked
    up on the instance at each request, so wrapping it there passes the request on."""
    original = sender._send_keyframe

    def requested() -> None:
        original()
        callback()

    sender._send_keyframe = requested  # type: ignore[method-assign]


@_touches(RTCRtpSender, "_RTCRtpSender__encoder")
def sender_target_bitrate(sender: RTCRtpSender) -> int | None:
    """The bitrate (bit/s) the sender's remote asks for: its last REMB estimate clamped to the
    codec's range by aiortc (the codec's default until one came); None before the first frame.

    aiortc writes each REMB into the `target_bitrate` of the sender's own encoder (made when
    the sender reads its first frame), also when that encoder only packetises encoded packets;
    nothing public reads it back."""
    encoder = getattr(sender, "_RTCRtpSender__encoder", None)
    bitrate = getattr(encoder, "target_bitrate", None)
    return bitrate if isinstance(bitrate, int) else None


@_touches(RTCRtpReceiver, "_send_rtcp_pli")
async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Ask the remote sender of `receiver`'s stream for a keyframe (RTCP PLI), as aiortc's
    receiver does by itself after a decode error; aiortc has no public call for it. False if no
    stream has arrived yet (its SSRC is unknown)."""
    sources = receiver.getSynchronizationSources()
    if not sources:
        return False
    await receiver._send_rtcp_pli(sources[0].source)
    return True


@_touches(RTCRtpSender, "_enabled")
def sender_enabled(sender: RTCRtpSender) -> bool:
    """Whether the sender sends what it reads now.

    aiortc's sender keeps reading its track while its transceiver's negotiated direction does
    not send (`_enabled`, set from the current direction) and drops what it reads: a keyframe
    of a shared encoder dropped there (a republish on an idle m-line, before the offer that
    makes it send is answered) left the remote with delta frames it cannot decode."""
    return bool(getattr(sender, "_enabled", True))
