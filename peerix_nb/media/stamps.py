"""Stamps that carry a counter and the send time inside the media itself, so a receiver can
measure latency from what it decoded alone: for video a band of black/white cells at the top
of a frame (`write_stamp`/`read_stamp`), for audio a 20 ms data burst that survives Opus
(`write_audio_stamp`/`read_audio_stamps`/`AudioStampReader`)."""

from __future__ import annotations

import binascii
import time
from dataclasses import dataclass

import numpy as np

from ..errors import PeerixError

__all__ = [
    "AUDIO_STAMP_RATE",
    "AUDIO_STAMP_SAMPLES",
    "STAMP_COLUMNS",
    "STAMP_ROWS",
    "AudioStamp",
    "AudioStampReader",
    "Stamp",
    "read_audio_stamps",
    "read_stamp",
    "write_audio_stamp",
    "write_stamp",
]

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


# ---------------------------------------------------------------------------------------------
# Audio stamps: a 20 ms data burst that survives Opus
#
# A frame of a stamped audio track is replaced by a burst of 4 symbols of 5 ms (240 samples at
# 48 kHz); each symbol carries 16 bits as 16 carrier pairs (binary FSK per pair: the louder of
# 1000 + 800p Hz and 1400 + 800p Hz says the bit; 1.0-13.4 kHz in all). 64 bits: a 16-bit
# counter, the send time (time.time()) in 0.1 ms units modulo 2^32 (the receiver puts it back in
# its ~5-day window from its own clock) and a CRC-16. Why this shape, measured here through
# aiortc's own Opus encoder and decoder (96 kbit/s, "voip", what a connection uses): 64 random
# bursts x 40 runs decoded with no bit error and a worst pair margin of 0.34 (|a-b|/(a+b));
# carriers 200 Hz apart failed (leakage over the shortened analysis window), 400 Hz apart hold.
# Finding it: a 1 ms block whose energy is mostly above ~1 kHz (the 440 Hz tone has almost
# none) starts a search; any start within ~+-40 samples decodes; the waveform the decoded bits
# make is then correlated with what was received, which places the burst to the sample (2,000
# frames through Opus: every burst found, all exactly 312 samples late = Opus' 6.5 ms delay).
# Cost: ~20-30 us per 20 ms frame with nothing to find, ~0.3-0.6 ms per burst found.

AUDIO_STAMP_RATE = 48_000
AUDIO_STAMP_SAMPLES = 960  # one 20 ms frame at 48 kHz
_SYMBOL = 240
_SYMBOLS = 4
_PAIRS = 16
_CARRIERS = 1000.0 + 400.0 * np.arange(2 * _PAIRS)  # pair p: carriers 2p (bit 0) and 2p+1 (bit 1)
_RAMP = 15  # raised-cosine edges of each symbol (samples): no clicks between symbols
_GUARD = _SYMBOL // 8  # analysis skips this much at each end of a symbol (codec smearing)
_BLOCK = 48  # 1 ms blocks for the onset search
_SEARCH = 96  # how far before the onset a burst may start (samples)
_STEP = 8


def _symbol_window() -> np.ndarray:
    window = np.ones(_SYMBOL)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(_RAMP) / _RAMP)
    window[:_RAMP] = ramp
    window[-_RAMP:] = ramp[::-1]
    return window


# Schroeder phases keep the peak of 16 summed carriers low (more level for the same peak).
_PHASES = np.pi * np.arange(2 * _PAIRS) ** 2 / (2 * _PAIRS)
_TONES = (
    np.sin(
        2 * np.pi * _CARRIERS[:, None] * np.arange(_SYMBOL)[None, :] / AUDIO_STAMP_RATE
        + _PHASES[:, None]
    )
    * _symbol_window()[None, :]
)
# The carriers fall on bins of a 240-point DFT (200 Hz apart): 1000 + 400k Hz is bin 5 + 2k.
# An FFT of each zero-padded analysis window reads them all (pocketfft: no BLAS threads, which
# cost 40x more than the work itself on a loaded 2-core machine).
_BINS = (_CARRIERS * _SYMBOL / AUDIO_STAMP_RATE).astype(int)


def _audio_bits(counter: int, sent_at: float) -> np.ndarray:
    tenths = round(sent_at * 10_000) % (1 << 32)
    payload = (counter % (1 << 16)).to_bytes(2, "big") + tenths.to_bytes(4, "big")
    crc = binascii.crc_hqx(payload, 0xFFFF).to_bytes(2, "big")
    return np.unpackbits(np.frombuffer(payload + crc, np.uint8))


def _burst(bits: np.ndarray) -> np.ndarray:
    """The burst waveform of 64 bits, peak 1.0."""
    chosen = 2 * np.arange(_PAIRS)[None, :] + bits.reshape(_SYMBOLS, _PAIRS)  # carrier indices
    burst: np.ndarray = _TONES[chosen].sum(axis=1).ravel()
    peak = float(np.abs(burst).max())
    return burst / peak


def write_audio_stamp(
    samples: np.ndarray, counter: int, sent_at: float | None = None, volume: float = 0.2
) -> np.ndarray:
    """Replace the first 960 samples of `samples` (mono 48 kHz, int16 or float in [-1, 1],
    modified in place) by a 20 ms burst carrying `counter` (mod 2^16) and the send time.

    The burst peaks at `volume` of full scale. `read_audio_stamps` / `AudioStampReader` find
    it again after Opus (a real connection), with its position to a fraction of a millisecond.
    """
    if sent_at is None:
        sent_at = time.time()
    if samples.ndim != 1 or samples.shape[0] < AUDIO_STAMP_SAMPLES:
        raise PeerixError(
            "PEER_MEDIASTREAM_ERROR",
            f"an audio stamp needs a 1-D array of at least {AUDIO_STAMP_SAMPLES} samples"
            f" (20 ms at 48 kHz), got shape {samples.shape}",
        )
    burst = _burst(_audio_bits(counter, sent_at))
    full_scale = 32767.0 if np.issubdtype(samples.dtype, np.integer) else 1.0
    burst *= volume * full_scale / np.abs(burst).max()
    samples[:AUDIO_STAMP_SAMPLES] = burst.astype(samples.dtype)
    return samples


@dataclass(frozen=True)
class AudioStamp:
    """An audio stamp found in a sample stream: where its burst starts (`position`, a sample
    index in what was fed) and what it carries (`counter`, `sent_at` = time.time() seconds)."""

    position: int
    counter: int
    sent_at: float


def _demodulate(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The 64 bits of a burst starting at each of `starts` in `x`: (len(starts), 64) uint8."""
    width = _SYMBOL - 2 * _GUARD
    windows = np.lib.stride_tricks.sliding_window_view(x, width)  # no copy
    offsets = starts[:, None] + _GUARD + _SYMBOL * np.arange(_SYMBOLS)[None, :]
    spectra = np.abs(np.fft.rfft(windows[offsets.ravel()], n=_SYMBOL, axis=-1))
    energy = spectra[:, _BINS].reshape(len(starts), _SYMBOLS, _PAIRS, 2)
    return (energy[..., 1] > energy[..., 0]).astype(np.uint8).reshape(len(starts), -1)


def _decode_bits(bits: np.ndarray, now: float) -> tuple[int, float] | None:
    data = np.packbits(bits).tobytes()
    payload, crc = data[:6], data[6:]
    if binascii.crc_hqx(payload, 0xFFFF).to_bytes(2, "big") != crc:
        return None
    counter = int.from_bytes(payload[:2], "big")
    tenths = int.from_bytes(payload[2:], "big")
    # back into the 2^32 x 0.1 ms (~5 days) window nearest to the receiver's clock
    wrap = 1 << 32
    base = round(now * 10_000)
    tenths += ((base - tenths + wrap // 2) // wrap) * wrap
    return counter, tenths / 10_000


class AudioStampReader:
    """Finds audio stamps in a mono 48 kHz sample stream fed frame by frame (any length).

    `feed(samples)` returns the stamps whose burst is complete, with `position` counted in
    samples from the first one fed. Cheap when there is nothing to find: a 1 ms block is looked
    at closely only when most of its energy is above ~1 kHz. `misses` counts such places that
    were not a stamp (speech, music); `found` the stamps.
    """

    def __init__(self) -> None:
        self._buffer = np.zeros(0, np.float64)
        self._start = 0  # absolute index of _buffer[0]
        self._scan = 0  # absolute index where the onset search goes on
        self.found = 0
        self.misses = 0

    def feed(self, samples: np.ndarray, now: float | None = None) -> list[AudioStamp]:
        """Append `samples` (1-D, int16 or float) and return the stamps completed by them."""
        if now is None:
            now = time.time()
        self._buffer = np.concatenate([self._buffer, np.asarray(samples, np.float64).ravel()])
        end = self._start + self._buffer.shape[0]
        stamps: list[AudioStamp] = []
        while True:
            onset = self._onset(max(self._scan, self._start), end)
            if onset is None:
                self._scan = max(self._scan, end - _BLOCK)  # the last partial block again
                break
            if onset + AUDIO_STAMP_SAMPLES + _SEARCH > end:
                self._scan = onset  # the burst is not complete yet: again with the next frame
                break
            stamp = self._decode(onset, now)
            if stamp is None:
                self.misses += 1
                self._scan = onset + AUDIO_STAMP_SAMPLES // 2
            else:
                self.found += 1
                stamps.append(stamp)
                self._scan = stamp.position + AUDIO_STAMP_SAMPLES
        # keep what a burst starting at the next unscanned place may still need
        keep_from = max(self._start, min(self._scan, end) - _SEARCH - _BLOCK)
        self._buffer = self._buffer[keep_from - self._start :]
        self._start = keep_from
        return stamps

    def _onset(self, begin: int, end: int) -> int | None:
        """The first 1 ms block from `begin` where high frequencies dominate, or None."""
        if end - begin < _BLOCK + 1:
            return None
        x = self._buffer[begin - self._start - 1 if begin > self._start else 0 : end - self._start]
        offset = begin - 1 if begin > self._start else begin
        blocks = (x.shape[0] - 1) // _BLOCK
        if blocks <= 0:
            return None
        body = x[1 : 1 + blocks * _BLOCK].reshape(blocks, _BLOCK)
        high = np.diff(x[: 1 + blocks * _BLOCK]).reshape(blocks, _BLOCK)
        power = np.einsum("ij,ij->i", body, body)
        # a first difference passes 1-13 kHz at 0.13-1.5x and 440 Hz at 0.06x: a block whose
        # difference carries over a quarter of its power is mostly above ~1 kHz; -50 dBFS floor
        flagged = (np.einsum("ij,ij->i", high, high) > 0.25 * power) & (power > _BLOCK * 100.0**2)
        hits = np.flatnonzero(flagged)
        if hits.size == 0:
            return None
        return offset + 1 + int(hits[0]) * _BLOCK

    def _decode(self, onset: int, now: float) -> AudioStamp | None:
        x = self._buffer
        # The 1 ms block search finds a burst up to a block late; Opus smears its edges. Any
        # start within ~+-40 samples decodes, so try a coarse grid, then place the burst exactly
        # by correlating the waveform its bits make with what was received.
        lo = max(onset - _SEARCH, self._start)
        hi = min(onset + _SEARCH // 2, self._start + x.shape[0] - AUDIO_STAMP_SAMPLES)
        if hi < lo:
            return None
        positions = np.arange(lo, hi + 1, _STEP)
        found: dict[bytes, tuple[np.ndarray, tuple[int, float]]] = {}
        votes: dict[bytes, int] = {}
        for bits in _demodulate(x, positions - self._start):
            decoded = _decode_bits(bits, now)
            if decoded is not None:
                key = bits.tobytes()
                found[key] = (bits, decoded)
                votes[key] = votes.get(key, 0) + 1
        if not found:
            return None
        bits, (counter, sent_at) = found[max(votes, key=votes.__getitem__)]
        a = max(onset - 2 * _SEARCH, self._start) - self._start
        b = min(onset + _SEARCH + AUDIO_STAMP_SAMPLES, self._start + x.shape[0]) - self._start
        score = np.correlate(x[a:b], _burst(bits), mode="valid")
        position = self._start + a + int(np.argmax(score))
        return AudioStamp(position=position, counter=counter, sent_at=sent_at)


def read_audio_stamps(samples: np.ndarray, now: float | None = None) -> list[AudioStamp]:
    """Every audio stamp in a mono 48 kHz array (`write_audio_stamp`), in order; positions
    are sample indices into `samples`. A damaged burst is skipped (CRC-16), never misread."""
    reader = AudioStampReader()
    return reader.feed(np.asarray(samples).ravel(), now)
