"""peerix_nb: Peerix-compatible WebRTC rooms for Python notebooks, on aiortc.

from peerix_nb import Peer, MemoryDriver
peer = Peer(driver=MemoryDriver())
await peer.join(room="lobby", metadata={"name": "ada"})
"""

from .channels import ChannelOptions
from .drivers import Driver, MemoryDriver
from .errors import ErrorCode, PeerixError
from .events import Event
from .log import EventLog, merge
from .network import NetworkConditions
from .peer import Peer, PeerInfo
from .remote import RemotePeer
from .states import ChannelState, ConnectionState
from .stats import StatsSampler

__version__ = "0.1.0"

__all__ = [
    "ChannelOptions",
    "ChannelState",
    "ConnectionState",
    "Driver",
    "ErrorCode",
    "Event",
    "EventLog",
    "MemoryDriver",
    "NetworkConditions",
    "Peer",
    "PeerInfo",
    "PeerixError",
    "RemotePeer",
    "StatsSampler",
    "__version__",
    "merge",
]


def __getattr__(name: str) -> object:
    # NatsDriver needs the optional nats-py package: import it only when asked for.
    if name == "NatsDriver":
        from .drivers.nats import NatsDriver

        return NatsDriver
    raise AttributeError(f"module 'peerix_nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    # Tab completion (`peerix_nb.Na<Tab>`) lists the lazily imported NatsDriver too.
    return sorted([*globals(), "NatsDriver"])
