"""A peer's remotes: one RemotePeer per remote, and what each driver message does to them.

JOIN, OFFER, ANSWER, CANDIDATE and LEAVE from the driver (docs/PROTOCOL.md) go to the remote they
concern; a sender with no connection yet is admitted first (admission.py: verify, the room's
limit, its messages held meanwhile). A JOIN or OFFER for a live connection is a replay or a
re-announcement and is ignored; one for a connection the remote gave up starts over. A remote
that failed is JOINed again directly, after a random 0-1 s.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from .admission import Admission
from .events import Event
from .remote import RemotePeer
from .seams import RemoteOwner
from .signaling import ANSWER, CANDIDATE, JOIN, LEAVE, OFFER, Message

if TYPE_CHECKING:
    from .transceivers import Spawn


class RoomOwner(RemoteOwner, Protocol):
    """What `Remotes` needs of its peer, beyond what a RemotePeer needs (a Peer is one)."""

    @property
    def joined(self) -> bool: ...
    @property
    def room(self) -> str: ...
    @property
    def max_remotes(self) -> int: ...


class Remotes:
    """The remotes of one peer: `connections` (remote id -> RemotePeer) and `admission`.

    `spawn(coroutine, name)` runs the peer's protocol work (cancelled when it leaves);
    `announce(remote_id)` JOINs one remote directly; `report(error)` is an `error` event.
    """

    def __init__(
        self,
        owner: RoomOwner,
        spawn: Spawn,
        announce: Callable[[str], Coroutine[Any, Any, None]],
        report: Callable[[BaseException], None],
    ) -> None:
        self.connections: dict[str, RemotePeer] = {}
        self.admission = Admission(report)
        self._owner = owner
        self._spawn = spawn
        self._announce = announce

    def receive(self, message: Message, size: int, direct: bool) -> None:
        """A decoded driver message (`direct`: sent to this peer only, not to the room)."""
        remote = self.connections.get(message.sender)
        self._emit(
            "signal:recv",
            remote=remote,
            kind=message.kind,
            size=size,
            detail=None if remote else message.sender,
        )
        if not self.admission.hold(message, direct):
            self._route(message, direct)

    def closed(self, remote: RemotePeer, failed: bool) -> None:
        """`remote` closed for good: forget it; after `failed`, JOIN it again."""
        if self.connections.get(remote.id) is remote:
            del self.connections[remote.id]
        if failed and self._owner.joined:
            # docs/PROTOCOL.md: after `failed`, JOIN the remote directly to try again.
            self._spawn(self._rejoin_later(remote.id), "peer:rejoin")

    def _emit(self, name: str, **fields: Any) -> None:
        self._owner.emit(Event(name=name, via="driver", **fields))

    def _route(self, message: Message, direct: bool) -> None:
        sender = message.sender
        remote = self.connections.get(sender)
        if message.type == JOIN:
            if remote is not None:
                if remote.state == "connected" or (
                    not direct and remote.state not in ("failed", "closed")
                ):
                    # A re-announcement (driver back), or a replay: a live connection stays.
                    if direct:
                        self._ignore(message, remote, "JOIN for a live connection")
                    return
                # A direct JOIN means the remote lost us and wants to start over.
                self._spawn(self._restart(remote, message), "peer:restart")
                return
            self._admit(message, direct)
        elif message.type == OFFER:
            if remote is not None and remote.control_open:
                if remote.state == "connected":
                    # Renegotiation rides the control channel: a driver offer for a live
                    # connection is stale or replayed, and must not tear it down.
                    self._ignore(message, remote, "driver offer for a live connection")
                    return
                # The connection is gone on the remote's side: it started a new one.
                self._spawn(self._restart(remote, message), "peer:restart")
            elif remote is not None:
                remote.receive(OFFER, message.description, "driver")
            else:
                self._admit(message, direct)
        elif message.type in (ANSWER, CANDIDATE):
            if (
                remote is None
                and message.type == CANDIDATE
                and message.candidate is not None
                and self.admission.keep_early(sender, message.candidate, self._owner.max_remotes)
            ):
                self._emit("signal:hold", kind=message.kind, detail=f"{sender}: before its offer")
                return
            if remote is None:
                self._emit("signal:drop", kind=message.kind, detail=f"no connection to {sender}")
                return
            remote.receive(
                message.type,
                message.description if message.type == ANSWER else message.candidate,
                "driver",
            )
        elif message.type == LEAVE:
            self.admission.forget(sender)
            if remote is not None:
                self._spawn(remote.shutdown("remote left"), "peer:remote-left")

    def _ignore(self, message: Message, remote: RemotePeer, why: str) -> None:
        self._emit("signal:ignore", remote=remote, kind=message.kind, detail=why)

    async def _restart(self, remote: RemotePeer, message: Message) -> None:
        await remote.shutdown("remote restarted the connection")
        self._admit(message, direct=True)

    def _admit(self, message: Message, direct: bool) -> None:
        """Run `verify` for a new remote (JOIN or OFFER), holding its later messages meanwhile."""
        sender = message.sender
        limit = self._owner.max_remotes
        if len(self.connections) + len(self.admission) >= limit:
            self.admission.forget(sender)
            self._emit(
                "signal:reject", kind=message.kind, detail=f"{sender}: room full ({limit} remotes)"
            )
            return
        self.admission.begin(sender)
        self._spawn(self._admit_task(message, direct), f"peer:admit:{sender}")

    async def _admit_task(self, message: Message, direct: bool) -> None:
        sender = message.sender
        accepted, held, early = await self.admission.decide(sender, message.metadata)
        if not self._owner.joined:
            return
        if not accepted:
            self._emit("signal:reject", kind=message.kind, detail=f"{sender} rejected by verify")
            return
        remote = RemotePeer(self._owner, sender, message.metadata, self._owner.room)
        self.connections[sender] = remote
        if message.type == JOIN:
            remote.start()  # our offer starts a new exchange: earlier candidates are stale
        else:
            remote.receive(OFFER, message.description, "driver")
            for candidate in early:  # held until the description they belong to
                remote.receive(CANDIDATE, candidate, "driver")
        for later, later_direct in held:
            self._route(later, later_direct)

    async def _rejoin_later(self, remote_id: str) -> None:
        await asyncio.sleep(random.random())
        current = self.connections.get(remote_id)
        if remote_id in self.admission or (
            current is not None and current.state not in ("failed", "closed")
        ):
            return  # the remote retried first: its JOIN already gave us a new connection
        await self._announce(remote_id)
