"""Fast detection of a silently vanished remote, which aiortc 1.16 notices only after ~30 s.

Why: aiortc has no `disconnected` state; a killed peer is found by ICE consent checks (every
5 s, 6 failures) and ends `closed` (AIORTC-NOTES.md). But the remote's SCTP stack acknowledges
every data chunk we send, even a control-channel message its application ignores (browser
Peerix ignores unknown control events). So the control channel carries a tiny `["ping"]` every
second (control.keepalive) and this watcher reads, from aiortc's private SCTP state (through
_aiortc.py), whether acknowledgements still progress: outstanding chunks with no new cumulative
ack for `stall_after` seconds mean the remote is gone (or the path is), i.e. `disconnected`.
"""

from __future__ import annotations

from aiortc import RTCSctpTransport

from . import _aiortc

#: Seconds without acknowledgement progress, while data is outstanding, before `disconnected`.
STALL_AFTER = 2.5
#: Seconds between keepalive pings on the control channel.
PING_INTERVAL = 1.0


class SctpLiveness:
    """Watches one SCTP association for acknowledgement progress."""

    def __init__(self, sctp: RTCSctpTransport, stall_after: float = STALL_AFTER) -> None:
        self._sctp = sctp
        self.stall_after = stall_after
        self._last_ack: int | None = None
        self._stalled_since: float | None = None

    def alive(self, now: float) -> bool:
        """False once data has waited `stall_after` seconds without any ack progress."""
        outstanding = _aiortc.sctp_unacknowledged(self._sctp)  # chunks sent, not yet acked
        last_ack = _aiortc.sctp_last_acknowledged(self._sctp)  # highest cumulative TSN acked
        if not outstanding:
            self._stalled_since = None
        elif last_ack != self._last_ack or self._stalled_since is None:
            self._stalled_since = now
        self._last_ack = last_ack
        return self._stalled_since is None or now - self._stalled_since < self.stall_after
