"""The daemons' errors: every one derives from :class:`NodeError`, itself a
:class:`~market.errors.MarketError`, so a caller of the library and of a daemon catches one root.

The tree::

    MarketError                   (market/errors.py: the library's errors)
    └── NodeError                 a daemon, its state or a peer failed (nodes/)
        ├── RequestRefused        a daemon answered with an ErrorResponse (``code``, ``details``)
        ├── RateLimited           a client or signer is over its rate limit (``retry_after_s``)
        ├── TooManyOrders         a request carries more orders than the daemon takes at once
        ├── PeerUnavailable       a peer daemon did not answer before the timeout
        ├── StoreError            a daemon's state (SQLite; the relay's also PostgreSQL) is
        │   │                     unreadable, of another version, or refused a write
        │   └── StoreUnavailable  the relay's PostgreSQL server cannot be reached (``url``)
        ├── LeaseLost             the matcher lease is no longer its holder's (``term``)
        ├── StreamError           a relay cluster's event stream (NATS JetStream) failed
        │   ├── StreamUnavailable the NATS server did not answer or refused (``url``, ``reason``)
        │   └── StreamGap         events after a follower's position left the stream (``after``)
        ├── OutputUnavailable     a period's committed output is no longer on disk as committed
        ├── ActionUnsupported     the deployed market lacks the function a chain action calls
        ├── ChallengeRefused      a provider will not answer a hardware challenge (``status``)
        ├── DaemonDidNotStart     a local market's daemon process gave no ready line in time
        └── AgentError            a daemon cannot act as configured
            ├── ConfigError       a config field is missing or invalid (``field``)
            ├── KeystoreError     the key cannot be read or decrypted
            ├── InventoryError    no GPUs detected and none declared
            ├── PricingError      a pricing policy cannot load, or priced out of range
            ├── SandboxUnavailable  the job sandbox (bubblewrap) cannot start; no job runs
            ├── JobRefused        a job spec asks for what the provider's policy forbids
            └── JobError          a job did not complete
                ├── JobTimedOut       over its wall-time limit; killed
                ├── JobOutOfMemory    over its memory limit
                ├── JobDiskExceeded   wrote more than its folder's cap; killed
                └── JobFailed         exited non-zero or by a signal
"""

from __future__ import annotations

from collections.abc import Mapping

from market.errors import MarketError


class NodeError(MarketError):
    """A daemon, its durable state, or a peer daemon failed."""


class RequestRefused(NodeError):
    """A daemon answered with an ErrorResponse: ``code`` says why, ``details`` has the numbers."""

    def __init__(
        self, code: str, message: str, details: Mapping[str, object], status: int = 0
    ) -> None:
        self.code = code
        self.message = message
        self.details = dict(details)
        self.status = status
        super().__init__(f"refused ({code}, HTTP {status}): {message}")


class RateLimited(NodeError):
    """``key`` (a client address or an order signer) is over its limit for now."""

    def __init__(self, key: str, retry_after_s: float) -> None:
        self.key = key
        self.retry_after_s = retry_after_s
        super().__init__(f"{key} is over its rate limit; retry after {retry_after_s:.2f}s")


class TooManyOrders(NodeError):
    def __init__(self, count: int, limit: int) -> None:
        self.count = count
        self.limit = limit
        super().__init__(f"{count} orders in one request, the limit is {limit}; split the batch")


class PeerUnavailable(NodeError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"peer {url} is unavailable: {reason}")


class StoreError(NodeError):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"state database {path}: {reason}")


class StoreUnavailable(StoreError):
    """The database server at ``url`` (shown without its password) cannot be reached, or the
    connection broke: nothing was written by the call that raised it."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason)
        self.url = url


class LeaseLost(NodeError):
    """``holder`` (``""``: whoever wrote under it) no longer holds the matcher lease under
    ``term``: it expired, or another instance took it (``current_term``). The holder stops
    matching at once."""

    def __init__(self, holder: str, term: int, current_term: int | None) -> None:
        self.holder = holder
        self.term = term
        self.current_term = current_term
        now = "none" if current_term is None else str(current_term)
        by = f" by {holder}" if holder else ""
        super().__init__(
            f"matcher lease lost{by} (term {term}, now {now}): stop sending fills; "
            "acquire the lease again to resume"
        )


class StreamError(NodeError):
    """A relay cluster's event stream (NATS JetStream, ``nodes/relay/cluster/``) failed."""


class StreamUnavailable(StreamError):
    """The NATS server at ``url`` did not answer in time, or refused (``reason``). A publish that
    raised this may still have been stored if the server took it just before failing: publish
    the same event again (its message id makes JetStream store it once)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"event stream at {url} is unavailable: {reason}; check that nats-server runs "
            "with JetStream (-js) and is reachable"
        )


class StreamGap(StreamError):
    """The stream no longer holds the events after sequence ``after`` (the next it holds is
    ``first``): they were trimmed by its retention, so following on would skip them. Rebuild
    the book from the store, then follow from the stream's last sequence."""

    def __init__(self, stream: str, after: int, first: int) -> None:
        self.stream = stream
        self.after = after
        self.first = first
        super().__init__(
            f"stream {stream} lost the events after sequence {after} (it starts at {first}): "
            "rebuild the book from the store, then follow from the stream's end"
        )


class OutputUnavailable(NodeError):
    """Bytes a receipt committed cannot be read back from ``path`` as committed (the file was
    removed, cut or changed since): nothing is served in their place."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"output file {path}: {reason}; keep a job's folder until it is settled")


class ActionUnsupported(NodeError):
    """The deployed market has no ``function`` for chain action ``kind``: deploy a newer market."""

    def __init__(self, kind: str, function: str) -> None:
        self.kind = kind
        self.function = function
        super().__init__(
            f"chain action {kind!r} calls Market.{function}, which this deployment lacks; "
            "deploy a market that has it"
        )


class ChallengeRefused(NodeError):
    """A challenge request or opening this agent will not answer (the reason in the message);
    ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class DaemonDidNotStart(NodeError):
    """The daemon process ``name`` (of ``nodes.localnet``) exited or gave no ready line in time;
    ``log_tail`` is the end of its log, which says why."""

    def __init__(self, name: str, log_tail: str) -> None:
        self.name = name
        self.log_tail = log_tail
        super().__init__(f"{name} did not start; its log ends:\n{log_tail}")


class AgentError(NodeError):
    """The provider agent cannot act as it is configured."""


class ConfigError(AgentError):
    """``field`` (a dotted path such as ``inventory.gpus[0].count``) of the config at ``path``
    is missing or invalid."""

    def __init__(self, path: str, field: str, reason: str) -> None:
        self.path = path
        self.field = field
        self.reason = reason
        super().__init__(f"{path}: {field}: {reason}")


class KeystoreError(AgentError):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"keystore {path}: {reason}")


class InventoryError(AgentError):
    """No GPUs to offer: detection found none (or failed) and the config declares none."""


class PricingError(AgentError):
    def __init__(self, policy: str, reason: str) -> None:
        self.policy = policy
        self.reason = reason
        super().__init__(f"pricing policy {policy!r}: {reason}")


class SandboxUnavailable(AgentError):
    """The job sandbox cannot start (``reason``): bubblewrap missing, or its probe failed.
    A provider never falls back to running a job unconfined; install bubblewrap, or opt out
    explicitly with ``[jobs] sandbox = "none"``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"job sandbox unavailable: {reason}; install bubblewrap (apt-get install -y "
            'bubblewrap) or set [jobs] sandbox = "none" to run jobs unconfined'
        )


class JobRefused(AgentError):
    """Job ``job`` asks for ``what`` (``network``, ``memory_bytes``), which the provider's
    policy (``allowed``) forbids; it is not started."""

    def __init__(self, job: str, what: str, asked: object, allowed: object) -> None:
        self.job = job
        self.what = what
        self.asked = asked
        self.allowed = allowed
        super().__init__(
            f"job {job}: asks for {what} = {asked!r}, the provider allows {allowed!r}; "
            "lease from a provider whose policy allows it"
        )


class JobError(AgentError):
    """Job ``job`` did not complete; ``stderr_tail`` holds the end of what it wrote."""

    def __init__(self, job: str, message: str, stderr_tail: str = "") -> None:
        self.job = job
        self.stderr_tail = stderr_tail
        super().__init__(f"job {job}: {message}")


class JobTimedOut(JobError):
    def __init__(self, job: str, wall_time_s: float, stderr_tail: str = "") -> None:
        self.wall_time_s = wall_time_s
        super().__init__(
            job, f"ran past its wall-time limit of {wall_time_s:g}s and was killed", stderr_tail
        )


class JobOutOfMemory(JobError):
    def __init__(self, job: str, memory_bytes: int, stderr_tail: str = "") -> None:
        self.memory_bytes = memory_bytes
        super().__init__(
            job,
            f"ran out of memory under its limit of {memory_bytes} bytes; lease more memory "
            "or raise the job limit",
            stderr_tail,
        )


class JobDiskExceeded(JobError):
    """Wrote more than ``limit_bytes`` into its folder (``used_bytes`` when it was killed)."""

    def __init__(self, job: str, limit_bytes: int, used_bytes: int, stderr_tail: str = "") -> None:
        self.limit_bytes = limit_bytes
        self.used_bytes = used_bytes
        super().__init__(
            job,
            f"wrote {used_bytes} bytes into its folder, over its cap of {limit_bytes}, and was "
            "killed; lease from a provider with a larger [jobs] max_disk_gib",
            stderr_tail,
        )


class JobFailed(JobError):
    """Exited with ``exit_code`` (negative: killed by that signal)."""

    def __init__(self, job: str, exit_code: int, stderr_tail: str = "") -> None:
        self.exit_code = exit_code
        how = f"killed by signal {-exit_code}" if exit_code < 0 else f"exited with {exit_code}"
        super().__init__(job, how, stderr_tail)
