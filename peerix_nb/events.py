"""Events: the payload object, the emitter behind `peer.on/once/off`, and owned background tasks.

Event names are `group:action` (`connection:connected`, `channel:message`, ...). A handler
subscribed to the group (`connection`) receives every event of that group; `*` receives
everything (the EventLog subscribes that way, like any user would).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .errors import PeerixError, closest
from .home import running_loop

if TYPE_CHECKING:
    from .log import EventLog
    from .seams import RemoteInfo

logger = logging.getLogger("peerix_nb")

Handler = Callable[["Event"], Any]
H = TypeVar("H", bound=Handler)


#: Every event a peer emits (a Peer, and a BrowserPeer from its page), by group: `group:action`.
#: A peer's `on()` refuses other names, so a misspelt one fails at once instead of never firing.
EVENTS: dict[str, tuple[str, ...]] = {
    "room": ("join", "leave"),
    "driver": ("active", "inactive"),
    "connection": ("new", "connecting", "connected", "disconnected", "failed", "closed"),
    "channel": ("new", "open", "close", "message", "error"),
    "stream": ("add", "remove"),
    "track": ("add", "remove"),
    "error": (),
    "signal": (
        "send",
        "recv",
        "drop",
        "hold",
        "ignore",
        "reject",
        "restart",
        "rollback",
        "withdraw",
    ),
    "ice": ("gathering", "state"),
    "dtls": ("state",),
    "control": ("open",),
    # an offer/answer exchange: `kind` local (our offer) or remote (theirs), `via` its path
    "negotiation": ("start", "done"),
    "media": ("first-frame",),
    "network": ("change",),  # emulated network conditions (network.py) set or cleared
}
#: What a peer's `on()`, `once()` and `wait_for()` accept: an event, a group, or `*`.
EVENT_NAMES = frozenset(
    [
        "*",
        *EVENTS,
        *(f"{group}:{action}" for group, actions in EVENTS.items() for action in actions),
    ]
)


def unknown_event(name: str) -> ValueError:
    """The error for an event name no peer emits, with the closest known one if any."""
    near = closest(name, EVENT_NAMES)
    hint = f"; did you mean {near!r}?" if near else "."
    return ValueError(
        f"no peer event is called {name!r}{hint} Events are `group:action` (see"
        f" peerix_nb.events.EVENTS); a group ({', '.join(EVENTS)}) gets all of its events,"
        " '*' gets everything"
    )


def group_of(event_name: str) -> str:
    """The group of an event name: the part before the first `:` (`channel:open` -> `channel`)."""
    return event_name.partition(":")[0]


@dataclass(slots=True, kw_only=True, repr=False, eq=False)
class Event:
    """What a handler receives: `name` plus the fields that apply to that event (others are None)."""

    name: str
    id: str = ""  # the local peer's id
    remote: RemoteInfo | None = None  # a kernel RemotePeer, or a BrowserPeer's BrowserRemote
    state: str | None = None
    channel: Any = None
    label: str | None = None
    data: Any = None
    stream: Any = None
    track: Any = None
    error: PeerixError | None = None
    # Rows for the EventLog: signaling steps and transport phases.
    kind: str | None = None  # offer / answer / candidate / join / audio / video ...
    via: str | None = None  # "driver" or "control" for signaling rows
    size: int | None = None  # payload size in bytes where it applies
    detail: Any = None

    @property
    def group(self) -> str:
        """The event's group (`connection` for `connection:connected`): `on(group)` gets it."""
        return group_of(self.name)

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}"]
        for f in fields(self):
            if f.name in ("name", "id"):
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "remote":
                value = value.id
            elif f.name == "data" and isinstance(value, (bytes, bytearray, memoryview)):
                value = f"<{len(value)} bytes>"
            parts.append(f"{f.name}={value!r}")
        return f"Event({', '.join(parts)})"


class TaskOwner:
    """Owns background tasks: keeps them referenced, reports their failures, cancels them all."""

    def __init__(self, on_error: Callable[[BaseException, str], None]) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_error = on_error

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name or None)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._on_error(error, task.get_name())

    def __len__(self) -> int:
        return len(self._tasks)

    def cancel(self) -> None:
        """Cancel every owned task without waiting (for synchronous `close()` methods)."""
        for task in list(self._tasks):
            task.cancel()

    async def cancel_all(self, *, keep: asyncio.Task[Any] | None = None) -> None:
        """Cancel every owned task (except `keep`, typically the caller) and wait for them."""
        tasks = [t for t in self._tasks if t is not keep and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class Emitter:
    """`on`/`once`/`off`/`emit`/`wait_for` with group names; sync and async handlers."""

    def __init__(self, owner: TaskOwner | None = None, names: frozenset[str] | None = None) -> None:
        self._handlers: dict[str, list[tuple[Handler, bool]]] = {}
        self._names = names  # the names on()/once()/wait_for() accept (None: any)
        self._owner = owner or TaskOwner(
            lambda error, name: logger.error("%s failed: %r", name, error)
        )

    # -- subscription ---------------------------------------------------------------------
    @overload
    def on(self, name: str, handler: None = None) -> Callable[[H], H]: ...
    @overload
    def on(self, name: str, handler: H) -> H: ...
    def on(self, name: str, handler: Handler | None = None) -> Any:
        """Call `handler(event)` for `name` (an event or a group). Usable as a decorator."""
        return self._subscribe(name, handler, once=False)

    @overload
    def once(self, name: str, handler: None = None) -> Callable[[H], H]: ...
    @overload
    def once(self, name: str, handler: H) -> H: ...
    def once(self, name: str, handler: Handler | None = None) -> Any:
        """Like `on`, but only for the next matching event."""
        return self._subscribe(name, handler, once=True)

    def off(self, name: str, handler: Handler | None = None) -> None:
        """Remove `handler` from `name`, or every handler of `name` when none is given."""
        if handler is None:
            self._handlers.pop(name, None)
            return
        entries = self._handlers.get(name)
        if entries:
            # ==, not `is`: each access to a bound method makes a new (equal) object
            entries[:] = [e for e in entries if e[0] != handler]
            if not entries:
                del self._handlers[name]

    def _subscribe(self, name: str, handler: Handler | None, once: bool) -> Any:
        if not isinstance(name, str) or not name:
            raise TypeError(f"event name must be a non-empty string, got {name!r}")
        if self._names is not None and name not in self._names:
            raise unknown_event(name)
        if handler is None:

            def decorator(fn: H) -> H:
                self._subscribe(name, fn, once)
                return fn

            return decorator
        if not callable(handler):
            raise TypeError(f"handler for {name!r} must be callable, got {handler!r}")
        self._handlers.setdefault(name, []).append((handler, once))
        return handler

    # -- emission -------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        """Deliver `event` to `*`, then exact-name, then group handlers."""
        name = event.name
        group = group_of(name)
        for key in ("*", name) if group == name else ("*", name, group):
            entries = self._handlers.get(key)
            if not entries:
                continue
            snapshot = list(entries)
            if any(once for _, once in snapshot):
                remaining = [e for e in entries if not e[1]]
                if remaining:
                    self._handlers[key] = remaining
                else:
                    del self._handlers[key]
            for handler, _once in snapshot:
                self._call(handler, event)

    def _call(self, handler: Handler, event: Event) -> None:
        try:
            result = handler(event)
        except Exception as error:  # a user's handler must never break the library
            self.handler_failed(error, event)
            return
        if inspect.isawaitable(result):
            self._await_handler(result, event)

    def _await_handler(self, result: Awaitable[Any], event: Event) -> None:
        async def run() -> None:
            try:
                await result
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.handler_failed(error, event)

        self._owner.spawn(run(), name=f"handler:{event.name}")

    def handler_failed(self, error: BaseException, event: Event) -> None:
        """A handler raised; subclasses turn this into an `error` event."""
        logger.error("handler for %s raised %r", event.name, error)

    # -- waiting --------------------------------------------------------------------------
    async def wait_for(
        self,
        name: str,
        where: Callable[[Event], bool] | None = None,
        timeout: float | None = None,
    ) -> Event:
        """Wait for the next event matching `name` (and `where`), up to `timeout` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Event] = loop.create_future()

        def settle(outcome: Event | BaseException) -> None:
            if future.done():
                return
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        def check(event: Event) -> None:
            if future.done():
                return
            try:
                ok = where is None or where(event)
            except Exception as error:
                outcome: Event | BaseException = error
            else:
                if not ok:
                    return
                outcome = event
            # The waiter may sit on another thread's loop (a kernel subshell, see home.py).
            if running_loop() is loop:
                settle(outcome)
            else:
                loop.call_soon_threadsafe(settle, outcome)

        self.on(name, check)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no {name!r} event{' matching the condition' if where else ''} within {timeout} s"
            ) from None
        finally:
            self.off(name, check)


class Observable:
    """`on`/`once`/`off`/`wait_for` for an object whose events come from `self._emitter`."""

    _emitter: Emitter
    events: EventLog  # what it emitted: wait_for() reads it to explain a timeout

    def on(self, name: str, handler: Handler | None = None) -> Any:
        """Call `handler(event)` for `name` (`connection`, `channel:message`, ...); also a decorator."""
        return self._emitter.on(name, handler)

    def once(self, name: str, handler: Handler | None = None) -> Any:
        """Like `on`, for the next matching event only."""
        return self._emitter.once(name, handler)

    def off(self, name: str, handler: Handler | None = None) -> None:
        """Remove a handler (or all handlers of `name`)."""
        self._emitter.off(name, handler)

    async def wait_for(
        self, name: str, where: Callable[[Event], bool] | None = None, timeout: float | None = None
    ) -> Event:
        """Wait for the next event `name` for which `where(event)` is true."""
        try:
            return await self._emitter.wait_for(name, where, timeout)
        except TimeoutError as error:
            # The classic mistake: waiting for an event that already came. Say so when it did.
            ago = self.events.seconds_since(name)
            if ago is None or ago < (timeout or 0):
                raise
            checked = " (not checked against `where`)" if where is not None else ""
            raise TimeoutError(
                f"{error}; one came {ago:.1f} s before this wait began{checked}: wait_for() waits"
                " for the next one, so start waiting before the step that causes it"
                " (task = asyncio.ensure_future(peer.wait_for(...)), then act, then await task)"
            ) from None
