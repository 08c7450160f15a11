"""The same RoomWidget in Notebook 7 (the other target front end): join, video, chat."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


@pytest.mark.timeout(120)
def test_room_widget_in_notebook_7(lab) -> None:
    page = lab.page
    lab.open("room.ipynb", ui="notebook")
    lab.run_all()
    lab.wait_cells_done(timeout=60)
    room = page.locator(".peerix-room")
    room.locator("button.peerix-room-join").click()
    room.locator(".peerix-roster tr[data-state='connected']", has_text="bob").wait_for()
    page.wait_for_function(
        "() => +(document.querySelector('.peerix-tile .peerix-video')?.dataset.frames ?? 0) >= 10"
    )
    chat_input = room.locator(".peerix-chat-input")
    chat_input.fill("hi from notebook 7")
    chat_input.press("Enter")
    room.locator(".peerix-chat-msg", has_text="bob got: hi from notebook 7").wait_for()
    lab.screenshot(room, "room")
    room.locator("button.peerix-room-leave").click()
    page.wait_for_function(
        "() => document.querySelector('.peerix-roster').innerText.includes('No remotes')"
    )
