"""Frame stamps: a band of black/white cells at the top of a frame carrying a frame counter
and the send time, so a receiver can measure latency from the decoded image alone."""

from __future__ import annotations

import binascii
import time
from dataclasses import dataclass

import numpy as np

from ..errors import PeerixError

__all__ = ["STAMP_COLUMNS", "STAMP_ROWS", "Stamp", "read_stamp", "write_stamp"]

# 40 x 3 cells = 120 bits: 4 guard + 32 counter + 64 time + 16 CRC + 4 guard
STAMP_COLUMNS = 40
STAMP_ROWS = 3
_GUARD_HEAD = (1, 0, 1, 1)
_GUARD_TAIL = (0, 0, 1, 0)


@dataclass(frozen=True)
class Stamp:
    """What `read_stamp` found: the frame counter and the send time (time.time(), seconds)."""

    counter: int
    sent_at: float


def _stamp_cell(width: int) -> int:
    # Square cells, a function of the width only (the receiver sees the same size). VP8 codes
    # 16x16 macroblocks; aiortc's realtime encoder settings (denoiser + static threshold)
    # sometimes leave a macroblock stale when only PART of it changes. Measured over 1,200
    # frames per case: 8 px cells failed up to 68 % of frames at 640x480, 16/32 px cells
    # (whole macroblocks) never, 4 px cells rarely (0-0.8 %). So: 16 * 2^k when 40 of them fit,
    # else 4 px (aligned to VP8's 4x4 transform: one flat value per block), else 2 px.
    if width >= 16 * STAMP_COLUMNS:
        cell = 16
        while cell * 2 * STAMP_COLUMNS <= width:
            cell *= 2
        return cell
    if width >= 4 * STAMP_COLUMNS:
        return 4
    return 2 if width >= 2 * STAMP_COLUMNS else 0


def _stamp_payload(counter: int, sent_at: float) -> bytes:
    micros = round(sent_at * 1_000_000)
    return (counter % (1 << 32)).to_bytes(4, "big") + (micros % (1 << 64)).to_bytes(8, "big")


def write_stamp(image: np.ndarray, counter: int, sent_at: float | None = None) -> np.ndarray:
    """Stamp `image` (HxW or HxWxC uint8, modified in place) with a counter and a send time.

    The band is 3 rows of 40 square cells at the top-left (48 px high at 640x480, 12 px at
    160x120). Use it on your own `from_frames` images to measure latency with `read_stamp`.
    """
    if sent_at is None:
        sent_at = time.time()
    cell = _stamp_cell(image.shape[1])
    if cell < 2 or image.shape[0] < STAMP_ROWS * cell:
        raise PeerixError(
            "PEER_MEDIASTREAM_ERROR",
            f"image {image.shape[1]}x{image.shape[0]} is too small for a stamp (needs at least"
            f" {2 * STAMP_COLUMNS} pixels wide)",
        )
    payload = _stamp_payload(counter, sent_at)
    crc = binascii.crc_hqx(payload, 0xFFFF).to_bytes(2, "big")
    bits = np.concatenate(
        [
            np.array(_GUARD_HEAD, np.uint8),
            np.unpackbits(np.frombuffer(payload + crc, np.uint8)),
            np.array(_GUARD_TAIL, np.uint8),
        ]
    ).reshape(STAMP_ROWS, STAMP_COLUMNS)
    band = np.repeat(np.repeat(bits * np.uint8(255), cell, axis=0), cell, axis=1)
    if image.ndim == 3:
        band = band[:, :, None]
    image[: STAMP_ROWS * cell, : STAMP_COLUMNS * cell] = band
    return image


def read_stamp(image: np.ndarray) -> Stamp | None:
    """Read the stamp of a synthetic frame (rgb24/bgr24/rgba HxWxC, or gray HxW) at the size
    it was sent (the layout depends on the width).

    Returns None when there is no readable stamp (guard bits or CRC-16 do not match), so a
    damaged or unstamped frame never yields a wrong counter.
    """
    if image.ndim not in (2, 3):
        raise PeerixError(
            "PEER_MEDIASTREAM_ERROR", f"expected an HxW or HxWxC image, got shape {image.shape}"
        )
    cell = _stamp_cell(image.shape[1])
    if cell < 2 or image.shape[0] < STAMP_ROWS * cell:
        return None
    band = image[: STAMP_ROWS * cell, : STAMP_COLUMNS * cell]
    if band.ndim == 3:
        band = band[:, :, :3].mean(axis=2)  # channel order does not matter for gray
    # average the middle half of each cell, away from edges touched by coding
    lo, hi = cell // 4, cell - cell // 4
    cells = band.reshape(STAMP_ROWS, cell, STAMP_COLUMNS, cell)[:, lo:hi, :, lo:hi]
    bits = (cells.mean(axis=(1, 3)) > 127.5).astype(np.uint8).ravel()
    if tuple(bits[:4]) != _GUARD_HEAD or tuple(bits[-4:]) != _GUARD_TAIL:
        return None
    data = np.packbits(bits[4:-4]).tobytes()
    payload, crc = data[:12], data[12:]
    if binascii.crc_hqx(payload, 0xFFFF).to_bytes(2, "big") != crc:
        return None
    counter = int.from_bytes(payload[:4], "big")
    micros = int.from_bytes(payload[4:], "big")
    return Stamp(counter=counter, sent_at=micros / 1_000_000)
