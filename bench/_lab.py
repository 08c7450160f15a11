"""Real JupyterLab + headless Chromium for benchmarks and screenshots (not a benchmark itself).

The browser tests' own setup (testbed/lab.py: `run_jupyter_lab`, `Lab` driving one page), in a
temp directory; Debian's Chromium through Playwright's sync API. Every process
started here is stopped on exit, kernels included.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from testbed.lab import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Lab,
    LabServer,
    browser_missing,
    run_jupyter_lab,
)

__all__ = ["CHROMIUM", "Lab", "LabRun", "browser_missing", "chromium", "jupyter_lab", "notebook"]


def notebook(path: Path, cells: list[str]) -> None:
    """Write a notebook of code cells (no outputs) to `path`."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }
    nbformat.write(nb, path)


@dataclass
class LabRun:
    server: LabServer
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def jupyter_lab() -> Iterator[LabRun]:
    """JupyterLab on a free loopback port, its root a fresh temp directory (`server.root`)."""
    base = Path(tempfile.mkdtemp(prefix="peerix-bench-lab-"))
    root = base / "notebooks"
    root.mkdir()
    try:
        with run_jupyter_lab(base, root) as (server, process):
            yield LabRun(server, process, base / "lab.log")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def chromium(viewport: tuple[int, int] = (1400, 1000)) -> Iterator[Any]:
    """A fresh page of headless Chromium (Debian's); the browser is closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def browser_processes() -> list[psutil.Process]:
    """The Chromium processes this process started (through Playwright's driver)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "chromium" in child.name() or "chrome" in child.name():
                found.append(child)
    return found
