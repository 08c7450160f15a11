"""Bad networks on demand: delay, jitter, loss, duplication and a bandwidth cap per connection.

`NetworkConditions(delay=100, loss=0.05, rate_kbps=300, seed=1)` describes a path;
`Peer(..., network=...)`, `peer.network = ...` and `peer.connections[id].network = ...` apply
it to what this peer *sends* (the remote's own sending side is untouched). Every UDP datagram
of the connection goes through one `Shaper`: ICE checks, DTLS, SRTP/SRTCP and SCTP alike.

What a datagram goes through, in order (one path model, like Linux netem + a token bucket):

1. loss: dropped with probability `loss` (counted `lost`);
2. duplication: with probability `duplicate` a second copy follows it (`duplicated`);
3. the bottleneck (`rate_kbps`): a FIFO drained at the rate; a datagram arriving while the
   queue already holds `queue_ms` of data at that rate is dropped (`overflow`), like a router
   with a full buffer; the one in service leaves when its last bit has been sent;
4. propagation: `delay` ms, plus or minus up to `jitter` ms drawn uniformly per datagram
   (a later datagram may then overtake an earlier one: jitter reorders, as on a real path).

Randomness comes from one `random.Random(seed)` per shaper, restarted whenever the conditions
are set, and each datagram draws the same numbers whatever happens to it: with a seed, the
n-th datagram after a change meets the same fate in every run. Delays are timers on the
connection's event loop (`loop.call_at`); no thread, no sleep.

Nothing is wrapped while a peer has never had conditions: no cost at all. Removing them
(`= None`) unwraps the sockets; datagrams still held are delivered on time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

    from .events import Event
    from .remote import RemotePeer

#: `queue_ms` when not given: a modest router buffer (RFC 8289's CoDel targets 5-100 ms; home
#: routers often hold several hundred).
DEFAULT_QUEUE_MS = 200.0
# Datagrams due within this many seconds of "now" leave in the same round. asyncio's epoll
# waits in whole milliseconds (rounded up), so a timer fires up to ~1 ms late; releasing up to
# 1 ms early evens that out and halves the wake-ups of a fast bottleneck.
_EARLY = 0.001


def _number(name: str, value: Any, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number{unit}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number{unit}, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class NetworkConditions:
    """A network path for what a peer sends: `delay` and `jitter` in ms, `loss` and
    `duplicate` probabilities (0-1), `rate_kbps` a bandwidth cap in kbit/s (None: none) with a
    queue of `queue_ms` of data at that rate, and `seed` for repeatable randomness.

    `NetworkConditions()` (all zeros) passes everything through unchanged, at once.
    """

    delay: float = 0
    jitter: float = 0
    loss: float = 0.0
    duplicate: float = 0.0
    rate_kbps: float | None = None
    queue_ms: float = DEFAULT_QUEUE_MS
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("delay", "jitter"):
            if _number(name, getattr(self, name), " of milliseconds") < 0:
                raise ValueError(f"{name} must be >= 0 ms, got {getattr(self, name)!r}")
        for name in ("loss", "duplicate"):
            value = _number(name, getattr(self, name), " between 0 and 1")
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)!r}")
        if self.rate_kbps is not None and (
            _number("rate_kbps", self.rate_kbps, " of kbit/s (or None)") <= 0
        ):
            raise ValueError(f"rate_kbps must be > 0 kbit/s (or None), got {self.rate_kbps!r}")
        if _number("queue_ms", self.queue_ms, " of milliseconds") <= 0:
            raise ValueError(f"queue_ms must be > 0 ms, got {self.queue_ms!r}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise TypeError(f"seed must be an int or None, got {self.seed!r}")

    @property
    def passthrough(self) -> bool:
        """True when nothing is impaired: every datagram leaves at once, unchanged."""
        return (
            not self.delay
            and not self.jitter
            and not self.loss
            and not self.duplicate
            and self.rate_kbps is None
        )

    def __str__(self) -> str:
        parts = []
        if self.delay or self.jitter:
            parts.append(f"delay {self.delay:g} ms" + (f" ±{self.jitter:g}" if self.jitter else ""))
        if self.loss:
            parts.append(f"loss {self.loss * 100:g} %")
        if self.duplicate:
            parts.append(f"duplicate {self.duplicate * 100:g} %")
        if self.rate_kbps is not None:
            parts.append(f"rate {self.rate_kbps:g} kbit/s (queue {self.queue_ms:g} ms)")
        if not parts:
            parts.append("no impairment")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        return ", ".join(parts)


def check(value: Any, what: str = "network") -> NetworkConditions | None:
    """`value` if it is NetworkConditions or None, else a TypeError naming `what`."""
    if value is not None and not isinstance(value, NetworkConditions):
        raise TypeError(
            f"{what} must be a peerix_nb.NetworkConditions or None, got {type(value).__name__}"
        )
    return value


class Shaper:
    """The emulated path of one connection: every datagram it sends goes through `send()`.

    `loop` needs `time()` and `call_at()` (an asyncio loop; tests pass a fake clock). Counters:
    `datagrams`/`bytes` offered, `passed`/`bytes_passed` handed to the socket (duplicates
    included), `delayed` (held before leaving), `lost`, `overflow` (bottleneck queue full),
    `duplicated` (copies made). Set `trace` to a list to record `(n, fate, wait_ms)` for each
    datagram `n` since the last change (fate: pass, lost, overflow, copy, copy-overflow).
    """

    def __init__(self, conditions: NetworkConditions | None = None, loop: Any = None) -> None:
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self.datagrams = self.bytes = 0
        self.passed = self.bytes_passed = 0
        self.delayed = self.lost = self.overflow = self.duplicated = 0
        self.trace: list[tuple[int, str, float]] | None = None
        self._heap: list[tuple[float, int, Any, bytes, Any]] = []
        self._order = itertools.count()
        self._timer: Any = None
        self._timer_at = math.inf
        self._busy_until = 0.0  # when the bottleneck has sent everything accepted so far
        self.conditions: NetworkConditions | None = None
        self._n = 0  # datagrams since the conditions were last set
        self.set(conditions)

    def set(self, conditions: NetworkConditions | None) -> None:
        """New conditions from now on (datagrams already held keep their departure time)."""
        self.conditions = conditions
        self._n = 0
        c = conditions or NetworkConditions()
        self._plain = c.passthrough
        self._random = random.Random(c.seed)
        self._loss, self._duplicate = float(c.loss), float(c.duplicate)
        self._delay, self._jitter = c.delay / 1000, c.jitter / 1000
        self._rate = None if c.rate_kbps is None else c.rate_kbps * 125  # bytes per second
        self._queue = c.queue_ms / 1000

    @property
    def held(self) -> int:
        """Datagrams waiting to leave (queued at the bottleneck or in flight)."""
        return len(self._heap)

    @property
    def backlog_ms(self) -> float:
        """How long the bottleneck needs to send what it holds (0 without a rate cap)."""
        if self._rate is None:
            return 0.0
        return max(0.0, self._busy_until - self._loop.time()) * 1000

    def send(self, transport: Any, data: bytes, addr: Any) -> None:
        """What the wrapped transport's `sendto(data, addr)` does."""
        size = len(data)
        self.datagrams += 1
        self.bytes += size
        if self._plain:
            transport.sendto(data, addr)
            self.passed += 1
            self.bytes_passed += size
            return
        # Same draws for every datagram, whatever its fate: the fate of datagram n depends on
        # the seed and n only.
        rng, jitter = self._random, self._jitter
        lost = bool(self._loss) and rng.random() < self._loss
        copy = bool(self._duplicate) and rng.random() < self._duplicate
        first = rng.uniform(-jitter, jitter) if jitter else 0.0
        second = rng.uniform(-jitter, jitter) if jitter and self._duplicate else 0.0
        self._n += 1
        if lost:
            self.lost += 1
            if self.trace is not None:
                self.trace.append((self._n, "lost", math.nan))
            return
        now = self._loop.time()
        self._path(transport, data, addr, size, now, first, "")
        if copy:
            self.duplicated += 1
            self._path(transport, data, addr, size, now, second, "copy")

    def _path(
        self, transport: Any, data: bytes, addr: Any, size: int, now: float, jitter: float, tag: str
    ) -> None:
        wait = self._delay + jitter
        if self._rate is not None:
            start = self._busy_until if self._busy_until > now else now
            if start - now >= self._queue:
                self.overflow += 1
                if self.trace is not None:
                    self.trace.append((self._n, f"{tag}-overflow" if tag else "overflow", math.nan))
                return
            self._busy_until = start + size / self._rate
            wait += self._busy_until - now
        if self.trace is not None:
            self.trace.append((self._n, tag or "pass", max(wait, 0.0) * 1000))
        if wait <= 0:
            transport.sendto(data, addr)
            self.passed += 1
            self.bytes_passed += size
            return
        self.delayed += 1
        due = now + wait
        heapq.heappush(self._heap, (due, next(self._order), transport, data, addr))
        if due < self._timer_at - _EARLY:  # (within _EARLY: the armed wake-up is soon enough)
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(due, self._release)
            self._timer_at = due

    def _release(self) -> None:
        self._timer, self._timer_at = None, math.inf
        heap = self._heap
        now = self._loop.time() + _EARLY
        while heap and heap[0][0] <= now:
            _due, _n, transport, data, addr = heapq.heappop(heap)
            closing = getattr(transport, "is_closing", None)
            if closing is not None and closing():
                continue  # the connection closed while the datagram was on its way
            transport.sendto(data, addr)
            self.passed += 1
            self.bytes_passed += len(data)
        if heap:
            self._timer_at = heap[0][0]
            self._timer = self._loop.call_at(self._timer_at, self._release)

    def counters(self) -> dict[str, Any]:
        """The counters and current state, as the stats columns name them."""
        return {
            "net_datagrams": self.datagrams,
            "net_passed": self.passed,
            "net_bytes_passed": self.bytes_passed,
            "net_delayed": self.delayed,
            "net_lost": self.lost,
            "net_overflow": self.overflow,
            "net_duplicated": self.duplicated,
            "net_backlog": self.backlog_ms,
            "network": str(self.conditions) if self.conditions is not None else "none",
        }


class ShapedTransport:
    """A datagram transport whose `sendto` goes through a Shaper; everything else is the
    wrapped transport's."""

    __slots__ = ("inner", "shaper")

    def __init__(self, inner: Any, shaper: Shaper) -> None:
        self.inner = inner
        self.shaper = shaper

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.shaper.send(self.inner, data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# -- which conditions apply ----------------------------------------------------------------------


def effective(remote: RemotePeer) -> NetworkConditions | None:
    """The conditions shaping what we send to `remote`: its own, else its peer's."""
    own = remote.network
    return own if own is not None else remote.owner.network


def change_event(conditions: NetworkConditions | None, remote: RemotePeer | None) -> Event:
    """The `network:change` row: the peer's conditions (`remote` None) or one remote's."""
    from .events import Event

    if remote is None:
        detail = str(conditions) if conditions is not None else "none"
    elif conditions is not None:
        detail = str(conditions)
    else:
        peer = remote.owner.network
        detail = f"follows the peer: {peer if peer is not None else 'none'}"
    return Event(
        name="network:change",
        remote=remote,
        state="set" if conditions is not None else "cleared",
        kind="peer" if remote is None else "remote",
        data=conditions,
        detail=detail,
    )


def shaper_of(pc: Any) -> Shaper | None:
    """The Shaper of a connection, or None if it was never shaped."""
    attachment = getattr(pc, _ATTRIBUTE, None)
    return attachment.shaper if attachment is not None else None


def sample(pc: Any) -> dict[str, Any]:
    """The stats columns of a connection's shaper (empty if it was never shaped)."""
    shaper = shaper_of(pc)
    return shaper.counters() if shaper is not None else {}


# -- aiortc/aioice private state ----------------------------------------------------------------
# Why: nothing public in aiortc 1.16 or aioice 0.13 lets one see, let alone hold back, the
# datagrams of a connection. This section relies on (through _aiortc.py, which says why each
# access works and the versions it was checked on):
# - the aioice Connection behind each ICE transport of the connection (with max-bundle,
#   `pc.sctp.transport.transport` carries everything; transceivers' transports are included in
#   case another appears), and its StunProtocols, one per local candidate (host sockets, TURN
#   allocations), created while gathering, i.e. inside setLocalDescription:
#   `_aiortc.stun_protocols`;
# - each StunProtocol's datagram transport, whose `sendto(data, addr)` every STUN check, DTLS
#   record, SRTP/SRTCP and SCTP packet goes through, replaced by a ShapedTransport and put back
#   to undo it: `_aiortc.datagram_transport`, `_aiortc.set_datagram_transport`;
# - an attribute of ours on the RTCPeerConnection (`_peerix_network`) holding its shaper, so
#   the shaper lives and dies with the connection (no global registry, no monkeypatching:
#   peers and loops never share one).
# Every read is defensive: a changed aioice leaves the connection unshaped, not broken.

_ATTRIBUTE = "_peerix_network"


class _Attachment:
    """The shaper of one RTCPeerConnection and the hooks that wrap sockets appearing later."""

    __slots__ = ("shaper",)

    def __init__(self, shaper: Shaper) -> None:
        self.shaper = shaper


def apply(pc: RTCPeerConnection, conditions: NetworkConditions | None) -> None:
    """Shape everything `pc` sends with `conditions` from now on; None stops shaping.

    A connection that never had conditions is left alone when `conditions` is None."""
    attachment: _Attachment | None = getattr(pc, _ATTRIBUTE, None)
    if attachment is None:
        if conditions is None:
            return
        attachment = _Attachment(Shaper(conditions))
        setattr(pc, _ATTRIBUTE, attachment)

        # Sockets exist once gathering ran (inside setLocalDescription), before the first
        # check is sent; after each negotiation, look again in case new ones appeared.
        def rewrap() -> None:
            if attachment.shaper.conditions is not None:
                _wrap(pc, attachment.shaper)

        pc.on("icegatheringstatechange", rewrap)
        pc.on("signalingstatechange", rewrap)
    else:
        attachment.shaper.set(conditions)
    if conditions is None:
        _unwrap(pc)
    else:
        _wrap(pc, attachment.shaper)


def _protocols(pc: Any) -> list[Any]:
    """The StunProtocols of every ICE transport of `pc` (each aioice Connection once)."""
    from . import _aiortc

    transports = []
    sctp = getattr(pc, "sctp", None)
    if sctp is not None:
        transports.append(sctp.transport.transport)
    for transceiver in pc.getTransceivers():
        transports.append(transceiver.receiver.transport.transport)
    protocols: list[Any] = []
    seen: set[int] = set()
    for ice in transports:
        connection = _aiortc.ice_connection(ice)
        if connection is None or id(connection) in seen:
            continue
        seen.add(id(connection))
        protocols.extend(_aiortc.stun_protocols(ice))
    return protocols


def _wrap(pc: Any, shaper: Shaper) -> None:
    from . import _aiortc

    for protocol in _protocols(pc):
        transport = _aiortc.datagram_transport(protocol)
        if transport is None or isinstance(transport, ShapedTransport):
            continue
        _aiortc.set_datagram_transport(protocol, ShapedTransport(transport, shaper))


def _unwrap(pc: Any) -> None:
    from . import _aiortc

    for protocol in _protocols(pc):
        transport = _aiortc.datagram_transport(protocol)
        if isinstance(transport, ShapedTransport):
            _aiortc.set_datagram_transport(protocol, transport.inner)


__all__ = ["DEFAULT_QUEUE_MS", "NetworkConditions", "ShapedTransport", "Shaper", "apply"]
