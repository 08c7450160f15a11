"""Test-only helpers: an event recorder for assertions, and a driver that drops messages.

Rooms and waits (`room`, `wait_until`, `channels_open`...) are in testbed/rooms.py, shared with
the benchmarks.
"""

from __future__ import annotations

from peerix_nb import Event, MemoryDriver, Peer, PeerixError
from peerix_nb.signaling import SignalingCodec


class Recorder:
    """Collects the events of one peer, for assertions on names and order."""

    def __init__(self, peer: Peer, name: str = "*") -> None:
        self.events: list[Event] = []
        peer.on(name, self.events.append)

    def names(self, prefix: str = "") -> list[str]:
        return [e.name for e in self.events if e.name.startswith(prefix)]

    def errors(self) -> list[Event]:
        return [e for e in self.events if e.name == "error"]


class DropFirst(MemoryDriver):
    """A MemoryDriver that drops the first `count` messages of one type (default compression)."""

    def __init__(self, message_type: int, count: int = 1) -> None:
        super().__init__()
        self.message_type, self.left = message_type, count

    async def dispatch(self, namespace: list[str], message: bytes) -> None:
        try:
            kind = SignalingCodec().decode(message).type
        except PeerixError:
            kind = None
        if kind == self.message_type and self.left > 0:
            self.left -= 1
            return
        await super().dispatch(namespace, message)
