"""Helpers of the microphone test notebooks (the kernel's cwd is this folder): the level of an
audio track's frames, read as numpy arrays with `media.frames`."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np

from peerix_nb.media import frames


async def audio_level(track: Any, seconds: float = 3.0, timeout: float = 30) -> dict[str, Any]:
    """Read `seconds` of `track` (20 ms frames) with `media.frames`; their layout and level.

    Chromium's fake microphone beeps now and then, between silences: the loudest 20 ms (max
    RMS) and the peak over a few seconds say whether sound came through, an average would not.
    """
    arrays: list[np.ndarray] = []

    async def read() -> None:
        async with frames(track) as reader:
            async for array in reader:
                arrays.append(array)
                if len(arrays) * 0.02 >= seconds:
                    break

    await asyncio.wait_for(read(), timeout)
    levels = [float(np.sqrt(np.mean((a.astype(np.float64) / 32768) ** 2))) for a in arrays]
    peak = max(float(np.abs(a.astype(np.int32)).max()) for a in arrays) / 32768
    loudest = max(levels)
    return {
        "frames": len(arrays),
        "shape": list(arrays[0].shape),
        "dtype": str(arrays[0].dtype),
        "peak": round(peak, 4),
        "max_rms_dbfs": round(20 * math.log10(loudest), 1) if loudest > 0 else -math.inf,
        "silent_frames": sum(level < 1e-4 for level in levels),
    }
