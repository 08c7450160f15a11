"""BroadcastChannelDriver is an Emitter too: async handlers of its events run (mypy found its
relaying page id overwriting the Emitter's task owner)."""

from __future__ import annotations

import asyncio

from peerix_nb.browser import BroadcastChannelDriver
from peerix_nb.drivers.base import Driver
from tests.widget_comm import recording_comm  # noqa: F401 (autouse fixture)


async def test_async_handlers_of_driver_events_run() -> None:
    driver = BroadcastChannelDriver("room-test")
    seen: list[str] = []

    async def on_active(event: object) -> None:
        seen.append("active")

    driver.on("active", on_active)
    driver.set_active(True)
    await asyncio.sleep(0.01)
    assert seen == ["active"]
    await driver.close()


async def test_close_is_sync_for_the_widget_and_awaitable_for_a_driver() -> None:
    driver = BroadcastChannelDriver("room-test")
    assert isinstance(driver, Driver)
    closing = driver.close()  # the widget's close has run
    await closing
