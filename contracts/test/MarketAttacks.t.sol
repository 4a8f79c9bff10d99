// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IMarketTypes} from "../src/interfaces/IMarketTypes.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";

/// @notice One test per attack of the outside audit (issue 12, docs/decisions/0013-stake-and-disputes.md),
/// each proving its fix with amounts. A 6-decimals TestUSD, no fee; 1 tUSD = 1e6 units. Each
/// provider stakes the minimum, 1,000 tUSD; the default lease is 4 GPUs for an hour at 0.001 tUSD
/// per GPU-second, an escrow of 14.4 tUSD, and locks as much stake (the ratio is 100%). A dispute's
/// bond is 10% of the disputed amount, its ruling window 3 days; slashed stake vests 7 days.
contract MarketAttacksTest is MarketFixture {
    uint256 internal constant SYBIL_KEY = 0x5B11;
    uint256 internal constant LAB3_KEY = 0x1AB3;
    uint256 internal constant LAB4_KEY = 0x1AB4;

    TestUSD internal usd;
    address internal sybil = vm.addr(SYBIL_KEY); // a second address of the provider's
    address internal arbiter = makeAddr("arbiter");

    function setUp() public {
        usd = new TestUSD(6);
        _deploy(address(usd), 6, 0, address(0));
        _fund(sybil);
    }

    function _fund(address who) internal {
        usd.mint(who, 1_000_000 * unit);
        vm.prank(who);
        usd.approve(address(market), type(uint256).max);
    }

    /// @dev A pair of the provider's offer and the bid of the lab with key `labKey`.
    function _pairOf(uint256 labKey, uint256 nonce) internal view returns (Pair memory p) {
        p.offer = _offer(provider, nonce);
        p.offerSig = _signOffer(p.offer);
        p.bid = _bid(vm.addr(labKey), nonce);
        p.bidSig = _sign(labKey, market.hashBid(p.bid));
    }

    /// @dev The provider equivocates on `lease` (two receipts seq 0 of its first minute) and
    /// someone proves it; returns the penalty.
    function _equivocate(IMarketTypes.Lease memory lease) internal returns (uint256) {
        IMarketTypes.Receipt memory a = _receipt(lease, 0, lease.start, lease.start + 60, 60);
        IMarketTypes.Receipt memory b = _receipt(lease, 0, lease.start, lease.start + 60, 59);
        bytes memory sigA = _signReceipt(PROVIDER_KEY, a);
        bytes memory sigB = _signReceipt(PROVIDER_KEY, b);
        vm.prank(stranger);
        return _proveEquivocation(lease, a, sigA, b, sigB);
    }

    /// @dev The provider posts its receipt `seq` of `gpuSeconds` up to now.
    function _post(IMarketTypes.Lease memory lease, uint64 seq, uint64 gpuSeconds) internal {
        IMarketTypes.Receipt memory r = _receipt(lease, seq, lease.start, uint64(block.timestamp), gpuSeconds);
        bytes memory sig = _signReceipt(PROVIDER_KEY, r);
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function _slashed(address account) internal view returns (uint256 amount) {
        (amount,) = market.slashedCredit(account);
    }

    // --- a. self-slash --------------------------------------------------------------------------

    /// @notice The attack: lease to yourself and slash yourself to take the stake back at once,
    /// ahead of a real lab's proof. Fixed: no lease with lab == provider; through a second address
    /// the penalty is that lease's own lock, vesting for the unbonding delay, and the real lab's
    /// lock is untouched and paid in full by its proof.
    function test_a_selfSlash_isRefusedAndThroughASecondAddressFreesNothingSoonerNorTouchesTheRealLabsLock()
        public
    {
        // A real lab's lease: 14.4 tUSD locked.
        (IMarketTypes.Lease memory real, bytes32 realId) = _open(_defaultPair(), BID_GPUS);
        uint256 realLock = _leaseLock(real);
        assertEq(realLock, 14_400_000);

        // Lab == provider cannot open.
        Pair memory selfDeal = _pair(_offer(provider, 1), _bid(provider, 0));
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketSelfDealing.selector, provider));
        market.openLease(selfDeal.offer, selfDeal.offerSig, selfDeal.bid, selfDeal.bidSig, BID_GPUS);

        // Through a second address, with a lease locking nearly all its free stake (979.2 of 985.6 tUSD).
        assertEq(market.freeStake(provider), 985_600_000);
        IMarketTypes.Lease memory own = _openSybilLease(979_200_000);
        uint256 ownLock = _leaseLock(own);
        assertEq(ownLock, 979_200_000);
        assertEq(market.freeStake(provider), 6_400_000);

        // The self-slash takes its own lease's lock, no more.
        uint40 vestsAt = uint40(block.timestamp) + UNBONDING_DELAY;
        assertEq(_equivocate(own), ownLock);
        assertEq(market.getProvider(provider).stake, realLock + 6_400_000, "the real lab's lock is still bonded");
        assertEq(market.getProvider(provider).locked, realLock, "and still locked");
        assertFalse(market.leaseState(realId).stakeReleased);

        // The sybil gets its escrow back at once, the penalty not before the unbonding delay: no
        // sooner than requestUnstake would have returned the same stake.
        assertEq(market.withdrawable(sybil), _escrowOf(own), "the refund only");
        assertEq(_slashed(sybil), ownLock);
        assertEq(_withdraw(sybil), _escrowOf(own));
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToWithdraw.selector, sybil));
        vm.prank(sybil);
        market.withdraw();
        vm.warp(vestsAt - 1);
        assertEq(market.withdrawable(sybil), 0, "still vesting a second before");
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToWithdraw.selector, sybil));
        vm.prank(sybil);
        market.withdraw();

        // The real lab's proof, which the self-slash tried to starve, pays its full lock.
        uint256 labBefore = usd.balanceOf(lab);
        assertEq(_equivocate(real), realLock);
        assertEq(market.getProvider(provider).stake, 6_400_000);
        assertEq(_slashed(lab), realLock);
        vm.warp(uint256(block.timestamp) + UNBONDING_DELAY);
        assertEq(_withdraw(lab), _escrowOf(real) + realLock, "its escrow and its whole lock");
        assertEq(usd.balanceOf(lab), labBefore + 14_400_000 + 14_400_000);
        assertEq(_withdraw(sybil), ownLock, "the sybil's penalty, once vested");
    }

    /// @dev A lease of BID_GPUS GPUs for DURATION from the provider to its sybil, priced so that
    /// its escrow (and lock) is `escrow`.
    function _openSybilLease(uint256 escrow) internal returns (IMarketTypes.Lease memory lease) {
        IMarketTypes.Offer memory offer = _offer(provider, 2);
        offer.pricePerGpuSecond = escrow / (BID_GPUS * DURATION);
        IMarketTypes.Bid memory bid = _bid(sybil, 2);
        bid.maxPricePerGpuSecond = offer.pricePerGpuSecond;
        (lease,) = _open(Pair(offer, _signOffer(offer), bid, _sign(SYBIL_KEY, market.hashBid(bid))), BID_GPUS);
    }

    function test_a_selfSlash_selfDealingIsRefusedInBatchesToo() public {
        IMarketTypes.SignedOffer[] memory offers = new IMarketTypes.SignedOffer[](1);
        offers[0] = _signedOffer(_offer(provider, 0));
        IMarketTypes.SignedBid[] memory bids = new IMarketTypes.SignedBid[](1);
        bids[0] = _signedBid(_bid(provider, 0));
        IMarketTypes.Match[] memory matches = new IMarketTypes.Match[](1);
        matches[0] = IMarketTypes.Match(0, 0, 1);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketSelfDealing.selector, provider));
        market.openLeaseBatch(offers, bids, matches);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketSelfDealing.selector, provider));
        market.openLeaseAuction(offers, bids, matches, price);
    }

    // --- b. unstake while leases are open -------------------------------------------------------

    /// @notice The attack: unstake (and withdraw) while a lease runs, leaving its lab nothing to
    /// slash. Fixed: only free stake unbonds; the lease's lock stays bonded and its proof pays it.
    function test_b_unstakeWhileALeaseIsOpen_cannotTakeItsLock() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        uint256 lock = _leaseLock(lease); // 14.4 tUSD
        uint256 free = minStake - lock; // 985.6 tUSD

        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryUnstakeExceedsFree.selector, minStake, free));
        vm.prank(provider);
        market.requestUnstake(minStake);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryUnstakeExceedsFree.selector, free + 1, free));
        vm.prank(provider);
        market.requestUnstake(free + 1);

        // All the free stake leaves, after the delay.
        vm.prank(provider);
        market.requestUnstake(free);
        vm.warp(uint256(T0) + UNBONDING_DELAY);
        uint256 providerBefore = usd.balanceOf(provider);
        vm.prank(provider);
        assertEq(market.withdrawStake(), free);
        assertEq(usd.balanceOf(provider), providerBefore + 985_600_000);
        assertEq(market.getProvider(provider).stake, lock);
        assertEq(market.getProvider(provider).locked, lock);

        // Below the minimum now: no new lease.
        Pair memory next = _pair(_offer(provider, 1), _bid(lab2, 1));
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketProviderStakeTooLow.selector, provider, lock, minStake)
        );
        market.openLease(next.offer, next.offerSig, next.bid, next.bidSig, 1);

        // The open lease's proof still pays its full lock (the lease was never closed: its lock holds).
        assertEq(uint8(market.leaseState(id).status), uint8(IMarketTypes.LeaseStatus.Active));
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseSlashed(id, provider, lock, _escrowOf(lease), uint40(block.timestamp) + UNBONDING_DELAY);
        assertEq(_equivocate(lease), 14_400_000);
        assertEq(market.getProvider(provider).stake, 0);
        assertEq(_slashed(lab), 14_400_000);
        vm.warp(uint256(block.timestamp) + UNBONDING_DELAY);
        assertEq(_withdraw(lab), 14_400_000 + 14_400_000, "escrow refunded and the lock");
    }

    // --- c. one stake, many leases --------------------------------------------------------------

    /// @notice The attack: one minimum stake backs any number of leases, and the fixed penalty is
    /// paid once. Fixed: each lease locks 240 tUSD of the 1,000 tUSD stake; the fifth cannot open
    /// (40 tUSD free), and each of the four proofs pays its own lab 240 tUSD.
    function test_c_oneStakeManyLeases_theFifthCannotOpenAndEveryProofPaysItsOwnLock() public {
        uint256[4] memory labKeys = [LAB_KEY, LAB2_KEY, LAB3_KEY, LAB4_KEY];
        _fund(vm.addr(LAB3_KEY));
        _fund(vm.addr(LAB4_KEY));
        uint64 duration = 60_000; // 4 GPUs x 60,000 s x 0.001 tUSD = 240 tUSD of escrow each
        IMarketTypes.Lease[4] memory leases;
        for (uint256 i = 0; i < 4; ++i) {
            Pair memory p = _pairOf(labKeys[i], i);
            p.bid.duration = duration;
            p.bidSig = _sign(labKeys[i], market.hashBid(p.bid));
            (leases[i],) = _open(p, BID_GPUS);
            assertEq(_leaseLock(leases[i]), 240_000_000);
        }
        assertEq(market.getProvider(provider).locked, 960_000_000);
        assertEq(market.freeStake(provider), 40_000_000);

        Pair memory fifth = _pairOf(LAB_KEY, 4);
        fifth.bid.duration = duration;
        fifth.bidSig = _signBid(fifth.bid);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketStakeLockUncovered.selector, provider, 40_000_000, 240_000_000)
        );
        market.openLease(fifth.offer, fifth.offerSig, fifth.bid, fifth.bidSig, BID_GPUS);

        // Every lease's proof pays its own lab its whole lock: 960 tUSD in all, not one penalty.
        uint256 vestsAt = block.timestamp + UNBONDING_DELAY;
        for (uint256 i = 0; i < 4; ++i) {
            assertEq(_equivocate(leases[i]), 240_000_000);
        }
        assertEq(market.getProvider(provider).stake, 40_000_000);
        assertEq(market.getProvider(provider).locked, 0);
        vm.warp(vestsAt);
        for (uint256 i = 0; i < 4; ++i) {
            address labI = vm.addr(labKeys[i]);
            assertEq(_slashed(labI), 240_000_000);
            assertEq(_withdraw(labI), 240_000_000 + 240_000_000, "its escrow back and its lock");
        }
    }

    // --- d. a dispute is not a free veto --------------------------------------------------------

    /// @dev A default lease, 30 minutes in, with the provider's claim of 7.2 tUSD (4 GPUs x 1,800 s)
    /// posted and disputed by the lab, whose 0.72 tUSD bond is pulled. `arbiter_` is the arbiter
    /// both orders name (zero: none).
    function _disputed(address arbiter_)
        internal
        returns (IMarketTypes.Lease memory lease, bytes32 id, uint64 deadline)
    {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.arbiter = arbiter_;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.arbiter = arbiter_;
        (lease, id) = _open(_pair(offer, bid), BID_GPUS);
        vm.warp(T0 + 30 minutes);
        _post(lease, 0, BID_GPUS * 30 minutes);
        assertEq(market.pendingClaim(id).amount, 7_200_000);
        uint256 labBefore = usd.balanceOf(lab);
        deadline = uint64(block.timestamp) + RULING_WINDOW;
        vm.expectEmit(address(market));
        emit IMarketTypes.ClaimDisputed(id, lab, 0, market.pendingClaim(id).receiptHash, 720_000, deadline);
        vm.prank(lab);
        market.disputeClaim(lease);
        assertEq(usd.balanceOf(lab), labBefore - 720_000, "the bond is pulled");
    }

    /// @notice The attack: a lab disputes every claim for free, and the provider is never paid.
    /// Fixed: without an arbiter, the claim and the bond pay the provider at the ruling deadline.
    function test_d_dispute_withoutAnArbiterPaysTheProviderTheClaimAndTheBondAtTheDeadline() public {
        (IMarketTypes.Lease memory lease, bytes32 id, uint64 deadline) = _disputed(address(0));
        vm.warp(deadline - 1);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketClaimDisputed.selector, id, deadline));
        market.finalizeClaim(lease);
        // Nobody may rule on a lease without an arbiter.
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNotArbiter.selector, id, lab));
        vm.prank(lab);
        market.ruleDispute(lease, false);

        vm.warp(deadline);
        vm.prank(stranger);
        assertEq(market.finalizeClaim(lease), 7_200_000);
        assertEq(market.withdrawable(provider), 7_200_000 + 720_000, "claim and bond");
        assertEq(market.leaseState(id).paid, 7_200_000);
        vm.prank(provider);
        assertEq(market.closeLease(lease), 14_400_000 - 7_200_000);
        assertEq(market.withdrawable(lab), 7_200_000, "the lab's refund, its bond lost");
    }

    function test_d_dispute_anArbiterRulingForTheProviderPaysTheClaimAndTheBond() public {
        (IMarketTypes.Lease memory lease, bytes32 id, uint64 deadline) = _disputed(arbiter);
        vm.warp(deadline - 1);
        vm.expectEmit(address(market));
        emit IMarketTypes.DisputeRuled(id, arbiter, true, 7_200_000, 720_000);
        vm.prank(arbiter);
        market.ruleDispute(lease, true);
        assertEq(market.withdrawable(provider), 7_200_000 + 720_000);
        assertEq(market.withdrawable(lab), 0);
        assertEq(market.leaseState(id).paid, 7_200_000);
        assertFalse(market.leaseState(id).disputed);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNoPendingClaim.selector, id));
        market.finalizeClaim(lease);
    }

    function test_d_dispute_anArbiterRulingForTheLabReturnsTheBond() public {
        (IMarketTypes.Lease memory lease, bytes32 id,) = _disputed(arbiter);
        uint256 labBefore = usd.balanceOf(lab);
        vm.expectEmit(address(market));
        emit IMarketTypes.DisputeRuled(id, arbiter, false, 7_200_000, 720_000);
        vm.prank(arbiter);
        market.ruleDispute(lease, false);
        assertEq(market.withdrawable(lab), 720_000, "the bond back");
        assertEq(market.withdrawable(provider), 0, "the claim is void");
        assertEq(market.leaseState(id).paid, 0);
        assertEq(_withdraw(lab), 720_000);
        assertEq(usd.balanceOf(lab), labBefore + 720_000);
        // The void claim's amount is the floor: the provider cannot post it again.
        vm.warp(T0 + 40 minutes);
        IMarketTypes.Receipt memory again = _receipt(lease, 1, lease.start, T0 + 30 minutes, BID_GPUS * 30 minutes);
        bytes memory sig = _signReceipt(PROVIDER_KEY, again);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketClaimNotRaised.selector, id, 7_200_000, 7_200_000));
        vm.prank(provider);
        market.postReceipt(lease, again, sig);
    }

    function test_d_dispute_aLabClosingWhileDisputedHoldsTheAmountBackForTheProvider() public {
        (IMarketTypes.Lease memory lease, bytes32 id, uint64 deadline) = _disputed(address(0));
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW);
        vm.prank(lab);
        assertEq(market.closeLease(lease), 14_400_000 - 7_200_000, "the disputed 7.2 tUSD are held back");
        assertEq(uint8(market.leaseState(id).status), uint8(IMarketTypes.LeaseStatus.Closed));
        assertTrue(market.leaseState(id).disputed);
        assertEq(usd.balanceOf(address(market)), staked + 14_400_000 + 720_000);

        vm.warp(deadline);
        assertEq(market.finalizeClaim(lease), 7_200_000);
        assertEq(market.withdrawable(provider), 7_200_000 + 720_000);
        assertEq(market.withdrawable(lab), 7_200_000);
        assertEq(_withdraw(provider) + _withdraw(lab), 14_400_000 + 720_000, "escrow and bond, all paid out");
        assertEq(usd.balanceOf(address(market)), staked);
    }

    // --- e. re-posting to keep a refund locked --------------------------------------------------

    /// @notice The attack: re-post the same usage under higher seqs, restarting the challenge
    /// window so the lab can never close. Fixed: a post must raise the amount, and a lab that
    /// disputed may close.
    function test_e_repost_theSameAmountIsRefusedAndALabThatDisputedCanClose() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.warp(T0 + 40 minutes);
        _post(lease, 0, BID_GPUS * 40 minutes); // 9.6 tUSD
        uint64 readyAt = market.pendingClaim(id).readyAt;

        vm.warp(T0 + 50 minutes);
        IMarketTypes.Receipt memory same = _receipt(lease, 1, lease.start, T0 + 50 minutes, BID_GPUS * 40 minutes);
        bytes memory sig = _signReceipt(PROVIDER_KEY, same);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketClaimNotRaised.selector, id, 9_600_000, 9_600_000));
        vm.prank(provider);
        market.postReceipt(lease, same, sig);
        IMarketTypes.Receipt memory lower = _receipt(lease, 5, lease.start, T0 + 50 minutes, BID_GPUS * 30 minutes);
        sig = _signReceipt(PROVIDER_KEY, lower);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketClaimNotRaised.selector, id, 7_200_000, 9_600_000));
        vm.prank(provider);
        market.postReceipt(lease, lower, sig);
        assertEq(market.pendingClaim(id).readyAt, readyAt, "the window did not restart");
        assertEq(market.pendingClaim(id).seq, 0);

        // The lab disputes; once the claim window after the end has passed, it closes.
        vm.prank(lab);
        market.disputeClaim(lease);
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW);
        assertLt(block.timestamp, market.pendingClaim(id).rulingDeadline);
        vm.prank(lab);
        assertEq(market.closeLease(lease), 14_400_000 - 9_600_000);
        assertEq(market.withdrawable(lab), 4_800_000);
    }

    function test_e_repost_anUndisputedClaimStillBlocksTheLabsClose() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.warp(uint256(T0) + DURATION + 1 hours);
        _post(lease, 0, BID_GPUS * uint64(DURATION));
        uint64 readyAt = market.pendingClaim(id).readyAt;
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketClaimPending.selector, id, readyAt));
        vm.prank(lab);
        market.closeLease(lease);
        // Posted again only by raising the amount, which the escrow bounds: the lock cannot go on.
        IMarketTypes.Receipt memory same = _receipt(lease, 1, lease.start, uint64(block.timestamp), BID_GPUS * 3600);
        bytes memory sig = _signReceipt(PROVIDER_KEY, same);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketClaimNotRaised.selector, id, 14_400_000, 14_400_000));
        vm.prank(provider);
        market.postReceipt(lease, same, sig);
    }

    // --- f. capacity griefing -------------------------------------------------------------------

    /// @notice The attack: fill an offer's GPUs and walk away with a full refund. Fixed: the offer
    /// signs a minimum charge (25% here) that the bid accepts, and a close pays it to the provider.
    function test_f_capacityGriefing_aLabThatWalksAwayPaysTheMinimumCharge() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.minChargeBps = 2_500;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.maxMinChargeBps = 2_500;
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_pair(offer, bid), BID_GPUS);
        assertEq(lease.minCharge, 3_600_000, "25% of 14.4 tUSD");

        vm.prank(lab);
        market.terminate(lease, 0); // at once, paying nothing
        assertEq(market.leaseState(id).paid, 0);
        vm.warp(uint256(T0) + CLAIM_WINDOW);
        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(id, 3_600_000, 3_600_000, bytes32(0));
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseClosed(id, 3_600_000, 10_800_000);
        vm.prank(lab);
        assertEq(market.closeLease(lease), 10_800_000);
        assertEq(market.withdrawable(provider), 3_600_000, "the provider got the minimum charge");
        assertEq(market.withdrawable(lab), 10_800_000);
        assertEq(market.leaseState(id).paid, 3_600_000);
    }

    function test_f_capacityGriefing_theMinimumIsNotChargedOnTopOfWhatWasPaid() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.minChargeBps = 2_500;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.maxMinChargeBps = 10_000;
        (IMarketTypes.Lease memory lease,) = _open(_pair(offer, bid), BID_GPUS);
        market.claim(lease, 5_000_000, bytes32(0), _voucher(lease, 5_000_000));
        vm.prank(provider);
        assertEq(market.closeLease(lease), 9_400_000);
        assertEq(market.withdrawable(provider), 5_000_000, "paid above the minimum: nothing more");
    }

    function test_f_capacityGriefing_aBidRefusesAMinimumAboveItsOwn() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.minChargeBps = 2_500;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.maxMinChargeBps = 2_499;
        Pair memory p = _pair(offer, bid);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketMinChargeTooHigh.selector, 2_500, 2_499));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
        // Nor above the whole escrow, whatever the bid accepts.
        offer.minChargeBps = 10_001;
        bid.maxMinChargeBps = type(uint16).max;
        p = _pair(offer, bid);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketMinChargeTooHigh.selector, 10_001, type(uint16).max));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    /// @notice The other side of the minimum charge: anyone may open a crossing pair and a provider
    /// may close at any time, so a charge paid at any close would let a provider fill a lab's bid
    /// itself and close in the same block, taking the charge (here all of the escrow, which the
    /// bid accepted) for no work. Fixed: the charge is owed only once the lease is over (its end,
    /// or the lab's termination); a provider giving a lease up earlier is owed none of it.
    function test_f_capacityGriefing_aProviderClosingAtOnceIsNotPaidTheMinimumCharge() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.minChargeBps = 10_000;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.maxMinChargeBps = 10_000;
        (IMarketTypes.Lease memory lease,) = _open(_pair(offer, bid), BID_GPUS);
        vm.prank(provider);
        uint256 refund = market.closeLease(lease); // before the fix: 0, the provider credited 14.4 tUSD
        assertEq(refund, 14_400_000, "the lab's whole escrow back");
        assertEq(market.withdrawable(provider), 0, "nothing for a lease the provider walked away from");
    }

    // --- g. the nonce floor ---------------------------------------------------------------------

    /// @notice The attack: an order signed with nonce 2^256 - 1 survived `cancelOrdersUpTo` of
    /// every nonce. Fixed: the largest floor cancels every nonce, that one included.
    function test_g_nonceFloor_theMaximumCancelsTheMaximumNonce() public {
        uint256 max = type(uint256).max;
        Pair memory p = _pair(_offer(provider, max), _bid(lab, max));
        vm.expectEmit(address(market));
        emit IMarketTypes.NonceFloorRaised(provider, max);
        vm.prank(provider);
        market.cancelOrdersUpTo(max);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketOrderNonceCancelled.selector, market.hashOffer(p.offer), max, max)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);

        // A lab's bid likewise.
        Pair memory q = _pair(_offer(provider2, 0), _bid(lab, max));
        vm.prank(lab);
        market.cancelOrdersUpTo(max);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketOrderNonceCancelled.selector, market.hashBid(q.bid), max, max)
        );
        market.openLease(q.offer, q.offerSig, q.bid, q.bidSig, 1);
        // And nothing raises the floor further.
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNonceFloorNotRaised.selector, max, max));
        vm.prank(lab);
        market.cancelOrdersUpTo(max);
    }

    function test_g_nonceFloor_belowTheMaximumLeavesTheMaximumNonceValid() public {
        uint256 max = type(uint256).max;
        vm.prank(provider);
        market.cancelOrdersUpTo(max - 1);
        (IMarketTypes.Lease memory lease,) = _open(_pair(_offer(provider, max), _bid(lab, 0)), 1);
        assertEq(lease.provider, provider);
    }

    // --- h. arbiters ------------------------------------------------------------------------------

    /// @notice Neither side is bound to an arbiter it did not sign; only the lease's arbiter rules,
    /// and only before the deadline.
    function test_h_arbiter_mismatchIsRefusedOnlyTheArbiterRulesAndOnlyBeforeTheDeadline() public {
        // Different arbiters, or one side naming none, do not open.
        IMarketTypes.Offer memory offer = _offer(provider, 7);
        offer.arbiter = arbiter;
        IMarketTypes.Bid memory bid = _bid(lab, 7);
        bid.arbiter = stranger;
        Pair memory p = _pair(offer, bid);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketArbiterMismatch.selector, arbiter, stranger));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
        bid.arbiter = address(0);
        p = _pair(offer, bid);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketArbiterMismatch.selector, arbiter, address(0)));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);

        // A lease naming the arbiter: nobody else rules, not the lab, the provider or a stranger.
        (IMarketTypes.Lease memory lease, bytes32 id, uint64 deadline) = _disputed(arbiter);
        assertEq(lease.arbiter, arbiter);
        address[3] memory others = [lab, provider, stranger];
        for (uint256 i = 0; i < 3; ++i) {
            vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNotArbiter.selector, id, others[i]));
            vm.prank(others[i]);
            market.ruleDispute(lease, others[i] == provider);
        }

        // At the deadline it is too late: the claim and the bond go to the provider.
        vm.warp(deadline);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketRulingTooLate.selector, id, deadline));
        vm.prank(arbiter);
        market.ruleDispute(lease, false);
        assertEq(market.finalizeClaim(lease), 7_200_000);
        assertEq(market.withdrawable(provider), 7_200_000 + 720_000);
    }
}
