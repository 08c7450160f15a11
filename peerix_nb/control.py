"""The control channel of a connection, and how a connection is known to be alive.

The control channel (negotiated, id 0, label `''`, docs/PROTOCOL.md) carries JSON arrays once it
opens: every later offer, answer and candidate, the polite side's channel requests, and pings.
Here: the message format (`encode`, `decode`, `description`, `labels`), the keepalive loop
that pings and watches SCTP acknowledgements (liveness.py says why), and `Deadline`, the
connection timeout.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import liveness

if TYPE_CHECKING:
    from aiortc import RTCDataChannel, RTCSctpTransport

#: Control-channel messages larger than this are refused (an SDP is a few kB).
MAX_CONTROL_MESSAGE = 1 << 20
#: The names a control message may have; others are ignored (docs/PROTOCOL.md).
NAMES = ("offer", "answer", "candidate", "channel")
PING = '["ping"]'


def encode(message: list[Any]) -> str:
    """A control message as sent: compact JSON."""
    return json.dumps(message, separators=(",", ":"))


def decode(data: str | bytes) -> list[Any] | None:
    """The JSON array `[name, ...]` of a control message; None for a ping or a name we do not
    know (ignored, docs/PROTOCOL.md). ValueError if it is not a control message."""
    if isinstance(data, bytes):
        raise ValueError("control message is binary, expected JSON text")
    if len(data) > MAX_CONTROL_MESSAGE:
        raise ValueError(f"control message of {len(data)} characters is too large")
    message = json.loads(data)  # json.JSONDecodeError is a ValueError
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise ValueError("control message is not a JSON array [name, ...]")
    if message[0] not in NAMES:
        return None  # a ping, or an event name of a later protocol version
    return message


def description(message: list[Any]) -> dict[str, str]:
    """The `{type, sdp}` of an `offer` or `answer` message; ValueError if it has none."""
    name = message[0]
    desc = message[1] if len(message) > 1 else None
    if (
        not isinstance(desc, dict)
        or desc.get("type") != name
        or not isinstance(desc.get("sdp"), str)
    ):
        raise ValueError(f"control {name} without a valid {{type, sdp}} description")
    return desc


def labels(message: list[Any]) -> dict[str, str]:
    """The label map of an `offer` message (stream id -> label); {} if it has none."""
    raw = message[2] if len(message) > 2 else {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


async def keepalive(
    channel: RTCDataChannel, sctp: RTCSctpTransport, on_liveness: Callable[[bool], None]
) -> None:
    """While `channel` is open: ping on it every PING_INTERVAL and tell `on_liveness` whether
    SCTP acknowledgements still progress (liveness.py), four times per interval."""
    watcher = liveness.SctpLiveness(sctp)
    last_ping = 0.0
    while channel.readyState == "open":
        now = time.monotonic()
        if now - last_ping >= liveness.PING_INTERVAL:
            channel.send(PING)
            last_ping = now
        on_liveness(watcher.alive(now))
        await asyncio.sleep(liveness.PING_INTERVAL / 4)


class Deadline:
    """The connection timeout: `expired()` is called `seconds` after `arm` unless cancelled."""

    def __init__(self, expired: Callable[[], None]) -> None:
        self._expired = expired
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, seconds: float) -> None:
        """Start again from now (0 or less: no deadline)."""
        self.cancel()
        if seconds > 0:
            self._timer = asyncio.get_running_loop().call_later(seconds, self._fire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self._expired()
