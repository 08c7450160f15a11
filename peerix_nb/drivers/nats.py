"""NatsDriver: signaling through a NATS server (docs/PROTOCOL.md: subject `prefix.part.part`, raw bytes).

Browsers reach the same server over its WebSocket listener, so a kernel peer on this driver
and a browser Peerix peer on the NATS driver meet in one room. nats-py is imported lazily:
install it with `pip install nats-py` (or `pip install peerix-nb[nats]`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import PeerixError
from .base import Driver, MessageHandler

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = ["MAX_SUBJECT_BYTES", "NatsDriver", "check_token"]

logger = logging.getLogger("peerix_nb.nats")

#: How long `subscribe` waits for the server to confirm a subscription.
SUBSCRIBE_FLUSH_TIMEOUT = 15.0
#: Longest subject accepted (UTF-8 bytes); the server's control line limit is 4096 in all.
MAX_SUBJECT_BYTES = 1024
_CALLBACKS = ("error_cb", "disconnected_cb", "reconnected_cb", "closed_cb")
# The nats-py Client attribute behind each callback option (chained when `nc=` is given).
_CLIENT_ATTRS = {name: f"_{name}" for name in _CALLBACKS}
_FIRST = asyncio.FIRST_COMPLETED
_INSTALL_HINT = "pip install nats-py (or pip install peerix-nb[nats])"


def check_token(token: str) -> str | None:
    """Why `token` is not a valid NATS subject token, or None if it is one."""
    if not isinstance(token, str):
        return f"it is a {type(token).__name__}, not a string"
    if not token:
        return "it is empty"
    for char in token:
        if char == ".":
            return "it contains '.', the NATS token separator"
        if char in "*>":
            return f"it contains the NATS wildcard {char!r}"
        if char.isspace():
            return "it contains whitespace"
        if ord(char) < 32 or ord(char) == 127:
            return "it contains a control character"
    return None


def _is_transport_error(error: BaseException) -> bool:
    """A lost or refused connection (as opposed to e.g. a permissions violation)."""
    from nats import errors

    return isinstance(
        error,
        (OSError, asyncio.TimeoutError, errors.UnexpectedEOF, errors.StaleConnectionError),
    )


def _prefix_tokens(prefix: str) -> list[str]:
    if not isinstance(prefix, str):
        raise TypeError(f"NatsDriver prefix must be a string, got {type(prefix).__name__}")
    if not prefix:
        return []
    tokens = prefix.split(".")
    for token in tokens:
        reason = check_token(token)
        if reason:
            raise ValueError(f"NatsDriver prefix {prefix!r} is not a valid NATS subject: {reason}")
    return tokens


#: URL schemes nats-py connects with.
_SCHEMES = ("nats", "tls", "ws", "wss")


class NatsDriver(Driver):
    """Peerix signaling over NATS: one subscription per (subject, handler), payload = raw bytes.

    `servers` is one URL or a list (a cluster: nats-py fails over between them). Pass an
    existing nats-py connection as `nc` to share it (it is then not closed by `close()`), or
    let the driver connect on first use or on `await driver.connect()`; `connect_options` go
    to `nats.connect` (user/password, token, user_credentials, tls, name, ...). Callbacks given
    there are still called. The driver reconnects forever by default
    (`max_reconnect_attempts=-1`), while a first connection that fails raises a PeerixError
    within a few seconds instead of retrying silently.
    """

    def __init__(
        self,
        servers: str | Sequence[str] = "nats://127.0.0.1:4222",
        prefix: str = "peerix",
        nc: Client | None = None,
        **connect_options: Any,
    ) -> None:
        super().__init__(active=False)  # until connected (docs/PROTOCOL.md)
        if not isinstance(servers, str | list | tuple) or not all(
            isinstance(url, str) for url in servers
        ):
            raise TypeError(f"servers must be a NATS URL or a list of them, got {servers!r}")
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        if not self.servers and nc is None:
            raise ValueError("NatsDriver needs at least one server URL")
        for url in self.servers:
            # nats-py reads "host:port" as nats://; any other scheme fails later as a DNS error
            scheme = url.partition("://")[0].lower() if "://" in url else "nats"
            if scheme not in _SCHEMES:
                raise ValueError(
                    f"NATS server URL {url!r} must start with nats://, tls://, ws:// or wss://"
                )
        self.prefix = prefix
        self._prefix = _prefix_tokens(prefix)
        self._user_nc = nc
        self._user_callbacks: dict[str, Callable[..., Awaitable[None]] | None] = {
            name: connect_options.pop(name, None) for name in _CALLBACKS
        }
        connect_options.setdefault("max_reconnect_attempts", -1)
        connect_options.setdefault("name", "peerix_nb")
        self._options = connect_options
        self._nc: Client | None = None
        self._lock = asyncio.Lock()
        self._subs: dict[tuple[str, MessageHandler], list[Subscription]] = {}
        self._closing: Client | None = None  # the connection close() is closing
        self._closed = False  # close() was called and nothing reopened the driver since
        self._outage_reported = False
        self._saved_callbacks: dict[str, Any] = {}

    # -- subjects -------------------------------------------------------------------------
    def subject(self, namespace: Sequence[str]) -> str:
        """`prefix.part.part` with empty parts dropped; a part that is not a token raises."""
        if isinstance(namespace, str):
            raise PeerixError(
                "PEER_SIGNALING_ERROR",
                f"namespace must be a list of parts, got the string {namespace!r}",
            )
        tokens = list(self._prefix)
        for part in namespace:
            if part == "":
                continue
            reason = check_token(part)
            if reason:
                raise PeerixError(
                    "PEER_SIGNALING_ERROR",
                    f"namespace part {part!r} cannot be a NATS subject token: {reason}. "
                    "Choose another room name or turn on signaling_hashing=True "
                    "(hashed parts are base62, always valid).",
                )
            tokens.append(part)
        if not tokens:
            raise PeerixError("PEER_SIGNALING_ERROR", "empty namespace and no prefix: no subject")
        subject = ".".join(tokens)
        if len(subject.encode()) > MAX_SUBJECT_BYTES:
            raise PeerixError(
                "PEER_SIGNALING_ERROR",
                f"subject {subject[:40]!r}... is longer than {MAX_SUBJECT_BYTES} bytes; "
                "use shorter names or signaling_hashing=True",
            )
        return subject

    # -- connection -----------------------------------------------------------------------
    @property
    def nc(self) -> Client | None:
        """The nats-py connection in use (None before connecting)."""
        return self._nc

    @property
    def connected_url(self) -> str | None:
        """The URL of the server currently connected to, if any."""
        nc = self._nc
        if nc is None or not nc.is_connected or nc.connected_url is None:
            return None
        return nc.connected_url.geturl()

    async def connect(self) -> None:
        """Connect now (idempotent); raises PeerixError if no server can be reached."""
        async with self._lock:
            self._closed = False
            if self._nc is not None and not self._nc.is_closed:
                return
            if self._user_nc is not None:
                nc = self._attach(self._user_nc)
            else:
                nc = await self._open()
            self._nc = nc
            self._outage_reported = False
            # Subscriptions made before an unexpected close come back on the new connection.
            for (subject, handler), subs in self._subs.items():
                subs[:] = [await self._nats_subscribe(subject, handler) for _ in subs]
            self.set_active(nc.is_connected)

    async def _open(self) -> Client:
        try:
            from nats.aio.client import Client
        except ImportError as error:
            raise PeerixError(
                "PEER_SIGNALING_ERROR", f"NatsDriver needs nats-py: {_INSTALL_HINT}", error
            ) from None
        nc = Client()
        failures: list[BaseException] = []
        gave_up = asyncio.Event()
        initial = True

        async def error_cb(error: Exception) -> None:
            if initial:
                # nats-py retries a failed first connect for minutes (there is no option for
                # "fail on first connect", nats.py issues #645/#663): count one failure per
                # server, then give up below.
                failures.append(error)
                if len(failures) >= len(self.servers):
                    gave_up.set()
            elif nc is self._nc:
                self._on_error(nc, error)
            await self._call_user("error_cb", error)

        connecting = asyncio.ensure_future(
            nc.connect(
                self.servers,
                error_cb=error_cb,
                disconnected_cb=self._callback(nc, "disconnected_cb"),
                reconnected_cb=self._callback(nc, "reconnected_cb"),
                closed_cb=self._callback(nc, "closed_cb"),
                **self._options,
            )
        )
        waiter = asyncio.ensure_future(gave_up.wait())
        # Safety net for servers that drop the SYN: each attempt waits connect_timeout.
        deadline = float(self._options.get("connect_timeout", 2)) * len(self.servers) + 2.0
        ok = False
        outcome: object = None
        try:
            await asyncio.wait({connecting, waiter}, timeout=deadline, return_when=_FIRST)
            ok = connecting.done() and not connecting.cancelled() and not connecting.exception()
        finally:
            waiter.cancel()
            if not ok:
                connecting.cancel()
                outcome = (await asyncio.gather(connecting, return_exceptions=True))[0]
                await self._discard(nc)
        if ok:
            initial = False
            return nc
        cause = failures[-1] if failures else outcome
        why = (
            f"{type(cause).__name__}: {cause}"
            if isinstance(cause, Exception)
            else f"no answer within {deadline} s"
        )
        raise PeerixError(
            "PEER_SIGNALING_ERROR",
            f"cannot connect to NATS at {', '.join(self.servers)} ({why}). Is nats-server "
            "running? Start one with `python -m peerix_nb nats`.",
            cause if isinstance(cause, Exception) else None,
        )

    async def _discard(self, nc: Client) -> None:
        """Close a half-made connection without firing our callbacks."""
        try:
            await nc.close()
        except Exception as error:  # a failed connect can leave odd state; nothing to save
            logger.debug("closing failed NATS connection: %r", error)

    def _attach(self, nc: Client) -> Client:
        """Use a connection the caller made: chain our callbacks onto its existing ones."""
        if nc.is_closed:
            raise PeerixError("PEER_SIGNALING_ERROR", "the NATS connection given as nc= is closed")
        if not self._saved_callbacks:
            # nats-py keeps the callbacks in these attributes; there is no public setter.
            for name, attr in _CLIENT_ATTRS.items():
                original = getattr(nc, attr, None)
                self._saved_callbacks[attr] = original
                self._user_callbacks[name] = self._user_callbacks[name] or original
                setattr(nc, attr, self._callback(nc, name))
        return nc

    def _detach(self, nc: Client) -> None:
        for attr, original in self._saved_callbacks.items():
            setattr(nc, attr, original)
        self._saved_callbacks.clear()

    def _callback(self, nc: Client, name: str) -> Callable[..., Awaitable[None]]:
        async def callback(*args: Any) -> None:
            # Only the live connection (or the one close() is closing) speaks; a connection
            # discarded after a failed first connect stays silent.
            if nc is self._nc or nc is self._closing:
                self._on_event(nc, name, *args)
                await self._call_user(name, *args)

        return callback

    def _on_event(self, nc: Client, name: str, *args: Any) -> None:
        if name == "disconnected_cb":
            self.set_active(False)
        elif name == "reconnected_cb":
            self._outage_reported = False
            self.set_active(True)
        elif name == "error_cb":
            self._on_error(nc, args[0])
        elif name == "closed_cb":
            self.set_active(False)
            if nc is self._nc:
                # nats-py gave up reconnecting (max_reconnect_attempts): the next subscribe,
                # dispatch or connect() makes a new connection and restores the subscriptions.
                self._nc = None
                self.report_error(
                    PeerixError(
                        "PEER_SIGNALING_ERROR",
                        f"NATS connection to {', '.join(self.servers)} closed: gave up "
                        f"reconnecting ({nc.last_error!r})",
                        nc.last_error,
                    )
                )

    def _on_error(self, nc: Client, error: BaseException) -> None:
        if not nc.is_connected or _is_transport_error(error):
            # While reconnecting nats-py reports every failed attempt; one per outage is enough.
            if self._outage_reported:
                logger.debug("NATS reconnect attempt failed: %r", error)
                return
            self._outage_reported = True
        self.report_error(error)

    async def _call_user(self, name: str, *args: Any) -> None:
        callback = self._user_callbacks.get(name)
        if callback is None:
            return
        try:
            await callback(*args)
        except Exception as error:  # the user's callback must not break nats-py's loop
            self.report_error(error)

    async def _ensure(self) -> Client:
        if self._nc is None or self._nc.is_closed:
            await self.connect()  # also reopens a closed driver: subscribing means using it
        assert self._nc is not None
        return self._nc

    # -- Driver API -----------------------------------------------------------------------
    async def _nats_subscribe(self, subject: str, handler: MessageHandler) -> Subscription:
        assert self._nc is not None

        async def deliver(msg: Msg) -> None:
            try:
                result = handler(msg.data)
                if inspect.isawaitable(result):
                    await result
            except Exception as error:  # one bad handler must not end the subscription
                self.report_error(error)

        return await self._nc.subscribe(subject, cb=deliver)

    async def subscribe(self, namespace: Sequence[str], handler: MessageHandler) -> None:
        """Subscribe; when connected, returns once the server has the subscription."""
        subject = self.subject(namespace)
        nc = await self._ensure()
        sub = await self._nats_subscribe(subject, handler)
        self._subs.setdefault((subject, handler), []).append(sub)
        if nc.is_connected:
            # A PING round trip: messages others publish from now on reach this handler. On a
            # starved machine the round trip can take seconds: wait for it, not 2 s.
            await self._flush(nc, timeout=SUBSCRIBE_FLUSH_TIMEOUT, what=f"subscription {subject!r}")

    async def unsubscribe(self, namespace: Sequence[str], handler: MessageHandler) -> None:
        key = (self.subject(namespace), handler)
        subs = self._subs.get(key)
        if not subs:
            return
        sub = subs.pop()
        if not subs:
            del self._subs[key]
        await self._drop(sub)

    async def _drop(self, sub: Subscription) -> None:
        try:
            await sub.unsubscribe()
        except Exception as error:  # connection closed or gone: the subscription is gone too
            logger.debug("NATS unsubscribe: %r", error)

    async def dispatch(self, namespace: Sequence[str], message: bytes) -> None:
        subject = self.subject(namespace)
        if self._closed:
            return
        if self._nc is None:
            await self._ensure()  # the first use connects; later outages just drop
        if not self.active or self._nc is None:
            return
        try:
            await self._nc.publish(subject, bytes(message))
        except Exception as error:
            raise PeerixError(
                "PEER_SIGNALING_ERROR",
                f"cannot publish to NATS subject {subject!r}: {error}",
                error,
            ) from None

    async def close(self) -> None:
        """Flush what was dispatched, drop our subscriptions, close the connection we own."""
        nc, self._nc = self._nc, None
        subs = [sub for subs in self._subs.values() for sub in subs]
        self._subs.clear()
        self._closed = True
        self._closing = nc
        try:
            if nc is None:
                return
            if nc is self._user_nc:
                for sub in subs:
                    await self._drop(sub)
                if nc.is_connected:
                    await self._flush(nc)
                self._detach(nc)
            else:
                # A LEAVE dispatched just before close() must reach the server.
                if nc.is_connected:
                    await self._flush(nc)
                await nc.close()
        finally:
            self._closing = None
            self.set_active(False)

    async def _flush(self, nc: Client, timeout: float = 2.0, what: str = "close") -> None:
        try:
            # nats-py annotates `timeout` as int, but it is seconds for asyncio.wait_for: 2.0 works.
            await nc.flush(timeout=timeout)  # type: ignore[arg-type]
        except Exception as error:
            # On subscribe this matters: messages published before the server has the
            # subscription are not delivered (a peer may miss a JOIN until it is repeated).
            log = logger.warning if what != "close" else logger.debug
            log("NATS did not confirm the %s within %s s: %r", what, timeout, error)

    def subscriber_count(self) -> int:
        """How many (namespace, handler) subscriptions exist; handy to check for leaks."""
        return sum(len(subs) for subs in self._subs.values())

    def __repr__(self) -> str:
        where = self.connected_url or ", ".join(self.servers)
        return f"<NatsDriver {where} prefix={self.prefix!r} active={self.active}>"
