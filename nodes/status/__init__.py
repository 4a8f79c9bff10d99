"""``gpumarket status``: one account's standing in the market, read from the chain (no transaction).

    status = collect_status(client, address)   # a Status: frozen, built from chain reads only
    print(render_table(status))                # aligned text for people
    print(render_json(status))                 # the stable document below, for scripts

It reads the account's token balance and market credit, its registry record when it is a
provider, and every lease it is party to (as provider or as lab) from the ``LeaseOpened`` events
since the deployment block, each with its on-chain state and its optimistic claim. A lease's
status is ``slashed`` when a proof of cheating slashed its provider (such a lease is closed too),
else its on-chain ``active``, ``terminated`` or ``closed``; an active lease past its end stays
active until someone closes it. A claim is shown while the lease is open (active or terminated):
``pending`` in its challenge window, ``ready`` once anyone may finalize it, ``disputed`` when the
lab disputed it (then ``ready_at`` is its ruling deadline, from which it pays unless the lease's
arbiter rules for the lab, and it is shown even once the lease closed: a close keeps the disputed
amount in escrow); a closed lease's other claims can no longer be paid and are not shown.

The table shows amounts in tokens with the token's symbol (``1,234.56 tUSD``) and prices per
GPU-hour, the token's symbol and decimals read from its ERC-20 ``symbol()`` and ``decimals()``.

The JSON document (version 2). Amounts are integers of any size in the token's base units (divide
by ``10 ** token.decimals`` for tokens); times
are chain timestamps in seconds; ``*_in_s`` count from ``chain.time`` (``end_in_s`` is negative
once the lease has ended, ``ready_in_s`` is 0 once the claim is ready)::

    version             2 (1 had no token nor price_per_gpu_hour)
    address             the account, EIP-55
    chain               {chain_id, block, time}: the head block when the read began (events
                        are read up to it, balances and lease states just after)
    token               {symbol, decimals}: the settlement token (ERC-20 symbol(), decimals())
    balance             the account's token balance
    withdrawable        its credit in the market (payments, refunds, fees, slashed stake)
    provider            null when not a registered provider, else {stake (bonded), locked (by
                        leases in their proof window), unbonding, unbond_ready_at, free_stake
                        (stake - locked), min_stake, eligible (free_stake >= min_stake: may
                        offer)}
    leases              in the order they opened, each {id (0x + 64 hex digits), role
                        ("provider" | "lab": the account's side), counterparty, gpus,
                        price_per_gpu_second (as signed), price_per_gpu_hour (x 3600),
                        escrow, paid, status ("active" | "terminated" |
                        "closed" | "slashed"), start, end (moved forward by a termination),
                        end_in_s, claim}
    leases[].claim      null, or {state ("pending" | "ready" | "disputed"), seq, amount (the
                        lease's total claimed), due (amount - paid: what finalizing
                        pays), ready_at, ready_in_s}
    totals              {provider: {...}, lab: {...}}, each over the leases in that role:
                        {leases, open (not closed), escrow_held (escrow - paid of open leases),
                        claims_pending (due of pending claims), claims_ready (due of ready ones)}
"""

from nodes.status.collect import collect_status
from nodes.status.model import (
    FORMAT_VERSION,
    ClaimState,
    ClaimView,
    LeaseStatusName,
    LeaseView,
    Role,
    RoleTotals,
    StakeView,
    Status,
    address_of_key,
    parse_address,
)
from nodes.status.render import render_json, render_table, status_document

__all__ = [
    "FORMAT_VERSION",
    "ClaimState",
    "ClaimView",
    "LeaseStatusName",
    "LeaseView",
    "Role",
    "RoleTotals",
    "StakeView",
    "Status",
    "address_of_key",
    "collect_status",
    "parse_address",
    "render_json",
    "render_table",
    "status_document",
]
