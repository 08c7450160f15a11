"""EventLog: every event and signaling step of one peer, as rows that become a pandas DataFrame.

Recording is one tuple append per event (cheap enough for per-message rows); the DataFrame is
built on demand by `to_frame()`. Columns follow docs/ARCHITECTURE.md (the DESIGN schema).
Analysis lives here too: `timing()` (where the milliseconds of each connection attempt went),
`merge()` (several peers' logs on one wall clock) and `save()`/`load()` (Parquet or JSON lines).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .events import Event, group_of

if TYPE_CHECKING:
    import matplotlib.axes
    import matplotlib.figure
    import pandas as pd

COLUMNS = (
    "time",
    "t",
    "peer",
    "room",
    "remote",
    "event",
    "state",
    "label",
    "kind",
    "via",
    "bytes",
    "detail",
)
CATEGORIES = ("peer", "room", "remote", "event", "state", "kind", "via")

#: Rows kept per log by default; the oldest go first beyond it (a long video call must not grow
#: memory without bound). Pass `max_rows=None` for no limit.
DEFAULT_MAX_ROWS = 200_000
_DETAIL_CHARS = 200

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

PathLike = str | os.PathLike[str]


def _detail(event: Event) -> Any:
    if event.detail is not None:
        return event.detail
    if event.error is not None:
        return f"{event.error.code}: {event.error.message}"
    data = event.data
    if isinstance(data, str):
        return data if len(data) <= _DETAIL_CHARS else data[:_DETAIL_CHARS] + "…"
    return None


def _size(event: Event) -> int | None:
    if event.size is not None:
        return event.size
    data = event.data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return len(data)
    if isinstance(data, str):
        return len(data.encode())
    return None


class EventLog:
    """Rows of one peer's events; subscribe `record` to the peer's emitter under `*`."""

    def __init__(self, peer: str, *, max_rows: int | None = DEFAULT_MAX_ROWS) -> None:
        self.peer = peer
        self.room = ""  # kept current by the Peer, for room-level rows
        self.t0 = time.perf_counter()
        # One tuple per row, in COLUMNS order without `peer` (widgets read this layout).
        self._rows: deque[tuple[Any, ...]] = deque(maxlen=max_rows)

    def now(self) -> float:
        """Seconds since the log (i.e. its peer) was created, on the monotonic clock."""
        return time.perf_counter() - self.t0

    def record(self, event: Event) -> None:
        remote = event.remote
        self._rows.append(
            (
                time.time_ns(),
                time.perf_counter() - self.t0,
                remote.room if remote is not None else self.room,
                remote.id if remote is not None else "",
                event.name,
                event.state,
                event.label,
                event.kind,
                event.via,
                _size(event),
                _detail(event),
            )
        )

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        last = f", last {self._rows[-1][4]!r} at t={self._rows[-1][1]:.3f} s" if self._rows else ""
        return f"<EventLog {self.peer}: {len(self._rows)} rows{last}; to_frame() for a DataFrame>"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in list(self._rows):
            yield self._as_dict(row)

    def _as_dict(self, row: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(COLUMNS, (row[0], row[1], self.peer, *row[2:]), strict=True))

    def seconds_since(self, name: str) -> float | None:
        """Seconds since the newest row of event `name` (or of any event of group `name`, or
        of any event for `*`), by the log's own clock; None if there is none."""
        group = not any(c in name for c in ":*")
        for row in reversed(self._rows):
            event = row[4]
            if name == "*" or event == name or (group and group_of(event) == name):
                return self.now() - row[1]
        return None

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The last `n` rows as dicts (like iterating the log), oldest first; O(n), not O(log)."""
        newest = list(itertools.islice(reversed(self._rows), max(n, 0)))
        return [self._as_dict(row) for row in reversed(newest)]

    def clear(self) -> None:
        self._rows.clear()

    def to_frame(self) -> pd.DataFrame:
        """All rows as a DataFrame: tz-aware `time`, float `t`, categories, nullable `bytes`."""
        import pandas as pd

        rows = list(self._rows)
        columns = list(zip(*rows, strict=True)) if rows else [()] * (len(COLUMNS) - 1)
        data: dict[str, Any] = {
            "time": pd.to_datetime(pd.Series(columns[0], dtype="int64"), unit="ns", utc=True),
            "t": pd.Series(columns[1], dtype="float64"),
            "peer": pd.Series([self.peer] * len(rows), dtype="category"),
        }
        for name, values in zip(COLUMNS[3:], columns[2:], strict=True):
            if name in CATEGORIES:
                data[name] = pd.Series(values, dtype="object").astype("category")
            elif name == "bytes":
                data[name] = pd.Series(values, dtype="object").astype("Int64")
            else:
                data[name] = pd.Series(values, dtype="object")
        return pd.DataFrame(data, columns=list(COLUMNS))

    # -- analysis ---------------------------------------------------------------------------
    def timing(self, *, starts: bool = False) -> pd.DataFrame:
        """One row per remote connection attempt, with where its milliseconds went.

        An attempt starts at `connection:new` for a remote; a later `connection:new` for the same
        remote starts the next one. Durations are in milliseconds (Float64); a phase that did not
        happen (or whose start was not seen) is NA, never 0.

        Columns:
        - `peer`, `remote`: the local and the remote peer id; `attempt`: 1, 2, ... per remote.
        - `time` (UTC) and `start` (`t`, seconds since the peer was created) of `connection:new`.
        - `role`: `offerer` or `answerer` of the first completed offer/answer exchange (else of the
          first offer sent or received); `polite`: the local peer is the polite one (id > remote's).
        - `outcome`: the attempt's last connection state (`failed` stays `failed` through the
          `closed` that always follows it); `reason`: why it failed or closed, if said.
        - `discovery`: from the JOIN that started the attempt (ours sent, when the remote answered
          it with an offer; theirs received, when we were in the room first) to `connection:new`.
        - `gathering`: ICE gathering start -> complete (local candidates; aiortc does not trickle).
        - `signaling`: first offer sent or received -> first `negotiation:done` (answer applied or
          sent).
        - `ice`: ICE `checking` -> `completed` (connectivity checks of the bundled transport).
        - `dtls`: DTLS `connecting` -> `connected` (the handshake).
        - `sctp`: DTLS connected -> `control:open` (SCTP association and the control channel).
        - `control_open`: attempt start -> `control:open`.
        - `total`: discovery start (the attempt start when no JOIN is seen) -> `connection:connected`.
        - `first_channel` / `first_frame`: attempt start -> first `channel:open` / `media:first-frame`.
        - with `starts=True`, `<phase>_start`: when each phase began, in ms after the attempt's
          origin (the discovery start, else the attempt start).
        """
        rows = ((r[0], r[1], r[3], r[4], r[5], r[7], r[9], r[10]) for r in self._rows)
        return _timing_frame(_attempts(self.peer, rows), starts)

    def plot_timeline(self, ax: matplotlib.axes.Axes | None = None) -> matplotlib.figure.Figure:
        """A Gantt chart of `timing()`: see `peerix_nb.plot.timeline`."""
        from .plot import timeline

        return timeline(self, ax=ax)

    # -- files ------------------------------------------------------------------------------
    def save(self, path: PathLike, format: str | None = None) -> Path:
        """Write the log to `path`: Parquet (`.parquet`, `.pq`) or JSON lines (`.jsonl`,
        `.ndjson`, `.json`); a name without suffix gets Parquet when pyarrow is importable, else
        JSON lines. Another suffix (`.csv`) raises ValueError unless `format` says which.

        Every column round-trips exactly through `EventLog.load`; `detail` is written as text
        (a non-string detail becomes its `str()`). Returns the path written.
        """
        path = Path(path)
        fmt = _format(path, format)
        if fmt == "parquet":
            frame = self.to_frame()
            frame["detail"] = frame["detail"].map(_text, na_action="ignore").astype("object")
            frame.to_parquet(path, engine="pyarrow", index=False)
        else:
            with path.open("w", encoding="utf-8") as out:
                for row in self._rows:
                    out.write(json.dumps(self._json_row(row), ensure_ascii=False))
                    out.write("\n")
        return path

    def _json_row(self, row: tuple[Any, ...]) -> dict[str, Any]:
        record = self._as_dict(row)
        record["time"] = _iso(row[0])
        record["detail"] = _text(row[10])
        return record

    @classmethod
    def load(cls, path: PathLike, format: str | None = None) -> EventLog:
        """An EventLog read back from `save()`'s file (one peer's log; see `merge` for more)."""
        logs = _read_logs(Path(path), format)
        if len(logs) > 1:
            raise ValueError(
                f"{path} holds the logs of {len(logs)} peers ({', '.join(log.peer for log in logs)});"
                " use peerix_nb.merge(path) to read them all"
            )
        return logs[0] if logs else cls("", max_rows=None)


# -- timing -----------------------------------------------------------------------------------


def timing(events: pd.DataFrame | EventLog | Any, *, starts: bool = False) -> pd.DataFrame:
    """`EventLog.timing()` for every peer in `events`: a `to_frame()` or `merge()` frame (logs
    of several peers, or loaded from files), an EventLog or a Peer. Rows are ordered by peer,
    then attempt start; each peer's rows are read in the order of its own clock `t`.
    """
    import pandas as pd

    if isinstance(events, EventLog):
        return events.timing(starts=starts)
    if not isinstance(events, pd.DataFrame) and isinstance(
        getattr(events, "events", None), EventLog
    ):
        return events.events.timing(starts=starts)  # a Peer
    if not isinstance(events, pd.DataFrame):
        raise TypeError(f"timing() needs an event DataFrame, EventLog or Peer, got {events!r}")
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
                _values(rows[name])
                for name in ("remote", "event", "state", "kind", "bytes", "detail")
            ),
        ]
        attempts.extend(_attempts(str(peer), zip(*columns, strict=True)))
    return _timing_frame(attempts, starts)


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
            attempt = _Attempt(peer, remote, counts[remote], time_ns, t)
            trigger = pending.pop(remote, None) or restart.pop(remote, None)
            if trigger is not None:
                if trigger.kind == "join":
                    attempt.origin = trigger.t
                elif our_join is not None and remote not in our_join.used_by:
                    attempt.origin = our_join.t  # they answered our JOIN with an offer
                if trigger.first_offer is not None:
                    attempt.first_offer, attempt.first_offer_sent = trigger.first_offer, False
            if our_join is not None:
                our_join.used_by.add(remote)  # one JOIN starts at most one attempt per remote
            current[remote] = attempt
            attempts.append(attempt)
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


# -- several logs -----------------------------------------------------------------------------


def merge(*sources: EventLog | pd.DataFrame | PathLike | Any) -> pd.DataFrame:
    """One event DataFrame of several peers, ordered by wall time (`time`), in the schema of
    `EventLog.to_frame()` with categories unioned.

    Each source is an EventLog, a Peer, an event DataFrame (e.g. an earlier `merge`) or the
    path of a file written by `EventLog.save` (logs of other processes), or a list of them. Rows with equal
    times keep the order of the arguments. Clocks of different machines may disagree: `t`
    stays each peer's own monotonic clock.
    """
    import pandas as pd

    # merge([a, b]) as well as merge(a, b): a list of sources is the natural thing to pass
    flat = [
        s for source in sources for s in (source if isinstance(source, list | tuple) else [source])
    ]
    frames = [_frame_of(source) for source in flat]
    if not frames:
        return EventLog("").to_frame().iloc[0:0]
    categories = {
        name: sorted(set().union(*(_categories(f[name]) for f in frames)), key=str)
        for name in CATEGORIES
    }
    plain = [
        f.astype({name: "object" for name in CATEGORIES}).reindex(columns=list(COLUMNS))
        for f in frames
    ]
    merged = pd.concat(plain, ignore_index=True) if len(plain) > 1 else plain[0].copy()
    merged["time"] = pd.to_datetime(merged["time"], utc=True).dt.as_unit("ns")
    merged["t"] = merged["t"].astype("float64")
    merged["bytes"] = merged["bytes"].astype("Int64")
    for name in ("label", "detail"):
        merged[name] = merged[name].astype("object")
    for name in CATEGORIES:
        merged[name] = merged[name].astype(pd.CategoricalDtype(categories[name]))
    return merged.sort_values("time", kind="stable", ignore_index=True)


def _categories(column: pd.Series) -> set[Any]:
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):
        return set(column.cat.categories)
    return set(column.dropna().unique())


def _frame_of(source: Any) -> pd.DataFrame:
    import pandas as pd

    if isinstance(source, EventLog):
        return source.to_frame()
    if isinstance(source, pd.DataFrame):
        missing = set(COLUMNS) - set(source.columns)
        if missing:
            raise ValueError(f"not an event frame: missing columns {sorted(missing)}")
        return source
    if isinstance(getattr(source, "events", None), EventLog):
        return source.events.to_frame()  # a Peer
    if isinstance(source, (str, os.PathLike)):
        logs = _read_logs(Path(source), None)
        return merge(*logs) if len(logs) != 1 else logs[0].to_frame()
    raise TypeError(
        f"merge() takes EventLogs, Peers, event DataFrames or file paths, got {type(source).__name__}"
    )


# -- files ------------------------------------------------------------------------------------

_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
_PARQUET_SUFFIXES = (".parquet", ".pq")
#: What every saved row has, whatever else is missing (None is written as null).
_ROW_KEYS = frozenset({"time", "t", "peer", "event"})


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _format(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in ("parquet", "jsonl"):
            raise ValueError(f"format must be 'parquet' or 'jsonl', got {format!r}")
        fmt = format
    elif path.suffix.lower() in _JSON_SUFFIXES:
        fmt = "jsonl"
    elif path.suffix.lower() in _PARQUET_SUFFIXES:
        fmt = "parquet"
    elif path.suffix:
        # `save("ada.csv")` wrote Parquet bytes under a .csv name: refuse what we cannot honour.
        raise ValueError(
            f"cannot tell the format of {path.name!r} from its suffix: EventLog files are"
            " Parquet (.parquet) or JSON lines (.jsonl, .ndjson, .json), or pass"
            " format='parquet' or 'jsonl'; for CSV use log.to_frame().to_csv(path)"
        )
    else:
        fmt = "parquet" if _has_pyarrow() else "jsonl"
    if fmt == "parquet" and not _has_pyarrow():
        raise ImportError(f"writing or reading {path} as Parquet needs pyarrow; use a .jsonl path")
    return fmt


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


def _iso(ns: int) -> str:
    """UTC ISO 8601 with all nine fraction digits (datetime alone stops at microseconds)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def _values(column: pd.Series) -> list[Any]:
    """Python values of a column, with None for every kind of missing value."""
    return column.astype("object").where(column.notna(), None).tolist()


def _read_logs(path: Path, format: str | None) -> list[EventLog]:
    """The logs in a file written by `save` (one per peer, in order of first appearance)."""
    import pandas as pd

    fmt = format
    if fmt is None:
        with path.open("rb") as f:
            fmt = "parquet" if f.read(4) == b"PAR1" else "jsonl"
    if fmt == "parquet":
        _format(path, "parquet")
        try:
            frame = pd.read_parquet(path, engine="pyarrow")
        except Exception as error:  # pyarrow's own errors (ArrowInvalid, ...) name no file
            raise ValueError(f"{path}: not a readable Parquet file: {error}") from None
        missing = [name for name in COLUMNS if name not in frame.columns]
        if missing:
            raise ValueError(f"{path}: not an event log (no column {', '.join(missing)})")
        times = pd.to_datetime(frame["time"], utc=True).dt.as_unit("ns").astype("int64").tolist()
        columns = {name: _values(frame[name]) for name in COLUMNS[1:]}
    else:
        records = []
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except ValueError as error:
                        raise ValueError(f"{path}:{number}: not a JSON line: {error}") from None
                    if not isinstance(record, dict) or not record.keys() >= _ROW_KEYS:
                        raise ValueError(
                            f"{path}:{number}: not an event row (needs"
                            f" {', '.join(sorted(_ROW_KEYS))}): {line.strip()[:80]}"
                        )
                    records.append(record)
        raw = [r.get("time") for r in records]
        if all(isinstance(v, int) for v in raw):
            times = raw
        else:
            parsed = pd.to_datetime(pd.Series(raw, dtype="object"), utc=True, format="ISO8601")
            times = parsed.dt.as_unit("ns").astype("int64").tolist()
        columns = {name: [r.get(name) for r in records] for name in COLUMNS[1:]}
    logs: dict[str, EventLog] = {}
    for i, time_ns in enumerate(times):
        peer = str(columns["peer"][i])
        log = logs.get(peer)
        if log is None:
            log = logs[peer] = EventLog(peer, max_rows=None)
        size = columns["bytes"][i]
        log._rows.append(
            (
                int(time_ns),
                float(columns["t"][i]),
                *(columns[name][i] for name in ("room", "remote", "event", "state", "label")),
                columns["kind"][i],
                columns["via"][i],
                None if size is None else int(size),
                columns["detail"][i],
            )
        )
    for log in logs.values():
        log.room = str(log._rows[-1][2] or "") if log._rows else ""
    return list(logs.values())


__all__ = ["COLUMNS", "PHASES", "EventLog", "merge", "timing"]
