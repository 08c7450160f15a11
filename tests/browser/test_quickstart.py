"""notebooks/01-quickstart.ipynb in real JupyterLab + Chromium, as a reader runs it.

Every cell but the last ("Leave") runs with "Run All Above"; then the test reads what a person
sees: ada's RoomWidget shows bob connected in its roster and bob's chat message, and bob's
ChatBox shows it as sent. Then the last cell runs: the roster empties.
"""

from __future__ import annotations

import pytest

from tests.browser.lab_notebooks import cell_with, open_notebook, output_of, run_all_above

pytestmark = pytest.mark.browser

ROOM = ".peerix-room"
MESSAGE = "hi ada, bob here"


@pytest.mark.timeout(180)
def test_quickstart_runs_in_jupyterlab(lab) -> None:
    page = lab.page
    open_notebook(lab, "01-quickstart.ipynb")
    # Everything up to the cell that leaves (the exercises come after it).
    last = run_all_above(lab, "await ada.leave()")

    room = page.locator(ROOM)
    row = room.locator(".peerix-roster tr[data-state='connected']")
    row.wait_for()
    name, state, connect_time = row.locator("td").all_inner_texts()[1:4]
    assert (name, state) == ("bob", "connected")
    assert connect_time.endswith(" ms"), connect_time
    status = room.locator(".peerix-room-status").inner_text()
    assert "in room lobby as ada" in status and "1 connected" in status, status

    # bob's message arrived in ada's chat (the RoomWidget's), under bob's name...
    received = room.locator(".peerix-chat-msg", has_text=MESSAGE)
    received.wait_for()
    assert received.locator(".peerix-chat-name").inner_text() == "bob"
    # ...and bob's ChatBox shows it as his own.
    sent = output_of(lab, "ChatBox(bob)").locator(".peerix-chat-msg.is-self", has_text=MESSAGE)
    sent.wait_for()
    printed = lab.output_text(cell_with(lab, "bob_chat.send_message"))
    assert "ada got 'hi ada, bob here' from bob on 'chat'" in printed, printed
    # The event DataFrame rendered as a table with the signaling rows.
    table = output_of(lab, "ada.events.to_frame()").locator("table").inner_text()
    assert "signal:send" in table and "connection:connected" in table
    lab.screenshot(room, "room")
    lab.screenshot(page, "page")

    # The cell that leaves: the roster empties and the widget says so.
    lab.run_cell(last, timeout=30)
    room.locator(".peerix-roster-empty").wait_for()
    page.wait_for_function(
        "() => document.querySelector('.peerix-room-status').innerText.includes('not in a room')"
    )
    lab.screenshot(room, "room-left")
