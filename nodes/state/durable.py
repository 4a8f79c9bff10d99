"""Chain actions that survive a crash at any point: intent first, then the transaction.

    chain = DurableChain(db, client)
    chain.reconcile()                        # on start: finish what the last run left open
    outcome = chain.run(ClaimBatch(items))   # intent, sign, record, broadcast, receipt, done
    outcome.result["total"]

Where a crash leaves an intent, and what :meth:`DurableChain.reconcile` does with it:

==========================================  ==================================================
left as                                     on restart
==========================================  ==================================================
``pending`` (nothing signed)                decide afresh from contract state: ``obsolete`` if
                                            the effect is there, else sign and send
``sent``, its receipt on chain              ``done`` (or ``failed``) from that receipt
``sent``, no receipt, nonce still unused    broadcast the *same* signed bytes again (same hash:
                                            it can only be mined once), wait for the receipt
``sent``, no receipt, nonce used by another the transaction can never be mined: decide afresh
                                            from contract state, as for ``pending``
==========================================  ==================================================

Deciding afresh reads the chain (lease paid up to the voucher, lease closed, credit withdrawn,
claim posted), never the daemon's memory, so an action whose effect some other transaction
produced (a third party submitting the voucher, a lab closing the lease) is not repeated.

``checkpoint`` is called after each durable step with its name (``intent_written``,
``tx_recorded``, ``broadcast``): tests raise there, or stop the process, to simulate a crash.
``observe`` is told each action's kind, outcome (``done``, ``failed``, ``obsolete``, or ``error``
when it raised) and seconds taken: the daemons' ``gpumarket_chain_action_seconds``
(:meth:`nodes.metrics.Metrics.observe_chain_action`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast

from market.chain.client import MarketClient
from market.chain.tx import SignedTx, TxReceipt
from market.errors import ChainError, MarketError, NonceUsed, TransactionReverted
from nodes.errors import ActionUnsupported, StoreError
from nodes.logs import get_logger
from nodes.state.actions import Action, Obsolete
from nodes.state.db import StateDB
from nodes.state.intents import Intent, IntentLog
from nodes.state.kinds import decode_action
from nodes.state.view import MarketView

Step = Literal["intent_written", "tx_recorded", "broadcast"]
Checkpoint = Callable[[Step, Intent], None]
Observe = Callable[[str, str, float], None]
"""Told ``(kind, outcome, seconds)`` once an action ends."""
_MAX_ROUNDS = 4  # a nonce taken under us more often than this in one call is not a race


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an intent ended; ``error`` says why when ``status`` is ``failed`` (a typed revert, or
    ActionUnsupported)."""

    intent_id: int
    kind: str
    status: Literal["done", "failed", "obsolete"]
    tx_hash: bytes | None
    result: dict[str, int]
    reason: str = ""
    error: MarketError | None = field(default=None, compare=False)


class DurableChain:
    """Sends the actions of one account through the intent log of ``db``."""

    def __init__(
        self,
        db: StateDB,
        client: MarketClient,
        *,
        checkpoint: Checkpoint | None = None,
        observe: Observe | None = None,
    ) -> None:
        self.log = IntentLog(db)
        self.client = client
        self.view = MarketView(client)
        self.checkpoint = checkpoint
        self.observe = observe
        self._tx = client.transactor
        self._events = get_logger("gpumarket.state", account=client.address)

    def run(self, action: Action) -> Outcome:
        """Log ``action`` as an intent and carry it out; raises the typed revert if it fails."""
        intent = self.log.create(action.kind, action.encode())
        self._events.info("intent_written", intent=intent.id, kind=intent.kind)
        self._checkpoint("intent_written", intent)
        outcome = self._timed(intent)
        if outcome.error is not None:
            raise outcome.error
        return outcome

    def reconcile(self) -> list[Outcome]:
        """Finish every intent a previous run left open, oldest first, deciding from the chain."""
        outcomes = []
        for intent in self.log.open_intents():
            outcome = self._timed(intent)
            self._events.info(
                "intent_reconciled", intent=intent.id, kind=intent.kind, was=intent.status,
                now=outcome.status, reason=outcome.reason,
            )  # fmt: skip
            outcomes.append(outcome)
        return outcomes

    # --- the steps ---------------------------------------------------------------------------

    def _timed(self, intent: Intent) -> Outcome:
        """:meth:`_advance`, its time and outcome told to ``observe``."""
        start = time.perf_counter()
        status = "error"
        try:
            outcome = self._advance(intent)
            status = outcome.status
            return outcome
        finally:
            if self.observe is not None:
                self.observe(intent.kind, status, time.perf_counter() - start)

    def _advance(self, intent: Intent) -> Outcome:
        for _ in range(_MAX_ROUNDS):
            if intent.status == "sent":
                signed = _signed(intent)
                receipt = self._tx.receipt(signed.hash)
                if receipt is not None:
                    return self._mined(intent, receipt)
                if self._tx.mined_nonce() <= signed.nonce:
                    if self._broadcast(signed):
                        return self._await(intent)
                    continue  # the nonce was used meanwhile: look for our receipt again
                # The nonce is used: by our transaction if it was mined between the two reads.
                receipt = self._tx.receipt(signed.hash)
                if receipt is not None:
                    return self._mined(intent, receipt)
            try:
                fresh = self._send_fresh(intent)
            except ActionUnsupported as exc:
                # This deployment can never carry the action out: close the intent, say why.
                return self._outcome(self.log.finish(intent.id, "failed", reason=str(exc)), exc)
            if isinstance(fresh, Outcome):
                return fresh
            intent = fresh
            self._checkpoint("tx_recorded", intent)
            if self._broadcast(_signed(intent)):
                self._checkpoint("broadcast", intent)
                return self._await(intent)
        raise ChainError(
            f"intent {intent.id} ({intent.kind}): its nonce was taken by other transactions "
            f"{_MAX_ROUNDS} times; is another process sending from {self.client.address}?"
        )

    def _send_fresh(self, intent: Intent) -> Intent | Outcome:
        """Decide from contract state; then finish as obsolete, or sign and record (``sent``)."""
        needed = decode_action(intent.kind, intent.args).still_needed(self.view)
        if isinstance(needed, Obsolete):
            self._events.info("intent_obsolete", intent=intent.id, reason=needed.reason)
            return self._outcome(self.log.finish(intent.id, "obsolete", reason=needed.reason))
        call = needed.call()
        if call.function not in self.view.functions:
            raise ActionUnsupported(intent.kind, call.function)
        data = self.client.calldata(call.function, *call.args)
        # The pending nonce is read again for every new transaction: something else may have
        # sent from this account (decision 0008).
        self._tx.resync_nonce()
        try:
            signed = self._tx.sign(self.client.market.address, data, what=intent.kind)
        except TransactionReverted as exc:
            # Nothing was sent: the chain refuses the action as it stands now.
            return self._outcome(self.log.finish(intent.id, "failed", reason=str(exc)), exc)
        tx_hash = bytes(signed.hash)
        intent = self.log.mark_sent(intent.id, needed.encode(), tx_hash, signed.nonce, signed.raw)
        self._events.info("tx_recorded", intent=intent.id, tx=tx_hash, nonce=signed.nonce)
        return intent

    def _broadcast(self, signed: SignedTx) -> bool:
        """Send signed bytes (the client's own sends then take the next nonce); False when the
        node says their nonce is already used."""
        try:
            self._tx.broadcast(signed)
        except NonceUsed:
            return False
        return True

    def _await(self, intent: Intent) -> Outcome:
        try:
            receipt = self._tx.wait(_signed(intent).hash, what=intent.kind)
        except TransactionReverted as exc:
            done = self.log.finish(intent.id, "failed", reason=str(exc))
            return self._outcome(done, exc)
        return self._mined(intent, receipt)

    def _mined(self, intent: Intent, receipt: TxReceipt) -> Outcome:
        if receipt["status"] != 1:
            reason = f"reverted in block {receipt['blockNumber']}"
            exc = TransactionReverted(intent.kind, b"", "0x" + (intent.tx_hash or b"").hex())
            return self._outcome(self.log.finish(intent.id, "failed", reason=reason), exc)
        decoded = (self.client.event_reader.decode(log) for log in receipt["logs"])
        action = decode_action(intent.kind, intent.args)
        result = action.result([e for e in decoded if e is not None])
        self._events.info("intent_done", intent=intent.id, kind=intent.kind, **result)
        return self._outcome(self.log.finish(intent.id, "done", result=result))

    def _checkpoint(self, step: Step, intent: Intent) -> None:
        if self.checkpoint is not None:
            self.checkpoint(step, intent)

    @staticmethod
    def _outcome(intent: Intent, error: MarketError | None = None) -> Outcome:
        status = cast(Literal["done", "failed", "obsolete"], intent.status)
        result = dict(intent.result)
        return Outcome(intent.id, intent.kind, status, intent.tx_hash, result, intent.reason, error)


def _signed(intent: Intent) -> SignedTx:
    """The signed transaction a ``sent`` intent recorded."""
    if intent.tx_hash is None or intent.tx_nonce is None or intent.raw_tx is None:
        raise StoreError("intents", f"intent {intent.id} is sent but holds no transaction")
    signed = SignedTx.from_raw(intent.raw_tx)
    if (signed.hash, signed.nonce) != (intent.tx_hash, intent.tx_nonce):
        raise StoreError("intents", f"intent {intent.id}: its raw bytes are not its hash and nonce")
    return signed


__all__ = ["Checkpoint", "DurableChain", "Observe", "Outcome", "Step"]
