"""binder/start: an embedded NATS server next to a command, gone when the command ends.

Binder runs `binder/start jupyter lab ...` and `make lab` does the same; here the command is a
short Python script that talks to the server through the exported addresses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "binder" / "start"

pytest.importorskip("nats")

# The command run by binder/start: a NATS round trip through PEERIX_NATS_URL, and a TCP
# connection to the WebSocket listener; prints what it saw as JSON.
CLIENT = textwrap.dedent(
    """
    import asyncio, json, os, socket
    from urllib.parse import urlparse

    import nats

    async def main():
        nc = await nats.connect(os.environ["PEERIX_NATS_URL"], connect_timeout=5)
        sub = await nc.subscribe("peerix.binder-test")
        await nc.publish("peerix.binder-test", b"hello")
        message = await sub.next_msg(timeout=5)
        await nc.close()
        ws = urlparse(os.environ["PEERIX_NATS_WS_URL"])
        socket.create_connection((ws.hostname, ws.port), timeout=5).close()
        print(json.dumps({
            "url": os.environ["PEERIX_NATS_URL"],
            "ws_url": os.environ["PEERIX_NATS_WS_URL"],
            "echo": message.data.decode(),
        }))

    asyncio.run(main())
    """
)


def run_start(*command: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PEERIX_NATS_LOG": str(tmp_path / "nats.log"),
    }
    env.pop("PEERIX_NATS_URL", None)
    return subprocess.run(
        [str(START), *command], capture_output=True, text=True, env=env, timeout=60
    )


def accepts(url: str) -> bool:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
    except OSError:
        return False
    return True


def gone(url: str, timeout: float = 10.0) -> bool:
    """True once nothing accepts connections at `url` (polled: the helper checks every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while accepts(url):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.timeout(90)
def test_start_runs_the_command_next_to_nats_and_stops_it(tmp_path: Path) -> None:
    result = run_start(sys.executable, "-c", CLIENT, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["echo"] == "hello"  # NATS answered while the command ran
    assert seen["url"].startswith("nats://127.0.0.1:")
    assert seen["ws_url"].startswith("ws://127.0.0.1:")
    assert f"NATS: {seen['url']}" in result.stderr
    # The command has exited: the server is gone, both listeners closed.
    assert gone(seen["url"]), f"NATS still answers at {seen['url']}"
    assert not accepts(seen["ws_url"].replace("ws://", "tcp://"))
    log = (tmp_path / "nats.log").read_text()
    assert "the command exited: stopping NATS" in log, log


@pytest.mark.timeout(90)
def test_start_keeps_the_command_exit_code_and_busy_ports_fall_back(tmp_path: Path) -> None:
    # Take the preferred client port if we can: binder/start must then pick another one.
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", 4222))
        blocker.listen()
    except OSError:
        pass  # already taken by something else: the fallback is exercised all the same
    try:
        script = "import os; print(os.environ['PEERIX_NATS_URL']); raise SystemExit(3)"
        result = run_start(sys.executable, "-c", script, tmp_path=tmp_path)
    finally:
        blocker.close()
    assert result.returncode == 3, result.stderr
    url = result.stdout.strip()
    assert url.startswith("nats://127.0.0.1:") and not url.endswith(":4222"), url
    assert gone(url)


def test_start_without_a_command_says_how(tmp_path: Path) -> None:
    result = run_start(tmp_path=tmp_path)
    assert result.returncode == 2
    assert "usage: binder/start COMMAND" in result.stderr


def test_binder_requirements_install_the_lab_extra() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == [".[lab]"]
    assert os.access(START, os.X_OK)
