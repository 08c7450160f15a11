"""BrowserPeer: a Peerix peer that runs in the notebook page, on the browser's RTCPeerConnection.

The widget's JavaScript (peer.js and friends, bundled by `_bundle.py`) is a complete Peerix
v0.1 peer; this class configures it, relays its signaling when asked to, drives it (join,
leave, open, send, publish the camera) and records its events in an `EventLog` with the same
schema as a kernel `Peer` (`browser_peer.events`, peer id = the browser peer's id).

How it signals, chosen by `driver=`:
- a peerix_nb `Driver` (default: the process-wide MemoryDriver that `Peer()` uses): the kernel
  relay. The page's subscribe/unsubscribe/dispatch calls become custom messages that this
  class performs on that driver, in order, and delivered messages go back as binary buffers.
  The browser peer joins any room the kernel can reach, MemoryDriver included.
- `"ws://host:port"` or `NatsWebSocket(url, prefix=...)`: the page talks to NATS over its
  WebSocket listener directly (it keeps signaling if the kernel restarts).
- a `BroadcastChannelDriver`: the page uses `BroadcastChannel(name)` directly (notebooks and
  tabs of one browser, no server).

Media and data always flow browser <-> peer over WebRTC; only signaling takes these paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anywidget
import traitlets

from ..channels import ChannelOptions
from ..config import check_connection_timeout, make_configuration
from ..drivers.base import Driver
from ..errors import PeerixError
from ..events import EVENT_NAMES, Emitter, Event, Observable, TaskOwner
from ..home import HomeLoop, on_home
from ..log import EventLog
from ..signaling import MAX_METADATA_BYTES, to_json
from ..states import ChannelState, ConnectionState
from ..widgets._common import check_options, count_views, describe, logger, running_loop
from ._bundle import bundle
from .broadcast import BroadcastChannelDriver

# Seconds a page has to answer a command (join, publish_camera, ...): getUserMedia and a join
# take well under a second here; a frozen or silently closed page never answers at all.
COMMAND_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class NatsWebSocket:
    """The browser talks to NATS itself, over the server's WebSocket listener.

    `url` is what the *browser* connects to (`ws://127.0.0.1:8080`; the embedded server's
    `server.websocket_url`); `prefix` must be the kernel peers' NatsDriver prefix.
    """

    url: str
    prefix: str = "peerix"
    user: str | None = None
    password: str | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("ws://", "wss://")):
            raise ValueError(
                f"NATS WebSocket URL must start with ws:// or wss://, got {self.url!r}"
            )


@dataclass(slots=True, eq=False)
class BrowserRemote:
    """What the kernel knows about one remote of the browser peer (from its events); as
    `event.remote` it is a seams.RemoteInfo, like a kernel RemotePeer."""

    id: str
    room: str
    metadata: Any = None
    polite: bool | None = None
    state: ConnectionState = "new"
    streams: set[str] = field(default_factory=set)  # labels of remote streams
    channels: dict[str, ChannelState] = field(default_factory=dict)  # label -> readyState

    def __repr__(self) -> str:
        return f"<BrowserRemote {self.id} state={self.state} polite={self.polite}>"


def _signaling_path(driver: Any) -> tuple[dict[str, Any], Driver | None]:
    """The JS driver spec for `driver=`, and the kernel Driver to relay to (kernel path only)."""
    if driver is None:
        from ..peer import default_driver

        driver = default_driver()
    if isinstance(driver, str):
        driver = NatsWebSocket(driver)
    if isinstance(driver, NatsWebSocket):
        spec = {"kind": "nats", "url": driver.url, "prefix": driver.prefix, "user": driver.user}
        spec.update(password=driver.password, token=driver.token)
        return spec, None
    if isinstance(driver, BroadcastChannelDriver):
        return {"kind": "broadcast", "name": driver.name}, None
    if isinstance(driver, Driver):
        return {"kind": "kernel", "active": driver.active}, driver
    raise TypeError(
        "driver must be a peerix_nb Driver (relayed by the kernel), a BroadcastChannelDriver, "
        f"a NatsWebSocket or a 'ws://' URL, got {type(driver).__name__}"
    )


def _page_ice_servers(ice_servers: Any, ice_transport_policy: str) -> list[dict[str, Any]]:
    """`ice_servers` as the page's RTCPeerConnection takes them, after the Peer's checks (the
    same forms are accepted: dicts, URL strings, aiortc RTCIceServers; None is none)."""
    configuration = make_configuration(ice_servers, ice_transport_policy)
    servers = []
    for server in configuration.iceServers or []:
        entry: dict[str, Any] = {"urls": server.urls}
        if server.username is not None:
            entry["username"] = server.username
        if server.credential is not None:
            entry["credential"] = server.credential
        servers.append(entry)
    return servers


def _device(value: Any, name: str) -> bool | dict[str, Any]:
    """`camera=`/`microphone=` (and `video=`/`audio=`): True, False or a dict of constraints."""
    if isinstance(value, bool) or (
        isinstance(value, dict) and all(isinstance(key, str) for key in value)
    ):
        return value
    raise TypeError(
        f"{name} must be True, False or getUserMedia constraints (a dict), got {value!r}"
    )


def capture_constraints(camera: Any, microphone: Any) -> dict[str, Any] | None:
    """The page's getUserMedia constraints for a camera and a microphone; None: nothing.

    Each is True, False or the track's constraints (`{"width": 320}`, `{"echoCancellation":
    False}`). A `camera` dict with a "video" or "audio" key is whole getUserMedia constraints,
    as `camera=` has always taken them; the microphone may then be given in it or as
    `microphone`, not both."""
    camera = _device(camera, "camera")
    microphone = _device(microphone, "microphone")
    if isinstance(camera, dict) and {"video", "audio"} & camera.keys():
        constraints = {"video": False, "audio": False, **camera}
        if microphone is not False:
            if camera.get("audio"):
                raise ValueError(
                    "the microphone is given twice: in camera={'audio': ...} and as microphone="
                )
            constraints["audio"] = microphone
    else:
        constraints = {"video": camera, "audio": microphone}
    if not constraints["video"] and not constraints["audio"]:
        return None
    return constraints


def _command_constraints(
    constraints: Any, video: Any, audio: Any, label: Any = "camera"
) -> dict[str, Any]:
    """publish_camera's getUserMedia constraints, checked before anything goes to the page."""
    ChannelOptions.make(label)  # the label rules of data channels and streams alike
    if constraints is not None:
        if not isinstance(constraints, dict):
            raise TypeError(f"constraints must be a dict (getUserMedia's), got {constraints!r}")
        if video is not True or audio is not False:
            raise ValueError("give either constraints or video=/audio=, not both")
        return constraints
    capture = capture_constraints(_device(video, "video"), _device(audio, "audio"))
    if capture is None:
        raise ValueError("nothing to capture: video=False and audio=False")
    return capture


class BrowserPeer(Observable, anywidget.AnyWidget):
    """A Peerix peer in the notebook page: camera in, native `<video>` out, chat, events.

    `BrowserPeer(room="default", driver=None, metadata=None, camera=False, show_remote=True)`;
    it starts when first displayed and joins `room` (unless `autojoin=False`). `camera=True`
    publishes `getUserMedia({video: true, audio: false})` under `camera_label`;
    `microphone=True` adds the microphone to it (or publishes it alone); a dict gives that
    device's constraints (see `capture_constraints`). Remote streams play in `<video>` tiles
    when `show_remote`, with their sound: where the browser blocks sound until the user has
    clicked in the page, a tile plays muted and shows a "click to enable sound" button (the
    own preview is always muted: no echo). Its events
    are in `.events` (an EventLog) and reach `.on(name, handler)` handlers; `.connections`
    holds what is known of each remote. `send`, `open_channel`, `publish_camera`, ... return asyncio
    futures resolved by the page, or failed with a PeerixError if it has not answered within
    `command_timeout` seconds or was closed.
    """

    _esm = bundle("browser_peer.js")
    _css = pathlib.Path(__file__).with_name("browser.css")

    #: "waiting" (no page yet), "started", "error: ..." (for humans and tests).
    state = traitlets.Unicode("waiting").tag(sync=True)

    def __init__(
        self,
        room: str = "default",
        driver: Any = None,
        metadata: Any = None,
        camera: bool | dict[str, Any] = False,
        show_remote: bool = True,
        *,
        microphone: bool | dict[str, Any] = False,
        id: str | None = None,
        camera_label: str = "camera",
        channels: tuple[str, ...] | list[str] = ("chat",),
        chat_label: str | None = "chat",
        autojoin: bool = True,
        ice_servers: list[dict[str, Any]] | None = None,
        ice_transport_policy: str = "all",
        connection_timeout: float = 15,
        signaling_compression: bool = True,
        signaling_hashing: bool = False,
        signaling_encryption_key: str | None = None,
        command_timeout: float = COMMAND_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        if not isinstance(room, str) or not room:
            raise ValueError(f"room must be a non-empty string, got {room!r}")
        if id is None:
            id = str(uuid.uuid4())
        if not isinstance(id, str) or not id or len(id) > 256:
            raise ValueError(
                f"peer id must be a non-empty string of at most 256 characters, got {id!r}"
            )
        if len(to_json(metadata)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata exceeds {MAX_METADATA_BYTES} bytes as JSON")
        # The page gets these as JSON: check them here, with the Peer's own checks, so bad input
        # fails in the cell that gave it rather than later in the browser's console.
        page_ice_servers = _page_ice_servers(ice_servers, ice_transport_policy)
        connection_timeout = check_connection_timeout(connection_timeout)
        if isinstance(channels, str) or not isinstance(channels, (list, tuple)):
            raise TypeError(f"channels must be a list of labels, got {channels!r}")
        for label in [*channels, camera_label, *([chat_label] if chat_label is not None else [])]:
            ChannelOptions.make(label)  # the label rules of data channels and streams alike
        capture = capture_constraints(camera, microphone)
        if not isinstance(command_timeout, (int, float)) or not command_timeout > 0:
            raise ValueError(f"command_timeout must be a positive number, got {command_timeout!r}")
        spec, relay = _signaling_path(driver)
        check_options(type(self), kwargs)
        super().__init__(**kwargs)
        self.id = id
        self.room = room
        self.metadata = metadata
        self.driver = relay if relay is not None else driver
        self.signaling = spec["kind"]  # "kernel", "nats" or "broadcast"
        self._relay = relay
        # Sent to the page in the "start" message, not synced: the encryption key must not end
        # up in the notebook's saved widget state.
        self._config = {
            "id": id,
            "room": room,
            "metadata": metadata,
            "driver": spec,
            "camera": capture,  # getUserMedia constraints, or None
            "camera_label": camera_label,
            "show_remote": bool(show_remote),
            "channels": list(channels),
            "chat_label": chat_label,
            "autojoin": bool(autojoin),
            "ice_servers": page_ice_servers,
            "ice_transport_policy": ice_transport_policy,
            "connection_timeout": connection_timeout,
            "compression": bool(signaling_compression),
            "hashing": bool(signaling_hashing),
            "encryption_key": signaling_encryption_key,
        }
        self.connections: dict[str, BrowserRemote] = {}
        self.events = EventLog(id)
        self.events.room = room
        self._tasks = TaskOwner(self._task_failed)
        self._emitter = Emitter(self._tasks, EVENT_NAMES)
        self._emitter.on("*", self.events.record)
        self._views: dict[str, int] = {}
        self._owner: str | None = None
        self._started: asyncio.Future[None] | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self.command_timeout = float(command_timeout)
        self._seq = 0
        self._ops: asyncio.Queue[tuple[str, dict[str, Any], bytes | None]] | None = None
        self._subs: dict[int, tuple[list[str], Callable[[bytes], None]]] = {}
        self._closed = False
        # Comm messages may come in a kernel subshell's thread: handle them on our loop (home.py).
        self._home = HomeLoop()
        self.on_msg(on_home(self._home, self._on_browser_message))
        if running_loop() is None:
            self.state = "error: BrowserPeer needs a running asyncio loop (a Jupyter kernel)"
            return
        self._started = asyncio.get_running_loop().create_future()
        if relay is not None:
            self._ops = asyncio.Queue()
            self._tasks.spawn(self._run_relay(), name="browser-peer:relay")
            relay.on("active", self._on_driver_active)
            relay.on("inactive", self._on_driver_inactive)
            relay.on("error", self._on_driver_error)

    def __repr__(self) -> str:
        return (
            f"<BrowserPeer {self.id} room={self.room!r} via {self.signaling} state={self.state!r}>"
        )

    # -- events -------------------------------------------------------------------------------
    async def wait_started(self, timeout: float | None = None) -> None:
        """Wait until a page runs the peer (it starts when the widget is first displayed)."""
        if self._started is None:
            raise RuntimeError(self.state)
        await asyncio.wait_for(asyncio.shield(self._started), timeout)

    def _task_failed(self, error: BaseException, name: str) -> None:
        logger.error("%s: %s", name, describe(error), exc_info=error)

    # -- driving the page -----------------------------------------------------------------------
    def _command(
        self, op: str, args: dict[str, Any] | None = None, buffers: list[bytes] | None = None
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._owner is None:
            future.set_exception(
                PeerixError("UNKNOWN_ERROR", "the BrowserPeer is not displayed in any page yet")
            )
            return future
        self._seq += 1
        seq = self._seq
        self._replies[seq] = future  # asked of the owner page, which answers or unloads
        # A page that froze, or closed without a word, never answers: bound every command.
        timer = loop.call_later(
            self.command_timeout,
            self._fail_reply,
            seq,
            f"the page did not answer {op!r} within {self.command_timeout:g} s",
        )
        future.add_done_callback(lambda _: timer.cancel())
        self.send(
            {"type": "cmd", "to": self._owner, "op": op, "args": args or {}, "seq": seq},
            buffers=buffers or [],
        )
        return future

    def _fail_reply(self, seq: int, message: str) -> None:
        future = self._replies.pop(seq, None)
        if future is not None and not future.done():
            future.set_exception(PeerixError("UNKNOWN_ERROR", message))

    def join(self, room: str | None = None, metadata: Any = None) -> asyncio.Future[Any]:
        """Join `room` (default: the one given at construction) from the page."""
        args: dict[str, Any] = {"room": room or self.room}
        if metadata is not None:
            args["metadata"] = metadata
        return self._command("join", args)

    def leave(self) -> asyncio.Future[Any]:
        """Leave the room (LEAVE is broadcast; every connection closes)."""
        return self._command("leave")

    def open_channel(self, label: str, **options: Any) -> asyncio.Future[Any]:
        """Open data channel `label` to every remote (options: ordered, maxRetransmits, ...).

        (Not `open`: ipywidgets' `Widget.open()` opens the comm.)"""
        return self._command("open", {"label": label, "options": options})

    def close_channel(self, label: str) -> asyncio.Future[Any]:
        """Close data channel `label` (`close()` closes the widget)."""
        return self._command("close", {"label": label})

    def send(self, content: Any, buffers: Any = None, label: str | None = None) -> Any:
        """Widget messages (dict) go to the page; `send("text")` or `send(b"bytes", label=...)`
        sends on the browser peer's data channels and resolves to how many channels got it."""
        if isinstance(content, dict):
            return super().send(content, buffers=buffers)
        if buffers is not None and label is None and isinstance(buffers, str):
            label = buffers  # send("hi", "chat"), like Peer.send(message, label)
        if isinstance(content, (bytes, bytearray, memoryview)):
            return self._command("send", {"label": label}, [bytes(content)])
        if not isinstance(content, str):
            raise TypeError(f"can only send str or bytes, got {type(content).__name__}")
        return self._command("send", {"label": label, "text": content})

    def publish_camera(
        self,
        constraints: dict[str, Any] | None = None,
        label: str = "camera",
        *,
        video: bool | dict[str, Any] = True,
        audio: bool | dict[str, Any] = False,
    ) -> asyncio.Future[Any]:
        """getUserMedia in the page and publish it under `label`: the camera by default,
        `audio=True` adds the microphone (`video=False, audio=True`: the microphone alone).
        A dict gives that device's constraints; `constraints` the whole getUserMedia ones."""
        args = {
            "constraints": _command_constraints(constraints, video, audio, label),
            "label": label,
        }
        return self._command("publish_camera", args)

    def prepare_camera(
        self,
        constraints: dict[str, Any] | None = None,
        label: str = "camera",
        *,
        video: bool | dict[str, Any] = True,
        audio: bool | dict[str, Any] = False,
    ) -> asyncio.Future[Any]:
        """getUserMedia and a local preview in the page, not published yet (`publish_camera`
        then goes out at once); the arguments are `publish_camera`'s."""
        args = {
            "constraints": _command_constraints(constraints, video, audio, label),
            "label": label,
        }
        return self._command("prepare_camera", args)

    def unpublish(self, label: str) -> asyncio.Future[Any]:
        """Stop publishing the stream under `label` (the camera is released)."""
        return self._command("unpublish", {"label": label})

    def video_state(self) -> asyncio.Future[Any]:
        """What the page shows: each `<video>` tile's remote, label, size and currentTime."""
        return self._command("video_state")

    def remote_state(self) -> asyncio.Future[Any]:
        """The page's own view of its connections (state, polite, channels, streams)."""
        return self._command("connections")

    def close(self) -> None:
        """Close the widget: the page's peer leaves the room; relay subscriptions end."""
        if getattr(self, "_closed", True):
            super().close()
            return
        self._closed = True
        relay = self._relay
        if relay is not None:
            relay.off("active", self._on_driver_active)
            relay.off("inactive", self._on_driver_inactive)
            relay.off("error", self._on_driver_error)
            subs, self._subs = list(self._subs.values()), {}
            loop = running_loop()
            if loop is not None:
                for namespace, handler in subs:
                    loop.create_task(relay.unsubscribe(namespace, handler))
        for future in self._replies.values():
            if not future.done():
                future.set_exception(PeerixError("UNKNOWN_ERROR", "the BrowserPeer was closed"))
        self._replies.clear()
        loop = running_loop()
        if loop is not None:
            loop.create_task(self._tasks.cancel_all())
        super().close()

    # -- messages from the page -----------------------------------------------------------------
    def _on_browser_message(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict) or self._closed:
            return
        kind = content.get("type")
        frontend = str(content.get("frontend", ""))
        try:
            if kind in ("rendered", "views"):
                self._on_views(frontend, content)
            elif frontend != self._owner:
                return  # a page in standby has nothing to say
            elif kind == "driver" and self._ops is not None:
                data = bytes(buffers[0]) if buffers else None
                self._ops.put_nowait((str(content.get("op")), content, data))
            elif kind == "event":
                data = bytes(buffers[0]) if buffers else None
                self._on_event(content.get("event") or {}, data)
            elif kind == "reply":
                self._on_reply(content)
            elif kind == "started":
                error = content.get("error")
                self.state = f"error: {error}" if error else "started"
                if self._started is not None and not self._started.done():
                    if error:
                        self._started.set_exception(PeerixError("UNKNOWN_ERROR", str(error)))
                    else:
                        self._started.set_result(None)
        except Exception as error:  # a malformed page message must not break the comm handler
            logger.error("BrowserPeer %s: bad message %r: %s", self.id, kind, describe(error))

    def _on_views(self, frontend: str, content: dict[str, Any]) -> None:
        count_views(self._views, frontend, content)
        if content.get("unload") and frontend == self._owner:
            self._owner = None  # that page (and its peer) is gone, and will not answer
            for seq in list(self._replies):  # every command went to the owner
                self._fail_reply(seq, "the page running the BrowserPeer was closed")
        if self._owner is None and self._views:
            # The first page that shows the widget runs the peer; others stand by.
            self._owner = next(iter(self._views))
            self.send({"type": "start", "to": self._owner, "config": self._start_config()})
        if frontend != self._owner and frontend in self._views:
            self.send({"type": "standby", "to": frontend})

    def _start_config(self) -> dict[str, Any]:
        config = dict(self._config)
        if self._relay is not None:
            config["driver"] = {**config["driver"], "active": self._relay.active}
        return config

    def _on_reply(self, content: dict[str, Any]) -> None:
        future = self._replies.pop(int(content.get("seq", -1)), None)
        if future is None or future.done():
            return
        if content.get("ok"):
            future.set_result(content.get("result"))
        else:
            error = content.get("error") or {}
            future.set_exception(
                PeerixError(
                    error.get("code") or "UNKNOWN_ERROR",
                    error.get("message") or "failed in the page",
                )
            )

    def _on_event(self, raw: dict[str, Any], data: bytes | None) -> None:
        name = str(raw.get("name") or "")
        if not name:
            return
        remote = None
        remote_id = raw.get("remote")
        if isinstance(remote_id, str) and remote_id:
            remote = self.connections.get(remote_id)
            if remote is None or (name == "connection:new" and remote.state == "closed"):
                remote = BrowserRemote(
                    remote_id, self.room, raw.get("remote_metadata"), raw.get("polite")
                )
                self.connections[remote_id] = remote
        state, label = raw.get("state"), raw.get("label")
        if remote is not None:
            if name.startswith("connection:") and state:
                remote.state = state
            elif name == "stream:add" and label:
                remote.streams.add(label)
            elif name == "stream:remove" and label:
                remote.streams.discard(label)
            elif name.startswith("channel:") and label and state:
                remote.channels[label] = state
                if state == "closed":
                    remote.channels.pop(label, None)
        if name == "room:join":
            self.room = str(raw.get("detail") or self.room)
            self.events.room = self.room
        error = None
        if raw.get("error"):
            error = PeerixError(
                raw["error"].get("code") or "UNKNOWN_ERROR", raw["error"].get("message") or ""
            )
        payload: Any = None
        if name == "channel:message":
            payload = data if raw.get("binary") else raw.get("data")
        event = Event(
            name=name,
            id=self.id,
            remote=remote,  # a BrowserRemote is a seams.RemoteInfo, like a RemotePeer
            state=state,
            label=label,
            data=payload,
            kind=raw.get("kind") or raw.get("track_kind"),
            via=raw.get("via"),
            size=raw.get("size"),
            detail=raw.get("detail"),
            error=error,
        )
        self._emitter.emit(event)
        if (
            name == "connection:closed"
            and remote is not None
            and self.connections.get(remote.id) is remote
        ):
            del self.connections[remote.id]

    # -- the kernel relay -----------------------------------------------------------------------
    async def _run_relay(self) -> None:
        """Perform the page's driver calls in the order it made them (a JOIN must not overtake
        the subscriptions made before it, nor a CANDIDATE its OFFER)."""
        assert self._ops is not None and self._relay is not None
        relay = self._relay
        while True:
            op, content, data = await self._ops.get()
            seq = content.get("seq")
            try:
                if op == "subscribe":
                    namespace = [str(p) for p in content.get("ns") or []]
                    sub = int(content["sub"])
                    handler = self._deliverer(sub)
                    self._subs[sub] = (namespace, handler)
                    await relay.subscribe(namespace, handler)
                elif op == "unsubscribe":
                    entry = self._subs.pop(int(content["sub"]), None)
                    if entry is not None:
                        await relay.unsubscribe(*entry)
                elif op == "dispatch":
                    if data is None:
                        raise PeerixError(
                            "PEER_SIGNALING_ERROR", "dispatch without a message buffer"
                        )
                    await relay.dispatch([str(p) for p in content.get("ns") or []], data)
                else:
                    raise PeerixError("PEER_SIGNALING_ERROR", f"unknown driver call {op!r}")
                if content.get("wait"):
                    self._driver_reply(seq, None)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                wrapped = PeerixError.wrap(error, "PEER_SIGNALING_ERROR")
                if content.get("wait"):
                    self._driver_reply(seq, wrapped)
                else:
                    self._to_page(
                        {"type": "driver-state", "error": f"{wrapped.code}: {wrapped.message}"}
                    )

    def _deliverer(self, sub: int) -> Callable[[bytes], None]:
        def deliver(data: bytes) -> None:
            if not self._closed:
                self._to_page({"type": "deliver", "sub": sub}, [bytes(data)])

        return deliver

    def _driver_reply(self, seq: Any, error: PeerixError | None) -> None:
        reply: dict[str, Any] = {"type": "driver-reply", "seq": seq, "ok": error is None}
        if error is not None:
            reply["error"] = {"code": error.code, "message": error.message}
        self._to_page(reply)

    def _to_page(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        if self._owner is None or self._closed:
            return
        with contextlib.suppress(Exception):  # the comm can be closing; nothing to save
            super().send({**content, "to": self._owner}, buffers=buffers or [])

    def _on_driver_active(self, event: Event) -> None:
        self._to_page({"type": "driver-state", "active": True})

    def _on_driver_inactive(self, event: Event) -> None:
        self._to_page({"type": "driver-state", "active": False})

    def _on_driver_error(self, event: Event) -> None:
        error = event.error
        self._to_page({"type": "driver-state", "error": error.message if error else "driver error"})


__all__ = ["BrowserPeer", "BrowserRemote", "NatsWebSocket"]
