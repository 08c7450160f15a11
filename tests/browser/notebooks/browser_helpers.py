"""Helpers shared by the browser-peer test notebooks (the kernel's cwd is this folder)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from peerix_nb.media import frames


async def until(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Wait until `check()` is truthy (polled every 50 ms); TimeoutError naming `what`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not (value := check()):
        if loop.time() > end:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)
    return value


async def numpy_frames(track: Any, count: int = 10, timeout: float = 30) -> dict[str, Any]:
    """Read `count` frames of a remote video track as numpy arrays; a summary of them."""
    shapes, spreads, means = [], [], []

    async def read() -> None:
        async for array in frames(track, format="rgb24"):
            assert isinstance(array, np.ndarray)
            shapes.append(list(array.shape))
            spreads.append(float(array.std()))
            means.append(float(array.mean()))
            if len(shapes) >= count:
                break

    await asyncio.wait_for(read(), timeout)
    return {
        "count": len(shapes),
        "shape": shapes[-1],
        "dtype": "uint8",
        "min_std": min(spreads),
        "changes": len({round(m, 3) for m in means}),  # a live picture differs frame to frame
    }


def report(tag: str, value: Any) -> None:
    """One line the browser test reads: `TAG {json}`."""
    print(tag, json.dumps(value, default=str))


async def playing_video(
    peer: Any, label: str, advance: float = 1.0, timeout: float = 30
) -> dict[str, Any]:
    """Wait until the BrowserPeer's `<video>` tile for `label` has a size and its currentTime
    has advanced by `advance` seconds; the first and the later state of that element."""

    async def tile() -> dict[str, Any] | None:
        tiles = [v for v in await peer.video_state() if v["label"] == label and v["width"] > 0]
        return tiles[0] if tiles else None

    async def watch() -> dict[str, Any]:
        first = None
        while first is None:
            first = await tile()
            if first is None:
                await asyncio.sleep(0.1)
        later = first
        while later is None or later["current_time"] < first["current_time"] + advance:
            await asyncio.sleep(0.2)
            later = await tile()
        return {"first": first, "later": later}

    return await asyncio.wait_for(watch(), timeout)
