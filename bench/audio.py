"""AudioView in real JupyterLab + headless Chromium: capture-to-speaker latency, underruns and
kernel CPU for one and for three views, next to a VideoView of the same stream.

Run: `python -m bench.audio [--window 20] [--settle 3] [--batch 1] [--sender process|kernel]
[--json FILE]` (about 2 min with the defaults).

Setup: the sending peer publishes `media.synthetic()` (320x240 at 15 fps, every frame stamped
with its send time; a 440 Hz tone with an audio stamp every 0.5 s) as "camera". By default it
runs in its own process (testbed/nats_peer_proc.py, over a nats-server started here), as a
remote camera and microphone would: the kernel only receives. `--sender kernel` puts it in the
kernel too (two Peers on a MemoryDriver): the kernel then also paces and encodes the source.
The kernel's `receiver` gets the remote stream over a real aiortc connection (VP8, Opus).
A `VideoView` of the stream's video track (picture only) runs all along; then one, then three
`AudioView`s of the same stream are added. A window of `--window` seconds is measured with the
picture alone (the baseline), with one and with three AudioViews.

Audio latency (capture to speaker): the time the tone's audio stamp was made (time.time() in
the sending track) to the time the page's AudioContext puts the stamped sample out
(`getOutputTimestamp()`, which includes the output latency; on the page's wall clock), as
AudioView reports it: the page clock is brought to the kernel's by the view's own pings
(offset of the fastest round trip). The bench also measures that offset from outside (a
`page.evaluate` bracketed by `time.time()`) and prints both. Video latency: the frame stamp
read back from the canvas right after each draw (bench/_videoview_page.HOOK), on the page's
clock, corrected by the bench's offset. The audio latency's parts: "kernel", stamp to the chunk
holding the stamped sample leaving the kernel; "to the page", to that chunk reaching the page's
AudioView (page clock, corrected by the view's offset); the rest is the page's jitter buffer and
the audio output (`outputLatency` + `baseLatency`, printed per view).

Underruns: the page's count (its buffer ran dry), per minute of each window. Kernel CPU: the
kernel process's CPU time (user + system, psutil) per wall second; per AudioView = (level -
baseline) / views. The load average is printed with every window: the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from peerix_nb.nats_server import NatsServer
from peerix_nb.widgets.audio import BATCH
from testbed import peer_procs

from ._common import loadavg, machine, percentile
from ._lab import Lab, browser_missing, chromium, jupyter_lab, notebook
from ._videoview_page import HOOK, Bench

SETUP = """\
import asyncio, json, os, time
from peerix_nb import MemoryDriver, Peer
from peerix_nb.drivers.nats import NatsDriver
from peerix_nb.media import synthetic
from peerix_nb.widgets import AudioView, VideoView

if SENDER_URL:  # the sender is another process (a remote peer): the kernel only receives
    receiver = Peer(driver=NatsDriver(SENDER_URL))
    sender = source = None
else:  # both in this kernel
    driver = MemoryDriver()
    sender, receiver = Peer(driver=driver), Peer(driver=driver)
    source = synthetic(width=320, height=240, fps=15)
    await sender.publish(source, label="camera")
    await sender.join(room="audio-bench")
await receiver.join(room="audio-bench")
loop = asyncio.get_running_loop()
end = loop.time() + 60
while True:
    streams = [r.streams.get("camera") for r in receiver.connections.values()]
    stream = next((s for s in streams if s is not None and len(s.tracks) == 2), None)
    if stream is not None:
        break
    assert loop.time() < end, "no remote stream"
    await asyncio.sleep(0.1)
views = {}


def show(name, batch=BATCH):
    view = views[name] = AudioView(stream, title=name, batch=batch)
    return view


def snapshot():
    out = {"video": len(video.latency_samples), "t": time.monotonic()}
    for name, v in views.items():
        a = v.stats["audio"]
        out[name] = {"latency": len(v.latency_samples), "kernel": len(v._pump.kernel_latency_samples),
                     "arrival": len(v._pump.page_arrival_samples),
                     "underruns": a["underruns"], "played_s": a["played_s"],
                     "messages": a["messages_sent"], "bytes": a["bytes_sent"],
                     "late_sends": a["late_sends"], "late_chunks": a["late_chunks"],
                     "frames_in": a["frames_in"], "frames_dropped": a["frames_dropped"]}
    return out


def report(before):
    out = {"video_estimate": list(video.latency_samples)[before["video"]:], "views": {},
           "kernel_seconds": time.monotonic() - before["t"]}
    for name, v in views.items():
        a, b = v.stats["audio"], before.get(name)
        if b is None:
            continue
        out["views"][name] = {
            "latency": list(v.latency_samples)[b["latency"]:],
            "kernel": list(v._pump.kernel_latency_samples)[b["kernel"]:],
            "arrival": list(v._pump.page_arrival_samples)[b["arrival"]:],
            "underruns": a["underruns"] - b["underruns"],
            "played_s": a["played_s"] - b["played_s"],
            "messages": a["messages_sent"] - b["messages"],
            "late_sends": a["late_sends"] - b["late_sends"],
            "late_chunks": a["late_chunks"] - b["late_chunks"],
            "frames_in": a["frames_in"] - b["frames_in"],
            "frames_dropped": a["frames_dropped"] - b["frames_dropped"],
            "bytes": a["bytes_sent"] - b["bytes"],
            "clock_offset_ms": a["clock_offset_ms"], "clock_rtt_ms": a["clock_rtt_ms"],
            "buffer_ms": a["buffer_ms"], "target_ms": a["target_ms"],
            "output_latency_ms": a["output_latency_ms"], "base_latency_ms": a["base_latency_ms"],
            "dropped_ms": a["dropped_ms"], "max_gap_ms": a["max_gap_ms"],
            "convert_us": a["convert_us"], "context": a["context"], "level_dbfs": a["level_dbfs"],
        }
    return json.dumps(out)


print("PID", os.getpid())
"""

VIDEO = 'video = VideoView(stream.video_tracks[0], max_fps=30, title="video")\nvideo'


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "loadavg_start": loadavg(),
        "batch": args.batch,
        "window_s": args.window,
        "sender": args.sender,
    }
    print(f"date: {out['date']}\nmachine: {out['machine']}\nload average: {out['loadavg_start']}")
    print(f"sender: {args.sender}, {args.batch} frame(s) of 20 ms per message")
    with contextlib.ExitStack() as stack:
        url = None
        if args.sender == "process":
            url = stack.enter_context(NatsServer()).url
            stack.enter_context(_sender_process(url))
        _run_lab(args, out, url)
    out["loadavg_end"] = loadavg()
    return out


@contextlib.contextmanager
def _sender_process(url: str) -> Iterator[subprocess.Popen[str]]:
    """The sending peer in its own process (testbed/nats_peer_proc.py), publishing
    `synthetic(320x240, 15 fps)` with sound as "camera": the kernel only receives, as from a
    remote camera and microphone."""
    proc = subprocess.Popen(
        [sys.executable, str(peer_procs.PROGRAM), "--url", url, "--room", "audio-bench"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdin is not None
        command = {"cmd": "publish", "label": "camera", "audio": True, "width": 320}
        proc.stdin.write(json.dumps({**command, "height": 240, "fps": 15}) + "\n")
        proc.stdin.flush()
        yield proc
    finally:
        proc.terminate()  # the peer leaves the room and exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _run_lab(args: argparse.Namespace, out: dict[str, Any], url: str | None) -> None:
    with jupyter_lab() as lab_run, chromium() as page:
        name = "audio_bench.ipynb"
        cells = [
            SETUP.replace("BATCH", str(args.batch)).replace("SENDER_URL", repr(url)),
            VIDEO,
            'show("audio 1")',
            'show("audio 2")',
            'show("audio 3")',
        ]
        notebook(lab_run.server.root / name, cells)
        page.add_init_script(HOOK)
        lab = Lab(page, lab_run.server, "audio")
        lab.open(name)
        lab.run_cell(0, timeout=120)
        kernel_pid = int(lab.output_text(0).split("PID", 1)[1].split()[0])
        bench = Bench(lab, lab_run.process.pid, kernel_pid)
        out["clock_offset_ms"], out["clock_uncertainty_ms"] = bench.clock_offset_ms()
        windows: list[dict[str, Any]] = []

        def measure(level: int) -> None:
            page.wait_for_function(
                """(n) => document.querySelectorAll(
                    '.peerix-audio-view .peerix-audio[data-state="playing"]').length === n
                    && document.querySelector('.peerix-video.has-frame') !== null""",
                arg=level,
                timeout=60_000,
            )
            time.sleep(args.settle)  # let the new flow reach its steady state
            bench.execute("_before = snapshot()")
            page.evaluate("() => window.__peerixBench.take()")
            cpu0, _ = bench._cpu()
            wall0 = time.monotonic()
            time.sleep(args.window)  # the measurement window
            wall = time.monotonic() - wall0
            cpu1, _ = bench._cpu()
            drawn = page.evaluate("() => window.__peerixBench.take()")
            kernel = json.loads(bench.execute("print(report(_before))"))
            w = {
                "level": level,
                "seconds": wall,
                "loadavg": loadavg(),
                "cpu": {k: (cpu1.get(k, cpu0[k]) - cpu0[k]) / wall for k in cpu0},
                "video": [d["drawn"] - d["sent"] - out["clock_offset_ms"] for d in drawn["draws"]],
                "video_frames": len({d["counter"] for d in drawn["draws"]}),
                **kernel,
            }
            windows.append(w)
            audio = [x for v in w["views"].values() for x in v["latency"]]
            print(
                f"  {level} AudioView(s): kernel {w['cpu']['kernel']:.3f} s/s, audio p50 "
                f"{_p(audio, 50)} ms, video p50 {_p(w['video'], 50)} ms, underruns "
                f"{sum(v['underruns'] for v in w['views'].values())}, load {w['loadavg']}",
                flush=True,
            )

        lab.run_cell(1)
        measure(0)
        lab.run_cell(2)
        measure(1)
        lab.run_cell(3)
        lab.run_cell(4)
        measure(3)
        bench.execute(
            "for v in views.values(): v.close()\nvideo.close()\n"
            "await asyncio.gather(*(p.leave() for p in (sender, receiver) if p))\n"
            "if source: source.stop()\nprint('left')"
        )
    out["windows"] = windows


def _p(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.0f}" if values else "-"


def report(out: dict[str, Any]) -> None:
    windows = out["windows"]
    base = windows[0]["cpu"]["kernel"]
    print(
        f"\nclock offset, page - kernel: {out['clock_offset_ms']:+.2f} ms "
        f"(+/- {out['clock_uncertainty_ms']:.2f} ms, page.evaluate bracketed by time.time())"
    )
    print(
        "\n| AudioViews | audio latency p50 / p95 (ms) | of which kernel p50 (ms) "
        "| video latency p50 / p95 (ms) | audio - video p50 (ms) | underruns / min "
        "| kernel CPU (s/s) | per AudioView (s/s) | load average |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for w in windows:
        audio = [x for v in w["views"].values() for x in v["latency"]]
        kernel = [x for v in w["views"].values() for x in v["kernel"]]
        arrival = [x for v in w["views"].values() for x in v.get("arrival", [])]
        underruns = sum(v["underruns"] for v in w["views"].values())
        per_min = underruns / max(len(w["views"]), 1) / w["kernel_seconds"] * 60
        cpu = w["cpu"]["kernel"]
        per_view = (cpu - base) / w["level"] if w["level"] else None
        gap = (
            f"{statistics.median(audio) - statistics.median(w['video']):+.0f}"
            if audio and w["video"]
            else "-"
        )
        print(
            f"| {w['level']} | {_p(audio, 50)} / {_p(audio, 95)} | {_p(kernel, 50)} "
            f"| {_p(arrival, 50)} "
            f"| {_p(w['video'], 50)} / {_p(w['video'], 95)} | {gap} "
            f"| {per_min:.1f} per view | {cpu:.3f} "
            f"| {'-' if per_view is None else f'{per_view:.3f}'} | {w['loadavg']} |"
        )
    print("\nper view (last window):")
    for name, v in windows[-1]["views"].items():
        kib = v["bytes"] / windows[-1]["kernel_seconds"] / 1024
        print(
            f"  {name}: {v['frames_in'] / 50 / windows[-1]['kernel_seconds']:.0%} of the track's frames"
            f" reached the view ({v['frames_dropped']} dropped by it), "
            f"played {v['played_s']:.1f} s of {windows[-1]['kernel_seconds']:.1f}, "
            f"{v['messages']} messages "
            f"({kib:.1f} KiB/s), buffer {v['buffer_ms']:.0f} ms (target {v['target_ms']:.0f}), "
            f"output latency {v['output_latency_ms']} + base {v['base_latency_ms']:.1f} ms, "
            f"clock offset {v['clock_offset_ms']} ms (rtt {v['clock_rtt_ms']} ms), "
            f"convert {v['convert_us']} us/frame, dropped {v['dropped_ms']:.0f} ms, chunks late"
            f" (> 60 ms after the one before) leaving the kernel {v['late_sends']}, reaching the"
            f" page {v['late_chunks']}"
        )
    print(
        "\nother processes (s/s, last window): "
        + ", ".join(f"{k} {v:.3f}" for k, v in windows[-1]["cpu"].items() if k != "kernel")
    )
    print(f"load average: start {out['loadavg_start']}, end {out['loadavg_end']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=20.0, help="seconds per window")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before a window")
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help="20 ms frames per comm message (AudioView's default)",
    )
    parser.add_argument(
        "--sender",
        choices=("process", "kernel"),
        default="process",
        help="where the sending peer runs: its own process over NATS (a remote camera), or the"
        " kernel itself (MemoryDriver)",
    )
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        print(f"bench.audio skipped: {missing}")
        return
    out = run(args)
    report(out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
