"""The per-connection work aiortc and aioice would repeat, done once per Peer, over real rooms.

Each test counts the expensive call itself (certificate generation, the interface listing, SDP
parse and serialisation) across a room of real aiortc connections: it fails if a connection
does that work again (docs/BENCHMARKS.md has the costs). The last one runs Peers on two loops
in two threads at once and checks that they share none of this state and that aiortc's and
aioice's modules are never patched (raw aiortc in the same process keeps making its own).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import aioice.ice
import aiortc.rtcpeerconnection
import ifaddr
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate
from aiortc.sdp import SessionDescription

from peerix_nb import MemoryDriver, Peer, certificate, config, media
from testbed.rooms import fully_connected, leave_all, room, wait_until

REMOTES = 4  # each peer of a 5-peer room holds 4 connections


def count_calls(monkeypatch: pytest.MonkeyPatch, counts: Counter[str]) -> None:
    """Count certificate generations, interface listings, SDP parses and SDP serialisations,
    and the descriptions aiortc was given, from here on (restored after the test)."""
    generate = RTCCertificate.generateCertificate.__func__  # type: ignore[attr-defined]

    def counted_generate(cls: type[RTCCertificate]) -> RTCCertificate:
        counts["certificate"] += 1
        return generate(cls)  # type: ignore[no-any-return]

    monkeypatch.setattr(RTCCertificate, "generateCertificate", classmethod(counted_generate))

    get_adapters = ifaddr.get_adapters

    def counted_adapters(*args: Any, **kwargs: Any) -> Any:
        counts["interfaces"] += 1
        return get_adapters(*args, **kwargs)

    monkeypatch.setattr(ifaddr, "get_adapters", counted_adapters)

    parse = SessionDescription.parse.__func__  # type: ignore[attr-defined]

    def counted_parse(cls: type[SessionDescription], text: str) -> SessionDescription:
        counts["parse"] += 1
        return parse(cls, text)  # type: ignore[no-any-return]

    monkeypatch.setattr(SessionDescription, "parse", classmethod(counted_parse))
    write = SessionDescription.__str__

    def counted_write(self: SessionDescription) -> str:
        counts["write"] += 1
        return write(self)

    monkeypatch.setattr(SessionDescription, "__str__", counted_write)
    for name in ("setLocalDescription", "setRemoteDescription"):
        method = getattr(RTCPeerConnection, name)

        async def counted_set(self: RTCPeerConnection, description: Any, _m=method, _n=name) -> Any:
            counts[_n] += 1
            return await _m(self, description)

        monkeypatch.setattr(RTCPeerConnection, name, counted_set)


def fingerprints(pc: RTCPeerConnection) -> list[str]:
    assert pc.sctp is not None
    return [f.value for f in pc.sctp.transport.getLocalParameters().fingerprints]


async def test_one_certificate_per_peer_whatever_the_number_of_remotes(monkeypatch):
    counts: Counter[str] = Counter()
    count_calls(monkeypatch, counts)
    peers = await room(1 + REMOTES)
    try:
        connections = [r.connection for p in peers for r in p.connections.values()]
        assert len(connections) == (1 + REMOTES) * REMOTES
        # one per Peer (its PeerCertificate); aiortc's constructor would add one per connection
        assert counts["certificate"] == len(peers), counts
        for peer in peers:
            mine = [f.value for f in certificate.of(peer).getFingerprints()]
            for remote in peer.connections.values():
                assert fingerprints(remote.connection) == mine  # what the remote verifies
    finally:
        await leave_all(peers)


async def test_interfaces_listed_once_per_peer_and_again_after_a_join(monkeypatch):
    counts: Counter[str] = Counter()
    count_calls(monkeypatch, counts)
    peers = await room(1 + REMOTES)
    try:
        # aioice lists them in every gathering: that would be once per connection
        assert counts["interfaces"] == len(peers), counts
        addresses = set(config.host_addresses(peers[0])())
        assert addresses, "no local address: this machine has no interface aioice would use"
        for remote in peers[0].connections.values():
            assert remote.connection.sctp is not None
            gatherer = remote.connection.sctp.transport.transport.iceGatherer
            hosts = {c.ip for c in gatherer.getLocalCandidates() if c.type == "host"}
            assert hosts == addresses  # every listed address got its host candidate
        # leaving and joining again lists them afresh (a network change is seen then)
        await peers[0].leave()
        before = counts["interfaces"]
        await peers[0].join(room="room")
        await wait_until(
            peers,
            lambda: (
                len(peers[0].connections) == REMOTES
                and all(r.state == "connected" for r in peers[0].connections.values())
            ),
        )
        assert counts["interfaces"] == before + 1, counts
    finally:
        await leave_all(peers)


async def test_a_failed_connection_lists_the_interfaces_again(monkeypatch):
    counts: Counter[str] = Counter()
    count_calls(monkeypatch, counts)
    a, b = await room(2)
    try:
        listed = config.host_addresses(a).listings
        remote = a.connections[b.id]
        await remote.fail("test: the network changed")
        # the peer JOINs the remote again; that connection gathers from a fresh list
        await wait_until(
            [a, b],
            lambda: (
                b.id in a.connections
                and a.connections[b.id] is not remote
                and a.connections[b.id].state == "connected"
            ),
        )
        assert config.host_addresses(a).listings == listed + 1
    finally:
        await leave_all([a, b])


async def test_ice_credentials_come_from_one_random_read_per_connection(monkeypatch):
    """aioice draws each connection's ufrag and password a character at a time (26 reads of
    the OS's random source); a Peer's connections get theirs from one read each: aioice's
    drawing never runs, and every connection still has its own valid credentials."""
    drawn: list[int] = []
    random_string = aioice.ice.random_string

    def counted(length: int) -> str:
        drawn.append(length)
        return random_string(length)

    monkeypatch.setattr(aioice.ice, "random_string", counted)
    peers = await room(1 + REMOTES)
    try:
        assert drawn == []
        credentials = []
        for peer in peers:
            for remote in peer.connections.values():
                assert remote.connection.sctp is not None
                gatherer = remote.connection.sctp.transport.transport.iceGatherer
                params = gatherer.getLocalParameters()
                aioice.ice.validate_username(params.usernameFragment)
                aioice.ice.validate_password(params.password)
                credentials.append((params.usernameFragment, params.password))
        assert len(set(credentials)) == len(credentials) == (1 + REMOTES) * REMOTES
    finally:
        await leave_all(peers)


async def test_each_description_parsed_once_and_written_out_only_to_send(monkeypatch):
    """aiortc parses each description it is given (setLocal/setRemoteDescription) and writes
    our own out twice (createOffer/createAnswer, then localDescription to send it, with its
    candidates). Nothing more: no second parse of a remote description, no text written to
    look at a ufrag, an mid or an msid. With media, so the incoming-track sync runs too."""
    counts: Counter[str] = Counter()
    count_calls(monkeypatch, counts)
    small = {"width": 160, "height": 120, "fps": 15}
    peers = await room(3)
    a, b, c = peers
    try:
        await a.publish(media.synthetic(audio=False, **small), label="camera")
        await wait_until(
            peers, lambda: all("camera" in p.connections[a.id].streams for p in (b, c))
        )
        await b.publish(media.synthetic(audio=False, **small), label="camera")
        await wait_until(
            peers, lambda: all("camera" in p.connections[b.id].streams for p in (a, c))
        )
        assert counts["setRemoteDescription"] >= 3 * 2 + 4  # first exchanges + renegotiations
        assert counts["parse"] == counts["setLocalDescription"] + counts["setRemoteDescription"]
        assert counts["write"] == 2 * counts["setLocalDescription"], counts
    finally:
        await leave_all(peers)


class _SlowPacing:
    """aioice.ice's asyncio with the 20 ms pacing sleep of Connection.connect made 20 s long."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        return await asyncio.sleep(delay * 1000 if delay == 0.02 else delay, result)


async def test_ice_ends_when_its_check_list_is_done(monkeypatch):
    """aioice looks whether the check list is done only after each 20 ms pacing sleep; a
    Peer's connections stop waiting as soon as it is. Made 20 s long here, that sleep would
    hold every connection past the 10 s this room gets to connect."""
    monkeypatch.setattr(aioice.ice, "asyncio", _SlowPacing())
    driver = MemoryDriver()
    a, b = Peer(driver=driver), Peer(driver=driver)
    try:
        await a.join(room="ice")
        await b.join(room="ice")
        await wait_until([a, b], lambda: fully_connected([a, b]), timeout=10)
    finally:
        await leave_all([a, b])


def test_peers_on_two_loops_share_no_setup_state() -> None:
    """Two rooms on two loops in two threads, built at the same time, while this thread makes
    raw RTCPeerConnections: no Peer's certificate or address list is another's, and aiortc's
    and aioice's module globals stay the originals throughout (raw aiortc makes its own)."""
    original_certificate = aiortc.rtcpeerconnection.RTCCertificate
    original_addresses = aioice.ice.get_host_addresses
    start = threading.Barrier(3, timeout=30)
    results: dict[int, list[Peer]] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        async def main() -> None:
            start.wait()
            peers = await room(3, room_name=f"thread-{index}")
            results[index] = peers
            for peer in peers:  # every connection uses its own peer's certificate
                mine = [f.value for f in certificate.of(peer).getFingerprints()]
                for remote in peer.connections.values():
                    assert fingerprints(remote.connection) == mine
            await leave_all(peers)

        try:
            asyncio.run(main())
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    raw_fingerprints: set[str] = set()

    async def watch() -> None:
        start.wait()
        while any(t.is_alive() for t in threads):
            assert aiortc.rtcpeerconnection.RTCCertificate is original_certificate
            assert aioice.ice.get_host_addresses is original_addresses
            pc = RTCPeerConnection()  # raw aiortc, no peer: a certificate of its own
            pc.createDataChannel("")  # its transports, so it shows its fingerprints
            raw_fingerprints.add(fingerprints(pc)[0])
            await pc.close()

    asyncio.run(watch())
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    peers = results[0] + results[1]
    assert len(peers) == 6
    certificates = [certificate.of(p) for p in peers]
    addresses = [config.host_addresses(p) for p in peers]
    assert len({id(c) for c in certificates}) == len(peers)
    assert len({id(a) for a in addresses}) == len(peers)
    peer_fingerprints = {f.value for c in certificates for f in c.getFingerprints()}
    assert not peer_fingerprints & raw_fingerprints
    assert aiortc.rtcpeerconnection.RTCCertificate is original_certificate
    assert aioice.ice.get_host_addresses is original_addresses
