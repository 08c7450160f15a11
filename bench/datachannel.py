"""Data-channel throughput (16 KiB and 1 KiB messages) and small-message round trips between
two peers in one process, against raw aiortc.

peerix_nb: two `Peer`s on a MemoryDriver; `a.open()` channels `bulk` and `echo`; the sender
calls `peer.send(data, label=...)` and throttles on the aiortc channel it finds in
`remote.channels[label]` (bufferedAmount, `bufferedamountlow`); the receiver counts
`channel:message` events (each one also an EventLog row). Baseline: two raw RTCPeerConnections
(`iceServers=[]`, max-bundle, the negotiated channel id 0) where the offerer creates `bulk` and
`echo`, with the same backpressure on `channel.send` and `message` handlers. Throughput runs from
the first send to the last message received; a round trip is one 16-byte text message echoed
back by the other peer's handler, sent again when the echo arrives. Setups alternate run by run
after a discarded warm-up. Goals (issue 10): throughput >= 0.9x raw, RTT <= 1.2x raw.

Run: `python -m bench.datachannel [--runs 7] [--mib 4] [--small 3000] [--pings 400]`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCDataChannel, RTCPeerConnection

from peerix_nb import MemoryDriver, Peer
from peerix_nb.events import Event

from ._common import alternate, loadavg, machine, median, percentile, raw_configuration

#: Stop queueing above this many buffered bytes, resume at `bufferedamountlow` (LOW).
HIGH = 1 << 20
LOW = 256 << 10
TIMEOUT = 120.0


def _ignore(data: object) -> None:
    return None


@dataclass
class Pair:
    """What a measurement needs from one connected pair, whatever the setup. Each setup
    installs one listener per channel that calls the current `on_bulk`/`on_echo`."""

    send_bulk: Callable[[bytes], None]
    bulk: RTCDataChannel  # the sender's channel: bufferedAmount and bufferedamountlow
    send_echo: Callable[[str], None]
    on_bulk: Callable[[bytes], None] = _ignore  # the receiver got a bulk message
    on_echo: Callable[[str], None] = _ignore  # the sender got an echo back


@dataclass
class Figures:
    big_mb_s: float
    big_msg_s: float
    small_mb_s: float
    small_msg_s: float
    rtts_ms: list[float]


async def throughput(pair: Pair, size: int, count: int) -> tuple[float, float]:
    """MB/s and messages/s for `count` messages of `size` bytes, with backpressure."""
    if count <= 0:
        return float("nan"), float("nan")
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    received = 0

    def on_message(data: bytes) -> None:
        nonlocal received
        received += 1
        if received == count and not done.done():
            done.set_result(time.perf_counter())

    pair.on_bulk = on_message
    channel = pair.bulk
    channel.bufferedAmountLowThreshold = LOW
    low = asyncio.Event()
    channel.on("bufferedamountlow", low.set)
    payload = bytes(size)
    start = time.perf_counter()
    for _ in range(count):
        if channel.bufferedAmount > HIGH:
            low.clear()
            await low.wait()
        pair.send_bulk(payload)
    end = await asyncio.wait_for(done, TIMEOUT)
    channel.remove_listener("bufferedamountlow", low.set)
    seconds = end - start
    return size * count / seconds / 1e6, count / seconds


async def round_trips(pair: Pair, count: int) -> list[float]:
    """Milliseconds for each of `count` sequential echoes of a 16-byte text message."""
    loop = asyncio.get_running_loop()
    rtts: list[float] = []
    waiter: asyncio.Future[float] | None = None

    def on_echo(data: str) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(time.perf_counter())

    pair.on_echo = on_echo
    for i in range(count):
        waiter = loop.create_future()
        sent = time.perf_counter()
        pair.send_echo(f"ping {i:011d}")
        rtts.append((await asyncio.wait_for(waiter, 10) - sent) * 1000)
    return rtts


async def measure(pair: Pair, args: argparse.Namespace) -> Figures:
    big = await throughput(pair, 16 << 10, args.mib * 64)
    small = await throughput(pair, 1 << 10, args.small)
    rtts = await round_trips(pair, args.pings)
    return Figures(*big, *small, rtts)


async def opened(channel: RTCDataChannel) -> None:
    """Wait until `channel` is open."""
    if channel.readyState != "open":
        future = asyncio.get_running_loop().create_future()
        channel.once("open", lambda: future.done() or future.set_result(None))
        await asyncio.wait_for(future, 20)


# -- one run of each setup -------------------------------------------------------------------------
async def raw_run(args: argparse.Namespace) -> Figures:
    config = raw_configuration()
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    try:
        for pc in (a, b):
            pc.createDataChannel("", negotiated=True, id=0)
        a_bulk, a_echo = a.createDataChannel("bulk"), a.createDataChannel("echo")
        remote: dict[str, RTCDataChannel] = {}
        ready = asyncio.get_running_loop().create_future()

        @b.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            remote[channel.label] = channel
            if len(remote) == 2 and not ready.done():
                ready.set_result(None)

        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        await asyncio.wait_for(ready, 20)
        await asyncio.gather(opened(a_bulk), opened(a_echo))
        b_echo = remote["echo"]
        b_echo.on("message", b_echo.send)  # the echo
        pair = Pair(send_bulk=a_bulk.send, bulk=a_bulk, send_echo=a_echo.send)
        remote["bulk"].on("message", lambda data: pair.on_bulk(data))
        a_echo.on("message", lambda data: pair.on_echo(data))
        return await measure(pair, args)
    finally:
        await asyncio.gather(a.close(), b.close())


async def peerix_run(args: argparse.Namespace) -> Figures:
    driver = MemoryDriver()
    a, b = Peer(id="a", driver=driver), Peer(id="b", driver=driver)
    try:
        channels_open = asyncio.gather(
            *(
                peer.wait_for("channel:open", lambda e, label=label: e.label == label, 20)
                for peer in (a, b)
                for label in ("bulk", "echo")
            )
        )
        await a.open("bulk")
        await a.open("echo")
        room = f"dc-{uuid.uuid4().hex[:8]}"
        await a.join(room=room)
        await b.join(room=room)
        await channels_open
        remote = a.connections["b"]

        pair = Pair(
            send_bulk=lambda data: a.send(data, label="bulk"),
            bulk=remote.channels["bulk"],
            send_echo=lambda data: a.send(data, label="echo"),
        )

        def on_b(e: Event) -> None:
            if e.label == "bulk":
                pair.on_bulk(e.data)
            elif e.label == "echo":
                b.send(e.data, label="echo")  # the echo

        def on_a(e: Event) -> None:
            if e.label == "echo":
                pair.on_echo(e.data)

        b.on("channel:message", on_b)
        a.on("channel:message", on_a)
        return await measure(pair, args)
    finally:
        await asyncio.gather(a.leave(), b.leave())


# -- the benchmark ---------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> dict[str, list[Figures]]:
    return await alternate(
        args.runs,
        {
            "raw aiortc": functools.partial(raw_run, args),
            "peerix_nb": functools.partial(peerix_run, args),
        },
    )


def report(results: dict[str, list[Figures]], args: argparse.Namespace) -> None:
    raw, ours = results["raw aiortc"], results["peerix_nb"]

    def med(runs: list[Figures], get: Callable[[Figures], float]) -> float:
        return median([get(f) for f in runs])

    def p(runs: list[Figures], q: float) -> float:
        # percentiles over every round trip of every run (pooled), so p99 has enough samples
        return percentile([x for f in runs for x in f.rtts_ms], q)

    rows: list[tuple[str, float, float, str, bool]] = []
    for label, get in (
        ("16 KiB messages, MB/s", lambda f: f.big_mb_s),
        ("16 KiB messages, messages/s", lambda f: f.big_msg_s),
        ("1 KiB messages, MB/s", lambda f: f.small_mb_s),
        ("1 KiB messages, messages/s", lambda f: f.small_msg_s),
    ):
        r, o = med(raw, get), med(ours, get)
        rows.append((label, r, o, ">= 0.9", o / r >= 0.9))
    for q in (50, 99):
        r, o = p(raw, q), p(ours, q)
        rows.append((f"round trip p{q}, ms", r, o, "<= 1.2", o / r <= 1.2))
    print(
        f"two peers, one process, {args.runs} alternating runs each: {args.mib} MiB in 16 KiB "
        f"messages, {args.small} x 1 KiB, {args.pings} round trips of 16 bytes per run"
    )
    print("(throughput: median of runs; round trips: percentiles of all runs pooled)\n")
    print("| figure | raw aiortc | peerix_nb | ratio | goal | met |")
    print("|---|---|---|---|---|---|")
    for label, r, o, goal, met in rows:
        digits = 0 if "messages/s" in label else 2
        print(
            f"| {label} | {r:.{digits}f} | {o:.{digits}f} | {o / r:.2f} | {goal} | "
            f"{'yes' if met else 'no'} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.datachannel", description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="runs per setup")
    parser.add_argument("--mib", type=int, default=4, help="MiB sent in 16 KiB messages per run")
    parser.add_argument("--small", type=int, default=3000, help="1 KiB messages per run")
    parser.add_argument("--pings", type=int, default=400, help="round trips per run")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"load average before: {loadavg()}")
    results = asyncio.run(run(args))
    report(results, args)
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
