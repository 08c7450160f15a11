"""Peer: the local peer — joins rooms, keeps one RemotePeer per remote, fans out channels and streams.

Driver messages arrive here (JOIN/OFFER/ANSWER/CANDIDATE/LEAVE, docs/PROTOCOL.md), are decoded
(roomlink.py, which also sends ours) and handed to the remote they concern (remotes.py, which
admits new ones: admission.py). A RemotePeer sees its Peer only as a `seams.RemoteOwner`.
Public methods that do asynchronous work
(`join`, `leave`, `open`, `close`, `publish`, `unpublish`) start it at once and return a task, so
a widget callback can call them without awaiting, like a JavaScript promise; awaiting waits for
the step to finish. Arguments are checked before the task starts: bad input raises right away.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .admission import MAX_HELD_MESSAGES as MAX_HELD_MESSAGES
from .admission import PeerInfo, Verify
from .channels import ChannelOptions, check_message
from .config import check_connection_timeout, host_addresses, make_configuration
from .datachannels import MAX_CHANNELS
from .drivers.base import Driver
from .drivers.memory import MemoryDriver
from .errors import ErrorCode, PeerixError
from .events import EVENT_NAMES, Emitter, Event, Observable, TaskOwner
from .home import HomeLoop, running_loop
from .log import EventLog
from .remote import RemotePeer
from .remotes import Remotes
from .roomlink import REANNOUNCE_FIRST as REANNOUNCE_FIRST
from .roomlink import REANNOUNCE_MAX as REANNOUNCE_MAX
from .roomlink import RoomLink
from .signaling import MAX_ID_LENGTH, MAX_METADATA_BYTES, SignalingCodec, to_json

if TYPE_CHECKING:
    from aiortc import RTCConfiguration
    from aiortc.mediastreams import MediaStreamTrack

    from .media import MediaStream
    from .network import NetworkConditions
    from .seams import RemoteInfo
    from .stats import StatsSampler

_default_driver: MemoryDriver | None = None
logger = logging.getLogger("peerix_nb")

#: Remotes a peer accepts in its room by default: a full mesh in one Python process past a few
#: dozen peers spends its time in DTLS handshakes and keepalives, and each RemotePeer costs a
#: certificate and sockets, so a flood of JOINs with made-up ids must stop somewhere.
MAX_REMOTES = 64


def default_driver() -> MemoryDriver:
    """The process-wide MemoryDriver shared by every Peer created without a driver."""
    global _default_driver
    if _default_driver is None:
        _default_driver = MemoryDriver()
    return _default_driver


class Peer(Observable):
    """A peer of a Peerix room.

    `Peer(id=None, driver=None, ice_servers=None, ice_transport_policy="all",
    connection_timeout=15, signaling_compression=True, signaling_hashing=False,
    signaling_encryption_key=None)`: with no driver, peers of this process share one
    MemoryDriver; `ice_servers=None` means no STUN/TURN servers at all.
    """

    def __init__(
        self,
        id: str | None = None,
        driver: Driver | None = None,
        ice_servers: Any = None,
        ice_transport_policy: str = "all",
        connection_timeout: float = 15,
        signaling_compression: bool = True,
        signaling_hashing: bool = False,
        signaling_encryption_key: str | bytes | None = None,
        *,
        max_remotes: int = MAX_REMOTES,
        network: NetworkConditions | None = None,
    ) -> None:
        if id is None:
            id = str(uuid.uuid4())
        if not isinstance(id, str) or not id or len(id) > MAX_ID_LENGTH:
            raise ValueError(
                f"peer id must be a non-empty string of at most {MAX_ID_LENGTH} characters,"
                f" got {id!r}"
            )
        if driver is not None and not isinstance(driver, Driver):
            raise TypeError(f"driver must be a peerix_nb Driver, got {type(driver).__name__}")
        connection_timeout = check_connection_timeout(connection_timeout)
        from .network import check as check_network  # emulated network conditions (network.py)

        network = check_network(network)
        self.id = id
        self.driver: Driver = driver if driver is not None else default_driver()
        if not isinstance(max_remotes, int) or max_remotes < 1:
            raise ValueError(f"max_remotes must be a positive integer, got {max_remotes!r}")
        self.connection_timeout = float(connection_timeout)
        self.max_remotes = max_remotes
        self._ice_servers = ice_servers
        self._ice_transport_policy = ice_transport_policy
        self._configuration = make_configuration(ice_servers, ice_transport_policy)
        codec = SignalingCodec(signaling_compression, signaling_encryption_key, signaling_hashing)

        self.room = ""
        self.metadata: Any = None
        self.joined = False
        self.channels: dict[
            str, ChannelOptions
        ] = {}  # configured labels, for current and future remotes
        self.streams: dict[
            str, MediaStream
        ] = {}  # published label -> stream (its id names it on the wire)

        self._home = HomeLoop()  # the loop this peer's connections live on
        self._tasks = TaskOwner(self._task_failed)  # protocol work: cancelled on leave
        self._handler_tasks = TaskOwner(self._task_failed)  # users' async handlers: run to the end
        self._emitter = _PeerEmitter(self)
        self.events = EventLog(self.id)
        self._emitter.on("*", self.events.record)
        self._link = RoomLink(self.id, self.driver, codec, self.emit, self._report)
        self._remotes = Remotes(self, self._tasks.spawn, self._announce, self._report)
        self.connections: dict[str, RemotePeer] = self._remotes.connections
        self._join_task: asyncio.Future[None] | None = None
        self._join_room = ""  # the room of the current or pending join
        self._network: NetworkConditions | None = None  # see the `network` property
        if network is not None:
            self._set_network(network)

    @property
    def network(self) -> NetworkConditions | None:
        """The emulated network what this peer sends goes through (None: the real one).

        Setting it applies at once to every current and future connection (but a remote's own
        `peer.connections[id].network` wins); None removes it. See peerix_nb.network."""
        return self._network

    @network.setter
    def network(self, conditions: NetworkConditions | None) -> None:
        from .network import check

        self._home.call(self._set_network, check(conditions))

    def _set_network(self, conditions: NetworkConditions | None) -> None:
        from . import network

        self._network = conditions
        self.emit(network.change_event(conditions, None))
        for remote in list(self.connections.values()):
            network.apply(remote.connection, network.effective(remote))

    @property
    def ice_servers(self) -> Any:
        """The ICE servers given to the constructor (every connection uses them; fixed)."""
        return self._ice_servers

    @property
    def ice_transport_policy(self) -> str:
        """ "all" or "relay", as given to the constructor (fixed)."""
        return self._ice_transport_policy

    @property
    def configuration(self) -> RTCConfiguration:
        """The RTCConfiguration every connection of this peer uses (from `ice_servers`)."""
        return self._configuration

    def __repr__(self) -> str:
        where = f"room={self.room!r}" if self.joined else "not joined"
        return f"<Peer {self.id} {where} connections={len(self.connections)}>"

    # -- events -----------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        """Deliver `event` as this peer's to its handlers and its log (its RemotePeers emit
        through this: seams.RemoteOwner)."""
        event.id = self.id
        self._emitter.emit(event)

    def _report(
        self,
        error: BaseException,
        code: ErrorCode = "UNKNOWN_ERROR",
        remote: RemoteInfo | None = None,
    ) -> None:
        self.emit(Event(name="error", remote=remote, error=PeerixError.wrap(error, code)))

    def _task_failed(self, error: BaseException, name: str) -> None:
        self._report(error, "UNKNOWN_ERROR")

    def _start(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Future[None]:
        if running_loop() is None:
            coro.close()
            raise RuntimeError(
                f"Peer.{name}() needs a running asyncio event loop: use `await peer.{name}(...)` "
                "in a notebook cell or inside a coroutine run by asyncio.run()"
            )
        # On the peer's own loop, even when called from a kernel subshell's thread (home.py).
        # A Task on the home loop; from another loop's thread, a Future of that Task's result.
        started: asyncio.Future[None] = self._home.start(
            coro, lambda c: self._tasks.spawn(c, name=f"peer:{name}")
        )
        return started

    # -- joining and leaving ----------------------------------------------------------------
    def join(
        self, room: str = "default", metadata: Any = None, verify: Verify | None = None
    ) -> asyncio.Future[None]:
        """Join `room`, announcing `metadata`; `verify(info)` may reject peers (bool or awaitable)."""
        if not isinstance(room, str) or not room:
            raise ValueError(f"room must be a non-empty string, got {room!r}")
        if verify is not None and not callable(verify):
            raise TypeError("verify must be a callable taking the peer info and returning a bool")
        try:
            size = len(to_json(metadata))
        except (TypeError, ValueError) as error:
            raise TypeError(f"metadata must be JSON-serializable: {error}") from None
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}")
        if self.joined or self._join_task is not None:
            if room != self._join_room:  # silently staying in the other room would mislead
                raise RuntimeError(
                    f"this peer is already in room {self._join_room!r} (a peer is in one room at"
                    f" a time): await peer.leave() before joining {room!r}"
                )
            return self._join_task or self._start(_noop(), "join")
        self._join_room = room
        self._join_task = self._start(self._join(room, metadata, verify), "join")
        return self._join_task

    async def _join(self, room: str, metadata: Any, verify: Verify | None) -> None:
        self.room, self.metadata, self._remotes.admission.verify = room, metadata, verify
        self.events.room = room
        host_addresses(self).refresh()  # listed again at this join's first gathering
        driver = self.driver
        try:
            await self._link.subscribe(
                room, metadata, self._on_room_message, self._on_direct_message
            )
        except BaseException:
            self._join_task = None
            raise
        driver.on("active", self._on_driver_active)
        driver.on("inactive", self._on_driver_inactive)
        driver.on("error", self._on_driver_error)
        self.joined = True
        self._join_task = None
        self.emit(Event(name="room:join", state="joined", detail=room))
        if not driver.active:
            self._announce_waits()
        await self._announce()
        self._tasks.spawn(self._link.reannounce(lambda: self.joined), name="peer:reannounce")

    def leave(self) -> asyncio.Future[None]:
        """Close every remote, broadcast LEAVE and stop listening; a no-op when not joined."""
        return self._start(self._leave(), "leave")

    async def _leave(self) -> None:
        if self._join_task is not None and not self._join_task.done():
            self._join_task.cancel()
            await asyncio.gather(self._join_task, return_exceptions=True)
        if not self.joined:
            return
        self.joined = False
        driver = self.driver
        driver.off("active", self._on_driver_active)
        driver.off("inactive", self._on_driver_inactive)
        driver.off("error", self._on_driver_error)
        await self._link.leave()
        remotes = list(self.connections.values())
        await asyncio.gather(
            *(r.shutdown("left the room") for r in remotes), return_exceptions=True
        )
        self.connections.clear()
        self._remotes.admission.clear()
        await self._link.unsubscribe()
        await self._tasks.cancel_all(keep=asyncio.current_task())
        self.emit(Event(name="room:leave", state="left", detail=self.room))

    async def _announce(self, to: str | None = None) -> None:
        if self.joined:
            await self._link.announce(to)  # `to`: a direct JOIN, the retry after `failed`

    def _announce_waits(self) -> None:
        """join() with an inactive driver: nothing can be sent, so no one can see us. Say so
        where a user looks (an event and a warning), rather than a "successful" silent join;
        `_on_driver_active` sends the JOIN at once when the driver can carry it."""
        detail = "JOIN waits for the driver to become active"
        logger.warning(
            "peer %s joined room %r but its driver %r is inactive: %s",
            self.id,
            self.room,
            self.driver,
            detail,
        )
        self.emit(Event(name="driver:inactive", state="inactive", kind="join", detail=detail))

    async def _announce_later(self) -> None:
        # docs/PROTOCOL.md: a random 0-1000 ms delay, so a room that lost its driver does not stampede.
        await asyncio.sleep(random.random())
        await self._announce()

    # -- driver events ----------------------------------------------------------------------
    def _on_driver_active(self, event: Event) -> None:
        self.emit(Event(name="driver:active", state="active"))
        if self.joined:
            # An attempt still `new` has not completed its first exchange, which goes through
            # the driver: its offer or answer may have been dropped while the driver was
            # inactive. Fail it now (-> closed -> direct JOIN retry) instead of waiting out
            # connection_timeout.
            for remote in list(self.connections.values()):
                if remote.state == "new":
                    self._tasks.spawn(
                        remote.fail("signaling interrupted: the driver was inactive"),
                        name="peer:fail-interrupted",
                    )
            # The random delay spreads the re-announcements of a room whose driver came back;
            # a JOIN that never went out (join() while inactive) is a first one: it goes now.
            announce = self._announce_later() if self._link.announced else self._announce()
            self._tasks.spawn(announce, name="peer:announce")

    def _on_driver_inactive(self, event: Event) -> None:
        self.emit(Event(name="driver:inactive", state="inactive"))

    def _on_driver_error(self, event: Event) -> None:
        self._report(
            event.error or PeerixError("PEER_SIGNALING_ERROR", "driver error"),
            "PEER_SIGNALING_ERROR",
        )

    # -- the driver (roomlink.py) -----------------------------------------------------------
    def send_direct(self, remote_id: str, message: list[Any], kind: str) -> None:
        """Send a signaling message to one remote through the driver, in the background (its
        RemotePeers send their first offer or answer so: seams.RemoteOwner)."""
        if not self.joined:
            return
        remote = self.connections.get(remote_id)
        self._tasks.spawn(
            self._link.dispatch_or_report(remote_id, message, kind, remote),
            name=f"peer:send-{kind}",
        )

    def _on_room_message(self, data: bytes) -> None:
        self._on_driver_message(data, direct=False)

    def _on_direct_message(self, data: bytes) -> None:
        self._on_driver_message(data, direct=True)

    def _on_driver_message(self, data: bytes, direct: bool) -> None:
        if not self.joined:
            return
        message = self._link.decode(data)
        if message is not None:
            self._remotes.receive(message, len(data), direct)

    def remote_closed(self, remote: RemotePeer, failed: bool) -> None:
        """`remote` closed for good (seams.RemoteOwner): forget it; after `failed`, JOIN it again."""
        self._remotes.closed(remote, failed)

    # -- data channels ----------------------------------------------------------------------
    def open(
        self,
        label: str = "default",
        *,
        ordered: bool = True,
        max_retransmits: int | None = None,
        max_packet_life_time: int | None = None,
        protocol: str = "",
    ) -> asyncio.Future[None]:
        """Open data channel `label` to every remote, now and for remotes that connect later."""
        options = ChannelOptions.make(
            label, ordered, max_retransmits, max_packet_life_time, protocol
        )
        if label not in self.channels and len(self.channels) >= MAX_CHANNELS:
            # The remote would refuse it (remote.MAX_CHANNELS) and only the remote would know.
            raise PeerixError(
                "PEER_DATACHANNEL_ERROR",
                f"cannot open channel {label!r}: a peer opens at most {MAX_CHANNELS} channels"
                " (remotes refuse more); close() one first",
            )
        return self._start(self._open(options), "open")

    async def _open(self, options: ChannelOptions) -> None:
        self.channels[options.label] = options
        for remote in list(self.connections.values()):
            remote.open_channel(options)

    def close(self, label: str) -> asyncio.Future[None]:
        """Close data channel `label` on every remote and forget it."""
        if not isinstance(label, str):
            raise TypeError(f"channel label must be a string, got {label!r}")
        return self._start(self._close(label), "close")

    async def _close(self, label: str) -> None:
        self.channels.pop(label, None)
        for remote in list(self.connections.values()):
            await remote.close(label)

    def send(self, message: str | bytes, label: str | None = None) -> int:
        """Send to channel `label` of every remote (or every open channel); returns how many got it."""
        message = check_message(message)
        if label is not None and not isinstance(label, str):
            raise TypeError(f"channel label must be a string, got {label!r}")
        return self._home.call(self._send, message, label)

    def _send(self, message: str | bytes, label: str | None) -> int:
        # Checked once above and on the home loop here: go to each remote's channels directly,
        # not through RemotePeer.send, which would check and hop again per remote and message.
        sent = 0
        for remote in list(self.connections.values()):
            if label is None:
                channels = list(remote.channels.values())
            else:
                channels = [remote.channels[label]] if label in remote.channels else []
            for channel in channels:
                if channel.readyState == "open":
                    remote.send_on(channel, message)
                    sent += 1
        return sent

    # -- analysis ---------------------------------------------------------------------------
    def stats(self, interval: float = 1.0) -> StatsSampler:
        """Start sampling per-remote transport and media statistics every `interval` seconds."""
        from .stats import StatsSampler

        return StatsSampler(self, interval)

    # -- media ------------------------------------------------------------------------------
    def publish(
        self, stream: MediaStream | MediaStreamTrack | None = None, label: str | None = None
    ) -> asyncio.Future[None]:
        """Publish `stream` (a MediaStream or one track) under `label` to every remote.

        Publishing again under the same label swaps the tracks (docs/PROTOCOL.md "Media"): same kind
        replaces the track on its sender, a new kind adds one, a kind no longer there stops.
        """
        from aiortc.mediastreams import MediaStreamTrack

        from .media import MediaStream

        if isinstance(stream, MediaStreamTrack):
            stream = MediaStream([stream])
        if not isinstance(stream, MediaStream):
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                f"publish() needs a peerix_nb.media.MediaStream or an aiortc track, got {type(stream).__name__}",
            )
        if label is None:
            label = stream.id
        if not isinstance(label, str) or not label:
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR", f"stream label must be a non-empty string, got {label!r}"
            )
        ended = [track for track in stream.tracks if track.readyState != "live"]
        if ended:
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                f"cannot publish {label!r}: its {ended[0].kind} track {ended[0].id} has ended"
                " (stopped, or its source finished); publish a new one",
            )
        current = self.streams.get(label)
        if current is None:
            # Remotes name streams by id (the label map of each offer is id -> label): the same
            # stream under a second label needs an id of its own, or it shows under one label.
            taken = any(s.id == stream.id for s in self.streams.values())
            self.streams[label] = MediaStream(stream.tracks, id=None if taken else stream.id)
        else:
            for track in current.tracks:
                current.remove_track(track)
            for track in stream.tracks:
                current.add_track(track)
        return self._start(self._sync_streams(), "publish")

    def unpublish(self, label: str) -> asyncio.Future[None]:
        """Stop publishing the stream under `label`."""
        if label not in self.streams:
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR", f"no stream is published under label {label!r}"
            )
        del self.streams[label]
        return self._start(self._sync_streams(), "unpublish")

    async def _sync_streams(self) -> None:
        await asyncio.gather(*(remote.sync_streams() for remote in list(self.connections.values())))


class _PeerEmitter(Emitter):
    """The Peer's emitter: a failing handler becomes an `error` event (never for `error` itself)."""

    def __init__(self, peer: Peer) -> None:
        super().__init__(peer._handler_tasks, EVENT_NAMES)
        self._peer = peer

    def handler_failed(self, error: BaseException, event: Event) -> None:
        if event.name == "error":
            super().handler_failed(error, event)
            return
        wrapped = PeerixError(
            "UNKNOWN_ERROR", f"handler for {event.name} raised {error!r}", cause=error
        )
        self._peer.emit(Event(name="error", remote=event.remote, error=wrapped))


async def _noop() -> None:
    return None


__all__ = ["ChannelOptions", "Peer", "PeerInfo", "default_driver"]
