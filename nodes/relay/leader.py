"""The matcher lease: exactly one relay instance matches at a time, and another takes over when it
stops. A row in the relays' PostgreSQL database (``matcher_lease``, created by the store's
migrations) names the holder, its term and when the lease expires, by the database's clock:

    lease = MatcherLease.open(url, holder="relay-a:4121", ttl_s=5.0)
    held = lease.acquire()            # a Held with a new term, or None: another holds it
    held = lease.renew()              # every ttl_s / 3 or so; LeaseLost once deposed
    store.record_intents(fills, term=held.term)   # fenced: refused under a term no longer held
    lease.release()                   # on a clean stop: the next instance need not wait

* **One at a time.** Taking the lease is one statement that succeeds only when the row is free
  (released, or expired by the database's clock) or already this holder's; two instances racing
  for it serialise on the row, and one wins.
* **Terms only grow.** Every change of holder (and every re-acquisition after an expiry or a
  release) adds one to the term; the row is never deleted, so a term is never given twice. The term
  is the fencing token: fill intents carry it (:meth:`nodes.relay.store.Store.record_intents`), and
  a matcher that takes over finds its predecessors' open intents by their lower term.
* **Failover.** A holder that stops renewing (crashed, paused, cut off) keeps the lease until
  ``ttl_s`` after its last renewal, then anyone may take it with the next term.
* **Deposition is learned.** A renewal succeeds only for the holder and term of the row while it
  has not expired; otherwise it raises :class:`~nodes.errors.LeaseLost`, and the holder stops
  matching. An expired lease is not renewed even if nobody took it: the holder acquires again,
  with a new term, so everything it does after a gap is told apart from before.

The holder's own view is conservative: :meth:`Held.valid` counts ``ttl_s`` from *before* the
statement that granted or renewed the lease was sent, on the local monotonic clock, so it turns
false no later than the database's expiry (for clocks that run at the same rate).

The lease has its own connection, so a renewal is never queued behind the store's work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from nodes.errors import LeaseLost, StoreError, StoreUnavailable
from nodes.relay.store_postgres import LEASE_NAME, connect, migrate, redacted

DEFAULT_TTL_S: Final = 5.0

_ACQUIRE: Final = b"""
INSERT INTO matcher_lease AS l (name, holder, term, expires)
VALUES (%(name)s, %(holder)s, 1, clock_timestamp() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE
    SET holder = excluded.holder,
        term = CASE WHEN l.holder = excluded.holder AND l.expires > clock_timestamp()
                    THEN l.term ELSE l.term + 1 END,
        expires = excluded.expires
    WHERE l.expires <= clock_timestamp() OR l.holder = excluded.holder
RETURNING term
"""
"""Take the lease if it is free or already ours (a renewal then, under the same term)."""

_RENEW: Final = b"""
UPDATE matcher_lease SET expires = clock_timestamp() + make_interval(secs => %(ttl)s)
WHERE name = %(name)s AND holder = %(holder)s AND term = %(term)s
    AND expires > clock_timestamp()
RETURNING term
"""

_RELEASE: Final = b"""
UPDATE matcher_lease SET expires = clock_timestamp()
WHERE name = %(name)s AND holder = %(holder)s AND term = %(term)s
    AND expires > clock_timestamp()
"""

_CURRENT: Final = b"""
SELECT holder, term, expires > clock_timestamp() FROM matcher_lease WHERE name = %(name)s
"""


@dataclass(frozen=True, slots=True)
class Held:
    """The lease as its holder last got it: ``term``, and until when (local monotonic seconds)
    the holder may act on it without renewing."""

    term: int
    valid_until: float

    def valid(self) -> bool:
        return time.monotonic() < self.valid_until


@dataclass(frozen=True, slots=True)
class LeaseState:
    """The lease row as the database has it now: ``live`` while unexpired."""

    holder: str
    term: int
    live: bool


class MatcherLease:
    """One instance's handle on the matcher lease. Open with :meth:`open`; :meth:`close` when
    done (closing does not release: call :meth:`release` first on a clean stop)."""

    def __init__(
        self,
        url: str,
        conn: psycopg.Connection[tuple[Any, ...]],
        holder: str,
        ttl_s: float,
        name: str = LEASE_NAME,
    ) -> None:
        if not holder:
            raise ValueError("a lease holder needs a non-empty id")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self.url = url
        self.holder = holder
        self.ttl_s = ttl_s
        self.name = name
        self.held: Held | None = None
        self._conn = conn

    @classmethod
    def open(
        cls, url: str, holder: str, ttl_s: float = DEFAULT_TTL_S, *, name: str = LEASE_NAME
    ) -> MatcherLease:
        """Connect (and migrate, as the store does); StoreUnavailable if the server cannot be
        reached."""
        conn = connect(url)
        try:
            migrate(conn, redacted(url))
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(redacted(url), f"cannot migrate: {exc}") from exc
        except StoreError:
            conn.close()
            raise
        try:
            return cls(url, conn, holder, ttl_s, name)
        except ValueError:
            conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def _one(self, query: bytes, **args: object) -> tuple[Any, ...] | None:
        """One statement in its own transaction; psycopg's errors become StoreError."""
        if self._conn.broken or self._conn.closed:
            self._conn.close()
            self._conn = connect(self.url)
        try:
            with self._conn.transaction():
                cursor = self._conn.execute(query, {"name": self.name, **args})
                return cursor.fetchone() if cursor.description is not None else None
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(redacted(self.url), f"matcher lease: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(redacted(self.url), f"matcher lease: {exc}") from exc

    def acquire(self) -> Held | None:
        """Take the lease if it is free (or already ours): the Held, with a new term unless we
        held it live; None while another holder's lease is live."""
        sent = time.monotonic()
        row = self._one(_ACQUIRE, holder=self.holder, ttl=self.ttl_s)
        if row is None:
            self.held = None
            return None
        self.held = Held(int(row[0]), sent + self.ttl_s)
        return self.held

    def renew(self) -> Held:
        """Extend the lease under the term we hold; LeaseLost if it expired or another instance
        took it (the holder must stop acting on it at once)."""
        if self.held is None:
            raise LeaseLost(self.holder, 0, self._current_term())
        sent = time.monotonic()
        row = self._one(_RENEW, holder=self.holder, term=self.held.term, ttl=self.ttl_s)
        if row is None:
            term, self.held = self.held.term, None
            raise LeaseLost(self.holder, term, self._current_term())
        self.held = Held(self.held.term, sent + self.ttl_s)
        return self.held

    def release(self) -> None:
        """Give the lease up now (it expires at once), if we still hold it: another instance
        may take it without waiting for the TTL."""
        if self.held is not None:
            self._one(_RELEASE, holder=self.holder, term=self.held.term)
            self.held = None

    def current(self) -> LeaseState | None:
        """The lease row as the database has it (None: never taken)."""
        row = self._one(_CURRENT)
        return None if row is None else LeaseState(str(row[0]), int(row[1]), bool(row[2]))

    def _current_term(self) -> int | None:
        state = self.current()
        return None if state is None else state.term


__all__ = ["DEFAULT_TTL_S", "Held", "LeaseState", "MatcherLease"]
