"""The connection settings every RemotePeer of a peer shares: ICE servers, policy, timeout.

The checks run where the settings are given (Peer, BrowserPeer), so bad input fails in the
cell that gave it.
"""

from __future__ import annotations

from typing import Any

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


__all__ = ["check_connection_timeout", "make_configuration", "turn_urls"]
