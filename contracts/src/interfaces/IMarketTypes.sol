// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title IMarketTypes
/// @notice The market's types, errors and events, shared by `IMarket`'s two halves (`IMarketCore`
/// and `IMarketExtension`).
interface IMarketTypes {
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
        address arbiter; // who may rule on its leases' disputed claims; zero: none (unresolved pays it)
        uint16 minChargeBps; // part of each fill's escrow paid to it whatever the use (griefing cost)
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
        address arbiter; // must equal the offer's arbiter
        uint16 maxMinChargeBps; // the highest offer minChargeBps it accepts
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
        address arbiter; // the arbiter both orders named (zero: none)
        uint256 minCharge; // escrow * offer.minChargeBps / 10_000: paid to the provider at close whatever the use
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
        bool disputed; // the lab disputed the pending claim, which awaits a ruling or its deadline
        bool stakeReleased; // the provider's stake lock for this lease was released (no proof can slash it)
    }

    /// @notice The provider's claim from its last posted receipt. Settling it (finalized, ruled
    /// on) clears `readyAt`; `amount`, `seq` and `receiptHash` stay, so a later receipt must raise
    /// the amount and have a higher seq. A dispute adds the lab's bond and the ruling deadline.
    struct PendingClaim {
        uint128 amount; // cumulative: min(price * gpuSecondsCumulative, escrow); the highest posted
        uint64 seq; // the last posted receipt's seq
        uint64 readyAt; // when it may be finalized if not disputed; zero when no claim is pending
        bytes32 receiptHash; // the last posted receipt's EIP-712 digest; zero before the first
        uint128 bond; // the lab's dispute bond, while a dispute is open
        uint64 rulingDeadline; // the arbiter rules before it; from then the claim and bond pay the provider
    }

    /// @notice Deployment parameters; none can change afterwards.
    struct Params {
        address token; // settlement and staking token (any ERC-20)
        uint256 minStake; // stake a provider needs for leases to open against it
        uint40 unbondingDelay; // seconds between unstake request and withdrawal; slashed stake vests as long
        uint64 claimWindow; // seconds after a lease's end: only the provider may close; proofs still slash
        uint40 challengeWindow; // seconds a posted receipt's claim waits for a dispute
        uint40 rulingWindow; // seconds the arbiter has to rule on a dispute
        uint32 stakeRatioBps; // stake locked per lease: escrow * stakeRatioBps / 10_000, the slash penalty
        uint16 disputeBondBps; // a dispute's bond: the disputed amount * disputeBondBps / 10_000
        uint16 feeBps; // protocol fee on payments (0 for none, at most MAX_FEE_BPS)
        address treasury; // receiver of protocol fees (may be zero when the fee is zero)
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
    /// @notice The provider's bonded stake is below the minimum.
    error MarketProviderStakeTooLow(address provider, uint256 stake, uint256 minStake);
    /// @notice The provider's free stake (bonded, not locked by open leases) cannot cover the lock
    /// the new lease needs.
    error MarketStakeLockUncovered(address provider, uint256 freeStake, uint256 lock);
    /// @notice A lease's lab may not be its provider.
    error MarketSelfDealing(address account);
    /// @notice The offer and bid name different arbiters.
    error MarketArbiterMismatch(address offerArbiter, address bidArbiter);
    /// @notice The offer's minimum charge is above what the bid accepts.
    error MarketMinChargeTooHigh(uint16 minChargeBps, uint16 maxMinChargeBps);
    /// @notice A posted receipt must claim more than the highest amount posted (or paid) before.
    error MarketClaimNotRaised(bytes32 leaseId, uint256 amount, uint256 highest);
    /// @notice The pending claim is disputed: it awaits a ruling or its deadline.
    error MarketClaimDisputed(bytes32 leaseId, uint64 rulingDeadline);
    /// @notice The lease's pending claim is not disputed.
    error MarketNotDisputed(bytes32 leaseId);
    /// @notice Only the lease's arbiter may rule (a lease without one has no rulings).
    error MarketNotArbiter(bytes32 leaseId, address caller);
    /// @notice The ruling deadline has passed; the claim pays the provider.
    error MarketRulingTooLate(bytes32 leaseId, uint64 rulingDeadline);
    /// @notice The lease's stake lock was released: its proof window is over.
    error MarketStakeReleased(bytes32 leaseId);
    /// @notice Only a closed lease's stake lock can be released on its own.
    error MarketLeaseNotClosed(bytes32 leaseId, LeaseStatus status);
    /// @notice The lease's stake lock stays until `releasableAt` (its end plus the claim window).
    error MarketStakeHeld(bytes32 leaseId, uint256 releasableAt);
    /// @notice A deployment parameter is out of range.
    error MarketBadParams();
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

    /// @notice A lease opened from the orders `offerHash` and `bidHash`, and its escrow,
    /// `lease.pricePerGpuSecond * lease.gpus * lease.duration`, was pulled from the lab (in a
    /// batch, with the batch's other escrows). The order hashes are its topics (a signer finds
    /// the fills of its orders by filter); the provider and the lab are in `lease`.
    event LeaseOpened(bytes32 indexed leaseId, bytes32 indexed offerHash, bytes32 indexed bidHash, Lease lease);
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
    /// @notice `account` withdrew `amount` to itself: its whole credit, and its slashed stake if vested.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice A proof of cheating slashed `penalty`, the lease's stake lock, from `provider` to the
    /// lease's lab (withdrawable from `vestsAt`), and the lease closed, crediting the lab `refund`:
    /// the unpaid escrow, or what a close held back for a dispute, and an open dispute's bond.
    event LeaseSlashed(
        bytes32 indexed leaseId, address indexed provider, uint256 penalty, uint256 refund, uint40 vestsAt
    );
    /// @notice The lease's stake lock, `amount`, went back to its provider's free stake.
    event StakeReleased(bytes32 indexed leaseId, address indexed provider, uint256 amount);
    /// @notice The provider posted a receipt (and its signature) as a claim of `amount` in total,
    /// which may be finalized from `readyAt` unless the lab disputes it.
    event ReceiptPosted(
        bytes32 indexed leaseId, bytes32 receiptHash, uint256 amount, uint64 readyAt, Receipt receipt, bytes signature
    );
    /// @notice The lab disputed the pending claim from receipt `seq`, posting `bond`. The lease's
    /// arbiter may rule before `rulingDeadline`; from then the claim and the bond pay the provider.
    event ClaimDisputed(
        bytes32 indexed leaseId, address indexed lab, uint64 seq, bytes32 receiptHash, uint256 bond, uint64 rulingDeadline
    );
    /// @notice The arbiter ruled on a disputed claim. For the provider: the claim and the bond paid
    /// it. For the lab: the claim is void and the bond (and any escrow a close held back) went back.
    event DisputeRuled(bytes32 indexed leaseId, address indexed arbiter, bool forProvider, uint256 amount, uint256 bond);
    /// @notice The pending claim from receipt `seq` was finalized, crediting `amount` (zero when
    /// vouchers had already paid as much) and `bond`, a dispute's bond left without a ruling.
    event ClaimFinalized(bytes32 indexed leaseId, uint64 seq, bytes32 receiptHash, uint256 amount, uint256 bond);
    /// @notice `signer` cancelled one order.
    event OrderCancelled(address indexed signer, bytes32 indexed orderHash);
    /// @notice `signer` cancelled every order with a nonce below `minNonce` (every order when it
    /// is 2^256 - 1).
    event NonceFloorRaised(address indexed signer, uint256 minNonce);

}
