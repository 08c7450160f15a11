"""The cost of emulated networks (peerix_nb.network), measured in one run.

1. The shaper's own CPU per 10,000 datagrams of 1,200 bytes, into a socket that does nothing
   (so only the emulation is timed): all-zero conditions (pass-through), loss only, delay
   only (a timer on the loop, released in order), and everything at once (delay, jitter, loss,
   duplication, rate cap). CPU time of the process (`time.process_time`), loop included.
2. Two peers in one process, join to control channel open (as `bench.connect`), with
   `Peer(network=NetworkConditions())` on both (all zeros: every datagram wrapped, nothing
   impaired) against peers that never had conditions (nothing wrapped).
3. Data-channel throughput, 16 KiB and 1 KiB messages (as `bench.datachannel`), the same two
   setups. Runs alternate after a discarded warm-up. Goal (issue 16): all-zero conditions
   within 5 % of none.

Run: `python -m bench.network [--runs 7] [--mib 2] [--small 2000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
import uuid

from peerix_nb import MemoryDriver, NetworkConditions, Peer
from peerix_nb.events import Event
from peerix_nb.network import Shaper, shaper_of

from ._common import alternate, loadavg, machine, median, spread
from .datachannel import Pair, throughput

DATAGRAMS = 10_000
SIZE = 1200


class NullSocket:
    """A datagram transport that sends nothing; `done` is set once `target` calls came."""

    def __init__(self) -> None:
        self.sent = 0
        self.target = -1
        self.done = asyncio.Event()

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.sent += 1
        if self.sent == self.target:
            self.done.set()

    def is_closing(self) -> bool:
        return False


# -- 1. the shaper's own cost ---------------------------------------------------------------------
SHAPES: dict[str, NetworkConditions | None] = {
    "direct sendto (no shaper)": None,
    "all zeros (pass-through)": NetworkConditions(),
    "loss 10 %": NetworkConditions(loss=0.1, seed=1),
    "delay 20 ms": NetworkConditions(delay=20),
    "delay 20 ±5 ms (jitter reorders)": NetworkConditions(delay=20, jitter=5, seed=1),
    "rate 100 Mbit/s (drains ~1 s)": NetworkConditions(rate_kbps=100_000, queue_ms=1000),
    "delay 20 ±5, loss 5 %, dup 1 %, 100 Mbit/s": NetworkConditions(
        delay=20, jitter=5, loss=0.05, duplicate=0.01, rate_kbps=100_000, queue_ms=1000, seed=1
    ),
}


async def shaper_cpu(conditions: NetworkConditions | None) -> float:
    """CPU ms for DATAGRAMS datagrams through a shaper (in bursts of 100 per loop turn),
    until the last one left."""
    socket = NullSocket()
    shaper = Shaper(conditions) if conditions is not None else None
    payload = bytes(SIZE)
    addr = ("192.0.2.1", 9)
    start = time.process_time()
    for i in range(DATAGRAMS):
        if shaper is None:
            socket.sendto(payload, addr)
        else:
            shaper.send(socket, payload, addr)
        if i % 100 == 99:
            await asyncio.sleep(0)
    # what is held now leaves later (loss and duplication changed the count)
    socket.target = shaper.passed + shaper.held if shaper is not None else DATAGRAMS
    if socket.sent < socket.target:
        await asyncio.wait_for(socket.done.wait(), 30)
    return (time.process_time() - start) * 1000


# -- 2. connect -------------------------------------------------------------------------------------
async def connect_ms(network: NetworkConditions | None) -> tuple[float, float]:
    """Milliseconds from the first join() to the control channel open on both sides: wall
    time and this process's CPU time."""
    driver = MemoryDriver()
    a, b = Peer(driver=driver, network=network), Peer(driver=driver, network=network)
    opened = asyncio.gather(
        a.wait_for("control:open", timeout=20), b.wait_for("control:open", timeout=20)
    )
    start, cpu = time.perf_counter(), time.process_time()
    await a.join(room="bench")
    await b.join(room="bench")
    await opened
    end, cpu = time.perf_counter(), time.process_time() - cpu
    await asyncio.gather(a.leave(), b.leave())
    return (end - start) * 1000, cpu * 1000


# -- 3. data-channel throughput ----------------------------------------------------------------------
async def channel_mb_s(network: NetworkConditions | None, args: argparse.Namespace) -> tuple:
    """16 KiB MB/s, 1 KiB MB/s, datagrams/s of a's shaper during the 16 KiB transfer and the
    process's CPU ms per MB there, from a to b, both peers with `network`."""
    driver = MemoryDriver()
    a = Peer(id="a", driver=driver, network=network)
    b = Peer(id="b", driver=driver, network=network)
    try:
        opened = asyncio.gather(
            *(p.wait_for("channel:open", lambda e: e.label == "bulk", 20) for p in (a, b))
        )
        await a.open("bulk")
        room = f"net-{uuid.uuid4().hex[:8]}"
        await a.join(room=room)
        await b.join(room=room)
        await opened
        remote = a.connections["b"]
        pair = Pair(
            send_bulk=lambda data: a.send(data, label="bulk"),
            bulk=remote.channels["bulk"],
            send_echo=lambda data: None,
        )

        def on_b(e: Event) -> None:
            if e.label == "bulk":
                pair.on_bulk(e.data)

        b.on("channel:message", on_b)
        shaper = shaper_of(remote.connection)
        before, started = (shaper.datagrams if shaper else 0), time.perf_counter()
        cpu = time.process_time()
        big, _ = await throughput(pair, 16 << 10, args.mib * 64)
        cpu = (time.process_time() - cpu) / (args.mib * 1.048576)  # CPU s per MB
        rate = ((shaper.datagrams - before) if shaper else 0) / (time.perf_counter() - started)
        small, _ = await throughput(pair, 1 << 10, args.small)
        return big, small, rate, cpu * 1000
    finally:
        await asyncio.gather(a.leave(), b.leave())


# -- the benchmark ---------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> None:
    print(
        f"1. the shaper's CPU per {DATAGRAMS:,} datagrams of {SIZE} bytes (median of {args.runs})"
    )
    cpu = await alternate(
        args.runs, {name: functools.partial(shaper_cpu, c) for name, c in SHAPES.items()}
    )
    base = median(cpu["direct sendto (no shaper)"])
    print("\n| conditions | CPU ms per 10,000 | µs per datagram over direct |")
    print("|---|---|---|")
    for name, values in cpu.items():
        extra = (median(values) - base) / DATAGRAMS * 1000
        print(f"| {name} | {median(values):.1f} ({spread(values)}) | {extra:.2f} |")

    none, zeros = None, NetworkConditions()
    connect = await alternate(
        args.runs * 5,  # short and noisy: more runs
        {
            "none": functools.partial(connect_ms, none),
            "zeros": functools.partial(connect_ms, zeros),
        },
    )
    channels = await alternate(
        args.runs,
        {
            "none": functools.partial(channel_mb_s, none, args),
            "zeros": functools.partial(channel_mb_s, zeros, args),
        },
    )
    rows = [
        (
            "2 peers join to control open, ms",
            [x[0] for x in connect["none"]],
            [x[0] for x in connect["zeros"]],
            "<= 1.05",
        ),
        (
            "the same, CPU ms of the process",
            [x[1] for x in connect["none"]],
            [x[1] for x in connect["zeros"]],
            "<= 1.05",
        ),
    ]
    rows.append(
        (
            f"16 KiB messages ({args.mib} MiB), MB/s",
            [x[0] for x in channels["none"]],
            [x[0] for x in channels["zeros"]],
            ">= 0.95",
        )
    )
    rows.append(
        (
            "16 KiB messages, CPU ms per MB",
            [x[3] for x in channels["none"]],
            [x[3] for x in channels["zeros"]],
            "<= 1.05",
        )
    )
    rows.append(
        (
            f"1 KiB messages ({args.small}), MB/s",
            [x[1] for x in channels["none"]],
            [x[1] for x in channels["zeros"]],
            ">= 0.95",
        )
    )
    rate = median([x[2] for x in channels["zeros"]])
    passthrough = (median(cpu["all zeros (pass-through)"]) - base) / DATAGRAMS / 1000  # s
    print(
        f"\nThe sender's connection sent {rate:,.0f} datagrams/s during the 16 KiB transfer:"
        f" the pass-through's {passthrough * 1e6:.2f} us each is {rate * passthrough * 100:.3f} %"
        " of one core there"
    )
    print(
        f"\n2-3. two peers, one process, alternating runs (medians): {args.runs * 5} connects,"
        f" {args.runs} transfers per setup\n"
    )
    print("| figure | no conditions | NetworkConditions() | ratio | goal | met |")
    print("|---|---|---|---|---|---|")
    for label, off, on, goal in rows:
        ratio = median(on) / median(off)
        met = ratio <= 1.05 if goal.startswith("<=") else ratio >= 0.95
        print(
            f"| {label} | {median(off):.2f} ({spread(off)}) | {median(on):.2f} ({spread(on)}) |"
            f" {ratio:.3f} | {goal} | {'yes' if met else 'no'} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.network", description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="runs per setup")
    parser.add_argument("--mib", type=int, default=2, help="MiB sent in 16 KiB messages per run")
    parser.add_argument("--small", type=int, default=2000, help="1 KiB messages per run")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"load average before: {loadavg()}")
    asyncio.run(run(args))
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
