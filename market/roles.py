"""The two users of the market, as small facades over the chain client and the protocol.

    provider = Provider.connect(deployment, provider_key)
    provider.register(stake=500 * USD, endpoint="https://gpu.example:7000")
    offer = provider.offer("H100-80GB", gpus=8, memory_gib=80, price_per_gpu_second=3,
                           min_duration=60, max_duration=86_400)

    lab = Lab.connect(deployment, lab_key)
    bid = lab.bid("H100-80GB", gpus=4, max_price_per_gpu_second=4, duration=3600)
    lease = lab.open(offer, bid, gpus=4)           # signs a permit if the allowance is short
    voucher = lab.pay(lease, cumulative_amount=1_000)
    provider.claim(lease, voucher)                 # credits the provider inside the market
    lab.terminate(lease, cumulative_amount=1_000)  # or let it run to its end
    provider.close(lease)                          # credits the rest back to the lab
    provider.withdraw()                            # each takes its credit out in one transfer
    lab.withdraw()

Payments are pulled: claims, terminations and closes only credit accounts inside the market, and
``withdraw`` sends an account everything credited to it so far, many claims in one transfer.

Receipts back the payment when a party misbehaves (docs/decisions/0006-slashing.md)::

    pending = provider.post_receipt(lease, receipt)  # the lab went silent: claim from a receipt
    provider.finalize_claim(lease)                   # paid once the challenge window has passed
    lab.dispute(lease)                               # ... unless the lab disputes it within it
    lab.prove_equivocation(lease, a, b)              # two receipts for one seq: stake to the lab
    lab.prove_impossible_usage(lease, receipt)       # more GPU-seconds than possible: likewise

Order nonces default to the signing time in nanoseconds, so ``cancel_all()`` (which raises the
nonce floor to now) cancels every order signed before it.

A party may be a contract wallet (a multisig, a smart account) whose ERC-1271
``isValidSignature`` accepts its owner key's ECDSA signatures and whose ``execute(address,
uint256, bytes)`` (ERC-4337's reference ``SimpleAccount``) makes calls for its owner
(``contracts/test/helpers/ERC1271Lab.sol`` is such a wallet)::

    lab = Lab.connect(deployment, owner_key, wallet=wallet_address)
    bid = lab.bid("H100-80GB", gpus=4, max_price_per_gpu_second=4, duration=3600)  # lab=wallet
    lease = lab.open(offer, bid, gpus=4)  # escrow pulled from the wallet; no permit
    lab.terminate(lease, cumulative_amount=1_000)  # the owner's call to wallet.execute(...)

Orders then name the wallet and are signed by the owner key; the market and relays check them
through the wallet (ERC-1271). Vouchers and receipts, checked later, are not left to the wallet's
answer: the orders name the owner key as the lease's voucher (or receipt) key, and it signs them
(``docs/decisions/0011-signed-terms.md``). Every transaction is the owner key's call to the
wallet's ``execute`` (:mod:`market.chain.wallet`), so the market sees the wallet as the sender of
what it decides by sender (approving, cancelling, terminating, disputing, withdrawing, and for a
provider registering, posting receipts and closing). A wallet cannot sign an EIP-2612 permit, so
it approves the market (``fund``) before ``open``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Self

from eth_typing import ChecksumAddress

from market.chain.client import BatchClaimResult, MarketClient, PendingClaim, ProviderInfo
from market.chain.deploy import Deployment
from market.errors import InvalidArgument
from market.matching.constraints import (
    EMPTY_ATTRIBUTES,
    NO_REQUIREMENTS,
    Attributes,
    Requirements,
    encode_attributes,
)
from market.protocol.eip712 import order_hash
from market.protocol.signing import SigningKey
from market.protocol.types import (
    UINT256_MAX,
    ZERO_ADDRESS,
    ZERO_HASH,
    Bid,
    Billing,
    Lease,
    Offer,
    OrderHash,
    Receipt,
    Signed,
    Voucher,
    billing_modes,
)

DEFAULT_ORDER_TTL_S = 3600


class _Party:
    def __init__(self, client: MarketClient, key: SigningKey) -> None:
        if client.account.address != key.address:
            raise InvalidArgument(
                "key", key.address, "the client's account and the signing key differ"
            )
        self.client = client
        self.key = key
        self.wallet = client.address if client.address != key.address else None
        """The contract wallet this party acts for through ``key``, its owner (the client sends
        through it); None for the key's own account."""

    @classmethod
    def connect(
        cls,
        deployment: Deployment,
        key: str,
        *,
        rpc_url: str | None = None,
        wallet: str | None = None,
    ) -> Self:
        """Connect to a deployment and act for the account of ``key`` (a 0x hex private key), or,
        with ``wallet``, for that contract wallet, whose ERC-1271 check accepts ``key``'s
        signatures and whose ``execute`` sends for it (see the module)."""
        client = MarketClient.connect(deployment, key, rpc_url=rpc_url, wallet=wallet)
        return cls(client, SigningKey(key))

    @property
    def address(self) -> ChecksumAddress:
        """The account orders are for and credits go to: the wallet, or the key's account."""
        return self.wallet if self.wallet is not None else self.key.address

    def _evidence_key(self, key: ChecksumAddress | None) -> ChecksumAddress:
        """The receipt or voucher key an order names: ``key``, else this party's own (zero) or,
        for a wallet, the owner key's address, which signs them."""
        if key is not None:
            return key
        return ZERO_ADDRESS if self.wallet is None else self.key.address

    def balance(self) -> int:
        """The account's token balance (credit still in the market not included)."""
        return self.client.balance_of(self.address)

    def withdrawable(self) -> int:
        """What the market holds for this account: payments, refunds or fees not yet withdrawn."""
        return self.client.withdrawable(self.address)

    def withdraw(self) -> int:
        """Take the account's whole credit out of the market in one transfer; returns the amount
        (0, without a transaction, if there is none)."""
        return self.client.withdraw()

    def _expiry(self, ttl_s: int) -> int:
        return self.client.chain_time() + ttl_s

    def cancel(self, order: Signed[Offer] | Signed[Bid]) -> OrderHash:
        """Cancel one order on-chain by its hash."""
        h = order_hash(self.client.domain, order.message)
        self.client.cancel_order(h)
        return h

    def cancel_all(self) -> None:
        """Cancel every order signed so far (raises the nonce floor to now)."""
        self.client.cancel_orders_up_to(time.time_ns())


class Provider(_Party):
    """A GPU owner: registers with a stake, signs offers, claims payment, withdraws it."""

    def register(
        self,
        stake: int,
        endpoint: str,
        encryption_key: bytes = ZERO_HASH,
        attributes_hash: bytes = ZERO_HASH,
    ) -> ProviderInfo:
        return self.client.register(stake, endpoint, encryption_key, attributes_hash)

    def offer(
        self,
        gpu_model: str,
        *,
        gpus: int,
        memory_gib: int,
        price_per_gpu_second: int,
        min_duration: int,
        max_duration: int,
        ttl_s: int = DEFAULT_ORDER_TTL_S,
        attributes: Attributes = EMPTY_ATTRIBUTES,
        bandwidth_gbps: int = 0,
        billing: Sequence[Billing] = (Billing.RENTAL,),
        receipt_signer: ChecksumAddress | None = None,
        arbiter: ChecksumAddress = ZERO_ADDRESS,
        min_charge_bps: int = 0,
        nonce: int | None = None,
    ) -> Signed[Offer]:
        """Sign an offer of ``gpus`` GPUs, valid for ``ttl_s`` seconds of chain time.

        ``attributes`` name what else it signs (``{"interconnect": "nvlink", "region":
        "eu-west"}``; :data:`market.matching.constraints.VOCABULARY` lists the names), ``billing``
        the modes it accepts (a rental by default), ``receipt_signer`` the key that will sign its
        receipts (by default this key: zero, or this key's address for a wallet), ``arbiter`` who
        may rule on its leases' disputes (bids must name the same; none by default) and
        ``min_charge_bps`` the part of each fill's escrow paid whatever the lab uses."""
        offer = Offer(
            provider=self.address,
            gpu_model=gpu_model,
            gpu_count=gpus,
            memory_gib=memory_gib,
            price_per_gpu_second=price_per_gpu_second,
            min_duration=min_duration,
            max_duration=max_duration,
            expiry=self._expiry(ttl_s),
            nonce=time.time_ns() if nonce is None else nonce,
            bandwidth_gbps=bandwidth_gbps,
            features=encode_attributes(attributes),
            billing_modes=billing_modes(*billing),
            receipt_signer=self._evidence_key(receipt_signer),
            arbiter=arbiter,
            min_charge_bps=min_charge_bps,
        )
        return self.key.sign(self.client.domain, offer)

    def claim(self, lease: Lease, voucher: Signed[Voucher]) -> int:
        """Redeem the lab's voucher; returns what was credited now, fee included (0 if already
        paid). ``withdraw`` takes the credit out."""
        return self.client.claim(lease, voucher)

    def claim_all(self, items: Sequence[tuple[Lease, Signed[Voucher]]]) -> BatchClaimResult:
        """Redeem many vouchers in one transaction, crediting each lease's provider."""
        return self.client.claim_batch(items)

    def close(self, lease: Lease) -> int:
        """Give the lease up (a provider may close at any time); returns the refund credited to
        the lab."""
        return self.client.close_lease(lease)

    def post_receipt(self, lease: Lease, receipt: Signed[Receipt]) -> PendingClaim:
        """Claim payment for the work ``receipt`` reports when the lab signs no voucher; the
        claim is payable after the challenge window unless the lab disputes it."""
        return self.client.post_receipt(lease, receipt)

    def finalize_claim(self, lease: Lease) -> int:
        """Take the pending claim once its challenge window has passed; returns what was credited
        (0 when nothing was pending or vouchers had paid as much)."""
        return self.client.finalize_claim(lease)


class Lab(_Party):
    """A buyer of GPU time: signs bids, funds escrow, pays by vouchers, terminates, withdraws
    refunds."""

    def bid(
        self,
        gpu_model: str,
        *,
        gpus: int,
        max_price_per_gpu_second: int,
        duration: int,
        job_spec_hash: bytes = ZERO_HASH,
        requirements: Requirements = NO_REQUIREMENTS,
        voucher_signer: ChecksumAddress | None = None,
        arbiter: ChecksumAddress = ZERO_ADDRESS,
        max_min_charge_bps: int = 0,
        ttl_s: int = DEFAULT_ORDER_TTL_S,
        nonce: int | None = None,
    ) -> Signed[Bid]:
        """Sign a bid for ``gpus`` GPUs for ``duration`` seconds.

        ``requirements`` (memory, bandwidth, attributes, billing mode, all-or-none) become signed
        bid fields the contract checks against every offer that fills it; ``voucher_signer`` is
        the key that will sign its vouchers (by default this key: zero, or this key's address for
        a wallet); ``arbiter`` must be the offers' and ``max_min_charge_bps`` is the highest
        minimum charge it accepts."""
        bid = Bid(
            lab=self.address,
            gpu_model=gpu_model,
            gpu_count=gpus,
            max_price_per_gpu_second=max_price_per_gpu_second,
            duration=duration,
            expiry=self._expiry(ttl_s),
            nonce=time.time_ns() if nonce is None else nonce,
            job_spec_hash=job_spec_hash,
            voucher_signer=self._evidence_key(voucher_signer),
            arbiter=arbiter,
            max_min_charge_bps=max_min_charge_bps,
            **requirements.bid_fields(),
        )
        return self.key.sign(self.client.domain, bid)

    def fund(self, amount: int) -> None:
        """Allow the market to pull up to ``amount`` into escrow (an ERC-20 approval)."""
        self.client.approve(amount)

    def open(
        self,
        offer: Signed[Offer],
        bid: Signed[Bid],
        gpus: int,
        *,
        use_permit: bool = True,
    ) -> Lease:
        """Open a lease; with ``use_permit`` an EIP-2612 permit authorises the escrow if needed.

        A permit sets the allowance to its value rather than adding to it, so one for the escrow
        alone would wipe what ``fund`` allowed for the lab's other bids. When the allowance already
        covers the escrow no permit is sent; otherwise the permit is for the allowance plus the
        escrow, which leaves the allowance as it was once the escrow is pulled. (A lease opened
        against this lab between the read and this transaction is covered again by the permit.)

        For a wallet no permit is signed (the owner key's permit would spend its own tokens): the
        escrow is pulled from the wallet, which must have approved the market.
        """
        escrow = offer.message.price_per_gpu_second * gpus * bid.message.duration
        if not use_permit or self.wallet is not None:
            return self.client.open_lease(offer, bid, gpus)
        allowance = self.client.allowance(self.address)
        if allowance >= escrow:
            return self.client.open_lease(offer, bid, gpus)
        value = min(allowance + escrow, UINT256_MAX)
        permit = self.client.sign_permit(value, deadline=self._expiry(DEFAULT_ORDER_TTL_S))
        return self.client.open_lease(offer, bid, gpus, permit=permit)

    def pay(
        self, lease: Lease, cumulative_amount: int, receipt_hash: bytes = ZERO_HASH
    ) -> Signed[Voucher]:
        """Sign a voucher: the provider may take up to ``cumulative_amount`` in total."""
        voucher = Voucher(lease.id, cumulative_amount, receipt_hash)
        return self.key.sign(self.client.domain, voucher)

    def terminate(self, lease: Lease, cumulative_amount: int) -> None:
        """End the lease now, paying (crediting the provider) up to ``cumulative_amount`` for the
        work done."""
        self.client.terminate(lease, cumulative_amount)

    def close(self, lease: Lease) -> int:
        """Have the unpaid escrow credited back once the claim window after the end has passed;
        returns the refund, which ``withdraw`` takes out."""
        return self.client.close_lease(lease)

    def pending_claim(self, lease: Lease) -> PendingClaim | None:
        """The provider's claim from a posted receipt that waits for this lab's dispute, if any."""
        return self.client.pending_claim(lease.id)

    def dispute(self, lease: Lease) -> None:
        """Refuse the provider's pending claim within its challenge window (public on-chain)."""
        self.client.dispute_claim(lease)

    def prove_equivocation(self, lease: Lease, a: Signed[Receipt], b: Signed[Receipt]) -> int:
        """Slash the provider with two different receipts it signed for one seq; returns the stake
        credited to this lab (its unpaid escrow is credited too, and the lease is settled)."""
        return self.client.slash_equivocation(lease, a, b)

    def prove_impossible_usage(self, lease: Lease, receipt: Signed[Receipt]) -> int:
        """Slash the provider with a receipt reporting usage no lease could produce; returns the
        stake credited to this lab."""
        return self.client.slash_impossible_usage(lease, receipt)


__all__ = ["DEFAULT_ORDER_TTL_S", "Lab", "Provider"]
