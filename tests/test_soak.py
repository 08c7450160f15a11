"""Soak and glare storm (issue 9), reduced for CI: a long-lived process must not leak, and
every operation must complete when both sides of several pairs act at random moments.

The code is bench/soak.py's and bench/glare_storm.py's (`python -m bench.soak` and
`python -m bench.glare_storm` run the full size: 500 join/leave and 200 publish/unpublish
cycles, a 60 s storm; docs/RELIABILITY.md §6 has the figures). Here:

- 40 join/leave cycles of a 3-peer room, with the same three Peers and with new ones each
  cycle; 50 publish/unpublish cycles between two connected peers, with one stream published
  again and again and with a new stream each cycle. Samples (after `gc.collect()`) of open
  file descriptors, asyncio tasks, threads, VmRSS and live library objects must stay at the
  baseline taken after a warm-up, and nothing but executor threads may be left after leave.
- A 15 s glare storm over 4 pairs (one room each, all four join orders).

Three library bugs this found, now fixed, keep a test each: a local Tap task (and its track)
left alive per published-and-dropped track, a publish() that never finished when the remote
left with it queued, and a stream shown under its id instead of its label after a glare.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from bench.glare_storm import StormResult, glare_storm
from bench.soak import SoakResult, join_leave_soak, publish_soak
from peerix_nb import media
from testbed.rooms import leave_all, room, wait_until

JOIN_LEAVE = 40
PUBLISH = 50
EVERY = 10
WARMUP = 5
STORM_SECONDS = 15.0
TINY = {"width": 96, "height": 72, "fps": 10}

# RSS bounds, from the full run (docs/RELIABILITY.md §6) and what a leak would cost:
# - fresh Peers: +0.7 to +2.1 MiB over 500 cycles in two runs (0.1-0.4 MiB per 100 cycles);
#   one leaked 3-peer room is 6 RTCPeerConnections at ~179 KiB each (docs/BENCHMARKS.md,
#   bench.memory) plus 3 Peers and their logs, ~1 MiB, so 40 cycles leaking a room each would
#   add ~40 MiB. 6 MiB leaves room for allocator noise in a process that ran other tests first.
# - the same Peers: their EventLogs grow by design (137 rows a cycle for the room, bounded by
#   log.DEFAULT_MAX_ROWS per peer); the full run measured ~330 B of RSS per row (tracemalloc:
#   ~225 B of Python objects per row), so the bound adds 512 B per new row.
# - publish/unpublish: +0.2 MiB over 200 cycles with one stream; a dropped 160x120 synthetic
#   stream kept alive costs ~115 KiB (its test pattern), so 50 of them ~6 MiB. 4 MiB.
FRESH_RSS_KIB = 6 * 1024
SAME_RSS_KIB = 6 * 1024
LOG_ROW_BYTES = 512
PUBLISH_RSS_KIB = 4 * 1024


def show(result: SoakResult) -> None:
    print(f"\n{result.table()}\n{result.summary()}")
    print(f"threads left after leave: {', '.join(result.threads_left)}")
    print(f"tasks left after leave: {', '.join(result.tasks_left) or 'none'}")


def new_threads(before: set[str]) -> set[str]:
    """Threads alive now that were not before, except the loop's default executor workers
    (`asyncio_N`: the encoders run there; the pool grows to min(32, cores + 4) and stays)."""
    return {
        t.name
        for t in threading.enumerate()
        if t.name not in before and not t.name.startswith("asyncio_")
    }


def assert_flat(result: SoakResult, rss_bound_kib: float) -> None:
    """The last sample is at the baseline: same fds, no more tasks or threads, no more live
    Peers, RemotePeers, RTCPeerConnections, Taps or synthetic tracks; RSS within the bound."""
    base, last = result.baseline, result.last
    assert last.fds <= base.fds, f"file descriptors {base.fds} -> {last.fds}"
    assert last.tasks <= base.tasks, f"tasks {base.tasks} -> {last.tasks}"
    # Counted without the default executor's workers (the pool grows and keeps them);
    # decoder threads are per receiver (constant), one may still be stopping.
    assert last.threads <= base.threads + 1, f"threads {base.threads} -> {last.threads}"
    for name, count in last.objects.items():
        assert count <= base.objects[name], f"live {name}: {base.objects[name]} -> {count}"
    growth = last.rss_kib - base.rss_kib
    assert growth <= rss_bound_kib, f"RSS grew {growth} KiB (bound {rss_bound_kib:.0f} KiB)"


# == join/leave ====================================================================================
@pytest.mark.timeout(60)
@pytest.mark.parametrize("peers", ["same", "fresh"])
async def test_join_leave_cycles_leak_nothing(peers: str) -> None:
    """40 cycles of: three peers join at once, connect, open `chat`, deliver a message, leave.
    Proves that leave() releases everything a join made: no fd, task, thread, RemotePeer or
    RTCPeerConnection survives a cycle (each sample is taken between cycles), the driver has
    no subscription left, and RSS stays flat but for the EventLog rows of reused Peers."""
    threads_before = {t.name for t in threading.enumerate()}
    result = await join_leave_soak(JOIN_LEAVE, EVERY, WARMUP, peers)
    show(result)
    bound = FRESH_RSS_KIB
    if peers == "same":  # the logs keep their rows: by design, and bounded
        rows = result.growth("log rows")
        assert rows > 0
        bound = SAME_RSS_KIB + rows * LOG_ROW_BYTES / 1024
    assert_flat(result, bound)
    for sample in result.samples:  # between cycles nothing of the room may be left
        for name in ("RemotePeer", "RTCPeerConnection"):
            assert sample.objects[name] <= result.baseline.objects[name], (name, sample.cycle)
        assert sample.extra["driver subs"] == 0
    assert result.tasks_left == [], result.tasks_left
    assert not new_threads(threads_before)


# == publish/unpublish =============================================================================
@pytest.mark.timeout(60)
async def test_publish_unpublish_cycles_of_one_stream_leak_nothing() -> None:
    """50 cycles of: `a` publishes the same small stream, `b` gets stream:add and a video frame,
    `a` unpublishes, `b` gets stream:remove. Proves that renegotiation, the reused m-lines
    (2 transceivers throughout), senders, receivers, decoders and taps cost nothing per cycle,
    and that after leave no decoder thread is left (executor workers stay, as a pool does)."""
    threads_before = {t.name for t in threading.enumerate()}
    result = await publish_soak(PUBLISH, EVERY, WARMUP, streams="same")
    show(result)
    assert_flat(result, PUBLISH_RSS_KIB)
    assert {s.extra["transceivers"] for s in result.samples} == {2}
    assert not new_threads(threads_before), new_threads(threads_before)
    assert result.tasks_left == [], result.tasks_left


@pytest.mark.timeout(60)
async def test_publish_unpublish_cycles_of_new_streams_leak_nothing() -> None:
    """As above, with a new synthetic stream each cycle, dropped after its unpublish (what
    `await peer.publish(media.synthetic())` in a notebook cell does)."""
    result = await publish_soak(PUBLISH, EVERY, WARMUP, streams="new")
    show(result)
    assert_flat(result, PUBLISH_RSS_KIB)
    assert result.tasks_left == [], result.tasks_left


# == bugs found by the storm and the audit, fixed ==================================================
@pytest.mark.timeout(30)
async def test_a_publish_queued_when_the_remote_leaves_still_finishes() -> None:
    """Two publishes back to back, and the remote leaves in the same loop turn: the second
    publish waits in the remote's queue behind the first when the LEAVE closes the remote.
    Both tasks must finish (there is nobody left to publish to), not wait forever."""
    a, b = await room(2, channels=["chat"])  # chat open: renegotiation rides the control channel
    first = a.publish(media.synthetic(audio=False, **TINY), label="cam")
    second = a.publish(media.synthetic(video=False), label="mic")
    left = b.leave()
    _, pending = await asyncio.wait({first, second}, timeout=5)
    await left
    await leave_all([a, b])  # cancels what is still pending
    assert not pending, f"{len(pending)} publish task(s) still pending 5 s after the remote left"


@pytest.mark.timeout(30)
async def test_a_stream_first_seen_in_an_answer_gets_its_label() -> None:
    """b (polite) publishes and unpublishes `one`, leaving an idle video m-line; then a and b
    publish in the same loop turn, and b's `two` reuses that m-line. a must show it as `two`."""
    a, b = await room(2, ids=["a", "b"], channels=["chat"])  # "a" < "b": b is the polite side
    await b.publish(media.synthetic(audio=False, **TINY), label="one")
    await wait_until([a], lambda: "one" in a.connections[b.id].streams)
    await b.unpublish("one")
    await wait_until([a], lambda: "one" not in a.connections[b.id].streams)
    two = media.synthetic(audio=False, **TINY)
    await asyncio.gather(
        a.publish(media.synthetic(video=False), label="mic"), b.publish(two, label="two")
    )
    with contextlib.suppress(AssertionError):  # reported below, with what a shows instead
        await wait_until([a, b], lambda: "two" in a.connections[b.id].streams, timeout=5)
    shown = list(a.connections[b.id].streams)
    await leave_all([a, b])
    assert shown == ["two"], f"a shows {shown}; the stream id of 'two' is {two.id}"


# == glare storm ===================================================================================
@pytest.mark.timeout(120)
async def test_glare_storm_every_operation_completes() -> None:
    """4 pairs (one room each; impolite first, polite first, both at once either way), both
    sides opening channels and publishing/republishing/unpublishing small streams at random
    moments for 15 s (seeded), plus moments where both sides of a pair act in the same loop
    turn. Proves: every operation's task finishes, glare really happened (rollbacks), every
    opened label ends open at both ends, every published stream ends on the remote with the
    kinds last published and delivers a frame of each kind, every unpublished one is gone, no
    `error` event, every stream shows under its label, and after leave no task or fd is left."""
    threads_before = {t.name for t in threading.enumerate()}
    storm: StormResult = await glare_storm(STORM_SECONDS, pairs=4, seed=1)
    print(f"\n{storm.summary()}")
    print("join orders: " + "; ".join(storm.join_orders))
    print(f"tasks left after leave: {', '.join(storm.tasks_after_names) or 'none'}")

    assert not storm.ops_unfinished, storm.ops_unfinished
    assert sum(storm.ops.values()) > 100 and storm.counts.get("signal:rollback", 0) > 0
    assert not storm.problems, storm.problems
    assert not storm.frames_missing, storm.frames_missing
    assert not storm.errors, storm.errors
    assert not storm.mislabelled, storm.mislabelled
    assert not storm.tasks_after_names, storm.tasks_after_names
    assert storm.fds_after <= storm.fds_before
    assert not new_threads(threads_before), new_threads(threads_before)
