"""`python -m bench [--full] [NAME ...]`: run every benchmark module of this package (or the
named ones), print each one's wall time and the total.

`make bench` runs this, and must stay under 10 minutes on a 2-core machine: the slowest modules
run at suite size here (SUITE below: fewer runs, a shorter idle window, the CI size of the soak
and the glare storm; the fault matrix's default is its quick preset). `--full` runs every
module at its own full size (`bench.faults --full` included), which is what
`python -m bench.NAME` does for one module and what docs/BENCHMARKS.md reports unless it says
otherwise.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench

from ._common import loadavg

# Options each module gets under `python -m bench` (not with --full).
SUITE: dict[str, list[str]] = {
    "audio": ["--window", "10", "--settle", "2"],  # 1 and 3 AudioViews, 10 s windows
    "classroom": ["--sizes", "8", "--window", "5"],  # one class of 8 pages, and the reference
    "media": ["--runs", "2"],
    "encode_once": ["--runs", "1", "--window", "4", "--receivers", "3", "6"],
    "memory": ["--runs", "2", "--idle", "5"],
    "soak": ["--quick"],
    "glare_storm": ["--quick"],
}
FULL: dict[str, list[str]] = {"faults": ["--full"]}


def modules() -> list[str]:
    """The benchmark modules: every module of the package but the `_private` helpers."""
    return sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        print("modules: " + ", ".join(modules()))
        print("options of one: python -m bench.NAME --help")
        return 0
    full = "--full" in argv
    argv = [a for a in argv if a != "--full"]
    names = argv or modules()
    times: dict[str, float] = {}
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "main", None)
        if run is None:
            continue
        options = (FULL if full else SUITE).get(name, [])
        print(
            f"== bench.{name} {' '.join(options) + ' ' if options else ''}(load average {loadavg()})",
            flush=True,
        )
        sys.argv = [f"bench.{name}", *options]  # each module parses its own options
        started = time.monotonic()
        run()
        times[name] = time.monotonic() - started
        print(f"== bench.{name}: {times[name]:.0f} s", flush=True)
    if len(times) > 1:
        print("\n| module | wall time (s) |\n|---|---|")
        for name, seconds in times.items():
            print(f"| bench.{name} | {seconds:.0f} |")
        total = sum(times.values())
        print(f"| total | {total:.0f} ({total / 60:.1f} min) |")
        print(f"load average at the end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
