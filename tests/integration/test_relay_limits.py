"""Bad input at every relay endpoint: a typed ErrorResponse, the right status, nothing changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from market.matching import Submission
from nodes.errors import RequestRefused
from nodes.wire import (
    RELAY_HEADER,
    BookQuery,
    BookSnapshot,
    ErrorCode,
    ErrorResponse,
    Gossip,
    Message,
    OrderStatus,
    SubmitOrders,
    decode,
    encode,
)
from tests.integration.conftest import MarketEnv
from tests.integration.relay_harness import (
    MODEL,
    RelayHandle,
    Relays,
    bid,
    fund_market,
    open_relays,
    small_limits,
)

pytestmark = pytest.mark.integration

POST_ENDPOINTS = ("/v1/orders", "/v1/gossip", "/v1/explain")
FRAME_LIMIT = 4096


@pytest.fixture
def relays(env: MarketEnv, tmp_path: Path) -> Iterator[Relays]:
    with open_relays(env, tmp_path) as started:
        yield started


def _error(status: int, data: bytes) -> tuple[int, ErrorResponse]:
    message = decode(data)
    assert isinstance(message, ErrorResponse), message
    return status, message


def _unknown_type() -> bytes:
    packed: bytes = msgpack.packb({"v": 1, "type": "Teleport", "body": {}})
    return packed


BAD_FRAMES = {
    "malformed": (b"\xc1\x00garbage", 400, ErrorCode.MALFORMED_FRAME),
    "empty": (b"", 400, ErrorCode.MALFORMED_FRAME),
    "unknown-type": (_unknown_type(), 400, ErrorCode.UNKNOWN_TYPE),
    "wrong-type": (encode(BookQuery(MODEL, 1)), 400, ErrorCode.WRONG_TYPE),
    "oversize": (b"\x00" * (FRAME_LIMIT + 1), 413, ErrorCode.FRAME_TOO_LARGE),
}


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_bad_frames_are_refused_with_typed_errors_at_each_post_endpoint(
    env: MarketEnv, relays: Relays, endpoint: str
) -> None:
    relay = relays.start(limits=small_limits(max_frame_size=FRAME_LIMIT))
    before = relay.book()
    for name, (body, status, code) in BAD_FRAMES.items():
        got_status, error = _error(*relay.raw("POST", endpoint, body))
        assert (got_status, error.code) == (status, code), name
    oversize = dict(_error(*relay.raw("POST", endpoint, BAD_FRAMES["oversize"][0]))[1].details)
    assert oversize == {"size": FRAME_LIMIT + 1, "limit": FRAME_LIMIT}
    assert relay.book() == before
    assert relay.state(lambda r: r.store.count_orders()) == 0


def test_bad_frames_on_the_stream_are_answered_with_error_frames(
    env: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(limits=small_limits(max_frame_size=FRAME_LIMIT))

    # On the stream a BookQuery is the right type, so a SubmitOrders is the wrong one.
    frames = BAD_FRAMES | {"wrong-type": (encode(SubmitOrders(())), 400, ErrorCode.WRONG_TYPE)}

    async def exchange(c: Any) -> list[Message]:
        answers = []
        async with c.stream() as stream:
            for body, _, _ in frames.values():
                if body:
                    await stream.send_raw(body)
                    answers.append(await stream.receive())
            await stream.ws.send_str("hello")
            answers.append(await stream.receive())
            await stream.send(BookQuery(MODEL, 5))  # the stream still works
            answers.append(await stream.receive())
        return answers

    answers = relay.do(exchange)
    codes = [a.code for a in answers[:-1] if isinstance(a, ErrorResponse)]
    expected = [code for body, _, code in frames.values() if body]
    assert codes == [*expected, ErrorCode.MALFORMED_FRAME]
    assert isinstance(answers[-1], BookSnapshot)


def test_book_endpoint_refuses_bad_models_and_depths(env: MarketEnv, relays: Relays) -> None:
    relay = relays.start()
    for path in ("/v1/book/" + "x" * 40, "/v1/book/H100?depth=-1", "/v1/book/H100?depth=lots"):
        status, error = _error(*relay.raw("GET", path))
        assert (status, error.code) == (400, ErrorCode.MALFORMED_FRAME), path
    status, error = _error(*relay.raw("GET", "/v1/nothing"))
    assert (status, error.code) == (404, ErrorCode.NOT_FOUND)
    status, error = _error(*relay.raw("GET", "/v1/orders"))
    assert (status, error.code) == (405, ErrorCode.METHOD_NOT_ALLOWED)


def test_every_endpoint_answers_429_over_the_client_rate_limit(
    env: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(limits=small_limits(client_rate_per_s=0.01, client_burst=2))
    assert relay.book().offers == ()
    assert relay.book().bids == ()
    requests = [
        ("POST", "/v1/orders", encode(SubmitOrders(()))),
        ("POST", "/v1/gossip", encode(Gossip("x", "y", 1, ()))),
        ("POST", "/v1/explain", encode(SubmitOrders(()))),
        ("GET", f"/v1/book/{MODEL}", None),
    ]
    for method, path, body in requests:
        status, error = _error(*relay.raw(method, path, body))
        assert (status, error.code) == (429, ErrorCode.RATE_LIMITED), path
        assert error.details["key"] == "127.0.0.1"
        assert int(error.details["retry_after_ms"]) > 0

    async def connect(c: Any) -> None:
        async with c.stream():
            pass

    with pytest.raises(RequestRefused) as info:
        relay.do(connect)
    assert info.value.status == 429
    assert "ok" in relay.do(lambda c: c.text("/healthz"))  # health and metrics are not limited


def test_rate_limited_answer_carries_retry_after_and_the_relay_id(
    env: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(limits=small_limits(client_rate_per_s=0.5, client_burst=1))
    relay.book()

    async def headers(c: Any) -> dict[str, str]:
        async with c.session.get(c.url + f"/v1/book/{MODEL}") as response:
            assert response.status == 429
            return dict(response.headers)

    got = relay.do(headers)
    assert got["Retry-After"] == "2"
    assert got[RELAY_HEADER] == relay.relay.relay_id


def test_per_signer_rate_limit_refuses_the_whole_batch(env: MarketEnv, relays: Relays) -> None:
    fund_market(env)
    relay = relays.start(limits=small_limits(signer_rate_per_s=0.01, signer_burst=2))
    three = [Submission(bid(env)) for _ in range(3)]
    with pytest.raises(RequestRefused) as info:
        relay.submit(*three)
    assert (info.value.status, info.value.code) == (429, "rate_limited")
    assert info.value.details["key"] == env.lab(4).address
    assert relay.book().bids == ()
    results = relay.submit(*three[:2])
    assert [r.status for r in results] == [OrderStatus.ACCEPTED] * 2


def test_too_many_orders_in_one_request_is_refused(env: MarketEnv, relays: Relays) -> None:
    relay: RelayHandle = relays.start(limits=small_limits(max_orders_per_request=2))
    with pytest.raises(RequestRefused) as info:
        relay.submit(*(bid(env) for _ in range(3)))
    assert (info.value.status, info.value.code) == (413, "too_many_orders")
    assert info.value.details == {"count": 3, "limit": 2}
    assert relay.book().bids == ()


def test_a_replayed_frame_changes_nothing(env: MarketEnv, relays: Relays) -> None:
    fund_market(env)
    relay = relays.start()
    frame = encode(SubmitOrders((Submission(bid(env)), Submission(bid(env)))))
    first = decode(relay.raw("POST", "/v1/orders", frame)[1])
    before = relay.book()
    again = decode(relay.raw("POST", "/v1/orders", frame)[1])
    gossip = encode(Gossip("elsewhere", "elsewhere", 1, first_orders(frame)))
    by_gossip = decode(relay.raw("POST", "/v1/gossip", gossip)[1])
    for answer, status in (
        (first, "accepted"),
        (again, "duplicate_order"),
        (by_gossip, "duplicate_order"),
    ):
        assert [r.status.value for r in answer.results] == [status] * 2  # type: ignore[union-attr]
    assert relay.book() == before


def first_orders(frame: bytes) -> tuple[Submission, ...]:
    message = decode(frame)
    assert isinstance(message, SubmitOrders)
    return message.orders


@pytest.mark.parametrize(
    "frame",
    [
        {"v": 1, "type": "T" * 12_000, "body": {}},  # a long unknown type, quoted in the refusal
        {"v": "9" * 12_000, "type": "SubmitOrders", "body": {}},  # a long version, likewise
        {"v": 1, "type": "SubmitOrders" + "x" * 5_000, "body": {}},
    ],
    ids=["long-type", "long-version", "type-past-the-message-limit"],
)
def test_a_refusal_decodes_whatever_the_frame_quoted(
    env: MarketEnv, relays: Relays, frame: dict[str, object]
) -> None:
    """Issue 14, bug A: a refusal that quoted a long type or version whole broke the error
    schema's limits, so the project's own client got a decode error instead of the refusal."""
    relay = relays.start()
    body: bytes = msgpack.packb(frame)
    # _error decodes the answer as RelayClient does: a DecodeError here was the bug.
    status, error = _error(*relay.raw("POST", "/v1/orders", body))
    assert status == 400
    assert error.code in (ErrorCode.UNKNOWN_TYPE, ErrorCode.MALFORMED_FRAME)
    assert len(error.message) <= 4096
    assert all(len(v) <= 512 for v in error.details.values() if isinstance(v, str))
