"""Data-channel options and payloads, shared by Peer (for every remote) and RemotePeer (one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def check_message(message: Any) -> str | bytes:
    """A data-channel payload: str or bytes-like (sent as bytes)."""
    if isinstance(message, str):
        return message
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    raise TypeError(f"can only send str or bytes, got {type(message).__name__}")


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """How to open a data channel; `wire()` is the `["channel", {...}]` request body."""

    label: str
    ordered: bool = True
    max_retransmits: int | None = None
    max_packet_life_time: int | None = None
    protocol: str = ""

    @classmethod
    def make(
        cls,
        label: str,
        ordered: bool = True,
        max_retransmits: int | None = None,
        max_packet_life_time: int | None = None,
        protocol: str = "",
    ) -> ChannelOptions:
        if not isinstance(label, str) or not label or len(label) > 1024:
            raise ValueError(
                f"channel label must be a non-empty string of at most 1024 characters (the empty label is the control channel), got {label!r}"
            )
        if not isinstance(ordered, bool):
            raise TypeError(f"ordered must be True or False, got {ordered!r}")
        for name, value in (
            ("max_retransmits", max_retransmits),
            ("max_packet_life_time", max_packet_life_time),
        ):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535
            ):
                raise ValueError(f"{name} must be an integer in 0..65535 or None, got {value!r}")
        if max_retransmits is not None and max_packet_life_time is not None:
            raise ValueError("give max_retransmits or max_packet_life_time, not both")
        if not isinstance(protocol, str):
            raise TypeError(f"protocol must be a string, got {protocol!r}")
        return cls(label, ordered, max_retransmits, max_packet_life_time, protocol)

    def wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"label": self.label, "ordered": self.ordered}
        if self.max_retransmits is not None:
            body["maxRetransmits"] = self.max_retransmits
        if self.max_packet_life_time is not None:
            body["maxPacketLifeTime"] = self.max_packet_life_time
        if self.protocol:
            body["protocol"] = self.protocol
        return body

    @classmethod
    def from_wire(cls, body: Any) -> ChannelOptions:
        if not isinstance(body, dict):
            raise TypeError("channel request must be an object")
        return cls.make(
            body.get("label"),  # type: ignore[arg-type]
            body.get("ordered", True),
            body.get("maxRetransmits"),
            body.get("maxPacketLifeTime"),
            body.get("protocol", ""),
        )
