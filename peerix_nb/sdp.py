"""The SDP rules browsers hold an aiortc peer to, applied to the descriptions we send.

A browser peer sends whatever its RTCPeerConnection produces and never rewrites it, so the
kernel adapts (docs/PROTOCOL.md, "What browsers hold us to"):

- RTP header-extension ids are fixed per BUNDLE group once used. aiortc numbers every offer
  from its own fixed table (mid=1, ssrc-audio-level=2, abs-send-time=3) while Chrome uses
  others (e.g. abs-send-time=2, video-orientation=3, transport-cc=4, mid=9, audio level=14),
  and Chrome refuses a remote offer that maps an id already in use to another URI ("RTP
  extension ID reassignment not supported"), including ids of an offer it rolled back.
  `ExtensionIds` remembers every mapping either side has used and rewrites our descriptions
  to it; an extension that cannot get a free id is dropped.
- An m-line the remote stopped (`transceiver.stop()`: port 0, its mid out of the BUNDLE group)
  must be rejected in our answer and in our later offers too. aiortc keeps every m-line open
  and bundled, and Chrome then refuses the answer ("A BUNDLE group in answer contains a MID
  ... that was not in the offered group"), after which no renegotiation ever works.

Only text is rewritten here; aiortc's state follows from the remote's answer, which mirrors
the ids we offered. Lines end in CRLF as aiortc and browsers write them.
"""

from __future__ import annotations

import re

#: The one-byte RTP header-extension ids (RFC 8285): 1-14; 15 is reserved.
EXTENSION_IDS = range(1, 15)
#: Ids for our first media offer, before the remote has shown its own. A Chromium peer whose
#: offer collides with ours rolls its offer back but keeps its ids, and an offer that maps one
#: of them to another URI breaks its connection for good (a sticky "Session error code:
#: ERROR_CONTENT"). Chromium 156 numbers from one of two tables, depending on whether audio or
#: video comes first: audio-level 1 / 14, abs-send-time 2 / 2, transport-cc 3 / 4, mid 4 / 9,
#: toffset 14 / 1, video-orientation 13 / 3; 5-8, 10 and 11 for the others, 12 in neither.
#: These ids fit both tables: abs-send-time as Chromium has it, mid on 9 (free in the other
#: table), the audio level on 12, which neither uses.
FIRST_IDS = {
    "urn:ietf:params:rtp-hdrext:sdes:mid": 9,
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": 2,
    "urn:ietf:params:rtp-hdrext:ssrc-audio-level": 12,
}

_EXTMAP = re.compile(r"^a=extmap:(\d+)(/\w+)? (\S+)(.*)$")
_MID = re.compile(r"^a=mid:(\S+)$", re.MULTILINE)
_MLINE = re.compile(r"^m=(\w+) (\d+) ")


def _split(sdp: str) -> tuple[list[str], list[list[str]]]:
    """The session lines, and the lines of each m-section (its m= line first)."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    session: list[str] = []
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    return session, sections


def _join(session: list[str], sections: list[list[str]]) -> str:
    return "\r\n".join([*session, *(line for s in sections for line in s)]) + "\r\n"


def extension_ids(sdp: str) -> dict[str, int]:
    """URI -> id of every `a=extmap` line of a description."""
    ids: dict[str, int] = {}
    if "a=extmap:" not in sdp:
        return ids  # a data-only description, most of a mesh's: no line to look at
    for line in sdp.splitlines():
        match = _EXTMAP.match(line)
        if match:
            ids[match.group(3)] = int(match.group(1))
    return ids


def mids(sdp: str) -> list[str | None]:
    """The mid of each m-section, in order (None where a section has no a=mid)."""
    _, sections = _split(sdp)
    out: list[str | None] = []
    for section in sections:
        match = _MID.search("\n".join(section))
        out.append(match.group(1) if match else None)
    return out


def rejected_mids(sdp: str) -> set[str]:
    """Mids of the m-sections a description rejects (port 0)."""
    _, sections = _split(sdp)
    out: set[str] = set()
    for section in sections:
        mline = _MLINE.match(section[0])
        mid = _MID.search("\n".join(section))
        if mline and mline.group(2) == "0" and mid:
            out.add(mid.group(1))
    return out


def reject(sdp: str, rejected: set[str]) -> str:
    """`sdp` with the m-sections of `rejected` mids at port 0 and out of the BUNDLE group."""
    if not rejected:
        return sdp
    session, sections = _split(sdp)
    for section in sections:
        match = _MID.search("\n".join(section))
        if match and match.group(1) in rejected:
            section[0] = _MLINE.sub(lambda m: f"m={m.group(1)} 0 ", section[0], count=1)
            section[:] = [line for line in section if not line.startswith("a=candidate:")]
    for i, line in enumerate(session):
        if line.startswith("a=group:BUNDLE"):
            items = [item for item in line.split()[1:] if item not in rejected]
            session[i] = " ".join(["a=group:BUNDLE", *items])
    return _join(session, sections)


class ExtensionIds:
    """Header-extension ids used in one connection's BUNDLE group, by URI and by id.

    `learn` every description either side sends (the remote's first: its ids win, even those
    of an offer that was then ignored or rolled back), and `apply` to each description we are
    about to send.
    """

    def __init__(self) -> None:
        self.by_uri: dict[str, int] = {}
        self.by_id: dict[int, str] = {}

    def _bind(self, uri: str, ident: int) -> None:
        old_id = self.by_uri.pop(uri, None)
        if old_id is not None:
            self.by_id.pop(old_id, None)
        old_uri = self.by_id.pop(ident, None)
        if old_uri is not None:
            self.by_uri.pop(old_uri, None)
        self.by_uri[uri] = ident
        self.by_id[ident] = uri

    def learn(self, sdp: str) -> None:
        """Take the remote's mappings as they are (a browser never renumbers its own)."""
        for uri, ident in extension_ids(sdp).items():
            if self.by_uri.get(uri) != ident:
                self._bind(uri, ident)

    def apply(self, sdp: str) -> str:
        """`sdp` with every extension on the id the group uses for its URI; an extension new
        to the group takes its FIRST_IDS id (or its own) if free, else a free one, else is
        dropped."""
        if "a=extmap:" not in sdp:
            return sdp  # no extension to renumber (data channels only): unchanged
        mapping: dict[str, int | None] = {}
        for uri, ident in extension_ids(sdp).items():
            if uri in self.by_uri:
                mapping[uri] = self.by_uri[uri]
                continue
            ident = FIRST_IDS.get(uri, ident)
            if ident not in self.by_id:
                chosen: int | None = ident
            else:
                chosen = next((i for i in EXTENSION_IDS if i not in self.by_id), None)
            if chosen is not None:
                self._bind(uri, chosen)
            mapping[uri] = chosen
        out: list[str] = []
        for line in sdp.replace("\r\n", "\n").split("\n"):
            match = _EXTMAP.match(line)
            if match:
                mapped = mapping.get(match.group(3))
                if mapped is None:
                    continue  # no id left for it: not offered
                line = f"a=extmap:{mapped}{match.group(2) or ''} {match.group(3)}{match.group(4)}"
            out.append(line)
        return "\r\n".join(out)
