"""EventLog: every event and signaling step of one peer, as rows that become a pandas DataFrame.

Recording is one tuple append per event (cheap enough for per-message rows); the DataFrame is
built on demand by `to_frame()`. Columns follow docs/ARCHITECTURE.md (the DESIGN schema).
The analysis is in the modules below this one, re-exported here where users import it:
`timing()` (timing.py: where the milliseconds of each connection attempt went), `merge()` and
`save()`/`load()` (logfiles.py: several peers' logs on one wall clock; Parquet or JSON lines),
`plot_timeline()` (plot.py). Layers (each module imports only those before it):

    events, logrows  <-  timing, logfiles  <-  plot  <-  log
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .events import Event, group_of
from .logfiles import PathLike, merge, read_rows, save_rows
from .logrows import CATEGORIES, COLUMNS, EventRows, Row, as_dict, frame
from .timing import PHASES, timing, timing_of_rows

if TYPE_CHECKING:
    import matplotlib.axes
    import matplotlib.figure
    import pandas as pd

#: Rows kept per log by default; the oldest go first beyond it (a long video call must not grow
#: memory without bound). Pass `max_rows=None` for no limit.
DEFAULT_MAX_ROWS = 200_000
_DETAIL_CHARS = 200


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


class EventLog(EventRows):
    """Rows of one peer's events; subscribe `record` to the peer's emitter under `*`."""

    def __init__(self, peer: str, *, max_rows: int | None = DEFAULT_MAX_ROWS) -> None:
        self.peer = peer
        self.room = ""  # kept current by the Peer, for room-level rows
        self.t0 = time.perf_counter()
        # One tuple per row, in COLUMNS order without `peer` (logrows.Row; widgets read it).
        self._rows: deque[Row] = deque(maxlen=max_rows)

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

    def _as_dict(self, row: Row) -> dict[str, Any]:
        return as_dict(self.peer, row)

    def seconds_since(self, name: str) -> float | None:
        """Seconds since the newest row of event `name` (or of any event of group `name`, or
        of any event for `*`), by the log's own clock; None if there is none."""
        group = not any(c in name for c in ":*")
        for row in reversed(self._rows):
            event = row[4]
            if name == "*" or event == name or (group and group_of(event) == name):
                stamp: float = row[1]
                return self.now() - stamp
        return None

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The last `n` rows as dicts (like iterating the log), oldest first; O(n), not O(log)."""
        newest = list(itertools.islice(reversed(self._rows), max(n, 0)))
        return [self._as_dict(row) for row in reversed(newest)]

    def clear(self) -> None:
        self._rows.clear()

    def to_frame(self) -> pd.DataFrame:
        """All rows as a DataFrame: tz-aware `time`, float `t`, categories, nullable `bytes`."""
        return frame(self.peer, list(self._rows))

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
        return timing_of_rows(self.peer, self._rows, starts=starts)

    def plot_timeline(self, ax: matplotlib.axes.Axes | None = None) -> matplotlib.figure.Figure:
        """A Gantt chart of `timing()`: see `peerix_nb.plot.timeline`."""
        from .plot import timeline  # plot is a lower layer: it knows no EventLog (logrows.py)

        return timeline(self, ax=ax)

    # -- files ------------------------------------------------------------------------------
    def save(self, path: PathLike, format: str | None = None) -> Path:
        """Write the log to `path`: Parquet (`.parquet`, `.pq`) or JSON lines (`.jsonl`,
        `.ndjson`, `.json`); a name without suffix gets Parquet when pyarrow is importable, else
        JSON lines. Another suffix (`.csv`) raises ValueError unless `format` says which.

        Every column round-trips exactly through `EventLog.load`; `detail` is written as text
        (a non-string detail becomes its `str()`). Returns the path written.
        """
        return save_rows(self.peer, self._rows, path, format)

    @classmethod
    def load(cls, path: PathLike, format: str | None = None) -> EventLog:
        """An EventLog read back from `save()`'s file (one peer's log; see `merge` for more)."""
        logs = read_rows(path, format)
        if len(logs) > 1:
            raise ValueError(
                f"{path} holds the logs of {len(logs)} peers ({', '.join(peer for peer, _ in logs)});"
                " use peerix_nb.merge(path) to read them all"
            )
        if not logs:
            return cls("", max_rows=None)
        peer, rows = logs[0]
        log = cls(peer, max_rows=None)
        log._rows.extend(rows)
        log.room = str(rows[-1][2] or "") if rows else ""
        return log


__all__ = [
    "CATEGORIES",
    "COLUMNS",
    "DEFAULT_MAX_ROWS",
    "PHASES",
    "EventLog",
    "PathLike",
    "merge",
    "timing",
]
