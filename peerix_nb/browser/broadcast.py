"""BroadcastChannelDriver: kernel peers signal through the browser's BroadcastChannel.

A driver that is also a small widget. Once displayed, its view relays the kernel's driver
messages to and from `BroadcastChannel(name)` in that browser (docs/PROTOCOL.md: it posts
`[parts.join(':'), bytes]`), so kernels of notebooks open in one browser, and browser peers
there, find each other without any server. Until a view exists there is no path to the
browser: the driver is inactive, and using it says so in an `error` event.

Routes, for a message dispatched by a kernel peer on this driver:
- to peers of this same kernel that share the driver: delivered here (a BroadcastChannel never
  delivers a message to the object that posted it, so the page cannot echo it back);
- to other kernels and browser peers: kernel -> its page's view -> BroadcastChannel -> their
  page's view (or their own BroadcastChannel) -> their kernel.
Only one page relays (the first that renders the widget; another takes over when that one's
views go): two relaying pages would post everything twice and hear each other's posts.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Sequence
from typing import Any

import anywidget
import traitlets

from ..drivers.base import Driver, MessageHandler, Subscribers
from ..errors import PeerixError
from ..home import HomeLoop, on_home
from ..widgets._common import check_options, count_views, logger
from ._bundle import bundle


class _Done:
    """An already finished awaitable: `close()` is sync for the widget and awaitable for a driver."""

    def __await__(self) -> Any:
        return iter(())


class BroadcastChannelDriver(anywidget.AnyWidget, Driver):
    """Signaling over the browser's `BroadcastChannel(name)`, relayed by this widget's view.

    `driver = BroadcastChannelDriver(name="peerix")`, display it (`driver` alone in a cell),
    then `Peer(driver=driver)`. A `BrowserPeer(room, driver=driver)` in the same browser uses
    the BroadcastChannel directly. All peers must use the same name (and signaling settings).
    """

    _esm = bundle("broadcast.js")
    _css = pathlib.Path(__file__).with_name("browser.css")

    name = traitlets.Unicode("peerix").tag(sync=True)
    #: Keys (namespace parts joined by ":") some kernel peer subscribed to; the view forwards
    #: only those from the channel.
    subscribed = traitlets.List(traitlets.Unicode()).tag(sync=True)
    #: "inactive: not displayed" until a view relays, then "active" (shown by the view).
    status = traitlets.Unicode("inactive: not displayed").tag(sync=True)

    def __init__(self, name: str = "peerix", **kwargs: Any) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"BroadcastChannel name must be a non-empty string, got {name!r}")
        check_options(type(self), kwargs)
        super().__init__(name=name, **kwargs)
        # Inactive until a view relays (a Driver starts active; anywidget's __init__ chain
        # cannot pass Driver's `active=False` through, and nothing listens yet).
        self.set_active(False)
        self._subscribers = Subscribers()
        self._views: dict[str, int] = {}  # page (frontend id) -> views on it
        self._relay: str | None = None  # the page that relays
        self._warned = False
        self._handler_tasks: set[asyncio.Future[Any]] = set()
        self.messages_out = 0
        self.messages_in = 0
        # Comm messages may come in a kernel subshell's thread: handle them on our loop (home.py).
        self._home = HomeLoop()
        self.on_msg(on_home(self._home, self._on_browser_message))

    # -- Driver API -------------------------------------------------------------------------
    async def subscribe(self, namespace: Sequence[str], handler: MessageHandler) -> None:
        self._subscribers.add(namespace, handler)
        self._sync_keys()
        self._warn_inactive()

    async def unsubscribe(self, namespace: Sequence[str], handler: MessageHandler) -> None:
        if self._subscribers.remove(namespace, handler):
            self._sync_keys()

    async def dispatch(self, namespace: Sequence[str], message: bytes) -> None:
        if not self.active:
            self._warn_inactive()
            return
        key = Subscribers.key(namespace)  # what is posted with the message
        data = bytes(message)
        self._deliver_soon(key, data)  # peers of this kernel sharing the driver
        self.messages_out += 1
        self.send({"type": "post", "key": key, "to": self._relay}, buffers=[data])

    def close(self) -> Any:
        """Close the widget and stop relaying (sync for the widget, awaitable for a driver)."""
        self._relay = None
        self._views.clear()
        if getattr(self, "_active", False):
            self.set_active(False)
        # The widget's close (ipywidgets, sync); Driver.close is async and has nothing to do.
        anywidget.AnyWidget.close(self)
        return _Done()

    def subscriber_count(self) -> int:
        """How many (namespace, handler) subscriptions exist."""
        return self._subscribers.count()

    # -- delivery ---------------------------------------------------------------------------
    def _deliver_soon(self, key: str, data: bytes) -> None:
        handlers = self._subscribers.of(key)
        if not handlers:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for handler in handlers:
            if loop is None:
                self._deliver(handler, data)
            else:
                loop.call_soon(self._deliver, handler, data)

    def _deliver(self, handler: MessageHandler, data: bytes) -> None:
        try:
            result = handler(data)
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                self._handler_tasks.add(task)
                task.add_done_callback(self._handler_tasks.discard)
        except Exception as error:  # one subscriber's bug must not stop delivery to others
            self.report_error(error)

    def _sync_keys(self) -> None:
        keys = self._subscribers.keys()
        if keys != list(self.subscribed):
            self.subscribed = keys

    def _warn_inactive(self) -> None:
        if self.active or self._warned:
            return
        self._warned = True
        self.report_error(
            PeerixError(
                "PEER_SIGNALING_ERROR",
                f"BroadcastChannelDriver {self.name!r} is not displayed: its signaling goes "
                "through the browser, so show it in a cell (put `driver` on the last line); "
                "peers join as soon as it is displayed",
            )
        )

    # -- the views ----------------------------------------------------------------------------
    def _on_browser_message(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        frontend = str(content.get("frontend", ""))
        if kind in ("rendered", "views"):
            count_views(self._views, frontend, content)
            self._elect()
        elif kind == "recv" and buffers and frontend == self._relay:
            self.messages_in += 1
            self._deliver_soon(str(content.get("key", "")), bytes(buffers[0]))

    def _elect(self) -> None:
        """Keep exactly one relaying page while any page shows the widget."""
        if self._relay not in self._views:
            self._relay = next(iter(self._views), None)
            self.send({"type": "own", "to": self._relay})
            logger.debug("BroadcastChannelDriver %s: relaying page %s", self.name, self._relay)
        if self._relay is not None:
            self._warned = False
            self.status = "active"
            self.set_active(True)
        else:
            self.status = "inactive: no view (display the driver again)"
            self.set_active(False)

    def __repr__(self) -> str:
        return f"<BroadcastChannelDriver {self.name!r} active={self.active}>"


__all__ = ["BroadcastChannelDriver"]
