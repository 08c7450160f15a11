"""EventLog: every event and signaling step of one peer, as rows that become a pandas DataFrame.

Recording is one tuple append per event (cheap enough for per-message rows); the DataFrame is
built on demand by `to_frame()`. Columns follow docs/ARCHITECTURE.md (the DESIGN schema).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .events import Event

if TYPE_CHECKING:
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

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in list(self._rows):
            yield dict(zip(COLUMNS, (row[0], row[1], self.peer, *row[2:]), strict=True))

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

    def timing(self) -> pd.DataFrame:
        """One row per remote connection attempt: when it started and how long it took, in ms.

        An attempt starts at `connection:new`; `total` runs to `connection:connected` and is
        missing (NA) if the attempt never connected; `outcome` is its last state.
        """
        import pandas as pd

        attempts: list[dict[str, Any]] = []
        open_attempts: dict[str, dict[str, Any]] = {}
        for row in self._rows:
            remote, name, t = row[3], row[4], row[1]
            if not remote or not name.startswith("connection:"):
                continue
            if name == "connection:new":
                attempt = {"remote": remote, "start": t, "connected": None, "outcome": "new"}
                open_attempts[remote] = attempt
                attempts.append(attempt)
                continue
            attempt = open_attempts.get(remote)
            if attempt is None:
                continue
            state = name.split(":", 1)[1]
            attempt["outcome"] = state
            if state == "connected" and attempt["connected"] is None:
                attempt["connected"] = t
        frame = pd.DataFrame(
            {
                "remote": pd.Series([a["remote"] for a in attempts], dtype="object"),
                "start": pd.Series([a["start"] for a in attempts], dtype="float64"),
                "total": pd.Series(
                    [
                        (a["connected"] - a["start"]) * 1000.0
                        if a["connected"] is not None
                        else None
                        for a in attempts
                    ],
                    dtype="Float64",
                ),
                "outcome": pd.Series([a["outcome"] for a in attempts], dtype="object"),
            }
        )
        return frame
