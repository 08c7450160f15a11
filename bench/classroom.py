"""A classroom: one kernel Peer (the teacher's notebook) and N browser pages (the class), each
page sending its camera to the kernel; and, as the reference, the same with N kernel Peers in
the kernel's own process instead of pages.

Browser: one headless Chromium (Debian's, fake camera) with N tabs, each a plain page running
the browser Peerix peer (peerix_nb/browser/peer.js) on its own NatsDriver over the WebSocket
listener of peerix_nb.nats_server; each publishes getUserMedia's fake camera at 320x240, 15
frames/s. The teacher is a `Peer` on a NatsDriver in this process. A page admits only the
teacher (`verify`): each student's machine talks to the teacher, not to the other students
(one machine runs the whole class here; a full mesh of the pages would measure Chromium, not
the kernel). Reference: N `Peer`s in this process publishing `media.synthetic` at the same size
and rate, with the same `verify`, on the same nats-server.

Per class size N: every student is told to join at once; "last join to all connected" runs from
the last join call to every student connected in the teacher (`connection:connected`), "to all
frames" to the first decoded frame from every student. Then, after 2 s to settle, a window
(`--window` s) measures the frames/s the kernel decodes from each student (slowest, median),
the kernel process's CPU per wall second split by thread (event loop, aiortc's decoder threads
-- one per incoming track -- and the rest: in the reference, the students' encoders are the
default executor's threads), and Chromium's CPU (all its processes). The sizes run in order;
the first whose slowest student falls under 90 % of the camera's rate is where it saturates,
and the report says which CPU was full then.

Run: `python -m bench.classroom [--sizes 4 8 16 24 32] [--window 8] [--all-sizes]
[--reference-only | --browser-only]`. The machine is shared: the load average is printed with
each size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import os
import secrets
import statistics
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from peerix_nb import Event, Peer, media
from peerix_nb import nats_server as launcher
from peerix_nb.drivers.nats import NatsDriver
from testbed.lab import CHROMIUM, CHROMIUM_ARGS, browser_missing

from ._common import loadavg, machine
from .media import thread_cpu

WIDTH, HEIGHT, FPS = 320, 240, 15
TEACHER = "teacher"
CONNECT_TIMEOUT = 60.0
#: Seconds between a frame from every student and the window: senders ramp up their bitrate.
SETTLE = 3.0
BROWSER_JS = Path(__file__).resolve().parents[1] / "peerix_nb" / "browser"

PAGE = """<!doctype html><meta charset="utf-8"><title>student</title>
<script type="module">
import { Peer } from "/peerix/peer.js";
import { NatsDriver } from "/peerix/drivers.js";
import { NatsConnection } from "/peerix/nats.js";

let peer = null;
window.student = {
  // The camera, the driver and the Peer, with the camera published (sent on connecting).
  async start({ id, wsUrl, prefix, width, height, fps }) {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { exact: width }, height: { exact: height }, frameRate: { exact: fps } },
      audio: false,
    });
    const driver = new NatsDriver(new NatsConnection(wsUrl), prefix);
    await driver.connect();
    peer = new Peer({ id, driver });
    await peer.publish(stream, "camera");
    return stream.getVideoTracks()[0].getSettings();
  },
  // Join, admitting only the teacher (a student's machine talks to the teacher alone).
  join(room, teacher) {
    peer.join(room, { name: peer.id }, (info) => info.id === teacher);
    return true;
  },
  state(teacher) {
    const remote = peer && peer.connections.get(teacher);
    return remote ? remote.state : null;
  },
  // What the page's own RTCPeerConnection reports about the video it sends the teacher.
  async sent(teacher) {
    const remote = peer && peer.connections.get(teacher);
    const out = { frames: 0, encoded: 0, limitation: "none", fps: 0 };
    if (!remote) return out;
    (await remote.pc.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video") {
        out.frames += s.framesSent || 0;
        out.encoded += s.framesEncoded || 0;
        out.limitation = s.qualityLimitationReason || "none";
        out.fps = s.framesPerSecond || 0;
      }
    });
    return out;
  },
  leave: () => peer.leave(),
};
window.studentReady = true;
</script>"""


# -- the page's web server -------------------------------------------------------------------------
class _Handler(http.server.SimpleHTTPRequestHandler):
    """/peerix/* -> the shipped browser modules; / -> the student page."""

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if not path.startswith("/peerix/"):
            return str(BROWSER_JS / "missing")  # 404: the page needs nothing else
        return str(BROWSER_JS / path[len("/peerix/") :])

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/":
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def page_server() -> Iterator[str]:
    """The student page on 127.0.0.1 (a secure context: WebCrypto and getUserMedia need it)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="classroom-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


# -- CPU per thread group, and Chromium's ----------------------------------------------------------
def browser_cpu(browser_pid: int | None) -> float:
    """CPU seconds so far of Chromium (every process of it), 0 without one."""
    if browser_pid is None:
        return 0.0
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(browser_pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
    return total


def chromium_pid() -> int | None:
    """The main Chromium process this process started (through Playwright's driver)."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.name() in ("chromium", "chrome") and "--type=" not in " ".join(
                child.cmdline()
            ):
                return int(child.pid)
    return None


# -- the teacher -----------------------------------------------------------------------------------
@dataclass
class Teacher:
    """The kernel's Peer, counting each student's decoded frames."""

    peer: Peer
    connected: dict[str, float] = field(default_factory=dict)  # student -> monotonic time
    first_frame: dict[str, float] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.peer.on("connection:connected", self._on_connected)
        self.peer.on("track:add", self._on_track)

    def _on_connected(self, event: Event) -> None:
        assert event.remote is not None
        self.connected.setdefault(event.remote.id, time.monotonic())
        self.changed.set()

    def _on_track(self, event: Event) -> None:
        if event.track is not None and event.track.kind == "video" and event.remote is not None:
            self.readers.append(asyncio.ensure_future(self._count(event.remote.id, event.track)))

    async def _count(self, student: str, track: Any) -> None:
        """Read every frame the kernel decodes from `student` (a Tap subscriber: nothing
        queues), counting them."""
        self.frames.setdefault(student, 0)
        with contextlib.suppress(Exception):  # the track ends when the student leaves
            while True:
                await track.recv()
                if student not in self.first_frame:
                    self.first_frame[student] = time.monotonic()
                    self.changed.set()
                self.frames[student] += 1

    async def wait(self, students: list[str], what: str) -> float:
        """The monotonic time at which every student had `what` ("connected", "first_frame")."""
        stamps: dict[str, float] = getattr(self, what)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            self.changed.clear()  # before looking: a change from now on wakes the wait
            if all(s in stamps for s in students):
                break
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [s for s in students if s not in stamps]
                raise TimeoutError(f"{len(missing)} students not {what} in {CONNECT_TIMEOUT} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return max(stamps[s] for s in students)

    async def close(self) -> None:
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await self.peer.leave()
        await self.peer.driver.close()


# -- one class size --------------------------------------------------------------------------------
@dataclass
class Result:
    setup: str
    n: int
    to_connected: float  # s, last join -> every student connected in the teacher
    to_frames: float  # s, last join -> a decoded frame from every student
    fps: list[float]  # frames/s decoded per student, over the window
    cpu: dict[str, float]  # CPU s/s of the kernel process, by thread group, and "total"
    chromium: float  # CPU s/s of Chromium (0 in the reference)
    load: str
    sent_fps: list[float] = field(default_factory=list)  # frames/s each page says it sent
    limitations: list[str] = field(default_factory=list)  # pages' qualityLimitationReason


async def measure(
    setup: str,
    n: int,
    teacher: Teacher,
    students: list[str],
    join_all: Callable[[], Awaitable[float]],
    window: float,
    browser_pid: int | None,
    sent: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
) -> Result:
    """Join every student at once, wait for all connected and a frame from each, settle, then
    measure the window (and, with `sent`, what each page says it sent over it)."""
    last_join = await join_all()
    connected = await teacher.wait(students, "connected")
    framed = await teacher.wait(students, "first_frame")
    await asyncio.sleep(SETTLE)  # the senders' bitrate ramps up and the decoders warm
    sent0, sent_started = (await sent() if sent else []), time.perf_counter()
    frames0 = dict(teacher.frames)
    threads0, cpu0, chrome0 = thread_cpu(), time.process_time(), browser_cpu(browser_pid)
    started = time.perf_counter()
    await asyncio.sleep(window)
    elapsed = time.perf_counter() - started
    threads1, cpu1, chrome1 = thread_cpu(), time.process_time(), browser_cpu(browser_pid)
    fps = [(teacher.frames[s] - frames0.get(s, 0)) / elapsed for s in students]
    sent1 = await sent() if sent else []
    sent_elapsed = time.perf_counter() - sent_started
    sent_fps = [
        (b["frames"] - a["frames"]) / sent_elapsed for a, b in zip(sent0, sent1, strict=True)
    ]
    limitations = sorted({b["limitation"] for b in sent1})
    groups: dict[str, float] = {}
    for native_id, (group, seconds) in threads1.items():
        before = threads0.get(native_id, (group, 0.0))[1]
        groups[group] = groups.get(group, 0.0) + (seconds - before) / elapsed
    groups["total"] = (cpu1 - cpu0) / elapsed
    return Result(
        setup,
        n,
        connected - last_join,
        framed - last_join,
        fps,
        groups,
        (chrome1 - chrome0) / elapsed,
        loadavg(),
        sent_fps,
        limitations,
    )


@contextlib.asynccontextmanager
async def teacher_on(server: launcher.NatsServer, prefix: str, room: str) -> AsyncIterator[Teacher]:
    peer = Peer(id=TEACHER, driver=NatsDriver(server.url, prefix=prefix))
    teacher = Teacher(peer)
    await peer.join(room, metadata={"name": TEACHER})
    try:
        yield teacher
    finally:
        await teacher.close()


async def browser_class(
    server: launcher.NatsServer, url: str, browser: Any, n: int, window: float
) -> Result:
    """N pages in one Chromium, each a student."""
    prefix, room = "c" + secrets.token_hex(4), "class"
    students = [f"page-{i:02d}" for i in range(n)]
    contexts = [await browser.new_context() for _ in students]
    try:
        pages = [await context.new_page() for context in contexts]
        for page in pages:
            page.set_default_timeout(CONNECT_TIMEOUT * 1000)
        await asyncio.gather(*(page.goto(url) for page in pages))
        await asyncio.gather(*(page.wait_for_function("window.studentReady") for page in pages))
        options = {"wsUrl": server.websocket_url, "prefix": prefix}
        settings = await asyncio.gather(
            *(
                page.evaluate(
                    "o => student.start(o)",
                    {**options, "id": s, "width": WIDTH, "height": HEIGHT, "fps": FPS},
                )
                for page, s in zip(pages, students, strict=True)
            )
        )
        camera = settings[0]
        if (camera.get("width"), camera.get("height")) != (WIDTH, HEIGHT):
            raise RuntimeError(f"the fake camera gives {camera}, not {WIDTH}x{HEIGHT}")
        async with teacher_on(server, prefix, room) as teacher:

            async def join_all() -> float:
                """Every page calls join() at once; the time the last call returned."""

                async def join(page: Any) -> float:
                    await page.evaluate("([r, t]) => student.join(r, t)", [room, TEACHER])
                    return time.monotonic()

                return max(await asyncio.gather(*(join(page) for page in pages)))

            async def sent() -> list[dict[str, Any]]:
                return list(
                    await asyncio.gather(
                        *(page.evaluate("t => student.sent(t)", TEACHER) for page in pages)
                    )
                )

            result = await measure(
                "browser pages", n, teacher, students, join_all, window, chromium_pid(), sent
            )
            states = await asyncio.gather(
                *(page.evaluate("t => student.state(t)", TEACHER) for page in pages)
            )
            if any(state != "connected" for state in states):
                raise RuntimeError(f"pages not connected to the teacher: {states}")
            await asyncio.gather(*(page.evaluate("student.leave()") for page in pages))
            return result
    finally:
        for context in contexts:
            with contextlib.suppress(Exception):
                await context.close()


async def kernel_class(server: launcher.NatsServer, n: int, window: float) -> Result:
    """The reference: N kernel Peers in this process, each a student."""
    prefix, room = "k" + secrets.token_hex(4), "class"
    students = [f"kernel-{i:02d}" for i in range(n)]
    peers = [Peer(id=s, driver=NatsDriver(server.url, prefix=prefix)) for s in students]
    try:
        for peer in peers:
            await peer.publish(
                media.synthetic(audio=False, width=WIDTH, height=HEIGHT, fps=FPS), label="camera"
            )
        async with teacher_on(server, prefix, room) as teacher:

            async def join_all() -> float:
                joins = []
                for peer in peers:
                    joins.append(peer.join(room, metadata={"name": peer.id}, verify=_only_teacher))
                    last = time.monotonic()
                await asyncio.gather(*joins)
                return last

            return await measure("kernel peers", n, teacher, students, join_all, window, None)
    finally:
        for peer in peers:
            with contextlib.suppress(Exception):
                await peer.leave()
                await peer.driver.close()


def _only_teacher(info: Any) -> bool:
    return bool(info.id == TEACHER)


# -- report ----------------------------------------------------------------------------------------
def saturated(result: Result) -> bool:
    return min(result.fps) < 0.9 * FPS


def table(results: list[Result]) -> str:
    groups = ["event loop", "decoders", "encoders", "other threads"]
    lines = [
        "| setup | students | last join -> all connected (s) | -> a frame from each (s) | "
        "frames/s per student: slowest / median | sent by the pages: slowest / median "
        "(limited by) | kernel CPU s/s | "
        + " | ".join(groups)
        + " | kernel CPU per student | Chromium CPU s/s | load average |",
        "|---|---|---|---|---|---|---|" + "---|" * len(groups) + "---|---|---|",
    ]
    for r in results:
        cells = " | ".join(f"{r.cpu.get(g, 0.0):.2f}" for g in groups)
        chromium = f"{r.chromium:.2f}" if r.setup == "browser pages" else "-"
        sent = (
            f"{min(r.sent_fps):.1f} / {statistics.median(r.sent_fps):.1f} "
            f"({', '.join(r.limitations)})"
            if r.sent_fps
            else "-"
        )
        lines.append(
            f"| {r.setup} | {r.n} | {r.to_connected:.2f} | {r.to_frames:.2f} | "
            f"{min(r.fps):.1f} / {statistics.median(r.fps):.1f} | {sent} | {r.cpu['total']:.2f} | "
            f"{cells} | {r.cpu['total'] / r.n:.3f} | {chromium} | {r.load} |"
        )
    return "\n".join(lines)


def verdict(results: list[Result]) -> str:
    """Where each setup saturates, and which CPU was full then."""
    lines = []
    for setup in ("browser pages", "kernel peers"):
        rs = [r for r in results if r.setup == setup]
        if not rs:
            continue
        full = next((r for r in rs if saturated(r)), None)
        if full is None:
            lines.append(
                f"- {setup}: no saturation up to {rs[-1].n} students (slowest "
                f"{min(rs[-1].fps):.1f} frames/s of {FPS})."
            )
            continue
        busy = {
            "the kernel's event loop": full.cpu.get("event loop", 0.0),
            "the kernel's decoder threads": full.cpu.get("decoders", 0.0),
        }
        if setup == "browser pages":
            busy["Chromium"] = full.chromium
        else:
            busy["the students' encoders"] = full.cpu.get("encoders", 0.0)
        where = ""
        if full.sent_fps:
            # Did the kernel lose frames the pages sent, or did the pages send fewer?
            share = sum(full.fps) / max(sum(full.sent_fps), 1e-9)
            loop = full.cpu.get("event loop", 0.0)
            if share >= 0.95:
                why = "the pages (Chromium on this machine) are the limit, not the kernel."
            elif loop >= 0.85:
                why = "the kernel's event loop (one Python thread) is full."
            else:
                why = (
                    f"the kernel fell behind with its event loop at only {loop:.2f} CPU s/s: "
                    "it waited for a core, taken by Chromium and the rest of the machine."
                )
            where = (
                f" The kernel decoded {share:.0%} of the frames the pages sent (the slowest page "
                f"sent {min(full.sent_fps):.1f} frames/s): {why}"
            )
        lines.append(
            f"- {setup}: saturates at {full.n} students (slowest {min(full.fps):.1f} frames/s "
            f"of {FPS}); CPU s/s then: "
            + ", ".join(f"{k} {v:.2f}" for k, v in busy.items())
            + f", on {os.cpu_count()} cores at load {full.load}.{where}"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> list[Result]:
    print(f"machine: {machine()}")
    results: list[Result] = []
    async with launcher.start(websocket_port=0, binary=launcher.find_binary()) as server:
        if not args.reference_only:
            missing = browser_missing()
            if missing is not None:
                raise SystemExit(f"no browser: {missing}")
            from playwright.async_api import async_playwright

            with page_server() as url:
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
                    )
                    try:
                        for n in args.sizes:
                            print(
                                f"browser pages, {n} students, load before {loadavg()}", flush=True
                            )
                            result = await browser_class(server, url, browser, n, args.window)
                            results.append(result)
                            print(table([result]).splitlines()[-1], flush=True)
                            if saturated(result) and not args.all_sizes:
                                break
                    finally:
                        await browser.close()
        for n in [] if args.browser_only else args.sizes:
            print(f"kernel peers, {n} students, load before {loadavg()}", flush=True)
            result = await kernel_class(server, n, args.window)
            results.append(result)
            print(table([result]).splitlines()[-1], flush=True)
            if saturated(result) and not args.all_sizes:
                break
    print(f"\nclassroom: {WIDTH}x{HEIGHT} at {FPS} frames/s per student, window {args.window} s\n")
    print(table(results))
    print()
    print(verdict(results))
    print(f"load average at the end: {loadavg()}")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.classroom", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 24, 32])
    parser.add_argument("--window", type=float, default=8.0, help="seconds measured per size")
    parser.add_argument("--all-sizes", action="store_true", help="go on past saturation")
    parser.add_argument("--reference-only", action="store_true", help="kernel peers only")
    parser.add_argument("--browser-only", action="store_true", help="browser pages only")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
