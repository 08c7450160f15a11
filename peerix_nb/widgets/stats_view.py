"""StatsView: live charts of a peer's connection statistics, one small chart per metric.

Reads a `StatsSampler` (its own, from `peer.stats()`, or one you pass) incrementally
(`rows_since`): one line per remote, the last `window` seconds, refreshed every `refresh`
seconds while a page shows the widget and paused while none does (the "rendered"/"views"
custom messages VideoView uses). The current emulated network conditions (peerix_nb.network)
of each remote show above the charts. The page draws on canvases (stats_view.js, no library).
"""

from __future__ import annotations

import asyncio
import math
import pathlib
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..errors import closest
from ..stats import StatsSampler
from ._common import (
    Resources,
    check_options,
    check_peer,
    count_views,
    describe,
    display_name,
    running_loop,
)

if TYPE_CHECKING:
    from ..peer import Peer


@dataclass(frozen=True, slots=True)
class Metric:
    """One chart: the sum of `columns` over the rows of `kinds` of a remote's sampling round;
    `rate` makes it per second (a cumulative counter's growth between rounds)."""

    label: str
    unit: str
    kinds: tuple[str, ...]
    columns: tuple[str, ...]
    rate: bool = False
    scale: float = 1.0


#: What StatsView can chart (names for `metrics=`).
METRICS: dict[str, Metric] = {
    "bitrate_sent": Metric("sent", "kbit/s", ("transport",), ("bitrate_sent",), scale=1e-3),
    "bitrate_received": Metric(
        "received", "kbit/s", ("transport",), ("bitrate_received",), scale=1e-3
    ),
    "rtt": Metric("round trip (SCTP)", "ms", ("transport",), ("rtt",)),
    "fps": Metric("video decoded", "fps", ("video",), ("frames_decoded",), rate=True),
    "packets_lost": Metric(
        "RTP lost on the way in", "packets/s", ("audio", "video"), ("packets_lost",), rate=True
    ),
    "remote_packets_lost": Metric(
        "RTP lost on the way out",
        "packets/s",
        ("audio", "video"),
        ("remote_packets_lost",),
        rate=True,
    ),
    "jitter": Metric("RTP jitter (video)", "ms", ("video",), ("jitter",)),
    "net_dropped": Metric(
        "emulated drops", "datagrams/s", ("transport",), ("net_lost", "net_overflow"), rate=True
    ),
    "net_backlog": Metric("emulated queue", "ms", ("transport",), ("net_backlog",)),
}
DEFAULT_METRICS = ("bitrate_sent", "bitrate_received", "rtt", "fps", "packets_lost", "net_dropped")
_NOT_EXPOSED = ("nack", "nacks", "pli", "plis", "fir")


def check_metrics(metrics: Any) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    try:
        names = tuple(metrics)
    except TypeError:
        raise TypeError(f"metrics must be a list of metric names, got {metrics!r}") from None
    if not names:
        raise ValueError(f"metrics must name at least one of {', '.join(METRICS)}")
    for name in names:
        if not isinstance(name, str) or name not in METRICS:
            if isinstance(name, str) and name.lower() in _NOT_EXPOSED:
                raise ValueError(
                    f"aiortc 1.16 counts no {name.upper()} messages (its RTP sender and receiver"
                    f" handle them without a counter); metrics are: {', '.join(METRICS)}"
                )
            near = closest(name, METRICS) if isinstance(name, str) else None
            hint = f"; did you mean {near!r}?" if near else ""
            raise ValueError(f"unknown metric {name!r}{hint} (one of {', '.join(METRICS)})")
    return names


class StatsView(anywidget.AnyWidget):
    """Live charts of `peer.stats()` per remote: bitrates, RTT, fps, losses, emulated drops.

    `StatsView(peer_or_sampler, metrics=DEFAULT_METRICS, *, interval=1.0, refresh=1.0,
    window=60)`: with a Peer it samples every `interval` s itself (and stops on `close()`,
    starting again if the peer rejoins after leaving); with a StatsSampler it reads that one.
    Charts update every `refresh` s while shown. Metrics: see `METRICS`.
    """

    _esm = pathlib.Path(__file__).with_name("stats_view.js")
    _css = pathlib.Path(__file__).with_name("stats_view.css")

    # {metric: {remote id: [[t, value], ...]}}, t in seconds on the peer's EventLog clock
    series = traitlets.Dict().tag(sync=True)
    # [{name, label, unit}] in chart order
    meta: traitlets.List[Any] = traitlets.List().tag(sync=True)
    names = traitlets.Dict().tag(sync=True)  # remote id -> display name
    conditions = traitlets.Dict().tag(sync=True)  # {"peer": text, "remotes": {id: text}}
    window = traitlets.Float(60.0).tag(sync=True)
    status = traitlets.Unicode("waiting").tag(sync=True)  # waiting|live|paused|stopped
    error = traitlets.Unicode("").tag(sync=True)
    updates = traitlets.Int(0).tag(sync=True)  # pushes so far (tests, and the page's "live")

    def __init__(
        self,
        source: Peer | StatsSampler,
        metrics: Any = DEFAULT_METRICS,
        *,
        interval: float = 1.0,
        refresh: float = 1.0,
        window: float = 60.0,
        **kwargs: Any,
    ) -> None:
        for name, value in (("interval", interval), ("refresh", refresh), ("window", window)):
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        names = check_metrics(metrics)
        if isinstance(source, StatsSampler):
            peer, sampler, owned = source.peer, source, False
        else:
            check_peer(source, "StatsView")
            peer, sampler, owned = source, None, True
        check_options(type(self), kwargs)
        if running_loop() is None:
            raise RuntimeError(
                "StatsView needs a running asyncio loop (a Jupyter kernel or a coroutine)"
            )
        super().__init__(
            window=float(window),
            meta=[{"name": n, "label": METRICS[n].label, "unit": METRICS[n].unit} for n in names],
            **kwargs,
        )
        self.peer = peer
        self.metrics = names
        self.interval = float(interval)
        self.refresh = float(refresh)
        self._owned = owned
        self._sampler = sampler if sampler is not None else peer.stats(self.interval)
        self._seen = 0  # what the sampler holds already is history worth showing
        self._resources = Resources(self._show_error)
        self._views: dict[str, int] = {}
        self._rendered = asyncio.Event()
        self._points = max(2, math.ceil(window / self._sampler.interval) + 1)
        self._series: dict[str, dict[str, deque[tuple[float, float]]]] = {n: {} for n in names}
        self._previous: dict[tuple[str, str], tuple[float, float]] = {}  # (metric, remote)
        self.on_msg(self._resources.hop(self._on_browser_message))
        self._resources.spawn(self._run(), "stats-view")

    @property
    def sampler(self) -> StatsSampler:
        """The sampler this view reads (its own when made from a Peer)."""
        return self._sampler

    def close(self) -> None:
        """Stop updating (and sampling, if the view started the sampler) and close the widget."""
        resources = getattr(self, "_resources", None)  # None: __init__ raised
        if resources is not None:
            resources.close()
            if self._owned:
                self._sampler.stop()
        super().close()

    # -- the loop -----------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._views:
                self.status = "paused" if self.updates else "waiting"
                await self._rendered.wait()
            self.update()
            await asyncio.sleep(self.refresh)

    def update(self) -> None:
        """Read the sampler's new rows and push the charts now (the loop does this)."""
        sampler = self._sampler
        if not sampler.running and self._owned and self.peer.joined:
            # the peer left (which stops its samplers) and joined again: sample again
            self._sampler = sampler = self.peer.stats(self.interval)
            self._seen = 0
        rows = sampler.rows_since(self._seen)
        self._seen = sampler.rows_recorded
        self._consume(rows)
        status = "live" if sampler.running else "stopped"
        self._push(status)

    def _consume(self, rows: list[dict[str, Any]]) -> None:
        rounds: dict[tuple[str, float], dict[str, dict[str, Any]]] = {}
        for row in rows:  # a remote's rows of one round share its `t`
            rounds.setdefault((row["remote"], row["t"]), {})[row["kind"]] = row
        for (remote, t), kinds in rounds.items():
            for name in self.metrics:
                metric = METRICS[name]
                total, found = 0.0, False
                for kind in metric.kinds:
                    sample = kinds.get(kind)
                    if sample is None:
                        continue
                    for column in metric.columns:
                        value = sample.get(column)
                        if value is not None and not _missing(value):
                            total += float(value)
                            found = True
                if not found:
                    continue
                if metric.rate:
                    before = self._previous.get((name, remote))
                    self._previous[(name, remote)] = (t, total)
                    if before is None or t <= before[0] or total < before[1]:
                        continue  # the first round, or counters started again (new connection)
                    total = (total - before[1]) / (t - before[0])
                points = self._series[name].get(remote)
                if points is None:
                    points = self._series[name][remote] = deque(maxlen=self._points)
                points.append((round(t, 3), round(total * metric.scale, 3)))

    def _push(self, status: str) -> None:
        if self._resources.closed:
            return
        latest = max(
            (p[-1][0] for lines in self._series.values() for p in lines.values() if p),
            default=0.0,
        )
        start = latest - self.window
        series = {
            name: {
                remote: [list(point) for point in points if point[0] >= start]
                for remote, points in lines.items()
            }
            for name, lines in self._series.items()
        }
        names = {}
        remotes = {}
        from ..network import effective

        for remote in list(self.peer.connections.values()):
            names[remote.id] = display_name(remote.metadata, remote.id[:8])
            conditions = effective(remote)
            remotes[remote.id] = str(conditions) if conditions is not None else "none"
        for lines in series.values():
            for remote_id in lines:
                names.setdefault(remote_id, remote_id[:8])
        own = self.peer.network
        with self.hold_sync():
            self.series = series
            self.names = names
            self.conditions = {"peer": str(own) if own is not None else "none", "remotes": remotes}
            self.status = status
            self.updates += 1

    # -- browser messages ---------------------------------------------------------------------
    def _on_browser_message(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") in ("rendered", "views"):
            count_views(self._views, str(content.get("frontend", "")), content)
            if self._views:
                self._rendered.set()
            else:
                self._rendered.clear()

    def _show_error(self, error: BaseException, where: str) -> None:
        self.error = f"{where}: {describe(error)}"


def _missing(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


__all__ = ["DEFAULT_METRICS", "METRICS", "Metric", "StatsView"]
