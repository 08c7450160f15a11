"""A room of peers over a faulty MemoryDriver, run until it connects or can no longer change.

Shared by tests/test_reliability.py (assertions) and bench/faults.py (figures), so the tests
and the published numbers measure the same thing. The driver is the library's own
`MemoryDriver(delay, loss=..., duplicate=..., seed=...)`; `FaultyDriver` only adds bookkeeping:
for every JOIN it records who should have received it and who did, which is what explains a
pair that never connected (docs/PROTOCOL.md gives JOIN no acknowledgement and no retry, so a JOIN
lost on its way means neither side ever starts a connection attempt for that pair).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from peerix_nb import Event, MemoryDriver, Peer, PeerixError
from peerix_nb.drivers.base import MessageHandler
from peerix_nb.signaling import JOIN, SignalingCodec
from testbed.rooms import channels_open

#: Label of the data channel every peer of a faulty room opens.
CHANNEL = "chat"


@dataclass(slots=True)
class JoinRecord:
    """One JOIN dispatched through the driver: its intended and actual receivers."""

    sender: str
    direct: bool  # sent to [room, remote] (a retry after `failed`), not broadcast to [room]
    receivers: list[str]  # peer ids subscribed to the namespace at dispatch time
    message: bytes  # kept referenced so that id(message) stays unique while we look it up
    t: float  # time.monotonic() at dispatch
    delivered: set[str] = field(default_factory=set)
    delivered_at: dict[str, float] = field(default_factory=dict)  # receiver -> last delivery

    def reaches_after(self, t: float) -> bool:
        """Sent, or delivered to anyone, at or after `t` (with a driver delay, a JOIN sent
        just before a failure arrives just after it, and is the retry for it)."""
        return self.t >= t or any(at >= t for at in self.delivered_at.values())

    def lost_for(self, receiver: str) -> bool:
        return receiver in self.receivers and receiver not in self.delivered


def _owner(handler: MessageHandler) -> str:
    """The id of the Peer a driver handler belongs to (Peer subscribes its bound methods)."""
    peer = getattr(handler, "__self__", None)
    return peer.id if isinstance(peer, Peer) else repr(handler)


class FaultyDriver(MemoryDriver):
    """`MemoryDriver(delay, loss, duplicate, seed)` that also keeps a ledger of JOIN deliveries.

    Only bookkeeping is added: the faults themselves are the MemoryDriver's. It reads the
    driver's private subscriber table and hooks its private `_deliver`, because whether a
    message was dropped is decided inside `dispatch` and is not observable otherwise.
    Messages are decoded with the Peer's default codec (compressed, no key).
    """

    def __init__(
        self,
        delay: float = 0,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(delay, loss=loss, duplicate=duplicate, seed=seed)
        self.joins: list[JoinRecord] = []
        self._pending: dict[int, JoinRecord] = {}
        self._codec = SignalingCodec()

    async def dispatch(self, namespace: Sequence[str], message: bytes) -> None:
        try:
            decoded = self._codec.decode(message)
        except PeerixError:
            decoded = None
        if decoded is not None and decoded.type == JOIN and self.active:
            handlers = self._subscribers.of(self._subscribers.key(namespace))
            record = JoinRecord(
                sender=decoded.sender,
                direct=len(namespace) > 1,
                receivers=[r for r in map(_owner, handlers) if r != decoded.sender],
                message=message,
                t=time.monotonic(),
            )
            self.joins.append(record)
            self._pending[id(message)] = record
        await super().dispatch(namespace, message)

    def _deliver(self, handler: MessageHandler, message: bytes) -> None:
        record = self._pending.get(id(message))
        if record is not None and record.message is message:
            owner = _owner(handler)
            record.delivered.add(owner)
            record.delivered_at[owner] = time.monotonic()
        super()._deliver(handler, message)

    def joins_between(self, a: str, b: str) -> list[JoinRecord]:
        """JOINs that one of `a`, `b` sent and the other should have received, oldest first."""
        return [
            j
            for j in self.joins
            if (j.sender == a and b in j.receivers) or (j.sender == b and a in j.receivers)
        ]

    def last_join_lost(self, a: str, b: str) -> bool:
        """True if the most recent JOIN between `a` and `b` never reached its receiver."""
        joins = self.joins_between(a, b)
        if not joins:
            return False
        last = joins[-1]
        return last.lost_for(b if last.sender == a else a)


@dataclass(frozen=True, slots=True)
class Row:
    """One event of one peer, on the shared monotonic clock."""

    t: float
    peer: str
    name: str
    remote: str
    detail: Any


@dataclass(frozen=True, slots=True)
class Attempt:
    """One connection attempt of `peer` to `remote`: `connection:new` to its first outcome."""

    peer: str
    remote: str
    start: float
    end: float | None  # time of the first connected / failed / closed, None if none yet
    outcome: str | None  # "connected", "failed" or "closed"
    detail: Any

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else self.end - self.start


class Timeline:
    """Every event of a set of peers on one clock (each EventLog has its own t0)."""

    def __init__(self, peers: Iterable[Peer]) -> None:
        self.rows: list[Row] = []
        for peer in peers:
            peer.on("*", lambda event, pid=peer.id: self._record(pid, event))

    def _record(self, peer: str, event: Event) -> None:
        remote = event.remote.id if event.remote is not None else ""
        self.rows.append(Row(time.monotonic(), peer, event.name, remote, event.detail))

    def named(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.name == name]

    def attempts(self) -> list[Attempt]:
        """Connection attempts in order; a RemotePeer's life is one attempt."""
        open_: dict[tuple[str, str], Row] = {}
        done: list[Attempt] = []
        for row in self.rows:
            key = (row.peer, row.remote)
            if row.name == "connection:new":
                if key in open_:  # a replaced RemotePeer without an outcome: record that
                    first = open_.pop(key)
                    done.append(Attempt(row.peer, row.remote, first.t, None, None, None))
                open_[key] = row
            elif row.name in ("connection:connected", "connection:failed", "connection:closed"):
                first = open_.pop(key, None)
                if first is not None:
                    outcome = row.name.split(":", 1)[1]
                    done.append(Attempt(row.peer, row.remote, first.t, row.t, outcome, row.detail))
        done += [Attempt(p, r, row.t, None, None, None) for (p, r), row in open_.items()]
        return sorted(done, key=lambda a: a.start)


def pairs(peers: Sequence[Peer]) -> list[tuple[Peer, Peer]]:
    return list(itertools.combinations(peers, 2))


def pair_open(a: Peer, b: Peer, label: str = CHANNEL) -> bool:
    """Both ends connected with channel `label` open."""
    for x, y in ((a, b), (b, a)):
        remote = x.connections.get(y.id)
        if remote is None or remote.state != "connected":
            return False
        channel = remote.channels.get(label)
        if channel is None or channel.readyState != "open":
            return False
    return True


def nothing_pending(peers: Sequence[Peer], label: str = CHANNEL) -> bool:
    """Every RemotePeer that exists is connected with `label` open: no attempt is under way."""
    ids = {p.id: p for p in peers}
    for peer in peers:
        for rid in peer.connections:
            other = ids.get(rid)
            if other is None or not pair_open(peer, other, label):
                return False
    return True


async def settle(
    peers: Sequence[Peer], bound: float, quiet: float | None, label: str = CHANNEL
) -> tuple[bool, float]:
    """Wait until every pair has `label` open (True), or the room can no longer change (False).

    "Can no longer change": no attempt is under way (`nothing_pending`) and no peer has logged
    any event for `quiet` seconds. A joined peer with nothing pending only acts on a message or
    on a timer (the 0-1 s direct-JOIN retry), so `quiet` must cover that second plus the
    driver's longest delivery delay. `quiet=None` waits for full connection or `bound` only
    (for a library that acts on its own timers, e.g. repeated JOINs). Returns (fully open,
    seconds waited), `bound` at most.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    last_event = start
    changed = asyncio.Event()

    def on_event(_event: Event) -> None:
        nonlocal last_event
        last_event = loop.time()
        changed.set()

    for peer in peers:
        peer.on("*", on_event)
    try:
        while True:
            await asyncio.sleep(0)  # let the handlers of the last event finish first
            now = loop.time()
            if channels_open(list(peers), label):
                return True, now - start
            if now - start >= bound:
                return False, now - start
            wait = bound - (now - start)
            if quiet is not None and nothing_pending(peers, label):
                idle_for = now - last_event
                if idle_for >= quiet:
                    return False, now - start
                wait = min(wait, quiet - idle_for)
            changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), max(wait, 0.001))
    finally:
        for peer in peers:
            peer.off("*", on_event)


@dataclass(slots=True)
class RoomOutcome:
    """What a faulty room did: the figures of bench/faults.py and the facts the tests check."""

    delay: float
    loss: float
    duplicate: float
    seed: int
    connection_timeout: float
    full: bool  # every pair connected with the channel open
    seconds: float  # to full connection if `full`, else until settled (or the bound)
    open_pairs: list[tuple[str, str]]
    closed_pairs: list[tuple[str, str]]  # never connected by the end
    lost_join_pairs: list[tuple[str, str]]  # closed pairs whose last JOIN was lost
    failed: int  # connection:failed events, all peers
    retries: int  # direct JOINs sent (docs/PROTOCOL.md: the retry after `failed`)
    errors: list[str]
    attempts: list[Attempt]
    timeline: Timeline
    driver: FaultyDriver

    @property
    def setting(self) -> str:
        return f"delay={self.delay:g}ms loss={self.loss:.0%} dup={self.duplicate:.0%}"

    def summary(self) -> str:
        state = (
            f"full in {self.seconds:.2f} s"
            if self.full
            else f"settled at {self.seconds:.2f} s, unconnected {self.closed_pairs}"
        )
        return (
            f"{self.setting} seed={self.seed}: {state}; failed={self.failed} "
            f"retries={self.retries} lost-JOIN pairs={self.lost_join_pairs} "
            f"errors={len(self.errors)}"
        )


async def run_room(
    n: int = 4,
    *,
    delay: float = 0,
    loss: float = 0.0,
    duplicate: float = 0.0,
    seed: int = 0,
    connection_timeout: float = 2.0,
    bound: float = 30.0,
    room: str = "faults",
    early_stop: bool = True,
) -> RoomOutcome:
    """Join `n` peers (each with channel CHANNEL) over a FaultyDriver and settle the room;
    `early_stop=False` waits for full connection or `bound`, never for quiet (see `settle`)."""
    driver = FaultyDriver(delay, loss=loss, duplicate=duplicate, seed=seed)
    peers = [
        Peer(id=f"p{i}", driver=driver, connection_timeout=connection_timeout) for i in range(n)
    ]
    timeline = Timeline(peers)
    errors: list[str] = []
    for peer in peers:
        peer.on("error", lambda e: errors.append(f"{e.error.code}: {e.error.message}"))
        await peer.open(CHANNEL)
    # Quiet long enough for a pending 0-1 s retry timer and the slowest delivery (125 % of delay).
    quiet = 1.0 + 1.25 * delay / 1000 + 0.5
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        for peer in peers:
            await peer.join(room=room, metadata={"name": peer.id})
        joined = loop.time() - started  # the clock runs from the first join
        full, seconds = await settle(peers, bound - joined, quiet if early_stop else None)
        seconds += joined
        open_pairs = [(a.id, b.id) for a, b in pairs(peers) if pair_open(a, b)]
        closed = [(a.id, b.id) for a, b in pairs(peers) if not pair_open(a, b)]
        return RoomOutcome(
            delay=delay,
            loss=loss,
            duplicate=duplicate,
            seed=seed,
            connection_timeout=connection_timeout,
            full=full,
            seconds=seconds,
            open_pairs=open_pairs,
            closed_pairs=closed,
            lost_join_pairs=[p for p in closed if driver.last_join_lost(*p)],
            failed=len(timeline.named("connection:failed")),
            retries=sum(1 for j in driver.joins if j.direct),
            errors=errors,
            attempts=timeline.attempts(),
            timeline=timeline,
            driver=driver,
        )
    finally:
        await asyncio.gather(*(p.leave() for p in peers), return_exceptions=True)
