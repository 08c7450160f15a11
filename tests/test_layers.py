"""No import cycle between peerix_nb modules (tools/import_cycles.py), counting imports inside
functions; only `if TYPE_CHECKING:` imports may point upward."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tools.import_cycles import cycles, import_graph, module_names, report

ROOT = Path(__file__).resolve().parents[1]
#: The modules that must be in no cycle: all of them.
CHECKED = frozenset(module_names(ROOT / "peerix_nb"))


def test_the_checker_finds_cycles_through_functions_but_not_type_checking(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .high import H\n"
    )
    (package / "high.py").write_text("from . import low\nfrom .sub import deep\n")
    (package / "sub").mkdir()
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "deep.py").write_text("def f():\n    from ..high import g\n")
    (package / "selfish.py").write_text("import pkg.selfish\n")
    found = cycles(import_graph(package))
    assert [component for component, _edges in found] == [
        ["pkg.high", "pkg.sub.deep"],
        ["pkg.selfish"],
    ]
    assert "pkg.sub.deep -> pkg.high  line 2 (inside a function)" in report(found)
    assert "pkg.low" not in report(found)


def test_no_import_cycle_through_the_checked_modules() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "import_cycles.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    print(run.stdout)  # every cycle in the package, checked modules or not (pytest -s shows it)
    found = cycles(import_graph(ROOT / "peerix_nb"))
    assert run.returncode == (1 if found else 0), run.stderr
    assert set(module_names(ROOT / "peerix_nb")) >= CHECKED, "a checked module is gone"
    offending = [component for component, _edges in found if CHECKED & set(component)]
    assert not offending, f"import cycles through {sorted(CHECKED)}:\n{run.stdout}"
