"""What the kernel does to stay in step with browsers: the SDP rules of sdp.py (unit tests)
and an offer the remote silently ignores (withdrawn and made again, between real peers)."""

from __future__ import annotations

import pytest

from peerix_nb import media, negotiation
from peerix_nb.sdp import FIRST_IDS, ExtensionIds, extension_ids, mids, reject, rejected_mids
from testbed.rooms import leave_all, room, wait_until
from tests.util import Recorder

ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

# aiortc's own numbering, as its createOffer writes it.
AIORTC = (
    "v=0\r\na=group:BUNDLE 0 1 2\r\n"
    f"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n"
    f"m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:1\r\na=extmap:1 {MID}\r\na=extmap:3 {ABS}\r\n"
    f"m=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=extmap:1 {MID}\r\na=extmap:2 {LEVEL}\r\n"
)
# Chromium 156 with audio first: the offer a polite page rolls back, keeping its ids.
CHROME = (
    "v=0\r\na=group:BUNDLE 0 1\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n"
    f"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=extmap:1 {LEVEL}\r\na=extmap:2 {ABS}\r\n"
    f"a=extmap:3 {TCC}\r\na=extmap:4 {MID}\r\n"
)


def test_first_media_offer_uses_ids_that_fit_both_chromium_tables() -> None:
    ids = extension_ids(ExtensionIds().apply(AIORTC))
    assert ids == {MID: FIRST_IDS[MID], ABS: FIRST_IDS[ABS], LEVEL: FIRST_IDS[LEVEL]}
    # No id that Chromium gives another URI in either of its tables.
    assert ids[MID] not in (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14)
    assert ids[LEVEL] not in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14)


def test_offers_keep_the_ids_the_remote_uses_even_from_an_ignored_offer() -> None:
    ids = ExtensionIds()
    ids.learn(CHROME)
    out = extension_ids(ids.apply(AIORTC))
    assert out == {MID: 4, ABS: 2, LEVEL: 1}
    assert ids.apply(AIORTC) == ids.apply(ids.apply(AIORTC))  # stable from offer to offer


def test_an_extension_new_to_the_group_moves_off_a_taken_id_or_is_dropped() -> None:
    ids = ExtensionIds()
    ids.learn("".join(f"a=extmap:{i} urn:x:{i}\r\n" for i in range(1, 15) if i != 5))
    out = extension_ids(
        ids.apply("m=video 9 x\r\na=extmap:1 urn:new:a\r\na=extmap:7 urn:new:b\r\n")
    )
    assert out == {"urn:new:a": 5}  # the one free id; urn:new:b has none left and is dropped


def test_an_answer_rejects_what_the_offer_rejected() -> None:
    offer = AIORTC.replace("m=audio 9", "m=audio 0").replace("BUNDLE 0 1 2", "BUNDLE 0 1")
    assert rejected_mids(offer) == {"2"} and mids(offer) == ["0", "1", "2"]
    answer = reject(
        AIORTC.replace("a=mid:2\r\n", "a=mid:2\r\na=candidate:1 1 udp 1 ::1 9 typ host\r\n"), {"2"}
    )
    assert "m=audio 0 " in answer and "a=group:BUNDLE 0 1\r\n" in answer
    assert "a=candidate" not in answer and rejected_mids(answer) == {"2"}


@pytest.mark.timeout(60)
async def test_an_offer_the_remote_ignores_is_withdrawn_and_made_again(monkeypatch) -> None:
    """A browser Peerix page busy with its own negotiation drops our offer without a word;
    the offerer must not wait in have-local-offer forever."""
    monkeypatch.setattr(negotiation, "OFFER_TIMEOUT", 1.0)
    a, b = await room(2, ids=["a", "b"], channels=["chat"])
    rec_a = Recorder(a)
    try:
        connection = b.connections["a"]
        handle = connection._on_control_message
        dropped: list[str] = []

        def drop_first_offer(control, data):
            if not dropped and isinstance(data, str) and data.startswith('["offer"'):
                dropped.append(data)  # ignored, as a colliding impolite page would
                return
            handle(control, data)

        connection._control.remove_all_listeners("message")
        connection._control.on("message", lambda data: drop_first_offer(connection._control, data))
        await a.publish(media.synthetic(audio=False, width=160, height=120), label="cam")
        await wait_until(
            [a, b],
            lambda: (
                "cam" in b.connections["a"].streams
                and a.connections["b"].connection.signalingState == "stable"
            ),
            timeout=20,
        )
        assert dropped, "the first offer was not the one dropped"
        assert "signal:withdraw" in rec_a.names()
        assert rec_a.errors() == []
    finally:
        await leave_all([a, b])


async def test_each_exchange_is_a_start_and_a_done_row_on_both_sides() -> None:
    """`negotiation:start` when an offer is made (kind local) or taken up (kind remote), then
    `negotiation:done` with the same kind and path: the first over the driver, a renegotiation
    over the control channel."""
    a, b = await room(2, ids=["a", "b"], channels=["chat"])
    try:
        await a.publish(media.synthetic(audio=False, width=160, height=120), label="cam")
        await wait_until(
            [a, b],
            lambda: (
                "cam" in b.connections["a"].streams
                and a.connections["b"].connection.signalingState == "stable"
            ),
            timeout=20,
        )
        for peer in (a, b):
            rows = peer.events.to_frame()
            rows = rows[rows["event"].str.startswith("negotiation:")]
            steps = list(zip(rows["event"], rows["kind"], rows["via"], strict=True))
            starts = [s[1:] for s in steps if s[0] == "negotiation:start"]
            dones = [s[1:] for s in steps if s[0] == "negotiation:done"]
            assert starts == dones, steps  # every exchange begun was completed, in order
            assert ("local" if peer is a else "remote", "control") in starts, steps
            first = starts[0]
            assert first[1] == "driver", steps
    finally:
        await leave_all([a, b])
