"""RemotePeer: one remote peer of a room, and the RTCPeerConnection to it.

The Peer owns one RemotePeer per remote and feeds it the driver messages addressed to it; the
RemotePeer knows the Peer only as a `seams.RemoteOwner` (settings in; events, driver messages
and "closed" out), as browser Peerix's remotes do. Here: the connection, its state machine and
its end, and the glue of the parts of one connection, each in its own module: the operations
queue and perfect negotiation (negotiation.py), the control channel and liveness (control.py),
data channels (datachannels.py), senders and remote tracks (transceivers.py). The settings
shared by every connection of a peer are in config.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiortc import RTCDataChannel, RTCPeerConnection

from . import _aiortc, certificate, control, network
from .channels import ChannelOptions, check_message
from .config import check_connection_timeout, host_addresses, make_configuration, turn_urls
from .control import MAX_CONTROL_MESSAGE
from .datachannels import MAX_CHANNELS, DataChannels
from .errors import ErrorCode, PeerixError
from .events import Event, TaskOwner
from .home import HomeLoop

# Re-exported where they always were; negotiation.py reads them (patch them there).
from .negotiation import MAX_QUEUED_CANDIDATES, OFFER_TIMEOUT, REOFFER_DELAY, Negotiation
from .signaling import ANSWER, CANDIDATE, OFFER, check_candidate
from .states import CONNECTION_STATES, ConnectionState
from .transceivers import SenderTrack, Transceivers

if TYPE_CHECKING:
    from .media import MediaStream
    from .network import NetworkConditions
    from .seams import RemoteOwner

logger = logging.getLogger("peerix_nb")

#: Connection states, in the order a healthy connection goes through them.
STATES: tuple[ConnectionState, ...] = CONNECTION_STATES
# Seconds leave() waits for aiortc's RTCPeerConnection.close(). It ended in every one of ~6,100
# closes measured (docs/RELIABILITY.md §6), but nothing in aiortc bounds it.
CLOSE_TIMEOUT = 10.0
# Closes that outlived CLOSE_TIMEOUT: referenced until they end (a bare task may be collected).
_slow_closes: set[asyncio.Task[None]] = set()


class RemotePeer:
    """One remote peer of a room, and the RTCPeerConnection to it.

    Attributes: `id`, `metadata`, `room`, `state` (see STATES), `polite`, `streams` (label ->
    remote MediaStream), `channels` (label -> RTCDataChannel), `connection` (the
    RTCPeerConnection; it is replaced if the first offers collide), `owner` (its peer, a
    seams.RemoteOwner), `control_open`.
    """

    def __init__(self, owner: RemoteOwner, id: str, metadata: Any, room: str) -> None:
        self.id = id
        self.metadata = metadata
        self.room = room
        self.polite = owner.id > id  # docs/PROTOCOL.md: plain string comparison
        self.state: ConnectionState = "new"
        self.streams: dict[str, MediaStream] = {}
        self.created_at = time.monotonic()
        self._owner = owner
        self._home = HomeLoop()  # made on its peer's loop, like everything of this connection
        self._tasks = TaskOwner(self._task_failed)
        self._data = DataChannels(id, self.polite, self._emit, self._report)
        self.channels: dict[str, RTCDataChannel] = self._data.channels
        self._media = Transceivers(self.streams, self._emit, self._tasks.spawn, id)
        self._negotiation = Negotiation(
            id,
            self.polite,
            self._media,
            connection=lambda: self.connection,
            restart=self._replace_connection,
            give_up=self.shutdown,
            send=self._send_description,
            emit=self._emit,
            report=self._report,
            spawn=self._tasks.spawn,
        )
        self._sync_waiters: set[asyncio.Future[None]] = set()  # sync_streams() not yet run
        self._closing = False
        self._deadline = control.Deadline(self._on_timeout)  # the connection timeout
        self._network: NetworkConditions | None = None  # this remote's only; None: the peer's
        self.connection: RTCPeerConnection = self._create_connection()
        self._tasks.spawn(self._negotiation.run(), name=f"remote:{id}:queue")
        self._emit("connection:new", state="new")
        self._deadline.arm(owner.connection_timeout)

    def __repr__(self) -> str:
        return f"<RemotePeer {self.id} state={self.state} polite={self.polite}>"

    # -- public API -------------------------------------------------------------------------
    @property
    def owner(self) -> RemoteOwner:
        """The peer this remote belongs to."""
        return self._owner

    @property
    def control_open(self) -> bool:
        """True once the control channel is open: every later offer and answer rides it."""
        return self._negotiation.control_open

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
        self._home.call(self._open, options)

    def _open(self, options: ChannelOptions) -> None:
        self._data.options[options.label] = options
        self.open_channel(options)

    async def close(self, label: str) -> None:
        """Close this remote's data channel `label`."""
        self._home.call(self._data.close, label)

    def send(self, message: str | bytes, label: str | None = None) -> int:
        """Send on channel `label` (which must be open), or on every open channel; returns the count."""
        message = check_message(message)
        return self._home.call(self._data.send, message, label)

    def send_on(self, channel: RTCDataChannel, message: str | bytes) -> None:
        """Send a checked `message` on one of this remote's channels, on this loop (what
        Peer.send does for each remote, having checked and hopped once)."""
        self._data.send_on(channel, message)

    @property
    def network(self) -> NetworkConditions | None:
        """NetworkConditions for what we send to this remote only; None: follow `peer.network`."""
        return self._network

    @network.setter
    def network(self, conditions: NetworkConditions | None) -> None:
        self._home.call(self._set_network, network.check(conditions, "RemotePeer.network"))

    def _set_network(self, conditions: NetworkConditions | None) -> None:
        self._network = conditions
        self._owner.emit(network.change_event(conditions, self))
        network.apply(self.connection, network.effective(self))

    # -- events -----------------------------------------------------------------------------
    def _emit(self, name: str, **fields: Any) -> None:
        self._owner.emit(Event(name=name, remote=self, **fields))

    def _report(self, error: BaseException, code: ErrorCode) -> None:
        self._emit("error", error=PeerixError.wrap(error, code))

    def _task_failed(self, error: BaseException, name: str) -> None:
        self._report(error, "UNKNOWN_ERROR")

    def _set_state(self, state: ConnectionState, detail: str | None = None) -> None:
        if self.state == state or self.state == "closed":
            return
        self.state = state
        self._emit(f"connection:{state}", state=state, detail=detail)

    # -- the connection ---------------------------------------------------------------------
    def _create_connection(self) -> RTCPeerConnection:
        # The peer's certificate from the start: aiortc makes none for this connection.
        pc = certificate.connection(self._owner.configuration, self._owner)
        network.apply(pc, network.effective(self))  # emulated conditions, if any (else nothing)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc is self.connection:
                self._on_connection_state(pc.connectionState)

        @pc.on("icegatheringstatechange")
        def on_gathering() -> None:
            if pc is self.connection:
                self._on_gathering(pc)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if pc is self.connection:
                self._data.register(channel)

        # The control channel: negotiated on both sides before the first offer (docs/PROTOCOL.md).
        channel = pc.createDataChannel("", negotiated=True, id=0)
        channel.on("open", lambda: self._on_control_open(channel))
        channel.on("close", lambda: self._on_control_close(channel))
        channel.on("message", lambda data: self._on_control_message(channel, data))
        self._control = channel

        # With max-bundle every m-line rides the transports the control channel created first;
        # their state changes are the ICE and DTLS phases of the timing breakdown.
        assert pc.sctp is not None  # created with the control channel
        dtls = pc.sctp.transport
        ice = dtls.transport
        # Gathering takes the peer's list of local addresses instead of listing the network
        # interfaces again (config.HostAddresses says why that is safe).
        _aiortc.use_host_addresses(ice, host_addresses(self._owner))
        # ICE returns when its check list is done, not at the next 20 ms pacing tick.
        _aiortc.end_checks_when_done(ice)

        @ice.on("statechange")
        def on_ice_state() -> None:
            if pc is self.connection:
                self._emit("ice:state", state=ice.state)

        @dtls.on("statechange")
        def on_dtls_state() -> None:
            if pc is self.connection:
                self._emit("dtls:state", state=dtls.state)

        return pc

    def _on_gathering(self, pc: RTCPeerConnection) -> None:
        state = pc.iceGatheringState
        count, summary = _local_candidates(pc) if state == "complete" else (None, None)
        self._emit("ice:gathering", state=state, size=count, detail=summary)
        turn = turn_urls(self._owner.configuration)
        if state == "complete" and turn and "relay" not in (summary or ""):
            # aioice drops a failed TURN allocation without a word (wrong credential, server
            # unreachable): this is the only place it can be noticed.
            self._report(
                PeerixError(
                    "PEER_ICECANDIDATE_ERROR",
                    f"no relay candidate from {', '.join(turn)}: the TURN server "
                    "refused the credential or did not answer",
                ),
                "PEER_ICECANDIDATE_ERROR",
            )

    def _on_connection_state(self, state: str) -> None:
        if state == "connecting" and self.state == "new":
            self._set_state("connecting")
        elif state == "connected":
            # The deadline holds until the control channel is open too: our DTLS handshake can
            # finish while the remote rejected our certificate (a tampered fingerprint); aiortc
            # then says `connected` here and no channel ever opens (until ICE consent expires,
            # ~30 s, while direct JOINs are ignored as "live").
            if self.control_open:
                self._deadline.cancel()
            if self.state in ("new", "connecting"):
                self._set_state("connected")
        elif state == "failed":
            self._tasks.spawn(self.fail("ICE or DTLS failed"), name=f"remote:{self.id}:fail")
        elif state == "closed" and not self._closing:
            self._tasks.spawn(self.shutdown("connection closed"), name=f"remote:{self.id}:close")

    def _on_timeout(self) -> None:
        timeout = self._owner.connection_timeout
        if self.state in ("new", "connecting"):
            reason = f"not connected within {timeout} s"
        elif self.state == "disconnected":
            reason = f"disconnected for {timeout} s"
        elif self.state == "connected" and not self.control_open:
            reason = f"connected, but the control channel did not open within {timeout} s"
        else:
            return
        self._tasks.spawn(self.fail(reason), name=f"remote:{self.id}:fail")

    def _on_liveness(self, alive: bool) -> None:
        """What the keepalive loop sees (control.keepalive): SCTP acks progress or not."""
        if not alive and self.state == "connected":
            self._set_state("disconnected", detail="no SCTP acknowledgement")
            self._deadline.arm(self._owner.connection_timeout)
        elif alive and self.state == "disconnected":
            self._deadline.cancel()
            self._set_state("connected", detail="acknowledgements resumed")

    async def fail(self, reason: str) -> None:
        """Mark the connection failed and close it; the Peer then re-JOINs this remote."""
        if self.state in ("failed", "closed"):
            return
        # The peer JOINs this remote again: that attempt lists the interfaces afresh, in case a
        # network change is what failed (config.HostAddresses).
        host_addresses(self._owner).refresh()
        self._set_state("failed", detail=reason)
        await self.shutdown(reason, failed=True)

    async def shutdown(self, reason: str = "", *, failed: bool = False) -> None:
        """Close everything of this remote (idempotent) and tell the Peer."""
        if self._closing:
            return
        self._closing = True
        self._deadline.cancel()
        self._negotiation.close()
        await self._media.close()
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
        self._owner.remote_closed(self, failed=failed)

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
        await self._close_connection(old)
        self._emit("signal:restart", detail="first offers collided: fresh connection")

    # -- negotiation (negotiation.py) -------------------------------------------------------
    def negotiate(self) -> None:
        """Ask for an offer to the remote (coalesced: one queued negotiation at a time)."""
        self._negotiation.negotiate()

    def start(self) -> None:
        """Make the first offer (we were in the room first and saw the remote's JOIN)."""
        self._negotiation.start()

    def receive(
        self, kind: int, payload: Any, via: str, labels: dict[str, str] | None = None
    ) -> None:
        """A description or candidate from the remote, via the driver or the control channel."""
        self._negotiation.receive(kind, payload, via, labels)

    def _send_description(self, description: dict[str, str], via: str) -> None:
        owner = self._owner
        if via == "control" and self.control_open:
            if description["type"] == "offer":
                labels = {stream.id: label for label, stream in owner.streams.items()}
                self._send_control(["offer", description, labels], kind="offer")
            else:
                self._send_control(["answer", description], kind="answer")
        elif description["type"] == "offer":
            owner.send_direct(self.id, [OFFER, owner.id, description, owner.metadata], kind="offer")
        else:
            owner.send_direct(self.id, [ANSWER, owner.id, description], kind="answer")

    # -- the control channel (control.py) ---------------------------------------------------
    def _on_control_open(self, channel: RTCDataChannel) -> None:
        if channel is not self._control or self._closing:
            return
        self._negotiation.control_open = True
        if self.state == "connected":
            self._deadline.cancel()
        self._emit("control:open", state="open")
        sctp = self.connection.sctp
        if sctp is not None:
            self._tasks.spawn(
                control.keepalive(channel, sctp, self._on_liveness),
                name=f"remote:{self.id}:keepalive",
            )
        for options in {**self._owner.channels, **self._data.options}.values():
            self.open_channel(options)
        self._negotiation.enqueue(self._sync_outgoing, "PEER_MEDIASTREAM_ERROR")
        self._negotiation.resume()

    def _on_control_close(self, channel: RTCDataChannel) -> None:
        if channel is self._control and not self._closing:
            self._tasks.spawn(
                self.shutdown("control channel closed"), name=f"remote:{self.id}:close"
            )

    def _send_control(self, message: list[Any], kind: str) -> None:
        data = control.encode(message)
        self._control.send(data)
        self._emit("signal:send", kind=kind, via="control", size=len(data))

    def _on_control_message(self, channel: RTCDataChannel, data: str | bytes) -> None:
        if channel is not self._control or self._closing:
            return
        try:
            message = control.decode(data)
            if message is None:
                return  # a ping, or a name we do not know
            name = message[0]
            self._emit("signal:recv", kind=name, via="control", size=len(data))
            body = message[1] if len(message) > 1 else None
            if name == "channel":
                self._data.requested(self.connection, body)
            elif name == "candidate":
                self.receive(CANDIDATE, check_candidate(body), "control")
            elif name == "offer":
                self.receive(
                    OFFER, control.description(message), "control", control.labels(message)
                )
            else:
                self.receive(ANSWER, control.description(message), "control")
        except (ValueError, PeerixError) as error:
            self._report(error, "PEER_SIGNALING_ERROR")  # wrapped there unless a PeerixError

    # -- data channels (datachannels.py) ----------------------------------------------------
    def open_channel(self, options: ChannelOptions) -> None:
        """Create (impolite side) or request (polite side) the channel `options.label`."""
        if not self.control_open:
            return  # created when the control channel opens
        self._data.open(
            self.connection,
            options,
            lambda wanted: self._send_control(["channel", wanted.wire()], kind="channel"),
        )

    # -- outgoing media (transceivers.py) ---------------------------------------------------
    def sync_streams(self) -> asyncio.Future[None]:
        """Bring our senders in line with the Peer's published streams; resolves when queued work is done."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def op() -> None:
            try:
                await self._sync_outgoing()
            finally:
                self._sync_waiters.discard(done)
                if not done.done():
                    done.set_result(None)

        if self.control_open and not self._closing:
            # shutdown() resolves it if the queue never gets to it (the remote left meanwhile)
            self._sync_waiters.add(done)
            self._negotiation.enqueue(op, "PEER_MEDIASTREAM_ERROR")
        else:
            done.set_result(None)  # done when the control channel opens
        return done

    async def _sync_outgoing(self) -> None:
        await self._negotiation.sync_outgoing(self._owner.streams)


def _local_candidates(pc: RTCPeerConnection) -> tuple[int, str]:
    """How many local candidates the (bundled) gatherer found, and of which types."""
    sctp = pc.sctp
    candidates = sctp.transport.transport.iceGatherer.getLocalCandidates() if sctp else []
    types: dict[str, int] = {}
    for candidate in candidates:
        types[candidate.type] = types.get(candidate.type, 0) + 1
    return len(candidates), ", ".join(f"{n} {kind}" for kind, n in sorted(types.items()))


__all__ = [
    "CLOSE_TIMEOUT",
    "MAX_CHANNELS",
    "MAX_CONTROL_MESSAGE",
    "MAX_QUEUED_CANDIDATES",
    "OFFER_TIMEOUT",
    "REOFFER_DELAY",
    "STATES",
    "RemotePeer",
    "SenderTrack",
    "check_connection_timeout",
    "make_configuration",
    "turn_urls",
]
