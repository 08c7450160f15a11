"""notebooks/05-browser-camera.ipynb in JupyterLab: the browser's camera reaches the kernel.

Every cell runs here, those tagged `skip-execution` (skipped by tests/test_notebooks.py)
included: a `BrowserPeer` in the page connects to a kernel `Peer` over the browser's own
RTCPeerConnection and publishes Chromium's fake camera (`--use-fake-device-for-media-stream`, a
640x480 test pattern with a clock), which the kernel reads as numpy frames; then the ipywebrtc
fallback, whose snapshots a second kernel peer receives.

This module's Chromium has no `--use-fake-ui-for-media-stream`: with it every page has camera
permission from the start, and Chrome then shows its IP addresses in ICE candidates. Without
it, as in a reader's browser before "Allow", the page's first candidates carry mDNS `.local`
names; the test grants the permission (as the reader's click does) just before the camera
cell, and the notebook's first exercise sees the addresses appear.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.lab import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Lab, LabServer
from tests.browser.lab_notebooks import cell_with, code_cells, open_notebook, output_of

pytestmark = pytest.mark.browser

NOTEBOOK = "05-browser-camera.ipynb"
#: Camera permission is granted by the test (below), not by a flag for every page.
ARGS = [arg for arg in CHROMIUM_ARGS if arg != "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="module")
def chromium(lab_server: LabServer) -> Iterator[Any]:
    """Headless Chromium with the fake camera but no automatic camera permission."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def save_outputs(lab: Lab, cells: list[int]) -> None:
    """What the notebook printed so far, to artifacts/browser/ (read it when a check fails)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    text = "\n".join(f"--- cell {i}\n{lab.output_text(i)}" for i in cells)
    (ARTIFACTS / f"{lab.name}-outputs.txt").write_text(text)


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return float(match.group(1))


@pytest.mark.timeout(300)
def test_the_kernel_receives_the_browsers_camera_over_webrtc(lab: Lab) -> None:
    page = lab.page
    open_notebook(lab, NOTEBOOK)
    cells = code_cells(lab)
    camera_cell = cell_with(lab, "await bp.publish_camera()")
    fallback_cell = cell_with(lab, "bob received {len(received)}")
    for index in cells[:-1]:
        if index == camera_cell:
            # The reader clicks "Allow" when the page asks; here the test grants it.
            page.context.grant_permissions(["camera"], origin=lab.server.url)
        try:
            lab.run_cell(index, timeout=120)
        finally:
            save_outputs(lab, cells)
        if index == fallback_cell:
            # bob's VideoView shows the camera, live (the fake camera's clock moves), before
            # the exercises replace ada's stream.
            view = output_of(lab, "VideoView(added").locator(".peerix-video")
            page.wait_for_selector(".peerix-video.has-frame")
            first, second = lab.screenshots_apart(view, "received", 5)
            assert first != second, "bob's video did not change between two screenshots"

    # Trickled CANDIDATE messages from the page reached the kernel, with mDNS names: the page
    # had no camera permission when it joined.
    printed = lab.output_text(cell_with(lab, "await all_candidates_in(1)"))
    assert number(r"the page trickled CANDIDATE messages: (\d+)", printed) >= 1, printed
    printed = lab.output_text(cell_with(lab, "remote_candidates = pd.DataFrame("))
    assert ".local" in printed, printed
    assert re.search(r"pair in use: kernel host \S+ <-> browser (host|prflx) \S+", printed), printed

    # The camera over a real RTCPeerConnection: live 640x480 frames with content in the kernel.
    printed = lab.output_text(camera_cell)
    assert "the kernel received 10 frames of (480, 640, 3) from the browser" in printed, printed
    assert number(r"lowest pixel spread ([\d.]+)", printed) > 5, printed  # not a blank picture
    assert number(r"(\d+) different mean brightnesses", printed) > 1, printed  # a live picture

    # The codec the answer put first is one the browser offered and aiortc decodes; the
    # kernel decoded frames of it.
    printed = lab.output_text(cell_with(lab, "def video_codecs("))
    codec = re.search(r"negotiated codec\s*: (\w+) \((\d+)\)", printed)
    assert codec and codec.group(1) in ("VP8", "H264"), printed
    assert f"{codec.group(1)} ({codec.group(2)})" in printed.split("the browser offered:")[1]
    assert number(r"(\d+) frames decoded", printed) > 0, printed

    # The fallback: ipywebrtc's CameraStream plays, its snapshots reach bob as camera frames.
    video = output_of(lab, "CameraStream(").locator("video")
    page.wait_for_function("(v) => v.videoWidth > 0 && !v.paused", arg=video.element_handle())
    assert video.evaluate("v => [v.videoWidth, v.videoHeight]") == [640, 480]
    assert "publishing the camera stream" in lab.output_text(cell_with(lab, "not in globals()"))
    printed = lab.output_text(cell_with(lab, "bob received {len(received)}"))
    assert "bob received 10 frames of (480, 640, 3), 0 stamped" in printed, printed
    assert "frames came from the camera" in printed, printed

    # Exercise 1: with the permission granted, the re-joined page shows IP addresses.
    printed = lab.output_text(cell_with(lab, "await all_candidates_in(2)"))
    held = printed.split("after the re-join, the kernel holds:")[1].split("\n")[0]
    assert ".local" not in held and re.search(r"'(host|prflx)'", held), printed
    # Exercise 2: the browser, in the room first, offered to `late`.
    printed = lab.output_text(cell_with(lab, 'late = Peer(id="late"'))
    assert "kernel: offerer of the browser's connection, ICE controlling" in printed, printed
    assert "late: answerer of the browser's connection, ICE controlled" in printed, printed
    # Exercise 3: the smaller synthetic picture.
    assert "(240, 320, 3)" in lab.output_text(cell_with(lab, "small = synthetic("))

    lab.screenshot(output_of(lab, "bp = BrowserPeer("), "browser-peer")
    lab.screenshot(output_of(lab, "CameraStream("), "camera")

    # Clean up (run_cell fails on an error in the cell).
    lab.run_cell(cells[-1], timeout=30)
