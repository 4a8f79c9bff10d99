"""The relay daemon: an order book over the network, gossip between relays, and a matcher.

    relay.py       Relay: starts the parts in order, stops them gracefully
    server.py      the HTTP API and the event stream (aiohttp); refusals mapped to codes by
                   ``nodes.wire.answers``
    admission.py   one Admission for submitted and gossiped orders: every check before anything
                   changes; capacity.py bounds the book, funds.py reads labs' funds
    book.py        the order book kept durable, in step with the chain, observable
    store.py       the one interface of its state: orders, what the chain said, fill intents;
                   store_sqlite.py (the default, WAL) and store_postgres.py implement it
    leader.py      the matcher lease in PostgreSQL: one matcher at a time, terms as fencing tokens
    chainwatch.py  following the market's events
    matcher.py     sending fills in batches (openLeaseBatch, openLeaseAuction), idempotently;
                   batches.py groups them (an all-or-none cluster is never split), reverts.py
                   says what a revert teaches the book
    auctioneer.py  in auction mode, a uniform-price round every interval
    reputations.py provider reputations from the chain's history, served on request
    gossip.py      sending accepted orders on to peer relays, without loops
    stream.py      fan-out of events to stream subscribers
    cluster/       several instances serving one book: the event stream on NATS JetStream,
                   and ClusterNode (node.py), an instance's part in its cluster (one leader
                   matches and follows the chain under the matcher lease)
    stakes.py, ratelimit.py, metrics.py, config.py, run.py

The API from Python, ``RelayClient``, lives beside the wire format (``nodes.wire.relay_client``):
providers and labs use it without importing this package.

Anyone can run one; orders are self-authenticating, so a relay can hide orders but never forge them.
"""

from nodes.relay.config import Limits, RelayConfig
from nodes.relay.relay import Relay
from nodes.relay.run import run, serve

__all__ = [
    "Limits",
    "Relay",
    "RelayConfig",
    "run",
    "serve",
]
