// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {StdInvariant} from "forge-std/StdInvariant.sol";
import {IMarketTypes} from "../src/interfaces/IMarketTypes.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";
import {MarketHandler} from "./helpers/MarketHandler.sol";

/// @notice Stateful fuzzing of the market through MarketHandler: random leases (partial fills
/// included, half of them with a minimum charge, half naming an arbiter) opened one by one, in
/// batches at the offers' prices and in uniform-price auctions (all-or-none bids among them,
/// sometimes filled short, which must open nothing), vouchers and voucher batches, terminations,
/// closes one by one and in batches, stake releases, withdrawals, equivocation slashes, posted
/// receipts with their finalizations (one by one and in batches), disputes with bonds and the
/// arbiter's rulings, unstaking, stake withdrawals and added stake, and time, with a 1% protocol
/// fee. Each lease locks its whole escrow of its provider's stake; each provider starts with
/// 5,000 tokens staked, so that leases sometimes find their stake short. Runs and depth come
/// from foundry.toml ([invariant]).
contract MarketInvariantTest is MarketFixture {
    uint256 internal constant EXTRA_STAKE = 4_000;

    MarketHandler internal handler;
    address internal arbiter = makeAddr("arbiter");
    uint256 internal initialSupply;
    uint256 internal labsInitial;
    uint256 internal providersInitial;

    function setUp() public {
        _deploy(address(new TestUSD(6)), 6, 100, treasury);
        token.mint(lab, 1e15);
        token.mint(lab2, 1e15);
        _addStake(provider, EXTRA_STAKE * unit);
        _addStake(provider2, EXTRA_STAKE * unit);

        uint256[] memory providerKeys = new uint256[](2);
        providerKeys[0] = PROVIDER_KEY;
        providerKeys[1] = PROVIDER2_KEY;
        uint256[] memory labKeys = new uint256[](2);
        labKeys[0] = LAB_KEY;
        labKeys[1] = LAB2_KEY;
        handler = new MarketHandler(market, providerKeys, labKeys, stranger, arbiter);

        initialSupply = token.totalSupply();
        labsInitial = token.balanceOf(lab) + token.balanceOf(lab2);
        providersInitial = token.balanceOf(provider) + token.balanceOf(provider2);

        bytes4[] memory selectors = new bytes4[](20);
        selectors[0] = MarketHandler.openLeases.selector;
        selectors[1] = MarketHandler.claim.selector;
        selectors[2] = MarketHandler.claimBatch.selector;
        selectors[3] = MarketHandler.terminate.selector;
        selectors[4] = MarketHandler.closeLease.selector;
        selectors[5] = MarketHandler.withdraw.selector;
        selectors[6] = MarketHandler.warp.selector;
        selectors[7] = MarketHandler.slashEquivocation.selector;
        selectors[8] = MarketHandler.postReceipt.selector;
        selectors[9] = MarketHandler.finalizeClaim.selector;
        selectors[10] = MarketHandler.disputeClaim.selector;
        selectors[11] = MarketHandler.openBatch.selector;
        selectors[12] = MarketHandler.closeLeaseBatch.selector;
        selectors[13] = MarketHandler.finalizeClaimBatch.selector;
        selectors[14] = MarketHandler.ruleDispute.selector;
        selectors[15] = MarketHandler.releaseStake.selector;
        selectors[16] = MarketHandler.requestUnstake.selector;
        selectors[17] = MarketHandler.withdrawStake.selector;
        selectors[18] = MarketHandler.addStake.selector;
        selectors[19] = MarketHandler.warp.selector; // time twice as often: windows and vesting pass
        targetSelector(StdInvariant.FuzzSelector({addr: address(handler), selectors: selectors}));
        targetContract(address(handler));
    }

    // --- the market's own books -------------------------------------------------------------------

    /// @notice The market holds exactly what it owes: every account's credit (slashed stake
    /// included, vested or not), every provider's stake (bonded and unbonding), the unpaid escrow
    /// of the leases not closed, the escrow a close held back for an open dispute, and the bonds of
    /// open disputes. Computed from the market's own views.
    function invariant_marketBalanceEqualsCreditsStakesAndHeldEscrow() public view {
        uint256 owed = 0;
        uint256 n = handler.leaseCount();
        for (uint256 i = 0; i < n; ++i) {
            (IMarketTypes.Lease memory lease,) = handler.leaseAt(i);
            bytes32 id = keccak256(abi.encode(lease));
            IMarketTypes.LeaseState memory s = market.leaseState(id);
            IMarketTypes.PendingClaim memory c = market.pendingClaim(id);
            if (s.status != IMarketTypes.LeaseStatus.Closed) {
                owed += _escrowOf(lease) - s.paid;
            } else if (s.disputed && c.amount > s.paid) {
                owed += c.amount - s.paid;
            }
            if (s.disputed) owed += c.bond;
        }
        uint256 credits = 0;
        address[] memory accounts = handler.accounts();
        for (uint256 i = 0; i < accounts.length; ++i) {
            credits += _creditOf(accounts[i]);
        }
        uint256 stakes = _stakeHeld(provider) + _stakeHeld(provider2);
        assertEq(token.balanceOf(address(market)), credits + stakes + owed, "market balance vs its own records");
    }

    /// @notice Every provider's locked stake is exactly the sum of the locks of its leases whose
    /// lock was neither released nor slashed, and never more than its bonded stake.
    function invariant_lockedStakeCoversEveryUnreleasedLock() public view {
        uint256[2] memory locks;
        uint256 n = handler.leaseCount();
        for (uint256 i = 0; i < n; ++i) {
            (IMarketTypes.Lease memory lease,) = handler.leaseAt(i);
            IMarketTypes.LeaseState memory s = market.leaseState(keccak256(abi.encode(lease)));
            if (s.slashed) assertTrue(s.stakeReleased, "a slash spends the lock");
            if (s.stakeReleased) continue;
            assertTrue(s.status != IMarketTypes.LeaseStatus.None, "opened");
            locks[lease.provider == provider ? 0 : 1] += _escrowOf(lease) * STAKE_RATIO_BPS / BPS;
        }
        address[2] memory ps = [provider, provider2];
        for (uint256 k = 0; k < 2; ++k) {
            IProviderRegistry.Provider memory p = market.getProvider(ps[k]);
            assertGe(p.locked, locks[k], "locked covers the unreleased locks");
            assertEq(p.locked, locks[k], "and is exactly their sum");
            assertGe(p.stake, p.locked, "stake >= locked");
            assertEq(market.freeStake(ps[k]), p.stake - p.locked, "free stake");
        }
    }

    // --- the market against the model -----------------------------------------------------------

    /// @notice The market's record of every lease and pending claim agrees with the model.
    function invariant_leasesAndClaimsMatchModel() public view {
        assertEq(handler.mismatches(), 0, "a call disagreed with the model");
        uint256 n = handler.leaseCount();
        for (uint256 i = 0; i < n; ++i) {
            (IMarketTypes.Lease memory lease, MarketHandler.Model memory m) = handler.leaseAt(i);
            bytes32 id = keccak256(abi.encode(lease));
            IMarketTypes.LeaseState memory s = market.leaseState(id);
            assertEq(uint8(s.status), uint8(m.status), "status");
            assertEq(s.paid, m.paid, "paid");
            assertEq(s.end, m.end, "end");
            assertEq(s.slashed, m.slashed, "slashed");
            assertEq(s.disputed, m.disputed, "disputed");
            assertEq(s.stakeReleased, m.released, "stake released");
            assertLe(s.paid, _escrowOf(lease), "paid within escrow");
            IMarketTypes.PendingClaim memory c = market.pendingClaim(id);
            assertEq(c.readyAt, m.readyAt, "pending claim");
            assertEq(c.amount, m.pendingAmount, "pending amount");
            assertEq(c.bond, m.bond, "bond");
            assertEq(c.rulingDeadline, m.rulingDeadline, "ruling deadline");
        }
    }

    /// @notice Every provider's stake, and every account's credit and slashed stake, agree with
    /// the model; the arbiter and the stranger are never credited.
    function invariant_stakesAndCreditsMatchModel() public view {
        address[2] memory ps = [provider, provider2];
        for (uint256 k = 0; k < 2; ++k) {
            IProviderRegistry.Provider memory p = market.getProvider(ps[k]);
            MarketHandler.Stake memory e = handler.expectedStake(ps[k]);
            assertEq(p.stake, e.stake, "stake vs model");
            assertEq(p.locked, e.locked, "locked vs model");
            assertEq(p.unbonding, e.unbonding, "unbonding vs model");
        }
        address[] memory accounts = handler.accounts();
        for (uint256 i = 0; i < accounts.length; ++i) {
            address a = accounts[i];
            assertEq(market.withdrawable(a), handler.expectedWithdrawable(a), "withdrawable vs model");
            (uint256 slashed, uint40 vestsAt) = market.slashedCredit(a);
            assertEq(slashed, handler.expectedSlashed(a), "slashed credit vs model");
            if (slashed > 0) assertEq(vestsAt, handler.expectedVestsAt(a), "vesting vs model");
        }
        assertEq(_creditOf(arbiter), 0, "the arbiter is never credited");
        assertEq(_creditOf(stranger), 0, "the stranger is never credited");
    }

    /// @notice Stake leaves the providers' stakes only by slashing or by withdrawal after unbonding.
    function invariant_stakeOnlyLeavesBySlashingOrWithdrawal() public view {
        uint256 stakes = _stakeHeld(provider) + _stakeHeld(provider2);
        assertEq(
            stakes + handler.ghostSlashed() + handler.ghostStakeWithdrawn(),
            handler.initialStakes() + handler.ghostStakeAdded(),
            "stake conserved"
        );
        assertEq(handler.initialStakes(), 2 * (minStake + EXTRA_STAKE * unit));
    }

    // --- tokens -----------------------------------------------------------------------------------

    /// @notice No token is created or lost: the supply is unchanged and lies entirely with the actors.
    function invariant_tokenSupplyConservedAcrossActors() public view {
        uint256 held = token.balanceOf(lab) + token.balanceOf(lab2) + token.balanceOf(provider)
            + token.balanceOf(provider2) + token.balanceOf(stranger) + token.balanceOf(treasury)
            + token.balanceOf(arbiter) + token.balanceOf(address(market));
        assertEq(token.totalSupply(), initialSupply, "supply");
        assertEq(held, initialSupply, "held by actors");
    }

    /// @notice Each group of actors holds, in tokens and credit together, what the model says it
    /// was paid; withdrawals only move value from credit to tokens.
    function invariant_flowsMatchModel() public view {
        assertEq(
            _heldOrCredited(lab) + _heldOrCredited(lab2),
            labsInitial - handler.ghostEscrowed() - handler.ghostBonds() + handler.ghostRefunded()
                + handler.ghostSlashed(),
            "labs"
        );
        assertEq(
            _heldOrCredited(provider) + _heldOrCredited(provider2),
            providersInitial + handler.ghostProviderIncome() - handler.ghostStakeAdded()
                + handler.ghostStakeWithdrawn(),
            "providers"
        );
        assertEq(_heldOrCredited(treasury), handler.ghostFees(), "treasury");
        assertEq(
            token.balanceOf(lab) + token.balanceOf(lab2) + token.balanceOf(provider) + token.balanceOf(provider2)
                + token.balanceOf(treasury),
            labsInitial + providersInitial - handler.ghostEscrowed() - handler.ghostBonds() - handler.ghostStakeAdded()
                + handler.ghostWithdrawn() + handler.ghostStakeWithdrawn(),
            "tokens out of the market are exactly the withdrawals"
        );
    }

    // --- helpers ----------------------------------------------------------------------------------

    /// @dev Everything the market owes `account`: its credit and its slashed stake, vested or not.
    function _creditOf(address account) internal view returns (uint256) {
        (uint256 slashed, uint40 vestsAt) = market.slashedCredit(account);
        uint256 withdrawable = market.withdrawable(account);
        uint256 credit = block.timestamp >= vestsAt ? withdrawable - slashed : withdrawable;
        return credit + slashed;
    }

    /// @dev The stake the market holds for `who`: bonded and unbonding.
    function _stakeHeld(address who) internal view returns (uint256) {
        IProviderRegistry.Provider memory p = market.getProvider(who);
        return uint256(p.stake) + p.unbonding;
    }

    function _heldOrCredited(address account) internal view returns (uint256) {
        return token.balanceOf(account) + _creditOf(account);
    }

    /// @notice Reports how many actions ran and succeeded in the run (visible with -vv).
    function afterInvariant() public {
        string[20] memory actions = [
            "open",
            "openBatch",
            "auction",
            "claim",
            "batch",
            "terminate",
            "close",
            "closeBatch",
            "release",
            "withdraw",
            "warp",
            "slash",
            "post",
            "finalize",
            "finalizeBatch",
            "dispute",
            "rule",
            "unstake",
            "withdrawStake",
            "addStake"
        ];
        for (uint256 i = 0; i < actions.length; ++i) {
            bytes32 key = bytes32(bytes(actions[i]));
            emit log_named_string(
                actions[i],
                string.concat(vm.toString(handler.successes(key)), " of ", vm.toString(handler.calls(key)), " succeeded")
            );
        }
    }
}
