"""RoomWidget: one cell to join a room, see who is there, watch and hear them, chat, see events.

An ipywidgets composition of the other widgets plus a roster. The buttons call the public
Peer API only (`open`, `join`, `leave`); every failure, raised at once or by the task later,
is shown in the widget's status line (and logged), so a button never fails silently.

Each remote stream is a tile: a VideoView when it has video (which also plays its sound), an
AudioView when it has sound only; either has a mute toggle and a level meter that lights up
while that remote is speaking.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

import ipywidgets

from ._common import (
    Coalesce,
    Resources,
    check_options,
    check_peer,
    describe,
    display_name,
    escape,
    logger,
)
from .audio import AudioView
from .chat import ChatBox
from .events_view import EventsView
from .video import VideoView

if TYPE_CHECKING:
    from ..events import Event
    from ..media import MediaStream
    from ..peer import Peer
    from ..remote import RemotePeer
    from ..seams import RemoteInfo

_STATE_COLOURS = {
    "connected": "#2e7d32",
    "connecting": "#ef6c00",
    "new": "#757575",
    "disconnected": "#c62828",
    "failed": "#c62828",
    "closed": "#757575",
}


class _Tile:
    """One remote stream: a VideoView (picture and sound) or, for sound only, an AudioView."""

    def __init__(self, remote: RemoteInfo, stream: MediaStream, label: str, width: str) -> None:
        title = f"{display_name(remote.metadata, remote.id[:8])} · {label}"
        self.stream = stream
        self.view: VideoView | AudioView = (
            VideoView(stream, title=title)
            if stream.video_tracks
            else AudioView(stream, title=title)
        )
        self.box = ipywidgets.Box(
            [self.view], layout=ipywidgets.Layout(width=width, margin="0 6px 6px 0")
        )
        self.box.add_class("peerix-tile")

    def close(self) -> None:
        self.view.close()
        self.box.close()


class RoomWidget(ipywidgets.VBox):
    """Join/Leave with room and name fields, a roster, video tiles, a chat and an event table.

    `RoomWidget(peer, room=None, name=None, label="chat")`: `name` is announced as
    `metadata={"name": name}`; `label` is the chat's data channel, opened before joining.
    Closing the widget does not leave the room (the Peer is yours): call `peer.leave()`.
    """

    def __init__(
        self,
        peer: Peer,
        room: str | None = None,
        name: str | None = None,
        label: str = "chat",
        *,
        events: int = 100,
        tile_width: str = "320px",
        **kwargs: Any,
    ) -> None:
        check_peer(peer, "RoomWidget")
        check_options(type(self), kwargs)
        self.peer = peer
        self.label = label
        self.tile_width = tile_width
        self._resources = Resources(self._on_task_error)
        self._busy = ""  # "joining" / "leaving" while a task of ours runs
        self._error = ""
        self._connect_ms: dict[str, float] = {}  # remote id -> ms to connect (timing() total)
        self._timing_stale = False
        self._tiles: dict[tuple[str, str], _Tile] = {}

        joined_name = display_name(peer.metadata, "") if peer.joined else ""
        self.room_field = ipywidgets.Text(
            value=room if room is not None else (peer.room if peer.joined else ""),
            placeholder="room",
            description="Room",
            layout=ipywidgets.Layout(width="220px"),
        )
        self.name_field = ipywidgets.Text(
            value=name if name is not None else joined_name,
            placeholder="your name",
            description="Name",
            layout=ipywidgets.Layout(width="220px"),
        )
        self.join_button = ipywidgets.Button(description="Join", button_style="primary")
        self.leave_button = ipywidgets.Button(description="Leave")
        self.status = ipywidgets.HTML()
        self.roster = ipywidgets.HTML()
        self.tiles = ipywidgets.Box(layout=ipywidgets.Layout(flex_flow="row wrap", margin="4px 0"))
        self.chat = ChatBox(
            peer,
            label,
            open_channel=False,
            layout=ipywidgets.Layout(flex="1 1 40%", margin="0 12px 0 0"),
        )
        self.events_view = EventsView(
            peer,
            last=events,
            compact=True,
            max_height="220px",
            layout=ipywidgets.Layout(flex="1 1 60%"),
        )
        for widget, cls in (
            (self.room_field, "peerix-room-room"),
            (self.name_field, "peerix-room-name"),
            (self.join_button, "peerix-room-join"),
            (self.leave_button, "peerix-room-leave"),
            (self.status, "peerix-room-status"),
            (self.roster, "peerix-roster"),
            (self.tiles, "peerix-tiles"),
        ):
            widget.add_class(cls)
        header = ipywidgets.HBox(
            [self.room_field, self.name_field, self.join_button, self.leave_button]
        )
        bottom = ipywidgets.HBox([self.chat, self.events_view])
        super().__init__([header, self.status, self.roster, self.tiles, bottom], **kwargs)
        self.add_class("peerix-room")

        # hop() runs a click on the home loop and shows (and logs) anything it raises, under
        # the function's name: never a dead button. ipywidgets passes the button.
        def join(_button: Any) -> None:
            self.join()

        def leave(_button: Any) -> None:
            self.leave()

        self.join_button.on_click(self._resources.hop(join))
        self.leave_button.on_click(self._resources.hop(leave))
        self._roster = Coalesce(self._resources, self._render_roster, 0.05)
        on = self._resources.on
        on(peer, "connection", self._on_connection)
        on(peer, "room", self._on_room)
        on(peer, "driver", self._on_room)
        on(peer, "stream:add", self._on_stream_add)
        on(peer, "stream:remove", self._on_stream_remove)
        on(peer, "track", self._on_track)
        on(peer, "error", self._on_error_event)
        self._adopt_existing()
        self._render_roster()
        self._render_status()

    # -- the buttons ------------------------------------------------------------------------
    def join(self) -> None:
        """What the Join button does: open the chat channel, join with the fields' values."""
        room = self.room_field.value.strip()
        name = self.name_field.value.strip()
        self._error = ""
        try:
            if self.label and self.label not in self.peer.channels:
                self._resources.watch(self.peer.open(self.label), f"open {self.label!r}")
            task = self.peer.join(room=room, metadata={"name": name} if name else None)
        except Exception as error:  # bad arguments raise at once: show them
            self._show_error(error, "join")
            return
        self._busy = "joining"
        self._render_status()
        self._resources.watch(task, "join", done=self._task_done)

    def leave(self) -> None:
        """What the Leave button does: `peer.leave()`."""
        self._error = ""
        try:
            task = self.peer.leave()
        except Exception as error:
            self._show_error(error, "leave")
            return
        self._busy = "leaving"
        self._render_status()
        self._resources.watch(task, "leave", done=self._task_done)

    def close(self) -> None:
        """Close the widget and everything it shows (the Peer stays in its room)."""
        if not hasattr(self, "events_view"):  # __init__ raised: nothing of ours to undo
            super().close()
            return
        self._resources.close()
        for tile in self._tiles.values():
            tile.close()
        self._tiles.clear()
        self.chat.close()
        self.events_view.close()
        for child in self.children:
            _close_tree(child)
        super().close()

    # -- peer events ------------------------------------------------------------------------
    def _on_connection(self, event: Event) -> None:
        remote = event.remote
        if remote is not None:
            if event.name == "connection:new":
                self._connect_ms.pop(remote.id, None)
            elif event.name == "connection:connected":
                # until timing() has been read: connection:new -> connected
                created_at = cast("RemotePeer", remote).created_at  # a Peer's events: its own
                self._connect_ms[remote.id] = (time.monotonic() - created_at) * 1000.0
                self._timing_stale = True
        self._roster.poke()
        self._render_status()

    def _on_room(self, event: Event) -> None:
        if event.name == "room:leave":
            for key in list(self._tiles):
                self._remove_tile(key)
            self._connect_ms.clear()
            self._roster.now()
        self._render_status()

    def _on_stream_add(self, event: Event) -> None:
        if event.remote is not None and event.stream is not None:
            self._add_tile(event.remote, event.stream, event.label or event.stream.id)

    def _on_stream_remove(self, event: Event) -> None:
        if event.remote is not None and event.stream is not None:
            self._remove_tile((event.remote.id, event.stream.id))

    def _on_track(self, event: Event) -> None:
        if event.remote is None or event.stream is None or event.kind not in ("video", "audio"):
            return
        key = (event.remote.id, event.stream.id)
        tile = self._tiles.get(key)
        if tile is not None and isinstance(tile.view, AudioView) and event.stream.video_tracks:
            self._remove_tile(key)  # sound only until now: a VideoView plays both
            tile = None
        if tile is not None:
            tile.view.refresh_source()
        elif event.name == "track:add":
            self._add_tile(event.remote, event.stream, event.label or event.stream.id)

    def _on_error_event(self, event: Event) -> None:
        error = event.error
        who = f" ({event.remote.id[:8]})" if event.remote is not None else ""
        self._error = (describe(error) if error is not None else "error") + who
        self._render_status()

    # -- tiles ------------------------------------------------------------------------------
    def _add_tile(self, remote: RemoteInfo, stream: MediaStream, label: str) -> None:
        key = (remote.id, stream.id)
        if key in self._tiles or not stream.tracks or self._resources.closed:
            return
        try:
            tile = _Tile(remote, stream, label, self.tile_width)
        except Exception as error:
            self._show_error(error, "tile")
            return
        self._tiles[key] = tile
        self.tiles.children = (*self.tiles.children, tile.box)

    def _remove_tile(self, key: tuple[str, str]) -> None:
        tile = self._tiles.pop(key, None)
        if tile is None:
            return
        self.tiles.children = tuple(c for c in self.tiles.children if c is not tile.box)
        tile.close()

    def _adopt_existing(self) -> None:
        """A widget made after joining shows the remotes and streams already there."""
        if not self.peer.connections:
            return
        self._timing_stale = True
        for remote in list(self.peer.connections.values()):
            for label, stream in list(remote.streams.items()):
                self._add_tile(remote, stream, label)

    # -- rendering --------------------------------------------------------------------------
    def _read_timing(self) -> None:
        """Times to connect as `peer.events.timing()` reports them (its `total` column), so the
        roster agrees with the analysis; read only after a connection connected."""
        self._timing_stale = False
        try:
            timing = self.peer.events.timing()
            row: Any  # a namedtuple of the timing columns
            for row in timing.dropna(subset=["total"]).itertuples():
                self._connect_ms[str(row.remote)] = float(row.total)  # the last attempt wins
        except Exception as error:  # the roster works without it: keep the local measure
            logger.debug("timing() for the roster failed: %r", error)

    def _render_roster(self) -> None:
        if self._resources.closed:
            return
        if self._timing_stale:
            self._read_timing()
        remotes = list(self.peer.connections.values())
        if not remotes:
            self.roster.value = '<div class="peerix-roster-empty"><i>No remotes.</i></div>'
            return
        rows = []
        for remote in remotes:
            ms = self._connect_ms.get(remote.id)
            colour = _STATE_COLOURS.get(remote.state, "inherit")
            rows.append(
                f'<tr data-remote="{escape(remote.id)}" data-state="{escape(remote.state)}">'
                f'<td title="{escape(remote.id)}"><code>{escape(remote.id[:8])}</code></td>'
                f'<td class="peerix-roster-name">{escape(display_name(remote.metadata, ""))}</td>'
                f'<td class="peerix-roster-state" style="color:{colour}">{escape(remote.state)}</td>'
                f'<td class="peerix-roster-time">{"" if ms is None else f"{ms:.0f} ms"}</td></tr>'
            )
        cell = 'style="text-align:left;padding:1px 10px 1px 0"'
        self.roster.value = (
            '<table class="peerix-roster-table" style="border-collapse:collapse">'
            f"<thead><tr><th {cell}>remote</th><th {cell}>name</th><th {cell}>state</th>"
            f"<th {cell}>time to connect</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )

    def _render_status(self) -> None:
        if self._resources.closed:
            return
        peer = self.peer
        joined = peer.joined
        busy = self._busy
        if busy:
            state = f"{busy}…"
        elif joined:
            connected = sum(r.state == "connected" for r in peer.connections.values())
            who = display_name(peer.metadata, peer.id[:8])
            state = f"in room <b>{escape(peer.room)}</b> as <b>{escape(who)}</b> · {connected} connected"
        else:
            state = "not in a room"
        if joined and not peer.driver.active:
            state += " · signaling offline"
        html = f'<span class="peerix-room-state">{state}</span>'
        if self._error:
            html += (
                ' <span class="peerix-room-error" style="color:var(--jp-error-color1,#d32f2f)">'
                f"⚠ {escape(self._error)}</span>"
            )
        self.status.value = html
        self.join_button.disabled = joined or busy == "joining"
        self.leave_button.disabled = not joined and busy != "joining"
        self.room_field.disabled = self.name_field.disabled = joined or bool(busy)

    # -- errors -----------------------------------------------------------------------------
    def _task_done(self) -> None:
        self._busy = ""
        self._render_status()

    def _on_task_error(self, error: BaseException, where: str) -> None:
        self._show_error(error, where.removeprefix("peerix-widget:"))

    def _show_error(self, error: BaseException, where: str) -> None:
        self._error = f"{where}: {describe(error)}"
        self._render_status()


def _close_tree(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


__all__ = ["RoomWidget"]
