"""StatsSampler: per-remote transport and media statistics every `interval` seconds, as a DataFrame.

`peer.stats(interval)` starts one. Each round records, per remote, one `transport` row (the
bundled ICE/DTLS/SCTP transport: bytes and packets, SCTP round-trip time, the selected candidate
pair) and one row per media kind that has RTP streams (`audio`, `video`: bytes, packets, loss,
jitter, RTCP round-trip time, frames decoded). Bitrates come from byte deltas between rounds.
The sampler is an asyncio task owned by this object: `stop()`/`await aclose()` end it, and so
does the peer leaving its room. Layers: plot is below stats (`plot()` imports it when called;
plot knows a StatsSampler only by its `to_frame()`, so there is no cycle).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from . import _aiortc, network

if TYPE_CHECKING:
    import matplotlib.axes
    import matplotlib.figure
    import pandas as pd

    from .events import Event
    from .peer import Peer
    from .remote import RemotePeer

logger = logging.getLogger("peerix_nb.stats")

#: Columns of `StatsSampler.to_frame()`, in order.
STATS_COLUMNS = (
    "time",  # wall clock of the sample (UTC)
    "t",  # seconds since the peer was created: the EventLog's clock
    "peer",
    "remote",
    "kind",  # transport / audio / video
    "state",  # the remote's connection state
    "bytes_sent",
    "bytes_received",
    "packets_sent",
    "packets_received",
    "packets_lost",  # RTP packets lost on their way to us
    "remote_packets_lost",  # RTP packets lost on their way to the remote (its RTCP reports)
    "jitter",  # ms, RTP interarrival jitter of what we receive
    "rtt",  # ms: SCTP smoothed RTT (transport rows), RTCP RTT (media rows, when we send)
    "bitrate",  # bit/s, sent + received, from byte deltas
    "bitrate_sent",
    "bitrate_received",
    "frames_decoded",  # video: frames the remote's video tracks delivered so far
    "local_candidate",  # selected pair (transport rows): candidate types and addresses
    "local_address",
    "remote_candidate",
    "remote_address",
    "protocol",
    # emulated network (peerix_nb.network; transport rows, NA when never set): datagrams this
    # peer sent into the emulation, those that left (copies included) and their bytes, held
    # back (delay, jitter or the bottleneck queue), dropped at random, dropped by the full
    # queue, duplicated; the queue's backlog (ms) and the conditions (text) at the sample
    "net_datagrams",
    "net_passed",
    "net_bytes_passed",
    "net_delayed",
    "net_lost",
    "net_overflow",
    "net_duplicated",
    "net_backlog",
    "network",
)
KINDS = ("transport", "audio", "video")
_CATEGORIES = ("peer", "remote", "kind", "state", "network")
_INTEGERS = (
    "bytes_sent",
    "bytes_received",
    "packets_sent",
    "packets_received",
    "packets_lost",
    "remote_packets_lost",
    "frames_decoded",
    "net_datagrams",
    "net_passed",
    "net_bytes_passed",
    "net_delayed",
    "net_lost",
    "net_overflow",
    "net_duplicated",
)
_FLOATS = ("jitter", "rtt", "bitrate", "bitrate_sent", "bitrate_received", "net_backlog")
_VALUES = STATS_COLUMNS[5:]  # what a sample dict may hold

#: Rows kept by default (a remote costs 1-3 rows per round): the oldest go first beyond it.
DEFAULT_MAX_ROWS = 100_000
#: Recent sampling failures kept in `StatsSampler.errors`.
MAX_ERRORS = 20


class StatsSampler:
    """Samples `peer`'s connections every `interval` seconds until stopped or the peer leaves.

    Create it with `peer.stats(interval)` inside a running event loop (a notebook cell, a
    coroutine). A failure while sampling one remote is logged (logger `peerix_nb.stats`), kept
    in `errors`, and sampling goes on: statistics never break a connection.
    """

    def __init__(
        self, peer: Peer, interval: float = 1.0, *, max_rows: int | None = DEFAULT_MAX_ROWS
    ) -> None:
        if (
            not isinstance(interval, (int, float))
            or isinstance(interval, bool)
            or not math.isfinite(interval)
            or interval <= 0
        ):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "peer.stats() needs a running asyncio event loop: call it in a notebook cell "
                "or inside a coroutine run by asyncio.run()"
            ) from None
        self.peer = peer
        self.interval = float(interval)
        self.errors: deque[tuple[str, BaseException]] = deque(maxlen=MAX_ERRORS)
        self._rows: deque[tuple[Any, ...]] = deque(maxlen=max_rows)
        self._samples = 0
        self._recorded = 0  # rows ever recorded (the oldest may be gone): see rows_since()
        self._waiters: list[tuple[int, asyncio.Future[int]]] = []
        # (remote id, kind) -> (connection, t, bytes sent, bytes received) of the last round
        self._previous: dict[tuple[str, str], tuple[int, float, int | None, int | None]] = {}
        peer.on("room:leave", self._on_leave)
        self._task = loop.create_task(self._run(), name=f"peerix-stats-{peer.id}")
        self._task.add_done_callback(self._finished)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<StatsSampler {self.peer.id} every {self.interval} s, {state}, {self._samples} samples>"

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return not self._task.done()

    @property
    def task(self) -> asyncio.Task[None]:
        """The sampling task (done once stopped)."""
        return self._task

    @property
    def samples(self) -> int:
        """Sampling rounds completed so far (a round covers every remote of the moment)."""
        return self._samples

    def stop(self) -> None:
        """Stop sampling (the rows stay); safe to call more than once."""
        self._task.cancel()
        self.peer.off("room:leave", self._on_leave)

    async def aclose(self) -> None:
        """Stop sampling and wait until the task has ended."""
        self.stop()
        await asyncio.gather(self._task, return_exceptions=True)

    async def __aenter__(self) -> StatsSampler:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _on_leave(self, _event: Event) -> None:
        self.stop()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.peer.off("room:leave", self._on_leave)
        if not task.cancelled() and task.exception() is not None:  # a bug here, not in aiortc
            logger.error("stats sampler of %s ended: %r", self.peer.id, task.exception())
        waiters, self._waiters = self._waiters, []
        for _n, future in waiters:
            if not future.done():
                future.set_exception(
                    RuntimeError(f"the sampler stopped after {self._samples} samples")
                )

    async def wait_samples(self, n: int, timeout: float | None = None) -> int:
        """Wait until at least `n` rounds have been sampled since the start; returns the count.

        Raises RuntimeError if the sampler stops first, TimeoutError after `timeout` seconds.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive number of samples, got {n!r}")
        if self._samples >= n:
            return self._samples
        if self._task.done():
            raise RuntimeError(f"the sampler stopped after {self._samples} samples")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{self._samples} of {n} samples after {timeout} s (interval {self.interval} s)"
            ) from None
        finally:
            self._waiters = [(k, f) for k, f in self._waiters if f is not future]

    # -- sampling ---------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.sample()
            next_at += self.interval
            delay = next_at - loop.time()
            if delay < 0:  # a slow round (a busy loop): skip the missed ticks, don't burst
                next_at, delay = loop.time(), 0.0
            await asyncio.sleep(delay)

    async def sample(self) -> int:
        """Take one round now (the task does this every `interval`); returns rows recorded."""
        count = 0
        for remote in list(self.peer.connections.values()):
            try:
                for row in await self._sample_remote(remote):
                    self._rows.append(row)
                    count += 1
            except asyncio.CancelledError:
                raise
            except Exception as error:  # statistics must never break the peer or the loop
                self.errors.append((remote.id, error))
                logger.warning("stats of %s -> %s failed: %r", self.peer.id, remote.id, error)
        self._samples += 1
        self._recorded += count
        for n, future in self._waiters:
            if n <= self._samples and not future.done():
                future.set_result(self._samples)
        return count

    async def _sample_remote(self, remote: RemotePeer) -> list[tuple[Any, ...]]:
        pc = remote.connection
        time_ns, t = time.time_ns(), self.peer.events.now()
        samples: dict[str, dict[str, Any]] = {"transport": _transport_sample(pc)}
        samples["transport"].update(network.sample(pc))  # emulated network counters, if any
        samples.update(_media_samples(await pc.getStats(), _clock_rates(pc)))
        frames = _frames_decoded(remote)
        if frames is not None:
            samples.setdefault("video", {})["frames_decoded"] = frames
        rows = []
        for kind in KINDS:
            sample = samples.get(kind)
            if sample is None:
                continue
            sample["state"] = remote.state
            self._add_bitrates(remote.id, kind, id(pc), t, sample)
            values = tuple(sample.get(name) for name in _VALUES)
            rows.append((time_ns, t, remote.id, kind, *values))
        return rows

    def _add_bitrates(
        self, remote: str, kind: str, connection: int, t: float, sample: dict[str, Any]
    ) -> None:
        sent, received = sample.get("bytes_sent"), sample.get("bytes_received")
        before = self._previous.get((remote, kind))
        self._previous[(remote, kind)] = (connection, t, sent, received)
        if before is None or before[0] != connection or t <= before[1]:
            return  # first round, or a new RTCPeerConnection: counters started again
        elapsed = t - before[1]
        rates = []
        for name, now, then in (
            ("bitrate_sent", sent, before[2]),
            ("bitrate_received", received, before[3]),
        ):
            rate = None if now is None or then is None or now < then else (now - then) * 8 / elapsed
            sample[name] = rate
            rates.append(rate)
        if rates != [None, None]:  # a direction without RTP (or SR yet) counts as nothing
            sample["bitrate"] = sum(rate for rate in rates if rate is not None)

    # -- results ----------------------------------------------------------------------------
    @property
    def rows_recorded(self) -> int:
        """Rows recorded since the start, including any dropped beyond `max_rows`."""
        return self._recorded

    def rows_since(self, recorded: int) -> list[dict[str, Any]]:
        """The rows recorded after the first `recorded` ones (those still kept), oldest first,
        as dicts of STATS_COLUMNS without `time` and `peer`: cheap incremental reading for
        live views (`StatsView`), where `to_frame()` would rebuild everything each time."""
        new = min(self._recorded - recorded, len(self._rows))
        if new <= 0:
            return []
        names = ("t", "remote", "kind", *_VALUES)
        rows = list(itertools.islice(self._rows, len(self._rows) - new, None))
        return [dict(zip(names, row[1:], strict=True)) for row in rows]

    def to_frame(self) -> pd.DataFrame:
        """Every sample: one row per remote, kind (`transport`/`audio`/`video`) and round.

        Counters are cumulative (Int64); `jitter`, `rtt` in ms and bitrates in bit/s (Float64);
        missing values are NA. See STATS_COLUMNS for the meaning of each column.
        """
        import pandas as pd

        rows = list(self._rows)
        columns = list(zip(*rows, strict=True)) if rows else [()] * (len(STATS_COLUMNS) - 1)
        data: dict[str, Any] = {
            "time": pd.to_datetime(pd.Series(columns[0], dtype="int64"), unit="ns", utc=True),
            "t": pd.Series(columns[1], dtype="float64"),
            "peer": pd.Series([self.peer.id] * len(rows), dtype="object"),
        }
        for name, values in zip(STATS_COLUMNS[3:], columns[2:], strict=True):
            data[name] = pd.Series(values, dtype="object")
        frame = pd.DataFrame(data, columns=list(STATS_COLUMNS))
        for name in _CATEGORIES:
            frame[name] = frame[name].astype("category")
        for name in _INTEGERS:
            frame[name] = frame[name].astype("Int64")
        for name in _FLOATS:
            frame[name] = frame[name].astype("Float64")
        return frame

    def latest(self) -> pd.DataFrame:
        """The most recent sample of each remote and kind (handy to display in a notebook)."""
        frame = self.to_frame()
        last = frame.groupby(["remote", "kind"], observed=True, sort=False).tail(1)
        return last.sort_values(["remote", "kind"], kind="stable", ignore_index=True)

    def plot(
        self, metric: str = "bitrate", ax: matplotlib.axes.Axes | None = None
    ) -> matplotlib.figure.Figure:
        """`metric` over time per remote: see `peerix_nb.plot.stats`."""
        from .plot import stats  # a lower layer: plot imports nothing of this module

        return stats(self, metric=metric, ax=ax)


# -- public aiortc statistics -------------------------------------------------------------------


def _media_samples(report: Any, clock_rates: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per kind (audio/video): the RTP entries of `RTCPeerConnection.getStats()`, summed."""
    samples: dict[str, dict[str, Any]] = {}
    for entry in report.values():
        kind = getattr(entry, "kind", None)
        if kind not in ("audio", "video"):
            continue  # the transport entry: `_transport_sample` reads it for every connection
        if entry.type == "outbound-rtp" and not entry.packetsSent:
            continue  # every transceiver has a sender: a receive-only one never sends
        sample = samples.setdefault(kind, {})
        if entry.type == "outbound-rtp":
            _add(sample, "bytes_sent", entry.bytesSent)
            _add(sample, "packets_sent", entry.packetsSent)
        elif entry.type == "inbound-rtp":
            _add(sample, "packets_received", entry.packetsReceived)
            _add(sample, "packets_lost", entry.packetsLost)
            # jitter is in RTP timestamp units: the codec's clock rate makes it time
            jitter = (
                entry.jitter * 1000 / clock_rates.get(kind, 90_000 if kind == "video" else 48_000)
            )
            sample["jitter"] = max(jitter, sample.get("jitter") or 0.0)
        elif entry.type == "remote-outbound-rtp":
            # what the remote says it sent us (RTCP sender reports): aiortc counts no bytes
            # received per stream
            _add(sample, "bytes_received", entry.bytesSent)
        elif entry.type == "remote-inbound-rtp":
            _add(sample, "remote_packets_lost", entry.packetsLost)
            if entry.roundTripTime is not None:
                sample["rtt"] = max(entry.roundTripTime * 1000, sample.get("rtt") or 0.0)
    return samples


def _add(sample: dict[str, Any], name: str, value: int | None) -> None:
    if value is not None:
        sample[name] = (sample.get(name) or 0) + value


def _frames_decoded(remote: RemotePeer) -> int | None:
    """Frames the receivers of the remote's current video tracks delivered (media.Tap counts)."""
    taps = {}
    for stream in list(remote.streams.values()):
        for track in stream.tracks:
            tap = getattr(track, "tap", None)  # remote tracks are media.TapTrack subscribers
            if track.kind == "video" and tap is not None:
                taps[id(tap)] = tap
    return sum(tap.frames_received for tap in taps.values()) if taps else None


# -- aiortc/aioice private state ----------------------------------------------------------------
# Why: aiortc 1.16's getStats() reports only RTP streams and their DTLS transport, so a
# data-channel-only connection reports nothing at all, and no report names the selected
# candidate pair or an RTT for data (AIORTC-NOTES.md, "getStats"). This section reads them from
# private state, through _aiortc.py (aiortc is pinned to 1.16.x, see pyproject.toml):
# - the DTLS transport's byte/packet counters (DTLS, SCTP and SRTP): `_aiortc.dtls_stats`
# - the selected candidate pair per ICE component: `_aiortc.nominated_pairs`
# - SCTP's smoothed round-trip time in seconds (RFC 4960 6.3.1), None until an acknowledgement
#   was timed (the control channel pings every second, liveness.py): `_aiortc.sctp_srtt`
# - the negotiated codecs, whose clock rate turns jitter into ms: `_aiortc.codecs`
# Every read is defensive: a changed aiortc gives NA, not an error.


def _transport_sample(pc: Any) -> dict[str, Any]:
    """The bundled transport of `pc`: counters, SCTP RTT and the selected candidate pair."""
    sample: dict[str, Any] = {}
    sctp = pc.sctp
    if sctp is None:
        return sample
    dtls = sctp.transport
    report = _aiortc.dtls_stats(dtls)
    if report is not None:
        for entry in report.values():
            if entry.type == "transport":
                sample.update(
                    bytes_sent=entry.bytesSent,
                    bytes_received=entry.bytesReceived,
                    packets_sent=entry.packetsSent,
                    packets_received=entry.packetsReceived,
                )
    srtt = _aiortc.sctp_srtt(sctp)
    if srtt is not None:
        sample["rtt"] = srtt * 1000
    nominated = _aiortc.nominated_pairs(dtls.transport)
    pair = nominated.get(1) or next(iter(nominated.values()), None)
    if pair is not None:
        local, remote = pair.local_candidate, pair.remote_candidate
        sample.update(
            local_candidate=local.type,
            local_address=_address(local.host, local.port),
            remote_candidate=remote.type,
            remote_address=_address(remote.host, remote.port),
            protocol=str(local.transport).lower(),
        )
    return sample


def _clock_rates(pc: Any) -> dict[str, int]:
    rates: dict[str, int] = {}
    for transceiver in pc.getTransceivers():
        codecs = _aiortc.codecs(transceiver)
        if codecs and transceiver.kind not in rates:
            rates[transceiver.kind] = codecs[0].clockRate
    return rates


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__ = ["KINDS", "STATS_COLUMNS", "StatsSampler"]
