"""MediaStream, the Python counterpart of a browser MediaStream, and the track checks every
media module shares (`MediaSourceError`, `_check_track`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..errors import PeerixError

__all__ = ["MediaSourceError", "MediaStream"]


class MediaSourceError(PeerixError, MediaStreamError):
    """A media source failed (code PEER_MEDIASTREAM_ERROR).

    It is also an aiortc `MediaStreamError`, so an RTCRtpSender or Tap reading the
    track treats it as the end of the track instead of crashing its task.
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__("PEER_MEDIASTREAM_ERROR", message, cause)


def _check_track(track: object, what: str = "track") -> MediaStreamTrack:
    if not isinstance(track, MediaStreamTrack):
        raise PeerixError(
            "PEER_MEDIASTREAM_ERROR",
            f"{what} must be an aiortc MediaStreamTrack, got {type(track).__module__}."
            f"{type(track).__qualname__}",
        )
    return track


class MediaStream:
    """An ordered set of aiortc tracks with an id, like a browser MediaStream.

    The id becomes the `a=msid` stream id when the stream is published. Objects that must stay
    alive while the tracks play (a MediaPlayer) are kept on the stream.
    """

    def __init__(self, tracks: Iterable[MediaStreamTrack] = (), id: str | None = None) -> None:
        if id is None:
            id = str(uuid.uuid4())
        if not isinstance(id, str) or not id or any(c.isspace() for c in id):
            # the id is an SDP token (a=msid:<stream-id> <track-id>)
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                f"MediaStream id must be a non-empty string without whitespace, got {id!r}",
            )
        if isinstance(tracks, MediaStreamTrack):
            raise PeerixError(
                "PEER_MEDIASTREAM_ERROR",
                f"MediaStream takes an iterable of tracks, got a single {type(tracks).__name__};"
                " wrap it in a list",
            )
        self._id = id
        self._tracks: list[MediaStreamTrack] = []
        self._resources: list[Any] = []  # kept alive with the stream (e.g. a MediaPlayer)
        for track in tracks:
            self.add_track(track)

    @property
    def id(self) -> str:
        """The stream id (the MediaStream id of `a=msid`)."""
        return self._id

    @property
    def tracks(self) -> list[MediaStreamTrack]:
        """A copy of the tracks, in insertion order."""
        return list(self._tracks)

    def get_tracks(self, kind: str | None = None) -> list[MediaStreamTrack]:
        """The tracks of one kind ("audio"/"video"), or all of them."""
        return [t for t in self._tracks if kind is None or t.kind == kind]

    def get_track_by_id(self, track_id: str) -> MediaStreamTrack | None:
        """The track with this id, or None (browser `getTrackById`)."""
        return next((t for t in self._tracks if t.id == track_id), None)

    @property
    def audio_tracks(self) -> list[MediaStreamTrack]:
        """The audio tracks."""
        return self.get_tracks("audio")

    @property
    def video_tracks(self) -> list[MediaStreamTrack]:
        """The video tracks."""
        return self.get_tracks("video")

    @property
    def active(self) -> bool:
        """True while at least one track has not ended."""
        return any(t.readyState != "ended" for t in self._tracks)

    def add_track(self, track: MediaStreamTrack) -> None:
        """Add a track; adding one that is already there does nothing."""
        _check_track(track)
        if track not in self._tracks:
            self._tracks.append(track)

    def remove_track(self, track: MediaStreamTrack) -> None:
        """Remove a track; removing one that is not there does nothing."""
        _check_track(track)
        if track in self._tracks:
            self._tracks.remove(track)

    def stop(self) -> None:
        """Stop every track (their sources stop producing, relays and taps end)."""
        for track in self._tracks:
            track.stop()

    def __repr__(self) -> str:
        kinds = ", ".join(f"{t.kind}:{t.readyState}" for t in self._tracks)
        return f"MediaStream(id={self._id!r}, active={self.active}, tracks=[{kinds}])"
