// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Vm} from "forge-std/Vm.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IMarketTypes} from "../src/interfaces/IMarketTypes.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {BlacklistToken} from "./helpers/BlacklistToken.sol";
import {CallbackToken, ReentrantWithdrawer} from "./helpers/CallbackToken.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";

/// @notice Pull payments: claims, terminations and closes credit accounts inside the market, and
/// `withdraw` sends an account its whole credit. A 2.5% fee, so the treasury is credited too.
contract MarketWithdrawTest is MarketFixture {
    uint16 internal constant FEE_BPS = 250;

    function setUp() public {
        _deploy(address(new TestUSD(6)), 6, FEE_BPS, treasury);
    }

    function test_withdraw_sendsTheCreditOfSeveralClaimsInOneTransfer() public {
        Pair memory p = _defaultPair();
        (IMarketTypes.Lease memory a,) = _open(p, 1);
        (IMarketTypes.Lease memory b,) = _open(p, 1);
        market.claim(a, 1_000_000, bytes32(0), _voucher(a, 1_000_000));
        market.claim(b, 400_000, bytes32(0), _voucher(b, 400_000));
        market.claim(a, 1_200_000, bytes32(0), _voucher(a, 1_200_000));
        // 1_600_000 claimed in three payments, each less its 2.5% fee.
        assertEq(market.withdrawable(provider), 975_000 + 390_000 + 195_000);
        uint256 providerBefore = token.balanceOf(provider);
        uint256 marketBefore = token.balanceOf(address(market));

        vm.expectEmit(address(market));
        emit IMarketTypes.Withdrawn(provider, 1_560_000);
        vm.expectEmit(address(token));
        emit IERC20.Transfer(address(market), provider, 1_560_000);
        vm.recordLogs();
        assertEq(_withdraw(provider), 1_560_000);

        assertEq(_countTransfers(vm.getRecordedLogs()), 1, "one transfer for every claim");
        assertEq(token.balanceOf(provider), providerBefore + 1_560_000);
        assertEq(token.balanceOf(address(market)), marketBefore - 1_560_000);
        assertEq(market.withdrawable(provider), 0);
        assertEq(market.withdrawable(treasury), 40_000, "the treasury's credit is its own");
    }

    function test_withdraw_sendsTheTreasuryItsFeesAndTheLabItsRefund() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        uint256 escrow = _escrowOf(lease);
        market.claim(lease, 2_000_000, bytes32(0), _voucher(lease, 2_000_000));
        vm.prank(provider);
        uint256 refund = market.closeLease(lease);
        uint256 labBefore = token.balanceOf(lab);

        vm.expectEmit(address(market));
        emit IMarketTypes.Withdrawn(treasury, 50_000);
        assertEq(_withdraw(treasury), 50_000);
        vm.expectEmit(address(market));
        emit IMarketTypes.Withdrawn(lab, escrow - 2_000_000);
        assertEq(_withdraw(lab), refund);

        assertEq(refund, escrow - 2_000_000);
        assertEq(token.balanceOf(treasury), 50_000);
        assertEq(token.balanceOf(lab), labBefore + refund);
        assertEq(token.balanceOf(address(market)), staked + 1_950_000, "the provider's credit is still held");
    }

    function test_withdraw_revertsWithNothingToWithdrawForAnAccountNeverCredited() public {
        assertEq(market.withdrawable(stranger), 0);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToWithdraw.selector, stranger));
        vm.prank(stranger);
        market.withdraw();
    }

    function test_withdraw_revertsWithNothingToWithdrawOnceEverythingWasWithdrawn() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        market.claim(lease, 1_000, bytes32(0), _voucher(lease, 1_000));
        assertEq(_withdraw(provider), 975);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToWithdraw.selector, provider));
        vm.prank(provider);
        market.withdraw();
    }

    function test_withdraw_afterAWithdrawalPaysOnlyTheNewCredit() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        market.claim(lease, 1_000, bytes32(0), _voucher(lease, 1_000));
        assertEq(_withdraw(provider), 975);
        market.claim(lease, 3_000, bytes32(0), _voucher(lease, 3_000));
        assertEq(market.withdrawable(provider), 1_950);
        assertEq(_withdraw(provider), 1_950);
        assertEq(market.withdrawable(provider), 0);
    }

    function test_withdraw_leavesTheCreditSlotNonZeroSoTheNextCreditIsCheap() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        market.claim(lease, 1_000, bytes32(0), _voucher(lease, 1_000));
        vm.record();
        _withdraw(provider);
        (, bytes32[] memory writes) = vm.accesses(address(market));
        assertEq(writes.length, 1, "only the credit slot is written");
        assertEq(vm.load(address(market), writes[0]), bytes32(uint256(1)), "credit plus one, not zero");
        assertEq(market.withdrawable(provider), 0);
    }

    function test_withdraw_isIndependentPerAccount() public {
        Pair memory p2 = _pair(_offer(provider2, 0), _bid(lab2, 0));
        (IMarketTypes.Lease memory a,) = _open(_defaultPair(), 1);
        (IMarketTypes.Lease memory b,) = _open(p2, 1);
        market.claim(a, 10_000, bytes32(0), _voucher(a, 10_000));
        market.claim(b, 20_000, bytes32(0), _voucher(b, 20_000));
        assertEq(_withdraw(provider2), 19_500);
        assertEq(market.withdrawable(provider), 9_750);
        assertEq(market.withdrawable(treasury), 250 + 500);
    }

    function test_claimTerminateAndClose_moveNoTokenOutOfTheMarket() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        uint256 escrow = _escrowOf(lease);
        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](1);
        items[0] = IMarketTypes.ClaimItem(lease, 2_000, bytes32(0), _voucher(lease, 2_000));

        vm.recordLogs();
        market.claim(lease, 1_000, bytes32(0), _voucher(lease, 1_000));
        market.claimBatch(items);
        vm.prank(lab);
        market.terminate(lease, 3_000);
        vm.prank(provider);
        market.closeLease(lease);

        assertEq(_countTransfers(vm.getRecordedLogs()), 0);
        assertEq(token.balanceOf(address(market)), staked + escrow);
        assertEq(
            market.withdrawable(provider) + market.withdrawable(treasury) + market.withdrawable(lab),
            escrow,
            "the whole escrow is credited"
        );
    }

    function _countTransfers(Vm.Log[] memory logs) internal view returns (uint256 n) {
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].emitter == address(token) && logs[i].topics[0] == IERC20.Transfer.selector) ++n;
        }
    }
}

/// @notice A token whose issuer blacklists accounts (USDC, USDT): an account the token refuses to
/// pay can only fail its own withdrawal, never a claim batch or a close.
contract MarketBlacklistedRecipientTest is MarketFixture {
    BlacklistToken internal bl;

    function setUp() public {
        bl = new BlacklistToken();
        _deploy(address(bl), 6, 100, treasury);
    }

    function test_claimBatch_creditsEveryProviderWhenOneIsBlacklisted() public {
        (IMarketTypes.Lease memory a, bytes32 idA) = _open(_defaultPair(), 1);
        (IMarketTypes.Lease memory b, bytes32 idB) = _open(_pair(_offer(provider2, 0), _bid(lab2, 0)), 1);
        bl.setBlacklisted(provider2, true);
        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](2);
        items[0] = IMarketTypes.ClaimItem(a, 100_000, bytes32(0), _voucher(a, 100_000));
        items[1] = IMarketTypes.ClaimItem(b, 200_000, bytes32(0), _voucher(b, 200_000));

        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(idA, 100_000, 100_000, bytes32(0));
        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(idB, 200_000, 200_000, bytes32(0));
        assertEq(market.claimBatch(items), 300_000);

        assertEq(market.withdrawable(provider), 99_000);
        assertEq(market.withdrawable(provider2), 198_000);
        assertEq(market.withdrawable(treasury), 1_000 + 2_000);
        uint256 before = bl.balanceOf(provider);
        assertEq(_withdraw(provider), 99_000, "the other provider is paid");
        assertEq(bl.balanceOf(provider), before + 99_000);
    }

    function test_withdraw_ofABlacklistedAccountRevertsAndKeepsItsCredit() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), 1);
        market.claim(lease, 100_000, bytes32(0), _voucher(lease, 100_000));
        bl.setBlacklisted(provider, true);

        vm.expectRevert(abi.encodeWithSelector(BlacklistToken.BlacklistTokenBlacklisted.selector, provider));
        vm.prank(provider);
        market.withdraw();
        assertEq(market.withdrawable(provider), 99_000, "the credit waits for the account");

        bl.setBlacklisted(provider, false);
        assertEq(_withdraw(provider), 99_000);
    }

    function test_closeLease_creditsTheRefundWhenTheLabIsBlacklisted() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        market.claim(lease, 100_000, bytes32(0), _voucher(lease, 100_000));
        bl.setBlacklisted(lab, true);
        uint256 refund = _escrowOf(lease) - 100_000;

        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW);
        vm.prank(stranger);
        assertEq(market.closeLease(lease), refund);

        assertEq(uint8(market.leaseState(id).status), uint8(IMarketTypes.LeaseStatus.Closed));
        assertEq(market.withdrawable(lab), refund);
        assertEq(_withdraw(provider), 99_000, "the provider is paid all the same");
    }

    function test_terminate_creditsTheProviderWhenTheProviderIsBlacklisted() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        bl.setBlacklisted(provider, true);
        vm.warp(T0 + 10 minutes);
        vm.prank(lab);
        market.terminate(lease, 2_400_000);

        assertEq(uint8(market.leaseState(id).status), uint8(IMarketTypes.LeaseStatus.Terminated));
        assertEq(market.withdrawable(provider), 2_376_000);
        assertEq(market.withdrawable(treasury), 24_000);
    }

    function test_claim_creditsTheProviderWhenTheTreasuryIsBlacklisted() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), 1);
        bl.setBlacklisted(treasury, true);
        assertEq(market.claim(lease, 100_000, bytes32(0), _voucher(lease, 100_000)), 100_000);
        assertEq(market.withdrawable(treasury), 1_000);
        assertEq(_withdraw(provider), 99_000);
    }
}

/// @notice A token that hands the recipient control during a transfer: the recipient cannot withdraw
/// twice, because the guard refuses the re-entered call (and the credit is already cleared).
contract MarketReentrantWithdrawTest is MarketFixture {
    CallbackToken internal cb;
    ReentrantWithdrawer internal attacker;

    function setUp() public {
        cb = new CallbackToken();
        attacker = new ReentrantWithdrawer();
        _deploy(address(cb), 6, 1_000, address(attacker)); // the attacker is the treasury
        attacker.setMarket(market);
        attacker.listenTo(cb);
    }

    function test_withdraw_reenteredFromTheTokenTransferIsRefusedAndPaysOnce() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        market.claim(lease, 1_000_000, bytes32(0), _voucher(lease, 1_000_000));
        (IMarketTypes.Lease memory other,) = _open(_pair(_offer(provider2, 0), _bid(lab2, 0)), BID_GPUS);
        market.claim(other, 500_000, bytes32(0), _voucher(other, 500_000));
        assertEq(market.withdrawable(address(attacker)), 150_000);
        uint256 marketBefore = cb.balanceOf(address(market));

        assertEq(attacker.withdraw(), 150_000);

        assertEq(attacker.reentries(), 1);
        assertEq(
            attacker.reentryError(),
            abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)
        );
        assertEq(cb.balanceOf(address(attacker)), 150_000, "paid exactly once");
        assertEq(cb.balanceOf(address(market)), marketBefore - 150_000);
        assertEq(market.withdrawable(address(attacker)), 0);
        assertEq(market.withdrawable(provider), 900_000, "other credits untouched");
        assertEq(market.withdrawable(provider2), 450_000);
    }
}
