"""VideoView in real JupyterLab + headless Chromium: frames drawn per second, latency from the
frame's stamped send time to the screen, and kernel CPU per viewer.

Run: `python -m bench.videoview [--window 7] [--settle 2] [--json FILE]` (about 1.5 min;
`--trace FILE` adds a traced 1-view window and a summary of where Chromium spends its time,
`--in-flight N` is an experiment: VideoView's limit of unacknowledged frames set to N).

Setup: one kernel, two `Peer`s on a MemoryDriver; `sender` publishes
`media.synthetic(audio=False)` (640x480, 30 fps, each frame stamped with its send time by
`media.write_stamp`), `receiver` gets the remote track, and notebook cells show that track in
0, 1 or 2 `VideoView` widgets (each a separate widget: its own JPEG encoding and frame flow).

What the page draws is measured in the page: a script installed before JupyterLab loads wraps
`CanvasRenderingContext2D.drawImage`; after every draw on a VideoView canvas it reads the
stamp back from the canvas pixels (`getImageData` of the 640x48 band, decoded exactly as
`media.read_stamp` does: the mean of R, G and B over the middle half of each 16 px cell,
threshold 127.5, guard bits, CRC-16) and records the draw time (`performance.timeOrigin +
performance.now()`) and the time of the next animation frame (`requestAnimationFrame`, when the
page renders the new canvas). frames/s = distinct stamps drawn per view over the window
(page clock). Latency = page time minus the stamp: both are wall-clock times of this machine
(`time.time()` in the kernel, `performance.timeOrigin + performance.now()` in Chromium); the
offset between the two clocks is measured (a `page.evaluate` bracketed by `time.time()` calls)
and printed. VideoView's own estimate (`latency_samples`: kernel send time minus stamp, plus
half the measured ack round trip) is printed next to it for comparison.

CPU: process CPU time (user + system, every thread, psutil) per wall second of the kernel
(its pid printed by the notebook), the Jupyter server and Chromium (all its processes), over
the same windows, with 0, 1, 2 views, then 2 again, 1 and 0 (ascending then descending, so
drift hits every level alike); levels seen twice are averaged. The kernel's threads are named
from `threading.enumerate()` (native ids) or /proc comm.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from typing import Any

from ._common import loadavg, machine, percentile
from ._lab import Lab, browser_missing, chromium, jupyter_lab, notebook
from ._videoview_page import HOOK, SETUP, Bench, Window

GOAL_FPS = 24.0
GOAL_P50_MS = 150.0
GOAL_P95_MS = None  # reported, no goal


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "loadavg_start": loadavg(),
    }
    print(f"date: {out['date']}\nmachine: {out['machine']}\nload average: {out['loadavg_start']}")
    with jupyter_lab() as lab_run, chromium() as page:
        name = "videoview_bench.ipynb"
        setup = SETUP
        if args.in_flight is not None:
            setup += f"\nimport peerix_nb.widgets.video\npeerix_nb.widgets.video.MAX_IN_FLIGHT = {args.in_flight}\n"
            out["in_flight"] = args.in_flight
        notebook(lab_run.server.root / name, [setup, 'show("viewer 1")', 'show("viewer 2")'])
        page.add_init_script(HOOK)
        lab = Lab(page, lab_run.server, "videoview")
        lab.open(name)
        lab.run_cell(0, timeout=90)
        kernel_pid = int(lab.output_text(0).split("PID", 1)[1].split()[0])
        bench = Bench(lab, lab_run.process.pid, kernel_pid)
        out["clock_offset_ms"], out["clock_uncertainty_ms"] = bench.clock_offset_ms()
        windows: list[Window] = []

        def measure(views: int, repeat: int = 1) -> None:
            bench.wait_drawing(views)
            time.sleep(args.settle)  # let a new flow reach its steady state
            for _ in range(repeat):
                windows.append(bench.window(views, args.window))
                w = windows[-1]
                print(
                    f"  {views} view(s): kernel {w.cpu['kernel']:.3f} s/s, "
                    f"{len(w.draws)} draws in {w.seconds:.1f} s, load {w.loadavg}",
                    flush=True,
                )

        measure(0)
        lab.run_cell(1)
        measure(1)
        lab.run_cell(2)
        measure(2, repeat=2)
        bench.execute('views.pop("viewer 2").close()')
        measure(1)
        bench.execute('views.pop("viewer 1").close()')
        measure(0)
        if args.trace:
            lab.run_cell(1)
            bench.wait_drawing(1)
            time.sleep(args.settle)
            browser = page.context.browser
            browser.start_tracing(page=page, path=args.trace, categories=TRACE_CATEGORIES)
            time.sleep(args.window)  # the traced window
            browser.stop_tracing()
            out["trace"] = trace_summary(args.trace, args.window)
        bench.execute(
            "await asyncio.gather(sender.leave(), receiver.leave())\ntrack.stop()\nprint('left')"
        )
    out["windows"] = [vars(w) for w in windows]
    out["loadavg_end"] = loadavg()
    return out


TRACE_CATEGORIES = ["toplevel", "devtools.timeline", "v8.execute", "blink", "cc", "gpu"]


def trace_summary(path: str, seconds: float, top: int = 14) -> list[tuple[str, str, float]]:
    """(process/thread, event, self time in ms per second) of a Chromium trace, largest first.

    Self time: an event's duration minus its children's on the same thread (complete "X"
    events only); "ThreadControllerImpl::RunTask" self time is work no finer event names.
    """
    with open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    processes: dict[int, str] = {}
    threads: dict[tuple[int, int], str] = {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            processes[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[(e["pid"], e["tid"])] = e["args"]["name"]
    by_thread: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            by_thread.setdefault((e["pid"], e["tid"]), []).append(e)
    totals: dict[tuple[str, str], float] = {}
    for key, items in by_thread.items():
        where = f"{processes.get(key[0], key[0])}/{threads.get(key, key[1])}"
        items.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[tuple[float, tuple[str, str]]] = []
        for e in items:
            while stack and stack[-1][0] <= e["ts"]:
                stack.pop()
            name = (where, e["name"])
            totals[name] = totals.get(name, 0.0) + e["dur"]
            if stack:
                parent = stack[-1][1]
                totals[parent] = totals.get(parent, 0.0) - e["dur"]
            stack.append((e["ts"] + e["dur"], name))
    rows = [(where, name, us / 1000 / seconds) for (where, name), us in totals.items()]
    return sorted(rows, key=lambda r: -r[2])[:top]


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def summarize(out: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Per level (0, 1, 2 views): CPU s/s averaged over its windows; per view: frames/s and
    latencies over all its windows (each draw matched to its kernel send time by stamp)."""
    levels: dict[int, dict[str, Any]] = {}
    for w in out["windows"]:
        level = levels.setdefault(
            w["views"],
            {
                "cpu": [],
                "threads": [],
                "views": {},
                "decodes": [],
                "reads": [],
                "arrivals": [],
                "misses": 0,
            },
        )
        level["cpu"].append(w["cpu"])
        level["threads"].append(w["threads"])
        level["decodes"] += w["decodes"]
        level["reads"] += w["reads"]
        level["arrivals"] += w["arrivals"]
        level["misses"] += w["misses"]
        per_view: dict[str, list[dict[str, Any]]] = {}
        for d in w["draws"]:
            per_view.setdefault(d["view"], []).append(d)
        for view_id, draws in per_view.items():
            title = w["titles"].get(view_id, {}).get("title", view_id)
            v = level["views"].setdefault(
                title,
                {"fps": [], "drawn": [], "shown": [], "estimate": [], "kernel": [], "split": []},
            )
            v["fps"].append(len({d["counter"] for d in draws}) / w["seconds"])
            v["drawn"] += [d["drawn"] - d["sent"] for d in draws]
            v["shown"] += [d["shown"] - d["sent"] for d in draws if d["shown"] is not None]
            k = w["kernel"].get(title, {})
            v["estimate"] += k.get("latency", [])
            v["kernel"].append(k)
            sends = k.get("sends", {})
            for d in draws:
                sent = sends.get(str(round(d["sent"] * 1000)))
                if sent is not None:  # (capture -> comm send, comm send -> drawn), ms
                    v["split"].append((sent * 1000 - d["sent"], d["drawn"] - sent * 1000))
    summary: dict[int, dict[str, Any]] = {}
    for n, level in sorted(levels.items()):
        keys = sorted({k for c in level["cpu"] for k in c}, key=_process_order)
        cpu = {k: _mean([c.get(k, 0.0) for c in level["cpu"]]) for k in keys}
        cpu["chromium"] = sum(value for k, value in cpu.items() if k.startswith("chromium "))
        thread_keys = {k for t in level["threads"] for k in t}
        threads = {k: _mean([t.get(k, 0.0) for t in level["threads"]]) for k in thread_keys}
        views = {}
        for title, v in sorted(level["views"].items()):
            kernel = v["kernel"]
            views[title] = {
                "fps": _mean(v["fps"]),
                "fps_min": min(v["fps"]),
                "drawn_p50": percentile(v["drawn"], 50),
                "drawn_p95": percentile(v["drawn"], 95),
                "shown_p50": percentile(v["shown"], 50),
                "shown_p95": percentile(v["shown"], 95),
                "estimate_p50": percentile(v["estimate"], 50),
                "estimate_p95": percentile(v["estimate"], 95),
                "to_send_p50": percentile([a for a, _ in v["split"]], 50),
                "send_to_drawn_p50": percentile([b for _, b in v["split"]], 50),
                "matched": len(v["split"]),
                "samples": len(v["shown"]),
                "sent": sum(k.get("sent", 0) for k in kernel),
                "dropped": sum(k.get("dropped", 0) for k in kernel),
                "lost": sum(k.get("lost", 0) for k in kernel),
                "encode_ms": _mean([k["encode_ms"] for k in kernel if k.get("encode_ms")]),
                "rtt_ms": _mean([k["rtt_ms"] for k in kernel if k.get("rtt_ms")]),
            }
        summary[n] = {
            "cpu": cpu,
            "threads": threads,
            "views": views,
            "decode_ms": percentile(level["decodes"], 50) if level["decodes"] else None,
            "read_ms": percentile(level["reads"], 50) if level["reads"] else None,
            "arrival_p50": percentile(level["arrivals"], 50) if level["arrivals"] else None,
            "arrival_p95": percentile(level["arrivals"], 95) if level["arrivals"] else None,
            "misses": level["misses"],
            "windows": len(level["cpu"]),
        }
    return summary


def _process_order(name: str) -> tuple[int, str]:
    order = ["kernel", "jupyter server", "chromium renderer", "chromium gpu", "chromium main"]
    return (order.index(name) if name in order else len(order), name)


def tables(summary: dict[int, dict[str, Any]]) -> str:
    lines = [
        "| views | view | frames/s drawn (worst window) | to draw p50 / p95 (ms) "
        "| to next frame p50 / p95 (ms) | VideoView's estimate p50 / p95 (ms) "
        "| capture -> comm send / -> drawn, p50 (ms) | sent / dropped / lost "
        "| JPEG encode (ms) | ack round trip (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, level in summary.items():
        for title, v in level["views"].items():
            lines.append(
                f"| {n} | {title} | {v['fps']:.1f} ({v['fps_min']:.1f}) "
                f"| {v['drawn_p50']:.0f} / {v['drawn_p95']:.0f} "
                f"| {v['shown_p50']:.0f} / {v['shown_p95']:.0f} "
                f"| {v['estimate_p50']:.0f} / {v['estimate_p95']:.0f} "
                f"| {v['to_send_p50']:.0f} / {v['send_to_drawn_p50']:.0f} "
                f"| {v['sent']} / {v['dropped']} / {v['lost']} "
                f"| {v['encode_ms']:.2f} | {v['rtt_ms']:.1f} |"
            )
    names = sorted({k for level in summary.values() for k in level["cpu"]}, key=_process_order)
    base = summary[0]["cpu"] if 0 in summary else None
    lines += [
        "",
        "| views | windows | "
        + " | ".join(f"{k} CPU s/s" for k in names)
        + " | kernel per view | all per view |",
        "|---|---|" + "---|" * len(names) + "---|---|",
    ]
    for n, level in summary.items():
        cpu = level["cpu"]
        per_view = all_per_view = ""
        if n and base is not None:
            per_view = f"{(cpu['kernel'] - base['kernel']) / n:.3f}"
            total = cpu["kernel"] + cpu["jupyter server"] + cpu["chromium"]
            total_base = base["kernel"] + base["jupyter server"] + base["chromium"]
            all_per_view = f"{(total - total_base) / n:.3f}"
        lines.append(
            f"| {n} | {level['windows']} | "
            + " | ".join(f"{cpu.get(k, 0.0):.3f}" for k in names)
            + f" | {per_view} | {all_per_view} |"
        )
    thread_names = sorted(
        {k for level in summary.values() for k in level["threads"]},
        key=lambda k: -max(level["threads"].get(k, 0.0) for level in summary.values()),
    )
    lines += [
        "",
        "| kernel thread, CPU s/s | " + " | ".join(f"{n} view(s)" for n in summary) + " |",
        "|---|" + "---|" * len(summary),
    ]
    for k in thread_names:
        values = [summary[n]["threads"].get(k, 0.0) for n in summary]
        if max(values) >= 0.0005:
            lines.append(f"| {k} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines)


def goals(summary: dict[int, dict[str, Any]]) -> str:
    one = summary.get(1, {}).get("views", {})
    two = summary.get(2, {}).get("views", {})
    rows = []
    for label, level in (("1 view", one), ("2 views", two)):
        if not level:
            continue
        fps = min(v["fps"] for v in level.values())
        p50 = max(v["shown_p50"] for v in level.values())
        p95 = max(v["shown_p95"] for v in level.values())
        rows.append(
            f"{label}: slowest view {fps:.1f} frames/s (goal >= {GOAL_FPS:g}: "
            f"{'met' if fps >= GOAL_FPS else 'NOT met'}), latency to display p50 {p50:.0f} ms "
            f"(goal < {GOAL_P50_MS:g}: {'met' if p50 < GOAL_P50_MS else 'NOT met'}), p95 {p95:.0f} ms"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.videoview", description=__doc__)
    parser.add_argument("--window", type=float, default=7.0, help="seconds per window")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before a window")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=None,
        help="experiment: set peerix_nb.widgets.video.MAX_IN_FLIGHT in the kernel (default 2)",
    )
    parser.add_argument(
        "--trace",
        default=None,
        help="also record a Chromium trace of one more 1-view window to this file, summarized",
    )
    parser.add_argument("--json", default=None, help="also write every window to this file")
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        print(f"skipped: {missing}")
        return
    started = time.monotonic()
    out = run(args)
    summary = summarize(out)
    print(
        f"\nclock offset, page - kernel: {out['clock_offset_ms']:+.2f} ms "
        f"(+/- {out['clock_uncertainty_ms']:.2f} ms)"
    )
    for n, level in summary.items():
        if level["decode_ms"] is not None:
            print(
                f"{n} view(s), page medians: JPEG decode (createImageBitmap) "
                f"{level['decode_ms']:.1f} ms, the bench's stamp read {level['read_ms']:.2f} ms"
            )
        if level["arrival_p50"] is not None:
            print(
                f"{n} view(s), frame message from the kernel's header date to its arrival on "
                f"the page's WebSocket: p50 {level['arrival_p50']:.1f} ms, "
                f"p95 {level['arrival_p95']:.1f} ms"
            )
    print(f"unreadable stamps on canvas: {sum(s['misses'] for s in summary.values())}\n")
    print(tables(summary))
    if "trace" in out:
        print("\nChromium trace, 1 view: self time by thread and event (ms per second)\n")
        print("| process/thread | event | ms/s |\n|---|---|---|")
        for where, name, ms in out["trace"]:
            print(f"| {where} | {name} | {ms:.1f} |")
    print("\n" + goals(summary))
    print(
        f"\nload average at the end: {out['loadavg_end']}; "
        f"{time.monotonic() - started:.0f} s in all"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**out, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
