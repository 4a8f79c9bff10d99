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
interface IMarket {
    /// @notice A provider's signed offer of up to `gpuCount` GPUs; may be filled in parts.
    struct Offer {
        address provider;
        bytes32 gpuModel; // ASCII model name, left-aligned and zero-padded (e.g. "H100-80GB")
        uint32 gpuCount;
        uint32 memoryGiB; // memory per GPU
        uint256 pricePerGpuSecond; // in the settlement token's smallest unit
        uint64 minDuration; // seconds
        uint64 maxDuration; // seconds
        uint64 expiry; // unix seconds; valid while block.timestamp <= expiry
        uint256 nonce; // cancelled once below the provider's nonce floor
        bytes32 attributesHash;
    }

    /// @notice A lab's signed bid for `gpuCount` GPUs for `duration` seconds; may be filled by several offers.
    struct Bid {
        address lab;
        bytes32 gpuModel;
        uint32 gpuCount;
        uint256 maxPricePerGpuSecond;
        uint64 duration;
        uint64 expiry;
        uint256 nonce;
        bytes32 jobSpecHash;
    }

    /// @notice The terms of a lease, fixed when it opens. Escrow = pricePerGpuSecond * gpus * duration.
    struct Lease {
        address provider;
        address lab;
        uint32 gpus;
        uint256 pricePerGpuSecond; // the offer's price
        uint64 start;
        uint64 duration;
        bytes32 salt; // keccak256(abi.encode(offerHash, bidHash, bidFilledBefore)): unique per fill
    }

    /// @notice The lab's signed acceptance of `cumulativeAmount` owed for a lease so far, naming the
    /// provider receipt the payment accepts (`receiptHash`, zero when receipts are not used).
    struct Voucher {
        bytes32 leaseId;
        uint256 cumulativeAmount;
        bytes32 receiptHash;
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
    /// @notice A batch left an ERC-1271 signer's check less than `gasLimit` gas: send more gas.
    error MarketSignatureCheckOutOfGas(address signer, uint256 gasLimit);
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

    /// @notice A lease opened and its escrow was pulled from the lab.
    event LeaseOpened(
        bytes32 indexed leaseId,
        address indexed provider,
        address indexed lab,
        bytes32 offerHash,
        bytes32 bidHash,
        Lease lease,
        uint256 escrow
    );
    /// @notice A voucher was redeemed: `amount` was credited (the fee to the treasury, the rest to the
    /// provider), `cumulativePaid` in total.
    event Claimed(bytes32 indexed leaseId, uint256 amount, uint256 cumulativePaid, bytes32 receiptHash);
    /// @notice A batch item was skipped; `reason` is the selector of the error it would have raised.
    event ClaimSkipped(bytes32 indexed leaseId, bytes4 reason);
    /// @notice A protocol fee was credited to the treasury.
    event FeePaid(address indexed treasury, uint256 amount);
    /// @notice The lab ended the lease early at `end`, having paid `paid` in total.
    event LeaseTerminated(bytes32 indexed leaseId, uint64 end, uint256 paid);
    /// @notice The lease closed: `refund` was credited back to the lab; `paid` is what the provider
    /// was paid in total.
    event LeaseClosed(bytes32 indexed leaseId, uint256 paid, uint256 refund);
    /// @notice `account` withdrew its whole credit, `amount`, to itself.
    event Withdrawn(address indexed account, uint256 amount);
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
    /// cannot be paid is skipped with `ClaimSkipped` and does not block the others. A lab
    /// contract's ERC-1271 check gets at most a fixed gas allowance per item
    /// (`Market.BATCH_ERC1271_GAS`); one that needs more is skipped as `MarketInvalidSignature` and
    /// can be redeemed by `claim`.
    function claimBatch(ClaimItem[] calldata items) external returns (uint256 total);

    /// @notice The lab ends the lease now and credits the provider up to `cumulativeAmount` for work
    /// to date. The rest is refunded at close.
    function terminate(Lease calldata lease, uint256 cumulativeAmount) external;

    /// @notice Close a lease: credit the unpaid escrow back to the lab. The provider may close at
    /// any time; anyone else once the claim window after the end has passed.
    function closeLease(Lease calldata lease) external returns (uint256 refund);

    /// @notice Send the caller its whole credit (payments, refunds or fees credited to it).
    function withdraw() external returns (uint256 amount);

    /// @notice What `account` may withdraw now.
    function withdrawable(address account) external view returns (uint256);

    /// @notice The EIP-712 digest of an offer (its order hash).
    function hashOffer(Offer calldata offer) external view returns (bytes32);

    /// @notice The EIP-712 digest of a bid (its order hash).
    function hashBid(Bid calldata bid) external view returns (bytes32);

    /// @notice The EIP-712 digest of a voucher.
    function hashVoucher(Voucher calldata voucher) external view returns (bytes32);

    /// @notice The id of a lease with these terms.
    function leaseId(Lease calldata lease) external pure returns (bytes32);

    /// @notice The mutable state of a lease.
    function leaseState(bytes32 leaseId_) external view returns (LeaseState memory);

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

    /// @notice Protocol fee on payments, in basis points.
    function feeBps() external view returns (uint16);

    /// @notice Where protocol fees go.
    function treasury() external view returns (address);

    /// @notice The EIP-712 domain separator.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32);
}
