"""Regenerate docs/img/room-widget.png: RoomWidget with two remotes, in real JupyterLab.

Run: `python -m tools.room_screenshot [--out docs/img/room-widget.png]` (~30 s; needs
/usr/bin/chromium and Playwright, as the browser tests do).

One kernel, three peers on the process-wide MemoryDriver: `ada` is driven by a RoomWidget,
`bob` and `cleo` are scripted: each publishes a synthetic stream (320x240, 15 fps, and its
440 Hz tone) and greets ada when her chat channel opens; bob answers what she says. The script
clicks Join as a person would, types a line into the chat, waits until the roster shows both
remotes connected, both video tiles are drawing and playing their sound (level meters lit;
Chromium runs with `--autoplay-policy=no-user-gesture-required`, testbed.lab.CHROMIUM_ARGS, so
no click is needed) and four chat lines are there, shows only the connection and channel
rows of the event table (its group toggles), then screenshots the widget element (PNG; the
palette is reduced with Pillow when the file would exceed 200 KB).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from bench._lab import Lab, browser_missing, chromium, jupyter_lab, notebook

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 200_000

SETUP = """\
from peerix_nb import Peer
from peerix_nb.media import synthetic
from peerix_nb.widgets import RoomWidget

ada = Peer()  # no driver: the process-wide MemoryDriver, shared with bob and cleo
RoomWidget(ada, room="lobby", name="ada")
"""

REMOTES = """\
async def scripted(name, greeting):
    peer = Peer()

    @peer.on("channel:open")
    def greet(e):
        if e.label == "chat" and e.remote.metadata.get("name") == "ada":
            e.remote.send(greeting, label="chat")

    @peer.on("channel:message")
    def reply(e):
        if name == "bob" and e.label == "chat" and e.remote.metadata.get("name") == "ada":
            e.remote.send(f"welcome, ada! you said: {e.data}", label="chat")

    await peer.open("chat")
    await peer.publish(synthetic(width=320, height=240, fps=15), label="camera")  # bars, a tone
    await peer.join(room="lobby", metadata={"name": name})
    return peer


bob = await scripted("bob", "hi ada, bob here")
cleo = await scripted("cleo", "hello from cleo")
print("bob and cleo are in the lobby")
"""

READY = """() => {
    const room = document.querySelector('.peerix-room');
    if (!room) return false;
    const connected = room.querySelectorAll(".peerix-roster tr[data-state='connected']").length;
    const tiles = [...room.querySelectorAll('.peerix-tile .peerix-video')];
    const drawing = tiles.filter(t => t.classList.contains('has-frame') && +t.dataset.frames > 30);
    // each tile's sound plays and its meter shows the tone (well above silence)
    const sounding = [...room.querySelectorAll('.peerix-tile .peerix-audio')].filter(
        a => a.dataset.state === 'playing' && +a.dataset.played > 1 && +a.dataset.level > -40);
    const lines = room.querySelectorAll('.peerix-chat-msg').length;
    return connected === 2 && drawing.length === 2 && sounding.length === 2 && lines >= 4;
}"""


# A loaded machine makes frames and sound late for a while: shoot a representative moment, both
# tiles at a steady frame rate and latency, both sounds playing (not buffering after an underrun).
STEADY = """() => {
    const tiles = [...document.querySelectorAll('.peerix-room .peerix-tile .peerix-video')];
    const sounds = [...document.querySelectorAll('.peerix-room .peerix-tile .peerix-audio')];
    return tiles.length === 2 && sounds.length === 2
        && tiles.every(t => +t.dataset.fps >= 12 && t.dataset.latency !== '' && +t.dataset.latency < 400)
        && sounds.every(a => a.dataset.state === 'playing' && +a.dataset.level > -40);
}"""


TILES = """() => [...document.querySelectorAll('.peerix-room .peerix-tile')].map(t => ({
    ...t.querySelector('.peerix-video')?.dataset, sound: {...t.querySelector('.peerix-audio')?.dataset}}))"""


FILTERED = """() => {
    const rows = [...document.querySelectorAll('.peerix-events tbody tr')];
    return rows.length > 0 && rows.every(
        r => r.dataset.event.startsWith('connection') || r.dataset.event.startsWith('channel'));
}"""


def shoot(out: Path) -> int:
    """Make the screenshot; returns its size in bytes."""
    with jupyter_lab() as lab_run, chromium(viewport=(1400, 1000)) as page:
        name = "room_screenshot.ipynb"
        notebook(lab_run.server.root / name, [SETUP, REMOTES])
        lab = Lab(page, lab_run.server, "room-screenshot")
        lab.open(name)
        lab.run_all()
        lab.wait_cells_done(timeout=90)
        room = page.locator(".peerix-room")
        room.locator("button.peerix-room-join").click()
        page.locator(".peerix-chat-msg", has_text="hello from cleo").wait_for()
        page.locator(".peerix-chat-msg", has_text="hi ada, bob here").wait_for()
        chat = room.locator(".peerix-chat-input")
        chat.fill("hi both!")
        chat.press("Enter")
        page.wait_for_function(READY, timeout=60_000)
        # the event table: connection and channel rows only (short, readable lines)
        for group in ("connection", "channel"):
            room.locator(f".peerix-events-chip[data-group='{group}']").click()
            room.locator(f".peerix-events-chip.is-on[data-group='{group}']").wait_for()
        page.wait_for_function(FILTERED)
        # JupyterLab's focus ring and the caret do not belong in the picture
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        try:
            page.wait_for_function(STEADY, timeout=120_000, polling=100)
        except Exception as e:
            raise SystemExit(
                f"the tiles never were steady (machine too busy?): {page.evaluate(TILES)}"
            ) from e
        png = room.screenshot()
        lab.server.shutdown_kernels()
    if len(png) > MAX_BYTES:
        from PIL import Image

        image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        png = buffer.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    return len(png)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.room_screenshot", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "room-widget.png")
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        raise SystemExit(f"cannot take the screenshot: {missing}")
    size = shoot(args.out)
    print(f"{args.out}: {size / 1000:.0f} KB")


if __name__ == "__main__":
    main()
