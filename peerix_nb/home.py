"""HomeLoop: run calls on the event loop an object belongs to, whichever thread makes them.

Why: ipykernel 7.4 with JupyterLab 4.6 may hand a widget's comm messages to a kernel *subshell*,
a thread with its own asyncio loop (seen here: a RoomWidget's Leave click ran in thread
`subshell-…` while its Join had run on the main loop). aiortc objects, asyncio primitives and
our tasks belong to the loop that made them; touching them from another loop fails ("Future
attached to a different loop") or races. So a Peer, and each widget, remembers its home loop
and hops calls made elsewhere onto it. This is not protocol work in threads: the kernel made
the thread; we only leave it as soon as we can.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: How long a synchronous call from another thread waits for the home loop to answer.
CALL_TIMEOUT = 10.0


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class HomeLoop:
    """The loop an object lives on: bound to the first running loop it sees."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = running_loop()

    def elsewhere(self) -> asyncio.AbstractEventLoop | None:
        """The home loop if the caller is NOT on it (and it is alive to take the call), else None.

        Binds (or re-binds, when the old loop is gone) to the caller's running loop on the way.
        """
        here = running_loop()
        home = self.loop
        if home is None or home.is_closed() or (not home.is_running() and here is not None):
            self.loop = here
            return None
        if here is home or not home.is_running():
            return None
        return home

    def start(
        self, coro: Coroutine[Any, Any, T], spawn: Callable[[Coroutine[Any, Any, T]], Awaitable[T]]
    ) -> Any:
        """`spawn(coro)` on the home loop; an awaitable of its result for the caller's loop."""
        home = self.elsewhere()
        if home is None:
            return spawn(coro)

        async def on_home() -> T:
            return await spawn(coro)

        future = asyncio.run_coroutine_threadsafe(on_home(), home)
        caller = running_loop()
        return asyncio.wrap_future(future, loop=caller) if caller is not None else future

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call `fn(*args)` on the home loop and return its result (waits for it if elsewhere)."""
        home = self.elsewhere()
        if home is None:
            return fn(*args)
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(fn(*args))
            except BaseException as error:
                result.set_exception(error)

        home.call_soon_threadsafe(run)
        return result.result(CALL_TIMEOUT)

    def post(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run `fn(*args)` on the home loop soon, without waiting; True if it had to hop."""
        home = self.elsewhere()
        if home is None:
            fn(*args)
            return False
        home.call_soon_threadsafe(fn, *args)
        return True


def on_home(home: HomeLoop, fn: Callable[..., Any]) -> Callable[..., None]:
    """Wrap a frontend callback (comm message, click, trait change) to run on `home`.

    The wrapped call returns nothing: when it has to hop, it runs later, on the home loop.
    """

    def hopping(*args: Any, **kwargs: Any) -> None:
        home.post(lambda: fn(*args, **kwargs))

    hopping.__name__ = getattr(fn, "__name__", "callback")
    hopping.__doc__ = fn.__doc__
    return hopping
