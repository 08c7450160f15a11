"""timing(): where the milliseconds of each connection attempt went, from event rows.

One row per remote connection attempt, with the duration of each phase (discovery, gathering,
signaling, ice, dtls, sctp, ...); `EventLog.timing` documents every column. Layers (each module
imports only those before it): logrows <- timing, logfiles <- plot <- log, stats; so this knows
an EventLog only as a `logrows.EventRows`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .logrows import Row, rows_of, values

if TYPE_CHECKING:
    import pandas as pd

    from .log import EventLog
    from .peer import Peer

#: The phases of `timing()`, in the order a connection goes through them (all in ms).
PHASES = (
    "discovery",
    "gathering",
    "signaling",
    "ice",
    "dtls",
    "sctp",
    "control_open",
    "total",
    "first_channel",
    "first_frame",
)


def timing(events: pd.DataFrame | EventLog | Peer | Any, *, starts: bool = False) -> pd.DataFrame:
    """`EventLog.timing()` for every peer in `events`: a `to_frame()` or `merge()` frame (logs
    of several peers, or loaded from files), an EventLog or a Peer. Rows are ordered by peer,
    then attempt start; each peer's rows are read in the order of its own clock `t`.
    """
    import pandas as pd

    if not isinstance(events, pd.DataFrame):
        log = rows_of(events)
        if log is None:
            raise TypeError(f"timing() needs an event DataFrame, EventLog or Peer, got {events!r}")
        return log.timing(starts=starts)
    wanted = events["event"].astype("object")
    keep = wanted.isin(_TIMING_EVENTS) | wanted.str.startswith("connection:", na=False)
    frame = events[keep]
    attempts: list[_Attempt] = []
    for peer in pd.unique(frame["peer"].astype("object")):
        rows = frame[frame["peer"].astype("object") == peer].sort_values("t", kind="stable")
        columns = [
            rows["time"].dt.as_unit("ns").astype("int64").tolist(),
            rows["t"].tolist(),
            *(
                values(rows[name])
                for name in ("remote", "event", "state", "kind", "bytes", "detail")
            ),
        ]
        attempts.extend(_attempts(str(peer), zip(*columns, strict=True)))
    return _timing_frame(attempts, starts)


def timing_of_rows(peer: str, rows: Iterable[Row], *, starts: bool = False) -> pd.DataFrame:
    """`timing()` of one peer's log rows (logrows layout), in the order recorded."""
    projected = ((r[0], r[1], r[3], r[4], r[5], r[7], r[9], r[10]) for r in rows)
    return _timing_frame(_attempts(peer, projected), starts)


_TIMING_EVENTS = frozenset(
    {
        "signal:send",
        "signal:recv",
        "signal:reject",
        "signal:ignore",
        "ice:gathering",
        "ice:state",
        "dtls:state",
        "control:open",
        "negotiation:done",
        "channel:open",
        "media:first-frame",
    }
)


@dataclass(slots=True)
class _Attempt:
    """What one connection attempt went through: the `t` of each milestone (None = not seen)."""

    peer: str
    remote: str
    attempt: int
    time_ns: int
    start: float
    origin: float | None = None  # the JOIN (sent or received) that started it
    first_offer: float | None = None
    first_offer_sent: bool | None = None
    negotiated: float | None = None
    role: str | None = None
    gather: list[float | None] = field(default_factory=lambda: [None, None])
    ice: list[float | None] = field(default_factory=lambda: [None, None])
    dtls: list[float | None] = field(default_factory=lambda: [None, None])
    control: float | None = None
    connected: float | None = None
    channel: float | None = None
    frame: float | None = None
    outcome: str = "new"
    reason: str | None = None

    def intervals(self) -> dict[str, tuple[float | None, float | None]]:
        """Each phase as (begin, end) on the peer's `t` clock."""
        origin = self.origin if self.origin is not None else self.start
        return {
            "discovery": (self.origin, self.start if self.origin is not None else None),
            "gathering": (self.gather[0], self.gather[1]),
            "signaling": (self.first_offer, self.negotiated),
            "ice": (self.ice[0], self.ice[1]),
            "dtls": (self.dtls[0], self.dtls[1]),
            "sctp": (self.dtls[1], self.control),
            "control_open": (self.start, self.control),
            "total": (origin, self.connected),
            "first_channel": (self.start, self.channel),
            "first_frame": (self.start, self.frame),
        }


@dataclass(slots=True)
class _Seen:
    """A JOIN/OFFER row from a remote, or our JOIN, as a candidate start of an attempt."""

    t: float
    kind: str
    first_offer: float | None = None
    used_by: set[str] = field(default_factory=set)  # remotes whose attempt it already started


# Two-state phases: event -> (begin state, end state, the _Attempt field holding [begin, end]).
_PAIRS = {
    "ice:gathering": ("gathering", "complete", "gather"),
    "ice:state": ("checking", "completed", "ice"),
    "dtls:state": ("connecting", "connected", "dtls"),
}


def _attempts(peer: str, rows: Iterable[tuple[Any, ...]]) -> list[_Attempt]:
    """Walk one peer's rows (time_ns, t, remote, event, state, kind, bytes, detail) in order."""
    attempts: list[_Attempt] = []
    current: dict[str, _Attempt] = {}
    counts: dict[str, int] = {}
    our_join: _Seen | None = None
    # JOIN/OFFER rows of remotes we had no RemotePeer for (remote = "", detail = sender):
    # the first one since the last attempt is what admitted the remote.
    pending: dict[str, _Seen] = {}
    # JOIN/OFFER rows of remotes we had one for: a restart replaces the RemotePeer.
    restart: dict[str, _Seen] = {}
    for time_ns, t, remote, name, state, kind, _size, detail in rows:
        if not remote:
            if name == "signal:send" and kind == "join":
                our_join = _Seen(t, "join")
            elif name == "signal:recv" and kind in ("join", "offer") and detail:
                seen = pending.get(detail)
                if seen is None:
                    pending[detail] = _Seen(t, kind, t if kind == "offer" else None)
                elif kind == "offer" and seen.first_offer is None:
                    seen.first_offer = t  # held while verify ran
            elif name == "signal:reject" and isinstance(detail, str):
                # "<sender> rejected by verify", "<sender>: room full (...)": not admitted
                for sender in [s for s in pending if detail.startswith((f"{s} ", f"{s}:"))]:
                    del pending[sender]
            continue
        if name == "connection:new":
            counts[remote] = counts.get(remote, 0) + 1
            started = _Attempt(peer, remote, counts[remote], time_ns, t)
            trigger = pending.pop(remote, None) or restart.pop(remote, None)
            if trigger is not None:
                if trigger.kind == "join":
                    started.origin = trigger.t
                elif our_join is not None and remote not in our_join.used_by:
                    started.origin = our_join.t  # they answered our JOIN with an offer
                if trigger.first_offer is not None:
                    started.first_offer, started.first_offer_sent = trigger.first_offer, False
            if our_join is not None:
                our_join.used_by.add(remote)  # one JOIN starts at most one attempt per remote
            current[remote] = started
            attempts.append(started)
            continue
        attempt = current.get(remote)
        if attempt is None:
            continue
        if name.startswith("connection:"):
            state = name.split(":", 1)[1]
            if state == "connected" and attempt.connected is None:
                attempt.connected = t
            if not (state == "closed" and attempt.outcome == "failed"):
                attempt.outcome = state
            if state in ("failed", "closed") and attempt.reason is None and detail is not None:
                attempt.reason = str(detail)
        elif name in ("signal:send", "signal:recv"):
            if kind == "offer" and attempt.first_offer is None:
                attempt.first_offer, attempt.first_offer_sent = t, name == "signal:send"
            if name == "signal:recv" and kind in ("join", "offer"):
                restart[remote] = _Seen(t, kind, t if kind == "offer" else None)
        elif name == "signal:ignore" and kind in ("join", "offer"):
            restart.pop(remote, None)  # a replay or glare loser: it started nothing
        elif name == "negotiation:done" and attempt.negotiated is None:
            attempt.negotiated = t
            attempt.role = "offerer" if kind == "local" else "answerer"
        elif name in _PAIRS:
            begin, end, slot = _PAIRS[name]
            pair = getattr(attempt, slot)
            if state == begin and pair[0] is None:
                pair[0] = t
            elif state == end and pair[0] is not None and pair[1] is None:
                pair[1] = t
        elif name == "control:open" and attempt.control is None:
            attempt.control = t
        elif name == "channel:open" and attempt.channel is None:
            attempt.channel = t
        elif name == "media:first-frame" and attempt.frame is None:
            attempt.frame = t
    return attempts


def _timing_frame(attempts: list[_Attempt], starts: bool) -> pd.DataFrame:
    import pandas as pd

    data: dict[str, Any] = {
        "peer": pd.Series([a.peer for a in attempts], dtype="object"),
        "remote": pd.Series([a.remote for a in attempts], dtype="object"),
        "attempt": pd.Series([a.attempt for a in attempts], dtype="int64"),
        "time": pd.to_datetime(
            pd.Series([a.time_ns for a in attempts], dtype="int64"), unit="ns", utc=True
        ),
        "start": pd.Series([a.start for a in attempts], dtype="float64"),
        "role": pd.Series([a.role or _offer_role(a) for a in attempts], dtype="object"),
        "polite": pd.Series([a.peer > a.remote for a in attempts], dtype="bool"),
        "outcome": pd.Series([a.outcome for a in attempts], dtype="object"),
        "reason": pd.Series([a.reason for a in attempts], dtype="object"),
    }
    intervals = [a.intervals() for a in attempts]
    for phase in PHASES:
        data[phase] = pd.Series([_ms(*spans[phase]) for spans in intervals], dtype="object").astype(
            "Float64"
        )
    if starts:
        for phase in PHASES:
            values = []
            for a, spans in zip(attempts, intervals, strict=True):
                begin, end = spans[phase]
                origin = a.origin if a.origin is not None else a.start
                values.append(None if begin is None or end is None else (begin - origin) * 1000)
            data[f"{phase}_start"] = pd.Series(values, dtype="object").astype("Float64")
    frame = pd.DataFrame(data)
    if len(frame):
        frame = frame.sort_values(["peer", "start"], kind="stable", ignore_index=True)
    return frame


def _ms(begin: float | None, end: float | None) -> float | None:
    return None if begin is None or end is None else (end - begin) * 1000.0


def _offer_role(attempt: _Attempt) -> str | None:
    if attempt.first_offer_sent is None:
        return None
    return "offerer" if attempt.first_offer_sent else "answerer"


__all__ = ["PHASES", "timing", "timing_of_rows"]
