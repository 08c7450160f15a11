"""Real JupyterLab and headless Chromium: the browser tests' setup, shared with the benchmarks.

`run_jupyter_lab` starts JupyterLab (free port, token, isolated Jupyter directories) and stops
it with its kernels; `Lab` drives one page of it through Playwright's sync API, on Debian's
Chromium (`CHROMIUM`, `CHROMIUM_ARGS`). tests/browser/conftest.py builds its fixtures on these,
bench/_lab.py its benchmark runs. Screenshots and page logs go to artifacts/browser/
(git-ignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerix_nb.nats_server import free_port

CHROMIUM = Path(os.environ.get("PEERIX_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    # A camera and a microphone without hardware (a 640x480 test pattern), permission granted
    # without a prompt, and <video> that plays without a click (browser peers, TESTING.md).
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
#: Screenshots and page logs (git-ignored).
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"


def browser_missing() -> str | None:
    """Why a browser run cannot happen here (None: it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    return None


@dataclass
class LabServer:
    """A running JupyterLab: its URL, token and root directory, and calls to its REST API."""

    url: str
    token: str
    root: Path

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Stop every kernel (their synthetic streams would keep the 2 cores busy)."""
        for session in self.api("GET", "/api/sessions") or []:
            with contextlib.suppress(urllib.error.URLError):
                self.api("DELETE", f"/api/sessions/{session['id']}")


@contextlib.contextmanager
def run_jupyter_lab(base: Path, root: Path) -> Iterator[tuple[LabServer, subprocess.Popen[bytes]]]:
    """JupyterLab serving `root` on a free loopback port with a token, its Jupyter directories
    isolated under `base` (log in `base/lab.log`); on exit its kernels and the server stop, and
    whatever survives 15 s is killed. Shared by the browser tests and bench/_lab.py."""
    # No news/update checks (their toast covers screenshots).
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # Render every cell, not only those in view: a widget displayed below a long cell must
    # render (and say "rendered") without the test scrolling to it.
    notebook_settings = base / "settings" / "@jupyterlab" / "notebook-extension"
    notebook_settings.mkdir(parents=True)
    (notebook_settings / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"})
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "IPYTHONDIR": str(base / "ipython"),
        "PYTHONUNBUFFERED": "1",
    }
    port, token = free_port(), uuid.uuid4().hex
    with (base / "lab.log").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter",
                "lab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
                "--LabApp.expose_app_in_browser=True",
                "--JupyterNotebookApp.expose_app_in_browser=True",  # Notebook 7 at /notebooks/
                "--allow-root",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = LabServer(f"http://127.0.0.1:{port}", token, root)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited ({process.returncode}):\n"
                    + (base / "lab.log").read_text(errors="replace")[-3000:]
                )
            try:
                server.api("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError("jupyter lab did not answer within 90 s") from None
                time.sleep(0.2)  # polling a starting process: the condition is the answer
        yield server, process
    finally:
        _stop_lab(server, process)


def _stop_lab(server: LabServer, process: subprocess.Popen[bytes]) -> None:
    """Stop the kernels, then the server; whatever of them survives 15 s is killed."""
    import psutil

    try:
        kernels = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kernels = []
    with contextlib.suppress(Exception):
        server.shutdown_kernels()
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _gone, alive = psutil.wait_procs(kernels, timeout=15)
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()


class Lab:
    """Drives one JupyterLab page: open a notebook, run cells, read outputs, screenshots."""

    def __init__(self, page: Any, server: LabServer, name: str) -> None:
        self.page = page
        self.server = server
        self.name = name  # used for artifact file names
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))

    # -- notebooks ----------------------------------------------------------------------------
    def open(self, notebook: str, timeout: float = 60, ui: str = "lab") -> None:
        """Open `notebook` in JupyterLab (`ui="lab"`) or Notebook 7 (`ui="notebook"`) and
        wait for the app to start and the kernel to be idle."""
        page, server = self.page, self.server
        if ui == "lab":
            page.goto(f"{server.url}/lab/tree/{notebook}?token={server.token}&reset")
        else:
            page.goto(f"{server.url}/notebooks/{notebook}?token={server.token}")
        page.wait_for_function("() => !!window.jupyterapp", timeout=timeout * 1000)
        page.evaluate("() => window.jupyterapp.started")
        page.wait_for_function(
            """(name) => {
                const w = window.jupyterapp.shell.currentWidget;
                if (!w || !w.context || w.context.path !== name || !w.context.isReady) return false;
                const k = w.sessionContext.session && w.sessionContext.session.kernel;
                return !!k && k.status === 'idle';
            }""",
            arg=notebook,
            timeout=timeout * 1000,
        )

    def run_all(self) -> None:
        # Do not return the promise: it resolves only when every cell is done (TESTING.md).
        self.page.evaluate(
            "() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }"
        )

    def run_cell(self, index: int, timeout: float = 60) -> None:
        """Run code cell `index` (0-based among all cells) and wait until it has finished."""
        self.execute_at(index, "notebook:run-cell")
        self.wait_cells_done([index], timeout)

    def execute_at(self, index: int, command: str) -> None:
        """Make cell `index` the active one and start notebook `command` there (not waited)."""
        self.page.evaluate(
            """([i, command]) => {
                const nb = window.jupyterapp.shell.currentWidget.content;
                nb.activeCellIndex = i;
                void window.jupyterapp.commands.execute(command);
            }""",
            [index, command],
        )

    def wait_cells_done(self, indices: list[int] | None = None, timeout: float = 60) -> None:
        """Wait until the given code cells (default: all) have run and the kernel is idle."""
        self.page.wait_for_function(
            """(indices) => {
                const w = window.jupyterapp.shell.currentWidget;
                const cells = w.content.widgets.filter(
                    (c, i) => c.model.type === 'code' && (!indices || indices.includes(i)));
                const k = w.sessionContext.session.kernel;
                return k.status === 'idle' && cells.every(c => c.model.executionCount !== null);
            }""",
            arg=indices,
            timeout=timeout * 1000,
        )
        self.assert_no_errors()

    def outputs(self) -> list[list[dict[str, Any]]]:
        """Every cell's outputs as nbformat JSON."""
        return self.page.evaluate(
            """() => window.jupyterapp.shell.currentWidget.content.widgets.map(
                c => c.model.type === 'code' ? c.model.outputs.toJSON() : [])"""
        )

    def output_text(self, index: int) -> str:
        """The text a code cell printed (stream outputs and text/plain results)."""
        text = []
        for out in self.outputs()[index]:
            if out.get("output_type") == "stream":
                text.append("".join(out.get("text", "")))
            elif "data" in out and "text/plain" in out["data"]:
                text.append("".join(out["data"]["text/plain"]))
        return "".join(text)

    def assert_no_errors(self) -> None:
        for i, cell in enumerate(self.outputs()):
            for out in cell:
                if out.get("output_type") == "error":
                    tb = "\n".join(out.get("traceback", []))
                    raise AssertionError(
                        f"cell {i} raised {out.get('ename')}: {out.get('evalue')}\n{tb}"
                    )

    # -- artifacts ----------------------------------------------------------------------------
    def screenshot(self, target: Any, label: str) -> bytes:
        """A PNG of a locator (or the page), saved as artifacts/browser/<test>-<label>.png."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        return target.screenshot(path=str(path))

    def wait_frames(self, view: Any, more: int) -> None:
        """Wait until the VideoView element `view` (a Locator) has drawn `more` frames beyond
        what it has drawn now (its `data-frames` counter)."""
        start = int(view.get_attribute("data-frames") or 0)
        self.page.wait_for_function(
            "([el, target]) => +el.dataset.frames >= target",
            arg=[view.element_handle(), start + more],
        )

    def screenshots_apart(self, view: Any, label: str, frames: int) -> tuple[bytes, bytes]:
        """Screenshots `<label>-1` and `<label>-2` of the VideoView element `view`, `frames`
        frames apart: a live picture makes them differ."""
        first = self.screenshot(view, f"{label}-1")
        self.wait_frames(view, frames)
        return first, self.screenshot(view, f"{label}-2")

    def save_console(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{self.name}-console.log").write_text("\n".join(self.console))
