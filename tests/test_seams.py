"""The seams between a peer and its remotes (peerix_nb/seams.py), each side alone.

A RemotePeer runs against a stand-in owner, no Peer at all; a Peer is a RemoteOwner; the
remotes of events, kernel or browser, are RemoteInfo.
"""

from __future__ import annotations

import asyncio
from typing import Any

from peerix_nb import Peer, RemotePeer
from peerix_nb.browser.peer import BrowserRemote
from peerix_nb.channels import ChannelOptions
from peerix_nb.config import make_configuration
from peerix_nb.events import Event
from peerix_nb.seams import RemoteInfo, RemoteOwner


class Owner:
    """The least a RemotePeer needs: settings in, events and driver messages out."""

    def __init__(self, id: str = "b", connection_timeout: float = 0) -> None:
        self.id = id
        self.metadata: Any = {"name": id}
        self.configuration = make_configuration(None, "all")
        self.connection_timeout = connection_timeout
        self.network = None
        self.streams: dict[str, Any] = {}
        self.channels: dict[str, ChannelOptions] = {}
        self.events: list[Event] = []
        self.sent: list[tuple[str, list[Any], str]] = []
        self.closed: list[tuple[RemotePeer, bool]] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def send_direct(self, remote_id: str, message: list[Any], kind: str) -> None:
        self.sent.append((remote_id, message, kind))

    def remote_closed(self, remote: RemotePeer, failed: bool) -> None:
        self.closed.append((remote, failed))

    def names(self) -> list[str]:
        return [event.name for event in self.events]


async def test_a_remote_peer_needs_only_a_remote_owner() -> None:
    owner = Owner("b")
    remote = RemotePeer(owner, "a", {"name": "a"}, "room")
    assert remote.owner is owner and remote.polite  # "b" > "a": b is polite
    assert isinstance(remote, RemoteInfo)
    remote.start()  # the first offer goes through the driver, to "a"
    for _ in range(200):
        if owner.sent:
            break
        await asyncio.sleep(0.01)
    (to, message, kind), *_ = owner.sent
    assert (to, kind, message[1], message[3]) == ("a", "offer", "b", {"name": "b"})
    assert message[2]["type"] == "offer" and "m=application" in message[2]["sdp"]
    await remote.fail("given up")
    assert owner.closed == [(remote, True)]
    states = [name for name in owner.names() if name.startswith("connection:")]
    assert states == ["connection:new", "connection:failed", "connection:closed"]
    assert all(event.remote is remote for event in owner.events)


async def test_a_peer_is_a_remote_owner() -> None:
    peer = Peer(id="p")
    owner: RemoteOwner = peer  # checked by mypy; at run time, the members exist
    for name in ("id", "metadata", "configuration", "connection_timeout", "network", "streams"):
        assert hasattr(owner, name), name
    for name in ("channels", "emit", "send_direct", "remote_closed"):
        assert hasattr(owner, name), name


def test_browser_remotes_are_remote_info() -> None:
    assert isinstance(BrowserRemote("x", "room"), RemoteInfo)
