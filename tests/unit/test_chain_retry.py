"""What ``market.chain.retry`` retries: connection failures, and a node's answers while its head
moves back under a request (a reorganisation in progress); never any other answer."""

from __future__ import annotations

import pytest
from web3.exceptions import Web3RPCError

from market.chain.retry import with_retries
from market.errors import RpcUnavailable

pytestmark = pytest.mark.unit

OUT_OF_RANGE = (
    "{'code': -32602, 'message': 'BlockOutOfRangeError: block height is 17 but requested was 19'}"
)


class _Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "answer"


def test_an_answer_from_a_head_that_moved_back_is_retried() -> None:
    fn = _Flaky([Web3RPCError(OUT_OF_RANGE), Web3RPCError("header not found")])
    assert with_retries(fn, endpoint="http://node", first_delay_s=0.001) == "answer"
    assert fn.calls == 3


def test_any_other_answer_is_raised_at_once() -> None:
    refused = Web3RPCError("{'code': -32000, 'message': 'execution reverted'}")
    fn = _Flaky([refused])
    with pytest.raises(Web3RPCError) as caught:
        with_retries(fn, endpoint="http://node", first_delay_s=0.001)
    assert caught.value is refused
    assert fn.calls == 1


def test_a_head_that_stays_behind_past_the_deadline_is_unavailable() -> None:
    fn = _Flaky([Web3RPCError(OUT_OF_RANGE) for _ in range(100)])
    with pytest.raises(RpcUnavailable, match="BlockOutOfRangeError"):
        with_retries(fn, endpoint="http://node", deadline_s=0.01, first_delay_s=0.004)
