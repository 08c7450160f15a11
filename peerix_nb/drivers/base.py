"""Driver: the interface every signaling transport implements (docs/PROTOCOL.md, "Namespaces and drivers")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import PeerixError
from ..events import Emitter, Event

#: What a driver calls for each message it delivers: `handler(message_bytes)`.
MessageHandler = Callable[[bytes], Any]


class Subscribers:
    """Handlers by namespace key (the parts joined by ":"): the registry of the drivers that
    deliver locally (MemoryDriver, BroadcastChannelDriver; the JS drivers share one too)."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[MessageHandler]] = {}

    @staticmethod
    def key(namespace: Sequence[str]) -> str:
        return ":".join(namespace)

    def add(self, namespace: Sequence[str], handler: MessageHandler) -> None:
        self._by_key.setdefault(self.key(namespace), []).append(handler)

    def remove(self, namespace: Sequence[str], handler: MessageHandler) -> bool:
        """Forget one subscription of `handler` (False: there was none)."""
        key = self.key(namespace)
        handlers = self._by_key.get(key)
        if not handlers or handler not in handlers:
            return False
        handlers.remove(handler)
        if not handlers:
            del self._by_key[key]
        return True

    def of(self, key: str) -> list[MessageHandler]:
        """A copy of the handlers of `key` (delivery may change the registry)."""
        return list(self._by_key.get(key, ()))

    def keys(self) -> list[str]:
        return sorted(self._by_key)

    def count(self) -> int:
        """How many (namespace, handler) subscriptions exist; handy to check for leaks."""
        return sum(len(h) for h in self._by_key.values())


class Driver(Emitter):
    """Moves opaque byte messages between peers, by namespace (a list of string parts).

    Subclass it and implement `subscribe`, `unsubscribe` and `dispatch` (all async): that is
    enough, because a driver is active unless it says otherwise (docs/PROTOCOL.md, as in Peerix).
    A transport that must connect first starts with `super().__init__(active=False)` and calls
    `set_active(True)` once it can carry messages (NatsDriver, BroadcastChannelDriver); any
    driver calls `set_active(False)` while it cannot. A peer that joins while its driver is
    inactive says so (a `driver:inactive` event and a warning) and sends its JOIN as soon as
    the driver becomes active; a joined peer announces itself again whenever that happens.
    Report transport trouble with `report_error`. Listeners use
    `on("active"|"inactive"|"error", fn)`.
    """

    def __init__(self, *, active: bool = True) -> None:
        super().__init__()
        self._active = bool(active)

    @property
    def active(self) -> bool:
        """True while messages can be dispatched."""
        return self._active

    def set_active(self, active: bool) -> None:
        """Flip the active flag and emit `active` / `inactive` on a change."""
        active = bool(active)
        if active == self._active:
            return
        self._active = active
        self.emit(
            Event(name="active" if active else "inactive", state="active" if active else "inactive")
        )

    def report_error(self, error: BaseException | str) -> None:
        """Emit an `error` event (code PEER_SIGNALING_ERROR unless the error has its own)."""
        if isinstance(error, str):
            error = PeerixError("PEER_SIGNALING_ERROR", error)
        self.emit(Event(name="error", error=PeerixError.wrap(error, "PEER_SIGNALING_ERROR")))

    async def subscribe(self, namespace: Sequence[str], handler: MessageHandler) -> None:
        """Deliver every message dispatched to `namespace` to `handler(bytes)`."""
        raise NotImplementedError

    async def unsubscribe(self, namespace: Sequence[str], handler: MessageHandler) -> None:
        """Stop delivering `namespace` to `handler`."""
        raise NotImplementedError

    async def dispatch(self, namespace: Sequence[str], message: bytes) -> None:
        """Send `message` to every subscriber of `namespace`."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release the transport (connections, sockets). Optional."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} active={self._active}>"
