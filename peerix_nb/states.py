"""The states of a connection and of a data channel, as typing Literals.

They are the W3C WebRTC enums browser Peerix uses: RTCPeerConnectionState for
`RemotePeer.state` (and the `connection:*` events), RTCDataChannelState for a data channel's
`readyState` (aiortc's RTCDataChannel, a BrowserRemote's `channels` values).
"""

from __future__ import annotations

from typing import Literal, get_args

#: A remote's connection state (`RemotePeer.state`, `BrowserRemote.state`).
ConnectionState = Literal["new", "connecting", "connected", "disconnected", "failed", "closed"]
#: A data channel's state (`readyState`).
ChannelState = Literal["connecting", "open", "closing", "closed"]

#: The connection states, in the order a healthy connection goes through them.
CONNECTION_STATES: tuple[ConnectionState, ...] = get_args(ConnectionState)
#: The data channel states, in order.
CHANNEL_STATES: tuple[ChannelState, ...] = get_args(ChannelState)

__all__ = ["CHANNEL_STATES", "CONNECTION_STATES", "ChannelState", "ConnectionState"]
