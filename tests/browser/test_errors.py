"""Errors show in the widget: joining an invalid room, refused at once or inside the task."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


@pytest.mark.timeout(90)
def test_invalid_room_errors_show_in_the_widget(lab) -> None:
    page = lab.page
    lab.open("errors.ipynb")
    lab.run_all()
    lab.wait_cells_done(timeout=60)
    rooms = page.locator(".peerix-room")
    assert rooms.count() == 2

    # An empty room name: peer.join raises ValueError before any task starts.
    empty = rooms.nth(0)
    empty.locator("button.peerix-room-join").click()
    error = empty.locator(".peerix-room-error")
    error.wait_for()
    assert "room must be a non-empty string" in error.inner_text()
    assert "not in a room" in empty.locator(".peerix-room-status").inner_text()
    assert not empty.locator("button.peerix-room-join").is_disabled()  # can try again
    lab.screenshot(empty, "empty-room")

    # A dotted room on NATS: the join task fails with PEER_SIGNALING_ERROR after the click.
    dotted = rooms.nth(1)
    dotted.locator("button.peerix-room-join").click()
    error = dotted.locator(".peerix-room-error")
    error.wait_for()
    text = error.inner_text()
    assert "PEER_SIGNALING_ERROR" in text and "team.alpha" in text, text
    page.wait_for_function(
        """() => document.querySelectorAll('.peerix-room-status')[1].innerText
            .includes('not in a room')"""
    )
    assert not dotted.locator("button.peerix-room-join").is_disabled()
    lab.screenshot(dotted, "dotted-room")
