"""A relay cluster's shared event stream: several relay instances serving one book follow one
NATS JetStream stream of what any of them accepted and what the chain and the matcher did.

    events.py     the stream's events (OrderAccepted, OrderCancelled, NonceFloorRaised,
                  LeaseOpened, FillChanged): msgspec structs in the codec's frames, a closed set,
                  and each event's stable message id (an order's hash; else its frame's keccak)
    jetstream.py  ClusterStream: the cluster's stream on a NATS server, publish once (deduplicated
                  by message id, the ack awaited); Follower: every event after a position, in
                  order and once, through disconnections and NATS restarts
    replica.py    BookReplica: an in-memory book that follows the stream

See ``docs/decisions/0029-relay-cluster-stream.md``.
"""

from nodes.relay.cluster.events import (
    ClusterEvent,
    FillChanged,
    LeaseOpened,
    NonceFloorRaised,
    OrderAccepted,
    OrderCancelled,
    decode_event,
    encode_event,
    message_id,
)
from nodes.relay.cluster.jetstream import ClusterStream, Follower, Published, Retention
from nodes.relay.cluster.replica import BookReplica

__all__ = [
    "BookReplica",
    "ClusterEvent",
    "ClusterStream",
    "FillChanged",
    "Follower",
    "LeaseOpened",
    "NonceFloorRaised",
    "OrderAccepted",
    "OrderCancelled",
    "Published",
    "Retention",
    "decode_event",
    "encode_event",
    "message_id",
]
