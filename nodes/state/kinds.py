"""Every chain action by the ``kind`` its intent rows carry."""

from __future__ import annotations

from nodes.errors import StoreError
from nodes.state.actions import Action, ClaimBatch, CloseLease, CloseLeaseBatch, Withdraw
from nodes.state.optimistic import FinalizeClaim, PostReceipt

_KINDS = {
    cls.kind: cls
    for cls in (ClaimBatch, CloseLease, CloseLeaseBatch, Withdraw, PostReceipt, FinalizeClaim)
}
KINDS: tuple[str, ...] = tuple(_KINDS)


def decode_action(kind: str, raw: bytes) -> Action:
    """The action an intent row holds; a kind this release does not know is a StoreError."""
    cls = _KINDS.get(kind)
    if cls is None:
        raise StoreError("intents", f"unknown action kind {kind!r}: run a newer gpumarket")
    action: Action = cls.decode(raw)
    return action


__all__ = ["KINDS", "decode_action"]
