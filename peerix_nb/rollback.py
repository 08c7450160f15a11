"""Rollback of a pending local offer, which aiortc 1.16 does not implement.

Why: perfect negotiation (docs/PROTOCOL.md, "Roles, glare") needs the polite side to roll back its
own offer when the remote's offer collides with it. aiortc raises InvalidStateError for a remote
offer in `have-local-offer`, and a `rollback` description corrupts its state. What does work
(measured, see AIORTC-NOTES.md) is to undo the offer by hand in RTCPeerConnection's private state:

1. find the transceivers whose mid first appeared in the pending local offer (the remote's
   last description lists every m-line negotiated so far);
2. clear their mid, forget those mids, and take them out of the transceiver list for now —
   otherwise aiortc's "find transceiver" loop in setRemoteDescription attaches the remote's
   new m-line of the same kind to them and our media silently stops, and an empty mid left in
   the list breaks setLocalDescription(answer);
3. go back to the local description from before the offer (a `snapshot` the caller took:
   aiortc never promotes pending descriptions to current, so it would otherwise be lost) and
   to `stable`;
4. the caller applies the remote offer, answers it, then calls `restore` and offers again.

Only renegotiation offers are rolled back this way: the first offer of a connection carries the
data section, and its collision is resolved by starting over with a fresh RTCPeerConnection.
The private state is reached through _aiortc.py; aiortc is pinned to 1.16.x for this.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver

from . import _aiortc


def snapshot(pc: RTCPeerConnection) -> Any:
    """The local description to return to if the offer about to be set is rolled back.

    aiortc never promotes a pending description to current: after the first exchange the
    offerer's local description stays "pending", and setting a new offer overwrites it. So
    the caller keeps this snapshot from just before `setLocalDescription(offer)`.
    """
    return _aiortc.pending_local_description(pc)


def can_roll_back(pc: RTCPeerConnection) -> bool:
    """True if `pc` has a pending local offer on top of an earlier completed exchange."""
    return pc.signalingState == "have-local-offer" and pc.remoteDescription is not None


def roll_back_local_offer(pc: RTCPeerConnection, before: Any) -> list[RTCRtpTransceiver]:
    """Undo the pending local offer of `pc` (back to `before`, see `snapshot`); return the
    transceivers parked by step 2."""
    if not can_roll_back(pc):
        raise RuntimeError(f"nothing to roll back in signaling state {pc.signalingState!r}")
    # The remote's last description lists every m-line negotiated so far (an answer mirrors
    # its offer, an offer carries all existing m-lines): any other mid is new in our offer.
    known = {m.rtp.muxId for m in _aiortc.remote_session(pc).media}

    transceivers = _aiortc.transceivers(pc)
    seen_mids = _aiortc.seen_mids(pc)
    parked = [t for t in transceivers if t.mid is not None and t.mid not in known]
    for transceiver in parked:
        seen_mids.discard(transceiver.mid)  # not None (filtered above)
        _aiortc.forget_mid(transceiver)
        transceivers.remove(transceiver)

    _aiortc.set_pending_local_description(pc, before)
    _aiortc.set_signaling_state(pc, "stable")
    return parked


def restore(pc: RTCPeerConnection, parked: list[RTCRtpTransceiver]) -> None:
    """Put parked transceivers back; the next createOffer gives them fresh mids."""
    transceivers = _aiortc.transceivers(pc)
    for transceiver in parked:
        if transceiver not in transceivers:
            transceivers.append(transceiver)


def park_unoffered(pc: RTCPeerConnection) -> list[RTCRtpTransceiver]:
    """Take out the transceivers no offer has carried yet (no mid), for `restore` afterwards.

    Needed around every remote offer we answer: aiortc attaches the remote's new m-line to any
    local transceiver of its kind without a mid (stealing our media), and its
    setLocalDescription(answer) fails on one left in the list ("None is not in list": its
    offer direction is None). Such transceivers exist between a publish and its offer, and for
    REOFFER_DELAY after a rollback (seen in the glare storm, tests/test_soak.py)."""
    transceivers = _aiortc.transceivers(pc)
    parked = [t for t in transceivers if t.mid is None]
    for transceiver in parked:
        transceivers.remove(transceiver)
    return parked
