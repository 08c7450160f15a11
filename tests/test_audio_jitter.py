"""AudioJitterBuffer: the state machine on its own, then over real aiortc connections, clean
and with lost packets (NetworkConditions), against what aiortc's own audio buffer does."""

from __future__ import annotations

import asyncio
import statistics
import time

from aiortc.rtp import RtpPacket

from peerix_nb import NetworkConditions
from peerix_nb.audio_jitter import AudioJitterBuffer
from peerix_nb.media import tap_for
from testbed.rooms import leave_all, remote_tone, room


def packet(sequence: int) -> RtpPacket:
    return RtpPacket(
        payload_type=111,
        sequence_number=sequence & 0xFFFF,
        timestamp=(sequence * 960) & 0xFFFFFFFF,
        payload=b"opus%d" % sequence,
    )


def feed(buffer: AudioJitterBuffer, sequences: list[int]) -> list[int | None]:
    """What each packet released: the sequence number of its frame, or None."""
    out: list[int | None] = []
    for sequence in sequences:
        pli, frame = buffer.add(packet(sequence))
        assert pli is False
        out.append(None if frame is None else int(frame.data[4:]) & 0xFFFF)
    return out


def test_in_order_each_frame_once_the_next_packet_is_in() -> None:
    b = AudioJitterBuffer()
    assert feed(b, [10, 11, 12, 13]) == [None, 10, 11, 12]
    assert (b.released, b.lost, b.late) == (3, 0, 0)


def test_a_packet_overtaken_by_one_still_plays_in_order() -> None:
    b = AudioJitterBuffer()
    assert feed(b, [10, 12, 11, 13, 14]) == [None, 10, 11, 12, 13]
    assert b.lost == 0


def test_a_lost_packet_is_given_up_after_two_newer_and_no_backlog_stays() -> None:
    b = AudioJitterBuffer()
    # 11 never comes: 10 plays once 12 is in, then 11 is given up when 13 comes
    assert feed(b, [10, 12, 13, 14, 15]) == [None, 10, 12, 13, 14]
    assert b.lost == 1
    # back to holding one packet: the next one releases the one before it
    assert feed(b, [16]) == [15]


def test_two_gaps_close_to_each_other() -> None:
    b = AudioJitterBuffer()
    # 11 and 13 lost
    assert feed(b, [10, 12, 14, 15, 16]) == [None, 10, 12, 14, 15]
    assert b.lost == 2 and feed(b, [17]) == [16]


def test_a_burst_loss_and_a_packet_too_late_to_play() -> None:
    b = AudioJitterBuffer()
    # 11 plays once a newer packet is in, even across the gap; then 12-14 are given up
    assert feed(b, [10, 11, 15, 16, 17]) == [None, 10, 11, 15, 16]
    assert b.lost == 3
    assert feed(b, [13]) == [None] and b.late == 1  # given up already: dropped
    assert feed(b, [16]) == [None] and b.late == 2  # played already
    assert feed(b, [18]) == [17]


def test_sequence_numbers_wrap_and_a_new_stream_restarts() -> None:
    b = AudioJitterBuffer()
    assert feed(b, [65534, 65535, 0, 1]) == [None, 65534, 65535, 0]
    assert feed(b, [30000, 30001]) == [None, 30000]  # a jump: a new stream, nothing lost
    assert b.lost == 0


async def _held_back(loss: float) -> list[int]:
    """Packets received but not decoded by the remote's audio receiver, sampled while a tone
    flows: clean, then with `loss` for 3 s, then clean again (the samples of the last part)."""
    a, b = await room(2)
    try:
        stream, track = await remote_tone(a, b)
        reader = tap_for(track).subscribe(origin=track, queue=50)
        decoded = 0

        async def count() -> None:
            nonlocal decoded
            while True:
                await reader.recv()
                decoded += 1

        counting = asyncio.ensure_future(count())
        pc = b.connections[a.id].connection
        receiver = next(t.receiver for t in pc.getTransceivers() if t.kind == "audio")

        async def sample(seconds: float) -> list[int]:
            held: list[int] = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                stats = await receiver.getStats()
                received = sum(s.packetsReceived for s in stats.values() if s.type == "inbound-rtp")
                if received >= 10:  # the tone flows
                    held.append(received - decoded)
                await asyncio.sleep(0.02)
            return held

        await sample(1)
        if loss:
            a.network = NetworkConditions(loss=loss, seed=7)
            await sample(3)
            a.network = None
        held = await sample(1.5)
        counting.cancel()
        reader.stop()
        stream.stop()
        return held
    finally:
        await leave_all([a, b])


async def test_a_clean_link_decodes_each_frame_once_the_next_packet_is_in() -> None:
    """aiortc's audio buffer would hold 4 packets back (80 ms): never fewer than 4 here."""
    held = await _held_back(0)
    assert held and min(held) <= 1, sorted(set(held))


async def test_lost_packets_leave_no_lasting_delay() -> None:
    """With aiortc's buffer, 5 % loss left ~15 packets (300 ms) held for good."""
    held = await _held_back(0.05)
    # (a loaded machine may leave a few decoded frames on their way to the reader for a moment)
    assert held and min(held) <= 1 and statistics.median(held) <= 3, sorted(held)
