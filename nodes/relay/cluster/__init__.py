"""A relay cluster's shared event stream: several relay instances serving one book follow one
NATS JetStream stream of what any of them accepted and what the chain and the matcher did.

    events.py     the stream's events (OrderAccepted, OrderEvicted, OrderCancelled,
                  NonceFloorRaised, LeaseOpened, ChainRewound, FillChanged): msgspec structs
                  in the codec's frames, a closed set, and each event's stable message id (an
                  order's hash; else its frame's keccak)
    jetstream.py  ClusterStream: the cluster's stream on a NATS server, publish once (deduplicated
                  by message id, the ack awaited); Follower: every event after a position, in
                  order and once, through disconnections and NATS restarts
    replica.py    BookReplica: an in-memory book that follows the stream
    node.py       ClusterNode: a running relay's part in its cluster (publishing what it
                  accepts, following the others, the matcher lease: leader or follower)

See ``docs/decisions/0029-relay-cluster-stream.md``.
"""

from nodes.relay.cluster.events import (
    ChainRewound,
    ClusterEvent,
    FillChanged,
    LeaseOpened,
    NonceFloorRaised,
    OrderAccepted,
    OrderCancelled,
    OrderEvicted,
    decode_event,
    encode_event,
    message_id,
)
from nodes.relay.cluster.jetstream import ClusterStream, Follower, Published, Retention
from nodes.relay.cluster.replica import BookReplica

__all__ = [
    "BookReplica",
    "ChainRewound",
    "ClusterEvent",
    "ClusterStream",
    "FillChanged",
    "Follower",
    "LeaseOpened",
    "NonceFloorRaised",
    "OrderAccepted",
    "OrderCancelled",
    "OrderEvicted",
    "Published",
    "Retention",
    "decode_event",
    "encode_event",
    "message_id",
]
