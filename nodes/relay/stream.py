"""Fan-out of book and lease events to stream subscribers, without letting one slow reader stall
the relay: each subscriber has a bounded queue, and one that falls behind is dropped. Parts of the
relay itself that follow the events (its reads remember bids' fills) listen to the messages as
they are published, before any encoding: an event is encoded only when a subscriber wants it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nodes.wire import Message, encode

_CLOSED = b""


class Subscription:
    def __init__(self, hub: Hub, limit: int) -> None:
        self.hub = hub
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(limit)
        self.overflowed = False

    async def next_frame(self) -> bytes | None:
        """The next event's frame, or None once the subscription is closed."""
        frame = await self.queue.get()
        return frame or None  # the empty end marker

    def close(self) -> None:
        self.hub.subscribers.discard(self)
        while True:  # make room for the end marker
            try:
                self.queue.put_nowait(_CLOSED)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()


class Hub:
    def __init__(self, queue_limit: int) -> None:
        self.queue_limit = queue_limit
        self.subscribers: set[Subscription] = set()
        self.listeners: list[Callable[[Message], None]] = []

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self.queue_limit)
        self.subscribers.add(sub)
        return sub

    def listen(self, listener: Callable[[Message], None]) -> Callable[[], None]:
        """Call ``listener`` with each message as it is published (it must not raise or block);
        returns the function that stops it."""
        self.listeners.append(listener)

        def stop() -> None:
            with contextlib.suppress(ValueError):  # stopped already
                self.listeners.remove(listener)

        return stop

    def publish(self, message: Message) -> None:
        for listener in self.listeners:
            listener(message)
        if not self.subscribers:
            return
        frame = encode(message)
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(frame)
            except asyncio.QueueFull:
                sub.overflowed = True
                sub.close()

    def close_all(self) -> None:
        for sub in list(self.subscribers):
            sub.close()


__all__ = ["Hub", "Subscription"]
