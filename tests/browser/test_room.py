"""RoomWidget in real JupyterLab + Chromium, with a scripted second peer in the same kernel.

notebooks/room.ipynb: `ada` is driven by the widget; `bob` publishes a synthetic video and
answers chat messages. The test acts as a person would: clicks, types, reads, screenshots.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

ROOM = ".peerix-room"
TILE_VIDEO = ".peerix-tile .peerix-video"

CANVAS_VARIES = """(el) => {
    // The drawn picture is not blank: the pixel values of the canvas vary.
    const c = el.querySelector('canvas');
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let min = 255, max = 0;
    for (let i = 0; i < data.length; i += 4 * 97) { min = Math.min(min, data[i]); max = Math.max(max, data[i]); }
    return max - min;
}"""


@pytest.mark.timeout(150)
def test_room_widget_join_video_chat_events_leave(lab) -> None:
    page = lab.page
    lab.open("room.ipynb")
    lab.run_all()
    lab.wait_cells_done(timeout=60)
    assert "bob is in the lobby" in lab.output_text(2)
    room = page.locator(ROOM)
    assert "No remotes" in room.locator(".peerix-roster").inner_text()
    assert "not in a room" in room.locator(".peerix-room-status").inner_text()

    # Join with the button: bob appears in the roster, by name, connected, with a time.
    room.locator("button.peerix-room-join").click()
    row = room.locator(".peerix-roster tr[data-state='connected']")
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "bob" and cells[2] == "connected", cells
    assert cells[3].endswith(" ms"), cells
    page.wait_for_function(
        "() => document.querySelector('.peerix-room-status').innerText.includes('1 connected')"
    )
    assert room.locator("button.peerix-room-join").is_disabled()

    # bob's synthetic video: a tile whose pixels change between two screenshots.
    tile = room.locator(TILE_VIDEO)
    page.wait_for_selector(f"{TILE_VIDEO}.has-frame", timeout=30_000)
    assert "bob · camera" in tile.locator(".peerix-video-title").inner_text()
    assert tile.evaluate(CANVAS_VARIES) > 50, "the tile's picture is blank"
    first, second = lab.screenshots_apart(tile, "tile", 10)
    assert first != second, "the video tile did not change between two screenshots"

    # Chat: type, Enter; bob's handler answers; both lines show with names.
    chat_input = room.locator(".peerix-chat-input")
    chat_input.fill("hello bob")
    chat_input.press("Enter")
    reply = room.locator(".peerix-chat-msg", has_text="bob got: hello bob")
    reply.wait_for()
    assert reply.locator(".peerix-chat-name").inner_text() == "bob"
    mine = room.locator(".peerix-chat-msg.is-self", has_text="hello bob")
    assert mine.locator(".peerix-chat-name").inner_text() == "ada"
    assert chat_input.input_value() == ""

    # The live event table has rows, including the connection, and filters by group.
    events = room.locator(".peerix-events tbody tr")
    assert events.count() > 5
    room.locator(".peerix-events tr[data-event='connection:connected']").first.wait_for()
    room.locator(".peerix-events-chip[data-group='connection']").click()
    page.wait_for_function(
        """() => {
            const rows = [...document.querySelectorAll('.peerix-events tbody tr')];
            return rows.length > 0 && rows.every(r => r.dataset.event.startsWith('connection'));
        }"""
    )
    room.locator(".peerix-events-chip[data-group='*']").click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('.peerix-events tbody tr')]
            .some(r => r.dataset.event.startsWith('channel'))"""
    )
    lab.screenshot(room, "joined")

    # Leave: the roster empties and the tile goes.
    room.locator("button.peerix-room-leave").click()
    page.wait_for_function(
        "() => document.querySelector('.peerix-roster').innerText.includes('No remotes')"
    )
    page.wait_for_function("() => document.querySelectorAll('.peerix-tile').length === 0")
    page.wait_for_function(
        "() => document.querySelector('.peerix-room-status').innerText.includes('not in a room')"
    )
    assert not room.locator("button.peerix-room-join").is_disabled()
    room.locator(".peerix-events tr[data-event='room:leave']").wait_for()
    lab.screenshot(room, "left")
