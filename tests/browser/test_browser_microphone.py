"""`from_widget` of an ipywebrtc CameraStream with audio, in JupyterLab with Chromium's fake
camera and microphone (tests/browser/notebooks/microphone_widget.ipynb).

The page captures the stream's sound with an AudioWorklet and pushes 20 ms PCM chunks over the
widget comm (widgets/camera.js); the kernel reads them as numpy frames. Chromium's fake
microphone beeps between silences, so the level is the loudest 20 ms and the peak over 3 s.
The BrowserPeer's microphone (over WebRTC) is in test_browser_peer.py.
"""

from __future__ import annotations

import json
import re

import pytest

from testbed.lab import Lab

pytestmark = pytest.mark.browser


def tagged(text: str, tag: str) -> dict:
    """The JSON after `TAG ` in a cell's output."""
    match = re.search(rf"^{re.escape(tag)} (.*)$", text, re.MULTILINE)
    assert match, f"no {tag} line in {text!r}"
    return json.loads(match.group(1))


@pytest.mark.timeout(240)
def test_microphone_of_a_camera_stream_reaches_the_kernel(lab: Lab) -> None:
    page = lab.page
    lab.open("microphone_widget.ipynb")
    lab.run_cell(1, timeout=60)
    video = page.locator(".jp-OutputArea video").first
    video.wait_for()
    page.wait_for_function("(v) => v.videoWidth > 0 && !v.paused", arg=video.element_handle())

    # 3 s of 20 ms frames, 48 kHz mono s16, with sound in them: the fake microphone's beeps.
    lab.run_cell(2, timeout=90)
    local = tagged(lab.output_text(2), "LOCAL")
    print("from_widget:", local)
    assert local["kinds"] == ["video", "audio"], local
    level = local["level"]
    assert level["frames"] >= 150 and level["shape"] == [1, 960], local
    assert level["dtype"] == "int16", local
    assert level["peak"] > 0.05 and level["max_rms_dbfs"] > -30, local  # silence is -inf
    assert local["rejected"] == 0, local
    # ...and the pictures still come.
    assert local["video"]["shape"] == [480, 640, 3] and local["video"]["changes"] > 1, local

    # Published to another kernel peer: Opus there and back, s16 stereo out of the decoder.
    lab.run_cell(3, timeout=90)
    remote = tagged(lab.output_text(3), "REMOTE")
    print("through Opus:", remote)
    assert remote["shape"] == [1, 1920] and remote["dtype"] == "int16", remote
    assert remote["peak"] > 0.05 and remote["max_rms_dbfs"] > -30, remote

    # Stopping the stream ends the track and closes the widget that pushed its sound.
    lab.run_cell(4, timeout=60)
    stopped = tagged(lab.output_text(4), "STOPPED")
    assert stopped == {"state": "ended", "recv": "MediaStreamError", "widgets": 1, "closed": True}
