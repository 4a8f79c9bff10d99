// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IMarketTypes} from "../src/interfaces/IMarketTypes.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";

/// @notice The two slashing proofs over generated receipts: any one differing field makes a valid
/// equivocation and identical receipts never do; impossible usage is slashed exactly when the rule
/// written out here independently says so. Also the receipt digest against an independent one.
contract MarketReceiptsFuzzTest is MarketFixture {
    IMarketTypes.Lease internal lease;
    bytes32 internal id;

    function setUp() public {
        _deploy(address(new TestUSD(6)), 6, 0, address(0));
        (lease, id) = _open(_defaultPair(), BID_GPUS);
    }

    /// @dev A receipt for the lease with every other field generated.
    function _generated(
        uint64 seq,
        bytes32 prevHash,
        uint64 periodStart,
        uint64 periodEnd,
        uint64 gpuSeconds,
        bytes32 outputRoot,
        bytes32 metricsHash,
        bytes32 attestationHash
    ) internal view returns (IMarketTypes.Receipt memory) {
        return IMarketTypes.Receipt(
            id, seq, prevHash, periodStart, periodEnd, gpuSeconds, outputRoot, metricsHash, attestationHash
        );
    }

    /// @dev Sets field `field` (0..6: prevHash, periodStart, periodEnd, gpuSecondsCumulative,
    /// outputRoot, metricsHash, attestationHash) of `r` to `value`, truncated to the field's type;
    /// returns whether that changed it.
    function _setField(IMarketTypes.Receipt memory r, uint256 field, uint256 value) internal pure returns (bool changed) {
        if (field == 0) {
            changed = r.prevHash != bytes32(value);
            r.prevHash = bytes32(value);
        } else if (field == 1) {
            changed = r.periodStart != uint64(value);
            r.periodStart = uint64(value);
        } else if (field == 2) {
            changed = r.periodEnd != uint64(value);
            r.periodEnd = uint64(value);
        } else if (field == 3) {
            changed = r.gpuSecondsCumulative != uint64(value);
            r.gpuSecondsCumulative = uint64(value);
        } else if (field == 4) {
            changed = r.outputRoot != bytes32(value);
            r.outputRoot = bytes32(value);
        } else if (field == 5) {
            changed = r.metricsHash != bytes32(value);
            r.metricsHash = bytes32(value);
        } else {
            changed = r.attestationHash != bytes32(value);
            r.attestationHash = bytes32(value);
        }
    }

    function testFuzz_hashReceipt_equalsIndependentDigest(IMarketTypes.Receipt memory r) public view {
        assertEq(market.hashReceipt(r), _receiptDigest(r));
    }

    function testFuzz_slashEquivocation_anySingleDifferingFieldIsProof(
        uint64 seq,
        bytes32 prevHash,
        uint64 periodStart,
        uint64 periodEnd,
        uint64 gpuSeconds,
        bytes32 outputRoot,
        uint8 fieldSeed,
        uint256 value
    ) public {
        IMarketTypes.Receipt memory a = _generated(
            seq, prevHash, periodStart, periodEnd, gpuSeconds, outputRoot, keccak256("m"), bytes32(0)
        );
        IMarketTypes.Receipt memory b =
            _generated(seq, prevHash, periodStart, periodEnd, gpuSeconds, outputRoot, keccak256("m"), bytes32(0));
        vm.assume(_setField(b, fieldSeed % 7, value));
        bytes memory sigA = _signReceipt(PROVIDER_KEY, a);
        bytes memory sigB = _signReceipt(PROVIDER_KEY, b);

        uint256 lock = _leaseLock(lease);
        vm.prank(stranger);
        assertEq(_proveEquivocation(lease, a, sigA, b, sigB), lock);
        assertTrue(market.leaseState(id).slashed);
        assertEq(market.withdrawable(lab), _escrowOf(lease), "the refund; the penalty vests");
        (uint256 slashed, uint40 vestsAt) = market.slashedCredit(lab);
        assertEq(slashed, lock);
        assertEq(vestsAt, uint40(block.timestamp) + UNBONDING_DELAY);
        assertEq(market.getProvider(provider).stake, minStake - lock);
        assertEq(market.getProvider(provider).locked, 0);
    }

    function testFuzz_slashEquivocation_identicalReceiptsAreNeverProof(
        uint64 seq,
        bytes32 prevHash,
        uint64 periodStart,
        uint64 periodEnd,
        uint64 gpuSeconds,
        bytes32 outputRoot,
        bytes32 metricsHash,
        bytes32 attestationHash
    ) public {
        IMarketTypes.Receipt memory a = _generated(
            seq, prevHash, periodStart, periodEnd, gpuSeconds, outputRoot, metricsHash, attestationHash
        );
        bytes memory sig = _signReceipt(PROVIDER_KEY, a);
        bytes32 digest = market.hashReceipt(a);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketReceiptsNotConflicting.selector, digest));
        _proveEquivocation(lease, a, sig, a, sig);
    }

    /// @dev A proof names one seq for both receipts: a receipt signed for another seq is not
    /// signed for this one, whatever else it says.
    function testFuzz_slashEquivocation_receiptsOfDifferentSeqsAreNeverProof(
        uint64 seqA,
        uint64 seqB,
        uint64 gpuSeconds,
        bytes32 outputRoot
    ) public {
        vm.assume(seqA != seqB);
        IMarketTypes.Receipt memory a = _generated(seqA, 0, T0, T0 + 60, gpuSeconds, outputRoot, 0, 0);
        IMarketTypes.Receipt memory b = _generated(seqB, 0, T0, T0 + 60, gpuSeconds, outputRoot, 0, bytes32(uint256(1)));
        bytes memory sigA = _signReceipt(PROVIDER_KEY, a);
        bytes memory sigB = _signReceipt(PROVIDER_KEY, b);
        b.seq = seqA; // what the proof makes of b's body: a receipt the provider did not sign
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(b), provider));
        _proveEquivocation(lease, a, sigA, b, sigB);
    }

    function testFuzz_slashImpossibleUsage_slashesExactlyWhenTheRuleHolds(
        uint64 periodStart,
        uint64 periodEnd,
        uint64 gpuSeconds,
        uint32 elapsed
    ) public {
        vm.warp(uint256(T0) + elapsed);
        periodStart = uint64(bound(periodStart, T0 - 100, uint256(T0) + 2 * DURATION));
        periodEnd = uint64(bound(periodEnd, T0 - 100, uint256(T0) + 2 * DURATION));
        IMarketTypes.Receipt memory r = _generated(3, keccak256("p"), periodStart, periodEnd, gpuSeconds, 0, 0, 0);
        bytes memory sig = _signReceipt(PROVIDER_KEY, r);

        // The rule, written out: the lease's GPUs working from its start to min(periodEnd, end).
        uint256 until = periodEnd < T0 + DURATION ? periodEnd : T0 + DURATION;
        uint256 maxGpuSeconds = until > T0 ? BID_GPUS * (until - T0) : 0;
        bool impossible = periodEnd > block.timestamp || periodStart < T0 || gpuSeconds > maxGpuSeconds;
        if (impossible) {
            assertEq(_proveImpossibleUsage(lease, r, sig), _leaseLock(lease));
            assertTrue(market.leaseState(id).slashed);
            (uint256 slashed,) = market.slashedCredit(lab);
            assertEq(slashed, _leaseLock(lease));
        } else {
            vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketUsagePossible.selector, id, gpuSeconds, maxGpuSeconds));
            _proveImpossibleUsage(lease, r, sig);
        }
    }
}
