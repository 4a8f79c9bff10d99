"""The relay's event hub: in-process listeners see every message as published, and an event is
encoded only when a stream subscriber wants it."""

from __future__ import annotations

import asyncio

import pytest

from nodes.relay import stream
from nodes.relay.stream import Hub
from nodes.wire import Fill, FillStatus, Message, decode

pytestmark = pytest.mark.unit


def _fill(n: int) -> Fill:
    return Fill(bytes([n]) * 32, bytes([n + 1]) * 32, 1, FillStatus.PENDING)


def test_listeners_see_each_message_until_stopped_and_nothing_is_encoded_for_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded: list[Message] = []
    monkeypatch.setattr(stream, "encode", lambda m: encoded.append(m) or b"x")
    hub = Hub(4)
    seen: list[Message] = []
    stop = hub.listen(seen.append)
    hub.publish(_fill(1))
    stop()
    stop()  # twice is harmless
    hub.publish(_fill(2))
    assert seen == [_fill(1)]
    assert encoded == []  # no subscriber: no frame was made


def test_a_subscriber_gets_frames_beside_the_listeners() -> None:
    async def run() -> tuple[list[Message], Message]:
        hub = Hub(4)
        seen: list[Message] = []
        hub.listen(seen.append)
        sub = hub.subscribe()
        hub.publish(_fill(3))
        frame = await sub.next_frame()
        assert frame is not None
        return seen, decode(frame)

    seen, got = asyncio.run(run())
    assert seen == [_fill(3)]
    assert got == _fill(3)
