"""PeerixError: the one exception type the library raises and reports, with Peerix's codes."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Literal, get_args

ErrorCode = Literal[
    "UNKNOWN_ERROR",
    "PEER_SIGNALING_ERROR",
    "PEER_NEGOTIATION_ERROR",
    "PEER_ICECANDIDATE_ERROR",
    "PEER_MEDIASTREAM_ERROR",
    "PEER_DATACHANNEL_ERROR",
]

ERROR_CODES: tuple[ErrorCode, ...] = get_args(ErrorCode)


class PeerixError(Exception):
    """An error with a Peerix error code; `cause` keeps the original exception, if any."""

    def __init__(
        self,
        code: ErrorCode = "UNKNOWN_ERROR",
        message: str = "",
        cause: BaseException | None = None,
    ) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown PeerixError code {code!r}; expected one of {ERROR_CODES}")
        self.code: ErrorCode = code
        self.message = message or code
        self.cause = cause
        super().__init__(f"{code}: {self.message}")

    @classmethod
    def wrap(cls, error: BaseException, code: ErrorCode = "UNKNOWN_ERROR") -> PeerixError:
        """Return `error` itself if it already is a PeerixError, else a PeerixError around it."""
        if isinstance(error, PeerixError):
            return error
        text = str(error) or type(error).__name__
        return cls(code, f"{type(error).__name__}: {text}", cause=error)


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice nearest to a misspelt `name` (for "did you mean ...?" hints), or None."""
    matches = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None
