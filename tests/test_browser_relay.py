"""BrowserPeer and BroadcastChannelDriver without a browser: the page is `_handle_msg`.

Custom messages are fed exactly as browser_peer.js and broadcast.js send them ("rendered",
"views", "driver", "event", "reply", "started", "recv"); what the kernel sends back is read
from a recording comm. Kernel peers are real (aiortc in this process).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from peerix_nb import MemoryDriver, Peer, PeerixError
from peerix_nb.browser import BroadcastChannelDriver, BrowserPeer, NatsWebSocket
from testbed.rooms import leave_all, poll_until
from tests.widget_comm import page, pushed, recording_comm  # noqa: F401 (autouse fixture)


# -- BroadcastChannelDriver ------------------------------------------------------------------
async def test_broadcast_driver_is_inactive_and_says_so_until_displayed() -> None:
    driver = BroadcastChannelDriver("room-test")
    errors: list[Any] = []
    driver.on("error", errors.append)
    got: list[bytes] = []
    await driver.subscribe(["lobby"], got.append)
    await driver.dispatch(["lobby"], b"lost")
    assert not driver.active and driver.status.startswith("inactive")
    assert len(errors) == 1 and "not displayed" in errors[0].error.message  # said once, clearly
    assert pushed(driver, "post") == [] and got == []
    await driver.close()


async def test_broadcast_driver_relays_through_one_page() -> None:
    driver = BroadcastChannelDriver("room-test")
    local: list[bytes] = []
    await driver.subscribe(["lobby"], local.append)
    assert driver.subscribed == ["lobby"]
    page(driver, {"type": "rendered", "views": 1, "frontend": "A"})
    assert driver.active and driver.status == "active"
    assert pushed(driver, "own")[-1][0]["to"] == "A"
    page(driver, {"type": "rendered", "views": 1, "frontend": "B"})  # another tab: stands by
    assert pushed(driver, "own")[-1][0]["to"] == "A"

    # kernel -> page: posted on the channel, and delivered to this kernel's own subscribers
    # (a BroadcastChannel never echoes to the posting object).
    await driver.dispatch(["lobby"], b"\x01hello")
    ((post, buffers),) = pushed(driver, "post")
    assert post["key"] == "lobby" and buffers == [b"\x01hello"]
    await poll_until(lambda: local == [b"\x01hello"])

    # page -> kernel: only from the relaying page.
    page(driver, {"type": "recv", "key": "lobby", "frontend": "B"}, [b"from B"])
    page(driver, {"type": "recv", "key": "lobby", "frontend": "A"}, [b"from A"])
    await poll_until(lambda: len(local) == 2)
    assert local[1] == b"from A"

    # The relaying tab goes: the other one takes over; no tab at all: inactive.
    page(driver, {"type": "views", "views": 0, "frontend": "A"})
    assert driver.active and pushed(driver, "own")[-1][0]["to"] == "B"
    page(driver, {"type": "views", "views": 0, "frontend": "B"})
    assert not driver.active and "no view" in driver.status
    await driver.unsubscribe(["lobby"], local.append)
    assert driver.subscribed == [] and driver.subscriber_count() == 0
    await driver.close()


async def test_kernel_peers_sharing_a_broadcast_driver_connect() -> None:
    driver = BroadcastChannelDriver()
    page(driver, {"type": "rendered", "views": 1, "frontend": "A"})
    alice, bob = Peer(driver=driver), Peer(driver=driver)
    try:
        await alice.open("chat")
        await alice.join("bc")
        await bob.join("bc")
        await bob.wait_for("channel:open", timeout=20)
        assert pushed(driver, "post"), "signaling was also posted to the page"
    finally:
        await leave_all([alice, bob])
        await driver.close()


# -- BrowserPeer -----------------------------------------------------------------------------
def test_signaling_paths() -> None:
    # Outside a running loop (a plain script) it says why it cannot work.
    assert BrowserPeer("r").state.startswith("error: BrowserPeer needs a running asyncio loop")
    bc = BroadcastChannelDriver("chan")
    assert BrowserPeer("r", driver=bc)._config["driver"] == {"kind": "broadcast", "name": "chan"}
    nats = BrowserPeer("r", driver="ws://127.0.0.1:9")._config["driver"]
    assert (
        nats["kind"] == "nats" and nats["url"] == "ws://127.0.0.1:9" and nats["prefix"] == "peerix"
    )
    assert (
        BrowserPeer("r", driver=NatsWebSocket("wss://x", prefix="p"))._config["driver"]["prefix"]
        == "p"
    )
    assert BrowserPeer("r", driver=MemoryDriver())._config["driver"]["kind"] == "kernel"
    with pytest.raises(TypeError):
        BrowserPeer("r", driver=42)
    with pytest.raises(ValueError):
        NatsWebSocket("nats://127.0.0.1:4222")
    with pytest.raises(ValueError):
        BrowserPeer("")


def test_browser_peer_checks_its_options_like_a_peer() -> None:
    # These went to the page unchecked: `ice_servers="stun:x"` reached the browser's
    # RTCPeerConnection as a bare string, `channels="chat"` opened channels c, h, a and t.
    def config(**options: Any) -> dict[str, Any]:
        return BrowserPeer("r", driver=BroadcastChannelDriver("c"), **options)._config

    assert config(ice_servers="stun:127.0.0.1:3478")["ice_servers"] == [
        {"urls": "stun:127.0.0.1:3478"}
    ]
    turn = {"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "p"}
    assert config(ice_servers=[turn])["ice_servers"] == [turn]
    assert config()["ice_servers"] == []  # None: no servers, never a public STUN
    for options, error, message in [
        ({"ice_servers": 5}, TypeError, "ice_servers must be a list"),
        ({"ice_servers": ["http://x"]}, ValueError, "must start with stun:"),
        ({"ice_servers": [{"urls": "turn:x"}]}, ValueError, "needs 'username' and 'credential'"),
        ({"ice_transport_policy": "any"}, ValueError, "'all' or 'relay'"),
        ({"connection_timeout": "15"}, ValueError, "connection_timeout must be a number"),
        ({"channels": "chat"}, TypeError, "channels must be a list of labels"),
        ({"channels": ["chat", ""]}, ValueError, "channel label must be a non-empty string"),
        ({"camera_label": ""}, ValueError, "channel label must be a non-empty string"),
        ({"camera": "yes"}, TypeError, "camera must be True, False or getUserMedia"),
        ({"cam": True}, TypeError, r"unexpected keyword argument 'cam' \(did you mean 'camera'"),
    ]:
        with pytest.raises(error, match=message):
            config(**options)


async def test_browser_peer_relays_a_page_into_the_kernel_driver() -> None:
    driver = MemoryDriver()
    bp = BrowserPeer("lobby", driver=driver, id="page-peer", signaling_encryption_key="s3cret")
    assert "s3cret" not in str(bp.get_state())  # the key rides "start", never saved state
    page(bp, {"type": "rendered", "views": 1, "frontend": "P1"})
    ((start, _),) = pushed(bp, "start")
    assert start["to"] == "P1" and start["config"]["encryption_key"] == "s3cret"
    assert start["config"]["driver"] == {"kind": "kernel", "active": True}
    page(bp, {"type": "rendered", "views": 1, "frontend": "P2"})
    assert pushed(bp, "standby")[-1][0]["to"] == "P2"

    # subscribe -> the kernel driver; a message dispatched there comes back as "deliver".
    page(
        bp,
        {
            "type": "driver",
            "op": "subscribe",
            "ns": ["lobby"],
            "sub": 1,
            "seq": 1,
            "wait": True,
            "frontend": "P1",
        },
    )
    await poll_until(lambda: pushed(bp, "driver-reply"))
    assert pushed(bp, "driver-reply")[0][0] == {
        "type": "driver-reply",
        "seq": 1,
        "ok": True,
        "to": "P1",
    }
    await driver.dispatch(["lobby"], b"join-bytes")
    await poll_until(lambda: pushed(bp, "deliver"))
    ((deliver, buffers),) = pushed(bp, "deliver")
    assert deliver["sub"] == 1 and buffers == [b"join-bytes"]

    # dispatch from the page reaches the kernel's other subscribers, in order.
    seen: list[bytes] = []
    await driver.subscribe(["lobby", "kernel-peer"], seen.append)
    for i in range(5):
        page(
            bp,
            {
                "type": "driver",
                "op": "dispatch",
                "ns": ["lobby", "kernel-peer"],
                "seq": 2 + i,
                "wait": False,
                "frontend": "P1",
            },
            [b"m%d" % i],
        )
    await poll_until(lambda: len(seen) == 5)
    assert seen == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    # A page in standby cannot use the driver.
    page(
        bp,
        {
            "type": "driver",
            "op": "dispatch",
            "ns": ["lobby", "kernel-peer"],
            "seq": 9,
            "frontend": "P2",
        },
        [b"x"],
    )
    await asyncio.sleep(0.05)
    assert len(seen) == 5

    # Driver state changes reach the page.
    driver.set_active(False)
    assert pushed(bp, "driver-state")[-1][0]["active"] is False
    driver.set_active(True)

    # unsubscribe and close leave nothing behind on the kernel driver.
    page(
        bp,
        {
            "type": "driver",
            "op": "unsubscribe",
            "sub": 1,
            "seq": 10,
            "wait": True,
            "frontend": "P1",
        },
    )
    await poll_until(lambda: len(pushed(bp, "driver-reply")) == 2)
    assert driver.subscriber_count() == 1  # only ours
    bp.close()


async def test_browser_peer_events_land_in_an_event_log() -> None:
    bp = BrowserPeer("lobby", driver=MemoryDriver(), id="page-peer")
    page(bp, {"type": "rendered", "views": 1, "frontend": "P1"})
    messages: list[Any] = []
    bp.on("channel:message", messages.append)
    events = [
        {"name": "room:join", "state": "joined", "detail": "lobby"},
        {"name": "signal:send", "kind": "join", "via": "driver", "size": 40},
        {
            "name": "connection:new",
            "remote": "kernel",
            "remote_metadata": {"name": "k"},
            "polite": True,
            "state": "new",
        },
        {"name": "signal:recv", "remote": "kernel", "kind": "offer", "via": "driver", "size": 900},
        {"name": "connection:connected", "remote": "kernel", "state": "connected"},
        {"name": "channel:open", "remote": "kernel", "label": "chat", "state": "open"},
        {"name": "stream:add", "remote": "kernel", "label": "pattern", "detail": "stream-1"},
        {"name": "channel:message", "remote": "kernel", "label": "chat", "data": "hi", "size": 2},
        {
            "name": "error",
            "remote": "kernel",
            "error": {"code": "PEER_ICECANDIDATE_ERROR", "message": "bad"},
        },
    ]
    for event in events:
        page(bp, {"type": "event", "event": event, "frontend": "P1"})
    page(
        bp,
        {
            "type": "event",
            "event": {
                "name": "channel:message",
                "remote": "kernel",
                "label": "chat",
                "binary": True,
                "size": 3,
            },
            "frontend": "P1",
        },
        [b"\x00\x01\x02"],
    )
    remote = bp.connections["kernel"]
    assert remote.state == "connected" and remote.polite and remote.metadata == {"name": "k"}
    assert remote.channels == {"chat": "open"} and remote.streams == {"pattern"}
    assert [m.data for m in messages] == ["hi", b"\x00\x01\x02"]
    frame = bp.events.to_frame()
    assert list(frame["peer"].unique()) == ["page-peer"]
    assert set(frame["room"]) == {"lobby"}
    assert frame.loc[frame["event"] == "signal:recv", "via"].tolist() == ["driver"]
    assert frame.loc[frame["event"] == "error", "detail"].tolist() == [
        "PEER_ICECANDIDATE_ERROR: bad"
    ]
    page(
        bp,
        {
            "type": "event",
            "event": {"name": "connection:closed", "remote": "kernel", "state": "closed"},
            "frontend": "P1",
        },
    )
    assert "kernel" not in bp.connections
    bp.close()


async def test_browser_peer_commands_resolve_with_the_page_reply() -> None:
    bp = BrowserPeer("lobby", driver=MemoryDriver())
    with pytest.raises(PeerixError, match="not displayed"):
        await bp.send("too early", "chat")
    page(bp, {"type": "rendered", "views": 1, "frontend": "P1"})
    sent = bp.send("hi", "chat")
    binary = bp.send(b"\x00", label="files")
    camera = bp.publish_camera()
    cmds = pushed(bp, "cmd")
    assert [c["op"] for c, _ in cmds] == ["send", "send", "publish_camera"]
    assert cmds[0][0]["args"] == {"label": "chat", "text": "hi"} and cmds[1][1] == [b"\x00"]
    page(bp, {"type": "reply", "seq": cmds[0][0]["seq"], "ok": True, "result": 1, "frontend": "P1"})
    page(bp, {"type": "reply", "seq": cmds[1][0]["seq"], "ok": True, "result": 0, "frontend": "P1"})
    page(
        bp,
        {
            "type": "reply",
            "seq": cmds[2][0]["seq"],
            "ok": False,
            "error": {"code": "PEER_MEDIASTREAM_ERROR", "message": "camera: NotAllowedError"},
            "frontend": "P1",
        },
    )
    assert await sent == 1 and await binary == 0
    with pytest.raises(PeerixError) as info:
        await camera
    assert info.value.code == "PEER_MEDIASTREAM_ERROR"
    page(bp, {"type": "started", "frontend": "P1"})
    await bp.wait_started(timeout=1)
    assert bp.state == "started"
    pending = bp.video_state()
    bp.close()  # pending commands fail instead of hanging
    with pytest.raises(PeerixError, match="closed"):
        await pending


async def test_browser_peer_commands_fail_when_the_page_goes_or_never_answers() -> None:
    """A page that unloads, or freezes, never answers: commands fail instead of hanging."""
    bp = BrowserPeer("lobby", driver=MemoryDriver(), command_timeout=0.3)
    try:
        page(bp, {"type": "rendered", "views": 1, "frontend": "P1"})
        asked = bp.video_state()
        page(bp, {"type": "views", "views": 0, "unload": True, "frontend": "P1"})
        with pytest.raises(PeerixError, match="page running the BrowserPeer was closed"):
            await asyncio.wait_for(asked, 2)

        page(bp, {"type": "rendered", "views": 1, "frontend": "P2"})  # P2 takes over
        frozen = bp.join()
        with pytest.raises(PeerixError, match=r"did not answer 'join' within 0.3 s"):
            await asyncio.wait_for(frozen, 2)
        answered = bp.remote_state()
        ((cmd, _),) = pushed(bp, "cmd")[-1:]
        page(bp, {"type": "reply", "seq": cmd["seq"], "ok": True, "result": {}, "frontend": "P2"})
        assert await answered == {}  # a timely answer still resolves, and its timer is gone
        assert bp._replies == {}
        with pytest.raises(ValueError, match="command_timeout"):
            BrowserPeer("lobby", driver=MemoryDriver(), command_timeout=0)
    finally:
        bp.close()
