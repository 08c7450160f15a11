"""Sound in real JupyterLab + Chromium: AudioView of a remote tone, VideoView with sound,
RoomWidget tiles with a mute each, and the "click to enable sound" control.

The module's Chromium (tests/browser/conftest.py) runs with
`--autoplay-policy=no-user-gesture-required`, so an AudioContext plays without a click; the
enable-sound test launches a second Chromium without that flag and drives the page without
giving it a user gesture (`NoGesture`), so its AudioContext stays "suspended" until the click. What is asserted is what a person would hear and see: the
page's own counters (played seconds, underruns, level), the 440 Hz peak its AnalyserNode finds,
the controls' state, and what the page reported back to the kernel.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from testbed.lab import ARTIFACTS, Lab
from tests.browser.no_gesture import NoGesture

pytestmark = pytest.mark.browser

BAR = ".peerix-audio"


def _line(text: str, tag: str) -> Any:
    match = re.search(rf"^{tag} (.*)$", text, flags=re.M)
    assert match, f"no {tag} line in {text!r}"
    return json.loads(match.group(1))


def _wait_played(lab: Lab, bar: Any, seconds: float, timeout: float = 30) -> None:
    """Wait until the page's player behind `bar` has played `seconds` more than now."""
    start = float(bar.get_attribute("data-played") or 0)
    lab.page.wait_for_function(
        "([el, target]) => +el.dataset.played >= target",
        arg=[bar.element_handle(), start + seconds],
        timeout=timeout * 1000,
    )


@pytest.mark.timeout(240)
def test_audio_view_plays_a_remote_tone(lab: Lab) -> None:
    lab.open("audio_view.ipynb")
    lab.run_cell(1, timeout=90)
    bar = lab.page.locator(f".peerix-audio-view {BAR}")
    lab.page.wait_for_selector(f".peerix-audio-view {BAR}[data-state='playing']", timeout=60_000)

    lab.run_cell(2, timeout=90)
    played = _line(lab.output_text(2), "PLAYED")
    stats = played["stats"]
    print("PLAYED", json.dumps({k: v for k, v in played.items() if k != "stats"}), stats)
    assert stats["context"] == "running" and stats["error"] is None, stats
    # 10 s of wall time: ~10 s played (the page's own count of samples sent to the output)
    assert 0.85 * played["wall_s"] <= played["played_s"] <= played["wall_s"] + 0.3, played
    assert played["underruns"] <= 3, played
    assert stats["level_dbfs"] > -30, stats  # the tone is -17 dBFS RMS; silence is -100
    assert stats["peak_hz"] == pytest.approx(440, abs=12), stats
    # capture -> speaker of the stamped tone, reported by the page (two stamps a second)
    assert len(played["latencies"]) >= 10, played
    assert all(0 < latency < 1500 for latency in played["latencies"]), played

    # the page's own AnalyserNode, asked directly
    peak = bar.evaluate("el => el.peerixAudio.peakHz()")
    assert peak["hz"] == pytest.approx(440, abs=12) and peak["db"] > -70, peak
    assert float(bar.get_attribute("data-level") or -100) > -30
    lab.screenshot(lab.page.locator(".peerix-audio-view"), "playing")

    # muted from the kernel: the page follows and keeps counting what it plays (silently)
    lab.run_cell(3)
    lab.page.wait_for_selector(f".peerix-audio-view {BAR}[data-muted='true']")
    assert bar.locator(".peerix-audio-mute").get_attribute("data-icon") == "off"
    _wait_played(lab, bar, 1.0)
    lab.screenshot(lab.page.locator(".peerix-audio-view"), "muted")
    # the page's toggle: the kernel's trait follows (and every view with it)
    bar.locator(".peerix-audio-mute").click()
    lab.page.wait_for_selector(f".peerix-audio-view {BAR}[data-muted='false']")
    lab.run_cell(4)  # waits for a page report made after the click
    state = _line(lab.output_text(4), "STATE")
    assert state["muted"] is False and state["audio"]["muted"] is False, state
    lab.run_cell(5)


@pytest.mark.timeout(300)
def test_video_view_plays_picture_and_sound_and_room_tiles_mute_each(lab: Lab) -> None:
    lab.open("av_room.ipynb")
    lab.run_cell(1, timeout=90)
    video = lab.page.locator(".peerix-video").first
    lab.page.wait_for_selector(f".peerix-video {BAR}[data-state='playing']", timeout=60_000)

    lab.run_cell(2, timeout=90)
    av = _line(lab.output_text(2), "AV")
    print("AV", av)
    # both play: frames drawn, sound played (how smoothly is the AudioView test's business:
    # here one kernel runs three peers, two of them sending pictures)
    # (bounds for a busy machine: at load 11 on 2 cores it drew 41 frames and played 2.7 s of 6)
    assert av["frames"] >= 0.3 * 15 * av["wall_s"], av  # a 15 fps source, drawn
    assert av["played_s"] >= 0.3 * av["wall_s"], av
    assert av["level_dbfs"] > -30, av
    # both stamped: the picture's and the sound's capture-to-screen/speaker latencies
    assert av["latency_kind"] == "e2e", av
    assert av["video_latency_ms"] is not None and av["audio_latency_ms"] is not None, av
    assert float(video.locator(BAR).get_attribute("data-level") or -100) > -30
    lab.screenshot(video, "video-with-sound")

    lab.run_cell(3)
    lab.run_cell(4, timeout=120)
    tiles = _line(lab.output_text(4), "TILES")
    # bob's picture and sound in a VideoView, carol's sound alone in an AudioView
    assert sorted(t["kind"] for t in tiles) == ["AudioView", "VideoView"], tiles
    for tile in tiles:
        assert tile["audio"]["played_s"] > 1.0 and tile["audio"]["level_dbfs"] > -30, tile
        assert tile["audio"]["context"] == "running" and not tile["muted"], tile
    bars = lab.page.locator(f".peerix-tiles {BAR}")
    assert bars.count() == 2
    for i in range(2):
        _wait_played(lab, bars.nth(i), 1.0)
    # the level meters light up while the remote "speaks" (the tone)
    lab.page.wait_for_selector(f".peerix-tiles {BAR}.speaking")
    lab.screenshot(lab.page.locator(".peerix-room"), "room-tiles")

    # mute the first tile in the page: only that tile (and its kernel view) is muted
    bars.nth(0).locator(".peerix-audio-mute").click()
    lab.page.wait_for_function(
        """() => {
            const bars = document.querySelectorAll('.peerix-tiles .peerix-audio');
            return bars[0].dataset.muted === 'true' && bars[1].dataset.muted === 'false';
        }"""
    )
    _wait_played(lab, bars.nth(1), 0.5)  # the other tile plays on
    lab.run_cell(5)
    mutes = _line(lab.output_text(5), "MUTES")
    assert sorted(m["muted"] for m in mutes) == [False, True], mutes
    lab.screenshot(lab.page.locator(".peerix-room"), "room-one-muted")
    lab.run_cell(6)


# -- without the autoplay flag --------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_without_a_gesture_the_view_asks_for_a_click_then_plays(lab_needs_a_click: Lab) -> None:
    lab, quiet = lab_needs_a_click, NoGesture(lab_needs_a_click)
    quiet.open("audio_view.ipynb")
    quiet.run_cell(1)
    bar = ".peerix-audio-view .peerix-audio"
    # sound arrived and cannot play: the view says so, with a button
    quiet.until(
        f"(() => {{ const b = document.querySelector('{bar} .peerix-audio-enable');"
        " return !!b && !b.hidden; })()",
        what="the enable-sound button shows",
    )
    state = quiet.js(
        f"(() => {{ const el = document.querySelector('{bar}'); return {{...el.dataset,"
        " activated: navigator.userActivation.hasBeenActive,"
        " text: el.querySelector('.peerix-audio-enable').textContent}; })()"
    )
    assert state["activated"] is False, state  # the premise: no gesture reached the page
    assert state["context"] == "suspended" and state["blocked"] == "true", state
    assert float(state["played"]) == 0 and "enable sound" in state["text"].lower(), state
    lab.page.screenshot(path=str(ARTIFACTS / f"{lab.name}-needs-a-click.png"))

    view = lab.page.locator(".peerix-audio-view")
    element = view.locator(BAR)
    view.locator(".peerix-audio-enable").click()  # a user gesture: the page resumes
    lab.page.wait_for_selector(f"{bar}[data-context='running']")
    view.locator(".peerix-audio-enable").wait_for(state="hidden")
    _wait_played(lab, element, 2.0)
    assert float(element.get_attribute("data-level") or -100) > -30
    lab.screenshot(view, "after-the-click")
    lab.run_cell(4)  # waits for a page report made after this
    state = _line(lab.output_text(4), "STATE")
    assert state["audio"]["context"] == "running" and state["audio"]["played_s"] > 1.0, state
    assert state["audio"]["dropped_suspended"] > 0, state  # what came before the click
    lab.run_cell(5)
