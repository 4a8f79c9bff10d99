// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {MarketFixture} from "../helpers/MarketFixture.sol";
import {TestUSD} from "../../src/TestUSD.sol";
import {IMarketTypes} from "../../src/interfaces/IMarketTypes.sol";

/// @notice Symbolic proofs of the market's money rules, run by halmos (`make prove`). Forge skips
/// them: their names start with `check_`. The setup is concrete (one rental lease of 4 GPUs for an
/// hour); the amounts a lab signs, and the receipts a slasher brings, are symbolic, so each property
/// holds for every value, not for sampled ones. Each property verifies at most two symbolic
/// signatures: every one multiplies halmos's paths (the recovered key, `s` and `v` are branches).
/// No fee: its division of a symbolic amount is what the solver is slowest at; forge's fuzz and
/// invariant tests cover the fee (MarketFuzz.t.sol, MarketInvariant.t.sol).
contract MarketProofs is MarketFixture {
    uint16 internal constant FEE_BPS = 0;

    IMarketTypes.Lease internal lease;
    bytes32 internal id;
    uint256 internal escrow;
    uint256 internal supply;
    uint256 internal labStart; // the lab's balance before the lease took its escrow

    function setUp() public {
        // Halmos's vm.addr is an uninterpreted function of the key, so every actor would be a
        // symbolic address: each storage slot keyed by one is a term, and reading a provider's
        // endpoint string back has a symbolic length (halmos stops such a path). Pin each key's
        // address to its true value (so the assumption is sound): storage keys are concrete, while
        // vm.sign's signatures still recover to vm.addr(key), now equal to the pinned address.
        provider = _pin(PROVIDER_KEY, 0x0376AAc07Ad725E01357B1725B5ceC61aE10473c);
        provider2 = _pin(PROVIDER2_KEY, 0xB00994bA458FDD8c17745f6c40e7CAe498331782);
        lab = _pin(LAB_KEY, 0xe05fcC23807536bEe418f142D19fa0d21BB0cfF7);
        lab2 = _pin(LAB2_KEY, 0xF623c4F131f5F714f04280b181f4224B36C62140);
        stranger = _pin(STRANGER_KEY, 0x103dcde81d22bB1F2eC434Ca68B9b9452A7ba430);
        treasury = address(0x7EA5);
        _deploy(address(new TestUSD(6)), 6, FEE_BPS, treasury);
        // Not the fixture's _open: its check of the id against the rebuilt terms compares two
        // hashes of symbolic addresses (halmos's vm.addr), which halmos cannot decide in setUp.
        Pair memory p = _defaultPair();
        IMarketTypes.Lease memory opened = _expectedLease(p, BID_GPUS);
        labStart = token.balanceOf(lab);
        id = market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, BID_GPUS);
        lease = opened;
        escrow = _escrowOf(opened);
        supply = token.totalSupply();
    }

    // --- helpers --------------------------------------------------------------------------------

    /// @dev `key`'s address, assumed to be `concrete` (its secp256k1 address, `cast wallet address`).
    function _pin(uint256 key, address concrete) internal pure returns (address) {
        vm.assume(vm.addr(key) == concrete);
        return concrete;
    }

    /// @dev Claims the lab's voucher for `amount`; whether the market accepted it.
    function _tryClaim(uint256 amount) internal returns (bool ok) {
        bytes memory sig = _voucher(lease, amount);
        (ok,) = address(market).call(abi.encodeCall(market.claim, (lease, amount, bytes32(0), sig)));
    }

    /// @dev What the provider and the treasury were credited: the lease's payments, fee included.
    function _paidOut() internal view returns (uint256) {
        return market.withdrawable(provider) + market.withdrawable(treasury);
    }

    // --- a voucher never pays twice -------------------------------------------------------------

    /// @notice Redeeming the lab's voucher again pays nothing more, whatever its amount.
    function check_voucherNeverPaysTwice(uint256 amount) public {
        bytes memory sig = _voucher(lease, amount);
        uint256 first = market.claim(lease, amount, bytes32(0), sig);
        uint256 credited = _paidOut();
        (bool again,) = address(market).call(abi.encodeCall(market.claim, (lease, amount, bytes32(0), sig)));

        uint256 due = amount < escrow ? amount : escrow;
        assert(first == due);
        assert(credited == due);
        assert(!again);
        assert(_paidOut() == credited);
        assert(market.leaseState(id).paid == due);
    }

    // --- no lease pays above its escrow ---------------------------------------------------------

    /// @notice Any voucher, then the lab's termination with any amount, then the close: the
    /// provider is paid at most the escrow, and the provider's pay plus the lab's refund is exactly
    /// the escrow.
    function check_leasePaysAtMostEscrow(uint256 voucher, uint256 atTermination) public {
        _tryClaim(voucher);
        assert(market.leaseState(id).paid <= escrow);
        vm.prank(lab);
        market.terminate(lease, atTermination);
        assert(market.leaseState(id).paid <= escrow);
        vm.warp(block.timestamp + CLAIM_WINDOW);
        vm.prank(lab);
        uint256 refund = market.closeLease(lease);

        uint256 paid = _paidOut();
        assert(paid <= escrow);
        assert(paid + refund == escrow);
        assert(market.withdrawable(lab) == refund);
    }

    // --- tokens are conserved -------------------------------------------------------------------

    /// @notice After a symbolic voucher, the close and every withdrawal, no token was made or lost:
    /// the supply is unchanged, the market holds exactly the providers' stakes, and the lab lost
    /// exactly what the provider and the treasury gained. Every difference is taken only after an
    /// assertion that it cannot underflow: halmos reports assertion failures, and an arithmetic
    /// panic would otherwise end a path without a verdict.
    function check_tokensConserved(uint256 amount) public {
        uint256 providerBefore = token.balanceOf(provider);
        _tryClaim(amount);
        vm.warp(uint256(lease.start) + lease.duration + CLAIM_WINDOW);
        vm.prank(lab);
        market.closeLease(lease);
        _withdrawIfCredited(provider);
        _withdrawIfCredited(treasury);
        _withdrawIfCredited(lab);

        uint256 labAfter = token.balanceOf(lab);
        uint256 providerAfter = token.balanceOf(provider);
        assert(token.totalSupply() == supply);
        assert(token.balanceOf(address(market)) == staked);
        assert(labAfter <= labStart);
        assert(providerAfter >= providerBefore);
        uint256 gained = providerAfter - providerBefore + token.balanceOf(treasury);
        assert(labStart - labAfter == gained);
        assert(gained <= escrow);
    }

    // --- a slash needs a valid proof ------------------------------------------------------------

    /// @notice slashEquivocation succeeds only on two different receipts of one seq, both signed by
    /// the lease's receipt key: a forger's signature or the same receipt twice takes no stake.
    function check_slashNeedsValidProof(bool forged, uint64 seq, uint64 gpuSecondsA, uint64 gpuSecondsB) public {
        IMarketTypes.Receipt memory a = _receipt(lease, seq, lease.start, lease.start + 60, gpuSecondsA);
        IMarketTypes.Receipt memory b = _receipt(lease, seq, lease.start, lease.start + 60, gpuSecondsB);
        bytes memory sigA = _signReceipt(PROVIDER_KEY, a);
        bytes memory sigB = _signReceipt(forged ? STRANGER_KEY : PROVIDER_KEY, b);
        uint256 stakeBefore = market.getProvider(provider).stake;

        (bool ok,) = address(market).call(
            abi.encodeCall(market.slashEquivocation, (lease, seq, _body(a), sigA, _body(b), sigB))
        );

        if (ok) {
            assert(!forged);
            assert(gpuSecondsA != gpuSecondsB);
            assert(market.leaseState(id).slashed);
        } else {
            assert(market.getProvider(provider).stake == stakeBefore);
            assert(!market.leaseState(id).slashed);
        }
    }
}
