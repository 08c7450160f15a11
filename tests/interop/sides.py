"""The two implementations of a Peerix peer behind one interface, for the scenario table.

`KernelSide` is a peerix_nb `Peer` in this process; `BrowserSide` is a plain web page in
headless Chromium running the browser peer (peerix_nb/browser/peer.js) on Chromium's own
RTCPeerConnection, its fake camera and microphone (tests/interop/page.js). All signal through
the same nats-server: the kernel over NATS; the page ("browser") over its WebSocket listener,
or ("browser_relay") through the kernel relay of a `BrowserPeer` widget, as in a notebook:
`KernelRelay` bridges a real `peerix_nb.browser.BrowserPeer` in this process to the shipped
widget front end in the page, and that BrowserPeer performs the page's driver calls on its
own NatsDriver. A scenario is written once against this interface and runs for every pair.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import comm
import numpy as np
from comm.base_comm import BaseComm

from peerix_nb import NatsDriver, Peer
from peerix_nb.browser import BrowserPeer
from peerix_nb.errors import PeerixError
from peerix_nb.media import frames, synthetic
from peerix_nb.signaling import OFFER, SignalingCodec

#: How long a scenario waits for anything (connections, media, messages).
WAIT = 30.0


async def until(check: Callable[[], Awaitable[Any] | Any], what: str, timeout: float = WAIT) -> Any:
    """Re-check `check()` (sync or async) every 50 ms until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


class LossyNatsDriver(NatsDriver):
    """A NatsDriver whose wire loses the first `drop_offers` OFFER messages."""

    def __init__(self, *args: Any, drop_offers: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drop_offers = drop_offers
        self._codec = SignalingCodec()

    async def dispatch(self, namespace: list[str], message: bytes) -> None:
        if self.drop_offers > 0:
            try:
                kind = self._codec.decode(message).type
            except PeerixError:
                kind = None
            if kind == OFFER:
                self.drop_offers -= 1
                return
        await super().dispatch(namespace, message)


class KernelSide:
    """A peerix_nb Peer on a NatsDriver."""

    impl = "kernel"

    def __init__(
        self, id: str, nats_url: str, prefix: str, connection_timeout: float, drop_offers: int
    ) -> None:
        self.id = id
        driver = LossyNatsDriver(nats_url, prefix=prefix, drop_offers=drop_offers)
        self.peer = Peer(id=id, driver=driver, connection_timeout=connection_timeout)
        self.events: list[Any] = []
        self._messages: dict[str, list[str]] = {}
        self.peer.on("*", self.events.append)
        self.peer.on("channel:message", self._on_message)

    def _on_message(self, event: Any) -> None:
        data = event.data if isinstance(event.data, str) else "<binary>"
        self._messages.setdefault(event.label, []).append(data)

    async def start(self) -> None:
        pass

    async def join(self, room: str) -> None:
        await self.peer.join(room, metadata={"name": self.id})

    async def leave(self) -> None:
        await self.peer.leave()

    async def open(self, label: str) -> None:
        await self.peer.open(label)

    async def send(self, text: str, label: str) -> int:
        return self.peer.send(text, label)

    async def messages(self, label: str) -> list[str]:
        return list(self._messages.get(label, []))

    async def publish(self, label: str, video: bool = True, audio: bool = False) -> None:
        await self.peer.publish(synthetic(video=video, audio=audio), label=label)

    async def unpublish(self, label: str) -> None:
        await self.peer.unpublish(label)

    async def state(self, remote: str) -> str | None:
        connection = self.peer.connections.get(remote)
        return connection.state if connection is not None else None

    async def streams(self, remote: str) -> list[str]:
        connection = self.peer.connections.get(remote)
        return list(connection.streams) if connection is not None else []

    async def receives(self, remote: str, label: str, kinds: set[str]) -> dict[str, Any]:
        """Frames of each kind of `label` from `remote`, as numpy arrays: a live picture."""
        stream = await until(
            lambda: (c := self.peer.connections.get(remote)) and c.streams.get(label),
            f"{self.id} gets stream {label!r} from {remote}",
        )
        got: dict[str, Any] = {}
        for kind in sorted(kinds):
            track = await until(
                lambda k=kind: next((t for t in stream.tracks if t.kind == k), None),
                f"{self.id}: {kind} track in {label!r} from {remote}",
            )
            seen: list[np.ndarray] = []
            async with frames(track) as reader:
                async with asyncio.timeout(WAIT):
                    async for array in reader:
                        seen.append(array)
                        if len(seen) == 5:
                            break
            got[kind] = {"frames": len(seen), "shape": list(seen[-1].shape)}
            if kind == "video":
                got[kind]["changes"] = sum(
                    not np.array_equal(a, b) for a, b in itertools.pairwise(seen)
                )
        return got

    async def errors(self) -> list[str]:
        return [str(e.error) for e in self.events if e.name == "error"]

    async def names(self) -> list[str]:
        return [e.name for e in self.events]

    async def history(self) -> list[str]:
        return [
            f"{e.name} remote={e.remote.id if e.remote else ''} label={e.label} kind={e.kind}"
            f" state={e.state} detail={e.detail or (e.error or '')}"
            for e in self.events
        ]

    async def close(self) -> None:
        await self.peer.leave()
        await self.peer.driver.close()


class _BridgeComm(BaseComm):
    """A widget comm whose custom messages go to `outbox` (bound for the page) instead of a
    Jupyter kernel's IOPub; the rest (open, state syncs, close) has no reader here."""

    def __init__(self, outbox: Callable[[Any, list[bytes]], None], **kwargs: Any) -> None:
        self._outbox = outbox
        super().__init__(**kwargs)

    def publish_msg(
        self,
        msg_type: str,
        data: Any = None,
        metadata: Any = None,
        buffers: Any = None,
        **keys: Any,
    ) -> None:
        if msg_type == "comm_msg" and isinstance(data, dict) and data.get("method") == "custom":
            self._outbox(data["content"], [bytes(b) for b in buffers or []])


class KernelRelay:
    """The kernel half of a relayed page: a real `peerix_nb.browser.BrowserPeer` in this process
    on its own (lossy) NatsDriver, whose widget comm is bridged to the page by Playwright.

    Kernel -> page: what the widget sends (`send(content, buffers)`) is queued and delivered in
    order by one task, in batches, through `page.evaluate` (JSON text, buffers as base64) to
    the stand-in model's "msg:custom" handlers. Page -> kernel: the model's `send` calls the
    binding `peerixRelaySend`, which hands the message to the comm as ipykernel would
    (`comm.handle_msg` -> the widget's `_handle_msg`), buffers as memoryviews.
    """

    def __init__(
        self, id: str, nats_url: str, prefix: str, connection_timeout: float, drop_offers: int
    ) -> None:
        # The kernel's wire to the server loses the first OFFERs: the page and the BrowserPeer
        # pass them on untouched, as on the page's own lossy NATS wire in the "browser" case.
        self.driver = LossyNatsDriver(nats_url, prefix=prefix, drop_offers=drop_offers)
        self._outbox: asyncio.Queue[tuple[str, list[str]]] = asyncio.Queue()
        self._held: dict[int, tuple[str, list[str]]] = {}
        self._received = 0
        self._page: Any = None
        self._pump: asyncio.Task[None] | None = None
        self.problems: list[str] = []  # deliveries that failed on a live page
        self.lost = 0  # messages for a page that had crashed or closed
        create_comm = comm.create_comm
        comm.create_comm = lambda **kwargs: _BridgeComm(self._to_page, **kwargs)
        try:
            self.widget = BrowserPeer(
                "room",
                driver=self.driver,
                id=id,
                channels=[],
                chat_label=None,
                autojoin=False,  # the harness joins, opens and publishes, as on NATS
                show_remote=False,  # the harness shows remote streams itself
                connection_timeout=connection_timeout,
            )
        finally:
            comm.create_comm = create_comm

    def _to_page(self, content: Any, buffers: list[bytes]) -> None:
        wire = [base64.b64encode(b).decode("ascii") for b in buffers]
        self._outbox.put_nowait((json.dumps(content), wire))

    async def attach(self, page: Any) -> None:
        self._page = page
        await page.expose_binding("peerixRelaySend", self._from_page)
        self._pump = asyncio.create_task(self._deliver(), name="interop:relay-pump")

    def _from_page(self, source: Any, seq: int, content: str, wire: list[str]) -> None:
        # Playwright runs binding calls in the order the page made them; the page's sequence
        # numbers make sure of it (an early one waits here for its turn).
        self._held[int(seq)] = (content, wire)
        while self._received + 1 in self._held:
            self._received += 1
            text, buffers = self._held.pop(self._received)
            try:
                self.widget.comm.handle_msg(
                    {
                        "content": {
                            "comm_id": self.widget.comm.comm_id,
                            "data": {"method": "custom", "content": json.loads(text)},
                        },
                        "buffers": [memoryview(base64.b64decode(b)) for b in buffers],
                    }
                )
            except Exception as error:  # the widget's handler logs its own; this is ours
                self.problems.append(f"message {self._received} from the page: {error!r}")

    async def _deliver(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            try:
                await self._page.evaluate("(batch) => window.harness.fromKernel(batch)", batch)
            except Exception as error:
                if self._page.is_closed() or "crash" in str(error).lower():
                    self.lost += len(batch)  # as a comm to a page that is gone: nobody reads
                else:
                    self.problems.append(f"delivery of {len(batch)} message(s) failed: {error}")

    async def close(self) -> None:
        self.widget.close()  # unsubscribes the page's subscriptions from the driver
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        await asyncio.sleep(0.05)  # the widget's unsubscribe tasks
        await self.driver.close()


class BrowserSide:
    """A plain web page in headless Chromium running the browser Peerix peer: on its own NATS
    WebSocket ("browser"), or relayed by the kernel when given a `KernelRelay`
    ("browser_relay"; the relay's driver is then the lossy wire)."""

    def __init__(
        self,
        id: str,
        page: Any,
        ws_url: str,
        prefix: str,
        connection_timeout: float,
        drop_offers: int,
        relay: KernelRelay | None = None,
    ) -> None:
        self.id = id
        self.page = page
        self.relay = relay
        self.impl = "browser" if relay is None else "browser_relay"
        self._options = {
            "id": id,
            "driver": "nats" if relay is None else "relay",
            "wsUrl": ws_url,
            "prefix": prefix,
            "connectionTimeout": connection_timeout,
            "dropOffers": drop_offers if relay is None else 0,
        }

    async def _call(self, method: str, *args: Any) -> Any:
        return await self.page.evaluate(
            "([method, args]) => window.harness[method](...args)", [method, list(args)]
        )

    async def start(self) -> None:
        await self.page.wait_for_function("window.harnessReady === true", timeout=20_000)
        if self.relay is not None:
            await self.relay.attach(self.page)
        made = await self._call("create", self._options)
        expected = "NatsDriver" if self.relay is None else "KernelDriver"
        assert made == {"id": self.id, "driver": expected}, f"{self.id} made {made}"

    async def join(self, room: str) -> None:
        await self._call("join", room)

    async def leave(self) -> None:
        await self._call("leave")

    async def open(self, label: str) -> None:
        await self._call("open", label)

    async def send(self, text: str, label: str) -> int:
        return int(await self._call("send", text, label))

    async def messages(self, label: str) -> list[str]:
        return list(await self._call("messages", label))

    async def publish(self, label: str, video: bool = True, audio: bool = False) -> None:
        await self._call("publish", label, {"video": video, "audio": audio})

    async def unpublish(self, label: str) -> None:
        await self._call("unpublish", label)

    async def state(self, remote: str) -> str | None:
        return await self._call("state", remote)

    async def streams(self, remote: str) -> list[str]:
        return list(await self._call("streams", remote))

    async def receives(self, remote: str, label: str, kinds: set[str]) -> dict[str, Any]:
        """What a person sees and hears: the <video> has a picture and its clock runs; audio
        tracks receive packets."""
        got: dict[str, Any] = {}
        if "video" in kinds:
            first = await until(
                lambda: self._video_playing(remote, label, None),
                f"{self.id} shows {label!r} from {remote}",
            )
            later = await until(
                lambda: self._video_playing(remote, label, first["time"] + 0.5),
                f"{self.id}: video {label!r} from {remote} keeps playing",
            )
            got["video"] = {"shape": [later["height"], later["width"]], "advanced": True}
        if "audio" in kinds:
            audio = await until(
                lambda: self._audio_packets(remote, label),
                f"{self.id} receives audio of {label!r} from {remote}",
            )
            got["audio"] = audio
        return got

    async def _video_playing(self, remote: str, label: str, after: float | None) -> Any:
        video = await self._call("video", remote, label)
        if not video or not video["width"]:
            return None
        if after is not None and video["time"] < after:
            return None
        return video

    async def _audio_packets(self, remote: str, label: str) -> Any:
        audio = await self._call("audio", remote, label)
        return audio if audio and audio["tracks"] and audio["packets"] > 0 else None

    async def errors(self) -> list[str]:
        """The peer's `error` events and, relayed, what went wrong on the relay itself."""
        faults = [] if self.relay is None else list(self.relay.problems)
        return faults + [
            e["detail"]
            for e in await self._call("events")
            if e["name"] in ("error", "test:relay-error")
        ]

    async def names(self) -> list[str]:
        return [e["name"] for e in await self._call("events")]

    async def history(self) -> list[str]:
        lines = []
        if self.relay is not None:
            lines += [f"relay: {p}" for p in self.relay.problems]
            lines.append(f"relay: {self.relay.lost} message(s) for a gone page")
        try:
            events = await self._call("events")
        except Exception as error:  # a crashed page has nothing more to say
            return [*lines, f"(no page events: {error})"]
        return lines + [
            f"{e['t']:.0f} {e['name']} remote={e.get('remote')} label={e.get('label')}"
            f" kind={e.get('kind')} state={e.get('state')} detail={e.get('detail')}"
            for e in events
        ]

    async def crash(self) -> None:
        """Kill the page's renderer: no LEAVE, no close, its connections just go silent."""
        session = await self.page.context.new_cdp_session(self.page)
        crashed = asyncio.ensure_future(self.page.wait_for_event("crash", timeout=5_000))
        crashing = asyncio.ensure_future(session.send("Page.crash"))  # never answered
        try:
            await crashed
        finally:
            crashing.cancel()
            await asyncio.gather(crashing, return_exceptions=True)

    async def close(self) -> None:
        if not self.page.is_closed():
            with contextlib.suppress(Exception):  # a crashed page cannot leave
                await self.leave()
            await self.page.close()
        if self.relay is not None:
            await self.relay.close()


Side = KernelSide | BrowserSide
