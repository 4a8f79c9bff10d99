// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IMarketTypes} from "./IMarketTypes.sol";

/// @title IMarketCore
/// @notice The market functions on its hot paths, run by `Market` itself: opening leases, vouchers,
/// termination, closing, withdrawal and the equivocation proof.
interface IMarketCore is IMarketTypes {
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
}
