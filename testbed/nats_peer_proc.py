"""One Peer on a NatsDriver in its own process, driven over stdin and reporting on stdout.

Run: `python testbed/nats_peer_proc.py --url nats://127.0.0.1:4222 --room R --id ID [--timeout S]
[--hashing] [--key SECRET] [--no-join]`. Every event of the peer is printed as one JSON line
(`name`, `remote`, `state`, `label`, `data` when text, `error` {code, message}, `t` =
time.monotonic(), which is one clock for every process of a Linux machine). Commands are JSON
lines on stdin:

    {"cmd": "join", "room": "R"}            (only needed with --no-join, or after a leave)
    {"cmd": "open", "label": "chat"}        {"cmd": "close", "label": "chat"}
    {"cmd": "send", "label": "chat", "data": "hi"}
    {"cmd": "publish", "label": "cam"}      (peerix_nb.media.synthetic, 160x120 video at 15 fps;
                                             "width", "height", "fps", "audio": true to change)
    {"cmd": "leave"}                        {"cmd": "exit"}

Each command is acknowledged by a `cmd:done` line (with `result` where there is one) or a
`cmd:error` line. End of stdin or SIGTERM means exit: leave the room, close the driver, stop.
Tests (tests/test_nats_rooms.py) and the benchmark (bench/nats_join.py) drive it through
testbed/peer_procs.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import stat
import sys
import time
from typing import Any

from peerix_nb import Event, Peer, PeerixError
from peerix_nb.drivers.nats import NatsDriver


class Output:
    """JSON lines on stdout; asynchronous when stdout is a pipe, so a slow reader never stalls
    the event loop (and with it the peer's keepalives)."""

    def __init__(self) -> None:
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        if stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode):
            loop = asyncio.get_running_loop()
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, sys.stdout
            )
            self._writer = asyncio.StreamWriter(transport, protocol, None, loop)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        if self._writer is not None:
            self._writer.write(line.encode())
        else:  # a terminal or a file: small blocking writes are fine
            sys.stdout.write(line)
            sys.stdout.flush()

    async def aclose(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(ConnectionError):  # the reader is gone: nobody to tell
                await self._writer.drain()
            self._writer.close()


def event_record(event: Event) -> dict[str, Any]:
    """The JSON-friendly part of an event (a text payload is kept, bytes become their size)."""
    record: dict[str, Any] = {"name": event.name, "id": event.id, "t": time.monotonic()}
    if event.remote is not None:
        record["remote"] = event.remote.id
    for key in ("state", "label", "kind", "via"):
        value = getattr(event, key)
        if value is not None:
            record[key] = value
    if isinstance(event.data, str):
        record["data"] = event.data
    elif isinstance(event.data, (bytes, bytearray, memoryview)):
        record["bytes"] = len(event.data)
    if isinstance(event.detail, (str, int, float)):
        record["detail"] = event.detail
    if event.error is not None:
        record["error"] = {"code": event.error.code, "message": event.error.message}
    return record


class PeerProcess:
    """The peer, its driver and the command loop."""

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        self.args = args
        self.out = out
        self.driver = NatsDriver(
            args.url,
            # Reconnect quickly after a server restart (nats-py waits 2 s by default).
            reconnect_time_wait=args.reconnect_wait,
        )
        self.peer = Peer(
            id=args.id,
            driver=self.driver,
            connection_timeout=args.timeout,
            signaling_hashing=args.hashing,
            signaling_encryption_key=args.key,
        )
        self.peer.on("*", lambda event: out.write(event_record(event)))
        self.driver.on("*", self._on_driver_event)
        self.done = asyncio.Event()

    def _on_driver_event(self, event: Event) -> None:
        # The Peer reports driver:active/inactive only while joined; these come always.
        record: dict[str, Any] = {"name": f"nats:{event.name}", "t": time.monotonic()}
        if event.error is not None:
            record["error"] = {"code": event.error.code, "message": event.error.message}
        self.out.write(record)

    async def run(self) -> None:
        await self.driver.connect()
        self.out.write({"name": "ready", "id": self.peer.id, "t": time.monotonic()})
        if not self.args.no_join:
            await self.peer.join(room=self.args.room, metadata={"name": self.peer.id})
        await self.done.wait()

    async def command(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ValueError('a command is an object {"cmd": ...}')
            result = await self._execute(request)
        except Exception as error:
            code = error.code if isinstance(error, PeerixError) else "UNKNOWN_ERROR"
            self.out.write(
                {
                    "name": "cmd:error",
                    "t": time.monotonic(),
                    "error": {"code": code, "message": str(error)},
                    "line": line.decode(errors="replace").strip(),
                }
            )
            return
        record = {"name": "cmd:done", "cmd": request["cmd"], "t": time.monotonic()}
        if result is not None:
            record["result"] = result
        self.out.write(record)

    async def _execute(self, request: dict[str, Any]) -> Any:
        cmd, peer = request["cmd"], self.peer
        if cmd == "join":
            await peer.join(room=request.get("room", self.args.room), metadata={"name": peer.id})
        elif cmd == "open":
            await peer.open(request["label"])
        elif cmd == "close":
            await peer.close(request["label"])
        elif cmd == "send":
            return peer.send(request["data"], label=request.get("label"))
        elif cmd == "publish":
            from peerix_nb.media import synthetic

            stream = synthetic(
                video=True,
                audio=bool(request.get("audio", False)),
                width=int(request.get("width", 160)),
                height=int(request.get("height", 120)),
                fps=float(request.get("fps", 15)),
            )
            await peer.publish(stream, label=request.get("label"))
        elif cmd == "leave":
            await peer.leave()
        elif cmd == "exit":
            self.done.set()
        else:
            raise ValueError(f"unknown command {cmd!r}")
        return None

    async def read_commands(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            if line.strip():
                await self.command(line)
        self.done.set()  # end of stdin: the driving process is gone

    async def aclose(self) -> None:
        try:
            await self.peer.leave()
        finally:
            await self.driver.close()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", required=True, help="NATS server (repeatable)")
    parser.add_argument("--room", default="default")
    parser.add_argument("--id", default=None, help="peer id (default: a random UUID)")
    parser.add_argument("--timeout", type=float, default=15.0, help="connection_timeout (s)")
    parser.add_argument("--hashing", action="store_true", help="signaling_hashing=True")
    parser.add_argument("--key", default=None, help="signaling encryption secret")
    parser.add_argument("--no-join", action="store_true", help="wait for a join command")
    parser.add_argument("--reconnect-wait", type=float, default=0.2, help="NATS reconnect wait")
    args = parser.parse_args(argv)

    out = Output()
    await out.start()
    proc = PeerProcess(args, out)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, proc.done.set)
    commands = asyncio.create_task(proc.read_commands(), name="commands")
    code = 0
    try:
        await proc.run()
    except PeerixError as error:
        out.write(
            {
                "name": "fatal",
                "t": time.monotonic(),
                "error": {"code": error.code, "message": error.message},
            }
        )
        code = 2
    finally:
        commands.cancel()
        await asyncio.gather(commands, return_exceptions=True)
        await proc.aclose()
        out.write({"name": "exit", "t": time.monotonic()})
        await out.aclose()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
