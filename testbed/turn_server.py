"""A coturn `turnserver` (Debian package `coturn`) on loopback, for relay-only tests and figures.

Used by tests/test_reliability.py (fixture `turn_server`) and bench/faults.py. The flags are
the ones seen working here (/work/shared/TESTING.md, "TURN"): long-term credentials for one
user, no TLS/DTLS, loopback listening and relay addresses, `--allow-loopback-peers` (without
it coturn allocates relay candidates but refuses to relay to 127.0.0.1, and connections never
open, with no error anywhere), no config file and a private user database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: Printed by turnserver once its listeners and relay threads exist.
READY_LINE = "Total General servers"


class TurnServerError(RuntimeError):
    """turnserver is missing, exited, or did not become ready."""


def find_turnserver() -> str | None:
    """Path of coturn's `turnserver`, or None if it is not installed."""
    found = shutil.which("turnserver")
    if found:
        return found
    return "/usr/bin/turnserver" if os.access("/usr/bin/turnserver", os.X_OK) else None


def free_udp_and_tcp_port() -> int:
    """A loopback port free for both UDP and TCP (turnserver listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise TurnServerError("no loopback port free for both UDP and TCP")


class TurnServer:
    """One turnserver process with user `username`:`password` in realm `realm`.

    `start()` spawns it; `await wait_ready()` polls its log and TCP port; `stop()` (SIGTERM,
    then SIGKILL after `grace`) also removes its temp dir. `async with TurnServer() as t:`
    does all three.
    """

    def __init__(
        self,
        username: str = "u",
        password: str = "p",
        realm: str = "r",
        binary: str | None = None,
    ) -> None:
        found = binary or find_turnserver()
        if found is None:
            raise TurnServerError(
                "coturn's turnserver is not installed (Debian: apt-get install -y coturn)"
            )
        self.binary = found
        self.username, self.password, self.realm = username, password, realm
        self.port = free_udp_and_tcp_port()
        low = random.randrange(40000, 60000, 200)  # a relay range of its own per server
        self.relay_ports = range(low, low + 200)
        self.dir = Path(tempfile.mkdtemp(prefix="peerix-turn-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}"

    def ice_servers(
        self, username: str | None = None, credential: str | None = None
    ) -> list[dict[str, str]]:
        """The `ice_servers` list for a Peer (the configured user unless told otherwise)."""
        return [
            {
                "urls": self.url,
                "username": self.username if username is None else username,
                "credential": self.password if credential is None else credential,
            }
        ]

    @property
    def log(self) -> str:
        try:
            return (self.dir / "turnserver.log").read_text(errors="replace")
        except OSError:
            return ""

    def args(self) -> list[str]:
        return [
            self.binary,
            "-n",  # no config file: Debian's /etc/turnserver.conf is ignored
            f"--user={self.username}:{self.password}",
            f"--realm={self.realm}",
            "--lt-cred-mech",
            "--no-tls",
            "--no-dtls",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={self.port}",
            "--allow-loopback-peers",
            "--no-cli",
            f"--min-port={self.relay_ports.start}",
            f"--max-port={self.relay_ports.stop - 1}",
            f"--pidfile={self.dir / 'turnserver.pid'}",
            f"--userdb={self.dir / 'turndb'}",  # not the system's /var/lib/turn/turndb
            "--log-file=stdout",
        ]

    def start(self) -> TurnServer:
        with open(self.dir / "turnserver.log", "wb") as log:
            # Its own session: a Ctrl-C meant for the test run does not reach it first.
            self.process = subprocess.Popen(
                self.args(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    async def wait_ready(self, timeout: float = 10.0) -> TurnServer:
        if self.process is None:
            self.start()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.log or not await _tcp_open(self.port):
            if self.process.poll() is not None:
                raise TurnServerError(
                    f"turnserver exited with {self.process.returncode}:\n{self.log[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise TurnServerError(f"turnserver not ready in {timeout} s:\n{self.log[-2000:]}")
            await asyncio.sleep(0.02)
        return self

    def stop(self, grace: float = 5.0) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def aclose(self, grace: float = 5.0) -> None:
        await asyncio.to_thread(self.stop, grace)

    async def __aenter__(self) -> TurnServer:
        try:
            return await self.wait_ready()
        except BaseException:
            await self.aclose()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _tcp_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (TimeoutError, OSError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
