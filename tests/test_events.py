"""Emitter and EventLog unit tests: groups, once/off, decorators, async and failing handlers, dtypes."""

from __future__ import annotations

import asyncio
import re

import pandas as pd
import pytest

from peerix_nb import Event, EventLog, MemoryDriver, Peer, PeerixError, events
from peerix_nb.events import Emitter


def test_group_exact_and_wildcard_handlers():
    emitter, seen = Emitter(), []
    emitter.on("*", lambda e: seen.append(("*", e.name)))
    emitter.on("connection", lambda e: seen.append(("group", e.name)))
    emitter.on("connection:new", lambda e: seen.append(("exact", e.name)))
    emitter.emit(Event(name="connection:new"))
    emitter.emit(Event(name="channel:open"))
    assert seen == [
        ("*", "connection:new"),
        ("exact", "connection:new"),
        ("group", "connection:new"),
        ("*", "channel:open"),
    ]


def test_once_off_and_decorator():
    emitter, seen = Emitter(), []

    @emitter.on("channel")
    def on_channel(e):
        seen.append(("on", e.name))

    emitter.once("channel:open", lambda e: seen.append(("once", e.name)))
    emitter.emit(Event(name="channel:open"))
    emitter.emit(Event(name="channel:open"))
    emitter.off("channel", on_channel)
    emitter.emit(Event(name="channel:open"))
    assert seen == [("once", "channel:open"), ("on", "channel:open"), ("on", "channel:open")]
    emitter.on("x", print)
    emitter.off("x")
    assert "x" not in emitter._handlers


def test_bad_subscriptions_are_rejected():
    emitter = Emitter()
    with pytest.raises(TypeError):
        emitter.on("", print)
    with pytest.raises(TypeError):
        emitter.on("x", "not callable")  # type: ignore[arg-type]


async def test_a_peer_refuses_event_names_it_never_emits():
    # A misspelt name used to be accepted and simply never fire: a silent trap in a notebook.
    peer = Peer(driver=MemoryDriver())
    with pytest.raises(ValueError, match=r"'conection'; did you mean 'connection'\?"):
        peer.on("conection", print)
    with pytest.raises(ValueError, match=r"did you mean 'stream:add'\?"):
        peer.once("stream:added", print)
    with pytest.raises(ValueError, match=r"no peer event is called 'zzz'\. Events are"):
        await peer.wait_for("zzz", timeout=5)  # at once, not after the timeout
    assert list(peer._emitter._handlers) == ["*"]  # only the EventLog's: nothing was added
    for name in ("*", "connection", "connection:disconnected", "signal:rollback", "error"):
        peer.on(name, print)
        peer.off(name, print)
    # every listed group and event name is subscribable, and they are all `group[:action]`
    assert all(events.group_of(n) in events.EVENTS for n in events.EVENT_NAMES - {"*"})
    assert Emitter().on("custom", print)  # a plain Emitter (drivers) takes any name


async def test_wait_for_an_event_that_already_came_says_so():
    # The classic mistake (`await peer.join(...)`, then `await peer.wait_for("room:join")`) used to
    # end in a bare "no 'room:join' event within 0.2 s".
    peer = Peer(driver=MemoryDriver())
    await peer.join(room="lobby")
    with pytest.raises(TimeoutError, match=r"one came \d+\.\d s before this wait began: wait_for"):
        await peer.wait_for("room:join", timeout=0.2)
    with pytest.raises(TimeoutError, match=r"began \(not checked against `where`\)"):
        await peer.wait_for("room", lambda e: e.detail == "other", timeout=0.2)  # a group too
    with pytest.raises(TimeoutError, match=r"^no 'room:leave' event within 0.2 s$"):
        await peer.wait_for("room:leave", timeout=0.2)  # never came: nothing to add
    await peer.leave()


async def test_async_handlers_and_failing_handlers_become_error_events():
    peer = Peer()
    errors, done = [], asyncio.Event()

    @peer.on("room")
    async def slow(e):
        await asyncio.sleep(0)
        done.set()

    peer.on("room:join", lambda e: 1 / 0)

    @peer.on("room:join")
    async def fails_later(e):
        raise RuntimeError("boom")

    peer.on("error", errors.append)
    peer.emit(Event(name="room:join"))
    await asyncio.wait_for(done.wait(), 5)
    await peer.wait_for("error", lambda e: "boom" in e.error.message, timeout=5) if len(
        errors
    ) < 2 else None
    messages = [e.error.message for e in errors]
    assert any("ZeroDivisionError" in m for m in messages) and any("boom" in m for m in messages)
    assert all(isinstance(e.error, PeerixError) and e.error.code == "UNKNOWN_ERROR" for e in errors)


async def test_failing_error_handler_does_not_recurse(caplog):
    peer = Peer()
    calls = []
    peer.on("error", lambda e: calls.append(e) or 1 / 0)
    peer._report(RuntimeError("x"))
    assert len(calls) == 1


async def test_wait_for_filters_and_times_out():
    peer = Peer()
    waiter = asyncio.ensure_future(
        peer.wait_for("channel:open", lambda e: e.label == "b", timeout=5)
    )
    await asyncio.sleep(0)
    peer.emit(Event(name="channel:open", label="a"))
    peer.emit(Event(name="channel:open", label="b"))
    assert (await waiter).label == "b"
    with pytest.raises(asyncio.TimeoutError, match="channel:close"):
        await peer.wait_for("channel:close", timeout=0.01)
    assert "channel:close" not in peer._emitter._handlers


def test_event_log_frame_has_schema_dtypes():
    log = EventLog("me")
    log.room = "lobby"
    log.record(Event(name="signal:send", kind="join", via="driver", size=30))
    log.record(Event(name="channel:message", label="chat", data="hello"))
    log.record(Event(name="channel:message", label="chat", data=b"\x00\x01"))
    log.record(Event(name="error", error=PeerixError("PEER_SIGNALING_ERROR", "bad")))
    frame = log.to_frame()
    assert list(frame.columns) == [
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
    ]
    assert isinstance(frame["time"].dtype, pd.DatetimeTZDtype)
    assert frame["t"].dtype == "float64" and frame["t"].is_monotonic_increasing
    for column in ("peer", "room", "remote", "event", "state", "kind", "via"):
        assert isinstance(frame[column].dtype, pd.CategoricalDtype), column
    assert str(frame["bytes"].dtype) == "Int64"
    assert frame["bytes"].tolist()[:3] == [30, 5, 2] and frame["bytes"].isna().tolist()[3]
    assert (
        frame["detail"].tolist()[1] == "hello"
        and "PEER_SIGNALING_ERROR" in frame["detail"].tolist()[3]
    )
    assert (frame["room"] == "lobby").all() and (frame["peer"] == "me").all()


def test_event_log_repr_says_what_it_holds():
    log = EventLog("ada")
    assert repr(log) == "<EventLog ada: 0 rows; to_frame() for a DataFrame>"
    log.record(Event(name="room:join", detail="lobby"))
    assert re.fullmatch(
        r"<EventLog ada: 1 rows, last 'room:join' at t=\d+\.\d{3} s; to_frame\(\) for a DataFrame>",
        repr(log),
    )


def test_empty_log_frame_and_row_cap():
    assert EventLog("x").to_frame().empty
    log = EventLog("x", max_rows=3)
    for i in range(5):
        log.record(Event(name="e", detail=i))
    assert [r["detail"] for r in log] == [2, 3, 4]
