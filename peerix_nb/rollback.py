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
All private names are touched here and nowhere else; aiortc is pinned to 1.16.x for this.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver


def snapshot(pc: RTCPeerConnection) -> Any:
    """The local description to return to if the offer about to be set is rolled back.

    aiortc never promotes a pending description to current: after the first exchange the
    offerer's local description stays "pending", and setting a new offer overwrites it. So
    the caller keeps this snapshot from just before `setLocalDescription(offer)`.
    """
    return pc._RTCPeerConnection__pendingLocalDescription  # type: ignore[attr-defined]


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
    known = {m.rtp.muxId for m in pc._RTCPeerConnection__remoteDescription().media}  # type: ignore[attr-defined]

    transceivers: list[RTCRtpTransceiver] = pc._RTCPeerConnection__transceivers  # type: ignore[attr-defined]
    seen_mids: set[str] = pc._RTCPeerConnection__seenMids  # type: ignore[attr-defined]
    parked = [t for t in transceivers if t.mid is not None and t.mid not in known]
    for transceiver in parked:
        seen_mids.discard(transceiver.mid)
        transceiver._RTCRtpTransceiver__mid = None  # type: ignore[attr-defined]
        transceiver._set_mline_index(None)  # type: ignore[arg-type]
        transceivers.remove(transceiver)

    pc._RTCPeerConnection__pendingLocalDescription = before  # type: ignore[attr-defined]
    pc._RTCPeerConnection__setSignalingState("stable")  # type: ignore[attr-defined]
    return parked


def restore(pc: RTCPeerConnection, parked: list[RTCRtpTransceiver]) -> None:
    """Put parked transceivers back; the next createOffer gives them fresh mids."""
    transceivers: list[RTCRtpTransceiver] = pc._RTCPeerConnection__transceivers  # type: ignore[attr-defined]
    for transceiver in parked:
        if transceiver not in transceivers:
            transceivers.append(transceiver)
