"""Retrying only what is worth retrying: connection-level failures, and the answers of a node whose
head moved back under the request, with backoff and a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout as RequestsTimeout
from web3.exceptions import Web3RPCError

from market.errors import RpcUnavailable

# The enumerated transient errors: the endpoint did not answer. Everything else (a revert, a
# JSON-RPC error, a bad argument) is an answer and is never retried.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RequestsConnectionError,
    RequestsTimeout,
    ConnectionError,
)


# Answers that are transient too: a node whose head moved back under the request (a
# reorganisation in progress: anvil's ``BlockOutOfRangeError``, geth's ``header not found``).
TRANSIENT_ANSWERS = ("BlockOutOfRangeError", "header not found")

_RETRIED: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, Web3RPCError)

T = TypeVar("T")


def transient_answer(error: str) -> bool:
    """Whether a node's JSON-RPC error is one of :data:`TRANSIENT_ANSWERS`."""
    return any(marker in error for marker in TRANSIENT_ANSWERS)


def with_retries(
    fn: Callable[[], T],
    *,
    endpoint: str,
    deadline_s: float = 10.0,
    first_delay_s: float = 0.05,
    max_delay_s: float = 1.0,
) -> T:
    """Call ``fn``; on a transient error retry with exponential backoff until ``deadline_s``.

    Raises RpcUnavailable (from the last error) when the deadline passes.
    """
    deadline = time.monotonic() + deadline_s
    delay = first_delay_s
    while True:
        try:
            return fn()
        except _RETRIED as exc:
            if isinstance(exc, Web3RPCError) and not transient_answer(str(exc)):
                raise
            if time.monotonic() + delay > deadline:
                raise RpcUnavailable(endpoint, f"{type(exc).__name__}: {exc}") from exc
            time.sleep(delay)  # backoff between retries of a failed connection
            delay = min(delay * 2, max_delay_s)


__all__ = ["TRANSIENT_ANSWERS", "TRANSIENT_ERRORS", "transient_answer", "with_retries"]
