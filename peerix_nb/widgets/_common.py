"""What every peerix_nb widget shares: owned tasks, peer subscriptions, coalesced refreshes.

Widgets run on the kernel's asyncio loop only (no threads). Everything a widget starts is
registered here so that `close()` can undo it: tasks are cancelled, timers cancelled and event
handlers removed from the Peer. A failing task is never silent: it goes to the widget's
`on_error` (shown in the widget) and to the `peerix_nb.widgets` logger.
"""

from __future__ import annotations

import asyncio
import html
import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from ..errors import closest
from ..events import TaskOwner
from ..home import HomeLoop, on_home
from ..home import running_loop as running_loop  # widgets import it from here

if TYPE_CHECKING:
    from ..events import Event
    from ..peer import Peer

logger = logging.getLogger("peerix_nb.widgets")


def describe(error: BaseException) -> str:
    """A one-line, human-readable description of an exception (PeerixError shows its code)."""
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    if code:
        return f"{code}: {message}"
    return f"{type(error).__name__}: {message}"


def check_peer(peer: object, widget: str, *, browser_peer: bool = False) -> None:
    """Refuse what is not a peer, naming it: `RoomWidget(5)` must not fail deep inside.

    With `browser_peer`, a BrowserPeer (its events and EventLog) is accepted too."""
    from ..log import EventLog
    from ..peer import Peer

    if isinstance(peer, Peer):
        return
    if browser_peer and isinstance(getattr(peer, "events", None), EventLog):
        return
    wanted = "a peerix_nb Peer or BrowserPeer" if browser_peer else "a peerix_nb Peer"
    raise TypeError(f"{widget} needs {wanted}, got {type(peer).__name__}")


def check_options(widget: type, options: dict[str, Any]) -> None:
    """Refuse keyword arguments that are neither a parameter nor a trait of `widget`.

    traitlets only warns about them, with a DeprecationWarning that a notebook does not show,
    so `VideoView(stream, fps=10)` would silently do nothing."""
    traits = set(widget.class_trait_names())  # type: ignore[attr-defined]
    unknown = [name for name in options if name not in traits]
    if not unknown:
        return
    init = cast(Any, widget).__init__  # the class's (mypy reads widget.__init__ as an instance's)
    known = traits | set(inspect.signature(init).parameters) - {"self"}
    near = closest(unknown[0], known)
    hint = f" (did you mean {near!r}?)" if near else ""
    raise TypeError(f"{widget.__name__}() got an unexpected keyword argument {unknown[0]!r}{hint}")


def escape(value: object) -> str:
    """HTML-escape anything for ipywidgets.HTML values."""
    return html.escape("" if value is None else str(value), quote=True)


def display_name(metadata: Any, fallback: str) -> str:
    """The `name` a peer announced in its metadata, else `fallback` (usually its id)."""
    if isinstance(metadata, dict):
        name = metadata.get("name")
        if isinstance(name, str) and name:
            return name
    elif isinstance(metadata, str) and metadata:
        return metadata
    return fallback


async def wait_trait(widget: Any, name: str, value: object, timeout: float | None = None) -> None:
    """Wait until trait `name` of `widget` equals `value` (a view's status, say)."""
    if getattr(widget, name) == value:
        return
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def check(change: Any) -> None:
        if change["new"] == value and not future.done():
            future.set_result(None)

    widget.observe(check, names=[name])
    try:
        await asyncio.wait_for(future, timeout)
    finally:
        widget.unobserve(check, names=[name])


def count_views(views: dict[str, int], frontend: str, content: dict[str, Any]) -> None:
    """Record a page's "rendered"/"views" message in `views` (frontend id -> how many views of
    the widget that page shows); a page showing none is forgotten. The widgets' JS sends one
    whenever a view is added or removed, so a kernel knows which pages are watching."""
    count = int(content.get("views", 0) or 0)
    if count > 0:
        views[frontend] = count
    else:
        views.pop(frontend, None)


class Resources:
    """Tasks, timers and Peer handlers owned by one widget; `close()` releases all of them."""

    def __init__(self, on_error: Callable[[BaseException, str], None]) -> None:
        self._on_error = on_error
        self._tasks = TaskOwner(self.report)
        self._timers: set[asyncio.TimerHandle] = set()
        self._handlers: list[tuple[Peer, str, Callable[[Event], Any]]] = []
        self.closed = False
        self.home = HomeLoop()  # the loop of the cell that made the widget

    def hop(self, fn: Callable[..., Any]) -> Callable[..., None]:
        """Wrap a frontend callback to run on the widget's home loop (see peerix_nb/home.py:
        JupyterLab may deliver comm messages in a kernel subshell's thread), reporting errors."""

        def guarded(*args: Any, **kwargs: Any) -> None:
            try:
                fn(*args, **kwargs)
            except Exception as error:
                self.report(error, getattr(fn, "__name__", "callback"))

        guarded.__name__ = getattr(fn, "__name__", "callback")
        return on_home(self.home, guarded)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any] | None:
        """Run `coro` on the running loop as an owned task (None, and closed, once released)."""
        if self.closed:
            coro.close()
            return None
        return self._tasks.spawn(coro, name=f"peerix-widget:{name}")

    def report(self, error: BaseException, where: str) -> None:
        """Log an error and hand it to the widget's `on_error`."""
        logger.error("%s: %s", where, describe(error), exc_info=error)
        try:
            self._on_error(error, where)
        except Exception:  # showing the error must never raise in a callback
            logger.exception("could not show an error of %s", where)

    def watch(
        self, task: asyncio.Future[Any], what: str, done: Callable[[], None] | None = None
    ) -> None:
        """Await a task started elsewhere (e.g. `peer.join(...)`): its failure is reported."""

        async def wait() -> None:
            try:
                await task
            finally:
                if done is not None:
                    done()

        self.spawn(wait(), what)

    def later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle | None:
        """Call `callback` after `delay` seconds unless released first; None outside a loop."""
        loop = running_loop()
        if loop is None or self.closed:
            return None
        holder: list[asyncio.TimerHandle] = []

        def fire() -> None:
            self._timers.discard(holder[0])
            try:
                callback()
            except Exception as error:
                self.report(error, getattr(callback, "__name__", "callback"))

        handle = loop.call_later(delay, fire)
        holder.append(handle)
        self._timers.add(handle)
        return handle

    def on(self, peer: Peer, name: str, handler: Callable[[Event], Any]) -> None:
        """Subscribe `handler` to a Peer event; removed again by `close()`."""
        peer.on(name, handler)
        self._handlers.append((peer, name, handler))

    def close(self) -> None:
        """Cancel tasks and timers and unsubscribe handlers (safe to call twice)."""
        self.closed = True
        for peer, name, handler in self._handlers:
            peer.off(name, handler)
        self._handlers.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._tasks.cancel()


class Coalesce:
    """Run `fn` at most once per `interval` seconds however often `poke()` is called.

    Peer events can come in bursts (a message per data-channel message, a row per signaling
    step); re-rendering a widget for each would flood the comm.
    """

    def __init__(self, resources: Resources, fn: Callable[[], None], interval: float) -> None:
        self._resources = resources
        self._fn = fn
        self._interval = interval
        self._scheduled = False

    def poke(self) -> None:
        if self._scheduled:
            return
        if running_loop() is None:
            self._fn()  # no loop (a plain script): render right away
            return
        if self._resources.later(self._interval, self._fire) is not None:
            self._scheduled = True

    def _fire(self) -> None:
        self._scheduled = False
        self._fn()

    def now(self) -> None:
        """Render immediately (a pending scheduled call still runs, harmlessly)."""
        self._fn()
