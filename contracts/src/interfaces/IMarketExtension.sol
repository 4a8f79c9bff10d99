// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IMarketTypes} from "./IMarketTypes.sol";
import {IProviderRegistry} from "./IProviderRegistry.sol";

/// @title IMarketExtension
/// @notice The market functions `Market` runs by delegatecall in `MarketExtension` (its code would not
/// fit one contract): the provider registry and stake, cancellation, optimistic claims and
/// disputes, the usage proof, and the views.
interface IMarketExtension is IMarketTypes, IProviderRegistry {
    /// @notice Cancel one of the caller's orders by its EIP-712 hash.
    function cancelOrder(bytes32 orderHash) external;

    /// @notice Cancel every order of the caller with a nonce below `minNonce`; 2^256 - 1 cancels
    /// every order, that nonce included.
    function cancelOrdersUpTo(uint256 minNonce) external;

    /// @notice `finalizeClaim` for many leases in one transaction. An item that cannot be
    /// finalized is skipped with `FinalizeSkipped` and does not block the others.
    /// @return total What was credited in all.
    function finalizeClaimBatch(Lease[] calldata leases) external returns (uint256 total);

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
    /// ready `challengeWindow()` seconds from now; it replaces (and restarts) a pending one only by
    /// raising the amount: the total must be above what was paid (`MarketNothingToClaim`) and above
    /// every amount posted before (`MarketClaimNotRaised`). Refused while a dispute is open.
    function postReceipt(Lease calldata lease, Receipt calldata r, bytes calldata sig) external;

    /// @notice Finalize the lease's pending claim once its challenge window has passed, or, when
    /// disputed, once the ruling deadline has passed without a ruling; callable by anyone. Credits
    /// the provider (the fee, if any, to the treasury) what the claim adds to what vouchers have
    /// paid, like a voucher for the same amount would, plus an unruled dispute's bond (no fee).
    /// @return amount What was credited for the claim (zero when vouchers had already paid as much).
    function finalizeClaim(Lease calldata lease) external returns (uint256 amount);

    /// @notice The lab disputes the lease's pending claim within its challenge window, posting a bond
    /// of `(amount - paid) * disputeBondBps / 10_000` (pulled from the lab: approve the market).
    /// The dispute is settled by a proof of cheating (the lab gets the bond back), by the lease's
    /// arbiter before `now + rulingWindow` (`ruleDispute`), or else for the provider, which
    /// `finalizeClaim` then pays the claim and the bond. While it is open the lab may close the lease:
    /// the disputed amount stays in escrow until the dispute is settled.
    function disputeClaim(Lease calldata lease) external;

    /// @notice The lease's arbiter settles its open dispute before the ruling deadline. For the
    /// provider: the claim is paid (as `finalizeClaim` pays it) and the bond credited to the
    /// provider. For the lab: the bond and any disputed escrow a close held back go back to the
    /// lab, and the claim is void (a later receipt must raise its amount).
    function ruleDispute(Lease calldata lease, bool forProvider) external;

    /// @notice Return a closed lease's stake lock to its provider's free stake once its proof
    /// window (end plus claim window) is over; callable by anyone. A close after that window
    /// releases the lock itself; this is for leases closed earlier.
    /// @return amount The lock released.
    function releaseStake(Lease calldata lease) external returns (uint256 amount);

    /// @notice What `account` may withdraw now: its credit, and its slashed stake once vested.
    function withdrawable(address account) external view returns (uint256);

    /// @notice Stake slashed to `account` and not withdrawn, and when it vests (the last slash
    /// plus the unbonding delay).
    function slashedCredit(address account) external view returns (uint256 amount, uint40 vestsAt);

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

    /// @notice The settlement token.
    function token() external view returns (address);

    /// @notice Seconds after a lease's end during which only the provider may close it.
    function claimWindow() external view returns (uint64);

    /// @notice Seconds a posted receipt's claim waits for the lab's dispute before it can be paid.
    function challengeWindow() external view returns (uint40);

    /// @notice Stake each lease locks, in basis points of its escrow: the slash penalty of a proof.
    function stakeRatioBps() external view returns (uint32);

    /// @notice A dispute's bond, in basis points of the disputed amount.
    function disputeBondBps() external view returns (uint16);

    /// @notice Seconds an arbiter has to rule on a dispute.
    function rulingWindow() external view returns (uint40);

    /// @notice The contract `Market` delegates these functions to.
    function extension() external view returns (address);

    /// @notice Protocol fee on payments, in basis points.
    function feeBps() external view returns (uint16);

    /// @notice Where protocol fees go.
    function treasury() external view returns (address);

    /// @notice The EIP-712 domain separator.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32);
}
