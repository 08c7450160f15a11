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

from tests.browser.no_gesture import NoGesture

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


# -- sound: the browser's microphone in, remote sound out ---------------------------------------
@pytest.mark.timeout(240)
def test_browser_peer_microphone_reaches_a_kernel_peer(lab) -> None:
    """BrowserPeer(camera=True, microphone=True), then publish_camera(video=False, audio=True):
    the kernel peer hears Chromium's fake microphone (its beeps) in numpy frames."""
    page = lab.page
    lab.open("microphone_peer.ipynb")
    lab.run_cell(1, timeout=60)
    page.wait_for_selector(".peerix-bp")
    lab.run_cell(2, timeout=120)
    heard = tagged(lab.output_text(2), "KERNEL HEARS")
    print("camera and microphone:", heard["level"])
    assert heard["kinds"] == ["audio", "video"], heard
    level = heard["level"]
    assert level["frames"] >= 150 and level["shape"] == [1, 1920], level  # Opus: s16 stereo
    assert level["peak"] > 0.05 and level["max_rms_dbfs"] > -30, level  # silence is -inf
    assert heard["video"]["shape"] == [480, 640, 3] and heard["video"]["changes"] > 1, heard
    # The own preview tile is muted (no echo of one's own microphone).
    (own,) = [t for t in heard["tiles"] if t["local"]]
    assert own["muted"] and own["sound"] == "off" and own["audio_tracks"] == 1, own
    assert page.locator(".peerix-bp-tile.is-local video").evaluate("v => v.muted")

    lab.run_cell(3, timeout=120)
    alone = tagged(lab.output_text(3), "MIC ONLY")
    print("microphone alone:", alone["level"])
    assert alone["answer"]["tracks"] == ["audio"] and alone["kinds"] == ["audio"], alone
    assert alone["level"]["peak"] > 0.05 and alone["level"]["max_rms_dbfs"] > -30, alone
    lab.run_cell(4, timeout=60)
    assert "CLOSED" in lab.output_text(4)


TILE = ".peerix-bp-tile:has(video[data-label='tone'])"
SOUND_PLAYS = """([selector, advance]) => {
    // The tile's <video> plays with its sound: not muted, not paused, its clock runs.
    const v = document.querySelector(`${selector} video`);
    if (!v || v.muted || v.paused || v.dataset.sound !== "on") return false;
    if (!v.srcObject || !v.srcObject.getAudioTracks().length) return false;
    const key = `t${advance}`;
    if (v.dataset[key] === undefined) v.dataset[key] = String(v.currentTime);
    return v.currentTime >= Number(v.dataset[key]) + advance;
}"""


def open_sound_tiles(lab) -> dict:
    lab.open("sound_tiles.ipynb")
    lab.run_cell(1, timeout=60)
    lab.run_cell(2, timeout=60)
    return tagged(lab.output_text(2), "TILE")


@pytest.mark.timeout(180)
def test_tiles_play_remote_sound(lab) -> None:
    """With autoplay allowed (the browser tests' flag), a remote tile plays with its sound."""
    page = lab.page
    tile = open_sound_tiles(lab)
    assert tile["audio_tracks"] == 1 and not tile["local"], tile
    page.wait_for_function(SOUND_PLAYS, arg=[TILE, 1.0], timeout=30_000)
    assert page.locator(f"{TILE} .peerix-bp-sound").is_hidden()
    lab.screenshot(page.locator(TILE), "sound-on")

    # Shown twice in the page, the stream plays in both views, its sound in one only.
    lab.run_cell(3, timeout=60)
    page.wait_for_function(
        """() => document.querySelectorAll("video[data-label='tone']").length === 2
            && [...document.querySelectorAll("video[data-label='tone']")].every(v => !v.paused)""",
        timeout=30_000,
    )
    sounds = page.evaluate(
        """() => [...document.querySelectorAll("video[data-label='tone']")]
            .map(v => [v.dataset.sound, v.muted])"""
    )
    assert sorted(sounds) == [["elsewhere", True], ["on", False]], sounds
    lab.run_cell(4, timeout=60)
    assert "CLOSED" in lab.output_text(4)


@pytest.mark.timeout(180)
def test_tile_sound_waits_for_a_click_where_autoplay_is_blocked(lab_needs_a_click) -> None:
    """Without the autoplay flag the tile plays muted with a "Click to enable sound" button;
    a click (a real one, through Playwright's input) gives it its sound."""
    lab = lab_needs_a_click
    page = lab.page
    script = NoGesture(lab)
    script.open("sound_tiles.ipynb")
    script.run_cell(1)
    tile = tagged(script.run_cell(2), "TILE")
    assert tile["audio_tracks"] == 1, tile
    assert script.js("navigator.userActivation.hasBeenActive") is False  # nobody clicked yet
    script.until(
        f"""(() => {{
            const v = document.querySelector("{TILE} video");
            const button = document.querySelector("{TILE} .peerix-bp-sound");
            return !!v && v.dataset.sound === "blocked" && v.muted && !v.paused
                && v.currentTime > 0.5 && !!button && !button.hidden;
        }})()""",
        30,
        "a muted tile, playing, with its button",
    )  # the picture plays meanwhile, muted
    button = page.locator(f"{TILE} .peerix-bp-sound")
    assert "enable sound" in button.inner_text().lower()
    lab.screenshot(page.locator(TILE), "sound-blocked")
    button.click()
    page.wait_for_function(SOUND_PLAYS, arg=[TILE, 1.0], timeout=30_000)
    assert button.is_hidden()
    lab.screenshot(page.locator(TILE), "sound-on-after-click")
    lab.run_cell(4, timeout=60)
