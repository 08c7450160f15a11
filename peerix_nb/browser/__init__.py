"""Browser peers in the notebook page, and BroadcastChannel signaling for kernel peers.

    from peerix_nb import Peer
    from peerix_nb.browser import BrowserPeer, BroadcastChannelDriver, NatsWebSocket

    kernel = Peer()                          # the process-wide MemoryDriver
    BrowserPeer("lobby", camera=True)        # joins the same room through the kernel relay

`BrowserPeer` is a widget whose JavaScript is a full Peerix v0.1 peer on the browser's own
RTCPeerConnection (plain ES modules in this package, bundled into one module at import time by
`_bundle.py`; nothing is fetched at run time). `BroadcastChannelDriver` is a driver for kernel
peers that is also a widget: once displayed it relays their signaling through the browser's
BroadcastChannel. Needs the widgets extra: `pip install 'peerix-nb[widgets]'`.
"""

from .broadcast import BroadcastChannelDriver
from .peer import BrowserPeer, BrowserRemote, NatsWebSocket

__all__ = ["BroadcastChannelDriver", "BrowserPeer", "BrowserRemote", "NatsWebSocket"]
