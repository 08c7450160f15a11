"""The application data channels of one connection (docs/PROTOCOL.md "Data channels").

One channel per label (a newer one replaces an older one), at most MAX_CHANNELS. Only the
impolite side calls `createDataChannel`; the polite side asks it to with a `["channel",
options]` control message. `DataChannels` keeps them for one RemotePeer and reports what
happens to them as events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .channels import ChannelOptions
from .errors import ErrorCode, PeerixError

if TYPE_CHECKING:
    from aiortc import RTCDataChannel, RTCPeerConnection

#: Data channels per remote; more would only come from a runaway or hostile remote.
MAX_CHANNELS = 256

#: `emit(name, **fields)`: an event about the remote; `report(error, code)`: an `error` event.
Emit = Callable[..., None]
Report = Callable[[BaseException, ErrorCode], None]


class DataChannels:
    """The data channels to one remote: `channels` (label -> RTCDataChannel) and `options`
    (the channels opened for this remote only, by `RemotePeer.open`)."""

    def __init__(self, remote_id: str, polite: bool, emit: Emit, report: Report) -> None:
        self.channels: dict[str, RTCDataChannel] = {}
        self.options: dict[str, ChannelOptions] = {}
        self._remote_id = remote_id
        self._polite = polite
        self._emit = emit
        self._report = report

    def open(
        self,
        pc: RTCPeerConnection,
        options: ChannelOptions,
        request: Callable[[ChannelOptions], None],
    ) -> None:
        """Create channel `options.label` (impolite side) or `request` it (polite side)."""
        existing = self.channels.get(options.label)
        if existing is not None and existing.readyState in ("connecting", "open"):
            return
        if self._too_many(options.label):
            return
        if self._polite:
            request(options)
            return
        try:
            channel = pc.createDataChannel(
                options.label,
                ordered=options.ordered,
                maxRetransmits=options.max_retransmits,
                maxPacketLifeTime=options.max_packet_life_time,
                protocol=options.protocol,
            )
        except Exception as error:
            self._report(error, "PEER_DATACHANNEL_ERROR")
            return
        self.register(channel)

    def requested(self, pc: RTCPeerConnection, raw: Any) -> None:
        """The remote's `["channel", options]` request (we are the impolite side)."""
        if self._polite:
            return  # only the impolite side creates channels; a request here is a confused remote
        try:
            options = ChannelOptions.from_wire(raw)
        except (TypeError, ValueError) as error:
            self._report(
                PeerixError("PEER_DATACHANNEL_ERROR", f"bad channel request: {error}"),
                "PEER_DATACHANNEL_ERROR",
            )
            return
        self.open(pc, options, lambda _: None)

    def close(self, label: str) -> None:
        """Close channel `label` and stop opening it for this remote."""
        self.options.pop(label, None)
        channel = self.channels.get(label)
        if channel is not None:
            channel.close()

    def _too_many(self, label: str) -> bool:
        if label in self.channels or len(self.channels) < MAX_CHANNELS:
            return False
        self._report(
            PeerixError(
                "PEER_DATACHANNEL_ERROR",
                f"channel {label!r} refused: {MAX_CHANNELS} channels to {self._remote_id} already",
            ),
            "PEER_DATACHANNEL_ERROR",
        )
        return True

    def register(self, channel: RTCDataChannel) -> None:
        """Keep `channel` (ours or the remote's) and turn what happens to it into events."""
        label = channel.label
        if self._too_many(label):
            channel.close()
            return
        old = self.channels.get(label)
        self.channels[label] = channel  # one channel per label: the newer replaces the older
        if old is not None and old is not channel:
            old.close()

        @channel.on("open")
        def on_open() -> None:
            self._emit("channel:open", channel=channel, label=label, state="open")

        @channel.on("close")
        def on_close() -> None:
            if self.channels.get(label) is channel:
                del self.channels[label]
            self._emit("channel:close", channel=channel, label=label, state="closed")

        @channel.on("message")
        def on_message(data: str | bytes) -> None:
            self._emit("channel:message", channel=channel, label=label, data=data)

        self._emit("channel:new", channel=channel, label=label, state=channel.readyState)
        if (
            channel.readyState == "open"
        ):  # aiortc opens a remote-created channel before announcing it
            on_open()

    def send(self, message: str | bytes, label: str | None) -> int:
        """Send a checked `message` on channel `label` (which must be open) or on every open
        channel; returns the count."""
        if label is not None:
            channel = self.channels.get(label)
            if channel is None or channel.readyState != "open":
                raise PeerixError(
                    "PEER_DATACHANNEL_ERROR",
                    f"channel {label!r} to remote {self._remote_id} is not open",
                )
            self.send_on(channel, message)
            return 1
        sent = 0
        for channel in list(self.channels.values()):
            if channel.readyState == "open":
                self.send_on(channel, message)
                sent += 1
        return sent

    def send_on(self, channel: RTCDataChannel, message: str | bytes) -> None:
        """Send a checked `message` on `channel`; a PeerixError if aiortc refuses."""
        try:
            channel.send(message)
        except Exception as error:
            raise PeerixError(
                "PEER_DATACHANNEL_ERROR",
                f"cannot send on {channel.label!r} to {self._remote_id}: {error}",
                cause=error,
            ) from None
