"""Browser tests: a real JupyterLab server and headless Chromium (Debian's) through Playwright.

One JupyterLab per session (free port, token, root_dir = a temp copy of notebooks/), one
Chromium per session, a fresh page per test. Tests are skipped when /usr/bin/chromium is
missing, unless PEERIX_REQUIRE_BROWSER=1 (CI), where that is an error. Screenshots and page
logs go to artifacts/browser/ (git-ignored). The server and the page driver (`Lab`) are
testbed/lab.py's, which the benchmarks use too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.lab import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Lab,
    LabServer,
    browser_missing,
    run_jupyter_lab,
)

NOTEBOOKS = Path(__file__).with_name("notebooks")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: runs in real JupyterLab + headless Chromium (needs /usr/bin/chromium)"
    )


def _require_browser() -> None:
    reason = browser_missing()
    if reason is None:
        return
    if os.environ.get("PEERIX_REQUIRE_BROWSER") == "1":
        pytest.fail(f"PEERIX_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(f"browser tests need Chromium: {reason}")


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab on a free loopback port, serving a temp copy of tests/browser/notebooks."""
    _require_browser()
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    shutil.copytree(NOTEBOOKS, root)
    try:
        with run_jupyter_lab(base, root) as (server, _process):
            yield server
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(base / "lab.log", ARTIFACTS / "jupyterlab.log")


@pytest.fixture(scope="module")
def chromium(lab_server: LabServer) -> Iterator[Any]:
    """Headless Chromium (Debian's /usr/bin/chromium) through Playwright, per test module.

    Not per session: while Playwright's sync API is active it keeps its own event loop marked
    as running in the main thread, and every pytest-asyncio test after it would fail with
    "Cannot run the event loop while another loop is running".
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@contextlib.contextmanager
def lab_page(request: pytest.FixtureRequest, browser: Any, lab_server: LabServer) -> Iterator[Lab]:
    """A fresh page of `browser` on the session's JupyterLab; on a failure a screenshot, always
    the page's console; kernels are stopped afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    helper = Lab(page, lab_server, request.node.name)
    try:
        yield helper
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            with contextlib.suppress(Exception):
                helper.screenshot(page, "failure")
        helper.save_console()
        context.close()
        lab_server.shutdown_kernels()


@pytest.fixture
def lab(request: pytest.FixtureRequest, chromium: Any, lab_server: LabServer) -> Iterator[Lab]:
    """A fresh page of the module's Chromium (sound may autoplay) on the session's JupyterLab."""
    with lab_page(request, chromium, lab_server) as helper:
        yield helper


@pytest.fixture(scope="module")
def chromium_needs_a_click(chromium: Any) -> Iterator[Any]:
    """A second Chromium (same Playwright) without `--autoplay-policy=no-user-gesture-required`:
    an AudioContext made before any user gesture stays "suspended", as in a person's browser
    (the desktop default is named for clarity). Playwright's own evaluate, waits and locator
    calls count as a gesture: tests that must not give one drive the page through CDP."""
    args = [a for a in CHROMIUM_ARGS if not a.startswith("--autoplay-policy")]
    args.append("--autoplay-policy=document-user-activation-required")
    browser = chromium.browser_type.launch(executable_path=str(CHROMIUM), args=args)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def lab_needs_a_click(
    request: pytest.FixtureRequest, chromium_needs_a_click: Any, lab_server: LabServer
) -> Iterator[Lab]:
    """`lab`, in the Chromium where sound waits for a click."""
    with lab_page(request, chromium_needs_a_click, lab_server) as helper:
        yield helper
