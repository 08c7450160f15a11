"""StatsView without a browser (as tests/test_widgets.py): the comm records what the kernel
sends, the page's "rendered"/"views" messages are fed in; peers are real aiortc connections."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from peerix_nb import MemoryDriver, NetworkConditions, Peer
from peerix_nb.widgets import StatsView
from peerix_nb.widgets.stats_view import DEFAULT_METRICS, METRICS
from testbed.rooms import leave_all, poll_until, room
from tests.widget_comm import page, recording_comm  # noqa: F401 (autouse fixture)


def show(view: StatsView, views: int = 1, frontend: str = "page") -> None:
    page(view, {"type": "rendered" if views else "views", "frontend": frontend, "views": views})


def lines(view: StatsView, metric: str) -> dict[str, list[list[float]]]:
    return view.series.get(metric, {})


@pytest.mark.timeout(30)
async def test_stats_view_charts_every_remote_and_pauses_without_a_page() -> None:
    peers = await room(3, channels=["chat"], ids=["a", "b", "c"])
    a = peers[0]
    view = StatsView(a, interval=0.1, refresh=0.05, window=5)
    assert [m["name"] for m in view.meta] == list(DEFAULT_METRICS)
    assert view.meta[0] == {"name": "bitrate_sent", "label": "sent", "unit": "kbit/s"}
    await asyncio.sleep(0.3)
    assert view.updates == 0 and view.status == "waiting"  # no page: nothing pushed
    show(view)
    await poll_until(lambda: set(lines(view, "bitrate_sent")) == {"b", "c"}, timeout=10)
    await poll_until(lambda: all(len(p) >= 3 for p in lines(view, "bitrate_sent").values()))
    assert view.status == "live" and view.names == {"b": "p1", "c": "p2"}
    assert set(lines(view, "rtt")) == {"b", "c"}
    points = lines(view, "bitrate_sent")["b"]
    assert all(t2 > t1 for (t1, _), (t2, _) in itertools.pairwise(points))
    assert all(value >= 0 for _t, value in points)  # kbit/s of the control pings
    assert lines(view, "fps") == {}  # no video: no line
    assert view.conditions == {"peer": "none", "remotes": {"b": "none", "c": "none"}}

    show(view, 0)  # the output was cleared: pause
    await poll_until(lambda: view.status == "paused")
    paused_at = view.updates
    await asyncio.sleep(0.3)
    assert view.updates == paused_at
    assert view.sampler.running  # it keeps sampling: the history is there on resume
    show(view, 1, frontend="other page")
    await poll_until(lambda: view.updates > paused_at)
    view.close()
    await poll_until(lambda: not view.sampler.running)  # the view's own sampler stops
    await leave_all(peers)


@pytest.mark.timeout(30)
async def test_stats_view_shows_conditions_and_emulated_drops() -> None:
    a, b = await room(2, channels=["chat"], ids=["a", "b"])
    sampler = a.stats(interval=0.1)
    view = StatsView(sampler, metrics=["net_dropped", "net_backlog"], refresh=0.05, window=10)
    show(view)
    a.network = NetworkConditions(loss=0.5, seed=1)
    await poll_until(lambda: view.conditions.get("peer") == "loss 50 %, seed 1")
    assert view.conditions["remotes"] == {"b": "loss 50 %, seed 1"}
    for i in range(200):
        a.send(f"{i}", label="chat")
        if i % 20 == 19:
            await asyncio.sleep(0.02)
    await poll_until(
        lambda: any(v > 0 for _t, v in lines(view, "net_dropped").get("b", [])), timeout=10
    )
    assert lines(view, "net_backlog")["b"][-1][1] == 0  # no rate cap: no queue
    a.connections["b"].network = NetworkConditions(delay=50)
    await poll_until(lambda: view.conditions["remotes"] == {"b": "delay 50 ms"})
    view.close()
    assert sampler.running  # not the view's: it stays
    await sampler.aclose()
    await leave_all([a, b])


@pytest.mark.timeout(30)
async def test_stats_view_samples_again_after_the_peer_rejoins() -> None:
    driver = MemoryDriver()
    a, b = await room(2, driver=driver, ids=["a", "b"])
    view = StatsView(a, metrics="rtt", interval=0.1, refresh=0.05)
    show(view)
    await poll_until(lambda: "b" in lines(view, "rtt"), timeout=10)
    await a.leave()
    await poll_until(lambda: view.status == "stopped")
    await a.join(room="room")
    await poll_until(lambda: view.status == "live" and view.sampler.running, timeout=10)
    view.close()
    await leave_all([a, b])


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"metrics": ["nack"]}, ValueError, "aiortc 1.16 counts no NACK"),
        ({"metrics": ["bitrate"]}, ValueError, "did you mean 'bitrate_sent'"),
        ({"metrics": []}, ValueError, "at least one"),
        ({"metrics": 5}, TypeError, "list of metric names"),
        ({"interval": 0}, ValueError, "interval must be a number of seconds > 0"),
        ({"window": -1}, ValueError, "window must be"),
        ({"colour": "red"}, TypeError, "unexpected keyword argument 'colour'"),
    ],
)
async def test_stats_view_refuses_bad_arguments(options: dict[str, Any], error, message) -> None:
    peer = Peer(driver=MemoryDriver())
    with pytest.raises(error, match=message):
        StatsView(peer, **options)
    with pytest.raises(TypeError, match="StatsView needs a peerix_nb Peer"):
        StatsView("peer")


def test_every_metric_names_its_unit() -> None:
    assert set(DEFAULT_METRICS) <= set(METRICS)
    assert all(m.unit and m.label and m.kinds and m.columns for m in METRICS.values())
