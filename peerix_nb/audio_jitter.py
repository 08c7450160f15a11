"""AudioJitterBuffer: how a Peer's audio receivers put RTP packets back in order.

Why not aiortc's: its audio receivers use `JitterBuffer(capacity=16, prefetch=4)`, which
(measured here, bench/audio.py and tests/test_audio.py):
- holds 4 Opus packets back before it decodes one: 80 ms on a clean link;
- after one lost packet, waits until 16 newer ones are in, then keeps them all queued and
  still releases one frame per packet that arrives: the audio stays ~300 ms late for the rest
  of the call (5 % loss for 6 s: 45 -> 323 ms, and 284 ms once the loss stopped).

This one releases each packet once the next one is in (so a packet overtaken by one other
still plays), waits for a missing packet only while fewer than `REORDER` newer ones are in,
then counts it lost and goes on. It never holds more than that: latency stays one packet
(20 ms of Opus) whatever the network did. A packet older than what was played is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiortc.jitterbuffer import JitterFrame

if TYPE_CHECKING:
    from aiortc.rtp import RtpPacket

#: Newer packets that may arrive before a missing one is given up (40 ms of 20 ms packets).
REORDER = 2
#: A sequence number this far from the expected one is a new stream, not a late packet.
RESTART = 1000


def _ahead(sequence: int, of: int) -> int:
    """How far 16-bit RTP sequence number `sequence` is after `of` (negative: before)."""
    delta = (sequence - of) & 0xFFFF
    return delta - 0x10000 if delta >= 0x8000 else delta


class AudioJitterBuffer:
    """Takes the receiver's RTP packets (one Opus frame each) and gives back the frames to
    decode, in order, each once the next packet is in (see the module docstring)."""

    capacity = 1 << 4  # what the receiver may ask (aiortc's audio buffer: 16)

    def __init__(self) -> None:
        self._next: int | None = None  # the sequence number to release next
        self._held: dict[int, RtpPacket] = {}
        self.released = 0
        self.lost = 0  # given up: newer packets came and it did not
        self.late = 0  # came after it was given up (or twice)

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """aiortc's JitterBuffer.add: (ask for a keyframe: never, for audio; a frame or None)."""
        sequence = packet.sequence_number
        if self._next is None or abs(_ahead(sequence, self._next)) > RESTART:
            self._next, self._held = sequence, {}  # the first packet, or a new stream
        if _ahead(sequence, self._next) < 0 or sequence in self._held:
            self.late += 1
            return False, None
        self._held[sequence] = packet
        return False, self._release()

    def _release(self) -> JitterFrame | None:
        """The frame to decode now, if any. Holds one packet on a steady link; with REORDER
        packets in, one is always released, so it never holds more than REORDER."""
        assert self._next is not None
        if self._next not in self._held:
            if len(self._held) < REORDER:
                return None  # wait for it a little
            # it is lost: go on from the oldest packet that came
            oldest = min(self._held, key=lambda s: _ahead(s, self._next or 0))
            self.lost += _ahead(oldest, self._next)
            self._next = oldest
        following = (self._next + 1) & 0xFFFF
        if following not in self._held and len(self._held) < REORDER:
            return None  # released once the next one is in (it may be overtaken by one)
        packet = self._held.pop(self._next)
        self._next = following
        self.released += 1
        # Opus (and PCMU/PCMA) depayload to the payload itself: aiortc's depayload() returns
        # it unchanged for every audio codec it has.
        return JitterFrame(data=packet.payload, timestamp=packet.timestamp)
