"""BrowserPeer in real JupyterLab + headless Chromium (fake camera): browser peers in rooms.

Each notebook in notebooks/ is one feature; cells print `TAG {json}` lines read here. What a
person sees is asserted on the page (the <video> element's size and advancing currentTime,
chat text), what the kernel gets on numpy frames. Screenshots go to artifacts/browser/.
"""

from __future__ import annotations

import json
import re
import time

import pytest

pytestmark = pytest.mark.browser

VIDEO_PLAYS = """([label, advance]) => {
    // The <video> a person sees for `label`: it has a picture and its clock runs.
    const v = document.querySelector(`.peerix-bp-video[data-label="${label}"]`);
    if (!v || !v.videoWidth) return false;
    if (v.dataset.t0 === undefined) v.dataset.t0 = String(v.currentTime);
    return v.currentTime >= Number(v.dataset.t0) + advance;
}"""


def tagged(text: str, tag: str) -> dict:
    """The JSON after `TAG ` in a cell's output."""
    match = re.search(rf"^{re.escape(tag)} (.*)$", text, re.MULTILINE)
    assert match, f"no {tag} line in {text!r}"
    return json.loads(match.group(1))


def video_info(page, label: str) -> dict:
    return page.evaluate(
        """(label) => {
            const v = document.querySelector(`.peerix-bp-video[data-label="${label}"]`);
            return {width: v.videoWidth, height: v.videoHeight, t: v.currentTime, paused: v.paused};
        }""",
        label,
    )


@pytest.mark.timeout(240)
def test_kernel_and_browser_peer_via_kernel_relay(lab) -> None:
    page = lab.page
    started = time.monotonic()
    lab.open("browser_peer_relay.ipynb")
    lab.run_cell(1, timeout=60)
    page.wait_for_selector(".peerix-bp")

    # Chat both ways over a data channel between Chromium and aiortc.
    lab.run_cell(2, timeout=90)
    chat = tagged(lab.output_text(2), "CHAT")
    assert chat["sent"] == 1, chat
    assert "hello from the browser" in chat["kernel_got"], chat
    assert "hello from the kernel" in chat["browser_got"], chat
    page.locator(".peerix-bp-chat-msg", has_text="hello from the kernel").wait_for()

    # The browser's fake camera arrives in the kernel as numpy frames.
    lab.run_cell(3, timeout=90)
    got = tagged(lab.output_text(3), "KERNEL FRAMES")
    assert got["count"] == 15 and got["shape"] == [480, 640, 3], got
    assert got["min_std"] > 5, got  # not a blank picture
    assert got["changes"] > 1, got  # a live picture, not one frame repeated

    # The kernel's test pattern plays in the browser's <video>.
    page.wait_for_function(VIDEO_PLAYS, arg=["pattern", 1.0], timeout=30_000)
    info = video_info(page, "pattern")
    assert (info["width"], info["height"]) == (640, 480), info
    assert not info["paused"], info
    lab.run_cell(4, timeout=60)
    seen = tagged(lab.output_text(4), "BROWSER VIDEO")
    assert seen["later"]["current_time"] > seen["first"]["current_time"], seen
    lab.screenshot(page.locator(".peerix-bp"), "mixed-room")

    # The browser peer's events are in a kernel-side EventLog, signaling rows included.
    lab.run_cell(5, timeout=30)
    log = tagged(lab.output_text(5), "BROWSER LOG")
    assert log["peers"] == ["browser-peer"], log
    assert log["remotes"] == ["kernel-peer"], log
    for name in (
        "connection:connected",
        "channel:open",
        "stream:add",
        "signal:send",
        "signal:recv",
    ):
        assert name in log["events"], (name, log)
    assert log["signal_via"] == ["control", "driver"], log
    print(f"relay test took {time.monotonic() - started:.1f} s")


@pytest.mark.timeout(180)
def test_browser_peer_through_nats_websocket(lab) -> None:
    page = lab.page
    lab.open("browser_peer_nats.ipynb")
    lab.run_cell(1, timeout=60)
    try:
        lab.run_cell(2, timeout=90)
        got = tagged(lab.output_text(2), "NATS")
        assert got["signaling"] == "nats", got
        assert (
            "hello over NATS" in got["kernel_got"] and "hello back over NATS" in got["browser_got"]
        ), got
        assert got["frames"]["shape"] == [480, 640, 3] and got["frames"]["changes"] > 1, got
        # Signaling really went browser -> NATS -> kernel, not through the widget comm.
        assert got["kernel_driver_recv"] >= 2 and got["browser_driver_send"] >= 2, got
        status = page.locator(".peerix-bp-status").inner_text()
        assert f"NATS {got['websocket']}" in status and "1 connected" in status, status
        page.locator(".peerix-bp-chat-msg", has_text="hello back over NATS").wait_for()
        lab.screenshot(page.locator(".peerix-bp"), "nats")
    finally:
        lab.run_cell(3, timeout=60)  # stop the NATS server the kernel started
    assert "CLOSED" in lab.output_text(3)


OPEN_NOTEBOOK = (
    """(path) => { void window.jupyterapp.commands.execute('docmanager:open', {path}); }"""
)
NOTEBOOK_READY = """(path) => {
    const w = window.jupyterapp.shell.currentWidget;
    if (!w || !w.context || w.context.path !== path || !w.context.isReady) return false;
    const k = w.sessionContext.session && w.sessionContext.session.kernel;
    return !!k && k.status === 'idle';
}"""
OUTPUT_OF = """([path, index]) => {
    const panel = [...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === path);
    if (!panel) return '';
    return JSON.stringify(panel.content.widgets[index].model.outputs.toJSON());
}"""


def output_of(page, path: str, index: int) -> str:
    """The text outputs of cell `index` of the open notebook `path` (any tab, not only the current)."""
    outputs = json.loads(page.evaluate(OUTPUT_OF, [path, index]) or "[]")
    parts = []
    for out in outputs:
        if out.get("output_type") == "error":
            raise AssertionError(f"{path} cell {index}: {out.get('ename')}: {out.get('evalue')}")
        if out.get("output_type") == "stream":
            parts.append("".join(out.get("text", "")))
    return "".join(parts)


@pytest.mark.timeout(240)
def test_two_notebooks_chat_through_broadcast_channel(lab) -> None:
    page = lab.page
    lab.open("bc_alice.ipynb")
    lab.run_all()  # alice's driver shows, alice joins and waits for bob
    page.wait_for_selector(".peerix-bc[data-state='relaying']")
    page.evaluate(OPEN_NOTEBOOK, "bc_bob.ipynb")  # a second notebook (and kernel), same page
    page.wait_for_function(NOTEBOOK_READY, arg="bc_bob.ipynb", timeout=60_000)
    lab.run_all()
    deadline = time.monotonic() + 150
    results = {}
    while len(results) < 2:
        for name in ("alice", "bob"):
            text = output_of(page, f"bc_{name}.ipynb", 2)
            if "BC " in text:
                results[name] = tagged(text, "BC")
        assert time.monotonic() < deadline, f"no chat between the notebooks: {results}"
        page.wait_for_timeout(250)  # polling two notebooks' outputs: the condition is the output
    assert "hi from bob" in results["alice"]["got"], results
    assert "hi from alice" in results["bob"]["got"], results
    for result in results.values():
        assert result["active"] and result["state"] == "connected", results
        assert result["out"] > 0 and result["in"] > 0, results  # signaling went through the page
    assert page.locator(".peerix-bc[data-state='relaying']").count() == 2
    lab.screenshot(page.locator(".peerix-bc").last, "bob-driver")
