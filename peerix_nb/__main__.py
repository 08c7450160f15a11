"""Command line: `python -m peerix_nb demo` (peers chatting in one process) and `... nats` (a local NATS server)."""

from __future__ import annotations

import sys

USAGE = """usage: python -m peerix_nb COMMAND [options]

commands:
  demo    three peers in one process connect over a MemoryDriver, chat, and print the event log
  nats    run an embedded nats-server in the foreground (--port, --websocket-port)
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from .demo import main as demo

        return demo()
    if command == "nats":
        from .nats_server import main as nats

        return nats(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
