"""Full mesh of N peers in one process: from the joins to every pair's control channel open,
against raw aiortc doing the same handshakes.

peerix_nb: N `Peer`s on one MemoryDriver all join one room at once; the clock stops when every
peer has seen `control:open` for every other one (N*(N-1) events). Baseline: for each of the
N*(N-1)/2 pairs, two raw RTCPeerConnections (`iceServers=[]`, max-bundle, negotiated channel
id 0) with offer and answer handed over in-process, all pairs at once; the clock stops when all
channels are open. Both sides report wall time, the process CPU time over it (CPU s / wall s:
1.0 means the event loop never waited) and, from per-connection ICE/DTLS state changes, how
long the phases took and how many DTLS handshakes ran at once. Goals: at most 1.5x raw for 8
peers (issue 10), at most 0.85x raw for 16 (issue 17: wall and CPU).

`--savings` measures, in the same alternating runs, peerix_nb with each of the per-connection
savings undone at run time (the certificate aiortc makes in every RTCPeerConnection(), the
interface listing of every gathering, the SDP written out again to be read, ICE credentials
drawn a character at a time, ICE waiting for its next 20 ms pacing tick once its checks are
done), and prints what each avoided operation costs and how often each setup does it per
connection.

Run: `python -m bench.mesh [--runs 7] [--sizes 8 16] [--savings] [--profile] [--experiments]`.
`--profile` prints cProfile's top functions (cumulative) over the connect phase of the largest
mesh for both setups; `--experiments` measures paced joins against raw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import itertools
import pstats
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection

from peerix_nb import Event, MemoryDriver, Peer

from ._common import alternate, loadavg, machine, median, raw_configuration

TIMEOUT = 60.0
Hold = Callable[[], Awaitable[None]]


# -- per-connection phases -------------------------------------------------------------------------
@dataclass
class Phases:
    """perf_counter() stamps of one RTCPeerConnection's transport phases."""

    created: float
    ice_checking: float | None = None
    ice_completed: float | None = None
    dtls_connecting: float | None = None
    dtls_connected: float | None = None
    channel_open: float | None = None


@dataclass
class Run:
    """One mesh run: wall and CPU seconds to all open, plus every connection's phases."""

    seconds: float
    cpu: float
    phases: list[Phases] = field(default_factory=list)
    #: peerix_nb: pairs whose first offers crossed (`signal:restart`: the polite side started
    #: over); the JOIN repeats of a run slower than 0.5 s make them (docs/PROTOCOL.md).
    collisions: int = 0


class Tracker:
    """Counts channel opens to `expected`, and stamps each connection's ICE/DTLS phases."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.phases: dict[RTCPeerConnection, Phases] = {}
        self.done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def watch(self, pc: RTCPeerConnection) -> None:
        phases = self.phases[pc] = Phases(time.perf_counter())
        dtls = pc.sctp.transport  # max-bundle: the transports the data section created
        ice = dtls.transport

        @ice.on("statechange")
        def on_ice() -> None:
            if ice.state == "checking" and phases.ice_checking is None:
                phases.ice_checking = time.perf_counter()
            elif ice.state == "completed" and phases.ice_completed is None:
                phases.ice_completed = time.perf_counter()

        @dtls.on("statechange")
        def on_dtls() -> None:
            if dtls.state == "connecting" and phases.dtls_connecting is None:
                phases.dtls_connecting = time.perf_counter()
            elif dtls.state == "connected" and phases.dtls_connected is None:
                phases.dtls_connected = time.perf_counter()

    def opened(self, pc: RTCPeerConnection) -> None:
        phases = self.phases.get(pc)
        if phases is not None and phases.channel_open is None:
            phases.channel_open = time.perf_counter()
        self.expected -= 1
        if self.expected == 0 and not self.done.done():
            self.done.set_result(time.perf_counter())


# -- one run of each setup -------------------------------------------------------------------------
async def measure(
    tracker: Tracker,
    start: Callable[[float], Awaitable[None]],
    close: Callable[[], Awaitable[None]],
    profiler: cProfile.Profile | None,
    hold: Hold | None,
) -> Run:
    """Time (and CPU, and profile) one setup from `start(t0)` until every tracked channel is
    open; `await hold()` then, outside the measurement; `close()` whatever happens. The same
    for both setups, so their figures compare."""
    if profiler is not None:
        profiler.enable()
    cpu0, started = time.process_time(), time.perf_counter()
    try:
        await start(started)
        end = await asyncio.wait_for(tracker.done, TIMEOUT)
        cpu = time.process_time() - cpu0
        if profiler is not None:
            profiler.disable()
        if hold is not None:
            await hold()
    finally:
        if profiler is not None:
            profiler.disable()
        await close()
    return Run(end - started, cpu, list(tracker.phases.values()))


async def raw_mesh(
    n: int, profiler: cProfile.Profile | None = None, hold: Hold | None = None
) -> Run:
    """Every pair as two raw RTCPeerConnections, all pairs at once; `await hold()` once all are
    open, before closing them."""
    config = raw_configuration()
    pairs = n * (n - 1) // 2
    tracker = Tracker(2 * pairs)
    pcs: list[RTCPeerConnection] = []

    async def connect() -> None:
        a, b = RTCPeerConnection(config), RTCPeerConnection(config)
        pcs.extend((a, b))
        for pc in (a, b):
            channel = pc.createDataChannel("", negotiated=True, id=0)
            channel.on("open", lambda pc=pc: tracker.opened(pc))
            tracker.watch(pc)
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)

    async def start(_: float) -> None:
        await asyncio.gather(*(connect() for _ in range(pairs)))

    async def close() -> None:
        await asyncio.gather(*(pc.close() for pc in pcs))

    return await measure(tracker, start, close, profiler, hold)


async def peerix_mesh(
    n: int, pace: float = 0.0, profiler: cProfile.Profile | None = None, hold: Hold | None = None
) -> Run:
    """N Peers join one room at once (or one every `pace` seconds); `await hold()` once all
    are connected, before they leave."""
    driver = MemoryDriver()
    peers = [Peer(driver=driver) for _ in range(n)]
    tracker = Tracker(n * (n - 1))
    collisions = 0

    def collided(_event: Event) -> None:
        nonlocal collisions
        collisions += 1

    for peer in peers:
        peer.on("connection:new", lambda e: tracker.watch(e.remote.connection))
        peer.on("control:open", lambda e: tracker.opened(e.remote.connection))
        peer.on("signal:restart", collided)
    room = f"mesh-{uuid.uuid4().hex[:8]}"

    async def start(started: float) -> None:
        for i, peer in enumerate(peers):
            if pace and i:
                await asyncio.sleep(started + i * pace - time.perf_counter())
            peer.join(room=room)

    async def close() -> None:
        await asyncio.gather(*(peer.leave() for peer in peers))

    run = await measure(tracker, start, close, profiler, hold)
    run.collisions = collisions
    return run


# -- the per-connection savings, each undone at run time ------------------------------------------
@contextlib.contextmanager
def certificate_per_connection() -> Iterator[None]:
    """Undo one saving: every RTCPeerConnection() makes its own certificate again (aiortc's
    constructor), which the Peer's then replaces, as peerix_nb did before."""
    from peerix_nb import certificate

    def old(configuration: Any, owner: Any) -> RTCPeerConnection:
        pc = RTCPeerConnection(configuration)
        certificate.use_peer_certificate(pc, owner)
        return pc

    with _swapped(certificate, "connection", old):
        yield


@contextlib.contextmanager
def interfaces_per_connection() -> Iterator[None]:
    """Undo one saving: every gathering lists the network interfaces again (aioice's own)."""
    from peerix_nb import _aiortc

    with _swapped(_aiortc, "use_host_addresses", lambda ice, addresses: None):
        yield


@contextlib.contextmanager
def credentials_per_character() -> Iterator[None]:
    """Undo one saving: aioice draws each connection's ICE ufrag and password a character at a
    time (a read of the OS's random source each), as before."""
    from peerix_nb import _aiortc

    with _swapped(_aiortc, "_gather_with_quick_credentials", lambda pc: None):
        yield


@contextlib.contextmanager
def ice_waits_for_the_tick() -> Iterator[None]:
    """Undo one saving: ICE returns only at the next 20 ms pacing tick after its check list is
    done (aioice's own connect), not when it is done."""
    from peerix_nb import _aiortc

    with _swapped(_aiortc, "end_checks_when_done", lambda ice: None):
        yield


@contextlib.contextmanager
def descriptions_written_again() -> Iterator[None]:
    """Undo one saving: read the descriptions as text where peerix_nb did before (aiortc writes
    its parsed description out at every `localDescription` / `remoteDescription` read), and
    parse the remote one again for the incoming-track sync when there is media."""
    from aiortc.sdp import SessionDescription

    from peerix_nb.negotiation import Negotiation
    from peerix_nb.transceivers import Transceivers

    op_answer, apply_queued = Negotiation._op_answer, Negotiation._apply_queued_candidates
    op_candidate, sync_incoming = Negotiation._op_candidate, Transceivers.sync_incoming

    async def old_op_answer(self: Negotiation, description: dict[str, str]) -> None:
        pc = self._connection()
        if pc.signalingState == "have-local-offer":
            _ = pc.localDescription.sdp if pc.localDescription is not None else ""  # mids
        await op_answer(self, description)

    async def old_apply_queued(self: Negotiation) -> None:
        _ = self._connection().remoteDescription.sdp  # the ufrag, queued candidates or not
        await apply_queued(self)

    async def old_op_candidate(self: Negotiation, candidate: Any) -> None:
        _ = self._connection().remoteDescription  # the ufrag of every trickled candidate
        await op_candidate(self, candidate)

    def old_sync_incoming(self: Transceivers, pc: RTCPeerConnection) -> None:
        remote = pc.remoteDescription
        stable = pc.signalingState == "stable" and remote is not None
        if stable and (self.incoming or pc.getTransceivers()):
            SessionDescription.parse(remote.sdp)
        sync_incoming(self, pc)

    with contextlib.ExitStack() as stack:
        stack.enter_context(_swapped(Negotiation, "_op_answer", old_op_answer))
        stack.enter_context(_swapped(Negotiation, "_apply_queued_candidates", old_apply_queued))
        stack.enter_context(_swapped(Negotiation, "_op_candidate", old_op_candidate))
        stack.enter_context(_swapped(Transceivers, "sync_incoming", old_sync_incoming))
        yield


@contextlib.contextmanager
def _swapped(owner: Any, name: str, value: Any) -> Iterator[None]:
    """`owner.name = value` for the block (a benchmark on one loop: nothing else runs); the
    owner's own attribute (a class's descriptor, not a bound method) comes back after it."""
    missing = object()
    original = vars(owner).get(name, missing)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if original is missing:
            delattr(owner, name)
        else:
            setattr(owner, name, original)


SAVINGS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "a certificate made per connection": certificate_per_connection,
    "interfaces listed per connection": interfaces_per_connection,
    "descriptions written out again": descriptions_written_again,
    "ICE credentials drawn per character": credentials_per_character,
    "ICE waits for its 20 ms tick": ice_waits_for_the_tick,
}


@contextlib.contextmanager
def counting(counts: dict[str, int]) -> Iterator[None]:
    """Count, for the block, the work the savings avoid: certificates made, interface listings,
    SDP texts written out (`str(SessionDescription)`) and parsed."""
    import aioice.ice
    import ifaddr
    from aiortc.rtcdtlstransport import RTCCertificate
    from aiortc.sdp import SessionDescription

    generate = RTCCertificate.generateCertificate.__func__  # type: ignore[attr-defined]
    parse = SessionDescription.parse.__func__  # type: ignore[attr-defined]
    write, adapters = SessionDescription.__str__, ifaddr.get_adapters
    draw = aioice.ice.random_string

    def bump(key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    def counted_generate(cls: Any) -> Any:
        bump("certificates made")
        return generate(cls)

    def counted_adapters(*args: Any, **kwargs: Any) -> Any:
        bump("interface listings")
        return adapters(*args, **kwargs)

    def counted_write(self: Any) -> str:
        bump("SDP texts written out")
        return write(self)

    def counted_parse(cls: Any, text: str) -> Any:
        bump("SDP texts parsed")
        return parse(cls, text)

    def counted_draw(length: int) -> str:
        if length == 22:  # the password; the ufrag (4) comes with it
            bump("ICE credentials drawn per character")
        return draw(length)

    with contextlib.ExitStack() as stack:
        stack.enter_context(
            _swapped(RTCCertificate, "generateCertificate", classmethod(counted_generate))
        )
        stack.enter_context(_swapped(ifaddr, "get_adapters", counted_adapters))
        stack.enter_context(_swapped(SessionDescription, "__str__", counted_write))
        stack.enter_context(_swapped(SessionDescription, "parse", classmethod(counted_parse)))
        stack.enter_context(_swapped(aioice.ice, "random_string", counted_draw))
        yield


async def unit_costs() -> dict[str, float]:
    """Microseconds of each operation the savings avoid, on this machine now (timeit, best of
    5 repeats of 200)."""
    import timeit

    import aioice.ice
    import aioice.utils
    from aiortc.rtcdtlstransport import RTCCertificate
    from aiortc.sdp import SessionDescription

    pc = RTCPeerConnection(raw_configuration())
    pc.createDataChannel("", negotiated=True, id=0)
    await pc.setLocalDescription(await pc.createOffer())
    parsed = SessionDescription.parse(pc.localDescription.sdp)
    text = str(parsed)
    await pc.close()
    ops: dict[str, Callable[[], object]] = {
        "certificates made": RTCCertificate.generateCertificate,
        "interface listings": lambda: aioice.ice.get_host_addresses(True, True),
        "SDP texts written out": lambda: str(parsed),
        "SDP texts parsed": lambda: SessionDescription.parse(text),
        "ICE credentials drawn per character": lambda: (
            aioice.utils.random_string(4),
            aioice.utils.random_string(22),
        ),
    }
    return {
        name: min(timeit.repeat(op, number=200, repeat=5)) / 200 * 1e6 for name, op in ops.items()
    }


async def savings(n: int, runs: int) -> None:
    """Each saving undone in turn, alternating with raw and with all savings, then the counts
    of avoided work per connection and its unit cost."""
    cases: dict[str, Callable[[], Awaitable[Run]]] = {
        "raw aiortc": lambda: raw_mesh(n),
        "peerix_nb": lambda: peerix_mesh(n),
    }
    for name, undo in SAVINGS.items():
        cases[f"peerix_nb, {name}"] = patched(lambda: peerix_mesh(n), undo)
    cases["peerix_nb, none of them (as before)"] = patched(
        lambda: peerix_mesh(n), *SAVINGS.values()
    )
    print(f"\nload average before: {loadavg()}")
    results = await alternate(runs, cases)
    print(f"\nsavings, {n} peers, {runs} alternating runs each (each saving undone in turn):\n")
    print(table(n, results, goal=""))
    print(f"load average after: {loadavg()}")

    connections = n * (n - 1)
    counted: dict[str, dict[str, int]] = {}
    for name, case in (
        ("raw aiortc", cases["raw aiortc"]),
        ("peerix_nb, as before", cases["peerix_nb, none of them (as before)"]),
        ("peerix_nb", cases["peerix_nb"]),
    ):
        counts: dict[str, int] = {}
        with counting(counts):
            await case()
        counted[name] = counts
    costs = await unit_costs()
    names = list(counted)
    print(f"\nwork per RTCPeerConnection ({connections} in a {n}-peer mesh, one run each):\n")
    print(
        "| operation | cost (us) | "
        + " | ".join(f"{name}: per connection" for name in names)
        + " | saved per connection (us) |"
    )
    print("|---|---|" + "---|" * len(names) + "---|")
    for op, cost in costs.items():
        per = [counted[name].get(op, 0) / connections for name in names]
        saved = (per[1] - per[2]) * cost
        cells = " | ".join(f"{p:.2f}" for p in per)
        print(f"| {op} | {cost:.1f} | {cells} | {saved:.0f} |")


def patched(
    run: Callable[[], Awaitable[Run]],
    *patches: Callable[[], contextlib.AbstractContextManager[None]],
) -> Callable[[], Awaitable[Run]]:
    async def case() -> Run:
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch())
            return await run()

    return case


# -- reporting -------------------------------------------------------------------------------------
def max_concurrent(intervals: list[tuple[float, float]]) -> int:
    """The largest number of [start, end) intervals open at one instant."""
    marks = sorted(itertools.chain(((s, 1) for s, _ in intervals), ((e, -1) for _, e in intervals)))
    best = current = 0
    for _, step in marks:
        current += step
        best = max(best, current)
    return best


def phase_summary(run: Run) -> dict[str, float]:
    """Medians over connections (ms) of each phase, and the peak of concurrent DTLS handshakes."""
    ps = [p for p in run.phases if p.channel_open is not None]
    ice = [p for p in ps if p.ice_checking is not None and p.ice_completed is not None]
    dtls = [p for p in ps if p.dtls_connecting is not None and p.dtls_connected is not None]
    return {
        "created -> ICE checking": median([(p.ice_checking - p.created) * 1e3 for p in ice]),  # type: ignore[operator]
        "ICE checking -> completed": median(
            [(p.ice_completed - p.ice_checking) * 1e3 for p in ice]  # type: ignore[operator]
        ),
        "DTLS handshake": median(
            [(p.dtls_connected - p.dtls_connecting) * 1e3 for p in dtls]  # type: ignore[operator]
        ),
        "DTLS connected -> channel open": median(
            [(p.channel_open - p.dtls_connected) * 1e3 for p in dtls]  # type: ignore[operator]
        ),
        "DTLS handshakes at once (peak)": float(
            max_concurrent([(p.dtls_connecting, p.dtls_connected) for p in dtls])  # type: ignore[misc]
        ),
    }


def table(n: int, results: dict[str, list[Run]], goal: str = "<= 1.5") -> str:
    """Wall time (the goal's measure) and CPU time: the mesh is CPU-bound, so CPU seconds are
    what other work on a shared machine disturbs least."""
    names = list(results)
    base = median([r.seconds for r in results[names[0]]])
    base_cpu = median([r.cpu for r in results[names[0]]])
    lines = [
        f"| {n} peers ({n * (n - 1) // 2} pairs) | median (s) | range (s) | CPU (s) | "
        f"CPU s / wall s | ratio to {names[0]} | CPU ratio | CPU ratio, run by run | "
        "first offers collided per run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        secs = [r.seconds for r in results[name]]
        cpu = median([r.cpu for r in results[name]])
        util = median([r.cpu / r.seconds for r in results[name]])
        ratio = median(secs) / base
        # Each run against the baseline run next to it (alternating runs share the moment's
        # load): the median of those ratios drifts less with the machine than medians do.
        paired = median(
            [r.cpu / b.cpu for r, b in zip(results[name], results[names[0]], strict=True)]
        )
        collided = sorted(r.collisions for r in results[name])
        collisions = "-" if name == names[0] else ", ".join(str(c) for c in collided)
        lines.append(
            f"| {name} | {median(secs):.3f} | {min(secs):.3f}-{max(secs):.3f} | {cpu:.3f} | "
            f"{util:.2f} | {ratio:.2f}{f' (goal {goal})' if name != names[0] and goal else ''} | "
            f"{cpu / base_cpu:.2f} | {paired:.2f} | {collisions} |"
        )
    return "\n".join(lines)


def phases_table(results: dict[str, list[Run]]) -> str:
    names = list(results)
    summaries = {name: [phase_summary(r) for r in runs] for name, runs in results.items()}
    keys = list(next(iter(summaries.values()))[0])
    lines = [
        "| phase (median over connections, then runs) | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key in keys:
        unit = "" if "peak" in key else " ms"
        cells = " | ".join(f"{median([s[key] for s in summaries[n]]):.0f}{unit}" for n in names)
        lines.append(f"| {key} | {cells} |")
    return "\n".join(lines)


#: (path fragment, area) for grouping profile self time; the first match wins.
AREAS = (
    ("aiortc/rtcdtlstransport", "aiortc DTLS (Python side)"),
    ("aiortc/rtcsctptransport", "aiortc SCTP"),
    ("aiortc/sdp", "aiortc SDP"),
    ("aiortc/", "aiortc, other"),
    ("aioice/", "aioice (ICE, STUN)"),
    ("ifaddr/", "ifaddr (interface list, per gathering)"),
    ("ipaddress", "ipaddress (from aioice, ifaddr, aiortc SDP)"),
    ("OpenSSL/", "pyOpenSSL wrappers"),
    ("cryptography/", "cryptography wrappers"),
    ("pyee/", "pyee (aiortc's event emitter)"),
    ("peerix_nb/", "peerix_nb"),
    ("asyncio/", "asyncio event loop"),
    ("bench/", "benchmark harness"),
)


def area(filename: str, function: str) -> str:
    """Which part of the stack a profiled function belongs to."""
    if filename == "~":  # a builtin: name it by what it wraps
        if "_openssl" in function or "_rust" in function:
            return "OpenSSL / cryptography (C)"
        if "socket" in function or "select" in function or "poll" in function:
            return "sockets, select"
        return "Python builtins"
    for fragment, name in AREAS:
        if fragment in filename:
            return name
    return "other Python (json, zlib, uuid, ...)"


def areas(stats: pstats.Stats) -> dict[str, float]:
    """Self (own) time per area, in seconds: a partition of the profiled time. A builtin's time
    goes to the area of the Python code that called it (an OpenSSL or socket call keeps its own
    area)."""
    totals: dict[str, float] = {}
    entries = stats.stats.items()  # type: ignore[attr-defined]
    for (filename, _, function), (_, _, own, _, callers) in entries:
        name = area(filename, function)
        if name != "Python builtins" or not callers:
            totals[name] = totals.get(name, 0.0) + own
            continue
        for (caller_file, _, caller_function), (_, _, caller_own, _) in callers.items():
            name = area(caller_file, caller_function)
            totals[name] = totals.get(name, 0.0) + caller_own
    return totals


async def profile(n: int, runs: int, top: int) -> None:
    """cProfile over the connect phase only (joins to all open), summed over `runs` runs."""
    cases: dict[str, Callable[[cProfile.Profile], Awaitable[Run]]] = {
        "raw aiortc": lambda p: raw_mesh(n, profiler=p),
        "peerix_nb": lambda p: peerix_mesh(n, profiler=p),
    }
    by_area: dict[str, dict[str, float]] = {}
    for name, case in cases.items():
        await case(cProfile.Profile())  # warm-up: imports, first-use caches
        profiler = cProfile.Profile()  # enabled from the joins to all-open, not during cleanup
        total = 0.0
        for _ in range(runs):
            total += (await case(profiler)).seconds
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        by_area[name] = areas(stats)
        stats.strip_dirs().sort_stats("cumulative").print_stats(top)
        print(f"\n### cProfile, {name}, {n} peers, {runs} runs ({total:.2f} s wall in all)\n")
        print(out.getvalue())
    names = list(by_area)
    print(f"\nself time by area, {n} peers, per run (cProfile, connect phase only):\n")
    print("| area | " + " | ".join(f"{name} (ms)" for name in names) + " |")
    print("|---|" + "---|" * len(names))
    order = sorted(by_area[names[-1]], key=lambda k: -by_area[names[-1]][k])
    order += [k for k in by_area[names[0]] if k not in order]
    for key in order:
        cells = " | ".join(f"{by_area[name].get(key, 0.0) * 1000 / runs:.0f}" for name in names)
        print(f"| {key} | {cells} |")
    sums = " | ".join(f"{sum(by_area[name].values()) * 1000 / runs:.0f}" for name in names)
    print(f"| total | {sums} |")


async def run(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    for n in args.sizes:
        print(f"\nload average before: {loadavg()}")
        results = await alternate(
            args.runs,
            {"raw aiortc": lambda n=n: raw_mesh(n), "peerix_nb": lambda n=n: peerix_mesh(n)},
        )
        print(f"{n}-peer full mesh, {args.runs} alternating runs each (join to all open):\n")
        print(table(n, results, goal="<= 0.85" if n >= 16 else "<= 1.5"))
        print()
        print(phases_table(results))
        print(f"load average after: {loadavg()}")
    if args.savings:
        await savings(max(args.sizes), args.runs)
    if args.experiments:
        n = max(args.sizes)
        print(f"\nload average before: {loadavg()}")
        cases: dict[str, Callable[[], Awaitable[Run]]] = {
            "raw aiortc": lambda: raw_mesh(n),
            "peerix_nb": lambda: peerix_mesh(n),
        }
        for pace in args.pace:
            cases[f"paced joins ({pace * 1000:.0f} ms apart)"] = lambda pace=pace: peerix_mesh(
                n, pace=pace
            )
        results = await alternate(args.runs, cases)
        print(f"\nexperiments, {n} peers, {args.runs} alternating runs each:\n")
        print(table(n, results, goal=""))
        print(f"load average after: {loadavg()}")
    if args.profile:
        await profile(max(args.sizes), args.profile_runs, args.top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mesh", description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="runs per setup and size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16], help="peers per mesh")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest mesh")
    parser.add_argument("--profile-runs", type=int, default=3, help="runs summed per profile")
    parser.add_argument("--top", type=int, default=30, help="functions listed per profile")
    parser.add_argument(
        "--savings", action="store_true", help="each per-connection saving undone in turn"
    )
    parser.add_argument("--experiments", action="store_true", help="measure paced joins")
    parser.add_argument(
        "--pace", type=float, nargs="+", default=[0.005, 0.02], help="seconds between paced joins"
    )
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
