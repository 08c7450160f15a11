"""A second peer for 03-across-notebooks.ipynb: joins a room over NATS and answers chat messages.

    python second_peer.py --url nats://127.0.0.1:4222 --room across --name terminal

It replies "<name> got: <message>" to every message on the `chat` channel, and leaves when it
gets "bye" (or after --timeout seconds, if given). Ctrl-C leaves too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

from peerix_nb import Event, NatsDriver, Peer


def sender(event: Event) -> str:
    """The name a remote peer announced, else the start of its id."""
    metadata = event.remote.metadata if event.remote is not None else None
    if isinstance(metadata, dict) and metadata.get("name"):
        return str(metadata["name"])
    return event.remote.id[:8] if event.remote is not None else "?"


async def run(url: str, room: str, name: str, timeout: float | None) -> None:
    """Join `room` at `url` as `name`, answer chat messages until "bye" or `timeout` seconds."""
    peer = Peer(driver=NatsDriver(url))
    bye = asyncio.Event()

    @peer.on("connection")
    def show(event: Event) -> None:
        print(f"{name}: {event.name} {sender(event)}", flush=True)

    @peer.on("channel:message")
    def answer(event: Event) -> None:
        print(f"{name}: {sender(event)} says {event.data!r}", flush=True)
        if event.data == "bye":
            bye.set()
        elif event.remote is not None and event.label == "chat":
            event.remote.send(f"{name} got: {event.data}", "chat")

    await peer.open("chat")
    await peer.join(room=room, metadata={"name": name})
    print(f"{name}: joined room {room!r} at {url}", flush=True)
    try:
        await asyncio.wait_for(bye.wait(), timeout)
    except TimeoutError:
        print(f"{name}: no 'bye' within {timeout} s", flush=True)
    finally:
        await peer.leave()
        await peer.driver.close()
        print(f"{name}: left", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_url = os.environ.get("PEERIX_NATS_URL", "nats://127.0.0.1:4222")
    parser.add_argument("--url", default=default_url, help=f"NATS server (default {default_url})")
    parser.add_argument("--room", default="across")
    parser.add_argument("--name", default="terminal")
    parser.add_argument("--timeout", type=float, default=None, help="leave after this many s")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.url, args.room, args.name, args.timeout))


if __name__ == "__main__":
    main()
