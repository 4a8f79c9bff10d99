"""The receipts package's public surface is exactly what it declares."""

from __future__ import annotations

import importlib

import pytest

import market.receipts
from market import errors

pytestmark = pytest.mark.unit

MODULES = [
    "audit",
    "challenge",
    "equivocation",
    "freivalds",
    "issue",
    "merkle",
    "sampling",
    "verify",
]


def test_package_exports_are_the_documented_ones() -> None:
    assert set(market.receipts.__all__) == {
        "DEFAULT_SAMPLES",
        "AuditReport",
        "ChainHead",
        "Challenge",
        "MerkleTree",
        "ReceiptChain",
        "ReceiptVerifier",
        "ReexecutionAuditor",
        "audit_seed",
        "check_answer",
        "check_chunk",
        "detect_equivocation",
        "freivalds_exact",
        "freivalds_float",
        "min_stake",
        "output_root",
        "reserved_gpu_seconds",
        "sample_indices",
        "samples_needed",
        "solve",
        "verify_chain",
        "voucher_amount",
    }
    assert all(hasattr(market.receipts, name) for name in market.receipts.__all__)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_what_it_exports(name: str) -> None:
    module = importlib.import_module(f"market.receipts.{name}")
    assert module.__all__
    assert all(hasattr(module, member) for member in module.__all__)


@pytest.mark.parametrize(
    ("error", "parent"),
    [
        ("ReceiptError", "ProtocolError"),
        ("ReceiptWrongLease", "ReceiptError"),
        ("ReceiptSignatureInvalid", "ReceiptError"),
        ("ReceiptChainBroken", "ReceiptError"),
        ("ReceiptPeriodInvalid", "ReceiptError"),
        ("ReceiptUsageDecreased", "ReceiptError"),
        ("ReceiptUsageImpossible", "ReceiptError"),
        ("ReceiptOutputMismatch", "ReceiptError"),
        ("AuditError", "MarketError"),
        ("WorkMismatch", "AuditError"),
        ("ChallengeFailed", "AuditError"),
    ],
)
def test_errors_sit_where_the_tree_draws_them(error: str, parent: str) -> None:
    cls = getattr(errors, error)
    assert cls.__bases__ == (getattr(errors, parent),)
    assert error in (errors.__doc__ or "")
