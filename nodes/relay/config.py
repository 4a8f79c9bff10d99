"""What a relay is told at start: where it keeps state, whom it gossips with, and its limits.

    config = RelayConfig(db_path=Path("relay.sqlite"), peers=("http://10.0.0.2:7000",))
    config = RelayConfig(store="postgresql://relay@127.0.0.1:5432/relay")   # state in PostgreSQL
    config = load_config(Path("relay.toml"))          # the same, from a file

A file (every key optional but one of ``db_path`` and ``store``; relative paths are relative to the
file's folder)::

    db_path = "relay.sqlite"               # SQLite, the default; or, instead:
    # store = "postgresql://relay@127.0.0.1:5432/relay"   # PostgreSQL (nodes/relay/store.py)
    host = "127.0.0.1"
    port = 7000                            # 0: a free port
    peers = ["http://10.0.0.2:7000"]       # relays to gossip accepted orders to
    matching = "continuous"                # or "auction": a uniform-price round every
    auction_interval_s = 10.0              # auction_interval_s seconds
    confirmations = 0

    [limits]
    client_rate_per_s = 500.0
    max_book_orders = 50000

    [cluster]                              # one of several instances serving one book
    nats_url = "nats://127.0.0.1:4222"     # a NATS server with JetStream (nats-server -js)
    name = "main"                          # the cluster: its stream is RELAY_main
    instance = "relay-a"                   # this instance, unique in the cluster
    lease_ttl_s = 5.0                      # a dead leader's lease frees after this long

A cluster keeps its state in PostgreSQL (``store``), shared by every instance: a cluster over
SQLite is refused (``docs/guides.md``, "Running a relay cluster").

The matcher's key is never in the file: ``gpumarket relay --matcher-key-env VAR`` reads it from
the environment. Both structs check their bounds when built in Python too, raising the
:class:`~nodes.errors.ConfigError` that names the field (``Limits``: ``peer_burst``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from market.chain.erc1271 import DEFAULT_GAS
from market.matching.pool import MAX_WORKERS
from nodes.daemon.config import HttpListen, NonEmpty, Table
from nodes.daemon.toml import decode, read_toml
from nodes.daemon.values import Invalid, Url
from nodes.errors import ConfigError
from nodes.relay.batches import FILL_WINDOW_S, MAX_BATCH_MATCHES
from nodes.relay.store_postgres import check_url
from nodes.wire import MAX_FRAME_SIZE

Matching = Literal["continuous", "auction"]
MATCHING_MODES: tuple[Matching, ...] = ("continuous", "auction")
Rate = Annotated[float, Meta(gt=0)]
AtLeastOne = Annotated[int, Meta(ge=1)]
Seconds = Annotated[float, Meta(ge=0)]


class StoreUrl(str):
    """A PostgreSQL connection URL (``postgresql://user:password@host:port/database?...``)."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> StoreUrl:
        if not isinstance(value, str):
            raise Invalid("must be a postgresql:// URL (a string)")
        try:
            return cls(check_url(value))
        except ValueError as exc:
            raise Invalid(str(exc)) from None


class Limits(Table, frozen=True):
    """What one client or signer may ask of the relay. Over a limit, a request changes nothing
    and is answered with an ErrorResponse (413 for size, 429 for rate)."""

    max_frame_size: AtLeastOne = MAX_FRAME_SIZE
    max_orders_per_request: AtLeastOne = 1000
    client_rate_per_s: Rate = 500.0
    """Requests (and stream messages) per second from one client address, sustained."""
    client_burst: AtLeastOne = 1000
    signer_rate_per_s: Rate = 200.0
    """New orders per second from one signer, sustained, whether they come directly or through
    gossip (one budget for both); an order the book already holds costs nothing."""
    signer_burst: AtLeastOne = 2000
    peer_rate_per_s: Rate = 1000.0
    """New orders per second one peer address may gossip, sustained (duplicates cost nothing)."""
    peer_burst: AtLeastOne = 5000
    max_book_orders: AtLeastOne = 50_000
    """Orders the book holds at most; when full, the signer holding most gives way
    (``nodes/relay/capacity.py``) or the order is refused ``book_full``."""
    max_signer_orders: AtLeastOne = 2000
    """Orders one signer may hold in the book; more are refused ``signer_at_capacity``."""
    funds_ttl_s: Seconds = 5.0
    """How long a lab's balance and allowance, read to admit its bids, are taken as current."""
    max_book_depth: AtLeastOne = 1000
    max_reputations: AtLeastOne = 1000
    """Providers per ReputationReport page (about 400 bytes each)."""
    stream_queue: AtLeastOne = 1024
    """Events buffered per stream subscriber; a subscriber that falls further behind is closed."""
    contract_signature_gas: Annotated[int, Meta(ge=0)] = DEFAULT_GAS
    """Gas a contract signer's ERC-1271 check may spend (``market.chain.erc1271``); an order whose
    wallet needs more is refused. 0 accepts ECDSA signatures only."""


CLUSTER_NAME_PATTERN = r"[A-Za-z0-9_-]{1,32}"
NATS_URL_PATTERN = r"(nats|tls)://[^\s]+"
ClusterName = Annotated[str, Meta(pattern=f"^{CLUSTER_NAME_PATTERN}$")]
NatsUrl = Annotated[str, Meta(pattern=f"^{NATS_URL_PATTERN}$")]


class ClusterConfig(Table, frozen=True, kw_only=True):
    """The relay cluster this instance is part of (``nodes/relay/cluster/node.py``): its
    instances share one PostgreSQL store and one JetStream stream, and the holder of the
    matcher lease matches and follows the chain for all of them."""

    nats_url: NatsUrl
    """The NATS server (JetStream enabled) holding the cluster's event stream."""
    name: ClusterName
    """The cluster's name: its stream is ``RELAY_<name>``; the same on every instance."""
    instance: NonEmpty
    """This instance's id, unique in the cluster: it holds the matcher lease under it."""
    lease_ttl_s: Annotated[float, Meta(ge=0.5, le=300)] = 5.0
    """How long the matcher lease lives without renewal (renewed every third of it): a leader
    that died is replaced this long after its last renewal."""
    publish_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 5.0
    """How long publishing an event may wait for the stream's acknowledgement."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # a table built in Python (the CLI's --cluster, --nats) is checked as a file's is
        if not re.fullmatch(CLUSTER_NAME_PATTERN, self.name):
            raise Invalid("1 to 32 of A-Z a-z 0-9 _ -", "name", "ClusterConfig")
        if not re.fullmatch(NATS_URL_PATTERN, self.nats_url):
            raise Invalid("must be a nats:// (or tls://) URL", "nats_url", "ClusterConfig")
        if not self.instance:
            raise Invalid("must not be empty", "instance", "ClusterConfig")


class RelayConfig(HttpListen, frozen=True, kw_only=True):
    """A relay's settings: where it listens (``host``, ``port``: 0 picks a free port, the
    relay's ``url`` says which), its database, peers, matching and limits."""

    db_path: Path | None = None
    """The SQLite file of the relay's state (the embedded default). Give this or ``store``."""
    store: StoreUrl | None = None
    """A PostgreSQL URL for the relay's state instead of ``db_path`` (``nodes/relay/store.py``)."""
    peers: tuple[Url, ...] = ()
    """Base URLs of peer relays to gossip accepted orders to."""
    matcher_key: str | None = None
    """The key that sends ``openLeaseBatch``/``openLeaseAuction``; without one the relay keeps a
    book but does not match. Never read from a file."""
    matching: Matching = "continuous"
    """``continuous``: each order is matched as it arrives, each lease at its offer's price.
    ``auction``: orders rest, and every ``auction_interval_s`` each GPU model clears at one
    uniform price that every lease of the round pays (``docs/matching.md``)."""
    auction_interval_s: Rate = 10.0
    max_batch: AtLeastOne = MAX_BATCH_MATCHES
    """Matches per lease-opening transaction at most (an all-or-none cluster is never split)."""
    fill_window_s: Annotated[float, Meta(ge=0, le=60)] = FILL_WINDOW_S
    """How long the first fill queued waits for others to share its transaction (0: none)."""
    relay_id: NonEmpty | None = None
    """Defaults to a random id kept in the database, stable across restarts."""
    limits: Limits = msgspec.field(default_factory=Limits)
    chain_poll_s: Rate = 0.1
    confirmations: Annotated[int, Meta(ge=0)] = 0
    """Blocks an event's block must be under before the book acts on it: 0 on a devnet, the
    deepest reorganisation expected on a chain that has them (the clock still reads the head). A
    deeper one is noticed by block hash and undone (``nodes/relay/chainwatch.py``)."""
    reputation_confirmations: Annotated[int, Meta(ge=0)] = 0
    """Blocks a block must be under before its events count in served reputations."""
    chain_read_deadline_s: Rate = 3.0
    """How long admission's chain reads (stakes, labs' funds) retry a silent endpoint before the
    request is refused with 503 ``chain_unavailable``."""
    peer_timeout_s: Rate = 5.0
    gossip_attempts: AtLeastOne = 4
    max_gossip_hops: AtLeastOne = 8
    verify_workers: Annotated[int, Meta(ge=0, le=MAX_WORKERS)] | None = None
    """Processes that check the signatures of large batches of orders (``market.matching.pool``):
    None, one per CPU; 0, none (threads of the relay's own process, which share its GIL)."""
    shutdown_grace_s: Seconds = 10.0
    """How long shutdown waits for in-flight requests, fills and gossip before cancelling."""
    cluster: ClusterConfig | None = None
    """One of several instances serving one book (needs ``store``); None: a relay alone."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.db_path is None) == (self.store is None):
            raise ConfigError(
                "RelayConfig",
                "db_path" if self.db_path is None else "store",
                "give the relay's state as one of db_path (a SQLite file) and store (a "
                "postgresql:// URL)",
            )
        if self.store is not None:  # a config built in Python (the CLI's --store) is checked too
            try:
                StoreUrl.parse(self.store)
            except Invalid as exc:
                raise Invalid(exc.reason, "store", "RelayConfig") from None
        for peer in self.peers:  # a config built in Python (the CLI's --peer) is checked too
            try:
                Url.parse(peer)
            except Invalid as exc:
                raise Invalid(
                    f"{exc.reason}: give the scheme, as http://HOST:PORT", "peers", "RelayConfig"
                ) from None
        if self.cluster is not None and self.store is None:
            raise ConfigError(
                "RelayConfig",
                "cluster",
                'a cluster\'s instances share their state: give store = "postgresql://..." '
                "instead of db_path (SQLite is one process's)",
            )
        if self.matching not in MATCHING_MODES:
            raise ConfigError(
                "RelayConfig", "matching", f"{self.matching!r} is not one of {MATCHING_MODES}"
            )


def load_config(path: Path, *, matcher_key: str | None = None) -> RelayConfig:
    """Read and validate the relay's TOML file at ``path``; raises ConfigError naming the bad
    field. ``matcher_key`` comes from elsewhere (the environment), never from the file."""
    raw = read_toml(path)
    if "matcher_key" in raw:
        raise ConfigError(str(path), "matcher_key", "keep the key out of the file: pass "
                          "--matcher-key-env with the variable that holds it")  # fmt: skip
    config = decode(raw, RelayConfig, file=str(path), base=path.parent)
    return msgspec.structs.replace(config, matcher_key=matcher_key)


__all__ = [
    "MATCHING_MODES",
    "ClusterConfig",
    "Limits",
    "Matching",
    "RelayConfig",
    "StoreUrl",
    "load_config",
]
