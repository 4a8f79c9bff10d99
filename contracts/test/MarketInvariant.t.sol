// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {StdInvariant} from "forge-std/StdInvariant.sol";
import {IMarket} from "../src/interfaces/IMarket.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";
import {MarketHandler} from "./helpers/MarketHandler.sol";

/// @notice Stateful fuzzing of the market through MarketHandler: random leases (partial fills
/// included) opened one by one, in batches at the offers' prices and in uniform-price auctions
/// (all-or-none bids among them, sometimes filled short, which must open nothing), vouchers and
/// voucher batches, terminations, closes one by one and in batches, withdrawals, equivocation
/// slashes, posted receipts with their finalizations (one by one and in batches) and disputes,
/// and time, with a 1% protocol fee. Each provider
/// stakes ten penalties, so it stays eligible through several slashes. Runs and depth come from
/// foundry.toml ([invariant]).
contract MarketInvariantTest is MarketFixture {
    MarketHandler internal handler;
    uint256 internal initialSupply;
    uint256 internal labsInitial;
    uint256 internal providersInitial;

    function setUp() public {
        _deploy(address(new TestUSD(6)), 6, 100, treasury);
        token.mint(lab, 1e15);
        token.mint(lab2, 1e15);
        vm.prank(provider);
        registry.addStake(9 * slashPenalty);
        vm.prank(provider2);
        registry.addStake(9 * slashPenalty);

        uint256[] memory providerKeys = new uint256[](2);
        providerKeys[0] = PROVIDER_KEY;
        providerKeys[1] = PROVIDER2_KEY;
        uint256[] memory labKeys = new uint256[](2);
        labKeys[0] = LAB_KEY;
        labKeys[1] = LAB2_KEY;
        handler = new MarketHandler(market, providerKeys, labKeys, stranger);

        initialSupply = token.totalSupply();
        labsInitial = token.balanceOf(lab) + token.balanceOf(lab2);
        providersInitial = token.balanceOf(provider) + token.balanceOf(provider2);

        bytes4[] memory selectors = new bytes4[](14);
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
        targetSelector(StdInvariant.FuzzSelector({addr: address(handler), selectors: selectors}));
        targetContract(address(handler));
    }

    /// @notice The market holds exactly the unpaid escrow of the leases not yet closed plus every
    /// account's credit (less the slashed stake the registry holds for it), and the contract's
    /// record of every lease, pending claim and credit agrees with the model.
    function invariant_marketBalanceEqualsUnpaidEscrowOfOpenLeasesPlusCredits() public view {
        uint256 owedByModel = 0;
        uint256 owedByMarket = 0;
        uint256 n = handler.leaseCount();
        for (uint256 i = 0; i < n; ++i) {
            (IMarket.Lease memory lease, MarketHandler.Model memory m) = handler.leaseAt(i);
            IMarket.LeaseState memory s = market.leaseState(keccak256(abi.encode(lease)));
            assertEq(uint8(s.status), uint8(m.status), "status");
            assertEq(s.paid, m.paid, "paid");
            assertEq(s.end, m.end, "end");
            assertEq(s.slashed, m.slashed, "slashed");
            assertLe(s.paid, _escrowOf(lease), "paid within escrow");
            IMarket.PendingClaim memory c = market.pendingClaim(keccak256(abi.encode(lease)));
            assertEq(c.readyAt, m.readyAt, "pending claim");
            assertEq(c.amount, m.pendingAmount, "pending amount");
            if (s.status != IMarket.LeaseStatus.Closed) {
                owedByMarket += _escrowOf(lease) - s.paid;
                owedByModel += m.escrow - m.paid;
            }
        }
        uint256 credits = 0;
        address[] memory accounts = handler.accounts();
        for (uint256 i = 0; i < accounts.length; ++i) {
            uint256 credit = market.withdrawable(accounts[i]);
            assertEq(credit, handler.expectedCredit(accounts[i]), "credit vs model");
            credits += credit - handler.expectedSlashCredit(accounts[i]);
        }
        assertEq(market.withdrawable(stranger), 0, "the stranger is never credited");
        assertEq(token.balanceOf(address(market)), owedByMarket + credits, "market balance vs its own records");
        assertEq(owedByMarket, owedByModel, "market records vs model");
    }

    /// @notice The registry holds every provider's stake, as the model has it, plus the stake
    /// slashed to labs and not yet withdrawn by them.
    function invariant_registryBalanceEqualsStakesPlusUnreleasedSlashes() public view {
        uint256 stakes = registry.getProvider(provider).stake + registry.getProvider(provider2).stake;
        assertEq(registry.getProvider(provider).stake, handler.expectedStake(provider), "stake vs model");
        assertEq(registry.getProvider(provider2).stake, handler.expectedStake(provider2), "stake vs model");
        uint256 unreleased = handler.expectedSlashCredit(lab) + handler.expectedSlashCredit(lab2);
        assertEq(token.balanceOf(address(registry)), stakes + unreleased, "registry balance");
        assertEq(stakes + handler.ghostSlashed(), 2 * 10 * slashPenalty, "stake only leaves by slashing");
    }

    /// @notice No token is created or lost: the supply is unchanged and lies entirely with the actors.
    function invariant_tokenSupplyConservedAcrossActors() public view {
        uint256 held = token.balanceOf(lab) + token.balanceOf(lab2) + token.balanceOf(provider)
            + token.balanceOf(provider2) + token.balanceOf(stranger) + token.balanceOf(treasury)
            + token.balanceOf(address(market)) + token.balanceOf(address(registry));
        assertEq(token.totalSupply(), initialSupply, "supply");
        assertEq(held, initialSupply, "held by actors");
    }

    /// @notice Each group of actors holds, in tokens and credit together, what the model says it
    /// was paid; withdrawals only move value from credit to tokens.
    function invariant_flowsMatchModel() public view {
        assertEq(handler.mismatches(), 0, "a call disagreed with the model");
        assertEq(
            _heldOrCredited(lab) + _heldOrCredited(lab2),
            labsInitial - handler.ghostEscrowed() + handler.ghostRefunded() + handler.ghostSlashed(),
            "labs"
        );
        assertEq(
            _heldOrCredited(provider) + _heldOrCredited(provider2),
            providersInitial + handler.ghostProviderIncome(),
            "providers"
        );
        assertEq(_heldOrCredited(treasury), handler.ghostFees(), "treasury");
        assertEq(
            token.balanceOf(lab) + token.balanceOf(lab2) + token.balanceOf(provider) + token.balanceOf(provider2)
                + token.balanceOf(treasury),
            labsInitial + providersInitial - handler.ghostEscrowed() + handler.ghostWithdrawn(),
            "tokens out of the market and the registry are exactly the withdrawals"
        );
    }

    function _heldOrCredited(address account) internal view returns (uint256) {
        return token.balanceOf(account) + market.withdrawable(account);
    }

    /// @notice Reports how many actions ran and succeeded in the run (visible with -vv).
    function afterInvariant() public {
        string[15] memory actions = [
            "open",
            "openBatch",
            "auction",
            "claim",
            "batch",
            "terminate",
            "close",
            "closeBatch",
            "withdraw",
            "warp",
            "slash",
            "post",
            "finalize",
            "finalizeBatch",
            "dispute"
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
