"""ChatBox: a chat panel over one data-channel label of a Peer.

The history is a synced list (kernel -> browser, re-rendered whole, so a second view or a
reloaded page shows everything); what the user types comes back as a custom message
(`{"type": "send", "text": ...}`), which the kernel sends with `peer.send(text, label)`.
"""

from __future__ import annotations

import pathlib
import time
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ._common import Resources, check_options, check_peer, describe, display_name, running_loop

if TYPE_CHECKING:
    from ..events import Event
    from ..peer import Peer


class ChatBox(anywidget.AnyWidget):
    """History (sender name and time), an input box and Enter to send, on channel `label`.

    `ChatBox(peer, label="chat")` shows messages from every remote on that channel and
    opens the channel (for current and future remotes) if the peer has not yet.
    """

    _esm = pathlib.Path(__file__).with_name("chat.js")
    _css = pathlib.Path(__file__).with_name("chat.css")

    messages = traitlets.List(traitlets.Dict()).tag(sync=True)
    label = traitlets.Unicode("chat").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    placeholder = traitlets.Unicode("Message, Enter to send").tag(sync=True)

    def __init__(
        self,
        peer: Peer,
        label: str = "chat",
        *,
        name: str | None = None,
        max_messages: int = 500,
        open_channel: bool = True,
        **kwargs: Any,
    ) -> None:
        check_peer(peer, "ChatBox")
        if not isinstance(label, str) or not label:
            raise ValueError(f"label must be a non-empty channel label, got {label!r}")
        check_options(type(self), kwargs)
        super().__init__(label=label, **kwargs)
        self.peer = peer
        self.name = name
        self.max_messages = max_messages
        self._resources = Resources(self._show_error)
        self._resources.on(peer, "channel:message", self._on_message)
        self.on_msg(self._resources.hop(self._on_browser_message))
        if open_channel and label not in peer.channels and running_loop() is not None:
            try:
                self._resources.watch(peer.open(label), f"open {label!r}")
            except Exception as error:
                self._show_error(error, "open")

    # -- public -----------------------------------------------------------------------------
    def send_message(self, text: str) -> int:
        """Send `text` to every remote on the label, as if typed; returns how many got it."""
        text = str(text)
        if not text.strip():
            return 0
        try:
            count = self.peer.send(text, label=self.label)
        except Exception as error:
            self._show_error(error, "send")
            return 0
        if count == 0:
            self.error = (
                f"not sent: no open {self.label!r} channel yet (join a room with someone in it)"
            )
            return 0
        me = self.name or display_name(self.peer.metadata, "me")
        self._append({"from": self.peer.id, "name": me, "text": text, "self": True, "to": count})
        self.error = ""
        return count

    def close(self) -> None:
        """Stop listening to the peer and close the widget."""
        resources = getattr(self, "_resources", None)  # None: __init__ raised
        if resources is not None:
            resources.close()
        super().close()

    # -- events -----------------------------------------------------------------------------
    def _on_message(self, event: Event) -> None:
        if event.label != self.label or event.remote is None:
            return
        data = event.data
        if isinstance(data, (bytes, bytearray, memoryview)):
            text, kind = f"<{len(data)} bytes>", "bytes"
        else:
            text, kind = str(data), "text"
        remote = event.remote
        name = display_name(remote.metadata, remote.id[:8])
        self._append({"from": remote.id, "name": name, "text": text, "self": False, "kind": kind})

    def _on_browser_message(self, _widget: Any, content: Any, buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "send":
            self.send_message(str(content.get("text", "")))

    def _append(self, entry: dict[str, Any]) -> None:
        entry.setdefault("kind", "text")
        entry["time"] = time.time() * 1000.0  # ms since the epoch; the browser shows local time
        keep = max(0, self.max_messages - 1)
        self.messages = [*self.messages[len(self.messages) - keep :], entry] if keep else [entry]

    def _show_error(self, error: BaseException, where: str) -> None:
        self.error = f"{where}: {describe(error)}"


__all__ = ["ChatBox"]
