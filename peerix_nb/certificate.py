"""One DTLS certificate per Peer instead of one per RTCPeerConnection (aiortc 1.16 private state).

Why: aiortc's RTCPeerConnection makes a fresh EC key and self-signed certificate for every
connection, and every DTLS transport builds a new OpenSSL context from it and recomputes its
fingerprints for each SDP: about 0.4 ms a connection, ~10 % of a 16-peer mesh's connect time
(bench/mesh.py). Browsers let one certificate serve many connections
(RTCConfiguration.certificates); aiortc has no such option, so `connection` builds each
RTCPeerConnection with the Peer's certificate from the start (through _aiortc.py): aiortc's
constructor then makes none of its own, which was ~0.15 ms, most of the constructor. Measured:
a 16-peer mesh then needs less CPU than raw aiortc (docs/BENCHMARKS.md).

The certificates live in a weak map keyed by their Peer: each Peer's entry is made, read and
renewed only on that Peer's loop, and a dict lookup or store is atomic, so Peers on two loops in
two threads share no certificate and no lock is needed.
"""

from __future__ import annotations

import datetime
import weakref
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsFingerprint

from . import _aiortc

#: Certificates are replaced this long before they expire (aiortc makes them valid 30 days).
RENEW_BEFORE = datetime.timedelta(days=1)


class PeerCertificate(RTCCertificate):
    """An RTCCertificate whose OpenSSL contexts and fingerprints are built once."""

    def __init__(self, key: Any, cert: Any) -> None:
        super().__init__(key=key, cert=cert)
        self._contexts: dict[tuple[bytes, ...], Any] = {}
        self._fingerprints: list[RTCDtlsFingerprint] | None = None

    def getFingerprints(self) -> list[RTCDtlsFingerprint]:  # aiortc's name
        if self._fingerprints is None:
            self._fingerprints = super().getFingerprints()
        return list(self._fingerprints)

    def _create_ssl_context(self, srtp_profiles: list[Any]) -> Any:  # aiortc's hook (_aiortc.py)
        # One context serves many SSL connections; aiortc configures it the same way each time.
        key = tuple(profile.openssl_profile for profile in srtp_profiles)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = _aiortc.create_ssl_context(self, srtp_profiles)
        return context

    @property
    def stale(self) -> bool:
        return self.expires - datetime.datetime.now(datetime.UTC) < RENEW_BEFORE


_certificates: weakref.WeakKeyDictionary[Any, PeerCertificate] = weakref.WeakKeyDictionary()


def of(owner: Any) -> PeerCertificate:
    """The certificate of `owner` (a Peer): made on first use, renewed before it expires."""
    current = _certificates.get(owner)
    if current is None or current.stale:
        current = _certificates[owner] = PeerCertificate.generateCertificate()
    return current


def connection(configuration: RTCConfiguration, owner: Any) -> RTCPeerConnection:
    """A new RTCPeerConnection for `owner` (a Peer) that uses its certificate and never made
    one of its own."""
    current = of(owner)
    pc = _aiortc.peer_connection(configuration, current)
    # Already so; kept in case a later aiortc builds its certificate list another way (the
    # certificate made would then be wasted, which tests/test_setup_costs.py would notice).
    _aiortc.set_certificates(pc, [current])
    return pc


def use_peer_certificate(pc: RTCPeerConnection, owner: Any) -> None:
    """Make `pc` use `owner`'s certificate; call before anything creates a transport on it."""
    _aiortc.set_certificates(pc, [of(owner)])
