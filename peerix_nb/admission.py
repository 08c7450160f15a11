"""Who gets a connection: `verify`, and what a sender sends while it is being decided about.

A new remote (its JOIN or first OFFER) is let in only if `verify(info)` says so (a bool, or an
awaitable of one; docs/PROTOCOL.md). Meanwhile its later driver messages are held, up to
MAX_HELD_MESSAGES, and replayed in order once it is in. Trickled candidates that overtake the
OFFER they belong to (a browser on a reordering driver) are kept too, for at most `limit`
senders and MAX_QUEUED_CANDIDATES each, and applied after that OFFER. `Admission` keeps this
for one Peer; the Peer decides what to do with the outcome.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .errors import PeerixError
from .negotiation import MAX_QUEUED_CANDIDATES
from .signaling import Message

#: Messages held per sender while `verify` decides about it.
MAX_HELD_MESSAGES = 100


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What `verify` receives about a peer asking to connect."""

    id: str
    metadata: Any

    def __getitem__(self, key: str) -> Any:  # also readable like the dict browser Peerix passes
        return getattr(self, key)


Verify = Callable[[PeerInfo], "bool | Awaitable[bool]"]


class Admission:
    """The senders being decided about, their held messages and their early candidates.

    `report(error)` turns a failing `verify` into an `error` event (the sender is refused)."""

    def __init__(self, report: Callable[[BaseException], None]) -> None:
        self.verify: Verify | None = None
        self.pending: dict[str, list[tuple[Message, bool]]] = {}  # sender -> (message, direct)
        self.early: dict[str, list[dict[str, Any]]] = {}  # sender -> candidates before its OFFER
        self._report = report

    def __len__(self) -> int:
        """Senders being decided about now (they count against the peer's `max_remotes`)."""
        return len(self.pending)

    def __contains__(self, sender: object) -> bool:
        return sender in self.pending

    def hold(self, message: Message, direct: bool) -> bool:
        """Hold `message` if its sender is being decided about (True: held, or dropped past
        MAX_HELD_MESSAGES); False: route it now."""
        held = self.pending.get(message.sender)
        if held is None:
            return False
        if len(held) < MAX_HELD_MESSAGES:
            held.append((message, direct))
        return True

    def keep_early(self, sender: str, candidate: dict[str, Any], limit: int) -> bool:
        """Keep a candidate from a sender with no connection yet; False if there is no room."""
        early = self.early.get(sender)
        if early is None and len(self.early) < limit:
            early = self.early[sender] = []
        if early is None or len(early) >= MAX_QUEUED_CANDIDATES:
            return False
        early.append(candidate)
        return True

    def forget(self, sender: str) -> None:
        """The sender left (or is refused before being decided about): drop its candidates."""
        self.early.pop(sender, None)

    def clear(self) -> None:
        self.pending.clear()
        self.early.clear()

    def begin(self, sender: str) -> None:
        """From now on, hold `sender`'s messages (until `decide` is done)."""
        self.pending[sender] = []

    async def decide(
        self, sender: str, metadata: Any
    ) -> tuple[bool, list[tuple[Message, bool]], list[dict[str, Any]]]:
        """Run `verify` for `sender` (after `begin`); returns whether it is in, the messages
        held and its early candidates (both taken whatever the outcome: left behind, a refused
        sender's entry would hold a place in the store until leave())."""
        try:
            accepted = await self._verified(sender, metadata)
        except BaseException:
            self.pending.pop(sender, None)
            self.early.pop(sender, None)
            raise
        return accepted, self.pending.pop(sender, []), self.early.pop(sender, [])

    async def _verified(self, sender: str, metadata: Any) -> bool:
        if self.verify is None:
            return True
        try:
            result = self.verify(PeerInfo(sender, metadata))
            if inspect.isawaitable(result):
                result = await result
        except Exception as error:
            self._report(
                PeerixError("PEER_SIGNALING_ERROR", f"verify raised {error!r}", cause=error)
            )
            return False
        return bool(result)
