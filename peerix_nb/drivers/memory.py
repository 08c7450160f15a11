"""MemoryDriver: in-process signaling, with optional delay, loss and duplication for experiments."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from .base import Driver, MessageHandler, Subscribers


class MemoryDriver(Driver):
    """Delivers messages between peers of one process (docs/PROTOCOL.md: key = parts joined with ':').

    `delay` is in milliseconds, as in Peerix: each delivery waits a random 75-125 % of it, so
    a delay also reorders messages. With `jitter` (ms) each delivery waits `delay` plus or minus
    up to `jitter` instead (uniform, never below 0). `loss` and `duplicate` are probabilities per
    delivery. All draws come from a generator seeded with `seed`, so an experiment repeats.
    """

    def __init__(
        self,
        delay: float = 0,
        *,
        jitter: float | None = None,
        loss: float = 0.0,
        duplicate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("loss", loss), ("duplicate", duplicate)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"MemoryDriver {name} must be a probability in [0, 1], got {value}"
                )
        if delay < 0:
            raise ValueError(f"MemoryDriver delay must be >= 0 ms, got {delay}")
        if jitter is not None and jitter < 0:
            raise ValueError(f"MemoryDriver jitter must be >= 0 ms, got {jitter}")
        self.delay = float(delay)
        self.jitter = None if jitter is None else float(jitter)
        self.loss = float(loss)
        self.duplicate = float(duplicate)
        self._random = random.Random(seed)
        self._subscribers = Subscribers()  # always usable: active from the start (Driver)

    async def subscribe(self, namespace: Sequence[str], handler: MessageHandler) -> None:
        self._subscribers.add(namespace, handler)

    async def unsubscribe(self, namespace: Sequence[str], handler: MessageHandler) -> None:
        self._subscribers.remove(namespace, handler)

    async def dispatch(self, namespace: Sequence[str], message: bytes) -> None:
        if not self.active:
            return
        loop = asyncio.get_running_loop()
        for handler in self._subscribers.of(Subscribers.key(namespace)):
            copies = 1
            if self.loss and self._random.random() < self.loss:
                copies = 0
            elif self.duplicate and self._random.random() < self.duplicate:
                copies = 2
            for _ in range(copies):
                wait = self._wait()
                if wait:
                    loop.call_later(wait, self._deliver, handler, message)
                else:
                    loop.call_soon(self._deliver, handler, message)

    def _wait(self) -> float:
        """Seconds one delivery waits."""
        if self.jitter is not None:
            return max(0.0, self.delay + self._random.uniform(-self.jitter, self.jitter)) / 1000.0
        if self.delay:
            return self.delay * self._random.uniform(0.75, 1.25) / 1000.0
        return 0.0

    def _deliver(self, handler: MessageHandler, message: bytes) -> None:
        try:
            handler(message)
        except Exception as error:  # a subscriber's bug must not stop delivery to the others
            self.report_error(error)

    def subscriber_count(self) -> int:
        """How many (namespace, handler) subscriptions exist; handy to check for leaks."""
        return self._subscribers.count()
