"""Fixtures of the scenario table: a nats-server with a WebSocket listener, a static web server
for the plain test page, headless Chromium with fake devices, and `pair` to make two sides:
"kernel" (a Peer on NATS), "browser" (the page on NATS WebSocket) or "browser_relay" (the page
signalling through a BrowserPeer's kernel relay onto a kernel NatsDriver).

The tests of a module share one asyncio loop (`LOOP`), so that one Chromium serves them all
(launching Playwright and Chromium for each test cost about a second a test); each side still
gets a fresh browser context, nats-server and room prefix."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from peerix_nb import nats_server as launcher
from testbed.lab import CHROMIUM, CHROMIUM_ARGS
from tests.interop.sides import BrowserSide, KernelRelay, KernelSide, Side

ROOT = Path(__file__).resolve().parents[2]
BROWSER_JS = ROOT / "peerix_nb" / "browser"
HERE = Path(__file__).resolve().parent
#: The loop scope of the scenario tests and their async fixtures (test_scenarios.py's marker).
LOOP = "module"
INDEX = b'<!doctype html><meta charset="utf-8"><title>peerix page</title>' + (
    b'<script type="module" src="/page.js"></script>'
)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """/peerix/* -> the shipped browser modules; / -> the test page; everything else here."""

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if path.startswith("/peerix/"):
            return str(BROWSER_JS / path[len("/peerix/") :])
        return str(HERE / path.lstrip("/"))

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(INDEX)))
            self.end_headers()
            self.wfile.write(INDEX)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def page_url() -> Iterator[str]:
    """The plain test page, served from 127.0.0.1 (WebCrypto needs a secure context)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="interop-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _require_browser() -> None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        reason = "Playwright for Python is not installed"
    else:
        reason = None if CHROMIUM.exists() else f"{CHROMIUM} not found (apt-get install chromium)"
    if reason is None:
        return
    if os.environ.get("PEERIX_REQUIRE_BROWSER") == "1":
        pytest.fail(f"PEERIX_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest_asyncio.fixture(scope=LOOP, loop_scope=LOOP)
async def chromium() -> AsyncIterator[Callable[[], Any]]:
    """`await chromium()` -> the module's headless Chromium, launched on first use (a module
    of kernel-only tests launches none)."""
    state: dict[str, Any] = {}

    async def get() -> Any:
        if "browser" not in state:
            _require_browser()
            from playwright.async_api import async_playwright

            state["playwright"] = await async_playwright().start()
            state["browser"] = await state["playwright"].chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
        return state["browser"]

    try:
        yield get
    finally:
        if "browser" in state:
            await state["browser"].close()
        if "playwright" in state:
            await state["playwright"].stop()


@pytest_asyncio.fixture(loop_scope=LOOP)
async def nats_server() -> AsyncIterator[launcher.NatsServer]:
    """tests/conftest.py's nats-server (WebSocket listener, free ports), on this module's loop."""
    try:
        binary = launcher.find_binary()
    except FileNotFoundError as error:
        pytest.skip(f"nats-server binary missing: {error}")
    async with launcher.start(websocket_port=0, binary=binary) as server:
        yield server


PairFactory = Callable[..., Any]


@pytest_asyncio.fixture(loop_scope=LOOP)
async def pair(nats_server: Any, page_url: str, chromium: Any) -> AsyncIterator[PairFactory]:
    """`await pair("kernel", "browser_relay", ...)` -> (a, b): side `a` is impolite, `b` polite
    (docs/PROTOCOL.md: polite = the larger id), on one fresh room prefix of one nats-server."""
    made: list[Side] = []
    prefix = "t" + secrets.token_hex(4)
    tag = secrets.token_hex(3)
    contexts: list[Any] = []

    async def make(
        impl_a: str,
        impl_b: str,
        connection_timeout: float = 15,
        drop_offers: tuple[int, int] = (0, 0),
    ) -> tuple[Side, Side]:
        sides: list[Side] = []
        for name, impl, drop in (("a", impl_a, drop_offers[0]), ("b", impl_b, drop_offers[1])):
            id = f"{name}-{impl}-{tag}"
            if impl == "kernel":
                side: Side = KernelSide(id, nats_server.url, prefix, connection_timeout, drop)
            elif impl in ("browser", "browser_relay"):
                context = await (await chromium()).new_context()
                contexts.append(context)
                page = await context.new_page()
                page.on("console", functools.partial(_console, id))
                await page.goto(page_url)
                relay = None
                if impl == "browser_relay":
                    relay = KernelRelay(id, nats_server.url, prefix, connection_timeout, drop)
                side = BrowserSide(
                    id, page, nats_server.websocket_url, prefix, connection_timeout, drop, relay
                )
            else:
                raise ValueError(f"unknown implementation {impl!r}")
            made.append(side)  # closed after the test, even if it fails to start
            await side.start()
            sides.append(side)
        return sides[0], sides[1]

    try:
        yield make
    finally:
        for side in made:  # shown by pytest when the test failed
            with contextlib.suppress(Exception):
                print(f"--- {side.id} ({side.impl}) events:")
                for line in await side.history():
                    print("   ", line)
            for line in _CONSOLE.pop(side.id, []):
                print("    console", line)
        for side in made:
            with contextlib.suppress(Exception):
                await side.close()
        for context in contexts:
            with contextlib.suppress(Exception):
                await context.close()


_CONSOLE: dict[str, list[str]] = {}


def _console(id: str, message: Any) -> None:
    _CONSOLE.setdefault(id, []).append(f"{message.type}: {message.text}")
