"""Event logs in files (Parquet or JSON lines) and several logs merged into one DataFrame.

`save_rows`/`read_rows` are what `EventLog.save`/`EventLog.load` do; `merge()` puts the logs of
several peers (EventLogs, Peers, frames, files of other processes) on one wall clock. Layers
(each module imports only those before it): logrows <- timing, logfiles <- plot <- log, stats;
so this knows an EventLog only as a `logrows.EventRows`, and reads files into plain rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .logrows import CATEGORIES, COLUMNS, Row, as_dict, frame, rows_of, values

if TYPE_CHECKING:
    import pandas as pd

    from .log import EventLog
    from .peer import Peer

PathLike = str | os.PathLike[str]

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


def save_rows(peer: str, rows: Iterable[Row], path: PathLike, format: str | None = None) -> Path:
    """Write one peer's rows to `path` (see `EventLog.save`); returns the path written."""
    path = Path(path)
    fmt = _format(path, format)
    if fmt == "parquet":
        table = frame(peer, list(rows))
        table["detail"] = table["detail"].map(_text, na_action="ignore").astype("object")
        table.to_parquet(path, engine="pyarrow", index=False)
    else:
        with path.open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(_json_row(peer, row), ensure_ascii=False))
                out.write("\n")
    return path


def _json_row(peer: str, row: Row) -> dict[str, Any]:
    record = as_dict(peer, row)
    record["time"] = _iso(row[0])
    record["detail"] = _text(row[10])
    return record


def read_rows(path: PathLike, format: str | None = None) -> list[tuple[str, list[Row]]]:
    """The logs in a file written by `save_rows`: (peer, rows) per peer, in order of first
    appearance; `format` None tells Parquet from JSON lines by the first bytes."""
    import pandas as pd

    path = Path(path)
    fmt = format
    if fmt is None:
        with path.open("rb") as f:
            fmt = "parquet" if f.read(4) == b"PAR1" else "jsonl"
    if fmt == "parquet":
        _format(path, "parquet")
        try:
            table = pd.read_parquet(path, engine="pyarrow")
        except Exception as error:  # pyarrow's own errors (ArrowInvalid, ...) name no file
            raise ValueError(f"{path}: not a readable Parquet file: {error}") from None
        missing = [name for name in COLUMNS if name not in table.columns]
        if missing:
            raise ValueError(f"{path}: not an event log (no column {', '.join(missing)})")
        times = pd.to_datetime(table["time"], utc=True).dt.as_unit("ns").astype("int64").tolist()
        columns = {name: values(table[name]) for name in COLUMNS[1:]}
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
            times = cast("list[int]", raw)
        else:
            parsed = pd.to_datetime(pd.Series(raw, dtype="object"), utc=True, format="ISO8601")
            times = parsed.dt.as_unit("ns").astype("int64").tolist()
        columns = {name: [r.get(name) for r in records] for name in COLUMNS[1:]}
    logs: dict[str, list[Row]] = {}
    for i, time_ns in enumerate(times):
        size = columns["bytes"][i]
        logs.setdefault(str(columns["peer"][i]), []).append(
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
    return list(logs.items())


# -- several logs -----------------------------------------------------------------------------


def merge(*sources: EventLog | Peer | pd.DataFrame | PathLike | Any) -> pd.DataFrame:
    """One event DataFrame of several peers, ordered by wall time (`time`), in the schema of
    `EventLog.to_frame()` with categories unioned.

    Each source is an EventLog, a Peer, an event DataFrame (e.g. an earlier `merge`) or the
    path of a file written by `EventLog.save` (logs of other processes), or a list of them.
    Rows with equal times keep the order of the arguments. Clocks of different machines may
    disagree: `t` stays each peer's own monotonic clock.
    """
    import pandas as pd

    # merge([a, b]) as well as merge(a, b): a list of sources is the natural thing to pass
    flat = [
        s for source in sources for s in (source if isinstance(source, list | tuple) else [source])
    ]
    frames = [_frame_of(source) for source in flat]
    if not frames:
        return frame("", [])
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

    if isinstance(source, pd.DataFrame):
        missing = set(COLUMNS) - set(source.columns)
        if missing:
            raise ValueError(f"not an event frame: missing columns {sorted(missing)}")
        return source
    log = rows_of(source)  # an EventLog or a Peer
    if log is not None:
        return log.to_frame()
    if isinstance(source, (str, os.PathLike)):
        logs = [frame(peer, rows) for peer, rows in read_rows(source)]
        return merge(*logs) if len(logs) != 1 else logs[0]
    raise TypeError(
        f"merge() takes EventLogs, Peers, event DataFrames or file paths, got {type(source).__name__}"
    )


__all__ = ["PathLike", "merge", "read_rows", "save_rows"]
