"""NoGesture: drive a JupyterLab page the way a script would, never as a user.

Playwright's own `evaluate`, `wait_for_*` and locator calls run with Chromium's `userGesture`
set (seen here: after one `page.evaluate`, `navigator.userActivation.hasBeenActive` is true and
a new AudioContext runs), which lifts the autoplay block. Chromium's Runtime.evaluate through a
CDP session with `userGesture: false` does not: the tests of "click to enable sound" drive the
page with this until the click under test.
"""

from __future__ import annotations

import json
import time
from typing import Any

from testbed.lab import Lab


class NoGesture:
    """Scripts, waits, notebook opening and cell runs in `lab`'s page, without a gesture."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.cdp = lab.page.context.new_cdp_session(lab.page)

    def js(self, expression: str) -> Any:
        """The value of `expression` in the page (a promise is awaited)."""
        reply = self.cdp.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "returnByValue": True,
                "awaitPromise": True,
                "userGesture": False,
            },
        )
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} raised: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def until(self, expression: str, timeout: float = 60, what: str = "") -> Any:
        """Poll `expression` in the page (every 100 ms) until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while not (value := self.js(expression)):
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {timeout} s: {what or expression}")
            self.lab.page.wait_for_timeout(100)  # polling the page: the condition is the answer
        return value

    @staticmethod
    def idle(also: str = "true") -> str:
        """An expression: the notebook is open, its kernel idle, and `also`."""
        return f"""(() => {{
            const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            if (!w || !w.context || !w.context.isReady) return false;
            const k = w.sessionContext.session && w.sessionContext.session.kernel;
            return !!k && k.status === 'idle' && ({also});
        }})()"""

    def open(self, notebook: str) -> None:
        """Open `notebook` (a path in the lab's root) and wait for its idle kernel."""
        server = self.lab.server
        self.lab.page.goto(f"{server.url}/lab/tree/{notebook}?token={server.token}&reset")
        path = json.dumps(notebook)
        opened = f"window.jupyterapp.shell.currentWidget.context.path === {path}"
        self.until(self.idle(opened), 60, f"{notebook} open with an idle kernel")

    def run_cell(self, index: int, timeout: float = 90) -> str:
        """Run code cell `index`, wait for it, and return what it printed (its error raises)."""
        cell = f"window.jupyterapp.shell.currentWidget.content.widgets[{index}]"
        self.js(f"{cell}.model.outputs.clear(); {cell}.model.executionCount = null;")
        self.js(
            "(() => { const nb = window.jupyterapp.shell.currentWidget.content;"
            f" nb.activeCellIndex = {index};"
            " void window.jupyterapp.commands.execute('notebook:run-cell'); })()"
        )
        self.until(self.idle(f"{cell}.model.executionCount !== null"), timeout, f"cell {index}")
        outputs = json.loads(self.js(f"JSON.stringify({cell}.model.outputs.toJSON())"))
        for out in outputs:
            if out.get("output_type") == "error":
                raise AssertionError(f"cell {index}: {out.get('ename')}: {out.get('evalue')}")
        return "".join(
            "".join(o.get("text", "")) for o in outputs if o.get("output_type") == "stream"
        )
