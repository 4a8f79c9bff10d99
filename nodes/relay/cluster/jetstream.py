"""A relay cluster's event stream on NATS JetStream: publish once, follow in order.

One stream per cluster, ``RELAY_<cluster>``, over the subjects ``gpumarket.relay.<cluster>.``
``orders`` (accepted orders), ``fills`` (the matcher's fills) and ``chain`` (leases opened,
cancellations, nonce floors): one stream, so its sequence orders every event of the cluster (an
order is always before its fill). File storage, retention by limits (age and bytes), and a
duplicate window within which a publish with a message id already stored is acknowledged
without being stored again (``docs/decisions/0029-relay-cluster-stream.md``).

:meth:`ClusterStream.publish` returns once the stream has the event (its ``PubAck``): an order
is accepted only then. A publish while the connection is down is refused at once
(StreamUnavailable), never buffered to go out on reconnection behind the caller's back.

:class:`Follower` hands each event after a position the caller keeps (the last sequence it
applied) to a callback, in stream order, each once: it reads through an ephemeral pull consumer
starting after that position, and after any reconnection or consumer loss makes a new one from
the position it reached, skipping whatever it already applied. It survives a NATS restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from nodes.errors import StreamGap, StreamUnavailable
from nodes.logs import EventLogger, get_logger
from nodes.relay.cluster.events import (
    ClusterEvent,
    FillChanged,
    OrderAccepted,
    decode_event,
    encode_event,
    message_id,
)

CLUSTER_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")
MSG_ID_HEADER: Final = "Nats-Msg-Id"
CONSUMER_IDLE_S: Final = 30.0
"""The server deletes a follower's consumer after this long unread (a follower that died)."""
RECONNECT_WAIT_S: Final = 0.2
"""Between two attempts to reach the server again after losing it."""

Apply = Callable[[int, ClusterEvent], None]
"""What a follower calls with each event's stream sequence and the event, in order."""

_UNAVAILABLE: Final = (
    nats.errors.NoServersError,
    nats.errors.ConnectionClosedError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoRespondersError,
    nats.errors.TimeoutError,
    nats.errors.UnexpectedEOF,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,  # no stream answered: the server is (re)starting
    OSError,
)
"""The client's errors that mean the server cannot be reached now (retried by a follower)."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long the stream keeps events, and how long it remembers message ids."""

    max_age_s: float = 7 * 24 * 3600.0
    max_bytes: int = 8 * 1024**3
    duplicate_window_s: float = 600.0


@dataclass(frozen=True, slots=True)
class Published:
    """The stream holds the event at ``seq``; ``duplicate``: it already did (not stored again)."""

    seq: int
    duplicate: bool


def stream_name(cluster: str) -> str:
    return f"RELAY_{cluster}"


def subject_prefix(cluster: str) -> str:
    return f"gpumarket.relay.{cluster}"


def subject_of(cluster: str, event: ClusterEvent) -> str:
    if isinstance(event, OrderAccepted):
        kind = "orders"
    elif isinstance(event, FillChanged):
        kind = "fills"
    else:
        kind = "chain"
    return f"{subject_prefix(cluster)}.{kind}"


class ClusterStream:
    """The stream of cluster ``cluster`` on the NATS server at ``url``: open with
    :meth:`connect`, :meth:`close` when done."""

    def __init__(
        self,
        nc: Client,
        url: str,
        cluster: str,
        log: EventLogger,
        *,
        publish_timeout_s: float,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=publish_timeout_s)
        self.url = url
        self.cluster = cluster
        self.name = stream_name(cluster)
        self.log = log
        self.publish_timeout_s = publish_timeout_s

    @property
    def reconnects(self) -> int:
        """Reconnections so far: a follower makes a new consumer after each."""
        return int(self.nc.stats["reconnects"])

    @classmethod
    async def connect(
        cls,
        url: str,
        cluster: str,
        *,
        retention: Retention | None = None,
        connect_timeout_s: int = 2,
        publish_timeout_s: float = 5.0,
        log: EventLogger | None = None,
    ) -> ClusterStream:
        """Connect to ``url`` and make sure the cluster's stream exists with ``retention``.
        Raises StreamUnavailable when the server does not answer or has no JetStream."""
        if not CLUSTER_NAME.match(cluster):
            raise ValueError(f"cluster name {cluster!r}: 1 to 32 of A-Z a-z 0-9 _ -")
        log = (log or get_logger("gpumarket.relay.cluster")).bind(cluster=cluster)
        nc = Client()

        async def error_cb(exc: Exception) -> None:
            log.debug("stream_connection_error", url=url, error=repr(exc))

        async def disconnected_cb() -> None:
            if not nc.is_closed:  # lost, not closed by us
                log.warning("stream_disconnected", url=url)

        async def reconnected_cb() -> None:
            log.info("stream_reconnected", url=url)

        try:
            # The client retries forever once connected (max_reconnect_attempts=-1), the first
            # connection included: bound that one, so a server down at start is an error.
            await asyncio.wait_for(
                nc.connect(
                    url,
                    connect_timeout=connect_timeout_s,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    # annotated int, used as seconds by asyncio.sleep: a float is meant
                    reconnect_time_wait=RECONNECT_WAIT_S,  # type: ignore[arg-type]
                    pending_size=0,  # refuse a publish while disconnected, never buffer it
                    error_cb=error_cb,
                    disconnected_cb=disconnected_cb,
                    reconnected_cb=reconnected_cb,
                ),
                connect_timeout_s * 2,
            )
        except (*_UNAVAILABLE, TimeoutError) as exc:
            with contextlib.suppress(*_UNAVAILABLE):
                await nc.close()
            raise StreamUnavailable(
                url, f"cannot connect within {connect_timeout_s * 2}s: {exc!r}"
            ) from exc
        stream = cls(nc, url, cluster, log, publish_timeout_s=publish_timeout_s)
        try:
            await stream._ensure(retention or Retention())
        except BaseException:
            await nc.close()
            raise
        return stream

    async def _ensure(self, retention: Retention) -> None:
        config = StreamConfig(
            name=self.name,
            subjects=[f"{subject_prefix(self.cluster)}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=retention.max_age_s,
            max_bytes=retention.max_bytes,
            duplicate_window=retention.duplicate_window_s,
        )
        try:
            try:
                await self.js.add_stream(config)
            except nats.js.errors.BadRequestError:  # it exists with other limits: take ours
                await self.js.update_stream(config)
        except nats.js.errors.ServiceUnavailableError as exc:
            raise StreamUnavailable(self.url, f"JetStream is not enabled: {exc}") from exc
        except nats.js.errors.APIError as exc:
            raise StreamUnavailable(self.url, f"stream {self.name} refused: {exc}") from exc
        except _UNAVAILABLE as exc:
            raise StreamUnavailable(self.url, f"no answer about stream {self.name}") from exc

    async def publish(self, event: ClusterEvent) -> Published:
        """Store ``event`` once (deduplicated by :func:`message_id`); returns once the stream
        acknowledged it. Raises StreamUnavailable, having stored nothing when the connection was
        down; after a timeout the server may have stored it: publish it again to know."""
        frame = encode_event(event)
        if not self.nc.is_connected:
            raise StreamUnavailable(self.url, "not connected")
        try:
            ack = await self.js.publish(
                subject_of(self.cluster, event),
                frame,
                timeout=self.publish_timeout_s,
                headers={MSG_ID_HEADER: message_id(event, frame)},
            )
        except nats.js.errors.APIError as exc:
            raise StreamUnavailable(self.url, f"publish refused: {exc}") from exc
        except _UNAVAILABLE as exc:
            raise StreamUnavailable(self.url, f"publish not acknowledged: {exc!r}") from exc
        return Published(ack.seq, bool(ack.duplicate))

    async def publish_all(self, events: Sequence[ClusterEvent]) -> list[Published]:
        """:meth:`publish` each of ``events``, in order on the wire, their acks awaited
        together. If one raises, those before it may be stored: publish them all again."""
        return list(await asyncio.gather(*(self.publish(e) for e in events)))

    async def last_sequence(self) -> int:
        """The sequence of the stream's last event (0 when empty)."""
        try:
            info = await self.js.stream_info(self.name)
        except nats.js.errors.APIError as exc:
            raise StreamUnavailable(self.url, f"stream {self.name}: {exc}") from exc
        except _UNAVAILABLE as exc:
            raise StreamUnavailable(self.url, f"no answer about stream {self.name}") from exc
        return info.state.last_seq

    def follow(
        self,
        after: int,
        apply: Apply,
        *,
        batch: int = 256,
        check_s: float = 5.0,
        skip: Callable[[str], bool] | None = None,
    ) -> Follower:
        """A :class:`Follower` of this stream from the event after sequence ``after``."""
        return Follower(self, after, apply, batch=batch, check_s=check_s, skip=skip)

    async def close(self) -> None:
        with contextlib.suppress(*_UNAVAILABLE):
            await self.nc.close()


class Follower:
    """Applies the stream's events after ``position`` in order, each once; ``position`` is then
    the last sequence applied (keep it, and follow again from it after a restart).

    :meth:`run` goes on until its ``stop`` is set, through disconnections and NATS restarts;
    it raises what ``apply`` raises (the event stays unapplied), StreamGap when events after
    ``position`` were trimmed from the stream, and a ProtocolError for an event that does not
    decode (a follower never skips one: its book would part from the others')."""

    def __init__(
        self,
        stream: ClusterStream,
        after: int,
        apply: Apply,
        *,
        batch: int = 256,
        poll_s: float = 0.5,
        retry_s: float = 0.05,
        max_retry_s: float = 1.0,
        check_s: float = 5.0,
        skip: Callable[[str], bool] | None = None,
    ) -> None:
        self.stream = stream
        self.skip = skip
        """Called with an event's message id before it is decoded: True passes over the event
        as applied (the caller has it already: an instance's own accepted order)."""
        self.position = after
        self.apply = apply
        self.batch = batch
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.check_s = check_s
        """After this long without an event, ask whether the consumer still exists: a fetch from
        a deleted consumer is refused by this server, but should one only time out, a quiet
        stream and a lost consumer would look alike."""
        self.resubscribed = 0
        """Consumers made after the first (a reconnection, a lost consumer)."""

    async def run(self, stop: asyncio.Event) -> None:
        log = self.stream.log.bind(stream=self.stream.name)
        backoff = self.retry_s
        while not stop.is_set():
            reached = self.position
            try:
                await self._follow(stop)
            except _UNAVAILABLE as exc:
                log.info("stream_follow_retry", position=self.position, error=repr(exc))
            except nats.js.errors.APIError as exc:  # the consumer is gone: make another
                log.info("stream_consumer_lost", position=self.position, error=repr(exc))
            else:
                return
            self.resubscribed += 1
            backoff = self.retry_s if self.position > reached else backoff
            await _wait(stop, backoff)
            backoff = min(backoff * 2, self.max_retry_s)

    async def _follow(self, stop: asyncio.Event) -> None:
        s = self.stream
        while not s.nc.is_connected:
            if stop.is_set():
                return
            await _wait(stop, self.retry_s)
        epoch = s.reconnects
        sub = await s.js.pull_subscribe(
            f"{subject_prefix(s.cluster)}.>",
            stream=s.name,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.position + 1,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=CONSUMER_IDLE_S,
                mem_storage=True,
            ),
        )
        idle_since = time.monotonic()
        try:
            while not stop.is_set():
                if s.reconnects != epoch:  # the server may have lost the consumer: make anew
                    raise nats.errors.ConnectionClosedError
                try:
                    msgs = await sub.fetch(self.batch, timeout=self.poll_s)
                except nats.errors.TimeoutError:
                    if not s.nc.is_connected:
                        raise
                    if time.monotonic() - idle_since > self.check_s:
                        await sub.consumer_info()  # NotFoundError if it is gone
                        idle_since = time.monotonic()
                    continue
                idle_since = time.monotonic()
                self._apply_all(msgs)
        finally:
            with contextlib.suppress(*_UNAVAILABLE, nats.js.errors.Error):
                await sub.unsubscribe()

    def _apply_all(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            seq = msg.metadata.sequence.stream
            if seq <= self.position:
                continue  # already applied (a new consumer starts where the old one was)
            if seq != self.position + 1:
                raise StreamGap(self.stream.name, self.position, seq)
            if self.skip is None or not self.skip((msg.headers or {}).get(MSG_ID_HEADER, "")):
                self.apply(seq, decode_event(msg.data))
            self.position = seq


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


__all__ = [
    "CLUSTER_NAME",
    "MSG_ID_HEADER",
    "Apply",
    "ClusterStream",
    "Follower",
    "Published",
    "Retention",
    "stream_name",
    "subject_of",
    "subject_prefix",
]
