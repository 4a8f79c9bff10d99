"""The relay's durable state, behind one interface: orders it accepted, what the chain said, fill
intents. Two implementations keep it, with the same semantics:

* :class:`~nodes.relay.store_sqlite.SqliteStore`, the embedded default (``db_path``, ``--db``): a
  :class:`~nodes.state.db.StateDB` file beside the relay;
* :class:`~nodes.relay.store_postgres.PostgresStore` (``store = "postgresql://..."``, ``--store``):
  a PostgreSQL database, which several instances can share and which holds the matcher lease
  (:mod:`nodes.relay.leader`).

    store = open_store(config)      # the one the config names; StoreError if it cannot open

What both promise:

* An order is written before it enters the book, so an accepted order survives a crash; on start
  the book is rebuilt from the rows still resting, in arrival order. An order's row is deleted when
  it leaves the book (filled, cancelled, expired, evicted), so the database is as bounded as the
  book.
* What the chain said (leases opened, cancellations, nonce floors) is written together with the
  block the relay has read up to, in one transaction, so applying a range of blocks twice changes
  nothing. The hashes of the last blocks applied (a bounded window) are kept with them, so the relay
  notices, even after a restart, when the chain replaced a block it applied; :meth:`Store.rewind`
  forgets the leases of the replaced blocks and moves the cursor back to the fork.
* A fill is recorded as an intent before its transaction is sent (a batch's intents in one
  transaction), and its outcome after. An intent carries the matcher lease's term it was written
  under (0: no lease, a single relay); on PostgreSQL an intent written under a term the lease no
  longer has is refused (:class:`~nodes.errors.LeaseLost`), in the same transaction.
* Schemas are versioned and migrated on open; a database of a newer release is refused.
* Every failure is a :class:`~nodes.errors.StoreError` (a server that cannot be reached:
  :class:`~nodes.errors.StoreUnavailable`), and a failed call writes nothing.

Every call runs on the relay's event loop thread; each is one short transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from market.chain.forks import WINDOW
from market.errors import ProtocolError, UnknownMessageType
from market.matching import Submission
from market.protocol import codec
from market.protocol.types import Bid, Offer, Signed
from nodes.errors import StoreError
from nodes.wire import SubmitOrders, decode_as

if TYPE_CHECKING:
    from nodes.relay.config import RelayConfig


def order_row(sub: Submission) -> bytes:
    """How both stores keep an order: its signed order's canonical codec frame (for an order that
    arrived over the wire a lookup: the codec keeps the frames of the orders it decoded)."""
    return codec.encode(sub.signed)


def row_order(frame: bytes, h: bytes, location: str) -> Submission:
    """The order kept as ``frame`` (:func:`order_row`) under hash ``h``; StoreError naming it if
    the row holds no signed order. A row written by a release before this one holds a one-order
    ``SubmitOrders`` frame, and is read as one."""
    try:
        try:
            obj = codec.decode(frame)
        except UnknownMessageType:
            return decode_as(frame, SubmitOrders).orders[0]
    except ProtocolError as exc:
        raise StoreError(location, f"order 0x{h.hex()}: {exc}") from exc
    if not isinstance(obj, Signed) or not isinstance(obj.message, Offer | Bid):
        raise StoreError(location, f"order 0x{h.hex()}: the row holds a {type(obj).__name__}")
    return Submission(obj)


NO_TERM = 0
"""The term of a fill intent written without a matcher lease (a relay alone on its database)."""


@dataclass(frozen=True, slots=True)
class FillOutcome:
    """What became of a fill intent: ``opened`` (with its lease id), ``failed`` (the contract
    error's name), ``unknown`` (no receipt: the chain decides) or ``abandoned`` (left by a
    crash)."""

    fill_id: int
    state: str
    lease_id: bytes | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class FillIntent:
    """A fill written as about to be sent and not yet finished, under the matcher lease's
    ``term``: a matcher that took the lease over finds its predecessors' by their lower term."""

    fill_id: int
    offer_hash: bytes
    bid_hash: bytes
    gpus: int
    term: int


@dataclass(frozen=True, slots=True)
class ChainLease:
    lease_id: bytes
    offer_hash: bytes
    bid_hash: bytes
    gpus: int
    block: int


FillRow = tuple[int, bytes, bytes, int, str]
"""(id, offer hash, bid hash, GPUs, state) of a recorded fill."""


class Store(Protocol):
    """The calls the relay makes on its durable state (see the module's docstring)."""

    @property
    def location(self) -> str:
        """Where the state lives, for messages: a file's path, or a URL without its password."""
        ...

    def close(self) -> None: ...

    # --- meta ------------------------------------------------------------------------------

    def bind_chain(self, identity: str) -> None:
        """Tie the database to one chain and deployment, or refuse another (StoreError): a relay
        restarted against a fresh devnet (same chain id and contract addresses, new blocks) must
        not serve orders and a cursor from the old one. ``identity`` names the chain id, the
        market's address and the deployment block's hash."""
        ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    # --- orders ----------------------------------------------------------------------------

    def add_orders(
        self, orders: Iterable[tuple[bytes, Submission]], evicted: Iterable[bytes] = ()
    ) -> None:
        """Keep accepted orders, in the order given (their arrival order), and forget the orders
        ``evicted`` to make room for them, in one transaction. An order already kept refuses
        the whole batch (StoreError)."""
        ...

    def mark_gone(self, hashes: Iterable[bytes]) -> None:
        """These orders left the book (filled, cancelled, expired, evicted): their rows go."""
        ...

    def resting_orders(self) -> Iterator[tuple[bytes, Submission]]:
        """Orders still resting, in arrival order."""
        ...

    def count_orders(self) -> int: ...

    # --- what the chain said ---------------------------------------------------------------

    def apply_chain(
        self,
        leases: Iterable[ChainLease],
        cancelled: Iterable[bytes],
        floors: Iterable[tuple[str, int]],
        next_block: int,
        applied: tuple[int, bytes] | None = None,
        window: int = WINDOW,
    ) -> list[ChainLease]:
        """Record a range of blocks' events and that the relay has read up to ``next_block``,
        with ``applied`` (the last block's number and hash) among the last ``window`` blocks'
        hashes, in one transaction. Returns the leases not seen before."""
        ...

    def applied_blocks(self) -> dict[int, bytes]:
        """The hashes of the last blocks applied (each poll's last block), by number."""
        ...

    def rewind(self, fork: int) -> None:
        """The chain replaced the blocks from ``fork`` on: forget their leases and hashes, and read
        again from ``fork``, in one transaction. Orders they had removed are gone already."""
        ...

    def next_block(self) -> int | None: ...

    def filled_by_order(self) -> dict[bytes, int]:
        """GPUs filled on-chain per order hash, over every lease seen."""
        ...

    def leases(self) -> list[ChainLease]:
        """Every lease seen (a cluster's instance counts each by id: ``RelayBook.load``)."""
        ...

    def cancelled(self) -> list[bytes]: ...

    def nonce_floors(self) -> dict[str, int]: ...

    # --- fills -----------------------------------------------------------------------------

    def record_intents(
        self, fills: Sequence[tuple[bytes, bytes, int]], term: int = NO_TERM
    ) -> list[int]:
        """Write that fills (offer hash, bid hash, GPUs) are about to be sent, under the matcher
        lease's ``term``, in one transaction; returns their ids, in order. LeaseLost (nothing
        written) when ``term`` is no longer the lease's."""
        ...

    def finish_fills(self, outcomes: Iterable[FillOutcome]) -> None:
        """Record what became of sent fills, in one transaction."""
        ...

    def fills(self, state: str | None = None) -> list[FillRow]:
        """Recorded fills, oldest first; only those in ``state`` if given."""
        ...

    def open_intents(self, before_term: int) -> list[FillIntent]:
        """Intents not yet finished that were written under a term below ``before_term``, oldest
        first: what a matcher that took the lease over must settle before it sends anything."""
        ...


def open_store(config: RelayConfig) -> Store:
    """The store ``config`` names: ``store`` (a PostgreSQL URL), else the SQLite file
    ``db_path``; opened and migrated. StoreError (StoreUnavailable: no server) if it cannot."""
    # Imported here: each implementation imports this module's types.
    if config.store is not None:
        from nodes.relay.store_postgres import PostgresStore

        return PostgresStore.open(config.store)
    from nodes.relay.store_sqlite import SqliteStore

    assert config.db_path is not None  # RelayConfig requires one of the two
    return SqliteStore.open(config.db_path)


__all__ = [
    "NO_TERM",
    "ChainLease",
    "FillIntent",
    "FillOutcome",
    "FillRow",
    "Store",
    "open_store",
]
