// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IMarketCore} from "./IMarketCore.sol";
import {IMarketExtension} from "./IMarketExtension.sol";

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
/// (`slashImpossibleUsage`). A proof slashes the lease's stake lock to the lab and settles the lease.
/// When a lab stops signing vouchers, its provider posts its latest receipt (`postReceipt`) and is
/// paid for it after a challenge window (`finalizeClaim`) unless the lab disputes it first
/// (`disputeClaim`, with a bond); a dispute is settled by proof, by the arbiter both orders named,
/// or, past its deadline, for the provider. See docs/decisions/0006-slashing.md and
/// 0013-stake-and-disputes.md.
///
/// Providers register and stake here (`IProviderRegistry`). Each lease locks part of its
/// provider's stake in proportion to its escrow until its proof window ends; withdrawals take only
/// free stake, and a proof is paid from its own lease's lock.
///
/// The market is two contracts with one storage: `Market` runs `IMarketCore` and delegates every
/// other call to `MarketExtension` (docs/decisions/0013-stake-and-disputes.md).
// The two halves make the whole: nothing to add.
// solhint-disable-next-line no-empty-blocks
interface IMarket is IMarketCore, IMarketExtension {}
