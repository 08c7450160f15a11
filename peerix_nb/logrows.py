"""The rows of an EventLog: their columns, their tuple layout, and rows -> DataFrame.

The bottom of the event-analysis modules. Each imports only the ones before it:

    logrows  <-  timing, logfiles  <-  plot  <-  log (EventLog), stats (StatsSampler)

`timing()`, `merge()` and the plots take an EventLog or a Peer, yet they are below log.py
(which re-exports them, and whose `plot_timeline` calls plot): they know an EventLog only as an
`EventRows`, defined here, and a Peer as something whose `events` is one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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

#: One row is a tuple in COLUMNS order without `peer` (the log's, the same for every row):
#: (time ns, t, room, remote, event, state, label, kind, via, bytes, detail). Widgets read
#: this layout too.
Row = tuple[Any, ...]


class EventRows(ABC):
    """An EventLog as the modules below log.py see it: one peer's rows and what they make."""

    peer: str

    @abstractmethod
    def to_frame(self) -> pd.DataFrame:
        """All rows as a DataFrame (see `frame`)."""

    @abstractmethod
    def timing(self, *, starts: bool = False) -> pd.DataFrame:
        """One row per connection attempt (see `EventLog.timing`)."""


def rows_of(source: Any) -> EventRows | None:
    """`source` if it is an EventLog, a Peer's (or BrowserPeer's) log if it is one, else None."""
    if isinstance(source, EventRows):
        return source
    log = getattr(source, "events", None)
    return log if isinstance(log, EventRows) else None


def as_dict(peer: str, row: Row) -> dict[str, Any]:
    """One row as a dict of COLUMNS (what iterating an EventLog yields)."""
    return dict(zip(COLUMNS, (row[0], row[1], peer, *row[2:]), strict=True))


def frame(peer: str, rows: Sequence[Row]) -> pd.DataFrame:
    """Rows of `peer` as a DataFrame: tz-aware `time`, float `t`, categories, nullable `bytes`."""
    import pandas as pd

    columns = list(zip(*rows, strict=True)) if rows else [()] * (len(COLUMNS) - 1)
    data: dict[str, Any] = {
        "time": pd.to_datetime(pd.Series(columns[0], dtype="int64"), unit="ns", utc=True),
        "t": pd.Series(columns[1], dtype="float64"),
        "peer": pd.Series([peer] * len(rows), dtype="category"),
    }
    for name, values in zip(COLUMNS[3:], columns[2:], strict=True):
        if name in CATEGORIES:
            data[name] = pd.Series(values, dtype="object").astype("category")
        elif name == "bytes":
            data[name] = pd.Series(values, dtype="object").astype("Int64")
        else:
            data[name] = pd.Series(values, dtype="object")
    return pd.DataFrame(data, columns=list(COLUMNS))


def values(column: pd.Series) -> list[Any]:
    """Python values of a column, with None for every kind of missing value."""
    return column.astype("object").where(column.notna(), None).tolist()


__all__ = ["CATEGORIES", "COLUMNS", "EventRows", "Row", "as_dict", "frame", "rows_of", "values"]
