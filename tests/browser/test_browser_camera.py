"""notebooks/05-browser-camera.ipynb in JupyterLab, with Chromium's fake camera.

The cells tagged `skip-execution` (skipped by tests/test_notebooks.py) run here: ipywebrtc's
CameraStream opens Chromium's fake camera (`--use-fake-device-for-media-stream`, a 640x480 test
pattern; `--use-fake-ui-for-media-stream` grants the permission), `camera_stream()` pulls its
frames into the kernel, ada publishes them, and bob reads them as numpy arrays.

Both flags are among the browser tests' CHROMIUM_ARGS (conftest.py), so the session's browser
and JupyterLab serve here too.
"""

from __future__ import annotations

import pytest

from testbed.lab import Lab
from tests.browser.lab_notebooks import cell_with, open_notebook, output_of, run_all_but_last

pytestmark = pytest.mark.browser

NOTEBOOK = "05-browser-camera.ipynb"


@pytest.mark.timeout(180)
def test_browser_camera_frames_reach_the_second_peer(lab: Lab) -> None:
    page = lab.page
    open_notebook(lab, NOTEBOOK)
    last = run_all_but_last(lab, timeout=120)

    # The camera cell shows the fake camera, playing.
    video = output_of(lab, "CameraStream(").locator("video")
    video.wait_for()
    page.wait_for_function("(v) => v.videoWidth > 0 && !v.paused", arg=video.element_handle())
    assert video.evaluate("v => [v.videoWidth, v.videoHeight]") == [640, 480]

    # The fallback did not kick in: the camera stream was published...
    assert "publishing the camera stream" in lab.output_text(cell_with(lab, "not in globals()"))
    # ...and bob read camera frames (no synthetic stamp) as numpy arrays.
    printed = lab.output_text(cell_with(lab, "async with frames("))
    assert "bob received 10 frames of (480, 640, 3), 0 stamped" in printed, printed
    assert "frames came from the camera" in printed, printed

    # bob's VideoView shows the camera, live: its picture changes (the fake camera's clock).
    view = output_of(lab, "VideoView(added").locator(".peerix-video")
    page.wait_for_selector(".peerix-video.has-frame")
    first, second = lab.screenshots_apart(view, "received", 5)
    assert first != second, "bob's video did not change between two screenshots"
    lab.screenshot(output_of(lab, "CameraStream("), "camera")

    # Clean up: the stream stops, so does bob's view.
    lab.run_cell(last, timeout=30)
    page.wait_for_selector(".peerix-video[data-status='ended']")
