"""EventsView: a live table of the newest rows of a Peer's EventLog, filterable by group.

It shows the log's own rows (the ones `peer.events.to_frame()` returns), so the table cannot
disagree with the analysis. New rows are picked up after every event, coalesced to a few
refreshes per second; group filters come from the browser as custom messages.
"""

from __future__ import annotations

import math
import pathlib
from collections import deque
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..events import group_of
from ._common import Coalesce, Resources, check_options, check_peer, describe

if TYPE_CHECKING:
    from ..events import Event
    from ..peer import Peer

#: Columns sent to the browser, in order (`time_ms` is wall-clock time, for tooltips).
TABLE_COLUMNS = ("t", "remote", "event", "state", "label", "kind", "via", "bytes", "detail")
_DETAIL_CHARS = 160
#: Groups offered as filters before they are seen in the log.
DEFAULT_GROUPS = ("room", "connection", "channel", "stream", "track", "signal", "error")


def table_row(row: dict[str, Any]) -> list[Any]:
    """One log row as a JSON-safe list in TABLE_COLUMNS order, plus time in ms at the end."""
    out: list[Any] = []
    for name in TABLE_COLUMNS:
        value = row.get(name)
        if name == "t":
            value = round(float(value), 3) if value is not None else None
        elif name == "bytes":
            value = int(value) if value is not None and not _is_nan(value) else None
        elif value is None:
            value = ""
        elif name == "detail":
            text = str(value)
            value = text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS] + "…"
        else:
            value = str(value)
        out.append(value)
    time_ns = row.get("time")
    out.append(time_ns / 1e6 if isinstance(time_ns, (int, float)) else None)
    return out


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


class EventsView(anywidget.AnyWidget):
    """Live table of the last `last` EventLog rows of `peer`, with group filters.

    `EventsView(peer, last=200)`; `groups=[...]` limits it to some event groups
    (`connection`, `channel`, `signal`, ...). For analysis use `peer.events.to_frame()`.
    """

    _esm = pathlib.Path(__file__).with_name("events_view.js")
    _css = pathlib.Path(__file__).with_name("events_view.css")

    rows: traitlets.List[Any] = traitlets.List().tag(sync=True)
    columns = traitlets.List(traitlets.Unicode(), list(TABLE_COLUMNS)).tag(sync=True)
    groups = traitlets.List(traitlets.Unicode()).tag(sync=True)  # empty: every group
    known_groups = traitlets.List(traitlets.Unicode()).tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)  # rows in the whole log
    last = traitlets.Int(200).tag(sync=True)
    compact = traitlets.Bool(False).tag(sync=True)
    max_height = traitlets.Unicode("320px").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        peer: Peer,
        last: int = 200,
        *,
        groups: list[str] | tuple[str, ...] = (),
        compact: bool = False,
        max_height: str = "320px",
        refresh: float = 0.2,
        **kwargs: Any,
    ) -> None:
        check_peer(peer, "EventsView", browser_peer=True)
        check_options(type(self), kwargs)
        if not isinstance(last, int) or last < 1:
            raise ValueError(f"last must be a positive number of rows, got {last!r}")
        super().__init__(
            last=last,
            groups=list(groups),
            compact=compact,
            max_height=max_height,
            **kwargs,
        )
        self.peer = peer
        self._resources = Resources(self._show_error)
        self._table: deque[list[Any]] = deque(maxlen=last)
        self._known: set[str] = set(DEFAULT_GROUPS)
        self._unseen = 0  # events since the last refresh = rows added to the log since then
        self._refresh = Coalesce(self._resources, self._flush, refresh)
        self._resources.on(peer, "*", self._on_event)
        self.on_msg(self._resources.hop(self._on_browser_message))
        self.observe(self._resources.hop(self._on_filter), names=["groups", "last"])
        self._rebuild()

    def close(self) -> None:
        """Stop following the peer and close the widget."""
        resources = getattr(self, "_resources", None)  # None: __init__ raised
        if resources is not None:
            resources.close()
        super().close()

    # -- following the log ------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        # The Peer's EventLog subscribed first, so the row for `event` is already in the log.
        self._unseen += 1
        self._refresh.poke()

    def _wanted(self, event_name: str) -> bool:
        return not self.groups or group_of(event_name) in self.groups

    def _flush(self) -> None:
        log = self.peer.events
        count, self._unseen = self._unseen, 0
        if count:
            for row in log.tail(count):  # the rows of those events, oldest first
                self._known.add(group_of(str(row["event"])))
                if self._wanted(str(row["event"])):
                    self._table.append(table_row(row))
        self._publish(len(log))

    def _rebuild(self) -> None:
        log = self.peer.events
        self._unseen = 0
        self._table = deque(maxlen=self.last)
        picked: list[list[Any]] = []
        # A filter may match few rows: look further back than `last`, but not without bound.
        for row in reversed(log.tail(max(self.last * 20, 5_000))):
            self._known.add(group_of(str(row["event"])))
            if self._wanted(str(row["event"])):
                picked.append(table_row(row))
                if len(picked) >= self.last:
                    break
        self._table.extend(reversed(picked))
        self._publish(len(log))

    def _publish(self, total: int) -> None:
        if self._resources.closed:
            return
        with self.hold_sync():
            self.rows = list(self._table)
            self.total = total
            known = sorted(self._known)
            if known != self.known_groups:
                self.known_groups = known

    def _on_filter(self, change: Any) -> None:
        self._rebuild()

    def _on_browser_message(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "groups":
            return
        groups = content.get("groups")
        if isinstance(groups, list) and all(isinstance(g, str) for g in groups):
            self.groups = groups

    def _show_error(self, error: BaseException, where: str) -> None:
        self.error = f"{where}: {describe(error)}"


__all__ = ["TABLE_COLUMNS", "EventsView", "table_row"]
