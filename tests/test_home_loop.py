"""Calls from another thread's event loop (a Jupyter kernel subshell) run on the peer's own loop.

ipykernel 7.4 with JupyterLab 4.6 may deliver a widget's comm messages in a subshell thread with
its own asyncio loop; a button there calling `peer.leave()` used to fail with "Future attached to
a different loop". Here a real thread with its own loop plays the subshell.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from peerix_nb.widgets import RoomWidget
from testbed.rooms import channels_open, leave_all, room, wait_until


async def in_subshell(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run `work()` on a fresh event loop in another thread; await its result here."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def thread() -> None:
        try:
            result = asyncio.run(work())
        except BaseException as error:
            loop.call_soon_threadsafe(done.set_exception, error)
        else:
            loop.call_soon_threadsafe(done.set_result, result)

    threading.Thread(target=thread, name="subshell-test", daemon=True).start()
    return await asyncio.wait_for(done, 20)


async def test_peer_api_from_another_threads_loop_runs_on_the_peers_loop():
    a, b = await room(2, ids=["a", "b"], channels=["chat"])
    home = asyncio.get_running_loop()
    heard: list[str] = []
    b.on("channel:message", lambda e: heard.append(e.data))

    async def from_the_subshell() -> tuple[int, bool]:
        opened = asyncio.ensure_future(
            a.wait_for("channel:open", lambda e: e.label == "late", timeout=10)
        )
        await asyncio.sleep(0)  # the waiter is subscribed before the channel can open
        await a.open("late")  # returns an awaitable bridged to this loop
        got = await opened
        sent = a.send("hi from a subshell", label="chat")
        await a.connections["b"].open("direct")
        return sent, got.channel.transport is not None

    sent, ok = await in_subshell(from_the_subshell)
    assert sent == 1 and ok
    await wait_until([b], lambda: heard == ["hi from a subshell"])
    await wait_until(
        [a, b], lambda: channels_open([a, b], "late") and channels_open([a, b], "direct")
    )
    assert all(t.get_loop() is home for t in a._tasks._tasks)

    async def leave_there() -> None:
        await a.leave()

    await in_subshell(leave_there)
    assert not a.joined and not a.connections
    await leave_all([b])


async def test_widget_clicks_from_another_thread_act_on_the_home_loop():
    from peerix_nb import MemoryDriver, Peer

    driver = MemoryDriver()
    ada, bob = Peer(id="ada", driver=driver), Peer(id="bob", driver=driver)
    await bob.join(room="lobby", metadata={"name": "bob"})
    widget = RoomWidget(ada, room="lobby", name="ada")

    async def click(button) -> None:
        button.click()  # ipywidgets calls the on_click handlers right here, in this thread

    await in_subshell(lambda: click(widget.join_button))
    await wait_until(
        [ada, bob], lambda: "bob" in ada.connections and ada.connections["bob"].state == "connected"
    )
    await in_subshell(lambda: click(widget.leave_button))
    await wait_until([ada], lambda: not ada.joined)
    assert "different loop" not in widget.status.value
    widget.close()
    await leave_all([bob])
