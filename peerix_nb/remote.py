"""RemotePeer: one RTCPeerConnection to one remote peer.

Negotiation and glare, the control channel, application data channels, outgoing and incoming
media, the connection state machine and its timeouts all live here (docs/PROTOCOL.md). The Peer owns
one RemotePeer per remote and feeds it the driver messages addressed to it.

Every step that touches the session descriptions runs in one queue per remote (the JavaScript
"operations chain"), so an offer received while we are making ours is seen only after ours is
set: the perfect-negotiation rules then reduce to "impolite ignores, polite rolls back".
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription, candidate_from_sdp
from av import AudioFrame, VideoFrame

from . import certificate, liveness, mlines, receivers, rollback, sdp
from .channels import ChannelOptions, check_message
from .errors import ErrorCode, PeerixError
from .events import Event, TaskOwner
from .signaling import ANSWER, CANDIDATE, OFFER, check_candidate

if TYPE_CHECKING:
    from .media import MediaStream, Tap
    from .peer import Peer

logger = logging.getLogger("peerix_nb")

#: Connection states, in the order a healthy connection goes through them.
STATES = ("new", "connecting", "connected", "disconnected", "failed", "closed")
#: Control-channel messages larger than this are refused (an SDP is a few kB).
MAX_CONTROL_MESSAGE = 1 << 20
#: Candidates held while waiting for the remote description they belong to.
MAX_QUEUED_CANDIDATES = 100
#: Data channels per remote; more would only come from a runaway or hostile remote.
MAX_CHANNELS = 256
# Seconds leave() waits for aiortc's RTCPeerConnection.close(). It ended in every one of ~6,100
# closes measured (docs/RELIABILITY.md §6), but nothing in aiortc bounds it.
CLOSE_TIMEOUT = 10.0
#: Seconds a renegotiation offer waits for its answer before it is withdrawn and made again.
#: A browser Peerix peer that is busy with its own negotiation ignores our offer without a word
#: (perfect negotiation, docs/PROTOCOL.md): without this we would wait in have-local-offer forever.
OFFER_TIMEOUT = 3.0
#: Seconds between answering after a rollback and offering our own changes again, so that the
#: re-offer does not reach the remote while it is still applying our answer (it would take the
#: offer for a collision and ignore it).
REOFFER_DELAY = 0.2
# Closes that outlived CLOSE_TIMEOUT: referenced until they end (a bare task may be collected).
_slow_closes: set[asyncio.Task[None]] = set()

_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)
_ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


def check_connection_timeout(value: Any) -> float:
    """`connection_timeout` in seconds (0 = none), checked for Peer and BrowserPeer alike."""
    if not isinstance(value, int | float) or value < 0:
        raise ValueError(f"connection_timeout must be a number of seconds >= 0, got {value!r}")
    return float(value)


def make_configuration(ice_servers: Any, ice_transport_policy: str) -> RTCConfiguration:
    """RTCConfiguration for every connection of a peer; never aiortc's default public STUN.

    `ice_servers` is None (no servers), or a list of Peerix-style dicts
    `{"urls": str | [str], "username": ..., "credential": ...}`, aiortc `RTCIceServer`s or URL
    strings. With `iceServers=None` aiortc silently uses a Google STUN server, which stalls
    gathering for 5 s on a machine without internet access, so None becomes `[]`.
    """
    servers: list[RTCIceServer] = []
    entries = [] if ice_servers is None else ice_servers
    if isinstance(entries, (dict, str, RTCIceServer)):
        entries = [entries]
    if not isinstance(entries, (list, tuple)):
        raise TypeError(f"ice_servers must be a list of servers, got {type(ice_servers).__name__}")
    for entry in entries:
        if isinstance(entry, RTCIceServer):
            server = entry
        elif isinstance(entry, str):
            server = RTCIceServer(urls=entry)
        elif isinstance(entry, dict):
            unknown = set(entry) - {"urls", "username", "credential", "credentialType"}
            if "urls" not in entry or unknown:
                raise ValueError(
                    f"ice server {entry!r} needs 'urls' (and optionally 'username', 'credential')"
                )
            server = RTCIceServer(
                urls=entry["urls"],
                username=entry.get("username"),
                credential=entry.get("credential"),
            )
        else:
            raise TypeError(
                f"ice server must be a dict, a URL string or RTCIceServer, got {entry!r}"
            )
        urls = [server.urls] if isinstance(server.urls, str) else list(server.urls)
        if not urls:
            raise ValueError(f"ice server {entry!r} has no URLs")
        for url in urls:
            if not isinstance(url, str) or not url.startswith(_ICE_SCHEMES):
                raise ValueError(
                    f"ice server URL {url!r} must start with stun:, stuns:, turn: or turns:"
                )
            if url.startswith(("turn:", "turns:")) and (
                server.username is None or server.credential is None
            ):
                raise ValueError(f"TURN server {url!r} needs 'username' and 'credential'")
        servers.append(server)
    policies = {"all": RTCIceTransportPolicy.ALL, "relay": RTCIceTransportPolicy.RELAY}
    if ice_transport_policy not in policies:
        raise ValueError(
            f"ice_transport_policy must be 'all' or 'relay', got {ice_transport_policy!r}"
        )
    return RTCConfiguration(
        iceServers=servers,
        iceTransportPolicy=policies[ice_transport_policy],
        # BALANCED gathers a new ICE transport per media kind on renegotiation (AIORTC-NOTES).
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )


class SenderTrack(MediaStreamTrack):
    """The track an RTCRtpSender holds for its whole life; its source can be swapped or removed.

    Why: aiortc's sender loop ends for good when its track's recv() raises, and stopping a relay
    proxy that the loop is waiting on leaves that wait hanging. So each sender reads from this
    wrapper, which switches between relay subscriptions of the published tracks (or idles with no
    source) without ever ending while the connection lives.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None
        self._wakeup: asyncio.Future[None] | None = None
        # Time stamps stay increasing across sources: a republished track starts again at
        # pts 0, and libvpx refuses a frame older than the last one ("Invalid data found when
        # processing input"), which ends the sender for good.
        self._last: tuple[int, Fraction] | None = None  # pts and time base of the last frame
        self._offset = 0  # added to the current source's pts
        self._fresh = False  # the next frame is the current source's first

    def set_source(self, source: MediaStreamTrack | None) -> None:
        old, self._source = self._source, source
        if source is not old:
            self._fresh = True
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        if old is not None and old is not source:
            old.stop()

    async def recv(self) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            source = self._source
            self._wakeup = loop.create_future()
            if source is None:
                await self._wakeup
                continue
            pending = asyncio.ensure_future(source.recv())
            try:
                await asyncio.wait((pending, self._wakeup), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                pending.cancel()
                raise
            if not pending.done():
                pending.cancel()  # the source was swapped while we waited
                continue
            try:
                return self._stamped(pending.result())
            except MediaStreamError:
                if source is self._source:  # the published track ended: idle, keep the sender
                    self._source = None
                    source.stop()
            finally:
                # Idling with these set would keep the unpublished source alive: the finished
                # read holds its MediaStreamError, whose traceback holds the old subscriber,
                # its tap, the tap's last frame and the source track.
                del pending, source

    def _stamped(self, frame: Any) -> Any:
        """`frame`, or a copy of it placed after the last frame sent (see `_last`)."""
        if not isinstance(frame, VideoFrame | AudioFrame) or frame.pts is None:
            return frame
        base = frame.time_base
        if self._fresh:
            self._fresh = False
            self._offset = 0
            if self._last is not None and base:
                last = int(self._last[0] * self._last[1] / base)
                step = (
                    frame.samples if isinstance(frame, AudioFrame) else int(Fraction(1, 30) / base)
                )
                if frame.pts <= last:
                    self._offset = last + max(step, 1) - frame.pts
        if self._offset:
            # Frames are shared by every sender of a track (media.Tap): re-stamp a copy.
            if isinstance(frame, VideoFrame):
                copy = VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
            else:
                copy = AudioFrame.from_ndarray(
                    frame.to_ndarray(), format=frame.format.name, layout=frame.layout.name
                )
                copy.sample_rate = frame.sample_rate
            copy.pts, copy.time_base = frame.pts + self._offset, base
            frame = copy
        self._last = (frame.pts, base)
        return frame

    def stop(self) -> None:
        super().stop()
        self.set_source(None)


@dataclass(slots=True)
class _Outgoing:
    """A transceiver we send on, with the wrapper track its sender holds."""

    transceiver: RTCRtpTransceiver
    track: SenderTrack
    source: MediaStreamTrack | None = None
    stream_id: str | None = None


@dataclass(slots=True)
class _Incoming:
    """One life of a remote track on one transceiver (the mid keying it in `_incoming`)."""

    label: str
    track: MediaStreamTrack  # a media.TapTrack subscribed to the receiver's tap
    stream: MediaStream  # its id is the msid stream id

    @property
    def stream_id(self) -> str:
        return self.stream.id


def _direction(send: bool, recv: bool) -> str:
    return ("inactive", "recvonly", "sendonly", "sendrecv")[send * 2 + recv]


class RemotePeer:
    """One remote peer of a room, and the RTCPeerConnection to it.

    Attributes: `id`, `metadata`, `room`, `state` (see STATES), `polite`, `streams` (label ->
    remote MediaStream), `channels` (label -> RTCDataChannel), `connection` (the
    RTCPeerConnection; it is replaced if the first offers collide).
    """

    def __init__(self, peer: Peer, id: str, metadata: Any, room: str) -> None:
        self.id = id
        self.metadata = metadata
        self.room = room
        self.polite = peer.id > id  # docs/PROTOCOL.md: plain string comparison
        self.state = "new"
        self.streams: dict[str, MediaStream] = {}
        self.channels: dict[str, RTCDataChannel] = {}
        self.created_at = time.monotonic()
        self._peer = peer
        self._tasks = TaskOwner(self._task_failed)
        self._queue: asyncio.Queue[tuple[Callable[[], Awaitable[None]], ErrorCode]] = (
            asyncio.Queue()
        )
        self._negotiation_queued = False
        self._needs_negotiation = False
        self._pending_candidates: list[dict[str, Any]] = []
        self._sync_waiters: set[asyncio.Future[None]] = set()  # sync_streams() not yet run
        self._labels: dict[str, str] = {}  # remote stream id -> label, from the remote's last offer
        self._channel_options: dict[str, ChannelOptions] = {}  # opened for this remote only
        self._outgoing: dict[RTCRtpTransceiver, _Outgoing] = {}
        self._incoming: dict[str, _Incoming] = {}  # mid -> the remote track it carries now
        self._taps: dict[str, Tap] = {}  # mid -> the tap draining its receiver
        self._control_open = False
        self._offer_started: tuple[float, str] | None = None  # our pending offer: when, which path
        self._before_offer: Any = None  # what rollback returns to (rollback.snapshot)
        self._offer_timer: asyncio.TimerHandle | None = None  # OFFER_TIMEOUT of our pending offer
        self._offer_seq = 0  # counts our offers, so a late timer knows its offer is gone
        self._reoffer_timer: asyncio.TimerHandle | None = None
        self._rolled_back = False  # the current exchange answered after a rollback
        # What browsers hold us to (sdp.py): header-extension ids of the BUNDLE group, and the
        # m-lines the remote rejected in its last description.
        self._extensions = sdp.ExtensionIds()
        self._rejected: set[str] = set()
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._network = None  # NetworkConditions of this remote only (network.py); None: the peer's
        self.connection: RTCPeerConnection = self._create_connection()
        self._tasks.spawn(self._run_queue(), name=f"remote:{id}:queue")
        self._emit("connection:new", state="new")
        self._arm_timeout()

    def __repr__(self) -> str:
        return f"<RemotePeer {self.id} state={self.state} polite={self.polite}>"

    # -- public API -------------------------------------------------------------------------
    async def open(
        self,
        label: str = "default",
        *,
        ordered: bool = True,
        max_retransmits: int | None = None,
        max_packet_life_time: int | None = None,
        protocol: str = "",
    ) -> None:
        """Open a data channel to this remote only (the impolite side creates it, docs/PROTOCOL.md)."""
        options = ChannelOptions.make(
            label, ordered, max_retransmits, max_packet_life_time, protocol
        )
        self._peer._home.call(self._open, options)

    def _open(self, options: ChannelOptions) -> None:
        self._channel_options[options.label] = options
        self.open_channel(options)

    async def close(self, label: str) -> None:
        """Close this remote's data channel `label`."""
        self._peer._home.call(self._close, label)

    def _close(self, label: str) -> None:
        self._channel_options.pop(label, None)
        channel = self.channels.get(label)
        if channel is not None:
            channel.close()

    def send(self, message: str | bytes, label: str | None = None) -> int:
        """Send on channel `label` (which must be open), or on every open channel; returns the count."""
        message = check_message(message)
        return self._peer._home.call(self._send, message, label)

    def _send(self, message: str | bytes, label: str | None) -> int:
        if label is not None:
            channel = self.channels.get(label)
            if channel is None or channel.readyState != "open":
                raise PeerixError(
                    "PEER_DATACHANNEL_ERROR", f"channel {label!r} to remote {self.id} is not open"
                )
            self._send_on(channel, message)
            return 1
        sent = 0
        for channel in list(self.channels.values()):
            if channel.readyState == "open":
                self._send_on(channel, message)
                sent += 1
        return sent

    @property
    def network(self) -> Any:
        """NetworkConditions for what we send to this remote only; None: follow `peer.network`."""
        return self._network

    @network.setter
    def network(self, conditions: Any) -> None:
        from .network import check

        self._peer._home.call(self._set_network, check(conditions, "RemotePeer.network"))

    def _set_network(self, conditions: Any) -> None:
        from . import network

        self._network = conditions
        self._peer._emit(network.change_event(conditions, self))
        network.apply(self.connection, network.effective(self))

    # -- events -----------------------------------------------------------------------------
    def _emit(self, name: str, **fields: Any) -> None:
        self._peer._emit(Event(name=name, remote=self, **fields))

    def _report(self, error: BaseException, code: ErrorCode) -> None:
        self._peer._report(error, code, remote=self)

    def _task_failed(self, error: BaseException, name: str) -> None:
        self._report(error, "UNKNOWN_ERROR")

    def _set_state(self, state: str, detail: str | None = None) -> None:
        if self.state == state or self.state == "closed":
            return
        self.state = state
        self._emit(f"connection:{state}", state=state, detail=detail)

    # -- the connection ---------------------------------------------------------------------
    def _create_connection(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(self._peer._configuration)
        certificate.use_peer_certificate(pc, self._peer)
        from . import network  # emulated network conditions, if any (does nothing otherwise)

        network.apply(pc, network.effective(self))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc is self.connection:
                self._on_connection_state(pc.connectionState)

        @pc.on("icegatheringstatechange")
        def on_gathering() -> None:
            if pc is self.connection:
                state = pc.iceGatheringState
                count, summary = _local_candidates(pc) if state == "complete" else (None, None)
                self._emit("ice:gathering", state=state, size=count, detail=summary)
                turn = self._peer._turn_urls
                if state == "complete" and turn and "relay" not in (summary or ""):
                    # aioice drops a failed TURN allocation without a word (wrong credential,
                    # server unreachable): this is the only place it can be noticed.
                    self._report(
                        PeerixError(
                            "PEER_ICECANDIDATE_ERROR",
                            f"no relay candidate from {', '.join(turn)}: the TURN server "
                            "refused the credential or did not answer",
                        ),
                        "PEER_ICECANDIDATE_ERROR",
                    )

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if pc is self.connection:
                self._register_channel(channel)

        # The control channel: negotiated on both sides before the first offer (docs/PROTOCOL.md).
        control = pc.createDataChannel("", negotiated=True, id=0)
        control.on("open", lambda: self._on_control_open(control))
        control.on("close", lambda: self._on_control_close(control))
        control.on("message", lambda data: self._on_control_message(control, data))
        self._control = control

        # With max-bundle every m-line rides the transports the control channel created first;
        # their state changes are the ICE and DTLS phases of the timing breakdown.
        dtls = pc.sctp.transport
        ice = dtls.transport

        @ice.on("statechange")
        def on_ice_state() -> None:
            if pc is self.connection:
                self._emit("ice:state", state=ice.state)

        @dtls.on("statechange")
        def on_dtls_state() -> None:
            if pc is self.connection:
                self._emit("dtls:state", state=dtls.state)

        return pc

    def _on_connection_state(self, state: str) -> None:
        if state == "connecting" and self.state == "new":
            self._set_state("connecting")
        elif state == "connected":
            self._cancel_timeout()
            if self.state in ("new", "connecting"):
                self._set_state("connected")
        elif state == "failed":
            self._tasks.spawn(self.fail("ICE or DTLS failed"), name=f"remote:{self.id}:fail")
        elif state == "closed" and not self._closing:
            self._tasks.spawn(self.shutdown("connection closed"), name=f"remote:{self.id}:close")

    def _arm_timeout(self) -> None:
        self._cancel_timeout()
        timeout = self._peer.connection_timeout
        if timeout and timeout > 0:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(timeout, self._on_timeout)

    def _cancel_timeout(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        if self.state in ("new", "connecting"):
            reason = f"not connected within {self._peer.connection_timeout} s"
        elif self.state == "disconnected":
            reason = f"disconnected for {self._peer.connection_timeout} s"
        else:
            return
        self._tasks.spawn(self.fail(reason), name=f"remote:{self.id}:fail")

    async def fail(self, reason: str) -> None:
        """Mark the connection failed and close it; the Peer then re-JOINs this remote."""
        if self.state in ("failed", "closed"):
            return
        self._set_state("failed", detail=reason)
        await self.shutdown(reason, failed=True)

    async def shutdown(self, reason: str = "", *, failed: bool = False) -> None:
        """Close everything of this remote (idempotent) and tell the Peer."""
        if self._closing:
            return
        self._closing = True
        self._cancel_timeout()
        self._cancel_offer_timer()
        if self._reoffer_timer is not None:
            self._reoffer_timer.cancel()
        for incoming in list(self._incoming.values()):
            self._end_incoming(incoming)
        self._incoming.clear()
        for tap in self._taps.values():
            await tap.aclose()
        self._taps.clear()
        for out in self._outgoing.values():
            out.track.set_source(None)
        current = asyncio.current_task()
        await self._tasks.cancel_all(keep=current)
        # The queue is gone: publish()/unpublish() waiting on it are done (nobody to send to).
        for waiter in self._sync_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._sync_waiters.clear()
        await self._close_connection(self.connection)
        self.channels.clear()
        self._set_state("closed", detail=reason or None)
        self._peer._remote_closed(self, failed=failed)

    async def _close_connection(self, pc: RTCPeerConnection) -> None:
        """Close `pc`, waiting at most CLOSE_TIMEOUT: leave() must not hang on aiortc.

        A close that takes longer is left to finish on its own (not cancelled: that could
        leave aiortc's transports half-stopped) and reported as an `error` event.
        """
        closing = asyncio.ensure_future(pc.close())
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT)
        if not done:
            _slow_closes.add(closing)
            closing.add_done_callback(_slow_closes.discard)
            self._report(
                PeerixError(
                    "UNKNOWN_ERROR",
                    f"closing the connection to {self.id} took over {CLOSE_TIMEOUT:g} s;"
                    " left to finish in the background",
                ),
                "UNKNOWN_ERROR",
            )
        elif closing.exception() is not None:  # closing must finish whatever aiortc thinks
            logger.debug("closing connection to %s: %r", self.id, closing.exception())

    async def _replace_connection(self) -> None:
        """Start over with a fresh RTCPeerConnection (only before anything was exchanged)."""
        old = self.connection
        self.connection = self._create_connection()
        self._pending_candidates.clear()
        self._extensions = sdp.ExtensionIds()
        self._rejected = set()
        await self._close_connection(old)
        self._emit("signal:restart", detail="first offers collided: fresh connection")

    # -- the operations queue ---------------------------------------------------------------
    def _enqueue(self, op: Callable[[], Awaitable[None]], code: ErrorCode) -> None:
        if not self._closing:
            self._queue.put_nowait((op, code))

    async def _run_queue(self) -> None:
        while True:
            op, code = await self._queue.get()
            if self._closing:
                continue
            try:
                await op()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._report(error, code)
                if code == "PEER_NEGOTIATION_ERROR" and self.connection.remoteDescription is None:
                    # The first exchange cannot be applied (e.g. an SDP aiortc rejects): this
                    # connection can never work, and retrying would get the same description.
                    self._tasks.spawn(
                        self.shutdown(f"first negotiation failed: {error}"),
                        name=f"remote:{self.id}:close",
                    )

    def negotiate(self) -> None:
        """Ask for an offer to the remote (coalesced: one queued negotiation at a time)."""
        if not self._negotiation_queued:
            self._negotiation_queued = True
            self._enqueue(self._op_negotiate, "PEER_NEGOTIATION_ERROR")

    def start(self) -> None:
        """Make the first offer (we were in the room first and saw the remote's JOIN)."""
        self._enqueue(self._op_first_offer, "PEER_NEGOTIATION_ERROR")

    def receive(
        self, kind: int, payload: Any, via: str, labels: dict[str, str] | None = None
    ) -> None:
        """A description or candidate from the remote, via the driver or the control channel."""
        if kind == OFFER:
            self._enqueue(lambda: self._op_offer(payload, labels, via), "PEER_NEGOTIATION_ERROR")
        elif kind == ANSWER:
            self._enqueue(lambda: self._op_answer(payload), "PEER_NEGOTIATION_ERROR")
        elif kind == CANDIDATE:
            self._enqueue(lambda: self._op_candidate(payload), "PEER_ICECANDIDATE_ERROR")

    async def _op_first_offer(self) -> None:
        pc = self.connection
        # Skip if the remote's offer got here first: its exchange already set up the connection.
        if (
            pc.signalingState == "stable"
            and pc.remoteDescription is None
            and pc.localDescription is None
        ):
            await self._make_offer()

    async def _op_negotiate(self) -> None:
        self._negotiation_queued = False
        pc = self.connection
        if pc.signalingState != "stable" or not self._control_open:
            # Later: when the current exchange completes, or when the control channel opens
            # (all renegotiation rides the control channel).
            self._needs_negotiation = True
            return
        await self._make_offer()

    async def _make_offer(self) -> None:
        self._needs_negotiation = False
        pc = self.connection
        via = "control" if self._control_open else "driver"
        self._offer_started = (time.perf_counter(), via)
        self._before_offer = rollback.snapshot(pc)
        offer = await pc.createOffer()
        text = self._as_browsers_want(offer.sdp)
        mlines.use_extension_ids(pc, sdp.extension_ids(text))
        await pc.setLocalDescription(RTCSessionDescription(sdp=text, type="offer"))
        self._send_description(pc.localDescription, via=via)
        if via == "control":
            self._arm_offer_timer()

    def _as_browsers_want(self, text: str) -> str:
        """Our description with the group's header-extension ids and the remote's rejected
        m-lines (sdp.py: what browsers refuse otherwise)."""
        return sdp.reject(self._extensions.apply(text), self._rejected)

    def _arm_offer_timer(self) -> None:
        self._cancel_offer_timer()
        self._offer_seq += 1
        seq = self._offer_seq
        loop = asyncio.get_running_loop()
        self._offer_timer = loop.call_later(OFFER_TIMEOUT, self._on_offer_timeout, seq)

    def _cancel_offer_timer(self) -> None:
        if self._offer_timer is not None:
            self._offer_timer.cancel()
            self._offer_timer = None

    def _on_offer_timeout(self, seq: int) -> None:
        self._offer_timer = None
        if seq == self._offer_seq:
            self._enqueue(lambda: self._op_withdraw(seq), "PEER_NEGOTIATION_ERROR")

    async def _op_withdraw(self, seq: int) -> None:
        """Our offer got no answer: take it back (rollback.py) and make it again."""
        pc = self.connection
        if seq != self._offer_seq or not rollback.can_roll_back(pc):
            return
        rollback.restore(pc, rollback.roll_back_local_offer(pc, self._before_offer))
        self._emit(
            "signal:withdraw",
            kind="offer",
            via="control",
            detail=f"no answer within {OFFER_TIMEOUT:g} s: offering again",
        )
        await self._make_offer()

    async def _op_offer(
        self, description: dict[str, str], labels: dict[str, str] | None, via: str
    ) -> None:
        started = time.perf_counter()
        pc = self.connection
        parked: list[RTCRtpTransceiver] = []
        # Its extension ids bind the group even if we ignore it: a browser that rolls this
        # offer back still refuses ids that clash with it.
        self._extensions.learn(description["sdp"])
        if pc.signalingState != "stable":
            if not self.polite:
                self._emit(
                    "signal:ignore",
                    kind="offer",
                    via=via,
                    detail="glare: the impolite side keeps its offer",
                )
                return
            if pc.remoteDescription is None:
                # Both sent the first offer: ours carried nothing else, so start over.
                await self._replace_connection()
                pc = self.connection
            else:
                parked = rollback.roll_back_local_offer(pc, self._before_offer)
                self._cancel_offer_timer()
                self._needs_negotiation = True  # offer our rolled-back changes again afterwards
                self._rolled_back = True
                self._emit(
                    "signal:rollback",
                    kind="offer",
                    via=via,
                    detail=f"{len(parked)} transceivers parked",
                )
        if labels is not None:
            self._labels = labels
        for transceiver in mlines.retire_recycled(pc, description["sdp"]):
            await self._retire(transceiver)
        self._rejected = sdp.rejected_mids(description["sdp"])
        try:
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=description["sdp"], type="offer")
            )
            self._accept_incoming_media(pc)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(
                RTCSessionDescription(sdp=self._as_browsers_want(answer.sdp), type="answer")
            )
        finally:
            rollback.restore(pc, parked)
        self._send_description(pc.localDescription, via=via)
        self._negotiated("remote", started, via)
        await self._after_exchange()

    async def _op_answer(self, description: dict[str, str]) -> None:
        pc = self.connection
        if pc.signalingState != "have-local-offer":
            self._emit(
                "signal:ignore", kind="answer", detail=f"no offer pending ({pc.signalingState})"
            )
            return
        offered = pc.localDescription.sdp if pc.localDescription is not None else ""
        if sdp.mids(description["sdp"]) != sdp.mids(offered):
            # The answer to an offer we withdrew (OFFER_TIMEOUT), arriving late: it does not
            # fit the offer now pending, whose own answer is on its way.
            self._emit("signal:ignore", kind="answer", detail="answer to a withdrawn offer")
            return
        self._cancel_offer_timer()
        self._extensions.learn(description["sdp"])
        self._rejected = sdp.rejected_mids(description["sdp"])
        await pc.setRemoteDescription(RTCSessionDescription(sdp=description["sdp"], type="answer"))
        if self._offer_started is not None:
            started, via = self._offer_started
            self._offer_started = None
            self._negotiated("local", started, via)
        await self._after_exchange()

    def _negotiated(self, offerer: str, started: float, via: str) -> None:
        """A log row per completed offer/answer exchange: who offered, which path, how long."""
        took = (time.perf_counter() - started) * 1000
        self._emit("negotiation:done", kind=offerer, via=via, detail=f"{took:.1f} ms")

    async def _after_exchange(self) -> None:
        receivers.refresh_codecs(self.connection)
        await self._apply_queued_candidates()
        self._sync_incoming()
        if self._rolled_back:
            # Offer our rolled-back changes once the remote has had time to apply our answer.
            self._rolled_back = False
            loop = asyncio.get_running_loop()
            self._reoffer_timer = loop.call_later(REOFFER_DELAY, self.negotiate)
        elif self._needs_negotiation:
            await self._op_negotiate()

    async def _retire(self, transceiver: RTCRtpTransceiver) -> None:
        """Forget a transceiver whose m-line the remote recycled (mlines.py), and stop it."""
        self._outgoing.pop(transceiver, None)
        tap = self._taps.pop(transceiver.mid, None) if transceiver.mid else None
        if tap is not None:
            await tap.aclose()
        await mlines.stop(transceiver)

    def _send_description(self, description: RTCSessionDescription, via: str) -> None:
        # Again here: aiortc writes its local description anew (ports from its candidates).
        desc = {"type": description.type, "sdp": self._as_browsers_want(description.sdp)}
        if via == "control" and self._control_open:
            if description.type == "offer":
                labels = {stream.id: label for label, stream in self._peer.streams.items()}
                self._send_control(["offer", desc, labels], kind="offer")
            else:
                self._send_control(["answer", desc], kind="answer")
        elif description.type == "offer":
            self._peer._send_direct(
                self.id, [OFFER, self._peer.id, desc, self._peer.metadata], kind="offer"
            )
        else:
            self._peer._send_direct(self.id, [ANSWER, self._peer.id, desc], kind="answer")

    # -- candidates (browsers trickle; aiortc puts its own in the SDP) -----------------------
    async def _op_candidate(self, candidate: dict[str, Any] | None) -> None:
        pc = self.connection
        remote = pc.remoteDescription
        if remote is None or (
            candidate is not None
            and candidate.get("usernameFragment") is not None
            and candidate["usernameFragment"] != _ufrag(remote.sdp)
        ):
            # docs/PROTOCOL.md: held until the description it belongs to is applied.
            if candidate is not None and len(self._pending_candidates) < MAX_QUEUED_CANDIDATES:
                self._pending_candidates.append(candidate)
            return
        await self._add_candidate(candidate)

    async def _apply_queued_candidates(self) -> None:
        queued, self._pending_candidates = self._pending_candidates, []
        ufrag = _ufrag(self.connection.remoteDescription.sdp)
        for candidate in queued:
            if candidate.get("usernameFragment") in (None, ufrag):
                await self._add_candidate(candidate)

    async def _add_candidate(self, candidate: dict[str, Any] | None) -> None:
        try:
            text = candidate["candidate"] if candidate else ""
            if not text:
                await self.connection.addIceCandidate(None)  # end of candidates
                return
            parsed = candidate_from_sdp(
                text.split(":", 1)[1] if text.startswith("candidate:") else text
            )
            parsed.sdpMid = candidate.get("sdpMid")
            parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
            if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
                parsed.sdpMLineIndex = 0
            await self.connection.addIceCandidate(parsed)
        except Exception as error:
            raise PeerixError(
                "PEER_ICECANDIDATE_ERROR", f"bad candidate {candidate!r}: {error}", cause=error
            ) from None

    # -- the control channel ----------------------------------------------------------------
    def _on_control_open(self, control: RTCDataChannel) -> None:
        if control is not self._control or self._closing:
            return
        self._control_open = True
        self._emit("control:open", state="open")
        self._tasks.spawn(self._keepalive(control), name=f"remote:{self.id}:keepalive")
        for options in {**self._peer.channels, **self._channel_options}.values():
            self.open_channel(options)
        self._enqueue(self._op_sync_outgoing, "PEER_MEDIASTREAM_ERROR")
        if self._needs_negotiation:
            self.negotiate()

    def _on_control_close(self, control: RTCDataChannel) -> None:
        if control is self._control and not self._closing:
            self._tasks.spawn(
                self.shutdown("control channel closed"), name=f"remote:{self.id}:close"
            )

    def _send_control(self, message: list[Any], kind: str) -> None:
        data = json.dumps(message, separators=(",", ":"))
        self._control.send(data)
        self._emit("signal:send", kind=kind, via="control", size=len(data))

    def _on_control_message(self, control: RTCDataChannel, data: str | bytes) -> None:
        if control is not self._control or self._closing:
            return
        try:
            if isinstance(data, bytes):
                raise ValueError("control message is binary, expected JSON text")
            if len(data) > MAX_CONTROL_MESSAGE:
                raise ValueError(f"control message of {len(data)} characters is too large")
            message = json.loads(data)
            if not isinstance(message, list) or not message or not isinstance(message[0], str):
                raise ValueError("control message is not a JSON array [name, ...]")
            name = message[0]
            if name == "ping":
                return
            if name not in ("offer", "answer", "candidate", "channel"):
                return  # docs/PROTOCOL.md: unknown event names are ignored
            self._emit("signal:recv", kind=name, via="control", size=len(data))
            if name == "channel":
                self._on_channel_request(message[1] if len(message) > 1 else None)
            elif name == "candidate":
                self.receive(
                    CANDIDATE, check_candidate(message[1] if len(message) > 1 else None), "control"
                )
            else:
                desc = message[1] if len(message) > 1 else None
                if (
                    not isinstance(desc, dict)
                    or desc.get("type") != name
                    or not isinstance(desc.get("sdp"), str)
                ):
                    raise ValueError(f"control {name} without a valid {{type, sdp}} description")
                labels = None
                if name == "offer":
                    raw = message[2] if len(message) > 2 else {}
                    labels = (
                        {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
                    )
                self.receive(OFFER if name == "offer" else ANSWER, desc, "control", labels)
        except (ValueError, PeerixError) as error:
            self._report(error, "PEER_SIGNALING_ERROR")  # wrapped there unless a PeerixError

    async def _keepalive(self, control: RTCDataChannel) -> None:
        """Ping over the control channel and watch SCTP acks: see liveness.py for why."""
        sctp = self.connection.sctp
        if sctp is None:
            return
        watcher = liveness.SctpLiveness(sctp)
        last_ping = 0.0
        while control.readyState == "open":
            now = time.monotonic()
            if now - last_ping >= liveness.PING_INTERVAL:
                control.send('["ping"]')
                last_ping = now
            alive = watcher.alive(now)
            if not alive and self.state == "connected":
                self._set_state("disconnected", detail="no SCTP acknowledgement")
                self._arm_timeout()
            elif alive and self.state == "disconnected":
                self._cancel_timeout()
                self._set_state("connected", detail="acknowledgements resumed")
            await asyncio.sleep(liveness.PING_INTERVAL / 4)

    # -- data channels ----------------------------------------------------------------------
    def open_channel(self, options: ChannelOptions) -> None:
        """Create (impolite side) or request (polite side) the channel `options.label`."""
        existing = self.channels.get(options.label)
        if existing is not None and existing.readyState in ("connecting", "open"):
            return
        if not self._control_open:
            return  # created when the control channel opens
        if self._too_many_channels(options.label):
            return
        if self.polite:
            self._send_control(["channel", options.wire()], kind="channel")
            return
        try:
            channel = self.connection.createDataChannel(
                options.label,
                ordered=options.ordered,
                maxRetransmits=options.max_retransmits,
                maxPacketLifeTime=options.max_packet_life_time,
                protocol=options.protocol,
            )
        except Exception as error:
            self._report(error, "PEER_DATACHANNEL_ERROR")
            return
        self._register_channel(channel)

    def _on_channel_request(self, raw: Any) -> None:
        if self.polite:
            return  # only the impolite side creates channels; a request here is a confused remote
        try:
            options = ChannelOptions.from_wire(raw)
        except (TypeError, ValueError) as error:
            self._report(
                PeerixError("PEER_DATACHANNEL_ERROR", f"bad channel request: {error}"),
                "PEER_DATACHANNEL_ERROR",
            )
            return
        self.open_channel(options)

    def _too_many_channels(self, label: str) -> bool:
        if label in self.channels or len(self.channels) < MAX_CHANNELS:
            return False
        self._report(
            PeerixError(
                "PEER_DATACHANNEL_ERROR",
                f"channel {label!r} refused: {MAX_CHANNELS} channels to {self.id} already",
            ),
            "PEER_DATACHANNEL_ERROR",
        )
        return True

    def _register_channel(self, channel: RTCDataChannel) -> None:
        label = channel.label
        if self._too_many_channels(label):
            channel.close()
            return
        old = self.channels.get(label)
        self.channels[label] = channel  # one channel per label: the newer replaces the older
        if old is not None and old is not channel:
            old.close()

        @channel.on("open")
        def on_open() -> None:
            self._emit("channel:open", channel=channel, label=label, state="open")

        @channel.on("close")
        def on_close() -> None:
            if self.channels.get(label) is channel:
                del self.channels[label]
            self._emit("channel:close", channel=channel, label=label, state="closed")

        @channel.on("message")
        def on_message(data: str | bytes) -> None:
            self._emit("channel:message", channel=channel, label=label, data=data)

        self._emit("channel:new", channel=channel, label=label, state=channel.readyState)
        if (
            channel.readyState == "open"
        ):  # aiortc opens a remote-created channel before announcing it
            on_open()

    def _send_on(self, channel: RTCDataChannel, message: str | bytes) -> None:
        try:
            channel.send(message)
        except Exception as error:
            raise PeerixError(
                "PEER_DATACHANNEL_ERROR",
                f"cannot send on {channel.label!r} to {self.id}: {error}",
                cause=error,
            ) from None

    # -- outgoing media ---------------------------------------------------------------------
    def sync_streams(self) -> asyncio.Future[None]:
        """Bring our senders in line with the Peer's published streams; resolves when queued work is done."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def op() -> None:
            try:
                await self._op_sync_outgoing()
            finally:
                self._sync_waiters.discard(done)
                if not done.done():
                    done.set_result(None)

        if self._control_open and not self._closing:
            # shutdown() resolves it if the queue never gets to it (the remote left meanwhile)
            self._sync_waiters.add(done)
            self._enqueue(op, "PEER_MEDIASTREAM_ERROR")
        else:
            done.set_result(None)  # done when the control channel opens
        return done

    async def _op_sync_outgoing(self) -> None:
        from .media import relayed

        pc = self.connection
        # One sender per (track, stream): a track published in two streams (two labels) is
        # sent twice, once under each stream id, so that the remote shows both.
        wanted: dict[tuple[int, str], MediaStreamTrack] = {}
        for stream in self._peer.streams.values():
            for track in stream.tracks:
                wanted[(id(track), stream.id)] = track
        before = {t: (t.direction, out.stream_id) for t, out in self._outgoing.items()}

        # 1. Senders whose track is no longer published (or moved to another stream) go idle.
        assigned: set[tuple[int, str]] = set()
        for out in self._outgoing.values():
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
            out = next(
                (
                    o
                    for o in self._outgoing.values()
                    if o.source is None and o.track.kind == track.kind
                ),
                None,
            )
            if out is None:
                sender_track = SenderTrack(track.kind)
                transceiver = pc.addTransceiver(sender_track, direction="sendonly")
                out = self._outgoing[transceiver] = _Outgoing(transceiver, sender_track)
            out.track.set_source(relayed(track))
            out.source, out.stream_id = track, stream_id
            # aiortc writes a random per-connection stream id into a=msid; Peerix receivers
            # group tracks and find labels by the published MediaStream's id.
            out.transceiver.sender._stream_id = stream_id
            assigned.add(key)

        # 3. Directions follow: send while a source is set, keep receiving what we receive.
        for transceiver, out in self._outgoing.items():
            receiving = transceiver.direction in ("recvonly", "sendrecv")
            transceiver.direction = _direction(out.source is not None, receiving)
        after = {t: (t.direction, out.stream_id) for t, out in self._outgoing.items()}
        if after != before:
            await self._op_negotiate()

    def _accept_incoming_media(self, pc: RTCPeerConnection) -> None:
        """Let the remote send on m-lines we created sendonly (a browser's addTrack reuses them)."""
        for transceiver in pc.getTransceivers():
            remote_sends = transceiver._offerDirection in ("recvonly", "sendrecv")
            if remote_sends and transceiver.direction in ("sendonly", "inactive"):
                transceiver.direction = (
                    "sendrecv" if transceiver.direction == "sendonly" else "recvonly"
                )

    # -- incoming media ---------------------------------------------------------------------
    def _sync_incoming(self) -> None:
        """Turn the negotiated directions and msids into track/stream add and remove events."""
        pc = self.connection
        if pc.signalingState != "stable" or pc.remoteDescription is None:
            return
        if not self._incoming and not pc.getTransceivers():
            return  # data channels only: no m-line can carry a track (skip parsing the SDP)
        remote_media = {
            m.rtp.muxId: m for m in SessionDescription.parse(pc.remoteDescription.sdp).media
        }
        current: dict[str, tuple[RTCRtpTransceiver, str, str]] = {}
        for transceiver in pc.getTransceivers():
            mid = transceiver.mid
            media = remote_media.get(mid) if mid is not None else None
            if media is None or transceiver.currentDirection not in ("recvonly", "sendrecv"):
                continue
            stream_id, _, track_id = (media.msid or "").partition(" ")
            current[mid] = (
                transceiver,
                stream_id or f"mid-{mid}",
                track_id or transceiver.receiver.track.id,
            )
        for mid, incoming in list(self._incoming.items()):
            if mid not in current or current[mid][1] != incoming.stream_id:
                del self._incoming[mid]
                self._end_incoming(incoming)
        for mid, (transceiver, stream_id, track_id) in current.items():
            if mid not in self._incoming:
                self._start_incoming(mid, transceiver, stream_id, track_id)
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
            new = self._labels.get(stream.id, stream.id)
            if new == old or new in self.streams:
                continue
            del self.streams[old]
            self.streams[new] = stream
            for incoming in self._incoming.values():
                if incoming.stream is stream:
                    incoming.label = new
            self._emit("stream:remove", stream=stream, label=old, detail=stream.id)
            self._emit("stream:add", stream=stream, label=new, detail=stream.id)

    def _start_incoming(
        self, mid: str, transceiver: RTCRtpTransceiver, stream_id: str, track_id: str
    ) -> None:
        from .media import MediaStream, tap_for

        tap = self._taps.get(mid)
        if tap is None or tap.ended:
            # One tap per receiver, for the connection's life: it drains the receiver even
            # between tracks (aiortc queues remote frames without bound otherwise).
            tap = self._taps[mid] = tap_for(transceiver.receiver.track)
        track = tap.subscribe(id=track_id)
        label = self._labels.get(stream_id, stream_id)
        stream = next((s for s in self.streams.values() if s.id == stream_id), None)
        new_stream = stream is None
        if stream is None:
            stream = MediaStream(id=stream_id)
            self.streams[label] = stream
        stream.add_track(track)
        self._incoming[mid] = _Incoming(label, track, stream)
        if new_stream:
            self._emit("stream:add", stream=stream, label=label, detail=stream_id)
        self._emit(
            "track:add", stream=stream, track=track, label=label, kind=track.kind, detail=stream_id
        )
        self._tasks.spawn(
            self._first_frame(tap, track, label), name=f"remote:{self.id}:first-frame"
        )

    async def _first_frame(self, tap: Tap, track: MediaStreamTrack, label: str) -> None:
        """A log row when the first frame of a remote track arrives (the timing breakdown)."""
        reader = tap.subscribe(origin=track)
        try:
            await reader.recv()
        except MediaStreamError:
            return  # the track ended before any frame
        finally:
            reader.stop()
        self._emit("media:first-frame", track=track, label=label, kind=track.kind)

    def _end_incoming(self, incoming: _Incoming) -> None:
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


def _local_candidates(pc: RTCPeerConnection) -> tuple[int, str]:
    """How many local candidates the (bundled) gatherer found, and of which types."""
    sctp = pc.sctp
    candidates = sctp.transport.transport.iceGatherer.getLocalCandidates() if sctp else []
    types: dict[str, int] = {}
    for candidate in candidates:
        types[candidate.type] = types.get(candidate.type, 0) + 1
    return len(candidates), ", ".join(f"{n} {kind}" for kind, n in sorted(types.items()))


def turn_urls(configuration: RTCConfiguration) -> list[str]:
    """The turn:/turns: URLs of a configuration's ICE servers."""
    urls: list[str] = []
    for server in configuration.iceServers or []:
        for url in [server.urls] if isinstance(server.urls, str) else server.urls:
            if url.startswith(("turn:", "turns:")):
                urls.append(url)
    return urls


def _ufrag(sdp: str) -> str | None:
    match = _UFRAG.search(sdp)
    return match.group(1) if match else None
