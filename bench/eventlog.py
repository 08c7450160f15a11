"""EventLog costs: one row per event, the DataFrame built from 10k and 100k rows, and what share
of a data-channel message's cost the row is.

Rows: `EventLog.record(event)` for a prebuilt `channel:message` event (1 KiB of bytes, or a short
text), the same with the `Event(...)` built in the loop (what the library does per message), and
the whole emit path a received message takes in peerix_nb (`Peer.emit`: Event -> Emitter ->
EventLog, with no user handler), in ns per event: median of `--repeats` loops of `--events`
events, each into a fresh log, the loops interleaved. `to_frame()`: median of `--repeats` builds
of a log holding a mix of event kinds. The share: the same run measures peerix_nb's 1 KiB
data-channel throughput (bench.datachannel, messages/s -> us per message, median of `--dc-runs`
runs) and divides. There is no raw-aiortc baseline for a log: the share of a message is the
comparison.

Run: `python -m bench.eventlog [--events 20000] [--repeats 21] [--dc-runs 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from peerix_nb import Peer
from peerix_nb.events import Event
from peerix_nb.log import EventLog

from . import datachannel
from ._common import loadavg, machine, median

REMOTE: Any = SimpleNamespace(id="b0c1d2e3-remote", room="bench")  # what a row reads of a remote
PAYLOAD_BYTES = bytes(1024)
PAYLOAD_TEXT = "hello from the benchmark"  # short chat text: the row keeps it as `detail`


def message(data: bytes | str) -> Event:
    return Event(name="channel:message", remote=REMOTE, label="chat", data=data)


def per_event_ns(
    loops: dict[str, Callable[[int], None]], events: int, repeats: int
) -> dict[str, float]:
    """ns per event of each `loop(events)`: loops interleaved (A B C A B C ...) `repeats` times,
    median per loop, GC enabled as in use."""
    samples: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            gc.collect()
            start = time.perf_counter_ns()
            loop(events)
            samples[name].append((time.perf_counter_ns() - start) / events)
    return {name: median(values) for name, values in samples.items()}


def record_prebuilt(data: bytes | str) -> Callable[[int], None]:
    def loop(count: int) -> None:
        log = EventLog("bench")
        event = message(data)
        record = log.record
        for _ in range(count):
            record(event)

    return loop


def record_built(data: bytes | str) -> Callable[[int], None]:
    def loop(count: int) -> None:
        log = EventLog("bench")
        record = log.record
        for _ in range(count):
            record(Event(name="channel:message", remote=REMOTE, label="chat", data=data))

    return loop


def emit_path(data: bytes | str) -> Callable[[int], None]:
    """Peer.emit, as RemotePeer's `message` handler calls it (the log is the only subscriber)."""

    def loop(count: int) -> None:
        peer = Peer(id="bench")
        emit = peer.emit
        for _ in range(count):
            emit(Event(name="channel:message", remote=REMOTE, label="chat", data=data))

    return loop


def empty_loop(count: int) -> None:
    for _ in range(count):
        pass


def filled_log(rows: int) -> EventLog:
    """A log with a realistic mix: mostly messages, some signaling and state rows."""
    log = EventLog("bench", max_rows=None)
    kinds = [
        message(PAYLOAD_BYTES),
        message(PAYLOAD_TEXT),
        Event(name="signal:send", remote=REMOTE, kind="offer", via="driver", size=1800),
        Event(name="connection:connected", remote=REMOTE, state="connected"),
        Event(name="dtls:state", remote=REMOTE, state="connected"),
    ]
    for i in range(rows):
        log.record(kinds[0] if i % 2 else kinds[(i // 2) % len(kinds)])
    return log


def frame_ms(rows: int, repeats: int) -> float:
    log = filled_log(rows)
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        frame = log.to_frame()
        samples.append((time.perf_counter() - start) * 1000)
        assert len(frame) == rows
    return median(samples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.eventlog", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events per timing loop")
    parser.add_argument("--repeats", type=int, default=21, help="timing loops per figure")
    parser.add_argument("--dc-runs", type=int, default=3, help="data-channel runs for the share")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"load average before: {loadavg()}")

    loops: dict[str, Callable[[int], None]] = {"empty loop": empty_loop}
    for what, data in (("1 KiB bytes", PAYLOAD_BYTES), ("short text", PAYLOAD_TEXT)):
        loops[f"log.record(event), event prebuilt, {what}"] = record_prebuilt(data)
        loops[f"log.record(Event(...)), {what}"] = record_built(data)
        loops[f"Peer.emit(Event(...)): emitter + log, {what}"] = emit_path(data)
    timings = per_event_ns(loops, args.events, args.repeats)
    overhead = timings.pop("empty loop")
    rows = [(label, ns - overhead) for label, ns in timings.items()]
    frames = [(n, frame_ms(n, args.repeats)) for n in (10_000, 100_000)]

    # the same run: what one received 1 KiB message costs peerix_nb end to end
    dc_args = argparse.Namespace(mib=0, small=3000, pings=1)
    rates = []
    for i in range(args.dc_runs + 1):
        figures = asyncio.run(datachannel.peerix_run(dc_args))
        if i:  # the first run is a warm-up
            rates.append(figures.small_msg_s)
    message_ns = 1e9 / median(rates)

    print(
        f"\nper event, median of {args.repeats} interleaved loops of {args.events} events "
        f"(loop overhead {overhead:.0f} ns subtracted):\n"
    )
    print("| operation | ns per event | share of one 1 KiB data-channel message |")
    print("|---|---|---|")
    for label, ns in rows:
        print(f"| {label} | {ns:.0f} | {ns / message_ns * 100:.1f} % |")
    print(
        f"\none 1 KiB data-channel message, peerix_nb, one process (sender + receiver): "
        f"{message_ns / 1000:.0f} us ({median(rates):.0f} messages/s, median of {args.dc_runs} runs)"
    )
    print(f"\nto_frame(), median of {args.repeats} builds:\n")
    print("| rows | ms | us per row |")
    print("|---|---|---|")
    for n, ms in frames:
        print(f"| {n:,} | {ms:.1f} | {ms * 1000 / n:.2f} |")
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
