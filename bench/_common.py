"""Shared helpers for benchmarks: alternating A/B runs, medians, a machine line."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiortc import RTCBundlePolicy, RTCConfiguration


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            model = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


T = TypeVar("T")


async def alternate(
    runs: int, cases: dict[str, Callable[[], Awaitable[T]]], warmup: int = 1
) -> dict[str, list[T]]:
    """Run each case `runs` times, interleaved (A, B, A, B, ...), after `warmup` discarded
    rounds, so drift on a shared machine hits every case alike."""
    results: dict[str, list[T]] = {name: [] for name in cases}
    for i in range(warmup + runs):
        for name, case in cases.items():
            value = await case()
            if i >= warmup:
                results[name].append(value)
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    return f"{ordered[0]:.1f}-{ordered[-1]:.1f}"


def raw_configuration() -> RTCConfiguration:
    """The baseline's configuration: no ICE servers (the default public STUN server stalls
    gathering for 5 s offline) and max-bundle, as peerix_nb uses."""
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def loadavg() -> str:
    """The 1/5/15-minute load averages: other work on this shared machine skews figures."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rss_kib() -> int:
    """This process's resident set size (VmRSS), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")
