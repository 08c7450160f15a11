"""The connection settings every RemotePeer of a peer shares: ICE servers, policy, timeout,
and the machine's addresses its ICE gatherings start from (`HostAddresses`).

The checks run where the settings are given (Peer, BrowserPeer), so bad input fails in the
cell that gave it.
"""

from __future__ import annotations

import weakref
from typing import Any

import aioice.ice
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCIceTransportPolicy

_ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


def check_connection_timeout(value: Any) -> float:
    """`connection_timeout` in seconds (0 = none), checked for Peer and BrowserPeer alike."""
    if not isinstance(value, int | float) or value < 0:
        raise ValueError(f"connection_timeout must be a number of seconds >= 0, got {value!r}")
    return float(value)


def make_configuration(ice_servers: Any, ice_transport_policy: str) -> RTCConfiguration:
    """RTCConfiguration for every connection of a peer; never aiortc's default public STUN.

    `ice_servers` is None (no servers), or a list of Peerix-style dicts
    `{"urls": str | [str], "username": ..., "credential": ...}`, aiortc `RTCIceServer`s or URL
    strings. With `iceServers=None` aiortc silently uses a Google STUN server, which stalls
    gathering for 5 s on a machine without internet access, so None becomes `[]`.
    """
    servers: list[RTCIceServer] = []
    entries = [] if ice_servers is None else ice_servers
    if isinstance(entries, (dict, str, RTCIceServer)):
        entries = [entries]
    if not isinstance(entries, (list, tuple)):
        raise TypeError(f"ice_servers must be a list of servers, got {type(ice_servers).__name__}")
    for entry in entries:
        if isinstance(entry, RTCIceServer):
            server = entry
        elif isinstance(entry, str):
            server = RTCIceServer(urls=entry)
        elif isinstance(entry, dict):
            unknown = set(entry) - {"urls", "username", "credential", "credentialType"}
            if "urls" not in entry or unknown:
                raise ValueError(
                    f"ice server {entry!r} needs 'urls' (and optionally 'username', 'credential')"
                )
            server = RTCIceServer(
                urls=entry["urls"],
                username=entry.get("username"),
                credential=entry.get("credential"),
            )
        else:
            raise TypeError(
                f"ice server must be a dict, a URL string or RTCIceServer, got {entry!r}"
            )
        urls = [server.urls] if isinstance(server.urls, str) else list(server.urls)
        if not urls:
            raise ValueError(f"ice server {entry!r} has no URLs")
        for url in urls:
            if not isinstance(url, str) or not url.startswith(_ICE_SCHEMES):
                raise ValueError(
                    f"ice server URL {url!r} must start with stun:, stuns:, turn: or turns:"
                )
            if url.startswith(("turn:", "turns:")) and (
                server.username is None or server.credential is None
            ):
                raise ValueError(f"TURN server {url!r} needs 'username' and 'credential'")
        servers.append(server)
    policies = {"all": RTCIceTransportPolicy.ALL, "relay": RTCIceTransportPolicy.RELAY}
    if ice_transport_policy not in policies:
        raise ValueError(
            f"ice_transport_policy must be 'all' or 'relay', got {ice_transport_policy!r}"
        )
    return RTCConfiguration(
        iceServers=servers,
        iceTransportPolicy=policies[ice_transport_policy],
        # BALANCED gathers a new ICE transport per media kind on renegotiation (AIORTC-NOTES).
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )


def turn_urls(configuration: RTCConfiguration) -> list[str]:
    """The turn:/turns: URLs of a configuration's ICE servers."""
    urls: list[str] = []
    for server in configuration.iceServers or []:
        for url in [server.urls] if isinstance(server.urls, str) else server.urls:
            if url.startswith(("turn:", "turns:")):
                urls.append(url)
    return urls


class HostAddresses:
    """The local addresses a Peer's ICE gatherings make host candidates from, listed once per
    Peer instead of once per connection (aioice walks every network interface with ifaddr,
    0.25-0.35 ms here, in each of the 240 gatherings of a 16-peer mesh).

    Why a list kept for a while is safe: it only says which addresses get a host-candidate
    socket. It is listed again at the next gathering after `refresh()`, which the Peer calls on
    every join and a RemotePeer on a failed connection, before its retry. Meanwhile an address
    that went away fails to bind and aioice skips it, as it would if the interface vanished
    between its own listing and the bind; an interface that came up is offered from the next
    refresh on. So a network change costs at most the connections made before a failure
    noticed it, which then retry with the new list. Each Peer has its own instance, used only
    on its loop: nothing is shared with another Peer or another thread.
    """

    def __init__(self) -> None:
        self._lists: dict[tuple[bool, bool], list[str]] = {}
        #: How many times the interfaces were listed (tests/test_setup_costs.py counts them).
        self.listings = 0

    def __call__(self, use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        """aioice's `get_host_addresses(use_ipv4, use_ipv6)`, from this Peer's list."""
        key = (use_ipv4, use_ipv6)
        addresses = self._lists.get(key)
        if addresses is None:
            # Looked up at each listing: whatever aioice's function is now.
            addresses = self._lists[key] = aioice.ice.get_host_addresses(use_ipv4, use_ipv6)
            self.listings += 1
        return list(addresses)  # aioice may keep or change what it gets

    def refresh(self) -> None:
        """List the interfaces again at the next gathering."""
        self._lists.clear()


# Keyed by Peer, as certificate.py's certificates: an entry is used on its Peer's loop only.
_host_addresses: weakref.WeakKeyDictionary[Any, HostAddresses] = weakref.WeakKeyDictionary()


def host_addresses(owner: Any) -> HostAddresses:
    """The HostAddresses of `owner` (a Peer), made on first use."""
    current = _host_addresses.get(owner)
    if current is None:
        current = _host_addresses[owner] = HostAddresses()
    return current


__all__ = [
    "HostAddresses",
    "check_connection_timeout",
    "host_addresses",
    "make_configuration",
    "turn_urls",
]
