// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IMarketTypes} from "../src/interfaces/IMarketTypes.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";

/// @notice The market as the provider registry: registration, profile, stake, unbonding and
/// withdrawal of stake (all tokens held by the market), and the stake each lease locks until its
/// proof window is over. A 6-decimals TestUSD, no fee; `alice` is a provider not yet registered.
contract MarketStakeTest is MarketFixture {
    string internal constant ENDPOINT = "https://gpu.example:7000";
    bytes32 internal constant KEY = keccak256("x25519 public key");
    bytes32 internal constant ATTRS = keccak256("region=eu");
    uint256 internal constant ALICE_KEY = 0xA71CE;

    TestUSD internal usd;
    address internal alice = vm.addr(ALICE_KEY);
    uint256 internal aliceStart;

    function setUp() public {
        usd = new TestUSD(6);
        _deploy(address(usd), 6, 0, address(0));
        usd.mint(alice, 1_000_000 * unit);
        vm.prank(alice);
        usd.approve(address(market), type(uint256).max);
        aliceStart = usd.balanceOf(alice);
    }

    function _register(address who, uint256 stake) internal {
        vm.prank(who);
        market.register(stake, ENDPOINT, KEY, ATTRS);
    }

    /// @dev A lease of `gpus` GPUs from the provider to the lab for DURATION, opened now.
    function _openLease(uint256 nonce, uint32 gpus) internal returns (IMarketTypes.Lease memory lease, bytes32 id) {
        return _open(_pair(_offer(provider, nonce), _bid(lab, nonce)), gpus);
    }

    // --- views ----------------------------------------------------------------------------------

    function test_views_parametersOfTheRegistry() public view {
        assertEq(market.minStake(), minStake);
        assertEq(market.unbondingDelay(), UNBONDING_DELAY);
    }

    function test_views_unknownProviderIsEmptyAndIneligible() public view {
        IProviderRegistry.Provider memory p = market.getProvider(alice);
        assertFalse(p.registered);
        assertEq(p.stake, 0);
        assertEq(p.locked, 0);
        assertEq(p.unbonding, 0);
        assertEq(bytes(p.endpoint).length, 0);
        assertEq(market.freeStake(alice), 0);
        assertFalse(market.isEligible(alice));
    }

    // --- register -------------------------------------------------------------------------------

    function test_register_pullsStakeIntoTheMarketAndRecordsProfile() public {
        uint256 marketBefore = usd.balanceOf(address(market));
        vm.expectEmit(address(market));
        emit IProviderRegistry.ProviderRegistered(alice, minStake, ENDPOINT, KEY, ATTRS);
        _register(alice, minStake);

        IProviderRegistry.Provider memory p = market.getProvider(alice);
        assertTrue(p.registered);
        assertEq(p.stake, minStake);
        assertEq(p.locked, 0);
        assertEq(p.unbonding, 0);
        assertEq(p.unbondReadyAt, 0);
        assertEq(p.encryptionKey, KEY);
        assertEq(p.attributesHash, ATTRS);
        assertEq(p.endpoint, ENDPOINT);
        assertEq(usd.balanceOf(address(market)), marketBefore + minStake, "the market holds the stake");
        assertEq(usd.balanceOf(alice), aliceStart - minStake);
        assertTrue(market.isEligible(alice));
        assertEq(market.freeStake(alice), minStake);
    }

    function test_register_withZeroStakeRegistersIneligibleWithoutTransfer() public {
        vm.recordLogs();
        _register(alice, 0);
        assertEq(vm.getRecordedLogs().length, 1, "only ProviderRegistered, no Transfer");
        assertTrue(market.getProvider(alice).registered);
        assertFalse(market.isEligible(alice));
        assertEq(market.freeStake(alice), 0);

        // No lease opens against it.
        IMarketTypes.Offer memory offer = _offer(alice, 0);
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        Pair memory p = Pair(offer, _sign(ALICE_KEY, market.hashOffer(offer)), bid, _signBid(bid));
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketProviderStakeTooLow.selector, alice, 0, minStake));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_register_revertsWhenAlreadyRegistered() public {
        _register(alice, minStake);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryAlreadyRegistered.selector, alice));
        _register(alice, minStake);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryAlreadyRegistered.selector, provider));
        _register(provider, 0);
    }

    function test_register_revertsWhenStakeOverflowsUint96() public {
        uint256 tooMuch = uint256(type(uint96).max) + 1;
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryStakeOverflow.selector, tooMuch));
        _register(alice, tooMuch);
    }

    function test_register_revertsWithoutAllowanceOfTheMarket() public {
        address poor = makeAddr("poor");
        usd.mint(poor, minStake);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, minStake)
        );
        _register(poor, minStake);
        assertFalse(market.getProvider(poor).registered);
    }

    // --- updateProfile --------------------------------------------------------------------------

    function test_updateProfile_replacesEndpointKeyAndAttributes() public {
        _register(alice, minStake);
        bytes32 newKey = keccak256("rotated key");
        bytes32 newAttrs = keccak256("region=us");
        vm.expectEmit(address(market));
        emit IProviderRegistry.ProviderUpdated(alice, "https://new.example", newKey, newAttrs);
        vm.prank(alice);
        market.updateProfile("https://new.example", newKey, newAttrs);

        IProviderRegistry.Provider memory p = market.getProvider(alice);
        assertEq(p.endpoint, "https://new.example");
        assertEq(p.encryptionKey, newKey);
        assertEq(p.attributesHash, newAttrs);
        assertEq(p.stake, minStake, "stake untouched");
    }

    function test_updateProfile_keepsTheStakeLocksOfOpenLeases() public {
        (IMarketTypes.Lease memory lease,) = _openLease(0, BID_GPUS);
        vm.prank(provider);
        market.updateProfile("https://moved.example", KEY, ATTRS);
        assertEq(market.getProvider(provider).locked, _leaseLock(lease));
        assertEq(market.getProvider(provider).stake, minStake);
    }

    function test_updateProfile_revertsWhenNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotRegistered.selector, alice));
        vm.prank(alice);
        market.updateProfile(ENDPOINT, KEY, ATTRS);
    }

    // --- addStake -------------------------------------------------------------------------------

    function test_addStake_increasesStakeAndPullsTokensIntoTheMarket() public {
        _register(alice, minStake);
        uint256 marketBefore = usd.balanceOf(address(market));
        vm.expectEmit(address(market));
        emit IProviderRegistry.StakeAdded(alice, 500e6, minStake + 500e6);
        vm.prank(alice);
        market.addStake(500e6);
        assertEq(market.getProvider(alice).stake, minStake + 500e6);
        assertEq(market.freeStake(alice), minStake + 500e6);
        assertEq(usd.balanceOf(address(market)), marketBefore + 500e6);
    }

    function test_addStake_makesAnUnderstakedProviderEligible() public {
        _register(alice, minStake - 1);
        assertFalse(market.isEligible(alice));
        vm.prank(alice);
        market.addStake(1);
        assertTrue(market.isEligible(alice));
    }

    function test_addStake_coversTheLockOfALargerLease() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.duration = 1 days;
        bid.gpuCount = OFFER_GPUS;
        Pair memory p = _pair(_offer(provider, 0), bid);
        uint256 lock = _lockOf(price * OFFER_GPUS * 1 days); // 691.2 tUSD of a 1,000 tUSD stake
        _open(p, OFFER_GPUS);
        bid.nonce = 1;
        Pair memory again = _pair(_offer(provider, 1), bid);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketStakeLockUncovered.selector, provider, minStake - lock, lock)
        );
        market.openLease(again.offer, again.offerSig, again.bid, again.bidSig, OFFER_GPUS);
        _addStake(provider, 2 * lock - minStake);
        _open(again, OFFER_GPUS);
        assertEq(market.getProvider(provider).locked, 2 * lock);
        assertEq(market.freeStake(provider), 0);
    }

    function test_addStake_revertsOnZero() public {
        _register(alice, minStake);
        vm.expectRevert(IProviderRegistry.RegistryZeroAmount.selector);
        vm.prank(alice);
        market.addStake(0);
    }

    function test_addStake_revertsWhenNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotRegistered.selector, alice));
        vm.prank(alice);
        market.addStake(1);
    }

    function test_addStake_revertsWhenTotalOverflowsUint96() public {
        _register(alice, minStake);
        uint256 amount = uint256(type(uint96).max) - minStake + 1;
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.RegistryStakeOverflow.selector, uint256(type(uint96).max) + 1)
        );
        vm.prank(alice);
        market.addStake(amount);
    }

    function test_addStake_acceptsExactlyUint96Max() public {
        _register(alice, minStake);
        uint256 amount = uint256(type(uint96).max) - minStake;
        usd.mint(alice, amount);
        vm.prank(alice);
        market.addStake(amount);
        assertEq(market.getProvider(alice).stake, type(uint96).max);
    }

    // --- requestUnstake -------------------------------------------------------------------------

    function test_requestUnstake_movesStakeToUnbondingAndKeepsTheTokens() public {
        _register(alice, minStake);
        uint256 marketBefore = usd.balanceOf(address(market));
        uint40 readyAt = uint40(T0) + UNBONDING_DELAY;
        vm.expectEmit(address(market));
        emit IProviderRegistry.UnstakeRequested(alice, 400e6, 400e6, readyAt);
        vm.prank(alice);
        market.requestUnstake(400e6);

        IProviderRegistry.Provider memory p = market.getProvider(alice);
        assertEq(p.stake, minStake - 400e6, "unbonding stake is no longer bonded");
        assertEq(p.unbonding, 400e6);
        assertEq(p.unbondReadyAt, readyAt);
        assertEq(market.freeStake(alice), minStake - 400e6);
        assertFalse(market.isEligible(alice), "bonded stake below the minimum");
        assertEq(usd.balanceOf(address(market)), marketBefore, "nothing leaves before withdrawStake");
    }

    function test_requestUnstake_secondRequestAddsUpAndRestartsDelay() public {
        _register(alice, minStake);
        vm.prank(alice);
        market.requestUnstake(100e6);
        vm.warp(T0 + 3 days);
        uint40 readyAt = uint40(T0 + 3 days) + UNBONDING_DELAY;
        vm.expectEmit(address(market));
        emit IProviderRegistry.UnstakeRequested(alice, 200e6, 300e6, readyAt);
        vm.prank(alice);
        market.requestUnstake(200e6);
        assertEq(market.getProvider(alice).unbonding, 300e6);
        assertEq(market.getProvider(alice).unbondReadyAt, readyAt);
        assertEq(market.getProvider(alice).stake, minStake - 300e6);
    }

    function test_requestUnstake_revertsWhenExceedingFreeStake() public {
        _register(alice, minStake);
        vm.prank(alice);
        market.requestUnstake(600e6);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryUnstakeExceedsFree.selector, 400e6 + 1, 400e6));
        vm.prank(alice);
        market.requestUnstake(400e6 + 1);
    }

    function test_requestUnstake_takesOnlyWhatNoLeaseLocks() public {
        (IMarketTypes.Lease memory lease,) = _openLease(0, BID_GPUS);
        uint256 lock = _leaseLock(lease);
        uint256 free = minStake - lock;
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryUnstakeExceedsFree.selector, minStake, free));
        vm.prank(provider);
        market.requestUnstake(minStake);
        vm.prank(provider);
        market.requestUnstake(free);
        IProviderRegistry.Provider memory p = market.getProvider(provider);
        assertEq(p.stake, lock, "the lock stays bonded");
        assertEq(p.locked, lock);
        assertEq(p.unbonding, free);
        assertEq(market.freeStake(provider), 0);
    }

    function test_requestUnstake_acceptsAllFreeStake() public {
        _register(alice, minStake);
        vm.prank(alice);
        market.requestUnstake(minStake);
        assertEq(market.freeStake(alice), 0);
        assertEq(market.getProvider(alice).stake, 0);
    }

    function test_requestUnstake_revertsOnZero() public {
        _register(alice, minStake);
        vm.expectRevert(IProviderRegistry.RegistryZeroAmount.selector);
        vm.prank(alice);
        market.requestUnstake(0);
    }

    function test_requestUnstake_revertsWhenNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotRegistered.selector, alice));
        vm.prank(alice);
        market.requestUnstake(1);
    }

    // --- withdrawStake --------------------------------------------------------------------------

    function test_withdrawStake_revertsBeforeTheUnbondingDelay() public {
        _register(alice, minStake);
        vm.prank(alice);
        market.requestUnstake(400e6);
        uint40 readyAt = uint40(T0) + UNBONDING_DELAY;
        vm.warp(readyAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotWithdrawable.selector, 400e6, readyAt));
        vm.prank(alice);
        market.withdrawStake();
    }

    function test_withdrawStake_paysUnbondedStakeFromTheMarketAtReadyTime() public {
        _register(alice, minStake);
        vm.prank(alice);
        market.requestUnstake(400e6);
        vm.warp(uint256(T0) + UNBONDING_DELAY);
        uint256 before = usd.balanceOf(alice);
        uint256 marketBefore = usd.balanceOf(address(market));

        vm.expectEmit(address(market));
        emit IProviderRegistry.StakeWithdrawn(alice, 400e6, minStake - 400e6);
        vm.prank(alice);
        uint256 amount = market.withdrawStake();

        assertEq(amount, 400e6);
        assertEq(usd.balanceOf(alice), before + 400e6);
        assertEq(usd.balanceOf(address(market)), marketBefore - 400e6);
        IProviderRegistry.Provider memory p = market.getProvider(alice);
        assertEq(p.stake, minStake - 400e6);
        assertEq(p.unbonding, 0);
        assertTrue(p.registered, "withdrawing keeps the registration");
    }

    function test_withdrawStake_leavesCreditsAndOtherStakesAlone() public {
        (IMarketTypes.Lease memory lease,) = _openLease(0, BID_GPUS);
        market.claim(lease, 1_000_000, bytes32(0), _voucher(lease, 1_000_000));
        uint256 free = minStake - _leaseLock(lease);
        vm.prank(provider);
        market.requestUnstake(free);
        vm.warp(uint256(T0) + UNBONDING_DELAY);
        vm.prank(provider);
        assertEq(market.withdrawStake(), free);
        assertEq(market.withdrawable(provider), 1_000_000, "its credit is apart");
        assertEq(usd.balanceOf(address(market)), staked - free + _escrowOf(lease));
    }

    function test_withdrawStake_revertsWhenNothingIsUnbonding() public {
        _register(alice, minStake);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotWithdrawable.selector, 0, 0));
        vm.prank(alice);
        market.withdrawStake();
    }

    function test_withdrawStake_revertsWhenCalledTwice() public {
        _register(alice, minStake);
        vm.prank(alice);
        market.requestUnstake(minStake);
        uint40 readyAt = uint40(T0) + UNBONDING_DELAY;
        vm.warp(readyAt);
        vm.prank(alice);
        market.withdrawStake();
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotWithdrawable.selector, 0, readyAt));
        vm.prank(alice);
        market.withdrawStake();
    }

    function test_withdrawStake_revertsWhenNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotRegistered.selector, alice));
        vm.prank(alice);
        market.withdrawStake();
    }

    // --- the lock of a lease ----------------------------------------------------------------------

    function test_openLease_locksEscrowTimesTheRatioOfTheProvidersStake() public {
        (IMarketTypes.Lease memory lease,) = _openLease(0, BID_GPUS);
        uint256 lock = _escrowOf(lease) * STAKE_RATIO_BPS / 10_000;
        assertEq(lock, 14_400_000);
        IProviderRegistry.Provider memory p = market.getProvider(provider);
        assertEq(p.stake, minStake, "locking moves nothing out of the stake");
        assertEq(p.locked, lock);
        assertEq(market.freeStake(provider), minStake - lock);
        assertTrue(market.isEligible(provider));
        (IMarketTypes.Lease memory second,) = _openLease(1, 1);
        assertEq(market.getProvider(provider).locked, lock + _leaseLock(second));
    }

    function test_openLease_revertsWhenTheLockIsNotCoveredWithTheNumbers() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.pricePerGpuSecond = price * 100;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.maxPricePerGpuSecond = price * 100;
        Pair memory p = _pair(offer, bid);
        uint256 lock = _lockOf(price * 100 * 3 * DURATION); // 1,080 tUSD of a 1,000 tUSD stake
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketStakeLockUncovered.selector, provider, minStake, lock));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 3);
        _open(p, 2); // 720 tUSD: covered
        assertEq(market.freeStake(provider), minStake - _lockOf(price * 100 * 2 * DURATION));
    }

    function test_openLease_refusesAProviderWhoseBondedStakeFellBelowTheMinimum() public {
        vm.prank(provider);
        market.requestUnstake(1);
        Pair memory p = _defaultPair();
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketProviderStakeTooLow.selector, provider, minStake - 1, minStake)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_locksNothingAtAZeroRatio() public {
        stakeRatioBps = 0;
        _deploy(address(new TestUSD(6)), 6, 0, address(0));
        _openLease(0, BID_GPUS);
        assertEq(market.getProvider(provider).locked, 0);
        assertEq(market.freeStake(provider), minStake);
    }

    function test_openLease_locksTwiceTheEscrowAtTwiceTheRatio() public {
        stakeRatioBps = 20_000;
        _deploy(address(new TestUSD(6)), 6, 0, address(0));
        (IMarketTypes.Lease memory lease,) = _openLease(0, BID_GPUS);
        assertEq(market.getProvider(provider).locked, 2 * _escrowOf(lease));
    }

    function test_closeLease_beforeTheProofWindowEndsKeepsTheLock() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _openLease(0, BID_GPUS);
        vm.recordLogs();
        vm.prank(provider);
        market.closeLease(lease);
        assertEq(vm.getRecordedLogs().length, 1, "LeaseClosed only: no StakeReleased");
        assertFalse(market.leaseState(id).stakeReleased);
        assertEq(market.getProvider(provider).locked, _leaseLock(lease));
    }

    function test_closeLease_afterTheProofWindowReleasesTheLock() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _openLease(0, BID_GPUS);
        uint256 lock = _leaseLock(lease);
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW);
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseClosed(id, 0, _escrowOf(lease));
        vm.expectEmit(address(market));
        emit IMarketTypes.StakeReleased(id, provider, lock);
        vm.prank(lab);
        market.closeLease(lease);
        assertTrue(market.leaseState(id).stakeReleased);
        assertEq(market.getProvider(provider).locked, 0);
        assertEq(market.freeStake(provider), minStake);
    }

    function test_releaseStake_releasesAClosedLeasesLockOnceItsWindowIsOver() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _openLease(0, BID_GPUS);
        uint256 lock = _leaseLock(lease);
        // Active: nothing to release.
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketLeaseNotClosed.selector, id, IMarketTypes.LeaseStatus.Active)
        );
        market.releaseStake(lease);
        vm.prank(provider);
        market.closeLease(lease);
        uint256 releasableAt = uint256(T0) + DURATION + CLAIM_WINDOW;
        vm.warp(releasableAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketStakeHeld.selector, id, releasableAt));
        market.releaseStake(lease);

        vm.warp(releasableAt);
        vm.expectEmit(address(market));
        emit IMarketTypes.StakeReleased(id, provider, lock);
        vm.prank(stranger); // anyone may release it
        assertEq(market.releaseStake(lease), lock);
        assertEq(market.getProvider(provider).locked, 0);
        assertTrue(market.leaseState(id).stakeReleased);

        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketStakeReleased.selector, id));
        market.releaseStake(lease);
    }

    function test_releaseStake_countsTheWindowFromATermination() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _openLease(0, BID_GPUS);
        vm.warp(T0 + 10 minutes);
        vm.prank(lab);
        market.terminate(lease, 0);
        vm.prank(provider);
        market.closeLease(lease);
        vm.warp(uint256(T0) + 10 minutes + CLAIM_WINDOW);
        assertEq(market.releaseStake(lease), _leaseLock(lease));
        assertTrue(market.leaseState(id).stakeReleased);
    }

    function test_releaseStake_revertsForUnknownAndSlashedLeases() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _openLease(0, BID_GPUS);
        IMarketTypes.Lease memory unknown = _copy(lease);
        unknown.salt = keccak256("nope");
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarketTypes.MarketLeaseNotClosed.selector, keccak256(abi.encode(unknown)), IMarketTypes.LeaseStatus.None
            )
        );
        market.releaseStake(unknown);
        IMarketTypes.Receipt memory a = _receipt(lease, 0, T0, T0 + 60, 60);
        IMarketTypes.Receipt memory b = _receipt(lease, 0, T0, T0 + 60, 59);
        vm.warp(T0 + 60);
        _proveEquivocation(lease, a, _signReceipt(PROVIDER_KEY, a), b, _signReceipt(PROVIDER_KEY, b));
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketStakeReleased.selector, id));
        market.releaseStake(lease);
    }

    function test_slash_revertsOnceTheLockWasReleased() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _openLease(0, BID_GPUS);
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW);
        vm.prank(lab);
        market.closeLease(lease);
        IMarketTypes.Receipt memory a = _receipt(lease, 0, T0, T0 + 60, 60);
        IMarketTypes.Receipt memory b = _receipt(lease, 0, T0, T0 + 60, 59);
        bytes memory sigA = _signReceipt(PROVIDER_KEY, a);
        bytes memory sigB = _signReceipt(PROVIDER_KEY, b);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketStakeReleased.selector, id));
        _proveEquivocation(lease, a, sigA, b, sigB);
        IMarketTypes.Receipt memory future = _receipt(lease, 1, T0, uint64(block.timestamp) + 1, 0);
        bytes memory sig = _signReceipt(PROVIDER_KEY, future);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketStakeReleased.selector, id));
        _proveImpossibleUsage(lease, future, sig);
        assertEq(market.getProvider(provider).stake, minStake, "nothing slashed");
    }

    // --- fuzz -----------------------------------------------------------------------------------

    /// @notice Whatever the stake, the lease and the unstaking, the lock stays bonded until a proof
    /// takes it, the unbonding stake is untouched by the proof, and the market's balance is
    /// exactly the stakes, the unbonding and the credits.
    function testFuzz_stakeAccounting_locksUnstakeAndSlash(uint96 extra, uint32 gpus, uint256 unstake, bool slash)
        public
    {
        extra = uint96(bound(extra, 0, 100_000 * unit));
        gpus = uint32(bound(gpus, 1, BID_GPUS));
        if (extra > 0) _addStake(provider, extra);
        uint256 stake = minStake + extra;
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), gpus);
        uint256 lock = _leaseLock(lease);
        unstake = bound(unstake, 0, stake - lock + 1);
        vm.prank(provider);
        if (unstake == 0) {
            vm.expectRevert(IProviderRegistry.RegistryZeroAmount.selector);
        } else if (unstake > stake - lock) {
            vm.expectRevert(
                abi.encodeWithSelector(IProviderRegistry.RegistryUnstakeExceedsFree.selector, unstake, stake - lock)
            );
        }
        market.requestUnstake(unstake);
        uint256 unbonding = unstake > 0 && unstake <= stake - lock ? unstake : 0;

        uint256 slashed = 0;
        if (slash) {
            IMarketTypes.Receipt memory a = _receipt(lease, 0, T0, T0, 1);
            IMarketTypes.Receipt memory b = _receipt(lease, 0, T0, T0, 0);
            slashed = _proveEquivocation(lease, a, _signReceipt(PROVIDER_KEY, a), b, _signReceipt(PROVIDER_KEY, b));
            assertEq(slashed, lock);
        }
        IProviderRegistry.Provider memory p = market.getProvider(provider);
        assertEq(p.stake, stake - unbonding - slashed);
        assertEq(p.locked, slash ? 0 : lock);
        assertEq(p.unbonding, unbonding);
        assertEq(market.freeStake(provider), p.stake - p.locked);
        assertEq(
            usd.balanceOf(address(market)),
            staked + _escrowOf(lease),
            "stakes and escrow (or its refund and the slashed stake credited to the lab) stay in the market"
        );
        (uint256 slashedCredit,) = market.slashedCredit(lab);
        assertEq(slashedCredit, slashed);
        assertEq(market.isEligible(provider), p.stake >= minStake);
    }
}
