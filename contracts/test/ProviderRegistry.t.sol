// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "forge-std/Test.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {TestUSD} from "../src/TestUSD.sol";

/// @notice Unit tests of the registry, deployed standalone with this test contract as its market
/// so that slashing can be called directly.
contract ProviderRegistryTest is Test {
    uint256 internal constant MIN_STAKE = 1_000e6;
    uint40 internal constant DELAY = 7 days;
    uint256 internal constant T0 = 1_700_000_000;
    string internal constant ENDPOINT = "https://gpu.example:7000";
    bytes32 internal constant KEY = keccak256("x25519 public key");
    bytes32 internal constant ATTRS = keccak256("region=eu");

    TestUSD internal usd;
    ProviderRegistry internal registry;
    address internal provider = makeAddr("provider");
    address internal other = makeAddr("other");
    address internal victim = makeAddr("victim");

    function setUp() public {
        vm.warp(T0);
        usd = new TestUSD(6);
        registry = new ProviderRegistry(IERC20(address(usd)), address(this), MIN_STAKE, DELAY);
        address[2] memory accounts = [provider, other];
        for (uint256 i = 0; i < accounts.length; ++i) {
            usd.mint(accounts[i], 1_000_000e6);
            vm.prank(accounts[i]);
            usd.approve(address(registry), type(uint256).max);
        }
    }

    function _register(address who, uint256 stake) internal {
        vm.prank(who);
        registry.register(stake, ENDPOINT, KEY, ATTRS);
    }

    // --- constructor and views ----------------------------------------------------------------

    function test_constructor_setsImmutables() public view {
        assertEq(registry.token(), address(usd));
        assertEq(registry.market(), address(this));
        assertEq(registry.minStake(), MIN_STAKE);
        assertEq(registry.unbondingDelay(), DELAY);
    }

    function test_views_unknownProviderIsEmptyAndIneligible() public view {
        IProviderRegistry.Provider memory p = registry.getProvider(provider);
        assertFalse(p.registered);
        assertEq(p.stake, 0);
        assertEq(bytes(p.endpoint).length, 0);
        (bool registered, uint256 free) = registry.stakeStatus(provider);
        assertFalse(registered);
        assertEq(free, 0);
        assertEq(registry.freeStake(provider), 0);
        assertFalse(registry.isEligible(provider));
    }

    // --- register -------------------------------------------------------------------------------

    function test_register_pullsStakeAndRecordsProfile() public {
        vm.expectEmit(address(registry));
        emit IProviderRegistry.ProviderRegistered(provider, MIN_STAKE, ENDPOINT, KEY, ATTRS);
        _register(provider, MIN_STAKE);

        IProviderRegistry.Provider memory p = registry.getProvider(provider);
        assertTrue(p.registered);
        assertEq(p.stake, MIN_STAKE);
        assertEq(p.unbonding, 0);
        assertEq(p.unbondReadyAt, 0);
        assertEq(p.encryptionKey, KEY);
        assertEq(p.attributesHash, ATTRS);
        assertEq(p.endpoint, ENDPOINT);
        assertEq(usd.balanceOf(address(registry)), MIN_STAKE);
        assertEq(usd.balanceOf(provider), 1_000_000e6 - MIN_STAKE);
        assertTrue(registry.isEligible(provider));
    }

    function test_register_withZeroStakeRegistersIneligibleWithoutTransfer() public {
        vm.recordLogs();
        _register(provider, 0);
        assertEq(vm.getRecordedLogs().length, 1, "only ProviderRegistered, no Transfer");
        (bool registered, uint256 free) = registry.stakeStatus(provider);
        assertTrue(registered);
        assertEq(free, 0);
        assertFalse(registry.isEligible(provider));
        assertEq(usd.balanceOf(address(registry)), 0);
    }

    function test_register_revertsWhenAlreadyRegistered() public {
        _register(provider, MIN_STAKE);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryAlreadyRegistered.selector, provider));
        _register(provider, MIN_STAKE);
    }

    function test_register_revertsWhenStakeOverflowsUint96() public {
        uint256 tooMuch = uint256(type(uint96).max) + 1;
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryStakeOverflow.selector, tooMuch));
        _register(provider, tooMuch);
    }

    function test_register_revertsWithoutAllowance() public {
        address poor = makeAddr("poor");
        usd.mint(poor, MIN_STAKE);
        vm.expectRevert(
            abi.encodeWithSelector(
                IERC20Errors.ERC20InsufficientAllowance.selector, address(registry), 0, MIN_STAKE
            )
        );
        _register(poor, MIN_STAKE);
    }

    // --- updateProfile --------------------------------------------------------------------------

    function test_updateProfile_replacesEndpointKeyAndAttributes() public {
        _register(provider, MIN_STAKE);
        bytes32 newKey = keccak256("rotated key");
        bytes32 newAttrs = keccak256("region=us");
        vm.expectEmit(address(registry));
        emit IProviderRegistry.ProviderUpdated(provider, "https://new.example", newKey, newAttrs);
        vm.prank(provider);
        registry.updateProfile("https://new.example", newKey, newAttrs);

        IProviderRegistry.Provider memory p = registry.getProvider(provider);
        assertEq(p.endpoint, "https://new.example");
        assertEq(p.encryptionKey, newKey);
        assertEq(p.attributesHash, newAttrs);
        assertEq(p.stake, MIN_STAKE, "stake untouched");
    }

    function test_updateProfile_revertsWhenNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotRegistered.selector, provider));
        vm.prank(provider);
        registry.updateProfile(ENDPOINT, KEY, ATTRS);
    }

    // --- addStake -------------------------------------------------------------------------------

    function test_addStake_increasesStakeAndPullsTokens() public {
        _register(provider, MIN_STAKE);
        vm.expectEmit(address(registry));
        emit IProviderRegistry.StakeAdded(provider, 500e6, MIN_STAKE + 500e6);
        vm.prank(provider);
        registry.addStake(500e6);
        assertEq(registry.getProvider(provider).stake, MIN_STAKE + 500e6);
        assertEq(registry.freeStake(provider), MIN_STAKE + 500e6);
        assertEq(usd.balanceOf(address(registry)), MIN_STAKE + 500e6);
    }

    function test_addStake_makesUnderstakedProviderEligible() public {
        _register(provider, MIN_STAKE - 1);
        assertFalse(registry.isEligible(provider));
        vm.prank(provider);
        registry.addStake(1);
        assertTrue(registry.isEligible(provider));
    }

    function test_addStake_revertsOnZero() public {
        _register(provider, MIN_STAKE);
        vm.expectRevert(IProviderRegistry.RegistryZeroAmount.selector);
        vm.prank(provider);
        registry.addStake(0);
    }

    function test_addStake_revertsWhenNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotRegistered.selector, provider));
        vm.prank(provider);
        registry.addStake(1);
    }

    function test_addStake_revertsWhenTotalOverflowsUint96() public {
        _register(provider, MIN_STAKE);
        uint256 amount = uint256(type(uint96).max) - MIN_STAKE + 1;
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.RegistryStakeOverflow.selector, uint256(type(uint96).max) + 1)
        );
        vm.prank(provider);
        registry.addStake(amount);
    }

    function test_addStake_acceptsExactlyUint96Max() public {
        _register(provider, MIN_STAKE);
        uint256 amount = uint256(type(uint96).max) - MIN_STAKE;
        usd.mint(provider, amount);
        vm.prank(provider);
        registry.addStake(amount);
        assertEq(registry.getProvider(provider).stake, type(uint96).max);
    }

    // --- requestUnstake -------------------------------------------------------------------------

    function test_requestUnstake_startsUnbondingAndReducesFreeStake() public {
        _register(provider, MIN_STAKE);
        uint40 readyAt = uint40(T0) + DELAY;
        vm.expectEmit(address(registry));
        emit IProviderRegistry.UnstakeRequested(provider, 400e6, 400e6, readyAt);
        vm.prank(provider);
        registry.requestUnstake(400e6);

        IProviderRegistry.Provider memory p = registry.getProvider(provider);
        assertEq(p.stake, MIN_STAKE, "unbonding stake is still stake");
        assertEq(p.unbonding, 400e6);
        assertEq(p.unbondReadyAt, readyAt);
        assertEq(registry.freeStake(provider), MIN_STAKE - 400e6);
        (bool registered, uint256 free) = registry.stakeStatus(provider);
        assertTrue(registered);
        assertEq(free, MIN_STAKE - 400e6);
        assertFalse(registry.isEligible(provider));
        assertEq(usd.balanceOf(address(registry)), MIN_STAKE, "nothing leaves before withdraw");
    }

    function test_requestUnstake_secondRequestAddsUpAndRestartsDelay() public {
        _register(provider, MIN_STAKE);
        vm.prank(provider);
        registry.requestUnstake(100e6);
        vm.warp(T0 + 3 days);
        uint40 readyAt = uint40(T0 + 3 days) + DELAY;
        vm.expectEmit(address(registry));
        emit IProviderRegistry.UnstakeRequested(provider, 200e6, 300e6, readyAt);
        vm.prank(provider);
        registry.requestUnstake(200e6);
        assertEq(registry.getProvider(provider).unbonding, 300e6);
        assertEq(registry.getProvider(provider).unbondReadyAt, readyAt);
    }

    function test_requestUnstake_revertsWhenExceedingFreeStake() public {
        _register(provider, MIN_STAKE);
        vm.prank(provider);
        registry.requestUnstake(600e6);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.RegistryUnstakeExceedsFree.selector, 400e6 + 1, 400e6)
        );
        vm.prank(provider);
        registry.requestUnstake(400e6 + 1);
    }

    function test_requestUnstake_acceptsAllFreeStake() public {
        _register(provider, MIN_STAKE);
        vm.prank(provider);
        registry.requestUnstake(MIN_STAKE);
        assertEq(registry.freeStake(provider), 0);
    }

    function test_requestUnstake_revertsOnZero() public {
        _register(provider, MIN_STAKE);
        vm.expectRevert(IProviderRegistry.RegistryZeroAmount.selector);
        vm.prank(provider);
        registry.requestUnstake(0);
    }

    function test_requestUnstake_revertsWhenNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotRegistered.selector, provider));
        vm.prank(provider);
        registry.requestUnstake(1);
    }

    // --- withdraw -------------------------------------------------------------------------------

    function test_withdraw_revertsBeforeUnbondingDelay() public {
        _register(provider, MIN_STAKE);
        vm.prank(provider);
        registry.requestUnstake(400e6);
        uint40 readyAt = uint40(T0) + DELAY;
        vm.warp(readyAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotWithdrawable.selector, 400e6, readyAt));
        vm.prank(provider);
        registry.withdraw();
    }

    function test_withdraw_paysUnbondedStakeAtReadyTime() public {
        _register(provider, MIN_STAKE);
        vm.prank(provider);
        registry.requestUnstake(400e6);
        vm.warp(uint256(T0) + DELAY);
        uint256 before = usd.balanceOf(provider);

        vm.expectEmit(address(registry));
        emit IProviderRegistry.StakeWithdrawn(provider, 400e6, MIN_STAKE - 400e6);
        vm.prank(provider);
        uint256 amount = registry.withdraw();

        assertEq(amount, 400e6);
        assertEq(usd.balanceOf(provider), before + 400e6);
        assertEq(usd.balanceOf(address(registry)), MIN_STAKE - 400e6);
        IProviderRegistry.Provider memory p = registry.getProvider(provider);
        assertEq(p.stake, MIN_STAKE - 400e6);
        assertEq(p.unbonding, 0);
        assertTrue(p.registered, "withdrawing everything keeps the registration");
    }

    function test_withdraw_revertsWhenNothingUnbonding() public {
        _register(provider, MIN_STAKE);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotWithdrawable.selector, 0, 0));
        vm.prank(provider);
        registry.withdraw();
    }

    function test_withdraw_revertsWhenCalledTwice() public {
        _register(provider, MIN_STAKE);
        vm.prank(provider);
        registry.requestUnstake(MIN_STAKE);
        uint40 readyAt = uint40(T0) + DELAY;
        vm.warp(readyAt);
        vm.prank(provider);
        registry.withdraw();
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotWithdrawable.selector, 0, readyAt));
        vm.prank(provider);
        registry.withdraw();
    }

    function test_withdraw_revertsWhenNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryNotRegistered.selector, provider));
        vm.prank(provider);
        registry.withdraw();
    }

    // --- slash ----------------------------------------------------------------------------------

    function test_slash_revertsWhenCallerIsNotMarket() public {
        _register(provider, MIN_STAKE);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryOnlyMarket.selector, other));
        vm.prank(other);
        registry.slash(provider, 1);
    }

    function test_slash_reducesStakeAndKeepsTheTokensForRelease() public {
        _register(provider, MIN_STAKE);
        vm.recordLogs();
        uint256 slashed = registry.slash(provider, 300e6);
        // The market's LeaseSlashed is the record of a slash; no token moves.
        assertEq(vm.getRecordedLogs().length, 0, "no event, no transfer");
        assertEq(slashed, 300e6);
        assertEq(usd.balanceOf(victim), 0);
        assertEq(registry.getProvider(provider).stake, MIN_STAKE - 300e6);
        assertEq(usd.balanceOf(address(registry)), MIN_STAKE, "slashed stake held until released");
        assertFalse(registry.isEligible(provider));
    }

    function test_slash_capsAtStake() public {
        _register(provider, MIN_STAKE);
        uint256 slashed = registry.slash(provider, type(uint256).max);
        assertEq(slashed, MIN_STAKE);
        assertEq(registry.getProvider(provider).stake, 0);
        assertEq(usd.balanceOf(address(registry)), MIN_STAKE);
    }

    function test_release_sendsSlashedStakeToTheBeneficiary() public {
        _register(provider, MIN_STAKE);
        registry.slash(provider, 300e6);
        registry.release(victim, 300e6);
        assertEq(usd.balanceOf(victim), 300e6);
        assertEq(usd.balanceOf(address(registry)), MIN_STAKE - 300e6);
        assertEq(registry.getProvider(provider).stake, MIN_STAKE - 300e6);
    }

    function test_release_revertsWhenCallerIsNotMarket() public {
        _register(provider, MIN_STAKE);
        registry.slash(provider, 300e6);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryOnlyMarket.selector, victim));
        vm.prank(victim);
        registry.release(victim, 300e6);
    }

    function test_slash_reducesUnbondingToRemainingStake() public {
        _register(provider, MIN_STAKE);
        vm.prank(provider);
        registry.requestUnstake(800e6);
        registry.slash(provider, 500e6);
        IProviderRegistry.Provider memory p = registry.getProvider(provider);
        assertEq(p.stake, 500e6);
        assertEq(p.unbonding, 500e6, "unbonding capped at the remaining stake");
        assertEq(p.unbondReadyAt, uint40(T0) + DELAY, "the rest of the word is kept");
        assertTrue(p.registered);
        assertEq(registry.freeStake(provider), 0);

        vm.warp(uint256(T0) + DELAY);
        vm.prank(provider);
        assertEq(registry.withdraw(), 500e6);
        assertEq(registry.getProvider(provider).stake, 0);
    }

    function test_slash_leavesUnbondingBelowRemainingStakeUntouched() public {
        _register(provider, MIN_STAKE);
        vm.prank(provider);
        registry.requestUnstake(200e6);
        registry.slash(provider, 300e6);
        IProviderRegistry.Provider memory p = registry.getProvider(provider);
        assertEq(p.stake, 700e6);
        assertEq(p.unbonding, 200e6);
        assertEq(registry.freeStake(provider), 500e6);
    }

    function test_slash_ofUnknownProviderTakesNothing() public {
        vm.recordLogs();
        uint256 slashed = registry.slash(other, 1e6);
        assertEq(slashed, 0);
        assertEq(vm.getRecordedLogs().length, 0);
    }

    // --- fuzz -----------------------------------------------------------------------------------

    function testFuzz_stakeAccounting_freeIsStakeMinusUnbonding(uint96 stake, uint96 unstake, uint96 slashAmount)
        public
    {
        stake = uint96(bound(stake, 1, 1_000_000e6));
        unstake = uint96(bound(unstake, 1, stake));
        _register(provider, stake);
        vm.prank(provider);
        registry.requestUnstake(unstake);
        uint256 slashed = registry.slash(provider, slashAmount);

        IProviderRegistry.Provider memory p = registry.getProvider(provider);
        assertEq(slashed, slashAmount < stake ? slashAmount : stake);
        assertEq(p.stake, stake - slashed);
        assertLe(p.unbonding, p.stake);
        assertEq(registry.freeStake(provider), p.stake - p.unbonding);
        assertEq(registry.isEligible(provider), p.stake - p.unbonding >= MIN_STAKE);
        assertEq(usd.balanceOf(address(registry)), stake, "slashed stake stays until released");
        registry.release(victim, slashed);
        assertEq(usd.balanceOf(address(registry)) + usd.balanceOf(victim), stake);
    }
}
