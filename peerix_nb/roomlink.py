"""A peer's signaling through its driver: its room's namespaces, messages out and in, its JOIN.

Out: a message is encoded (signaling.py) and dispatched, with a `signal:send` row; while the
driver is inactive nothing is sent (docs/PROTOCOL.md), and a `signal:drop` row says so. In: a
message that cannot be decoded is a `signal:drop` row and an `error` event, and our own
broadcasts, echoed by the driver, are dropped. The JOIN goes to the room when joining, again
with back-off for as long as the peer stays joined (REANNOUNCE_FIRST says why), and directly to
a remote whose connection failed. `RoomLink` does this for one Peer, in one room at a time; what
the messages mean is the Peer's business.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import ErrorCode, PeerixError
from .events import Event
from .signaling import JOIN, LEAVE, Message, SignalingCodec

if TYPE_CHECKING:
    from .drivers.base import Driver
    from .seams import RemoteInfo

#: A joined peer repeats its room JOIN after ~1 s, then at doubling intervals up to
#: REANNOUNCE_MAX seconds, for as long as it stays joined. JOIN has no acknowledgement
#: (docs/PROTOCOL.md): a JOIN lost on its way, or the direct JOIN retry after `failed`, leaves
#: that pair with no attempt on either side, silently and for good. A peer that already has a
#: connection to the sender ignores a room JOIN (remotes.py), as browser Peerix does, so a repeat
#: costs one message.
REANNOUNCE_FIRST = 1.0
REANNOUNCE_MAX = 30.0

Handler = Callable[[bytes], None]
Report = Callable[[BaseException, ErrorCode, "RemoteInfo | None"], None]


class RoomLink:
    """The driver side of one peer: `subscribe` to a room, `dispatch`, `decode`, `announce`.

    `emit(event)` and `report(error, code, remote)` are the peer's.
    """

    def __init__(
        self,
        peer_id: str,
        driver: Driver,
        codec: SignalingCodec,
        emit: Callable[[Event], None],
        report: Report,
    ) -> None:
        self.room = ""
        self.metadata: Any = None
        self.announced = False  # the room JOIN went out since subscribe() (or waits for the driver)
        self._id = peer_id
        self._driver = driver
        self._codec = codec
        self._emit = emit
        self._report = report
        self._subscriptions: list[tuple[list[str], Handler]] = []

    def address(self, to: str | None = None) -> list[str]:
        """The namespace of the room (`to` None), or of one peer in it."""
        return self._codec.namespace([self.room] if to is None else [self.room, to])

    # -- the room's namespaces ----------------------------------------------------------------
    async def subscribe(
        self, room: str, metadata: Any, on_room: Handler, on_direct: Handler
    ) -> None:
        """Listen to `room` and to this peer's own namespace in it (a PeerixError if the
        driver refuses either; then neither is left subscribed)."""
        self.room, self.metadata, self.announced = room, metadata, False
        wanted = [(self.address(), on_room), (self.address(self._id), on_direct)]
        try:
            for namespace, handler in wanted:
                await self._driver.subscribe(namespace, handler)
                self._subscriptions.append((namespace, handler))
        except BaseException as error:
            for namespace, handler in self._subscriptions:
                await self._driver.unsubscribe(namespace, handler)
            self._subscriptions = []
            if isinstance(error, Exception):
                raise PeerixError.wrap(error, "PEER_SIGNALING_ERROR") from error
            raise

    async def unsubscribe(self) -> None:
        """Stop listening (a failure is an `error` event)."""
        subscriptions, self._subscriptions = self._subscriptions, []
        for namespace, handler in subscriptions:
            try:
                await self._driver.unsubscribe(namespace, handler)
            except Exception as error:
                self._report(error, "PEER_SIGNALING_ERROR", None)

    # -- out -----------------------------------------------------------------------------------
    async def dispatch(
        self,
        to: str | None,
        message: list[Any],
        kind: str,
        remote: RemoteInfo | None = None,
        detail: str | None = None,
    ) -> bool:
        """Encode and dispatch to the room or peer `to`; False when the driver is inactive (a
        `signal:drop` row)."""
        data = self._codec.encode(message)
        if not self._driver.active:
            # docs/PROTOCOL.md: an inactive driver dispatches nothing; say so rather than "sent".
            self._emit(
                Event(
                    name="signal:drop",
                    remote=remote,
                    kind=kind,
                    via="driver",
                    size=len(data),
                    detail="driver inactive: not sent",
                )
            )
            return False
        await self._driver.dispatch(self.address(to), data)
        self._emit(
            Event(
                name="signal:send",
                remote=remote,
                kind=kind,
                via="driver",
                size=len(data),
                detail=detail,
            )
        )
        return True

    async def dispatch_or_report(
        self, to: str, message: list[Any], kind: str, remote: RemoteInfo | None
    ) -> None:
        """`dispatch`, a failure being an `error` event (for sends nobody awaits)."""
        try:
            await self.dispatch(to, message, kind, remote)
        except Exception as error:
            self._report(error, "PEER_SIGNALING_ERROR", remote)

    async def leave(self) -> None:
        """Tell the room we leave (if the driver can carry it; a failure is an `error` event)."""
        try:
            if self._driver.active:
                await self.dispatch(None, [LEAVE, self._id], "leave")
        except Exception as error:
            self._report(error, "PEER_SIGNALING_ERROR", None)

    async def announce(self, to: str | None = None) -> None:
        """JOIN the room, or the one peer `to` (the retry after `failed`); nothing while the
        driver is inactive."""
        if not self._driver.active:
            return
        detail = None if to is None else f"to {to}"
        sent = await self.dispatch(to, [JOIN, self._id, self.metadata], "join", None, detail)
        if sent and to is None:
            self.announced = True

    async def reannounce(self, joined: Callable[[], bool]) -> None:
        """Repeat the room JOIN with back-off while `joined()` (the peer's task)."""
        interval = REANNOUNCE_FIRST
        while joined():
            # Jittered, so that a room that joined together does not announce together.
            await asyncio.sleep(interval * (0.5 + random.random()))
            try:
                if joined():
                    await self.announce()
            except Exception as error:  # a driver hiccup must not end the repeats
                self._report(error, "PEER_SIGNALING_ERROR", None)
            interval = min(interval * 2, REANNOUNCE_MAX)

    # -- in ------------------------------------------------------------------------------------
    def decode(self, data: bytes) -> Message | None:
        """The message in `data`; None if it cannot be decoded (a `signal:drop` row and an
        `error` event) or is our own broadcast echoed by the driver."""
        try:
            message = self._codec.decode(data)
        except PeerixError as error:
            self._emit(
                Event(
                    name="signal:drop",
                    via="driver",
                    size=len(data) if isinstance(data, bytes) else None,
                    detail=error.message,
                )
            )
            self._report(error, "PEER_SIGNALING_ERROR", None)
            return None
        if message.sender == self._id:
            return None  # our own broadcast, echoed by the driver
        return message
