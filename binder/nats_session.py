"""Run the embedded NATS server for as long as the process that started this one lives.

binder/start starts it in the background, then `exec`s JupyterLab (or any command) in its own
place: the command keeps the parent's process id, and when it exits this process is re-parented.
That is the signal to stop NATS, however the command ended, with no trap to forget.

    python binder/nats_session.py --urls FILE [--port 4222] [--websocket-port 4223]

Once the server is ready, FILE gets `PEERIX_NATS_URL=...` and `PEERIX_NATS_WS_URL=...` lines
(written whole, then renamed). A preferred port that is taken falls back to any free one.
Ctrl-C in the terminal is ignored (JupyterLab asks to confirm its own shutdown); SIGTERM stops.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
from pathlib import Path

from peerix_nb import nats_server

POLL_SECONDS = 0.2


def port_or_any(port: int, host: str = "127.0.0.1") -> int:
    """`port` if it can be bound on `host` right now, else 0 (any free port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return 0
    return port


def write_urls(path: Path, server: nats_server.NatsServer) -> None:
    """Write the server's addresses as shell assignments, atomically."""
    text = f"PEERIX_NATS_URL={server.url}\nPEERIX_NATS_WS_URL={server.websocket_url}\n"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--urls", type=Path, required=True, help="file to write the URLs to")
    parser.add_argument("--port", type=int, default=4222, help="preferred client port")
    parser.add_argument("--websocket-port", type=int, default=4223, help="preferred WS port")
    args = parser.parse_args(argv)

    parent = os.getppid()
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    server = nats_server.start(port_or_any(args.port), port_or_any(args.websocket_port))
    try:
        server.wait_ready()
        write_urls(args.urls, server)
        print(f"NATS {server.url} (WebSocket {server.websocket_url}), pid {server.pid}", flush=True)
        while not stop.wait(POLL_SECONDS):
            if os.getppid() != parent:
                print("the command exited: stopping NATS", flush=True)
                break
            if not server.running:
                print(f"nats-server exited:\n{server.log}", flush=True)
                return 1
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
