"""The operations queue of one connection, and perfect negotiation over it (docs/PROTOCOL.md).

Every step that touches the session descriptions runs in one queue per remote (the JavaScript
"operations chain"): offers, answers, candidates and the sync of outgoing media. An offer
received while we are making ours is seen only after ours is set, so the perfect-negotiation
rules reduce to "impolite ignores, polite rolls back" (rollback.py). A first-offer collision
starts over with a fresh connection instead; an offer left unanswered is withdrawn and made
again. `Negotiation` does this for one RemotePeer, which tells it how to reach the connection
and the remote; it knows nothing of the Peer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from . import _aiortc, mlines, receivers, rollback, sdp
from .errors import ErrorCode, PeerixError
from .signaling import ANSWER, CANDIDATE, OFFER
from .transceivers import Emit, Spawn, Transceivers, accept_incoming_media

if TYPE_CHECKING:
    from aiortc.sdp import SessionDescription

    from .media import MediaStream

#: Candidates held while waiting for the remote description they belong to.
MAX_QUEUED_CANDIDATES = 100
#: Seconds a renegotiation offer waits for its answer before it is withdrawn and made again.
#: A browser Peerix peer that is busy with its own negotiation ignores our offer without a word
#: (perfect negotiation, docs/PROTOCOL.md): without this we would wait in have-local-offer forever.
OFFER_TIMEOUT = 3.0
#: Seconds between answering after a rollback and offering our own changes again, so that the
#: re-offer does not reach the remote while it is still applying our answer (it would take the
#: offer for a collision and ignore it).
REOFFER_DELAY = 0.2


Op = Callable[[], Awaitable[None]]
#: `send(description, via)`: a `{type, sdp}` to the remote, over "control" or the "driver".
Send = Callable[[dict[str, str], str], None]


class Negotiation:
    """The operations queue and the offer/answer state of one RemotePeer's connection.

    `connection()` is the current RTCPeerConnection; `restart()` replaces it (a first-offer
    collision); `give_up(reason)` closes the remote (a first exchange that cannot work);
    `send` carries descriptions; `emit`, `report` and `spawn` are the remote's. The remote sets
    `control_open` when its control channel opens: renegotiation waits for it and rides it.
    """

    def __init__(
        self,
        name: str,
        polite: bool,
        media: Transceivers,
        *,
        connection: Callable[[], RTCPeerConnection],
        restart: Callable[[], Awaitable[None]],
        give_up: Callable[[str], Coroutine[Any, Any, None]],
        send: Send,
        emit: Emit,
        report: Callable[[BaseException, ErrorCode], None],
        spawn: Spawn,
    ) -> None:
        self.polite = polite
        self.control_open = False
        self._name = name  # for task names
        self._media = media
        self._connection = connection
        self._restart = restart
        self._give_up = give_up
        self._send = send
        self._emit = emit
        self._report = report
        self._spawn = spawn
        self._queue: asyncio.Queue[tuple[Op, ErrorCode]] = asyncio.Queue()
        self._closed = False
        self._negotiation_queued = False
        self._needs_negotiation = False
        self._pending_candidates: list[dict[str, Any]] = []
        self._offer_started: tuple[float, str] | None = None  # our pending offer: when, which path
        self._before_offer: Any = None  # what rollback returns to (rollback.snapshot)
        self._offer_timer: asyncio.TimerHandle | None = None  # OFFER_TIMEOUT of our pending offer
        self._offer_seq = 0  # counts our offers, so a late timer knows its offer is gone
        self._reoffer_timer: asyncio.TimerHandle | None = None
        self._rolled_back = False  # the current exchange answered after a rollback
        # What browsers hold us to (sdp.py): header-extension ids of the BUNDLE group, and the
        # m-lines the remote rejected in its last description.
        self._extensions = sdp.ExtensionIds()
        self._rejected: set[str] = set()

    # -- the queue --------------------------------------------------------------------------
    def enqueue(self, op: Op, code: ErrorCode) -> None:
        """Run `op` after the queued operations; its failure is an `error` event with `code`."""
        if not self._closed:
            self._queue.put_nowait((op, code))

    async def run(self) -> None:
        """The queue's task (the remote owns it)."""
        while True:
            op, code = await self._queue.get()
            if self._closed:
                continue
            try:
                await op()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._report(error, code)
                if (
                    code == "PEER_NEGOTIATION_ERROR"
                    and self._connection().remoteDescription is None
                ):
                    # The first exchange cannot be applied (e.g. an SDP aiortc rejects): this
                    # connection can never work, and retrying would get the same description.
                    self._spawn(
                        self._give_up(f"first negotiation failed: {error}"),
                        f"remote:{self._name}:close",
                    )

    def close(self) -> None:
        """The remote is closing: queued and later operations are dropped, timers stopped."""
        self._closed = True
        self._cancel_offer_timer()
        if self._reoffer_timer is not None:
            self._reoffer_timer.cancel()

    # -- what the remote asks for -----------------------------------------------------------
    def negotiate(self) -> None:
        """Ask for an offer to the remote (coalesced: one queued negotiation at a time)."""
        if not self._negotiation_queued:
            self._negotiation_queued = True
            self.enqueue(self._op_negotiate, "PEER_NEGOTIATION_ERROR")

    def resume(self) -> None:
        """The control channel opened: make the offer that waited for it, if any."""
        if self._needs_negotiation:
            self.negotiate()

    def start(self) -> None:
        """Make the first offer (we were in the room first and saw the remote's JOIN)."""
        self.enqueue(self._op_first_offer, "PEER_NEGOTIATION_ERROR")

    def receive(
        self, kind: int, payload: Any, via: str, labels: dict[str, str] | None = None
    ) -> None:
        """A description or candidate from the remote, via the driver or the control channel."""
        if kind == OFFER:
            self.enqueue(lambda: self._op_offer(payload, labels, via), "PEER_NEGOTIATION_ERROR")
        elif kind == ANSWER:
            self.enqueue(lambda: self._op_answer(payload), "PEER_NEGOTIATION_ERROR")
        elif kind == CANDIDATE:
            self.enqueue(lambda: self._op_candidate(payload), "PEER_ICECANDIDATE_ERROR")

    async def sync_outgoing(self, published: Mapping[str, MediaStream]) -> None:
        """(In a queued operation.) Senders follow `published`; offer if anything changed."""
        if self._media.sync_outgoing(self._connection(), published):
            await self._op_negotiate()

    # -- offers -----------------------------------------------------------------------------
    async def _op_first_offer(self) -> None:
        pc = self._connection()
        # Skip if the remote's offer got here first: its exchange already set up the connection.
        if (
            pc.signalingState == "stable"
            and pc.remoteDescription is None
            and pc.localDescription is None
        ):
            await self._make_offer()

    async def _op_negotiate(self) -> None:
        self._negotiation_queued = False
        pc = self._connection()
        if pc.signalingState != "stable" or not self.control_open:
            # Later: when the current exchange completes, or when the control channel opens
            # (all renegotiation rides the control channel).
            self._needs_negotiation = True
            return
        await self._make_offer()

    async def _make_offer(self) -> None:
        self._needs_negotiation = False
        pc = self._connection()
        via = "control" if self.control_open else "driver"
        self._emit("negotiation:start", kind="local", via=via)
        self._offer_started = (time.perf_counter(), via)
        self._before_offer = rollback.snapshot(pc)
        offer = await pc.createOffer()
        text = self._as_browsers_want(offer.sdp)
        mlines.use_extension_ids(pc, sdp.extension_ids(text))
        receivers.use_audio_jitter_buffers(pc)
        await pc.setLocalDescription(RTCSessionDescription(sdp=text, type="offer"))
        self._send_description(pc.localDescription, via)
        if via == "control":
            self._arm_offer_timer()

    def _as_browsers_want(self, text: str) -> str:
        """Our description with the group's header-extension ids and the remote's rejected
        m-lines (sdp.py: what browsers refuse otherwise)."""
        return sdp.reject(self._extensions.apply(text), self._rejected)

    def _send_description(self, description: RTCSessionDescription, via: str) -> None:
        # Again here: aiortc writes its local description anew (ports from its candidates).
        self._send({"type": description.type, "sdp": self._as_browsers_want(description.sdp)}, via)

    def _arm_offer_timer(self) -> None:
        self._cancel_offer_timer()
        self._offer_seq += 1
        seq = self._offer_seq
        loop = asyncio.get_running_loop()
        self._offer_timer = loop.call_later(OFFER_TIMEOUT, self._on_offer_timeout, seq)

    def _cancel_offer_timer(self) -> None:
        if self._offer_timer is not None:
            self._offer_timer.cancel()
            self._offer_timer = None

    def _on_offer_timeout(self, seq: int) -> None:
        self._offer_timer = None
        if seq == self._offer_seq:
            self.enqueue(lambda: self._op_withdraw(seq), "PEER_NEGOTIATION_ERROR")

    async def _op_withdraw(self, seq: int) -> None:
        """Our offer got no answer: take it back (rollback.py) and make it again."""
        pc = self._connection()
        if seq != self._offer_seq or not rollback.can_roll_back(pc):
            return
        rollback.restore(pc, rollback.roll_back_local_offer(pc, self._before_offer))
        self._emit(
            "signal:withdraw",
            kind="offer",
            via="control",
            detail=f"no answer within {OFFER_TIMEOUT:g} s: offering again",
        )
        await self._make_offer()

    # -- the remote's offers and answers ----------------------------------------------------
    async def _op_offer(
        self, description: dict[str, str], labels: dict[str, str] | None, via: str
    ) -> None:
        started = time.perf_counter()
        pc = self._connection()
        parked: list[RTCRtpTransceiver] = []
        # Its extension ids bind the group even if we ignore it: a browser that rolls this
        # offer back still refuses ids that clash with it.
        self._extensions.learn(description["sdp"])
        if pc.signalingState != "stable":
            if not self.polite:
                self._emit(
                    "signal:ignore",
                    kind="offer",
                    via=via,
                    detail="glare: the impolite side keeps its offer",
                )
                return
            if pc.remoteDescription is None:
                # Both sent the first offer: ours carried nothing else, so start over.
                self._pending_candidates.clear()
                self._extensions = sdp.ExtensionIds()
                self._rejected = set()
                await self._restart()
                pc = self._connection()
            else:
                parked = rollback.roll_back_local_offer(pc, self._before_offer)
                self._cancel_offer_timer()
                self._needs_negotiation = True  # offer our rolled-back changes again afterwards
                self._rolled_back = True
                self._emit(
                    "signal:rollback",
                    kind="offer",
                    via=via,
                    detail=f"{len(parked)} transceivers parked",
                )
        self._emit("negotiation:start", kind="remote", via=via)
        if labels is not None:
            self._media.labels = labels
        for transceiver in mlines.retire_recycled(pc, description["sdp"], self._rejected):
            await self._media.retire(transceiver)
        self._rejected = sdp.rejected_mids(description["sdp"])
        parked += rollback.park_unoffered(pc)
        try:
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=description["sdp"], type="offer")
            )
            accept_incoming_media(pc)
            receivers.use_audio_jitter_buffers(pc)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(
                RTCSessionDescription(sdp=self._as_browsers_want(answer.sdp), type="answer")
            )
        finally:
            rollback.restore(pc, parked)
        self._send_description(pc.localDescription, via)
        self._negotiated("remote", started, via)
        await self._after_exchange()

    async def _op_answer(self, description: dict[str, str]) -> None:
        pc = self._connection()
        if pc.signalingState != "have-local-offer":
            self._emit(
                "signal:ignore", kind="answer", detail=f"no offer pending ({pc.signalingState})"
            )
            return
        # The mids of our pending offer from aiortc's parsed copy: `pc.localDescription` would
        # write the whole description out as text, twice (see _aiortc.remote_session_or_none).
        offered = _aiortc.pending_local_description(pc)
        offered_mids = [m.rtp.muxId or None for m in offered.media] if offered else []
        if sdp.mids(description["sdp"]) != offered_mids:
            # The answer to an offer we withdrew (OFFER_TIMEOUT), arriving late: it does not
            # fit the offer now pending, whose own answer is on its way.
            self._emit("signal:ignore", kind="answer", detail="answer to a withdrawn offer")
            return
        self._cancel_offer_timer()
        self._extensions.learn(description["sdp"])
        self._rejected = sdp.rejected_mids(description["sdp"])
        await pc.setRemoteDescription(RTCSessionDescription(sdp=description["sdp"], type="answer"))
        if self._offer_started is not None:
            started, via = self._offer_started
            self._offer_started = None
            self._negotiated("local", started, via)
        await self._after_exchange()

    def _negotiated(self, offerer: str, started: float, via: str) -> None:
        """A log row per completed offer/answer exchange: who offered, which path, how long
        (`negotiation:start`, with the same `kind` and `via`, began it)."""
        took = (time.perf_counter() - started) * 1000
        self._emit("negotiation:done", kind=offerer, via=via, detail=f"{took:.1f} ms")

    async def _after_exchange(self) -> None:
        pc = self._connection()
        receivers.refresh_codecs(pc)
        await self._apply_queued_candidates()
        self._media.sync_incoming(pc)
        if self._rolled_back:
            # Offer our rolled-back changes once the remote has had time to apply our answer.
            self._rolled_back = False
            loop = asyncio.get_running_loop()
            self._reoffer_timer = loop.call_later(REOFFER_DELAY, self.negotiate)
        elif self._needs_negotiation:
            await self._op_negotiate()

    # -- candidates (browsers trickle; aiortc puts its own in the SDP) -----------------------
    async def _op_candidate(self, candidate: dict[str, Any] | None) -> None:
        # aiortc's parsed remote description: `remoteDescription` would write it out as text
        # for every trickled candidate.
        remote = _aiortc.remote_session_or_none(self._connection())
        if remote is None or (
            candidate is not None
            and candidate.get("usernameFragment") is not None
            and candidate["usernameFragment"] != _session_ufrag(remote)
        ):
            # docs/PROTOCOL.md: held until the description it belongs to is applied.
            if candidate is not None and len(self._pending_candidates) < MAX_QUEUED_CANDIDATES:
                self._pending_candidates.append(candidate)
            return
        await self._add_candidate(candidate)

    async def _apply_queued_candidates(self) -> None:
        queued, self._pending_candidates = self._pending_candidates, []
        if not queued:
            return
        remote = _aiortc.remote_session_or_none(self._connection())
        ufrag = _session_ufrag(remote) if remote is not None else None
        for candidate in queued:
            if candidate.get("usernameFragment") in (None, ufrag):
                await self._add_candidate(candidate)

    async def _add_candidate(self, candidate: dict[str, Any] | None) -> None:
        pc = self._connection()
        try:
            if not candidate or not candidate["candidate"]:
                await pc.addIceCandidate(None)  # end of candidates
                return
            text = candidate["candidate"]
            parsed = candidate_from_sdp(
                text.split(":", 1)[1] if text.startswith("candidate:") else text
            )
            parsed.sdpMid = candidate.get("sdpMid")
            parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
            if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
                parsed.sdpMLineIndex = 0
            await pc.addIceCandidate(parsed)
        except Exception as error:
            raise PeerixError(
                "PEER_ICECANDIDATE_ERROR", f"bad candidate {candidate!r}: {error}", cause=error
            ) from None


def _session_ufrag(session: SessionDescription) -> str | None:
    """The ICE ufrag of a parsed description: its first m-section's that has one, as the first
    `a=ice-ufrag` line of its text (all are the same with max-bundle)."""
    ufrags = (m.ice.usernameFragment for m in session.media if m.ice is not None)
    return next((ufrag for ufrag in ufrags if ufrag is not None), None)
