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
from dataclasses import dataclass, field
from typing import Any

import psutil

from ._common import loadavg, machine, percentile
from ._lab import Lab, browser_missing, browser_processes, chromium, jupyter_lab, notebook

GOAL_FPS = 24.0
GOAL_P50_MS = 150.0
GOAL_P95_MS = None  # reported, no goal

SETUP = """\
import asyncio, json, os, threading, time
from peerix_nb import MemoryDriver, Peer
from peerix_nb.media import synthetic
from peerix_nb.widgets import VideoView

driver = MemoryDriver()
sender, receiver = Peer(driver=driver), Peer(driver=driver)
first_frame = asyncio.ensure_future(receiver.wait_for("media:first-frame", timeout=60))
await sender.publish(synthetic(audio=False, width=640, height=480, fps=30), label="camera")
await sender.join(room="videoview-bench")
await receiver.join(room="videoview-bench")
track = (await first_frame).track
views = {}
sends = {}  # view -> {stamp in us: time.time() when the frame was handed to the comm}


def show(name):
    view = views[name] = VideoView(track, max_fps=30, title=name)
    plain_send, log = view.send, sends.setdefault(name, {})

    def send(content, buffers=None):  # bench only: note when each stamped frame leaves
        sent = view._inflight.get(content.get("seq"))
        if sent is not None and sent.stamp is not None:
            log[round(sent.stamp * 1e6)] = time.time()
        return plain_send(content, buffers=buffers)

    view.send = send
    return view


def snapshot():
    for log in sends.values():
        log.clear()
    return {n: {"sent": v.frames_sent, "acked": v.frames_acked, "dropped": v.frames_dropped,
                "lost": v.frames_lost} for n, v in views.items()}


def report(before):
    out = {}
    for n, v in views.items():
        b = before.get(n, {"sent": 0, "acked": 0, "dropped": 0, "lost": 0})
        acked = v.frames_acked - b["acked"]
        stats = v.stats
        out[n] = {k: stats[f"frames_{k}"] - b[k] for k in b}
        out[n].update(encode_ms=stats["encode_ms"], rtt_ms=stats["rtt_ms"],
                      latency_kind=stats["latency_kind"],
                      latency=list(v.latency_samples)[-acked:] if acked > 0 else [],
                      sends=dict(sends.get(n, {})))
    threads = {t.native_id: t.name for t in threading.enumerate()}
    return json.dumps({"views": out, "threads": threads})


print("PID", os.getpid())
"""

# Installed in the page before JupyterLab's scripts: records every draw on a VideoView canvas
# with the stamp read back from the canvas, and the duration of every JPEG decode.
HOOK = r"""
(() => {
  const COLUMNS = 40, ROWS = 3, HEAD = [1, 0, 1, 1], TAIL = [0, 0, 1, 0];
  const now = () => performance.timeOrigin + performance.now();
  const state = { draws: [], decodes: [], reads: [], arrivals: [], misses: 0, nextId: 1 };
  function cellSize(width) {  // media.stamps._stamp_cell
    if (width >= 16 * COLUMNS) { let c = 16; while (c * 2 * COLUMNS <= width) c *= 2; return c; }
    if (width >= 4 * COLUMNS) return 4;
    return width >= 2 * COLUMNS ? 2 : 0;
  }
  function crc16(bytes) {  // binascii.crc_hqx(data, 0xFFFF)
    let crc = 0xffff;
    for (const b of bytes) {
      crc ^= b << 8;
      for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
  }
  function readStamp(ctx, width, height) {  // media.read_stamp on the canvas pixels
    const cell = cellSize(width);
    if (cell < 2 || height < ROWS * cell) return null;
    const w = COLUMNS * cell, data = ctx.getImageData(0, 0, w, ROWS * cell).data;
    const lo = Math.floor(cell / 4), hi = cell - Math.floor(cell / 4), n = (hi - lo) * (hi - lo);
    const bits = [];
    for (let r = 0; r < ROWS; r++) for (let c = 0; c < COLUMNS; c++) {
      let sum = 0;
      for (let y = r * cell + lo; y < r * cell + hi; y++) for (let x = c * cell + lo; x < c * cell + hi; x++) {
        const i = 4 * (y * w + x);
        sum += (data[i] + data[i + 1] + data[i + 2]) / 3;
      }
      bits.push(sum / n > 127.5 ? 1 : 0);
    }
    for (let i = 0; i < 4; i++) if (bits[i] !== HEAD[i] || bits[bits.length - 4 + i] !== TAIL[i]) return null;
    const bytes = [];
    for (let i = 4; i < bits.length - 4; i += 8) {
      let v = 0;
      for (let j = 0; j < 8; j++) v = (v << 1) | bits[i + j];
      bytes.push(v);
    }
    const payload = bytes.slice(0, 12);
    if (crc16(payload) !== ((bytes[12] << 8) | bytes[13])) return null;
    const u32 = (k) => ((bytes[k] << 24) >>> 0) + (bytes[k + 1] << 16) + (bytes[k + 2] << 8) + bytes[k + 3];
    return { counter: u32(0), sentMs: (u32(4) * 2 ** 32 + u32(8)) / 1000 };
  }
  const drawImage = CanvasRenderingContext2D.prototype.drawImage;
  CanvasRenderingContext2D.prototype.drawImage = function (...args) {
    const result = drawImage.apply(this, args);
    const canvas = this.canvas;
    if (canvas && canvas.classList && canvas.classList.contains("peerix-video-canvas")) {
      const drawn = now();
      if (!canvas.dataset.benchId) canvas.dataset.benchId = String(state.nextId++);
      const stamp = readStamp(this, canvas.width, canvas.height);
      state.reads.push(now() - drawn);
      if (!stamp) { state.misses += 1; return result; }
      const row = { view: canvas.dataset.benchId, counter: stamp.counter, sent: stamp.sentMs,
                    drawn, shown: null };
      state.draws.push(row);
      requestAnimationFrame(() => { row.shown = now(); });
    }
    return result;
  };
  // Frame messages as they arrive on the kernel's WebSocket (JupyterLab's v1 binary protocol):
  // arrival time minus the kernel's header date = kernel comm send -> page, in ms.
  function frameDate(buffer) {
    const view = new DataView(buffer), n = Number(view.getBigUint64(0, true));
    const at = (i) => Number(view.getBigUint64(8 * (i + 1), true));
    if (n < 6) return null;
    const text = (a, b) => new TextDecoder().decode(new Uint8Array(buffer, at(a), at(b) - at(a)));
    if (text(0, 1) !== "iopub") return null;
    const content = JSON.parse(text(4, 5));
    const inner = content.data && content.data.content;
    if (!inner || inner.type !== "frame") return null;
    return Date.parse(JSON.parse(text(1, 2)).date);
  }
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        if (!(event.data instanceof ArrayBuffer) || event.data.byteLength < 2048) return;
        const arrived = now();
        try {
          const date = frameDate(event.data);
          if (date) state.arrivals.push(arrived - date);
        } catch {
          // not the v1 protocol: no transport figure
        }
      });
    }
  };
  const createImageBitmap = window.createImageBitmap.bind(window);
  window.createImageBitmap = async (...args) => {
    const start = now();
    const bitmap = await createImageBitmap(...args);
    state.decodes.push(now() - start);
    return bitmap;
  };
  window.__peerixBench = {
    now,
    take() {
      const titles = {};
      for (const c of document.querySelectorAll("canvas.peerix-video-canvas[data-bench-id]")) {
        const root = c.closest(".peerix-video");
        titles[c.dataset.benchId] = {
          title: root.querySelector(".peerix-video-title").textContent,
          overlay: root.querySelector(".peerix-video-stats").textContent,
        };
      }
      const out = { now: now(), draws: state.draws, decodes: state.decodes, reads: state.reads,
                    arrivals: state.arrivals, misses: state.misses, titles };
      state.draws = []; state.decodes = []; state.reads = []; state.arrivals = [];
      state.misses = 0;
      return out;
    },
  };
})();
"""

EXECUTE = """async (code) => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const future = kernel.requestExecute({ code, store_history: false });
    let out = "", error = null;
    future.onIOPub = (msg) => {
        const t = msg.header.msg_type;
        if (t === "stream") out += msg.content.text;
        if (t === "error") error = `${msg.content.ename}: ${msg.content.evalue}`;
    };
    await future.done;
    return { out, error };
}"""


@dataclass
class Window:
    views: int
    seconds: float  # page clock
    draws: list[dict[str, Any]]
    decodes: list[float]
    reads: list[float]
    arrivals: list[float]
    misses: int
    titles: dict[str, Any]
    cpu: dict[str, float]  # process -> CPU s/s
    threads: dict[str, float]  # kernel thread -> CPU s/s
    kernel: dict[str, Any]
    loadavg: str
    overlay: dict[str, str] = field(default_factory=dict)


def _chromium_kind(process: psutil.Process) -> str:
    """ "chromium renderer", "chromium gpu", "chromium main" or "chromium other"."""
    try:
        args = process.cmdline()
    except psutil.Error:
        return "chromium other"
    kind = next((a.split("=", 1)[1] for a in args if a.startswith("--type=")), "main")
    return {"renderer": "chromium renderer", "gpu-process": "chromium gpu"}.get(
        kind, "chromium main" if kind == "main" else "chromium other"
    )


class Bench:
    def __init__(self, lab: Lab, server_pid: int, kernel_pid: int) -> None:
        self.lab = lab
        self.page = lab.page
        self.kernel = psutil.Process(kernel_pid)
        self.server = psutil.Process(server_pid)
        self.browser = browser_processes()

    def execute(self, code: str) -> str:
        result = self.page.evaluate(EXECUTE, code)
        if result["error"]:
            raise RuntimeError(f"kernel: {result['error']}")
        return result["out"]

    def clock_offset_ms(self) -> tuple[float, float]:
        """Page clock minus time.time(), in ms, and its uncertainty (half the round trip)."""
        best: tuple[float, float] | None = None
        for _ in range(15):
            before = time.time()
            page = self.page.evaluate("() => window.__peerixBench.now()")
            after = time.time()
            half = (after - before) * 500
            offset = page - (before + after) * 500
            if best is None or half < best[1]:
                best = (offset, half)
        assert best is not None
        return best

    def _cpu(self) -> tuple[dict[str, float], dict[int, float]]:
        def total(p: psutil.Process) -> float:
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                return 0.0
            return t.user + t.system

        processes = {"kernel": total(self.kernel), "jupyter server": total(self.server)}
        for p in self.browser:
            kind = _chromium_kind(p)
            processes[kind] = processes.get(kind, 0.0) + total(p)
        threads = {t.id: t.user_time + t.system_time for t in self.kernel.threads()}
        return processes, threads

    def _thread_name(self, tid: int, names: dict[str, str]) -> str:
        name = names.get(str(tid))
        if tid == self.kernel.pid:
            return "main (event loop)"
        if name is None:
            try:
                with open(f"/proc/{self.kernel.pid}/task/{tid}/comm") as f:
                    name = f.read().strip()
            except OSError:
                name = "?"
        if name.startswith(("ThreadPoolExecutor", "asyncio_")):
            return "executor (VP8 encode)"
        if name == "video-decoder":
            return "video-decoder (VP8)"
        if name.startswith("ZMQbg"):
            return "ZMQ I/O"
        if name in ("python", "python3"):  # native threads named like the process
            return "unnamed native threads (ffmpeg's mjpeg encoder)"
        return name

    def window(self, views: int, seconds: float) -> Window:
        self.execute("_before = snapshot()")
        start = self.page.evaluate("() => window.__peerixBench.take()")
        cpu0, threads0 = self._cpu()
        wall0 = time.monotonic()
        time.sleep(seconds)  # the measurement window
        end = self.page.evaluate("() => window.__peerixBench.take()")
        cpu1, threads1 = self._cpu()
        wall = time.monotonic() - wall0
        load = loadavg()
        kernel = json.loads(self.execute("print(report(_before))"))
        names = kernel.pop("threads")
        threads: dict[str, float] = {}
        for tid, used in threads1.items():
            name = self._thread_name(tid, names)
            threads[name] = threads.get(name, 0.0) + (used - threads0.get(tid, 0.0)) / wall
        return Window(
            views=views,
            seconds=(end["now"] - start["now"]) / 1000,
            draws=end["draws"],
            decodes=end["decodes"],
            reads=end["reads"],
            arrivals=end["arrivals"],
            misses=end["misses"],
            titles=end["titles"],
            cpu={k: (cpu1.get(k, cpu0[k]) - cpu0[k]) / wall for k in cpu0},
            threads=threads,
            kernel=kernel["views"],
            loadavg=load,
        )

    def wait_drawing(self, views: int) -> None:
        """Wait until `views` VideoView canvases show stamped frames."""
        self.page.wait_for_function(
            """(n) => {
                const live = [...document.querySelectorAll('.peerix-video.has-frame')]
                    .filter(el => el.dataset.status === 'live');
                return live.length === n;
            }""",
            arg=views,
        )


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
