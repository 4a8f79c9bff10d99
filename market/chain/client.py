"""The market's chain client: the one place that reads and writes the contracts.

``MarketClient`` wraps a deployment (token, Market) and, when given an account,
sends its transactions through a :class:`~market.chain.tx.Transactor`. Reverts surface as the
typed errors of ``market.chain.contract_errors`` (``MarketOrderExpired``, ...) with their
arguments. Writes that can be known to be no-ops from chain state (a claim already paid, a lease
already closed, an order already cancelled, a withdrawal of nothing) return without sending, so
retrying them is safe.

The market pays by credit (``docs/decisions/0005-pull-payments.md``): claims, terminations and
closes credit the provider, the treasury and the lab inside the market, and each account takes its
credit out with :meth:`MarketClient.withdraw`. ``withdrawable`` reads what is waiting.

Receipts (``docs/decisions/0006-slashing.md``): anyone may prove a provider's equivocation or
impossible usage (``slash_equivocation``, ``slash_impossible_usage``), which slashes its stake to
the lab's credit and settles the lease; a provider whose lab stopped paying posts its latest
receipt (``post_receipt``) and is paid after the challenge window (``finalize_claim``) unless the
lab disputes it first (``dispute_claim``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from typing import Any, TypeVar

from eth_abi.exceptions import DecodingError
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import BadFunctionCallOutput, TransactionNotFound, Web3RPCError
from web3.types import TxReceipt

from market.chain.calldata import Calldata
from market.chain.contract_errors import ERRORS
from market.chain.deploy import Contracts, Deployment
from market.chain.events import ChainEvent, EventReader
from market.chain.retry import transient_answer, with_retries
from market.chain.rpc import JsonRpc, quantity
from market.chain.tx import Transactor, endpoint_of
from market.chain.wallet import WalletTransactor
from market.errors import (
    ChainTimeNotReached,
    DeploymentError,
    EventMissing,
    InvalidArgument,
    InvalidField,
    InvalidSignature,
    NoAccount,
    RpcRefused,
)
from market.protocol.eip712 import Domain, digest, receipt_hash
from market.protocol.signing import recover_address_bytes
from market.protocol.types import (
    ZERO_HASH,
    Bid,
    Lease,
    LeaseId,
    LeaseState,
    LeaseStatus,
    Offer,
    OrderState,
    Receipt,
    ReceiptHash,
    Signed,
    Voucher,
    gpu_model_to_bytes32,
)
from market.units import Token

T = TypeVar("T")
HTTP_TIMEOUT_S = 10.0
READ_BATCH = 500
MAX_ALLOWANCE = 2**256 - 1  # an ERC-20 allowance that is never spent
"""Calls per JSON-RPC batch request of :meth:`MarketClient.lease_states`."""
SENT_SIGNATURES = 4096
"""Orders whose signature as sent :class:`MarketClient` remembers (about 1 MiB)."""
_ERROR_NAMES = {cls.SELECTOR: cls.__name__ for cls in ERRORS.values()}


@dataclass(frozen=True, slots=True)
class Head:
    """The latest block: its number, and its timestamp (the clock the contracts see)."""

    number: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """A provider's registry record: ``stake`` is bonded (``locked`` of it by open leases),
    ``unbonding`` has left it and can be withdrawn from ``unbond_ready_at``."""

    address: ChecksumAddress
    registered: bool
    stake: int
    unbonding: int
    unbond_ready_at: int
    encryption_key: bytes
    attributes_hash: bytes
    endpoint: str
    locked: int = 0

    @property
    def free_stake(self) -> int:
        """Bonded stake no lease locks: what new leases can lock and unbonding can take."""
        return self.stake - self.locked


@dataclass(frozen=True, slots=True)
class LabFunds:
    """What the Market could pull from a lab now: its token ``balance`` and its ``allowance`` to
    the Market; a lease's escrow is pulled only when both cover it."""

    balance: int
    allowance: int

    @property
    def spendable(self) -> int:
        return min(self.balance, self.allowance)


@dataclass(frozen=True, slots=True)
class Permit:
    """An EIP-2612 permit letting the market pull ``value`` from the signer until ``deadline``."""

    owner: ChecksumAddress
    value: int
    deadline: int
    v: int
    r: bytes
    s: bytes

    def as_tuple(self) -> tuple[int, int, int, bytes, bytes]:
        return (self.value, self.deadline, self.v, self.r, self.s)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch of closes or finalizations did per lease (refund or amount credited), and the
    items it skipped with the error's name."""

    done: dict[LeaseId, int]
    skipped: dict[LeaseId, str]
    gas_used: int


@dataclass(frozen=True, slots=True)
class BatchClaimResult:
    """What a ``claimBatch`` credited per lease, and the items it skipped with the error's name."""

    paid: dict[LeaseId, int]
    skipped: dict[LeaseId, str]
    gas_used: int

    @property
    def total(self) -> int:
        return sum(self.paid.values())


@dataclass(frozen=True, slots=True)
class PendingClaim:
    """A provider's claim from a posted receipt, waiting out the challenge window: ``amount`` in
    total for the lease (what vouchers paid is deducted when it is finalized), payable from
    ``ready_at`` unless the lab disputes it before."""

    amount: int
    seq: int
    ready_at: int
    receipt_hash: ReceiptHash
    bond: int = 0
    ruling_deadline: int = 0

    @property
    def disputed(self) -> bool:
        """Whether the lab disputed it: it then waits for a ruling until ``ruling_deadline``."""
        return self.ruling_deadline != 0


def _provider_info(address: str, raw: Sequence[Any]) -> ProviderInfo:
    """``getProvider``'s answer as a :class:`ProviderInfo`."""
    return ProviderInfo(
        address=Web3.to_checksum_address(address),
        stake=raw[0],
        locked=raw[1],
        unbond_ready_at=raw[2],
        registered=raw[3],
        unbonding=raw[4],
        encryption_key=bytes(raw[5]),
        attributes_hash=bytes(raw[6]),
        endpoint=raw[7],
    )


def _lease_state(raw: Sequence[Any]) -> LeaseState:
    paid, end, status, slashed, disputed, released = raw
    return LeaseState(paid, end, LeaseStatus(status), bool(slashed), bool(disputed), bool(released))


def receipt_tuple(receipt: Receipt) -> tuple[Any, ...]:
    """A receipt as the contract's ``Receipt`` struct."""
    return tuple(getattr(receipt, attr) for attr, _, _ in Receipt.FIELDS)


def receipt_body(receipt: Receipt) -> tuple[Any, ...]:
    """A receipt as the proofs' ``ReceiptBody``: every field after ``lease_id`` and ``seq``."""
    return tuple(getattr(receipt, attr) for attr, _, _ in Receipt.FIELDS[2:])


def compact_signature(signature: bytes) -> bytes:
    """A 65-byte ECDSA signature (r || s || v, v in {27, 28}) in EIP-2098 compact form: r || vs,
    the parity of v in the top bit of s (a non-malleable s leaves that bit free)."""
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + ((v - 27) << 255 | s).to_bytes(32, "big")


def _order_tuple(order: Offer | Bid) -> tuple[Any, ...]:
    return tuple(
        gpu_model_to_bytes32(order.gpu_model)
        if attr == "gpu_model"
        else int(value)
        if isinstance(value := getattr(order, attr), IntEnum)
        else value
        for attr, _, _ in order.FIELDS
    )


def offer_tuple(offer: Offer) -> tuple[Any, ...]:
    """An offer as the contract's ``Offer`` struct."""
    return _order_tuple(offer)


def bid_tuple(bid: Bid) -> tuple[Any, ...]:
    """A bid as the contract's ``Bid`` struct."""
    return _order_tuple(bid)


@dataclass(frozen=True, slots=True)
class BatchMatch:
    """One lease of a batch open: ``gpus`` GPUs from an offer to a bid."""

    offer: Signed[Offer]
    bid: Signed[Bid]
    gpus: int


def batch_arguments(
    matches: Sequence[BatchMatch],
    signature: Callable[[Signed[Offer] | Signed[Bid]], bytes] = lambda order: order.signature,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[int, int, int]]]:
    """``openLeaseBatch``'s arrays: each distinct offer and bid once (first-seen order, so a
    lab's bids stay consecutive when its matches are), and matches by index; ``signature``
    gives each order's signature as sent."""
    offers: dict[Signed[Offer], int] = {}
    bids: dict[Signed[Bid], int] = {}
    offer_args: list[tuple[Any, ...]] = []
    bid_args: list[tuple[Any, ...]] = []
    indices: list[tuple[int, int, int]] = []
    for m in matches:
        if m.offer not in offers:
            offers[m.offer] = len(offer_args)
            offer_args.append((offer_tuple(m.offer.message), signature(m.offer)))
        if m.bid not in bids:
            bids[m.bid] = len(bid_args)
            bid_args.append((bid_tuple(m.bid.message), signature(m.bid)))
        indices.append((offers[m.offer], bids[m.bid], m.gpus))
    return offer_args, bid_args, indices


class MarketClient:
    """Reads the market's contracts and, with an account, acts for it."""

    def __init__(
        self,
        w3: Web3,
        contracts: Contracts,
        account: LocalAccount | None = None,
        *,
        receipt_timeout_s: float = 60.0,
        rpc_deadline_s: float = 10.0,
        wallet: str | None = None,
    ) -> None:
        self.w3 = w3
        self.contracts = contracts
        self.token: Contract = contracts.token
        self.market: Contract = contracts.market
        self.domain = Domain(contracts.deployment.chain_id, self.market.address)
        self.rpc_deadline_s = rpc_deadline_s
        self._endpoint = endpoint_of(w3)
        self._rpc = JsonRpc.of(w3)
        self._account = account
        tx_options: dict[str, Any] = {
            "chain_id": contracts.deployment.chain_id,
            "receipt_timeout_s": receipt_timeout_s,
            "rpc_deadline_s": rpc_deadline_s,
        }
        self._tx: Transactor | None = None
        if account is not None:
            self._tx = (
                Transactor(w3, account, **tx_options)
                if wallet is None
                else WalletTransactor(w3, account, wallet, **tx_options)
            )
        elif wallet is not None:
            raise InvalidArgument(
                "wallet", wallet, "a wallet is acted for through its owner's key: give the account"
            )
        self._events = EventReader(w3, [self.market])
        self._calldata = {c.address: Calldata(c.abi) for c in (self.market, self.token)}
        self.last_receipt: TxReceipt | None = None
        # Orders' signatures as sent, remembered: an offer fills in many batches, and a batch
        # that reverted is estimated again lot by lot; each recovery costs 0.1 ms.
        self._sent_signatures: dict[Signed[Offer] | Signed[Bid], bytes] = {}
        self._token_metadata: Token | None = None

    @classmethod
    def connect(
        cls,
        deployment: Deployment,
        key: str | bytes | None = None,
        *,
        rpc_url: str | None = None,
        timeout_s: float = HTTP_TIMEOUT_S,
        wallet: str | None = None,
    ) -> MarketClient:
        """Connect to a deployment over HTTP (checks the chain id), acting for ``key`` if given,
        or with ``wallet`` for that contract wallet, ``key`` being its owner: every transaction
        is then the owner's call to the wallet's ``execute`` (:mod:`market.chain.wallet`)."""
        w3 = Web3(
            HTTPProvider(
                rpc_url or deployment.rpc_url,
                request_kwargs={"timeout": timeout_s},
                cache_allowed_requests=True,
            )
        )
        contracts = with_retries(
            lambda: Contracts.at(w3, deployment), endpoint=rpc_url or deployment.rpc_url
        )
        account = Account.from_key(key) if key is not None else None
        return cls(w3, contracts, account, wallet=wallet)

    # --- plumbing ------------------------------------------------------------------------------

    @property
    def account(self) -> LocalAccount:
        if self._account is None:
            raise NoAccount()
        return self._account

    @property
    def address(self) -> ChecksumAddress:
        """The account the contracts see this client act as: the wallet, or the key's account."""
        return self.transactor.address

    @property
    def transactor(self) -> Transactor:
        if self._tx is None:
            raise NoAccount()
        return self._tx

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return with_retries(fn, endpoint=self._endpoint, deadline_s=self.rpc_deadline_s)
        except BadFunctionCallOutput as exc:  # empty answer: no contract at that address
            d = self.contracts.deployment
            raise DeploymentError(
                f"no market contract answers at {self.market.address} on {d.rpc_url} (chain "
                f"{d.chain_id}): the deployment file is stale; redeploy or point --deployment at "
                "the right file"
            ) from exc

    def _view(self, contract: Contract, fn: str, *args: Any) -> Any:
        """``contract``'s view ``fn(*args)`` at the latest block, as web3's ``call()`` returns it
        (values whose types hold no address), from one lean ``eth_call``: encoded and decoded by
        eth_abi, sent by :class:`~market.chain.rpc.JsonRpc`, retried like every read."""
        calldata = self._calldata[contract.address]
        call = {"to": contract.address, "data": "0x" + calldata.encode(fn, args).hex()}

        def read() -> Any:
            data = bytes(HexBytes(self._rpc.request("eth_call", [call, "latest"])))
            try:
                if not data:  # as web3 says it: nothing answered
                    raise BadFunctionCallOutput(f"{fn} returned no data from {contract.address}")
                return calldata.decode_result(fn, data)
            except DecodingError as exc:
                raise BadFunctionCallOutput(f"{fn} returned undecodable data: {exc}") from exc

        return self._call(read)

    def calldata(self, fn: str, *args: Any) -> bytes:
        """The calldata of the Market's ``fn(*args)`` (arguments as the client builds them)."""
        return self._calldata[self.market.address].encode(fn, args)

    def _send(self, contract: Contract, fn: str, *args: Any) -> TxReceipt:
        data = self._calldata[contract.address].encode(fn, args)
        receipt = self.transactor.send(contract.address, data, what=fn)
        self.last_receipt = receipt
        return receipt

    def _events_in(self, receipt: TxReceipt) -> list[ChainEvent]:
        decoded = (self._events.decode(log) for log in receipt["logs"])
        return [e for e in decoded if e is not None]

    # --- reads ---------------------------------------------------------------------------------

    def head(self) -> Head:
        """The latest block's number and timestamp, from one request."""
        block = self._call(lambda: self._rpc.request("eth_getBlockByNumber", ["latest", False]))
        return Head(quantity(block["number"]), quantity(block["timestamp"]))

    def chain_time(self) -> int:
        """Timestamp of the latest block: the clock the contracts see."""
        return self.head().timestamp

    def balance_of(self, address: str) -> int:
        return int(self._view(self.token, "balanceOf", address))

    def token_metadata(self) -> Token:
        """The settlement token's ERC-20 ``symbol()`` and ``decimals()``, read once: what every
        amount a person reads or writes is in (:mod:`market.units`)."""
        if self._token_metadata is None:
            symbol = str(self._view(self.token, "symbol"))
            decimals = int(self._view(self.token, "decimals"))
            self._token_metadata = Token(symbol, decimals)
        return self._token_metadata

    def transaction(self, tx_hash: bytes) -> Mapping[str, Any] | None:
        """The mined or pending transaction ``tx_hash`` (``to``, ``input``, ...); None when the
        node knows none."""

        def read() -> Mapping[str, Any] | None:
            try:
                return dict(self.w3.eth.get_transaction(HexBytes(tx_hash)))
            except TransactionNotFound:
                return None

        return self._call(read)

    def total_supply(self) -> int:
        """The settlement token's total supply."""
        return int(self._view(self.token, "totalSupply"))

    def allowance(self, owner: str, spender: str | None = None) -> int:
        spender = spender or self.market.address
        return int(self._view(self.token, "allowance", owner, spender))

    def provider_info(self, address: str) -> ProviderInfo:
        return _provider_info(address, self._view(self.market, "getProvider", address))

    def provider_infos(self, addresses: Sequence[str]) -> dict[str, ProviderInfo]:
        """Many providers' records, read in JSON-RPC batches of :data:`READ_BATCH`, keyed by the
        addresses given."""
        wanted = list(dict.fromkeys(addresses))
        infos: dict[str, ProviderInfo] = {}
        for start in range(0, len(wanted), READ_BATCH):
            chunk = wanted[start : start + READ_BATCH]
            raws = self._batch_call("getProvider", [(a,) for a in chunk])
            for address, raw in zip(chunk, raws, strict=True):
                infos[address] = _provider_info(address, raw)
        return infos

    def min_stake(self) -> int:
        return int(self._view(self.market, "minStake"))

    def stake_ratio_bps(self) -> int:
        """Stake each lease locks, in basis points of its escrow (the penalty of a proof)."""
        return int(self._view(self.market, "stakeRatioBps"))

    def stake_lock(self, escrow: int) -> int:
        """The stake a lease with this escrow locks while it can be proven to cheat."""
        return escrow * self.stake_ratio_bps() // 10_000

    def lease_state(self, lease_id: bytes) -> LeaseState:
        return _lease_state(self._view(self.market, "leaseState", lease_id))

    def lease_states(self, lease_ids: Sequence[bytes]) -> dict[bytes, LeaseState]:
        """Many leases' states, read in JSON-RPC batches of ``eth_call`` (one HTTP request per
        :data:`READ_BATCH` leases rather than one each)."""
        states: dict[bytes, LeaseState] = {}
        ids = list(dict.fromkeys(bytes(i) for i in lease_ids))
        for start in range(0, len(ids), READ_BATCH):
            chunk = ids[start : start + READ_BATCH]
            for lease_id, raw in zip(
                chunk, self._batch_call("leaseState", [(i,) for i in chunk]), strict=True
            ):
                states[lease_id] = _lease_state(raw)
        return states

    def lab_funds(self, labs: Sequence[str]) -> dict[str, LabFunds]:
        """Many labs' token balances and allowances to the Market, read in JSON-RPC batches
        (two HTTP requests per :data:`READ_BATCH` labs), keyed by the addresses given."""
        wanted = list(dict.fromkeys(labs))
        market = self.market.address
        funds: dict[str, LabFunds] = {}
        for start in range(0, len(wanted), READ_BATCH):
            chunk = wanted[start : start + READ_BATCH]
            balances = self._batch_call("balanceOf", [(lab,) for lab in chunk], self.token)
            allowed = self._batch_call("allowance", [(lab, market) for lab in chunk], self.token)
            for lab, balance, allowance in zip(chunk, balances, allowed, strict=True):
                funds[lab] = LabFunds(int(balance), int(allowance))
        return funds

    def order_states(
        self, orders: Sequence[tuple[str, bytes]], block: int | None = None
    ) -> dict[bytes, OrderState]:
        """Many orders' filled GPUs and cancellation (``orders``: signer and order hash), as of
        ``block`` (default: the latest), read in JSON-RPC batches of :data:`READ_BATCH`."""
        wanted = list(dict.fromkeys((signer, bytes(h)) for signer, h in orders))
        states: dict[bytes, OrderState] = {}
        for start in range(0, len(wanted), READ_BATCH):
            chunk = wanted[start : start + READ_BATCH]
            for (_, h), (filled, cancelled) in zip(
                chunk, self._batch_call("orderState", chunk, block=block), strict=True
            ):
                states[h] = OrderState(filled=int(filled), cancelled=bool(cancelled))
        return states

    def block_hashes(self, numbers: Sequence[int]) -> dict[int, bytes | None]:
        """The hashes of many blocks, from one JSON-RPC batch of ``eth_getBlockByNumber`` per
        :data:`READ_BATCH` blocks; None for a block past the head (a reorganised chain may be
        shorter than the one it replaced)."""
        wanted = list(dict.fromkeys(numbers))
        hashes: dict[int, bytes | None] = {}
        for start in range(0, len(wanted), READ_BATCH):
            chunk = wanted[start : start + READ_BATCH]
            requests = [("eth_getBlockByNumber", [hex(n), False]) for n in chunk]
            answers = self._batch_request("eth_getBlockByNumber", requests)
            for n, response in zip(chunk, answers, strict=True):
                block = response.get("result")
                hashes[n] = None if block is None else bytes(HexBytes(block["hash"]))
        return hashes

    def _batch_request(
        self, what: str, requests: Sequence[tuple[str, list[Any]]]
    ) -> list[dict[str, Any]]:
        """Answers to ``requests``, in their order: one JSON-RPC batch over HTTP, else one request
        each. An answer a reorganisation in progress explains is retried as transient
        (``market.chain.retry``); RpcRefused when the node refuses the batch or any request."""

        def send() -> Any:
            answers = self._rpc.batch(requests)
            for answer in answers if isinstance(answers, list) else ():
                if "error" in answer and transient_answer(str(answer["error"])):
                    raise Web3RPCError(str(answer["error"]), rpc_response=answer)
            return answers

        responses = self._call(send)
        if not isinstance(responses, list):  # the node refused the whole batch
            raise RpcRefused(self._endpoint, f"{what} batch read", responses)
        for response in responses:
            if "error" in response or "result" not in response:
                error = response.get("error")
                raise RpcRefused(self._endpoint, f"{what} read", error)
        return [dict(r) for r in responses]

    def _batch_call(
        self,
        fn: str,
        calls: Sequence[tuple[Any, ...]],
        contract: Contract | None = None,
        *,
        block: int | None = None,
    ) -> list[Any]:
        """``contract``'s (default: the Market's) ``fn`` called once per argument tuple, in one
        JSON-RPC batch request, as of ``block`` (default: the latest)."""
        contract = contract if contract is not None else self.market
        calldata = self._calldata[contract.address]
        tag = "latest" if block is None else hex(block)
        requests = [
            (
                "eth_call",
                [{"to": contract.address, "data": "0x" + calldata.encode(fn, a).hex()}, tag],
            )
            for a in calls
        ]
        if not isinstance(self.w3.provider, HTTPProvider):  # no batches: one request each
            return [
                self._call(partial(getattr(contract.functions, fn)(*a).call, block_identifier=tag))
                for a in calls
            ]
        return [
            calldata.decode_result(fn, bytes(HexBytes(response["result"])))
            for response in self._batch_request(fn, requests)
        ]

    def is_slashed(self, lease_id: bytes) -> bool:
        """Whether a proof of cheating slashed the lease's provider (the lease is then closed)."""
        return self.lease_state(lease_id).slashed

    def pending_claim(self, lease_id: bytes) -> PendingClaim | None:
        """The lease's claim from a posted receipt, or None when none is pending."""
        slot = self.claim_slot(lease_id)
        return slot if slot.ready_at != 0 else None

    def claim_slot(self, lease_id: bytes) -> PendingClaim:
        """The lease's ``pendingClaim`` slot as stored, pending or not: ``ready_at`` is 0 when no
        claim is pending, while ``seq`` and ``receipt_hash`` still name the last receipt posted
        (all zero if none ever was)."""
        view = self._view(self.market, "pendingClaim", lease_id)
        amount, seq, ready_at, digest, bond, deadline = view
        return PendingClaim(amount, seq, ready_at, ReceiptHash(bytes(digest)), bond, deadline)

    def challenge_window(self) -> int:
        return int(self._view(self.market, "challengeWindow"))

    def ruling_window(self) -> int:
        return int(self._view(self.market, "rulingWindow"))

    def dispute_bond_bps(self) -> int:
        return int(self._view(self.market, "disputeBondBps"))

    def slashed_credit(self, address: str) -> tuple[int, int]:
        """Stake slashed to ``address`` and not withdrawn, and when it vests."""
        amount, vests_at = self._view(self.market, "slashedCredit", address)
        return int(amount), int(vests_at)

    def order_state(self, signer: str, order_hash: bytes) -> OrderState:
        filled, cancelled = self._view(self.market, "orderState", signer, order_hash)
        return OrderState(filled=filled, cancelled=cancelled)

    def min_nonce(self, signer: str) -> int:
        return int(self._view(self.market, "minNonce", signer))

    def claim_window(self) -> int:
        return int(self._view(self.market, "claimWindow"))

    def withdrawable(self, address: str) -> int:
        """What ``address`` may withdraw from the market now: payments, fees or refunds, and
        stake slashed to it once vested."""
        return int(self._view(self.market, "withdrawable", address))

    def events(
        self, from_block: int | None = None, to_block: int | None = None
    ) -> list[ChainEvent]:
        """Market and registry events in a block range (default: since the deployment)."""
        start = self.contracts.deployment.deploy_block if from_block is None else from_block
        return self._events.events(start, to_block)

    @property
    def event_reader(self) -> EventReader:
        return self._events

    # --- token ---------------------------------------------------------------------------------

    def mint_test_usd(self, to: str, amount: int) -> None:
        """Mint ``amount`` of the devnet's TestUSD to ``to`` (anyone may mint it; a deployment
        with a real settlement token has no ``mint``)."""
        self._send(self.token, "mint", to, amount)

    def approve(self, amount: int, spender: str | None = None) -> None:
        """Let ``spender`` (default: the market) pull ``amount``; skipped if already allowed."""
        spender = Web3.to_checksum_address(spender or self.market.address)
        if self.allowance(self.address, spender) >= amount:
            return
        self._send(self.token, "approve", spender, amount)

    def sign_permit(self, value: int, deadline: int) -> Permit:
        """Sign an EIP-2612 permit for the market to pull ``value`` of this account's tokens."""
        fields, name, version, chain_id, verifying, *_ = self._call(
            self.token.functions.eip712Domain().call
        )
        del fields
        nonce = self._call(self.token.functions.nonces(self.address).call)
        message = {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "Permit",
            "domain": {
                "name": name,
                "version": version,
                "chainId": chain_id,
                "verifyingContract": verifying,
            },
            "message": {
                "owner": self.address,
                "spender": self.market.address,
                "value": value,
                "nonce": nonce,
                "deadline": deadline,
            },
        }
        signed = self.account.sign_typed_data(full_message=message)
        return Permit(
            owner=self.address,
            value=value,
            deadline=deadline,
            v=signed.v,
            r=signed.r.to_bytes(32, "big"),
            s=signed.s.to_bytes(32, "big"),
        )

    # --- provider registry ---------------------------------------------------------------------

    def register(
        self,
        stake: int,
        endpoint: str,
        encryption_key: bytes = ZERO_HASH,
        attributes_hash: bytes = ZERO_HASH,
    ) -> ProviderInfo:
        """Register this account as a provider with ``stake``; a no-op if already registered."""
        info = self.provider_info(self.address)
        if info.registered:
            return info
        if stake:
            self.approve(stake, self.market.address)
        self._send(self.market, "register", stake, endpoint, encryption_key, attributes_hash)
        return self.provider_info(self.address)

    def update_profile(
        self, endpoint: str, encryption_key: bytes = ZERO_HASH, attributes_hash: bytes = ZERO_HASH
    ) -> ProviderInfo:
        """Change this provider's registered endpoint, sealing key and profile hash; sends
        nothing when they are already these."""
        info = self.provider_info(self.address)
        if (info.endpoint, info.encryption_key, info.attributes_hash) == (
            endpoint,
            encryption_key,
            attributes_hash,
        ):
            return info
        self._send(self.market, "updateProfile", endpoint, encryption_key, attributes_hash)
        return self.provider_info(self.address)

    def block_hash(self, number: int) -> bytes:
        """The hash of block ``number``: a chain's identity, with its id (a fresh devnet reuses
        the id and the contract addresses, never its blocks' hashes)."""
        block = self._call(lambda: self.w3.eth.get_block(number))
        return bytes(block["hash"])

    def add_stake(self, amount: int) -> None:
        self.approve(amount, self.market.address)
        self._send(self.market, "addStake", amount)

    def request_unstake(self, amount: int) -> None:
        self._send(self.market, "requestUnstake", amount)

    def withdraw_stake(self) -> int:
        before = self.balance_of(self.address)
        self._send(self.market, "withdrawStake")
        return self.balance_of(self.address) - before

    def release_stake(self, lease: Lease) -> int:
        """Return a closed lease's stake lock to its provider once its proof window is over
        (anyone may); returns the lock released."""
        tx = self._send(self.market, "releaseStake", lease.as_tuple())
        for event in self._events_in(tx):
            if event.name == "StakeReleased":
                return int(event.args["amount"])
        raise EventMissing("releaseStake", "StakeReleased")

    # --- orders and leases ---------------------------------------------------------------------

    def open_lease(
        self,
        offer: Signed[Offer],
        bid: Signed[Bid],
        gpus: int,
        *,
        permit: Permit | None = None,
    ) -> Lease:
        """Open a lease of ``gpus`` GPUs from a crossing pair; returns its terms (``lease.id``)."""
        args = [
            offer_tuple(offer.message),
            self._order_signature(offer),
            bid_tuple(bid.message),
            self._order_signature(bid),
        ]
        if permit is None:
            receipt = self._send(self.market, "openLease", *args, gpus)
        else:
            receipt = self._send(self.market, "openLeaseWithPermit", *args, gpus, permit.as_tuple())
        for event in self._events_in(receipt):
            if event.name == "LeaseOpened":
                lease: Lease = event.args["lease"]
                return lease
        raise EventMissing("openLease", "LeaseOpened")

    def open_lease_batch(self, matches: Sequence[BatchMatch]) -> list[Lease]:
        """Open many leases in one transaction, each at its offer's price; all or none (a failing
        match reverts the batch with its typed error). Returns the leases in match order."""
        offers, bids, indices = batch_arguments(matches, self._order_signature)
        receipt = self._send(self.market, "openLeaseBatch", offers, bids, indices)
        return self._opened(receipt)

    def open_lease_auction(self, matches: Sequence[BatchMatch], clearing_price: int) -> list[Lease]:
        """A uniform-price batch: every lease opens at ``clearing_price``, which the contract
        checks against every matched ask and bid maximum; all or none."""
        offers, bids, indices = batch_arguments(matches, self._order_signature)
        receipt = self._send(self.market, "openLeaseAuction", offers, bids, indices, clearing_price)
        return self._opened(receipt)

    def estimate_open_batch(
        self, matches: Sequence[BatchMatch], clearing_price: int | None = None
    ) -> int:
        """Gas ``open_lease_batch(matches)`` (with ``clearing_price``: ``open_lease_auction``)
        would use now; raises the typed contract error it would revert with. Sends nothing: a
        matcher checks the matches of a reverted batch one by one this way to find the culprit."""
        offers, bids, indices = batch_arguments(matches, self._order_signature)
        if clearing_price is None:
            fn, data = "openLeaseBatch", self.calldata("openLeaseBatch", offers, bids, indices)
        else:
            fn = "openLeaseAuction"
            data = self.calldata(fn, offers, bids, indices, clearing_price)
        return self.transactor.estimate(self.market.address, data, what=fn)

    def _order_signature(self, order: Signed[Offer] | Signed[Bid]) -> bytes:
        """The order's signature as a transaction sends it: EIP-2098's compact 64 bytes when it
        is the signer's 65-byte ECDSA signature (140 gas less calldata), else unchanged (a
        contract signer's ERC-1271 signature is passed on as it is)."""
        sig = order.signature
        if len(sig) != 65:
            return sig
        if (sent := self._sent_signatures.get(order)) is not None:
            return sent
        m = order.message
        signer = m.provider if isinstance(m, Offer) else m.lab
        try:
            recovered = recover_address_bytes(digest(self.domain, m), sig)
        except InvalidSignature:
            return sig
        sent = compact_signature(sig) if "0x" + recovered.hex() == signer.lower() else sig
        if len(self._sent_signatures) >= SENT_SIGNATURES:
            self._sent_signatures.clear()  # a matcher's orders of the last while: start again
        self._sent_signatures[order] = sent
        return sent

    def _opened(self, receipt: TxReceipt) -> list[Lease]:
        return [e.args["lease"] for e in self._events_in(receipt) if e.name == "LeaseOpened"]

    def cancel_order(self, order_hash: bytes) -> None:
        """Cancel one of this account's orders; a no-op if it is already cancelled."""
        if self.order_state(self.address, order_hash).cancelled:
            return
        self._send(self.market, "cancelOrder", order_hash)

    def cancel_orders_up_to(self, min_nonce: int) -> None:
        """Cancel every order of this account with a nonce below ``min_nonce``."""
        if self.min_nonce(self.address) >= min_nonce:
            return
        self._send(self.market, "cancelOrdersUpTo", min_nonce)

    def claim(self, lease: Lease, voucher: Signed[Voucher]) -> int:
        """Redeem a voucher; returns what it credited, fee included (0, without a transaction, if
        nothing is due). The provider takes the credit out with ``withdraw``.

        The amount is the one this transaction's ``Claimed`` event reports, so a claim of the same
        lease by someone else between the check below and this transaction does not skew it.
        """
        _check_voucher_names(lease, voucher)
        target = min(voucher.message.cumulative_amount, lease.escrow)
        state = self.lease_state(lease.id)
        if state.status != LeaseStatus.CLOSED and state.paid >= target:
            return 0
        m = voucher.message
        receipt = self._send(
            self.market,
            "claim",
            lease.as_tuple(),
            m.cumulative_amount,
            m.receipt_hash,
            voucher.signature,
        )
        for event in self._events_in(receipt):
            if event.name == "Claimed":
                return int(event.args["amount"])
        return 0

    def claim_batch(self, items: Sequence[tuple[Lease, Signed[Voucher]]]) -> BatchClaimResult:
        """Redeem many vouchers in one transaction, crediting their providers; bad items are
        skipped, not fatal."""
        for lease, voucher in items:
            _check_voucher_names(lease, voucher)
        encoded = [
            (lease.as_tuple(), v.message.cumulative_amount, v.message.receipt_hash, v.signature)
            for lease, v in items
        ]
        receipt = self._send(self.market, "claimBatch", encoded)
        paid: dict[LeaseId, int] = {}
        skipped: dict[LeaseId, str] = {}
        for event in self._events_in(receipt):
            if event.name == "Claimed":
                paid[LeaseId(event.args["lease_id"])] = event.args["amount"]
            elif event.name == "ClaimSkipped":
                reason = bytes(event.args["reason"])
                skipped[LeaseId(event.args["lease_id"])] = _ERROR_NAMES.get(reason, reason.hex())
        return BatchClaimResult(paid=paid, skipped=skipped, gas_used=receipt["gasUsed"])

    def terminate(self, lease: Lease, cumulative_amount: int) -> None:
        """End the lease now (lab only), crediting the provider up to ``cumulative_amount`` for
        work to date."""
        self._send(self.market, "terminate", lease.as_tuple(), cumulative_amount)

    def close_lease(self, lease: Lease) -> int:
        """Credit the unpaid escrow back to the lab; returns the refund (0 if already closed)."""
        if self.lease_state(lease.id).status == LeaseStatus.CLOSED:
            return 0
        receipt = self._send(self.market, "closeLease", lease.as_tuple())
        for event in self._events_in(receipt):
            if event.name == "LeaseClosed":
                return int(event.args["refund"])
        raise EventMissing("closeLease", "LeaseClosed")

    def close_lease_batch(self, leases: Sequence[Lease]) -> BatchResult:
        """Close many leases in one transaction; a lease that cannot close is skipped, not fatal.
        ``done`` maps each closed lease to its refund."""
        receipt = self._send(self.market, "closeLeaseBatch", [x.as_tuple() for x in leases])
        return self._batch_result(receipt, "LeaseClosed", "refund", "CloseSkipped")

    def finalize_claim_batch(self, leases: Sequence[Lease]) -> BatchResult:
        """Finalize many pending claims in one transaction; a lease whose claim cannot be
        finalized is skipped, not fatal. ``done`` maps each finalized lease to what it credited."""
        receipt = self._send(self.market, "finalizeClaimBatch", [x.as_tuple() for x in leases])
        return self._batch_result(receipt, "ClaimFinalized", "amount", "FinalizeSkipped")

    def _batch_result(self, receipt: TxReceipt, done: str, field: str, skip: str) -> BatchResult:
        result = BatchResult(done={}, skipped={}, gas_used=receipt["gasUsed"])
        for event in self._events_in(receipt):
            if event.name == done:
                result.done[LeaseId(event.args["lease_id"])] = int(event.args[field])
            elif event.name == skip:
                reason = bytes(event.args["reason"])
                name = _ERROR_NAMES.get(reason, reason.hex())
                result.skipped[LeaseId(event.args["lease_id"])] = name
        return result

    def withdraw(self) -> int:
        """Send this account its whole credit; returns the amount, from this transaction's
        ``Withdrawn`` event (0, without a transaction, if there is nothing to withdraw)."""
        if self.withdrawable(self.address) == 0:
            return 0
        receipt = self._send(self.market, "withdraw")
        for event in self._events_in(receipt):
            if event.name == "Withdrawn":
                return int(event.args["amount"])
        raise EventMissing("withdraw", "Withdrawn")

    # --- receipts: proofs of cheating and optimistic claims --------------------------------------

    def slash_equivocation(self, lease: Lease, a: Signed[Receipt], b: Signed[Receipt]) -> int:
        """Prove that the lease's provider signed two different receipts for one seq; returns the
        stake slashed to the lab (0, without a transaction, if the lease was slashed already).

        Anyone may send it; the lab is credited the penalty and, unless the lease had closed, its
        unpaid escrow, and takes them out with ``withdraw``. The proof carries each receipt's body
        once (the lease id and seq are implied) and the provider's signatures in EIP-2098 compact
        form when they are ECDSA (docs/decisions/0006-slashing.md).
        """
        _check_receipt_names(lease, a, b)
        if a.message.seq != b.message.seq:  # the proof carries one seq for both
            raise InvalidField("Receipt", "seq", f"{a.message.seq} and {b.message.seq} differ")
        if self.is_slashed(lease.id):
            return 0
        args = (
            lease.as_tuple(),
            a.message.seq,
            receipt_body(a.message),
            self._proof_signature(lease, a),
            receipt_body(b.message),
            self._proof_signature(lease, b),
        )
        return self._slashed(self._send(self.market, "slashEquivocation", *args))

    def slash_impossible_usage(self, lease: Lease, receipt: Signed[Receipt]) -> int:
        """Prove that the lease's provider signed a receipt no lease could produce (usage above
        GPUs x elapsed time, a period before the lease or not yet ended); returns the stake
        slashed to the lab (0, without a transaction, if the lease was slashed already)."""
        _check_receipt_names(lease, receipt)
        if self.is_slashed(lease.id):
            return 0
        r = receipt.message
        args = (lease.as_tuple(), r.seq, receipt_body(r), self._proof_signature(lease, receipt))
        return self._slashed(self._send(self.market, "slashImpossibleUsage", *args))

    def _proof_signature(self, lease: Lease, receipt: Signed[Receipt]) -> bytes:
        """The receipt's signature as a proof sends it: the EIP-2098 compact 64 bytes when it is
        the lease's receipt key's 65-byte signature (32 bytes less calldata), else unchanged."""
        sig = receipt.signature
        if len(sig) != 65:
            return sig
        try:
            signer = recover_address_bytes(receipt_hash(self.domain, receipt.message), sig)
        except InvalidSignature:
            return sig
        if "0x" + signer.hex() != lease.receipt_key.lower():
            return sig
        return compact_signature(sig)

    def _slashed(self, receipt: TxReceipt) -> int:
        for event in self._events_in(receipt):
            if event.name == "LeaseSlashed":
                return int(event.args["penalty"])
        raise EventMissing("a slash", "LeaseSlashed")

    def post_receipt(self, lease: Lease, receipt: Signed[Receipt]) -> PendingClaim:
        """Claim payment for ``receipt`` when the lab signs no voucher (provider only); the claim
        can be finalized after the challenge window. Posting the receipt already pending sends
        nothing and returns its claim."""
        _check_receipt_names(lease, receipt)
        pending = self.pending_claim(lease.id)
        digest = receipt_hash(self.domain, receipt.message)
        if pending is not None and pending.receipt_hash == digest:
            return pending
        args = (receipt_tuple(receipt.message), receipt.signature)
        tx = self._send(self.market, "postReceipt", lease.as_tuple(), *args)
        for event in self._events_in(tx):
            if event.name == "ReceiptPosted":
                return PendingClaim(
                    amount=int(event.args["amount"]),
                    seq=receipt.message.seq,
                    ready_at=int(event.args["ready_at"]),
                    receipt_hash=ReceiptHash(event.args["receipt_hash"]),
                )
        raise EventMissing("postReceipt", "ReceiptPosted")

    def finalize_claim(self, lease: Lease) -> int:
        """Finalize the lease's pending claim once its challenge window has passed (anyone may);
        returns what it credited the provider, fee included (0, without a transaction, when no
        claim is pending)."""
        if self.pending_claim(lease.id) is None:
            return 0
        tx = self._send(self.market, "finalizeClaim", lease.as_tuple())
        for event in self._events_in(tx):
            if event.name == "ClaimFinalized":
                return int(event.args["amount"])
        raise EventMissing("finalizeClaim", "ClaimFinalized")

    def dispute_claim(self, lease: Lease) -> None:
        """Dispute the lease's pending claim within its challenge window (lab only), posting the
        bond (``dispute_bond_bps`` of the disputed amount, approved here on top of the allowance
        the lab had, unless that is unlimited); a no-op when no claim is pending or it is disputed
        already. Unless a proof or the lease's arbiter settles it for
        the lab by the ruling deadline, the claim and the bond then pay the provider."""
        pending = self.pending_claim(lease.id)
        if pending is None or pending.disputed:
            return
        paid = self.lease_state(lease.id).paid
        bond = max(pending.amount - paid, 0) * self.dispute_bond_bps() // 10_000
        allowance = self.allowance(self.address)
        # On top of the allowance: the bond must not eat what was allowed for escrow. An allowance
        # of 2^256 - 1 is unlimited (OpenZeppelin's ERC-20 never spends it) and needs nothing.
        if bond and allowance < MAX_ALLOWANCE:
            self.approve(min(allowance + bond, MAX_ALLOWANCE), self.market.address)
        self._send(self.market, "disputeClaim", lease.as_tuple())

    def rule_dispute(self, lease: Lease, *, for_provider: bool) -> None:
        """Settle the lease's open dispute (its arbiter only), before the ruling deadline."""
        self._send(self.market, "ruleDispute", lease.as_tuple(), for_provider)

    def wait_for_time(self, timestamp: int, *, timeout_s: float = 60.0) -> None:
        """Block until the chain's clock reaches ``timestamp`` (a live chain mines on its own)."""
        deadline = time.monotonic() + timeout_s
        while self.chain_time() < timestamp:
            if time.monotonic() > deadline:
                raise ChainTimeNotReached(timestamp, timeout_s)
            time.sleep(0.2)  # waiting for new blocks


def _check_voucher_names(lease: Lease, voucher: Signed[Voucher]) -> None:
    # The contract signs over the id of the lease it is given, so a voucher for another lease
    # could only fail there; say so here, before spending gas.
    if voucher.message.lease_id != lease.id:
        raise InvalidField(
            "Voucher",
            "lease_id",
            f"names 0x{voucher.message.lease_id.hex()}, not 0x{lease.id.hex()}",
        )


def _check_receipt_names(lease: Lease, *receipts: Signed[Receipt]) -> None:
    # As for vouchers: a receipt of another lease could only fail on-chain; say so before gas.
    for signed in receipts:
        if signed.message.lease_id != lease.id:
            raise InvalidField(
                "Receipt",
                "lease_id",
                f"names 0x{signed.message.lease_id.hex()}, not 0x{lease.id.hex()}",
            )


__all__ = [
    "BatchClaimResult",
    "BatchMatch",
    "BatchResult",
    "Head",
    "LabFunds",
    "MarketClient",
    "PendingClaim",
    "Permit",
    "ProviderInfo",
    "batch_arguments",
    "bid_tuple",
    "offer_tuple",
    "receipt_tuple",
]
