"""The two seams between a peer and its remotes, as typing Protocols.

`RemoteOwner` is all a RemotePeer knows of the Peer that owns it: it reads the peer's settings
and published streams and channels, and emits upward (events, driver messages, "I am closed"),
as browser Peerix's remotes do; it never reaches into the Peer. `RemoteInfo` is what an event
says about a remote: a kernel RemotePeer and a BrowserPeer's BrowserRemote both are one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aiortc import RTCConfiguration

    from .channels import ChannelOptions
    from .events import Event
    from .media import MediaStream
    from .network import NetworkConditions
    from .remote import RemotePeer
    from .states import ConnectionState


@runtime_checkable
class RemoteInfo(Protocol):
    """A remote as events show it (`event.remote`): who it is and how its connection is."""

    @property
    def id(self) -> str: ...
    @property
    def room(self) -> str: ...
    @property
    def metadata(self) -> Any: ...
    @property
    def state(self) -> ConnectionState: ...
    @property
    def polite(self) -> bool | None: ...  # None: not known yet (a browser remote before its offer)
    @property
    def streams(self) -> Collection[str]: ...  # labels of its streams (a dict's keys count)
    @property
    def channels(self) -> Mapping[str, Any]: ...  # label -> its data channel (or its state)


class RemoteOwner(Protocol):
    """What a RemotePeer needs from its peer (a Peer implements it)."""

    @property
    def id(self) -> str: ...  # the local peer's id: who is polite, who sends
    @property
    def metadata(self) -> Any: ...  # sent with our first offer
    @property
    def configuration(self) -> RTCConfiguration: ...  # every connection's ICE servers and policy
    @property
    def connection_timeout(self) -> float: ...  # seconds (0: none) before `failed`
    @property
    def network(self) -> NetworkConditions | None: ...  # emulated network, unless the remote's own
    @property
    def streams(self) -> Mapping[str, MediaStream]: ...  # published: label -> stream
    @property
    def channels(self) -> Mapping[str, ChannelOptions]: ...  # opened for every remote

    def emit(self, event: Event) -> None:
        """Deliver an event of this peer (the remote set `event.remote`)."""
        ...

    def send_direct(self, remote_id: str, message: list[Any], kind: str) -> None:
        """Send a signaling message to one remote through the driver (never raises: a failure
        becomes an `error` event)."""
        ...

    def remote_closed(self, remote: RemotePeer, failed: bool) -> None:
        """`remote` is closed for good; `failed`: it failed first (the peer JOINs it again)."""
        ...
