"""A daemon's durable state: SQLite in WAL mode, an intent log for chain actions, write-before-act
records. Layered bottom-up:

* :mod:`~nodes.state.db`: the database, its migrations by schema version;
* :mod:`~nodes.state.intents`: the intent log's rows and states;
* :mod:`~nodes.state.actions`: the chain actions (claim batch, close, close batch, withdraw) and
  how each reads its effect off the chain; :mod:`~nodes.state.optimistic` adds posting and
  finalizing an optimistic claim; :mod:`~nodes.state.kinds` maps an intent's kind back to its
  action;
* :mod:`~nodes.state.durable`: :class:`DurableChain`, which runs actions through the log and
  reconciles what a crash left open;
* :mod:`~nodes.state.records`: leases, receipts issued and vouchers received.

Nothing here knows about relays or HTTP; the provider agent and the lab client both build on it.
"""

from nodes.state.actions import (
    Action,
    Call,
    ChainView,
    ClaimBatch,
    CloseLease,
    CloseLeaseBatch,
    Obsolete,
    PostedClaim,
    Withdraw,
)
from nodes.state.db import SCHEMA_VERSION, StateDB
from nodes.state.durable import Checkpoint, DurableChain, Outcome, Step
from nodes.state.intents import Intent, IntentLog, IntentStatus
from nodes.state.kinds import KINDS, decode_action
from nodes.state.optimistic import FinalizeClaim, PostReceipt
from nodes.state.records import Records
from nodes.state.view import MarketView

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "Action",
    "Call",
    "ChainView",
    "Checkpoint",
    "ClaimBatch",
    "CloseLease",
    "CloseLeaseBatch",
    "DurableChain",
    "FinalizeClaim",
    "Intent",
    "IntentLog",
    "IntentStatus",
    "MarketView",
    "Obsolete",
    "Outcome",
    "PostedClaim",
    "PostReceipt",
    "Records",
    "StateDB",
    "Step",
    "Withdraw",
    "decode_action",
]
