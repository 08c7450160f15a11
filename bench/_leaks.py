"""What a long-lived process holds, sampled for leaks: file descriptors, asyncio tasks, threads,
RSS and live library objects, read once teardown in flight has settled.

Shared by bench/soak.py (samples between cycles) and bench/glare_storm.py (before and after).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection

from peerix_nb import Peer, media
from peerix_nb.remote import RemotePeer

from ._common import rss_kib


def live_objects() -> dict[str, int]:
    """Live instances of the classes a leak would keep: Peers, RemotePeers, aiortc connections,
    Taps and local synthetic tracks (one pass over the gc-tracked heap)."""
    kinds: dict[str, type] = {
        "Peer": Peer,
        "RemotePeer": RemotePeer,
        "RTCPeerConnection": RTCPeerConnection,
        "Tap": media.Tap,
        "SyntheticVideoTrack": media.SyntheticVideoTrack,
    }
    counts = dict.fromkeys(kinds, 0)
    for obj in gc.get_objects():
        for name, cls in kinds.items():
            if isinstance(obj, cls):
                counts[name] += 1
    return counts


@dataclass(slots=True)
class Sample:
    """What one sample read, after `gc.collect()`."""

    cycle: int
    seconds: float  # since the first sample
    fds: int
    tasks: int
    threads: int  # but the default executor's workers: see `leakable_threads`
    rss_kib: int
    objects: dict[str, int]
    extra: dict[str, int]


def take_sample(cycle: int, t0: float, extra: dict[str, int] | None = None) -> Sample:
    gc.collect()
    return Sample(
        cycle=cycle,
        seconds=time.perf_counter() - t0,
        fds=len(os.listdir("/proc/self/fd")),
        tasks=len(asyncio.all_tasks()),
        threads=leakable_threads(),
        rss_kib=rss_kib(),
        objects=live_objects(),
        extra=extra or {},
    )


def leakable_threads() -> int:
    """Threads alive now but the loop's default executor workers (`asyncio_N`): the encoders
    run there, and the pool adds a worker whenever none is idle, up to min(32, cores + 4), and
    keeps it (seen on 3.12: 5 -> 7 threads over 50 publish cycles, none leaked). A leak is a
    thread of another kind: aiortc's decoder threads, or one of ours."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_"))


def thread_names() -> list[str]:
    """Threads alive now, by name: `MainThread`, aiortc's `audio-decoder`/`video-decoder` (one
    per started receiver) and the loop's default executor workers `asyncio_N` (encoders)."""
    return sorted(t.name for t in threading.enumerate())


def task_names(tasks: Iterable[asyncio.Task[Any]] | None = None) -> list[str]:
    """Pending asyncio tasks by name (tap tasks collapsed), for a leak report."""
    names: collections.Counter[str] = collections.Counter()
    for task in asyncio.all_tasks() if tasks is None else tasks:
        name = task.get_name()
        if name.startswith("peerix-tap-"):
            name = "peerix-tap-*"
        elif name.startswith("Task-"):
            coro = task.get_coro()
            name = f"Task ({getattr(coro, '__qualname__', coro)})"
        names[name] += 1
    return [f"{name} x{n}" if n > 1 else name for name, n in sorted(names.items())]


def other_tasks() -> list[asyncio.Task[Any]]:
    """Pending tasks except the caller's."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current]


async def settled_tasks(timeout: float = 3.0) -> list[asyncio.Task[Any]]:
    """The tasks still pending once none of them has ended for 0.1 s (or after `timeout` s).

    Teardown takes a moment: a closed connection's transports finish their tasks, a tap whose
    last reader went away reads one more frame of its source (up to a frame period, more under
    load: those are waited for) before it ends. A leaked task never ends, so waiting for the
    quiet moment hides no leak."""
    deadline = time.perf_counter() + timeout
    # A local tap whose last reader left ends after the frame in flight, which on a loaded
    # machine can take longer than the quiet window below: wait for those by name.
    finishing = [
        tap._task
        for tap in list(media.fanout._taps.values())
        if tap._own_reader and tap._had_subscribers and not tap.subscribers and not tap.ended
    ]
    if finishing:
        await asyncio.wait(finishing, timeout=timeout)
    tasks = other_tasks()
    while tasks and time.perf_counter() < deadline:
        # A condition wait: re-check after the pending tasks have had a few turns.
        await asyncio.wait(tasks, timeout=0.1)
        now = other_tasks()
        if len(now) >= len(tasks) and not any(t.done() for t in tasks):
            break  # nothing ended for 0.1 s: what is left stays
        tasks = now
    return other_tasks()
