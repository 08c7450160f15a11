"""AudioView: a kernel-side audio track played in the page, over the widget comm.

Why this path: like VideoView's frames, the sound travels as binary buffers of custom
messages, so it plays wherever widgets work (Binder, remote kernels), without a WebRTC
connection between the browser and the kernel.

Why PCM and not Opus (measured on this 2-core machine, CPU time per 20 ms frame, 500 frames):
a remote frame (packed s16 stereo) mixed to mono int16 and turned into bytes costs ~45-50 us;
PyAV's libopus encoder (32 kbit/s, mono) adds ~130-160 us more, on the loop that also runs
every connection, and the page would need WebCodecs' AudioDecoder (not in every browser, and
asynchronous: one more queue to bound). Opus would send ~155 bytes a frame instead of 1,920
(12x less; 96 KB/s for PCM), which matters on a slow link only: a local or Binder comm
carries 96 KB/s easily (VideoView pushes several times that in JPEG). So: PCM, mono, 48 kHz,
int16 little-endian.

One 20 ms frame a message by default (`batch=1`): the page has each frame as soon as the kernel
does (two a message cost 20 ms more latency for half the messages; on this 2-core machine the
underruns of the two were within the run-to-run noise, bench/audio.py).

The flow: every 20 ms frame of the track is read (a *queued* Tap subscriber: the Tap keeps only
the newest frame for ordinary readers, which is right for video and wrong for audio, where a
missing frame is a click), mixed to mono 48 kHz int16, searched for audio stamps
(`media.AudioStampReader`: synthetic() tones carry their send time), and pushed in chunks of
`batch` frames with their position in the stream and the stamps found. The page plays them
through an AudioWorklet jitter buffer (audio_worklet.js: target one message + 20 ms, grown by
underruns and shrunk by unused slack, bounded, absorbs clock drift) on an AudioContext asking
for the lowest output latency (`latencyHint: 0`: 8 + 2.7 ms in headless Chromium here, against
30 + 10 ms for "interactive") and reports back every 500 ms what it played: `stats["audio"]`
(`played_s`, `underruns`, `level_dbfs`, `latency_ms`, ...).

Latency for stamped sources: the page tells when each stamped sample left its audio output
(`AudioContext.getOutputTimestamp()`, on its wall clock `performance.timeOrigin + now`), and
the kernel subtracts the stamp's `time.time()` after correcting for the offset between the
two clocks, which it measures with pings every second: the offset of the fastest round trip of
the last 64, good to half that round trip (`clock_rtt_ms`). Both clocks are this machine's,
yet a JupyterLab page's `performance.timeOrigin` was seen 0-90 ms off `time.time()`.

Nothing is sent until a view exists ("run all" race), nor while none is left. A page with
the AudioContext still "suspended" (no user gesture yet) shows a "click to enable sound" button
and drops the chunks it cannot play (it plays from the click on).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import json
import pathlib
import re
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import anywidget
import av
import numpy as np
import traitlets

from ..media import (
    AudioStampReader,
    MediaStream,
    MediaStreamError,
    MediaStreamTrack,
    Tap,
    TapTrack,
    relayed,
)
from ._common import (
    Resources,
    check_options,
    count_views,
    describe,
    logger,
    running_loop,
    wait_trait,
)

RATE = 48_000
FRAME = 960  # samples in 20 ms
FRAME_MS = 20
QUEUE_FRAMES = 25  # unread frames a view may fall behind (0.5 s) before the oldest drops
BATCH = 1  # 20 ms frames per comm message
PING_INTERVAL = 1.0  # s between clock pings while playing
PINGS_KEPT = 64  # the offset comes from the fastest round trip of the last 64 (~1 min)
STAMP_GIVE_UP = 50  # places that looked like a stamp and were not, with none found: stop looking

AudioSource = MediaStream | MediaStreamTrack | Tap | None

_HERE = pathlib.Path(__file__).parent
_IMPORT = 'import { createAudioPlayer } from "./audio.js";'


@functools.cache
def audio_module() -> str:
    """audio.js with the AudioWorklet processor's text embedded (loaded from a Blob URL in the
    page: nothing is fetched) under a name versioned by that text."""
    worklet = (_HERE / "audio_worklet.js").read_text(encoding="utf-8")
    name = "peerix-audio-player-" + hashlib.sha1(worklet.encode()).hexdigest()[:10]
    worklet = worklet.replace(
        "registerProcessor(__PEERIX_PROCESSOR__", f"registerProcessor({json.dumps(name)}"
    )
    module = (_HERE / "audio.js").read_text(encoding="utf-8")
    for marker, value in (
        ('"__PEERIX_AUDIO_WORKLET_SOURCE__"', worklet),
        ('"__PEERIX_AUDIO_PROCESSOR__"', name),
        ('"__PEERIX_AUDIO_DEFAULT_TARGET_MS__"', str(FRAME_MS * (BATCH + 1))),
    ):
        if marker not in module:
            raise RuntimeError(f"audio.js lacks {marker}")
        module = module.replace(marker, json.dumps(value))
    return module


@functools.cache
def with_audio_player(entry: str) -> str:
    """The ES module `entry` (a .js file beside this module importing `createAudioPlayer` from
    "./audio.js") with audio.js inlined in a function scope: anywidget loads one module per
    widget, which cannot resolve relative imports."""
    source = (_HERE / entry).read_text(encoding="utf-8")
    if _IMPORT not in source:
        raise RuntimeError(f"{entry} does not import createAudioPlayer from ./audio.js")
    body = re.sub(r"^export (default )?function ", "function ", audio_module(), flags=re.M)
    if re.search(r"^\s*(export|import)\b", body, flags=re.M):
        raise RuntimeError("audio.js: only `export function` declarations can be inlined")
    scope = f"const {{ createAudioPlayer }} = (() => {{\n{body}\nreturn {{ createAudioPlayer }};\n}})();"
    return source.replace(_IMPORT, scope)


def audio_track(source: AudioSource, who: str = "AudioView") -> MediaStreamTrack | None:
    """The track `who` plays for `source`: an audio track, a stream's first live audio track
    (None while it has none), or a Tap's source."""
    if source is None:
        return None
    if isinstance(source, Tap):
        source = source.source
    if isinstance(source, MediaStream):
        tracks = source.audio_tracks
        live = [t for t in tracks if t.readyState == "live"]
        return (live or tracks)[0] if tracks else None
    if isinstance(source, MediaStreamTrack):
        if source.kind != "audio":
            raise ValueError(
                f"{who} plays audio, got a {source.kind} track"
                + (
                    ": give VideoView the track, or AudioView the stream's audio track"
                    if source.kind == "video"
                    else ""
                )
            )
        return source
    raise TypeError(
        f"{who} needs a peerix_nb MediaStream, an audio MediaStreamTrack or a Tap, "
        f"got {type(source).__name__}"
    )


class MonoPcm:
    """av AudioFrames of any format, layout and rate -> mono int16 samples at 48 kHz.

    The usual inputs take a fast path: aiortc's Opus decoder gives packed s16 stereo at
    48 kHz (shape (1, 2 x 960)), synthetic() packed s16 mono. Anything else goes through
    PyAV's resampler (files: fltp 44.1 kHz, ...).
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None

    def convert(self, frame: av.AudioFrame) -> np.ndarray:
        channels = len(frame.layout.channels)
        if frame.sample_rate == RATE and frame.format.name == "s16":  # packed int16
            samples: np.ndarray = frame.to_ndarray().reshape(-1)
            if channels == 1:
                return samples
            mixed: np.ndarray = (
                samples.reshape(-1, channels).astype(np.int32).sum(axis=1) // channels
            )
            return mixed.astype(np.int16)
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        frame.pts = None  # the resampler follows its own clock; gaps are not ours to fill
        out: list[np.ndarray] = [
            f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)
        ]
        return np.concatenate(out) if out else np.zeros(0, np.int16)


# What the page reports, with the values they have before any report.
_PAGE_DEFAULTS: dict[str, Any] = {
    "context": None,
    "state": "idle",
    "played_s": 0.0,
    "silent_s": 0.0,
    "underruns": 0,
    "dropped_ms": 0.0,
    "duplicated_ms": 0.0,
    "buffer_ms": 0.0,
    "target_ms": 0.0,
    "level_dbfs": None,
    "peak_hz": None,
    "muted": None,
    "output_latency_ms": None,
    "base_latency_ms": None,
    "dropped_suspended": 0,
    "max_gap_ms": None,
    "late_chunks": 0,
    "error": None,
}


class AudioPump:
    """The kernel side of playing one audio track in the pages of one widget (AudioView, and
    VideoView for a stream with sound): reads every frame, pushes PCM chunks, keeps what the
    pages report. Runs in the widget's `Resources`; the widget forwards views and messages."""

    def __init__(
        self,
        widget: anywidget.AnyWidget,
        resources: Resources,
        *,
        batch: int = BATCH,
        queue: int = QUEUE_FRAMES,
        on_status: Callable[[str, str], None] | None = None,
    ) -> None:
        self._widget = widget
        self._resources = resources
        self.batch = batch
        self._queue = queue
        self._on_status = on_status
        self._track: MediaStreamTrack | None = None
        self._rendered = asyncio.Event()
        self._changed = asyncio.Event()
        self._sub: TapTrack | None = None
        self._pos = 0  # samples pushed so far: the stream position of the next chunk
        self.frames_in = 0
        self.messages_sent = 0
        self.bytes_sent = 0
        self.stamps_sent = 0
        self._dropped_before = 0
        self._look_for_stamps = True
        self._convert_us: deque[float] = deque(maxlen=250)
        self._sent_at: deque[float] = deque(maxlen=100)  # monotonic times of the last sends
        self.late_sends = 0  # chunks sent over 60 ms after the one before (the kernel was late)
        self._reports: dict[str, dict[str, Any]] = {}  # frontend -> its last audio-stats
        self.reports_received = 0
        self._last_frontend: str | None = None
        self._pings: deque[tuple[float, float]] = deque(maxlen=PINGS_KEPT)  # (rtt, offset) ms
        self._next_ping = 0.0
        self.latency_samples: deque[float] = deque(maxlen=600)  # ms, capture -> speaker
        # ms, capture -> the chunk holding the stamp leaves the kernel (the rest is the page's)
        self.kernel_latency_samples: deque[float] = deque(maxlen=600)
        self._chunks_sent: deque[tuple[int, int, float]] = deque(maxlen=8)  # (pos, end, ms)
        # ms, capture -> the chunk holding the stamp reached the page (kernel, Jupyter, socket)
        self.page_arrival_samples: deque[float] = deque(maxlen=600)
        self._latency_ms: float | None = None

    # -- what the widget tells us ------------------------------------------------------------
    @property
    def track(self) -> MediaStreamTrack | None:
        return self._track

    def set_track(self, track: MediaStreamTrack | None) -> None:
        if track is self._track:
            return
        self._track = track
        self._look_for_stamps = True
        self.interrupt()

    def set_rendered(self, rendered: bool) -> None:
        if rendered:
            self._rendered.set()
        else:
            self._rendered.clear()
            self.interrupt()
        self._changed.set()

    def interrupt(self) -> None:
        """Wake the pump: the track or the views changed."""
        self._changed.set()
        if self._sub is not None:
            self._sub.stop()  # wakes a pending recv() with MediaStreamError

    def close(self) -> None:
        if self._sub is not None:
            self._sub.stop()
            self._sub = None

    def handle(self, content: dict[str, Any]) -> bool:
        """A page message about audio (stats, pong, mute): True if it was one."""
        kind = content.get("type")
        if kind == "audio-stats":
            self._on_stats(str(content.get("frontend", "")), content)
        elif kind == "audio-pong":
            self._on_pong(content)
        elif kind == "mute":
            self._widget.muted = bool(content.get("muted"))
        else:
            return False
        return True

    def forget_page(self, frontend: str) -> None:
        """A page shows no view any more: its reports are history."""
        self._reports.pop(frontend, None)
        if self._last_frontend == frontend:
            self._last_frontend = next(iter(self._reports), None)

    # -- state for humans and tests ----------------------------------------------------------
    @property
    def frames_dropped(self) -> int:
        """Frames the kernel dropped because the view fell `queue` frames behind the track."""
        current = self._sub.frames_dropped if self._sub is not None else 0
        return self._dropped_before + current

    @property
    def clock_offset_ms(self) -> float | None:
        """Page wall clock minus kernel time.time(), from the fastest recent ping (ms)."""
        if not self._pings:
            return None
        return min(self._pings)[1]

    @property
    def stats(self) -> dict[str, Any]:
        """The page's last report (`played_s`, `underruns`, `level_dbfs`, `buffer_ms`, ...)
        with the kernel's counters and the capture-to-speaker `latency_ms` of stamped audio."""
        report = self._reports.get(self._last_frontend or "", {})
        out = {k: report.get(k, v) for k, v in _PAGE_DEFAULTS.items()}
        recent = list(self.latency_samples)[-10:]
        convert = list(self._convert_us)
        rtt = min(self._pings)[0] if self._pings else None
        sent = list(self._sent_at)
        gaps = [b - a for a, b in itertools.pairwise(sent)]
        out.update(
            track=None if self._track is None else self._track.id,
            pages=len(self._reports),
            reports=self.reports_received,
            latency_ms=None if self._latency_ms is None else round(self._latency_ms, 1),
            latency_p50_ms=round(statistics.median(recent), 1) if recent else None,
            kernel_latency_ms=(
                round(self.kernel_latency_samples[-1], 1) if self.kernel_latency_samples else None
            ),
            # of latency_ms: capture -> the page had it; the rest is the page's buffer + output
            page_arrival_ms=(
                round(self.page_arrival_samples[-1], 1) if self.page_arrival_samples else None
            ),
            frames_in=self.frames_in,
            frames_dropped=self.frames_dropped,
            messages_sent=self.messages_sent,
            bytes_sent=self.bytes_sent,
            stamps_sent=self.stamps_sent,
            batch_ms=self.batch * 20,
            convert_us=round(sum(convert) / len(convert), 1) if convert else None,
            # the longest wait between two chunks the kernel sent, over the last 100
            send_gap_ms=round(max(gaps) * 1000.0, 1) if gaps else None,
            late_sends=self.late_sends,
            clock_offset_ms=None if rtt is None else round(cast(float, self.clock_offset_ms), 2),
            clock_rtt_ms=None if rtt is None else round(rtt, 2),
        )
        return out

    # -- the loop ----------------------------------------------------------------------------
    def _status(self, status: str, message: str = "") -> None:
        if self._on_status is not None:
            self._on_status(status, message)

    async def run(self, rendered_timeout: float | None = None) -> None:
        ever_rendered = warned = False
        while True:
            self._changed.clear()
            if not self._rendered.is_set():
                if ever_rendered or warned or rendered_timeout is None:
                    if ever_rendered:
                        self._status("paused", "no view is showing this widget")
                    await self._rendered.wait()
                    continue
                self._status("waiting", "waiting for the browser to show the widget")
                try:
                    await asyncio.wait_for(self._rendered.wait(), rendered_timeout)
                except TimeoutError:
                    warned = True
                    self._status(
                        "waiting",
                        f"no view rendered within {rendered_timeout:g} s: sound starts when the"
                        " widget is displayed",
                    )
                continue
            ever_rendered = True
            track = self._track
            if track is None:
                self._status("no audio", "waiting for an audio track")
                await self._changed.wait()
                continue
            if track.readyState == "ended" or await self._play(track):
                self._status("ended", "the track ended")
                await self._changed.wait()

    async def _play(self, track: MediaStreamTrack) -> bool:
        """Push the frames of `track` until it ends (True) or something changed (False)."""
        sub = self._sub = relayed(track, queue=self._queue)
        tap = sub.tap
        self._status("live")
        try:
            await self._push(sub)
        except MediaStreamError:
            pass
        finally:
            self._dropped_before += sub.frames_dropped
            sub.stop()
            if self._sub is sub:
                self._sub = None
            self._send({"type": "audio-end"})  # the page drains its buffer: no underrun
            ended = tap.ended or track.readyState == "ended"
        return ended

    async def _push(self, sub: TapTrack) -> None:
        convert = MonoPcm()
        stamps = AudioStampReader()
        base = self._pos  # stamp positions count from here
        pending: list[np.ndarray] = []
        pending_samples = 0
        found: list[list[float]] = []
        while True:
            frame = cast(av.AudioFrame, await sub.recv())
            if not self._rendered.is_set():
                raise MediaStreamError  # the last view went away: back to waiting
            started = time.thread_time()  # CPU of this thread: waits for a core do not count
            samples = convert.convert(frame)
            if self._look_for_stamps and samples.size:
                for stamp in stamps.feed(samples):
                    found.append([base + stamp.position, round(stamp.sent_at * 1000.0, 3)])
                if stamps.found == 0 and stamps.misses >= STAMP_GIVE_UP:
                    self._look_for_stamps = False  # not a stamped source: stop paying for it
            self.frames_in += 1
            pending.append(samples)
            pending_samples += samples.size
            self._convert_us.append((time.thread_time() - started) * 1e6)
            if pending_samples < self.batch * FRAME:
                continue
            chunk = np.concatenate(pending) if len(pending) > 1 else pending[0]
            payload = chunk.astype("<i2", copy=False).tobytes()
            content = {"type": "audio", "pos": self._pos, "rate": RATE, "stamps": found}
            self._send(content, [payload])
            now = time.monotonic()
            if self._sent_at and now - self._sent_at[-1] > 0.06:
                self.late_sends += 1
            self._sent_at.append(now)
            sent_ms = time.time() * 1000.0
            self._chunks_sent.append((self._pos, self._pos + chunk.size, sent_ms))
            for position, stamp_sent in found:
                # found once all of it was read, often a chunk after the one holding its start
                left = next((t for a, b, t in self._chunks_sent if a <= position < b), sent_ms)
                self.kernel_latency_samples.append(left - stamp_sent)
            self._pos += chunk.size
            self.messages_sent += 1
            self.bytes_sent += len(payload)
            self.stamps_sent += len(found)
            pending, pending_samples, found = [], 0, []
            if now >= self._next_ping:
                self._next_ping = now + PING_INTERVAL
                self._send({"type": "audio-ping", "t": time.time() * 1000.0})

    def _send(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        if self._resources.closed:
            return
        with contextlib.suppress(Exception):  # a closed comm: nothing to tell
            self._widget.send(content, buffers=buffers)

    # -- page reports ------------------------------------------------------------------------
    def _on_pong(self, content: dict[str, Any]) -> None:
        arrived = time.time() * 1000.0
        try:
            sent, page = float(content["t"]), float(content["page"])
        except (KeyError, TypeError, ValueError):
            return
        rtt = arrived - sent
        if rtt < 0:
            return
        self._pings.append((rtt, page - (sent + arrived) / 2.0))

    def _on_stats(self, frontend: str, content: dict[str, Any]) -> None:
        report = {k: content[k] for k in _PAGE_DEFAULTS if k in content}
        self._reports[frontend] = report
        self._last_frontend = frontend
        self.reports_received += 1
        offset = self.clock_offset_ms or 0.0
        for item in content.get("latencies") or ():
            try:
                sent, out = float(item[0]), float(item[1])
                arrived = float(item[2]) if len(item) > 2 else None
            except (TypeError, ValueError, IndexError):
                continue
            latency = out - offset - sent
            self.latency_samples.append(latency)
            self._latency_ms = latency
            if arrived is not None:
                self.page_arrival_samples.append(arrived - offset - sent)


class AudioView(anywidget.AnyWidget):
    """Plays an audio track in the page, with a level meter and a mute toggle.

    `AudioView(track_or_stream, muted=False)`: a MediaStream plays its first audio track
    (local, e.g. `synthetic()`, or remote). `stats["audio"]` says what the page played:
    `played_s`, `underruns`, `level_dbfs`, `latency_ms` (capture to speaker, for stamped
    sources such as synthetic()), `buffer_ms`, `context` ("suspended": the page waits for a
    click on its "enable sound" button). The view stops by itself when the track ends and
    when the widget is closed; `set_source()` switches to another track.

    `buffer_ms` is the page's jitter buffer target: what it holds before playing and again
    after running dry (default: one message of audio + 20 ms, i.e. 40 ms with `batch=1`). It
    grows by 20 ms per underrun, up to +140 ms, and shrinks back by the slack it did not use
    over 10 s without one. More absorbs a slower link (a remote kernel) at the cost of latency.
    `batch` sends that many 20 ms frames per comm message (more: fewer messages through
    kernel, server and page, for 20 ms more latency each).
    """

    _esm = audio_module()
    _css = _HERE / "audio.css"

    status = traitlets.Unicode("waiting").tag(sync=True)  # waiting|live|paused|no audio|ended|error
    message = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    muted = traitlets.Bool(False).tag(sync=True)
    buffer_ms = traitlets.Int(40).tag(sync=True)  # the page's jitter buffer target (when made)

    def __init__(
        self,
        source: AudioSource = None,
        muted: bool = False,
        *,
        title: str = "",
        batch: int = BATCH,
        buffer_ms: int | None = None,
        rendered_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 10:
            raise ValueError(f"batch must be 1 to 10 frames of 20 ms, got {batch!r}")
        if buffer_ms is None:
            buffer_ms = FRAME_MS * (batch + 1)
        if (
            not isinstance(buffer_ms, int)
            or isinstance(buffer_ms, bool)
            or not 20 <= buffer_ms <= 1000
        ):
            raise ValueError(f"buffer_ms must be an integer from 20 to 1000, got {buffer_ms!r}")
        if not isinstance(muted, bool):
            raise TypeError(f"muted must be True or False, got {muted!r}")
        if (
            not isinstance(rendered_timeout, int | float)
            or isinstance(rendered_timeout, bool)
            or not rendered_timeout > 0
        ):
            raise ValueError(f"rendered_timeout must be a number > 0, got {rendered_timeout!r}")
        track = audio_track(source)  # raises on a bad source before any comm opens
        check_options(type(self), kwargs)
        super().__init__(muted=muted, title=title, buffer_ms=buffer_ms, **kwargs)
        self.rendered_timeout = rendered_timeout
        self._resources = Resources(self._show_error)
        self._source: AudioSource = source
        self._views: dict[str, int] = {}
        self._pump = AudioPump(self, self._resources, batch=batch, on_status=self._set_status)
        self._pump.set_track(track)
        self.on_msg(self._resources.hop(self._on_browser_message))
        self._task = (
            self._resources.spawn(self._pump.run(rendered_timeout), "audio")
            if running_loop()
            else None
        )
        if self._task is None:
            self._set_status("error", "AudioView needs a running asyncio loop (a Jupyter kernel)")

    # -- public -----------------------------------------------------------------------------
    @property
    def track(self) -> MediaStreamTrack | None:
        """The audio track being played (None: waiting for one)."""
        return self._pump.track

    @property
    def running(self) -> bool:
        """True until the view is closed."""
        return not self._resources.closed and self._task is not None and not self._task.done()

    @property
    def latency_samples(self) -> deque[float]:
        """Capture-to-speaker latencies (ms) of the stamped chunks the page played, in order."""
        return self._pump.latency_samples

    @property
    def stats(self) -> dict[str, Any]:
        """`{"status", "views", "audio": {...}}`: see the class docstring."""
        return {
            "status": self.status,
            "views": sum(self._views.values()),
            "audio": self._pump.stats,
        }

    def set_source(self, source: AudioSource) -> None:
        """Play another track or stream (None: play nothing until given one)."""
        track = audio_track(source)
        self._source = source
        self._pump.set_track(track)

    def refresh_source(self) -> None:
        """Pick the source stream's audio track again (after tracks were added or removed)."""
        self.set_source(self._source)

    async def wait_rendered(self, timeout: float | None = None) -> None:
        """Wait until some browser view of this widget exists."""
        await asyncio.wait_for(self._pump._rendered.wait(), timeout)

    async def wait_status(self, status: str, timeout: float | None = None) -> None:
        """Wait until the view's status is `status` ("live", "ended", ...)."""
        await wait_trait(self, "status", status, timeout)

    def close(self) -> None:
        """Stop pushing sound, release the track and close the widget."""
        resources = getattr(self, "_resources", None)  # None: __init__ raised (bad source)
        if resources is not None:
            resources.close()
            self._pump.close()
        super().close()

    # -- browser messages -------------------------------------------------------------------
    def _on_browser_message(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind in ("rendered", "views"):
            frontend = str(content.get("frontend", ""))
            count_views(self._views, frontend, content)
            if frontend not in self._views:
                self._pump.forget_page(frontend)
            self._pump.set_rendered(bool(self._views))
        else:
            self._pump.handle(content)

    # -- showing state ----------------------------------------------------------------------
    def _set_status(self, status: str, message: str = "") -> None:
        if self._resources.closed:
            return
        if status == "waiting" and message.startswith("no view rendered"):
            logger.warning("AudioView %s: %s", self.model_id, message)
        with self.hold_sync():
            self.status = status
            self.message = message

    def _show_error(self, error: BaseException, where: str) -> None:
        self._set_status("error", describe(error))


__all__ = ["AudioPump", "AudioView", "MonoPcm", "audio_module", "audio_track", "with_audio_player"]
