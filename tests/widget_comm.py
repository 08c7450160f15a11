"""Widget tests without a browser: a comm that records what the kernel sends, and the page's
custom messages fed in as the comm would deliver them (tests/test_widgets.py,
tests/test_browser_relay.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import comm
import pytest
from comm.base_comm import BaseComm


class RecordingComm(BaseComm):
    """A comm that keeps what the kernel would send to the browser, and tells `listeners`
    (a fake page: `listener(comm, msg_type, data)`) about each message."""

    log: list[tuple[str, Any, list[bytes]]]
    listeners: list[Any] = []

    def __init__(self, **kwargs: Any) -> None:
        self.log = []
        super().__init__(**kwargs)

    def publish_msg(
        self,
        msg_type: str,
        data: Any = None,
        metadata: Any = None,
        buffers: Any = None,
        **keys: Any,
    ) -> None:
        self.log.append((msg_type, data, [bytes(b) for b in buffers or []]))
        for listener in list(self.listeners):
            listener(self, msg_type, data)


@pytest.fixture(autouse=True)
def recording_comm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every widget made in the test gets a RecordingComm (import this into a test module)."""
    monkeypatch.setattr(comm, "create_comm", lambda **kwargs: RecordingComm(**kwargs))
    RecordingComm.listeners = []
    yield
    RecordingComm.listeners = []


def page(widget: Any, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
    """Deliver a custom message from the page (the JS front end), as the comm would."""
    widget._handle_msg(
        {
            "content": {"data": {"method": "custom", "content": content}},
            "buffers": [memoryview(b) for b in buffers or []],
        }
    )


def pushed(widget: Any, kind: str | None = None) -> list[tuple[dict[str, Any], list[bytes]]]:
    """Custom messages the kernel sent to the page (of one `type`), with their buffers."""
    return [
        (data["content"], buffers)
        for msg_type, data, buffers in widget.comm.log
        if msg_type == "comm_msg"
        and data.get("method") == "custom"
        and (kind is None or data["content"].get("type") == kind)
    ]
