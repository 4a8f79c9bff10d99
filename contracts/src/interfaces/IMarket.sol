// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IProviderRegistry} from "./IProviderRegistry.sol";

/// @title IMarket
/// @notice Permissionless leases of GPU capacity. Providers sign offers and labs sign bids (EIP-712,
/// domain "gpumarket" version "1", bound to chain id and this contract); anyone may open a lease from
/// a crossing pair. The lab's payment is held in escrow and released to the provider by the lab's
/// signed cumulative vouchers; what is not paid goes back to the lab when the lease closes.
///
/// Payments are pulled, never pushed: a claim, a termination or a close only credits the provider,
/// the treasury and the lab inside the market, and each account takes its credit out with
/// `withdraw`, the one call that sends tokens out. An account the token refuses to pay (a
/// blacklisted or reverting recipient) cannot stop anyone else's claim or close.
///
/// A lease is stored as one slot of mutable state keyed by `leaseId = keccak256(abi.encode(lease))`;
/// its terms travel in calldata and are re-hashed, so every call that touches a lease passes them.
///
/// The provider signs a hash-chained `Receipt` per metering period (market.receipts). Receipts
/// prove two kinds of cheating on their own, and anyone may submit the proof: two different
/// receipts for the same period (`slashEquivocation`) and usage no lease could have produced
/// (`slashImpossibleUsage`). A proof slashes the provider's stake to the lab and settles the lease.
/// When a lab stops signing vouchers, its provider posts its latest receipt (`postReceipt`) and is
/// paid for it after a challenge window (`finalizeClaim`) unless the lab disputes it first
/// (`disputeClaim`). See docs/decisions/0006-slashing.md.
interface IMarket {
    /// @notice How a lease bills. A rental (the default) pays for the GPU time reserved to the lab
    /// until the lease ends or the lab terminates; its receipts attest that the GPUs were held and
    /// reachable. Metered pays for busy GPU time only. Either way a receipt's usage is at most
    /// gpus x elapsed time, which `slashImpossibleUsage` enforces (docs/decisions/0011-signed-terms.md).
    enum Billing {
        Rental,
        Metered
    }

    /// @notice A provider's signed offer of up to `gpuCount` GPUs; may be filled in parts.
    /// Everything a bid may require of it is here, signed: memory and interconnect bandwidth per
    /// GPU as numbers, the other attributes as bits of `features` (the vocabulary is
    /// market.matching.features: 16 lanes of 16 bits, one lane per attribute such as interconnect
    /// or region, one bit per value).
    struct Offer {
        address provider;
        bytes32 gpuModel; // ASCII model name, left-aligned and zero-padded (e.g. "H100-80GB")
        uint32 gpuCount;
        uint32 memoryGiB; // memory per GPU
        uint32 bandwidthGbps; // interconnect bandwidth per GPU
        uint256 features; // attribute bits
        uint8 billingModes; // bit set of the Billing modes it accepts (bit i = Billing(i))
        uint256 pricePerGpuSecond; // in the settlement token's smallest unit
        uint64 minDuration; // seconds
        uint64 maxDuration; // seconds
        uint64 expiry; // unix seconds; valid while block.timestamp <= expiry
        uint256 nonce; // cancelled once below the provider's nonce floor
        address receiptSigner; // the ECDSA key that signs its leases' receipts; zero: the provider's own
    }

    /// @notice A lab's signed bid for `gpuCount` GPUs for `duration` seconds; may be filled by
    /// several offers (all in one transaction when `allOrNone`). Its requirements hold against
    /// every offer that fills it: `offer.memoryGiB >= minMemoryGiB`, `offer.bandwidthGbps >=
    /// minBandwidthGbps`, every bit of `requiredFeatures` in `offer.features`, and for each 16-bit
    /// lane of `acceptedFeatures` that is not zero, at least one of its bits in `offer.features`.
    struct Bid {
        address lab;
        bytes32 gpuModel;
        uint32 gpuCount;
        uint32 minMemoryGiB;
        uint32 minBandwidthGbps;
        uint256 requiredFeatures; // bits the offer must all have (flags such as ECC)
        uint256 acceptedFeatures; // per lane: the values the lab accepts (a zero lane: any)
        Billing billing;
        bool allOrNone; // every GPU in one transaction (a cluster across providers) or none
        uint256 maxPricePerGpuSecond;
        uint64 duration;
        uint64 expiry;
        uint256 nonce;
        bytes32 jobSpecHash;
        address voucherSigner; // the ECDSA key that signs its leases' vouchers; zero: the lab's own
    }

    /// @notice The terms of a lease, fixed when it opens. Escrow = pricePerGpuSecond * gpus * duration.
    /// Receipts are signed by `receiptSigner` (the provider when zero) and vouchers by
    /// `voucherSigner` (the lab when zero): plain ECDSA keys fixed here, so that evidence checked
    /// later cannot be revoked by a contract wallet.
    struct Lease {
        address provider;
        address lab;
        uint32 gpus;
        uint256 pricePerGpuSecond; // the offer's price, or a batch auction's clearing price
        uint64 start;
        uint64 duration;
        bytes32 salt; // keccak256(abi.encode(offerHash, bidHash, bidFilledBefore)): unique per fill
        Billing billing;
        address receiptSigner;
        address voucherSigner;
    }

    /// @notice An offer with its signature, as batches take them.
    struct SignedOffer {
        Offer offer;
        bytes signature;
    }

    /// @notice A bid with its signature, as batches take them.
    struct SignedBid {
        Bid bid;
        bytes signature;
    }

    /// @notice One lease of a batch: `gpus` GPUs from `offers[offer]` to `bids[bid]`.
    struct Match {
        uint32 offer;
        uint32 bid;
        uint32 gpus;
    }

    /// @notice The lab's signed acceptance of `cumulativeAmount` owed for a lease so far, naming the
    /// provider receipt the payment accepts (`receiptHash`, zero when receipts are not used).
    struct Voucher {
        bytes32 leaseId;
        uint256 cumulativeAmount;
        bytes32 receiptHash;
    }

    /// @notice A provider's signed account of one metering period of a lease, linked to the one
    /// before by `prevHash` (the previous receipt's EIP-712 digest, zero for `seq` 0).
    /// `gpuSecondsCumulative` is the usage since the lease started; `outputRoot` a Merkle root of
    /// the period's output chunks (OpenZeppelin MerkleProof leaves).
    struct Receipt {
        bytes32 leaseId;
        uint64 seq;
        bytes32 prevHash;
        uint64 periodStart; // unix seconds
        uint64 periodEnd; // unix seconds
        uint64 gpuSecondsCumulative;
        bytes32 outputRoot;
        bytes32 metricsHash;
        bytes32 attestationHash; // zero when there is no attestation
    }

    /// @notice A receipt as the proofs of cheating take it: every field after `leaseId` and `seq`,
    /// in `Receipt`'s order. The lease's id is implied by the lease, and `seq` is passed once.
    struct ReceiptBody {
        bytes32 prevHash;
        uint64 periodStart;
        uint64 periodEnd;
        uint64 gpuSecondsCumulative;
        bytes32 outputRoot;
        bytes32 metricsHash;
        bytes32 attestationHash;
    }

    enum LeaseStatus {
        None,
        Active,
        Terminated,
        Closed
    }

    /// @notice The mutable part of a lease: one storage slot.
    struct LeaseState {
        uint128 paid; // credited to the provider so far (fees included)
        uint64 end; // start + duration, or the time the lab terminated
        LeaseStatus status;
        bool slashed; // a proof of cheating slashed the provider for this lease (it is Closed too)
    }

    /// @notice The provider's claim from its last posted receipt. Finalizing or disputing it
    /// clears `amount` and `readyAt`; `seq` and `receiptHash` stay, so no receipt up to that seq can
    /// be posted again.
    struct PendingClaim {
        uint128 amount; // cumulative: min(price * gpuSecondsCumulative, escrow)
        uint64 seq; // the last posted receipt's seq
        uint64 readyAt; // when it may be finalized; zero when no claim is pending
        bytes32 receiptHash; // the last posted receipt's EIP-712 digest; zero before the first
    }

    /// @notice Fill and cancellation of one signed order.
    struct OrderState {
        uint128 filled; // GPUs filled so far
        bool cancelled;
    }

    /// @notice An EIP-2612 permit from the lab for the escrow.
    struct Permit {
        uint256 value;
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @notice One voucher redemption in a batch.
    struct ClaimItem {
        Lease lease;
        uint256 cumulativeAmount;
        bytes32 receiptHash;
        bytes signature;
    }

    /// @notice A fill of zero GPUs was requested.
    error MarketZeroFill();
    /// @notice The order's expiry has passed.
    error MarketOrderExpired(bytes32 orderHash, uint64 expiry);
    /// @notice The offer and bid name different GPU models.
    error MarketGpuModelMismatch(bytes32 offerModel, bytes32 bidModel);
    /// @notice The bid's duration is outside the offer's range.
    error MarketDurationOutOfRange(uint64 duration, uint64 minDuration, uint64 maxDuration);
    /// @notice The offer asks more than the bid's maximum price.
    error MarketPriceNotCrossed(uint256 offerPrice, uint256 maxBidPrice);
    /// @notice The signature does not belong to the order's signer (or is malleable or malformed).
    error MarketInvalidSignature(bytes32 digest, address signer);
    /// @notice The order was cancelled by hash.
    error MarketOrderCancelled(bytes32 orderHash);
    /// @notice The order's nonce is below its signer's nonce floor.
    error MarketOrderNonceCancelled(bytes32 orderHash, uint256 nonce, uint256 minNonce);
    /// @notice The fill is larger than what remains of the order.
    error MarketFillExceedsOrder(bytes32 orderHash, uint256 requested, uint256 remaining);
    /// @notice The provider is not registered.
    error MarketProviderNotRegistered(address provider);
    /// @notice The provider's free stake is below the minimum.
    error MarketProviderStakeTooLow(address provider, uint256 freeStake, uint256 minStake);
    /// @notice The lease would end after the last timestamp a uint64 can hold.
    error MarketLeaseTooLong(uint64 duration);
    /// @notice Price x GPUs x duration does not fit the escrow accounting (uint128).
    error MarketEscrowOverflow(uint256 pricePerGpuSecond, uint256 gpus, uint256 duration);
    /// @notice No lease has these terms.
    error MarketUnknownLease(bytes32 leaseId);
    /// @notice The lease is not in a status that allows this call.
    error MarketLeaseNotOpen(bytes32 leaseId, LeaseStatus status);
    /// @notice The voucher pays nothing beyond what was already paid.
    error MarketNothingToClaim(bytes32 leaseId, uint256 cumulativeAmount, uint256 paid);
    /// @notice Only the lease's lab may call this.
    error MarketNotLab(bytes32 leaseId, address caller);
    /// @notice The lease has already ended.
    error MarketLeaseEnded(bytes32 leaseId, uint64 end);
    /// @notice Only the provider may close before the claim window after the end has passed.
    error MarketClaimWindowOpen(bytes32 leaseId, uint256 closesAt);
    /// @notice A new nonce floor must be above the current one.
    error MarketNonceFloorNotRaised(uint256 current, uint256 requested);
    /// @notice The protocol fee exceeds the cap.
    error MarketFeeTooHigh(uint256 feeBps, uint256 maxFeeBps);
    /// @notice A fee was set without a treasury to receive it.
    error MarketZeroTreasury();
    /// @notice The account has no credit to withdraw.
    error MarketNothingToWithdraw(address account);
    /// @notice Only the lease's provider may call this.
    error MarketNotProvider(bytes32 leaseId, address caller);
    /// @notice The receipt names another lease (`receiptLeaseId`) than the one given.
    error MarketReceiptWrongLease(bytes32 leaseId, bytes32 receiptLeaseId);
    /// @notice The two receipts do not equivocate: they are the same receipt (EIP-712 digest `digest`).
    error MarketReceiptsNotConflicting(bytes32 digest);
    /// @notice No proof: the receipt's period is past and in the lease, its usage <= `maxGpuSeconds`.
    error MarketUsagePossible(bytes32 leaseId, uint64 gpuSecondsCumulative, uint256 maxGpuSeconds);
    /// @notice The receipt claims more GPU-seconds than the lease allowed by its period's end.
    error MarketUsageImpossible(bytes32 leaseId, uint64 gpuSecondsCumulative, uint256 maxGpuSeconds);
    /// @notice The receipt's period starts before the lease or ends after `timestamp` (now).
    error MarketReceiptPeriodInvalid(bytes32 leaseId, uint64 periodStart, uint64 periodEnd, uint256 timestamp);
    /// @notice A posted receipt's seq must be above `lastSeq`, the last one posted for the lease.
    error MarketReceiptNotNewer(bytes32 leaseId, uint64 seq, uint64 lastSeq);
    /// @notice The lease has no pending claim.
    error MarketNoPendingClaim(bytes32 leaseId);
    /// @notice The pending claim cannot be finalized before `readyAt`.
    error MarketChallengeWindowOpen(bytes32 leaseId, uint64 readyAt);
    /// @notice The pending claim could only be disputed before `readyAt`.
    error MarketChallengeWindowClosed(bytes32 leaseId, uint64 readyAt);
    /// @notice A claim is pending: only the provider may close until it is finalized or disputed.
    error MarketClaimPending(bytes32 leaseId, uint64 readyAt);
    /// @notice The provider was already slashed for this lease.
    error MarketLeaseAlreadySlashed(bytes32 leaseId);
    /// @notice `account`'s credit would reach 2^128 (only a token with such a supply gets there).
    error MarketCreditOverflow(address account, uint256 amount);

    /// @notice The offer's memory per GPU is below the bid's minimum.
    error MarketMemoryTooLow(uint32 memoryGiB, uint32 minMemoryGiB);
    /// @notice The offer's interconnect bandwidth per GPU is below the bid's minimum.
    error MarketBandwidthTooLow(uint32 bandwidthGbps, uint32 minBandwidthGbps);
    /// @notice The offer lacks feature bits the bid requires (`missing`: those bits).
    error MarketFeaturesMissing(uint256 missing);
    /// @notice In attribute lane `lane` the offer has none of the values the bid accepts (`offered`
    /// and `accepted` are that lane's 16 bits).
    error MarketFeatureNotAccepted(uint256 lane, uint256 offered, uint256 accepted);
    /// @notice The bid's billing mode is not one the offer accepts (`billingModes`: its bit set).
    error MarketBillingNotOffered(Billing billing, uint8 billingModes);
    /// @notice An all-or-none bid would end the transaction with `filled` of its `gpuCount` GPUs.
    error MarketClusterIncomplete(bytes32 bidHash, uint256 filled, uint256 gpuCount);
    /// @notice A batch's clearing price is below an offer's ask.
    error MarketClearingPriceBelowAsk(bytes32 offerHash, uint256 pricePerGpuSecond, uint256 clearingPrice);
    /// @notice A batch's clearing price is above a bid's maximum.
    error MarketClearingPriceAboveBid(bytes32 bidHash, uint256 maxPricePerGpuSecond, uint256 clearingPrice);
    /// @notice Match `index` of a batch names an offer or bid the batch does not carry.
    error MarketMatchOutOfRange(uint256 index);
    /// @notice A batch with no match.
    error MarketEmptyBatch();
    /// @notice A contract signer (ERC-1271) must name the ECDSA key that signs its receipts or
    /// vouchers (`receiptSigner` or `voucherSigner`), which its own signature cannot be.
    error MarketSignerKeyRequired(address signer);

    /// @notice A lease opened and its escrow, `lease.pricePerGpuSecond * lease.gpus *
    /// lease.duration`, was pulled from the lab (in a batch, with the batch's other escrows).
    event LeaseOpened(
        bytes32 indexed leaseId, address indexed provider, address indexed lab, bytes32 offerHash, bytes32 bidHash, Lease lease
    );
    /// @notice A voucher was redeemed: `amount` was credited (the fee to the treasury, the rest to the
    /// provider), `cumulativePaid` in total.
    event Claimed(bytes32 indexed leaseId, uint256 amount, uint256 cumulativePaid, bytes32 receiptHash);
    /// @notice A batch item was skipped; `reason` is the selector of the error it would have raised.
    event ClaimSkipped(bytes32 indexed leaseId, bytes4 reason);
    /// @notice A `closeLeaseBatch` item was skipped; `reason` is the selector of its error.
    event CloseSkipped(bytes32 indexed leaseId, bytes4 reason);
    /// @notice A `finalizeClaimBatch` item was skipped; `reason` is the selector of its error.
    event FinalizeSkipped(bytes32 indexed leaseId, bytes4 reason);
    /// @notice A batch auction opened `leases` leases of `gpus` GPUs in all, each at `clearingPrice`.
    event AuctionCleared(uint256 clearingPrice, uint256 leases, uint256 gpus);
    /// @notice A protocol fee was credited to the treasury.
    event FeePaid(address indexed treasury, uint256 amount);
    /// @notice The lab ended the lease early at `end`, having paid `paid` in total.
    event LeaseTerminated(bytes32 indexed leaseId, uint64 end, uint256 paid);
    /// @notice The lease closed: `refund` was credited back to the lab; `paid` is what the provider
    /// was paid in total.
    event LeaseClosed(bytes32 indexed leaseId, uint256 paid, uint256 refund);
    /// @notice `account` withdrew its whole credit, `amount`, to itself.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice A proof of cheating slashed `penalty` of `provider`'s stake to the lease's lab, and
    /// the lease closed, crediting the lab `refund` (zero when it had closed before). The one record
    /// of a slash: the registry emits no event of its own.
    event LeaseSlashed(bytes32 indexed leaseId, address indexed provider, uint256 penalty, uint256 refund);
    /// @notice The provider posted a receipt (and its signature) as a claim of `amount` in total,
    /// which may be finalized from `readyAt` unless the lab disputes it.
    event ReceiptPosted(
        bytes32 indexed leaseId, bytes32 receiptHash, uint256 amount, uint64 readyAt, Receipt receipt, bytes signature
    );
    /// @notice The lab disputed the pending claim from receipt `seq`; it will not be paid.
    event ClaimDisputed(bytes32 indexed leaseId, uint64 seq, bytes32 receiptHash);
    /// @notice The pending claim from receipt `seq` was finalized, crediting `amount` (zero when
    /// vouchers had already paid as much).
    event ClaimFinalized(bytes32 indexed leaseId, uint64 seq, bytes32 receiptHash, uint256 amount);
    /// @notice `signer` cancelled one order.
    event OrderCancelled(address indexed signer, bytes32 indexed orderHash);
    /// @notice `signer` cancelled every order with a nonce below `minNonce`.
    event NonceFloorRaised(address indexed signer, uint256 minNonce);

    /// @notice Open a lease of `gpus` GPUs from a crossing offer and bid; callable by anyone.
    /// Pulls `offer.pricePerGpuSecond * gpus * bid.duration` from the lab (approve the market first).
    function openLease(Offer calldata offer, bytes calldata offerSig, Bid calldata bid, bytes calldata bidSig, uint32 gpus)
        external
        returns (bytes32 leaseId);

    /// @notice Like `openLease`, first applying the lab's EIP-2612 permit. A permit that fails (for
    /// example because someone front-ran it) is ignored; the allowance then decides.
    function openLeaseWithPermit(
        Offer calldata offer,
        bytes calldata offerSig,
        Bid calldata bid,
        bytes calldata bidSig,
        uint32 gpus,
        Permit calldata permit
    ) external returns (bytes32 leaseId);

    /// @notice Open many leases in one transaction, each at its offer's price; callable by anyone.
    /// Each order is verified once however many matches use it; every match is checked as
    /// `openLease` checks a pair. The escrow is pulled once per run of consecutive bids from one
    /// lab. All or nothing: any failing match reverts the batch (with its error), and an
    /// all-or-none bid must end the batch filled whole (`MarketClusterIncomplete`).
    function openLeaseBatch(SignedOffer[] calldata offers, SignedBid[] calldata bids, Match[] calldata matches)
        external
        returns (bytes32[] memory leaseIds);

    /// @notice A uniform-price batch auction: like `openLeaseBatch`, but every lease pays
    /// `clearingPrice`, which must be at least every matched offer's ask
    /// (`MarketClearingPriceBelowAsk`) and at most every matched bid's maximum
    /// (`MarketClearingPriceAboveBid`). Emits `AuctionCleared`.
    function openLeaseAuction(
        SignedOffer[] calldata offers,
        SignedBid[] calldata bids,
        Match[] calldata matches,
        uint256 clearingPrice
    ) external returns (bytes32[] memory leaseIds);

    /// @notice Cancel one of the caller's orders by its EIP-712 hash.
    function cancelOrder(bytes32 orderHash) external;

    /// @notice Cancel every order of the caller with a nonce below `minNonce`.
    function cancelOrdersUpTo(uint256 minNonce) external;

    /// @notice Credit the provider with what the lab's voucher adds to what was paid (the fee, if
    /// any, to the treasury); callable by anyone. Payment never exceeds the escrow.
    function claim(Lease calldata lease, uint256 cumulativeAmount, bytes32 receiptHash, bytes calldata labSig)
        external
        returns (uint256 amount);

    /// @notice Redeem many vouchers in one transaction, crediting each lease's provider. An item that
    /// cannot be paid is skipped with `ClaimSkipped` and does not block the others. Vouchers are
    /// ECDSA signatures (65 or 64 bytes) of the lease's voucher signer, a key fixed when it opened.
    function claimBatch(ClaimItem[] calldata items) external returns (uint256 total);

    /// @notice The lab ends the lease now and credits the provider up to `cumulativeAmount` for work
    /// to date. The rest is refunded at close.
    function terminate(Lease calldata lease, uint256 cumulativeAmount) external;

    /// @notice Close a lease: credit the unpaid escrow back to the lab. The provider may close at
    /// any time; anyone else once the claim window after the end has passed.
    function closeLease(Lease calldata lease) external returns (uint256 refund);

    /// @notice `closeLease` for many leases in one transaction, with the same rules per lease. An
    /// item that cannot close is skipped with `CloseSkipped` and does not block the others.
    /// @return refunded The refunds credited in all.
    function closeLeaseBatch(Lease[] calldata leases) external returns (uint256 refunded);

    /// @notice `finalizeClaim` for many leases in one transaction. An item that cannot be
    /// finalized is skipped with `FinalizeSkipped` and does not block the others.
    /// @return total What was credited in all.
    function finalizeClaimBatch(Lease[] calldata leases) external returns (uint256 total);

    /// @notice Send the caller its whole credit (payments, refunds or fees credited to it).
    function withdraw() external returns (uint256 amount);

    /// @notice Prove that `lease.provider` equivocated, and slash it; callable by anyone, the lab
    /// gets the stake whoever calls. `a` and `b` are the bodies of two receipts of this lease with
    /// the same `seq` (their `leaseId` is `leaseId(lease)`, implied), which must differ (different
    /// EIP-712 digests) and both be signed by the lease's receipt signer (the provider when
    /// `lease.receiptSigner` is zero): ECDSA, 65 bytes or 64 in EIP-2098 compact form.
    /// The lease may be Active, Terminated or Closed (a provider closing first does not escape),
    /// but not already slashed. Slashes `min(stake, slashPenalty())` of the provider's stake to the
    /// lab's credit and, unless the lease had closed, closes it with the unpaid escrow credited
    /// back to the lab; nothing more can be claimed, posted or closed on it.
    /// @return penalty The stake slashed to the lab.
    function slashEquivocation(
        Lease calldata lease,
        uint64 seq,
        ReceiptBody calldata a,
        bytes calldata sigA,
        ReceiptBody calldata b,
        bytes calldata sigB
    ) external returns (uint256 penalty);

    /// @notice Prove that `lease.provider` signed usage no lease could produce, and slash it like
    /// `slashEquivocation` does. The receipt of this lease with this `seq` and body `r` must be
    /// signed by the lease's receipt signer, and one of these must hold:
    /// - `r.periodEnd > block.timestamp`: the period has not ended yet;
    /// - `r.periodStart < lease.start`: the period starts before the lease;
    /// - `r.gpuSecondsCumulative > lease.gpus * (min(r.periodEnd, lease.start + lease.duration) - lease.start)`
    ///   (the elapsed time taken as zero when `r.periodEnd < lease.start`): more GPU-seconds than
    ///   the lease's GPUs could have run by the period's end. This is market.receipts.verify's
    ///   `ReceiptUsageImpossible` bound; the end is the scheduled one, so a termination racing a
    ///   receipt cannot make an honest receipt slashable.
    /// Providers therefore take `periodEnd` from a block already mined, never from a clock ahead of
    /// the chain's.
    /// @return penalty The stake slashed to the lab.
    function slashImpossibleUsage(Lease calldata lease, uint64 seq, ReceiptBody calldata r, bytes calldata sig)
        external
        returns (uint256 penalty);

    /// @notice The provider claims payment from its receipt `r` when the lab signs no voucher.
    /// The lease must be Active or Terminated, `r` must name it, be signed by the lease's receipt signer, have a
    /// seq above any receipt posted before for this lease, a period within the lease and the past
    /// (`r.periodStart >= lease.start`, `r.periodEnd <= block.timestamp`) and usage of at most
    /// `lease.gpus * (min(r.periodEnd, end) - lease.start)`, `end` being the lease's current end
    /// (earlier when terminated). Records a pending claim of `min(price * usage, escrow)` in total,
    /// ready `challengeWindow()` seconds from now; it replaces (and restarts) a pending one.
    /// Reverts with `MarketNothingToClaim` when that total is not above what was paid.
    function postReceipt(Lease calldata lease, Receipt calldata r, bytes calldata sig) external;

    /// @notice Finalize the lease's pending claim once its challenge window has passed; callable by
    /// anyone. Credits the provider (the fee, if any, to the treasury) what the claim adds to what
    /// vouchers have paid, like a voucher for the same amount would, and clears the claim.
    /// @return amount What was credited (zero when vouchers had already paid as much).
    function finalizeClaim(Lease calldata lease) external returns (uint256 amount);

    /// @notice The lab refuses the lease's pending claim within its challenge window; the claim is
    /// dropped and its receipt cannot be posted again. The dispute is public (`ClaimDisputed`).
    function disputeClaim(Lease calldata lease) external;

    /// @notice What `account` may withdraw now.
    function withdrawable(address account) external view returns (uint256);

    /// @notice The EIP-712 digest of an offer (its order hash).
    function hashOffer(Offer calldata offer) external view returns (bytes32);

    /// @notice The EIP-712 digest of a bid (its order hash).
    function hashBid(Bid calldata bid) external view returns (bytes32);

    /// @notice The EIP-712 digest of a voucher.
    function hashVoucher(Voucher calldata voucher) external view returns (bytes32);

    /// @notice The EIP-712 digest of a receipt (its receipt hash): the next receipt's `prevHash` and
    /// the `receiptHash` of the voucher that pays for it.
    function hashReceipt(Receipt calldata receipt) external view returns (bytes32);

    /// @notice The id of a lease with these terms.
    function leaseId(Lease calldata lease) external pure returns (bytes32);

    /// @notice The mutable state of a lease.
    function leaseState(bytes32 leaseId_) external view returns (LeaseState memory);

    /// @notice The lease's claim from a posted receipt (`readyAt` zero when none is pending).
    function pendingClaim(bytes32 leaseId_) external view returns (PendingClaim memory);

    /// @notice Fill and cancellation of `signer`'s order `orderHash`.
    function orderState(address signer, bytes32 orderHash) external view returns (OrderState memory);

    /// @notice The nonce floor of `signer`: orders with a lower nonce are cancelled.
    function minNonce(address signer) external view returns (uint256);

    /// @notice The provider registry this market checks and slashes through.
    function registry() external view returns (IProviderRegistry);

    /// @notice The settlement token.
    function token() external view returns (address);

    /// @notice Seconds after a lease's end during which only the provider may close it.
    function claimWindow() external view returns (uint64);

    /// @notice Seconds a posted receipt's claim waits for the lab's dispute before it can be paid.
    function challengeWindow() external view returns (uint40);

    /// @notice The stake a proof of cheating slashes from the provider to the lab (at most its stake).
    function slashPenalty() external view returns (uint256);

    /// @notice Protocol fee on payments, in basis points.
    function feeBps() external view returns (uint16);

    /// @notice Where protocol fees go.
    function treasury() external view returns (address);

    /// @notice The EIP-712 domain separator.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32);
}
