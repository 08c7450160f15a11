"""Drive testbed/nats_peer_proc.py processes from asyncio: start them, send commands, await events.

Every wait has a deadline and fails with the process's recent output, never a bare timeout; a
process that exits while being waited on fails the wait at once. `PeerProcs` owns the processes
it starts and kills whatever is still running when it closes (tests/test_nats_rooms.py and
bench/nats_join.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The peer program these helpers drive.
PROGRAM = Path(__file__).with_name("nats_peer_proc.py")
#: How many output lines a failed wait shows.
_TAIL = 25

Record = dict[str, Any]


class PeerProcError(AssertionError):
    """A peer process did not print what was waited for (or exited first)."""


class PeerProc:
    """One running peer process: its parsed event lines and its stdin."""

    def __init__(self, id: str, process: asyncio.subprocess.Process) -> None:
        self.id = id
        self.process = process
        self.events: list[Record] = []
        self.stderr = bytearray()
        self._changed = asyncio.Condition()
        self._tasks = [
            asyncio.create_task(self._read_stdout(), name=f"proc:{id}:stdout"),
            asyncio.create_task(self._read_stderr(), name=f"proc:{id}:stderr"),
        ]

    def __repr__(self) -> str:
        return f"<PeerProc {self.id} pid={self.process.pid} events={len(self.events)}>"

    @property
    def exited(self) -> bool:
        return self.process.returncode is not None

    # -- output -------------------------------------------------------------------------------
    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                record = json.loads(line)
            except ValueError:
                record = {"name": "stdout", "data": line.decode(errors="replace").rstrip()}
            async with self._changed:
                self.events.append(record)
                self._changed.notify_all()
        await self.process.wait()
        async with self._changed:
            self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self.stderr += chunk

    def mark(self) -> int:
        """An index into `events`: pass it as `since` to wait only for what comes after now."""
        return len(self.events)

    def find(self, name: str, since: int = 0, **fields: Any) -> list[Record]:
        """Events named `name` (at `since` or later) whose fields equal `fields`."""
        return [
            e
            for e in self.events[since:]
            if e.get("name") == name and all(e.get(k) == v for k, v in fields.items())
        ]

    def errors(self, since: int = 0) -> list[Record]:
        return [e for e in self.events[since:] if e.get("name") in ("error", "cmd:error", "fatal")]

    def tail(self) -> str:
        lines = [json.dumps(e) for e in self.events[-_TAIL:]]
        err = self.stderr.decode(errors="replace").strip()
        if err:
            lines.append("stderr: " + err[-2000:])
        return "\n".join(lines)

    async def wait(
        self,
        name: str,
        timeout: float = 20.0,
        since: int = 0,
        where: Callable[[Record], bool] | None = None,
        **fields: Any,
    ) -> Record:
        """The first event `name` (at `since` or later) matching `fields` and `where`."""

        def found() -> Record | None:
            for event in self.find(name, since, **fields):
                if where is None or where(event):
                    return event
            return None

        async def until() -> Record:
            async with self._changed:
                while (event := found()) is None:
                    if self.exited:
                        raise PeerProcError(
                            f"{self.id} exited (code {self.process.returncode}) before "
                            f"{name} {fields}:\n{self.tail()}"
                        )
                    await self._changed.wait()
                return event

        try:
            return await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            raise PeerProcError(
                f"{self.id}: no {name} {fields} within {timeout} s:\n{self.tail()}"
            ) from None

    # -- input --------------------------------------------------------------------------------
    def send_command(self, cmd: str, **args: Any) -> None:
        """Write one command line without waiting for its acknowledgement."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")

    async def command(self, cmd: str, timeout: float = 20.0, **args: Any) -> Record:
        """Run one command and return its `cmd:done` line; a `cmd:error` raises."""
        since = self.mark()
        self.send_command(cmd, **args)
        # Commands run one at a time in the process, so the next reply after `since` is ours.
        reply = await self._next_reply(since, timeout, cmd)
        return self._check_reply(cmd, reply)

    async def _next_reply(self, since: int, timeout: float, cmd: str) -> Record:
        async def until() -> Record:
            async with self._changed:
                while True:
                    for event in self.events[since:]:
                        if event.get("name") in ("cmd:done", "cmd:error"):
                            return event
                    if self.exited:
                        raise PeerProcError(f"{self.id} exited during {cmd}:\n{self.tail()}")
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            raise PeerProcError(
                f"{self.id}: no reply to {cmd} within {timeout} s:\n{self.tail()}"
            ) from None

    def _check_reply(self, cmd: str, reply: Record) -> Record:
        if reply["name"] == "cmd:error":
            raise PeerProcError(f"{self.id}: command {cmd} failed: {reply['error']}")
        return reply

    # -- ending -------------------------------------------------------------------------------
    def kill(self) -> float:
        """SIGKILL the process, as a crash would; returns time.monotonic() just before it."""
        now = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        return now

    async def aclose(self, grace: float = 5.0) -> None:
        """Ask the process to exit (end of stdin), kill it after `grace` seconds, reap it."""
        if not self.exited:
            with contextlib.suppress(Exception):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                self.kill()
                await self.process.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class PeerProcs:
    """Starts peer processes against one NATS URL and owns them (`async with`)."""

    def __init__(self, url: str | list[str]) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        self.procs: list[PeerProc] = []

    async def start(
        self,
        id: str,
        room: str,
        *,
        timeout: float | None = None,
        hashing: bool = False,
        key: str | None = None,
        join: bool = True,
        wait_joined: bool = True,
    ) -> PeerProc:
        """Start a peer process; by default wait until it has joined `room` (or is ready)."""
        args = [str(PROGRAM), "--room", room, "--id", id]
        for url in self.urls:
            args += ["--url", url]
        if timeout is not None:
            args += ["--timeout", str(timeout)]
        if hashing:
            args.append("--hashing")
        if key is not None:
            args += ["--key", key]
        if not join:
            args.append("--no-join")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        proc = PeerProc(id, process)
        self.procs.append(proc)
        if wait_joined:
            await proc.wait("room:join" if join else "ready")
        return proc

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self.procs), return_exceptions=True)

    async def __aenter__(self) -> PeerProcs:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def connected_pairwise(procs: list[PeerProc], timeout: float = 20.0, since: int = 0) -> None:
    """Wait until every process reports `connection:connected` and `control:open` for every other."""
    for proc in procs:
        for other in procs:
            if other is not proc:
                await proc.wait("connection:connected", timeout, since, remote=other.id)
                await proc.wait("control:open", timeout, since, remote=other.id)
