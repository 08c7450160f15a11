"""Helpers for running the teaching notebooks (notebooks/*.ipynb) in the session's JupyterLab."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from testbed.lab import Lab

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def open_notebook(lab: Lab, name: str) -> None:
    """Copy notebooks/`name` into the server's root and open it in JupyterLab."""
    shutil.copy(NOTEBOOKS / name, lab.server.root / name)
    lab.open(name)


def code_cells(lab: Lab) -> list[int]:
    """Indices of the code cells of the open notebook."""
    return lab.page.evaluate(
        """() => window.jupyterapp.shell.currentWidget.content.widgets
            .map((c, i) => c.model.type === 'code' ? i : -1).filter(i => i >= 0)"""
    )


def cell_with(lab: Lab, source: str) -> int:
    """Index of the first cell whose source contains `source`."""
    index = lab.page.evaluate(
        """(text) => window.jupyterapp.shell.currentWidget.content.widgets
            .findIndex(c => c.model.sharedModel.getSource().includes(text))""",
        source,
    )
    assert index >= 0, f"no cell contains {source!r}"
    return index


def run_all_above(lab: Lab, source: str, timeout: float = 90) -> int:
    """Run every cell above the first cell whose source contains `source` (as "Run All Above"
    does), wait for them, and return that cell's index (not run)."""
    stop = cell_with(lab, source)
    lab.execute_at(stop, "notebook:run-all-above")
    lab.wait_cells_done([i for i in code_cells(lab) if i < stop], timeout=timeout)
    return stop


def output_of(lab: Lab, source: str) -> Any:
    """The output area (a Playwright Locator) of the cell whose source contains `source`."""
    cell = lab.page.locator(".jp-Notebook .jp-Cell").nth(cell_with(lab, source))
    return cell.locator(".jp-OutputArea")
