"""What a relay is told at start: where it keeps state, whom it gossips with, and its limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from market.chain.erc1271 import DEFAULT_GAS
from nodes.errors import ConfigError
from nodes.relay.batches import MAX_BATCH_MATCHES
from nodes.wire import MAX_FRAME_SIZE

Matching = Literal["continuous", "auction"]
MATCHING_MODES: tuple[Matching, ...] = ("continuous", "auction")


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client or signer may ask of the relay. Over a limit, a request changes nothing
    and is answered with an ErrorResponse (413 for size, 429 for rate)."""

    max_frame_size: int = MAX_FRAME_SIZE
    max_orders_per_request: int = 1000
    client_rate_per_s: float = 500.0
    """Requests (and stream messages) per second from one client address, sustained."""
    client_burst: int = 1000
    signer_rate_per_s: float = 200.0
    """New orders per second from one signer, sustained, whether they come directly or through
    gossip (one budget for both); an order the book already holds costs nothing."""
    signer_burst: int = 2000
    peer_rate_per_s: float = 1000.0
    """New orders per second one peer address may gossip, sustained (duplicates cost nothing)."""
    peer_burst: int = 5000
    max_book_orders: int = 50_000
    """Orders the book holds at most; when full, the signer holding most gives way
    (``nodes/relay/capacity.py``) or the order is refused ``book_full``."""
    max_signer_orders: int = 2000
    """Orders one signer may hold in the book; more are refused ``signer_at_capacity``."""
    funds_ttl_s: float = 5.0
    """How long a lab's balance and allowance, read to admit its bids, are taken as current."""
    max_book_depth: int = 1000
    max_reputations: int = 1000
    """Providers per ReputationReport page (about 400 bytes each)."""
    stream_queue: int = 1024
    """Events buffered per stream subscriber; a subscriber that falls further behind is closed."""
    contract_signature_gas: int = DEFAULT_GAS
    """Gas a contract signer's ERC-1271 check may spend (``market.chain.erc1271``); an order whose
    wallet needs more is refused. 0 accepts ECDSA signatures only."""

    def __post_init__(self) -> None:
        positive = ("client_rate_per_s", "signer_rate_per_s", "peer_rate_per_s")
        at_least_one = (
            "client_burst",
            "signer_burst",
            "peer_burst",
            "max_book_orders",
            "max_signer_orders",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError("Limits", name, f"{getattr(self, name)} is not positive")
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ConfigError("Limits", name, f"{getattr(self, name)} is below 1")
        if self.funds_ttl_s < 0:
            raise ConfigError("Limits", "funds_ttl_s", f"{self.funds_ttl_s} is negative")


@dataclass(frozen=True, slots=True)
class RelayConfig:
    db_path: Path
    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port; the relay's ``url`` says which."""
    peers: tuple[str, ...] = ()
    """Base URLs of peer relays to gossip accepted orders to."""
    matcher_key: str | None = None
    """The key that sends ``openLeaseBatch``/``openLeaseAuction``; without one the relay keeps a
    book but does not match."""
    matching: Matching = "continuous"
    """``continuous``: each order is matched as it arrives, each lease at its offer's price.
    ``auction``: orders rest, and every ``auction_interval_s`` each GPU model clears at one
    uniform price that every lease of the round pays (``docs/matching.md``)."""
    auction_interval_s: float = 10.0
    max_batch: int = MAX_BATCH_MATCHES
    """Matches per lease-opening transaction at most (an all-or-none cluster is never split)."""
    relay_id: str | None = None
    """Defaults to a random id kept in the database, stable across restarts."""
    limits: Limits = field(default_factory=Limits)
    chain_poll_s: float = 0.1
    confirmations: int = 0
    """Blocks an event's block must be under before the book acts on it: 0 on a devnet, the
    deepest reorganisation expected on a chain that has them (the clock still reads the head). A
    deeper one is noticed by block hash and undone (``nodes/relay/chainwatch.py``)."""
    reputation_confirmations: int = 0
    """Blocks a block must be under before its events count in served reputations."""
    chain_read_deadline_s: float = 3.0
    """How long admission's chain reads (stakes, labs' funds) retry a silent endpoint before the
    request is refused with 503 ``chain_unavailable``."""
    peer_timeout_s: float = 5.0
    gossip_attempts: int = 4
    max_gossip_hops: int = 8
    shutdown_grace_s: float = 10.0
    """How long shutdown waits for in-flight requests, fills and gossip before cancelling."""

    def __post_init__(self) -> None:
        if self.matching not in MATCHING_MODES:
            raise ConfigError(
                "RelayConfig", "matching", f"{self.matching!r} is not one of {MATCHING_MODES}"
            )
        if not self.auction_interval_s > 0:
            raise ConfigError(
                "RelayConfig", "auction_interval_s", f"{self.auction_interval_s} is not positive"
            )
        if self.max_batch < 1:
            raise ConfigError("RelayConfig", "max_batch", f"{self.max_batch} is not positive")


__all__ = ["MATCHING_MODES", "Limits", "Matching", "RelayConfig"]
