"""Connection insight over real aiortc connections: timing breakdowns, merged logs, save/load,
the stats sampler (data channels and media) and the three plots (Agg backend, artists checked)."""

from __future__ import annotations

import asyncio
import os

os.environ["MPLBACKEND"] = "Agg"  # before anything imports pyplot: no display in tests

import matplotlib
import pandas as pd
import pytest

from peerix_nb import Event, EventLog, MemoryDriver, Peer, StatsSampler, media, merge, plot
from peerix_nb.log import timing
from peerix_nb.signaling import ANSWER
from testbed.rooms import channels_open, leave_all, room, wait_until
from tests.util import DropFirst

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SMALL_VIDEO = {"audio": False, "width": 160, "height": 120, "fps": 15}
# The phases every healthy data-channel connection goes through (first_frame needs media).
CONNECT_PHASES = ("discovery", "gathering", "signaling", "ice", "dtls", "sctp", "control_open")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def bars(ax) -> dict[str, int]:
    """Bars per phase label drawn by plot.timeline."""
    return {c.get_label(): len(c) for c in ax.containers}


async def test_two_peers_timing_has_every_phase():
    a, b = await room(2, ids=["a", "b"], channels=["chat"])
    try:
        frames = {p.id: p.events.to_frame() for p in (a, b)}
        rows = {p.id: p.events.timing() for p in (a, b)}
        for peer, other in ((a, b), (b, a)):
            table = rows[peer.id]
            assert len(table) == 1, table
            row = table.iloc[0]
            assert (row.peer, row.remote, row.attempt, row.outcome) == (
                peer.id,
                other.id,
                1,
                "connected",
            )
            for phase in (*CONNECT_PHASES, "total", "first_channel"):
                assert str(table[phase].dtype) == "Float64"
                assert row[phase] > 0, (peer.id, phase, row[phase])
            assert pd.isna(row.first_frame)  # no media: missing, not 0
            for phase in ("discovery", "gathering", "signaling", "ice", "dtls"):
                assert row.total >= row[phase], (phase, row.total, row[phase])
            # total is the discovery start -> connection:connected, read straight from the log
            events = frames[peer.id]
            connected = events.loc[events.event == "connection:connected", "t"].iloc[0]
            origin = row.start - row.discovery / 1000
            assert row.total == pytest.approx((connected - origin) * 1000, abs=1e-6)
            # control_open = start -> connected -> (DTLS connected, same moment) -> control open
            assert row.control_open == pytest.approx(row.total - row.discovery + row.sctp, abs=1.0)
        # the peer already in the room offered on the newcomer's JOIN; b is the polite one
        assert rows["a"].role.tolist() == ["offerer"] and rows["b"].role.tolist() == ["answerer"]
        assert rows["a"].polite.tolist() == [False] and rows["b"].polite.tolist() == [True]
        merged = merge(a, b)
        pd.testing.assert_frame_equal(
            timing(merged), pd.concat([rows["a"], rows["b"]], ignore_index=True)
        )
    finally:
        await leave_all([a, b])


async def test_two_peers_timeline_plot_has_a_bar_per_phase_and_attempt():
    a, b = await room(2, ids=["a", "b"], channels=["chat"])
    try:
        ax = plot.timeline(merge(a, b)).axes[0]
        assert bars(ax) == dict.fromkeys(
            ("discovery", "gathering", "signaling", "ice", "dtls", "sctp"), 2
        )
        assert [t.get_text() for t in ax.get_yticklabels()] == ["a → b #1", "b → a #1"]
        assert {line.get_label() for line in ax.get_lines()} == {"connected", "first channel open"}
        assert a.events.plot_timeline().axes[0].get_yticklabels()[0].get_text() == "b #1"
    finally:
        await leave_all([a, b])


async def test_two_peers_sequence_plot_draws_every_message_received():
    a, b = await room(2, ids=["a", "b"], channels=["chat"])
    try:
        merged = merge(a, b)
        ax = plot.sequence(a, b).axes[0]
        arrows = [p for p in ax.patches if p.get_gid() == "signal"]
        received = merged[merged.event == "signal:recv"]
        assert len(arrows) == len(received) >= 4  # every message received is matched with its send
        assert not [p for p in ax.patches if p.get_gid() == "lost"]
        labels = sorted(t.get_text() for t in ax.texts if t.get_gid() == "signal-label")
        assert labels == sorted(str(k).upper() for k in received.kind)
        assert {"JOIN", "OFFER", "ANSWER", "CHANNEL"} <= set(labels)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    finally:
        await leave_all([a, b])


async def test_failed_attempt_has_missing_phases_then_a_successful_attempt():
    driver = DropFirst(ANSWER)  # the first answer is lost: the first attempt times out
    a = Peer(id="a", driver=driver, connection_timeout=1)
    b = Peer(id="b", driver=driver, connection_timeout=1)
    await a.open("chat")
    await a.join(room="fail")
    await b.join(room="fail")
    await wait_until([a, b], lambda: channels_open([a, b], "chat"), timeout=15)
    for peer in (a, b):
        table = peer.events.timing()
        assert len(table) >= 2 and table.attempt.tolist() == list(range(1, len(table) + 1))
        first, last = table.iloc[0], table.iloc[-1]
        assert first.outcome == "failed" and "not connected within 1.0 s" in first.reason
        assert first.discovery > 0 and first.gathering > 0
        for phase in ("ice", "dtls", "sctp", "control_open", "total", "first_channel"):
            assert pd.isna(first[phase]), (peer.id, phase)  # it never happened: NA, never 0
        assert last.outcome == "connected"
        for phase in (*CONNECT_PHASES, "total", "first_channel"):
            assert last[phase] > 0, (peer.id, phase)
        assert last.start > first.start + 1.0
    first_a = a.events.timing().iloc[0]
    assert pd.isna(first_a.signaling) and first_a.role == "offerer"  # its answer never came

    ax = plot.sequence(a, b, by="order").axes[0]
    lost = [p for p in ax.patches if p.get_gid() == "lost"]
    assert len(lost) == 1
    assert "ANSWER lost" in [t.get_text() for t in ax.texts]
    ax = plot.timeline(a.events).axes[0]
    drawn = sum(bars(ax).values())
    expected = a.events.timing()[["discovery", "gathering", "signaling", "ice", "dtls", "sctp"]]
    assert drawn == int(expected.notna().sum().sum())
    assert ax.get_yticklabels()[0].get_text() == "b #1 (failed)"
    await leave_all([a, b])


async def test_merge_three_peers_and_save_load_round_trip(tmp_path):
    peers = await room(3, ids=["p1", "p2", "p3"], channels=["chat"])
    peers[0].send("grüße, 🌍", label="chat")
    await peers[1].wait_for("channel:message", timeout=5)
    await leave_all(peers)

    merged = merge(*peers)
    frames = [p.events.to_frame() for p in peers]
    assert len(merged) == sum(len(f) for f in frames)
    assert merged.time.is_monotonic_increasing
    assert list(merged.columns) == list(frames[0].columns)
    for column in frames[0].columns:
        assert type(merged[column].dtype) is type(frames[0][column].dtype), column
    assert set(merged.peer.cat.categories) == {"p1", "p2", "p3"}
    for column in ("event", "remote", "kind", "state", "via"):
        union = set().union(*(set(f[column].cat.categories) for f in frames))
        assert set(merged[column].cat.categories) == union, column
    # one peer's rows keep their order (and their own t clock)
    for frame in frames:
        mine = merged[merged.peer == frame.peer.iloc[0]].reset_index(drop=True)
        pd.testing.assert_series_equal(mine.t, frame.t)

    paths = []
    for peer in peers:
        for name in (f"{peer.id}.parquet", f"{peer.id}.jsonl"):
            path = peer.events.save(tmp_path / name)
            loaded = EventLog.load(path)
            assert loaded.peer == peer.id and len(loaded) == len(peer.events)
            pd.testing.assert_frame_equal(loaded.to_frame(), peer.events.to_frame())
            pd.testing.assert_frame_equal(loaded.timing(), peer.events.timing())
            paths.append(path)
    assert "grüße, 🌍" in EventLog.load(tmp_path / "p2.jsonl").to_frame().detail.tolist()
    pd.testing.assert_frame_equal(merge(*paths[::2]), merged)  # logs of "other processes"
    pd.testing.assert_frame_equal(merge(*paths[1::2]), merged)
    pd.testing.assert_frame_equal(merge(peers[0], frames[1], paths[4]), merged)


def test_save_load_edge_cases(tmp_path):
    log = EventLog("solo")
    log.record(Event(name="custom", detail=3))  # a non-text detail is saved as text
    log.record(Event(name="signal:send", kind="join", via="driver", size=20))
    for suffix in ("parquet", "jsonl"):
        loaded = EventLog.load(log.save(tmp_path / f"log.{suffix}"))
        frame = loaded.to_frame()
        assert frame.detail.tolist() == ["3", None]
        assert frame.bytes.tolist()[1] == 20 and pd.isna(frame.bytes.tolist()[0])
        assert (frame.time == log.to_frame().time).all()
    empty = EventLog.load(EventLog("x").save(tmp_path / "empty.jsonl"))
    assert len(empty) == 0 and empty.timing().empty
    both = tmp_path / "both.jsonl"
    both.write_text(
        (tmp_path / "log.jsonl").read_text()
        + (tmp_path / "log.jsonl").read_text().replace('"solo"', '"other"')
    )
    with pytest.raises(ValueError, match="2 peers"):
        EventLog.load(both)
    assert set(merge(both).peer) == {"solo", "other"}


def test_save_load_and_merge_name_the_file_and_the_problem(tmp_path):
    # save("x.csv") wrote Parquet bytes under a .csv name; a foreign file failed in pyarrow
    # (ArrowInvalid) or in float(None); merge([a, b]) was refused as "got list".
    log = EventLog("solo")
    log.record(Event(name="room:join", detail="lobby"))
    with pytest.raises(ValueError, match=r"'x.csv'.*for CSV use log.to_frame\(\).to_csv"):
        log.save(tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
    as_json = log.save(tmp_path / "x.log", format="jsonl")  # format= decides for any name
    assert EventLog.load(as_json, format="jsonl").to_frame().event.tolist() == ["room:join"]
    bare = log.save(tmp_path / "bare")  # no suffix: Parquet (pyarrow is installed)
    assert bare.read_bytes()[:4] == b"PAR1" and len(EventLog.load(bare)) == 1

    (tmp_path / "junk.parquet").write_bytes(b"PAR1 and then not parquet at all")
    with pytest.raises(ValueError, match=r"junk.parquet: not a readable Parquet file"):
        EventLog.load(tmp_path / "junk.parquet")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ValueError, match=r"other.parquet: not an event log \(no column time"):
        EventLog.load(tmp_path / "other.parquet")
    (tmp_path / "other.jsonl").write_text(
        log.save(tmp_path / "ok.jsonl").read_text() + '{"a": 1}\n'
    )
    with pytest.raises(ValueError, match=r"other.jsonl:2: not an event row \(needs event, peer"):
        EventLog.load(tmp_path / "other.jsonl")

    other = EventLog("other")
    other.record(Event(name="room:join", detail="lobby"))
    pd.testing.assert_frame_equal(merge([log, other]), merge(log, other))
    assert merge([]).empty


async def test_plots_and_samplers_name_a_wrong_argument():
    # plot.stats(5) failed with "'int' object has no attribute 'to_frame'", ax=5 with "'int'
    # object has no attribute 'text'".
    peer = Peer(driver=MemoryDriver())
    with pytest.raises(TypeError, match=r"plot.stats\(\) needs a StatsSampler .*got 5"):
        plot.stats(5)
    for draw in (plot.timeline, plot.sequence):
        with pytest.raises(TypeError, match=r"ax must be matplotlib Axes .*got 'left'"):
            draw(peer.events, ax="left")
    sampler = peer.stats(interval=1)
    assert plot.stats(sampler) is not None  # no samples yet: an empty chart, not an error
    for n in ("3", 0, 2.5):
        with pytest.raises(ValueError, match="n must be a positive number of samples"):
            await sampler.wait_samples(n)  # type: ignore[arg-type]
    sampler.stop()


async def test_stats_over_a_data_channel_connection():
    a, b = await room(2, ids=["a", "b"], channels=["chat"])
    try:
        sampler = a.stats(interval=0.1)
        assert isinstance(sampler, StatsSampler)
        n = 3
        await sampler.wait_samples(n, timeout=10)
        while pd.isna(sampler.latest().rtt.iloc[0]):  # SCTP RTT: the first timed acknowledgement
            n += 1
            await sampler.wait_samples(n, timeout=10)
        before = sampler.latest().iloc[0]
        a.send("x" * 5000, label="chat")
        await b.wait_for("channel:message", timeout=5)
        await sampler.wait_samples(sampler.samples + 2, timeout=10)

        frame = sampler.to_frame()
        assert set(frame.kind) == {"transport"} and set(frame.remote) == {"b"}  # no RTP at all
        assert len(frame) == sampler.samples  # one row per round: one remote, one kind
        assert str(frame.bytes_sent.dtype) == "Int64" and str(frame.rtt.dtype) == "Float64"
        last = sampler.latest()
        assert len(last) == 1
        row = last.iloc[0]
        assert row.state == "connected"
        assert row.bytes_sent >= before.bytes_sent + 5000 and row.packets_sent > before.packets_sent
        assert row.bytes_received > 0 and row.packets_received > 0
        assert 0 < row.rtt < 1000
        assert row.local_candidate == "host" and row.remote_candidate == "host"
        assert row.local_address.rsplit(":", 1)[1].isdigit() and row.protocol == "udp"
        assert frame.bitrate_sent.notna().any() and (frame.bitrate_sent.dropna() >= 0).all()
        assert pd.isna(frame.bitrate.iloc[0])  # no delta on the first sample
        assert not sampler.errors

        ax = plot.stats(sampler, metric="rtt").axes[0]
        assert [line.get_label() for line in ax.get_lines()] == ["b transport"]
        assert ax.get_ylabel() == "rtt (ms)"
        with pytest.raises(ValueError, match="unknown metric"):
            plot.stats(sampler, metric="nope")
    finally:
        await leave_all([a, b])


async def test_stats_sampler_stops_on_room_leave():
    a, b = await room(2, ids=["a", "b"], channels=["chat"])
    sampler = a.stats(interval=0.1)
    await sampler.wait_samples(1, timeout=10)
    await a.leave()  # the sampler stops with the peer's room:leave
    await asyncio.gather(sampler.task, return_exceptions=True)
    assert sampler.task.done() and not sampler.running
    with pytest.raises(RuntimeError, match="stopped"):
        await sampler.wait_samples(sampler.samples + 1)
    await b.leave()


async def test_stats_over_media_and_aclose():
    a, b = await room(2, ids=["a", "b"])
    first_frame = asyncio.ensure_future(b.wait_for("media:first-frame", timeout=15))
    await a.publish(media.synthetic(**SMALL_VIDEO), label="camera")
    await first_frame
    sender, receiver = a.stats(interval=0.2), b.stats(interval=0.2)

    def video(sampler: StatsSampler) -> pd.DataFrame:
        frame = sampler.to_frame()
        return frame[frame.kind == "video"]

    n = 3
    while True:  # until both sides have seen at least two video samples with traffic between
        await asyncio.gather(
            sender.wait_samples(n, timeout=10), receiver.wait_samples(n, timeout=10)
        )
        sent, got = video(sender), video(receiver)
        if (
            len(sent) >= 2
            and len(got) >= 2
            and sent.bytes_sent.iloc[-1] > sent.bytes_sent.iloc[0]
            and got.frames_decoded.iloc[-1] > got.frames_decoded.iloc[0]
        ):
            break
        n += 1
    assert sent.packets_sent.iloc[-1] > sent.packets_sent.iloc[0]
    assert sent.bitrate_sent.iloc[-1] > 0 and sent.bitrate.iloc[-1] > 0
    assert got.packets_received.iloc[-1] > got.packets_received.iloc[0]
    assert (got.packets_lost.dropna() >= 0).all() and (got.jitter.dropna() >= 0).all()
    transport = receiver.latest().set_index("kind").loc["transport"]
    assert transport.bitrate_received > 0 and transport.rtt > 0
    ax = plot.stats(sender).axes[0]  # bitrate of the transport and of the video stream
    assert sorted(line.get_label() for line in ax.get_lines()) == ["b transport", "b video"]
    timeline = b.events.timing()
    assert timeline.first_frame.iloc[0] > timeline.first_channel.fillna(0).iloc[0] >= 0

    await sender.aclose()
    assert sender.task.done() and not sender.running
    count = len(sender.to_frame())
    await receiver.wait_samples(receiver.samples + 1, timeout=10)
    assert len(sender.to_frame()) == count  # stopped: no more rows
    await leave_all([a, b])
    await asyncio.gather(receiver.task, return_exceptions=True)
    assert receiver.task.done()


async def test_stats_needs_a_loop_and_a_positive_interval():
    a = Peer()
    with pytest.raises(ValueError):
        a.stats(interval=0)
    async with a.stats(interval=0.05) as sampler:  # a peer with no remotes: empty rounds
        await sampler.wait_samples(2, timeout=5)
        assert sampler.to_frame().empty and sampler.latest().empty
    assert sampler.task.done()


def test_stats_outside_a_loop_is_a_clear_error():
    with pytest.raises(RuntimeError, match="running asyncio event loop"):
        Peer().stats()


def test_attempt_rules_on_a_scripted_log():
    """Which JOIN starts an attempt (not one verify rejected, not one an earlier attempt used),
    the offer that admitted a remote starts its signaling, and `failed` stays the outcome
    through the `closed` that follows it."""
    from types import SimpleNamespace

    remote = SimpleNamespace(id="r", room="x")
    script = [  # (t, event fields)
        (0.0, {"name": "signal:send", "kind": "join"}),
        (1.0, {"name": "signal:recv", "kind": "join", "detail": "r"}),
        (1.1, {"name": "signal:reject", "kind": "join", "detail": "r rejected by verify"}),
        (2.0, {"name": "signal:recv", "kind": "join", "detail": "r"}),
        (2.1, {"name": "connection:new", "remote": remote, "state": "new"}),
        (2.2, {"name": "signal:send", "remote": remote, "kind": "offer"}),
        (2.3, {"name": "connection:connected", "remote": remote, "state": "connected"}),
        (3.0, {"name": "signal:recv", "remote": remote, "kind": "offer"}),
        (3.0, {"name": "signal:ignore", "remote": remote, "kind": "offer"}),
        (5.0, {"name": "connection:closed", "remote": remote, "state": "closed"}),
        (6.0, {"name": "signal:recv", "kind": "offer", "detail": "r"}),
        (6.5, {"name": "connection:new", "remote": remote, "state": "new"}),
        (6.6, {"name": "negotiation:done", "remote": remote, "kind": "remote"}),
        (7.0, {"name": "connection:failed", "remote": remote, "state": "failed", "detail": "boom"}),
        (7.1, {"name": "connection:closed", "remote": remote, "state": "closed", "detail": "x"}),
    ]
    log = EventLog("me")
    for _t, fields in script:
        log.record(Event(**fields))
    frame = log.to_frame()
    frame["t"] = [t for t, _fields in script]
    table = timing(frame)
    first, second = table.iloc[0], table.iloc[1]
    assert first.discovery == pytest.approx(100) and first.total == pytest.approx(300)
    assert (first.role, first.outcome) == ("offerer", "closed") and pd.isna(first.signaling)
    # our JOIN already started attempt 1: attempt 2 came from their offer alone
    assert pd.isna(second.discovery) and second.signaling == pytest.approx(600)
    assert (second.role, second.outcome, second.reason) == ("answerer", "failed", "boom")
    assert pd.isna(second.total) and pd.isna(second.ice)


BAR_PHASES = ["discovery", "gathering", "signaling", "ice", "dtls", "sctp"]


async def four_peer_timing(delay: float) -> pd.DataFrame:
    """timing() of every peer of a room of 4 over MemoryDriver(delay, jitter=0), merged."""
    from peerix_nb import MemoryDriver

    peers = await room(4, driver=MemoryDriver(delay, jitter=0), channels=["chat"])
    frame = timing(merge(*peers))
    await leave_all(peers)
    return frame


async def test_four_peer_phases_are_present_and_add_up_and_a_driver_delay_shows_where_it_should():
    quick, slow = await four_peer_timing(0), await four_peer_timing(100)
    for frame in (quick, slow):
        assert len(frame) == 12  # 4 peers x 3 remotes, one attempt each
        assert (frame["outcome"] == "connected").all()
        values = frame[[*BAR_PHASES, "total"]]
        assert not values.isna().any().any()
        assert (values >= 0).all().all()
        # The offerer's phases up to `connected` follow one another (JOIN received, gather,
        # offer out and answer back, ICE checks, DTLS), so together they are no more than its
        # total. (An answerer starts checking ICE while its answer is still on the way, so its
        # phases may overlap: each is still within the total. `sctp` comes after `connected`.)
        offerer = frame[frame["role"] == "offerer"]
        chain = offerer[["discovery", "gathering", "signaling", "ice", "dtls"]].sum(axis=1)
        assert (chain <= offerer["total"] + 2.0).all(), offerer
        assert (chain > 0.5 * offerer["total"]).all()  # and they explain most of it
        assert (frame[BAR_PHASES[:-1]].max(axis=1) <= frame["total"]).all()
    # A 100 ms one-way driver delay: the offerer's answer comes back after 2 hops (signaling),
    # the newcomer's attempt starts a hop after its JOIN went out (discovery); DTLS does not
    # use the driver at all.
    offerers = slow["role"] == "offerer"
    answerers = slow["role"] == "answerer"
    assert slow.loc[offerers, "signaling"].min() >= 190
    assert slow.loc[answerers, "discovery"].min() >= 190  # JOIN out, OFFER back
    assert quick["signaling"].max() < 100 and quick["discovery"].max() < 100
    assert abs(slow["dtls"].median() - quick["dtls"].median()) < 50


def test_memory_driver_jitter_is_validated():
    from peerix_nb import MemoryDriver

    with pytest.raises(ValueError, match="jitter"):
        MemoryDriver(10, jitter=-1)
    driver = MemoryDriver(100, jitter=20, seed=1)
    waits = [driver._wait() for _ in range(200)]
    assert min(waits) >= 0.08 and max(waits) <= 0.12
    assert MemoryDriver(0, jitter=0)._wait() == 0.0
