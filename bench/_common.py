"""Shared helpers for benchmarks: alternating A/B runs, medians, a machine line."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Awaitable, Callable


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


async def alternate(
    runs: int, cases: dict[str, Callable[[], Awaitable[float]]], warmup: int = 1
) -> dict[str, list[float]]:
    """Run each case `runs` times, interleaved (A, B, A, B, ...), after `warmup` rounds."""
    results: dict[str, list[float]] = {name: [] for name in cases}
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
