"""The measuring harness of `bench.videoview` (not a benchmark itself): the notebook code that
runs in the kernel (SETUP), the script installed in the page before JupyterLab loads (HOOK),
and `Bench`, which drives one JupyterLab page and measures one window of draws, kernel counts
and process CPU. The method is described in bench/videoview.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from ._common import loadavg
from ._lab import Lab, browser_processes

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
