// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Vm} from "forge-std/Vm.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IMarket} from "../src/interfaces/IMarket.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {ERC1271Lab} from "./helpers/ERC1271Lab.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";

/// @notice Receipts on-chain: their EIP-712 digest, the two slashing proofs (equivocation and
/// impossible usage) and the optimistic claim (post, finalize, dispute). A 6-decimals TestUSD, no
/// fee; the lease is BID_GPUS GPUs for DURATION at `price`, escrow 14.4 tUSD; the slash penalty is
/// the minimum stake, which is also each provider's whole stake.
contract MarketReceiptsTest is MarketFixture {
    TestUSD internal usd;
    IMarket.Lease internal lease;
    bytes32 internal id;
    uint256 internal escrow;

    function setUp() public {
        usd = new TestUSD(6);
        _deploy(address(usd), 6, 0, address(0));
        (lease, id) = _open(_defaultPair(), BID_GPUS);
        escrow = _escrowOf(lease);
        vm.warp(T0 + 10 minutes);
    }

    // --- helpers --------------------------------------------------------------------------------

    /// @dev The provider's honest receipt `seq` for [T0 + seq * 5 min, T0 + (seq + 1) * 5 min),
    /// every GPU busy.
    function _honest(uint64 seq) internal view returns (IMarket.Receipt memory) {
        uint64 end = T0 + (seq + 1) * 5 minutes;
        return _receipt(lease, seq, T0 + seq * 5 minutes, end, BID_GPUS * (end - T0));
    }

    function _sig(IMarket.Receipt memory r) internal view returns (bytes memory) {
        return _signReceipt(PROVIDER_KEY, r);
    }

    /// @dev Two different receipts `seq`, both signed by the provider: the honest one and one with
    /// a smaller usage.
    function _fork(uint64 seq)
        internal
        view
        returns (IMarket.Receipt memory a, bytes memory sigA, IMarket.Receipt memory b, bytes memory sigB)
    {
        a = _honest(seq);
        b = _honest(seq);
        b.gpuSecondsCumulative -= 1;
        sigA = _sig(a);
        sigB = _sig(b);
    }

    function _slashEquivocation() internal returns (uint256) {
        (IMarket.Receipt memory a, bytes memory sigA, IMarket.Receipt memory b, bytes memory sigB) = _fork(1);
        return _proveEquivocation(lease, a, sigA, b, sigB);
    }

    function _post(IMarket.Receipt memory r) internal {
        bytes memory sig = _sig(r);
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function _stakeOf(address who) internal view returns (uint256) {
        return registry.getProvider(who).stake;
    }

    function _assertSlashedAndClosed(uint128 paid) internal view {
        IMarket.LeaseState memory s = market.leaseState(id);
        assertEq(uint8(s.status), uint8(IMarket.LeaseStatus.Closed), "closed");
        assertTrue(s.slashed, "slashed");
        assertEq(s.paid, paid, "paid kept");
    }


    // --- EIP-712 --------------------------------------------------------------------------------

    function test_hashReceipt_equalsIndependentEip712Digest() public view {
        IMarket.Receipt memory r = _honest(3);
        r.attestationHash = keccak256("attestation");
        assertEq(market.hashReceipt(r), _receiptDigest(r));
    }

    /// @dev A third implementation: forge's own EIP-712 encoder, fed the typed data as JSON.
    function test_hashReceipt_equalsForgeEip712HashTypedData() public view {
        IMarket.Receipt memory r = _honest(3);
        r.attestationHash = keccak256("attestation");
        string memory types = string.concat(
            '"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},',
            '{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],',
            '"Receipt":[{"name":"leaseId","type":"bytes32"},{"name":"seq","type":"uint64"},',
            '{"name":"prevHash","type":"bytes32"},{"name":"periodStart","type":"uint64"},',
            '{"name":"periodEnd","type":"uint64"},{"name":"gpuSecondsCumulative","type":"uint64"},',
            '{"name":"outputRoot","type":"bytes32"},{"name":"metricsHash","type":"bytes32"},',
            '{"name":"attestationHash","type":"bytes32"}]}'
        );
        string memory domain = string.concat(
            '"domain":{"name":"gpumarket","version":"1","chainId":',
            vm.toString(block.chainid),
            ',"verifyingContract":"',
            vm.toString(address(market)),
            '"}'
        );
        string memory message = string.concat(
            '"message":{"leaseId":"',
            vm.toString(r.leaseId),
            '","seq":',
            vm.toString(uint256(r.seq)),
            ',"prevHash":"',
            vm.toString(r.prevHash),
            '","periodStart":',
            vm.toString(uint256(r.periodStart)),
            ',"periodEnd":',
            vm.toString(uint256(r.periodEnd))
        );
        message = string.concat(
            message,
            ',"gpuSecondsCumulative":',
            vm.toString(uint256(r.gpuSecondsCumulative)),
            ',"outputRoot":"',
            vm.toString(r.outputRoot),
            '","metricsHash":"',
            vm.toString(r.metricsHash),
            '","attestationHash":"',
            vm.toString(r.attestationHash),
            '"}'
        );
        string memory json = string.concat("{", types, ',"primaryType":"Receipt",', domain, ",", message, "}");
        assertEq(vm.eip712HashTypedData(json), market.hashReceipt(r));
    }

    function test_constructor_setsChallengeWindowAndSlashPenalty() public view {
        assertEq(market.challengeWindow(), CHALLENGE_WINDOW);
        assertEq(market.slashPenalty(), minStake);
    }

    // --- slashEquivocation ----------------------------------------------------------------------

    function test_slashEquivocation_slashesStakeToLabRefundsEscrowAndSettlesLease() public {
        market.claim(lease, 1_000_000, bytes32(0), _voucher(lease, 1_000_000));
        (IMarket.Receipt memory a, bytes memory sigA, IMarket.Receipt memory b, bytes memory sigB) = _fork(1);
        uint256 labBefore = usd.balanceOf(lab);
        uint256 registryBefore = usd.balanceOf(address(registry));

        vm.expectEmit(address(market));
        emit IMarket.LeaseSlashed(id, provider, minStake, escrow - 1_000_000);
        vm.recordLogs();
        vm.prank(stranger); // anyone may prove it; the lab is the beneficiary
        uint256 penalty = _proveEquivocation(lease, a, sigA, b, sigB);

        assertEq(vm.getRecordedLogs().length, 1, "LeaseSlashed alone: no registry event, no transfer");
        assertEq(penalty, minStake);
        assertEq(_stakeOf(provider), 0);
        assertFalse(registry.isEligible(provider));
        _assertSlashedAndClosed(1_000_000);
        assertEq(market.withdrawable(lab), escrow - 1_000_000 + minStake, "refund and penalty");
        assertEq(market.withdrawable(stranger), 0, "the prover gets nothing");
        assertEq(usd.balanceOf(address(registry)), registryBefore, "accounting only");

        // The lab's withdrawal takes the refund from the market and the penalty from the registry.
        vm.expectEmit(address(market));
        emit IMarket.Withdrawn(lab, escrow - 1_000_000 + minStake);
        assertEq(_withdraw(lab), escrow - 1_000_000 + minStake);
        assertEq(usd.balanceOf(lab), labBefore + escrow - 1_000_000 + minStake);
        assertEq(usd.balanceOf(address(registry)), registryBefore - minStake);
        assertEq(usd.balanceOf(address(market)), 1_000_000, "the provider's earned credit stays");
        assertEq(market.withdrawable(lab), 0);
        assertEq(_withdraw(provider), 1_000_000, "payment for accepted work is kept");
    }

    function test_slashEquivocation_afterTermination() public {
        vm.prank(lab);
        market.terminate(lease, 500_000);
        uint256 penalty = _slashEquivocation();
        assertEq(penalty, minStake);
        _assertSlashedAndClosed(500_000);
        assertEq(market.withdrawable(lab), escrow - 500_000 + minStake);
    }

    function test_slashEquivocation_afterProviderClosedCreditsOnlyThePenalty() public {
        // A provider that sees the proof coming and closes first still gets slashed.
        vm.prank(provider);
        uint256 refund = market.closeLease(lease);
        assertEq(refund, escrow);
        vm.expectEmit(address(market));
        emit IMarket.LeaseSlashed(id, provider, minStake, 0);
        assertEq(_slashEquivocation(), minStake);
        _assertSlashedAndClosed(0);
        assertEq(market.withdrawable(lab), escrow + minStake);
    }

    function test_slashEquivocation_takesAtMostTheRemainingStake() public {
        (IMarket.Lease memory other,) = _open(_pair(_offer(provider, 1), _bid(lab2, 1)), 1);
        vm.prank(provider);
        registry.requestUnstake(minStake); // unbonding stake is slashable too
        _slashEquivocation();
        assertEq(_stakeOf(provider), 0);
        assertEq(registry.getProvider(provider).unbonding, 0);

        // A second lease of the same provider: its stake is gone, the lab still gets its escrow.
        IMarket.Receipt memory a = _receipt(other, 0, T0, T0 + 60, 60);
        IMarket.Receipt memory b = _receipt(other, 0, T0, T0 + 60, 59);
        vm.expectEmit(address(market));
        emit IMarket.LeaseSlashed(keccak256(abi.encode(other)), provider, 0, _escrowOf(other));
        uint256 penalty = _proveEquivocation(other, a, _sig(a), b, _sig(b));
        assertEq(penalty, 0);
        assertEq(market.withdrawable(lab2), _escrowOf(other));
    }

    function test_slashEquivocation_revertsTheSecondTime() public {
        _slashEquivocation();
        (IMarket.Receipt memory a, bytes memory sigA, IMarket.Receipt memory b, bytes memory sigB) = _fork(0);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketLeaseAlreadySlashed.selector, id));
        _proveEquivocation(lease, a, sigA, b, sigB);
        IMarket.Receipt memory r = _honest(0);
        r.periodEnd = uint64(block.timestamp + 1);
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketLeaseAlreadySlashed.selector, id));
        _proveImpossibleUsage(lease, r, sig);
    }

    function test_slashEquivocation_revertsForUnknownLease() public {
        (IMarket.Receipt memory a, bytes memory sigA, IMarket.Receipt memory b, bytes memory sigB) = _fork(1);
        IMarket.Lease memory unknown = lease;
        unknown.gpus = 3;
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketUnknownLease.selector, keccak256(abi.encode(unknown))));
        _proveEquivocation(unknown, a, sigA, b, sigB);
    }

    /// @dev The proof implies the lease id: a receipt of another lease of the same provider is,
    /// for this lease, a receipt the provider never signed.
    function test_slashEquivocation_revertsWhenAReceiptNamesAnotherLease() public {
        (IMarket.Lease memory other,) = _open(_pair(_offer(provider, 1), _bid(lab, 1)), 1);
        IMarket.Receipt memory a = _honest(1);
        IMarket.Receipt memory b = _receipt(other, 1, T0, T0 + 60, 60);
        (bytes memory sigA, bytes memory sigB) = (_sig(a), _sig(b));
        IMarket.Receipt memory bHere = _receipt(lease, 1, T0, T0 + 60, 60);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(bHere), provider)
        );
        _proveEquivocation(lease, a, sigA, b, sigB);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(bHere), provider)
        );
        _proveEquivocation(lease, b, sigB, a, sigA);
    }

    /// @dev One seq for both: a receipt signed for another seq is not signed for this one.
    function test_slashEquivocation_revertsForReceiptsOfDifferentSeqs() public {
        IMarket.Receipt memory a = _honest(1);
        IMarket.Receipt memory b = _honest(2);
        (bytes memory sigA, bytes memory sigB) = (_sig(a), _sig(b));
        IMarket.Receipt memory bAtSeq1 = _honest(2);
        bAtSeq1.seq = 1;
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(bAtSeq1), provider)
        );
        _proveEquivocation(lease, a, sigA, b, sigB);
    }

    function test_slashEquivocation_revertsForTheSameReceiptTwice() public {
        IMarket.Receipt memory a = _honest(1);
        bytes memory sig = _sig(a);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketReceiptsNotConflicting.selector, market.hashReceipt(a)));
        _proveEquivocation(lease, a, sig, a, sig);
        // The same receipt with its signature in both forms is still one receipt.
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketReceiptsNotConflicting.selector, market.hashReceipt(a)));
        _proveEquivocation(lease, a, sig, a, _compact(sig));
    }

    function test_slashEquivocation_acceptsEip2098CompactSignatures() public {
        (IMarket.Receipt memory a, bytes memory sigA, IMarket.Receipt memory b, bytes memory sigB) = _fork(1);
        assertEq(_compact(sigA).length, 64);
        assertEq(_proveEquivocation(lease, a, _compact(sigA), b, sigB), minStake);
        _assertSlashedAndClosed(0);
        assertEq(market.withdrawable(lab), escrow + minStake);
    }

    function test_slashEquivocation_revertsOnAForgedCompactSignature() public {
        (IMarket.Receipt memory a, bytes memory sigA, IMarket.Receipt memory b,) = _fork(1);
        bytes memory forged = _compact(_signReceipt(LAB_KEY, b));
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(b), provider)
        );
        _proveEquivocation(lease, a, _compact(sigA), b, forged);
    }

    /// @dev A uint64 body field with high bits set is refused as the ABI decoder refuses it (an
    /// empty revert), not hashed into a digest nobody signed.
    function test_slashEquivocation_revertsOnADirtyUint64BodyWord() public {
        (IMarket.Receipt memory a, bytes memory sigA, IMarket.Receipt memory b, bytes memory sigB) = _fork(1);
        bytes memory data =
            abi.encodeCall(IMarket.slashEquivocation, (lease, uint64(1), _body(a), sigA, _body(b), sigB));
        // lease (7 words) and seq come first; a.periodEnd is a's word 2.
        uint256 offset = 4 + 32 * (7 + 1 + 2);
        data[offset] = 0x01;
        (bool ok, bytes memory ret) = address(market).call(data);
        assertFalse(ok);
        assertEq(ret.length, 0);
    }

    function test_slashEquivocation_revertsWhenOneReceiptIsNotSignedByTheProvider() public {
        (IMarket.Receipt memory a, bytes memory sigA, IMarket.Receipt memory b,) = _fork(1);
        bytes memory forged = _signReceipt(LAB_KEY, b); // the lab cannot frame its provider
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(b), provider)
        );
        _proveEquivocation(lease, a, sigA, b, forged);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(b), provider)
        );
        _proveEquivocation(lease, b, forged, a, sigA);
    }

    function test_slashEquivocation_revertsOnAMalleableSignature() public {
        (IMarket.Receipt memory a, bytes memory sigA, IMarket.Receipt memory b, bytes memory sigB) = _fork(1);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(b), provider)
        );
        _proveEquivocation(lease, a, sigA, b, _malleate(sigB));
    }

    /// @dev A lease from a contract provider (a wallet whose owner key signs its offers through
    /// ERC-1271) whose receipts `RECEIPT_KEY` signs.
    function _openContractProviderLease(uint256 ownerKey, uint256 receiptKey)
        internal
        returns (ERC1271Lab wallet, IMarket.Lease memory walletLease)
    {
        wallet = new ERC1271Lab(vm.addr(ownerKey));
        usd.mint(address(wallet), minStake);
        vm.startPrank(address(wallet));
        usd.approve(address(registry), minStake);
        registry.register(minStake, "https://wallet.example", bytes32(0), bytes32(0));
        vm.stopPrank();
        IMarket.Offer memory offer = _offer(address(wallet), 0);
        offer.receiptSigner = vm.addr(receiptKey);
        IMarket.Bid memory bid = _bid(lab, 7);
        Pair memory p = Pair(offer, _sign(ownerKey, market.hashOffer(offer)), bid, _signBid(bid));
        (walletLease,) = _open(p, 1);
    }

    function test_slashEquivocation_ofAContractProviderChecksItsReceiptSignerNotErc1271() public {
        uint256 ownerKey = 0x5AFE;
        uint256 receiptKey = 0xBEEF;
        (ERC1271Lab wallet, IMarket.Lease memory walletLease) = _openContractProviderLease(ownerKey, receiptKey);
        IMarket.Receipt memory a = _receipt(walletLease, 0, T0 + 600, T0 + 601, 1);
        IMarket.Receipt memory b = _receipt(walletLease, 0, T0 + 600, T0 + 601, 0);

        // The wallet owner's signatures pass ERC-1271 but are not the lease's receipt key.
        bytes memory ownerB = _sign(ownerKey, market.hashReceipt(b));
        assertEq(wallet.isValidSignature(market.hashReceipt(b), ownerB), bytes4(0x1626ba7e));
        bytes memory sigA = _sign(receiptKey, market.hashReceipt(a));
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(b), vm.addr(receiptKey))
        );
        _proveEquivocation(walletLease, a, sigA, b, ownerB);

        // Receipts of the receipt key prove it, whatever the wallet answers now.
        wallet.setRevoked(true);
        wallet.setGasToBurn(wallet.BURN_ALL());
        bytes memory sigB = _sign(receiptKey, market.hashReceipt(b));
        assertEq(_proveEquivocation(walletLease, a, sigA, b, sigB), minStake);
        assertEq(_stakeOf(address(wallet)), 0);
    }

    function test_receiptSigner_ofAnEoaProviderIsTheOnlyKeyForItsReceipts() public {
        uint256 receiptKey = 0xBEEF;
        address signer = vm.addr(receiptKey);
        IMarket.Offer memory offer = _offer(provider, 9);
        offer.receiptSigner = signer;
        (IMarket.Lease memory l, bytes32 lid) = _open(_pair(offer, _bid(lab, 9)), 2);
        assertEq(l.receiptSigner, signer);
        vm.warp(l.start + 5 minutes);
        IMarket.Receipt memory r = _receipt(l, 0, l.start, l.start + 5 minutes, 2 * 5 minutes);

        // The provider's own key no longer signs this lease's receipts.
        bytes memory providerSig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(r), signer));
        vm.prank(provider);
        market.postReceipt(l, r, providerSig);

        bytes memory sig = _signReceipt(receiptKey, r);
        vm.prank(provider);
        market.postReceipt(l, r, sig);
        assertEq(market.pendingClaim(lid).amount, price * 2 * 5 minutes);

        // And it proves impossible usage.
        IMarket.Receipt memory bad = _receipt(l, 1, l.start, l.start + 5 minutes, 2 * 5 minutes + 1);
        bytes memory badByProvider = _sig(bad);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(bad), signer)
        );
        _proveImpossibleUsage(l, bad, badByProvider);
        assertEq(_proveImpossibleUsage(l, bad, _signReceipt(receiptKey, bad)), minStake);
    }

    // --- slashImpossibleUsage -------------------------------------------------------------------

    function test_slashImpossibleUsage_slashesUsageAboveGpusTimesElapsed() public {
        IMarket.Receipt memory r = _honest(0); // ends at T0 + 5 min: at most 4 x 300 GPU-seconds
        r.gpuSecondsCumulative = BID_GPUS * 5 minutes + 1;
        vm.expectEmit(address(market));
        emit IMarket.LeaseSlashed(id, provider, minStake, escrow);
        assertEq(_proveImpossibleUsage(lease, r, _sig(r)), minStake);
        _assertSlashedAndClosed(0);
        assertEq(market.withdrawable(lab), escrow + minStake);
    }

    function test_slashImpossibleUsage_revertsAtExactlyGpusTimesElapsed() public {
        IMarket.Receipt memory r = _honest(0);
        assertEq(r.gpuSecondsCumulative, BID_GPUS * 5 minutes);
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketUsagePossible.selector, id, r.gpuSecondsCumulative, BID_GPUS * 300)
        );
        _proveImpossibleUsage(lease, r, sig);
    }

    function test_slashImpossibleUsage_slashesAPeriodEndingInTheFuture() public {
        IMarket.Receipt memory r = _receipt(lease, 2, T0 + 10 minutes, uint64(block.timestamp) + 1, 0);
        assertEq(_proveImpossibleUsage(lease, r, _sig(r)), minStake);
    }

    function test_slashImpossibleUsage_revertsForAPeriodEndingNow() public {
        IMarket.Receipt memory r = _receipt(lease, 2, T0 + 5 minutes, uint64(block.timestamp), 0);
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketUsagePossible.selector, id, 0, BID_GPUS * 600));
        _proveImpossibleUsage(lease, r, sig);
    }

    function test_slashImpossibleUsage_slashesAPeriodStartingBeforeTheLease() public {
        IMarket.Receipt memory r = _receipt(lease, 0, T0 - 1, T0 + 60, 0);
        assertEq(_proveImpossibleUsage(lease, r, _sig(r)), minStake);
    }

    function test_slashImpossibleUsage_boundsByTheScheduledEndNotThePeriodEnd() public {
        vm.warp(uint256(T0) + DURATION + 1 days);
        IMarket.Receipt memory r = _receipt(lease, 12, T0 + DURATION, T0 + DURATION + 1 hours, BID_GPUS * DURATION);
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketUsagePossible.selector, id, BID_GPUS * DURATION, BID_GPUS * DURATION)
        );
        _proveImpossibleUsage(lease, r, sig);
        r.gpuSecondsCumulative += 1;
        assertEq(_proveImpossibleUsage(lease, r, _sig(r)), minStake);
    }

    function test_slashImpossibleUsage_ignoresATerminationRacingTheReceipt() public {
        // The lab terminates at T0 + 10 min; a receipt up to T0 + 11 min (signed before the
        // termination was mined) is refused for payment but is not proof of cheating.
        vm.prank(lab);
        market.terminate(lease, 0);
        vm.warp(T0 + 11 minutes);
        IMarket.Receipt memory r = _receipt(lease, 2, T0 + 10 minutes, T0 + 11 minutes, BID_GPUS * 11 minutes);
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarket.MarketUsagePossible.selector, id, BID_GPUS * 11 minutes, BID_GPUS * 11 minutes
            )
        );
        _proveImpossibleUsage(lease, r, sig);
    }

    function test_slashImpossibleUsage_revertsWhenTheReceiptNamesAnotherLease() public {
        (IMarket.Lease memory other,) = _open(_pair(_offer(provider, 1), _bid(lab, 1)), 1);
        IMarket.Receipt memory r = _receipt(other, 0, T0, uint64(block.timestamp) + 1, 0);
        bytes memory sig = _sig(r);
        // The proof implies this lease's id: the provider did not sign that receipt.
        IMarket.Receipt memory here = _receipt(lease, 0, T0, uint64(block.timestamp) + 1, 0);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(here), provider));
        _proveImpossibleUsage(lease, r, sig);
    }

    function test_slashImpossibleUsage_revertsWhenNotSignedByTheProvider() public {
        IMarket.Receipt memory r = _receipt(lease, 0, T0, uint64(block.timestamp) + 1, 0);
        bytes memory sig = _signReceipt(PROVIDER2_KEY, r);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(r), provider)
        );
        _proveImpossibleUsage(lease, r, sig);
    }

    function test_slashImpossibleUsage_revertsForUnknownLease() public {
        IMarket.Lease memory unknown = lease;
        unknown.salt = bytes32(0);
        IMarket.Receipt memory r = _receipt(unknown, 0, T0, uint64(block.timestamp) + 1, 0);
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketUnknownLease.selector, keccak256(abi.encode(unknown))));
        _proveImpossibleUsage(unknown, r, sig);
    }

    // --- a slashed lease is settled -------------------------------------------------------------

    function test_slashedLease_refusesClaimsTerminationCloseAndPosts() public {
        IMarket.Receipt memory r = _honest(1);
        bytes memory voucher = _voucher(lease, 1_000);
        _slashEquivocation();
        bytes memory notOpen =
            abi.encodeWithSelector(IMarket.MarketLeaseNotOpen.selector, id, IMarket.LeaseStatus.Closed);
        vm.expectRevert(notOpen);
        market.claim(lease, 1_000, bytes32(0), voucher);
        vm.expectRevert(notOpen);
        vm.prank(lab);
        market.terminate(lease, 0);
        vm.expectRevert(notOpen);
        vm.prank(provider);
        market.closeLease(lease);
        bytes memory sig = _sig(r);
        vm.expectRevert(notOpen);
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
        vm.expectRevert(notOpen);
        market.finalizeClaim(lease);
        vm.expectRevert(notOpen);
        vm.prank(lab);
        market.disputeClaim(lease);
    }

    function test_slash_dropsAPendingClaim() public {
        _post(_honest(0));
        _slashEquivocation();
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketLeaseNotOpen.selector, id, IMarket.LeaseStatus.Closed));
        market.finalizeClaim(lease);
        assertEq(market.withdrawable(provider), 0);
    }

    // --- postReceipt ----------------------------------------------------------------------------

    function test_postReceipt_recordsAPendingClaimAndEmitsTheReceipt() public {
        IMarket.Receipt memory r = _honest(1); // 4 GPUs x 600 s
        bytes memory sig = _sig(r);
        bytes32 digest = market.hashReceipt(r);
        uint64 readyAt = uint64(block.timestamp) + CHALLENGE_WINDOW;
        vm.expectEmit(address(market));
        emit IMarket.ReceiptPosted(id, digest, price * 2_400, readyAt, r, sig);
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
        IMarket.PendingClaim memory c = market.pendingClaim(id);
        assertEq(c.amount, price * 2_400);
        assertEq(c.seq, 1);
        assertEq(c.readyAt, readyAt);
        assertEq(c.receiptHash, digest);
        assertEq(market.leaseState(id).paid, 0, "nothing paid before the window");
    }

    function test_postReceipt_aHigherSeqReplacesTheClaimAndRestartsTheWindow() public {
        _post(_honest(0));
        vm.warp(block.timestamp + 1 hours);
        IMarket.Receipt memory r = _honest(1);
        _post(r);
        IMarket.PendingClaim memory c = market.pendingClaim(id);
        assertEq(c.seq, 1);
        assertEq(c.amount, price * 2_400);
        assertEq(c.readyAt, block.timestamp + CHALLENGE_WINDOW);
        assertEq(c.receiptHash, market.hashReceipt(r));
    }

    function test_postReceipt_revertsForASeqNotAboveTheLastPosted() public {
        _post(_honest(1));
        IMarket.Receipt memory older = _honest(0);
        bytes memory sig = _sig(older);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketReceiptNotNewer.selector, id, 0, 1));
        vm.prank(provider);
        market.postReceipt(lease, older, sig);
        IMarket.Receipt memory same = _honest(1);
        sig = _sig(same);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketReceiptNotNewer.selector, id, 1, 1));
        vm.prank(provider);
        market.postReceipt(lease, same, sig);
    }

    function test_postReceipt_revertsWhenNotTheProvider() public {
        IMarket.Receipt memory r = _honest(0);
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNotProvider.selector, id, stranger));
        vm.prank(stranger);
        market.postReceipt(lease, r, sig);
    }

    function test_postReceipt_revertsForAReceiptReplayedFromAnotherLease() public {
        (IMarket.Lease memory other,) = _open(_pair(_offer(provider, 1), _bid(lab, 1)), BID_GPUS);
        IMarket.Receipt memory r = _receipt(other, 0, T0, T0 + 5 minutes, BID_GPUS * 5 minutes);
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketReceiptWrongLease.selector, id, r.leaseId));
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function test_postReceipt_revertsForAPeriodInTheFutureOrBeforeTheLease() public {
        IMarket.Receipt memory r = _receipt(lease, 0, T0, uint64(block.timestamp) + 1, 4);
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarket.MarketReceiptPeriodInvalid.selector, id, T0, block.timestamp + 1, block.timestamp
            )
        );
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
        r = _receipt(lease, 0, T0 - 1, T0 + 60, 4);
        sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketReceiptPeriodInvalid.selector, id, T0 - 1, T0 + 60, block.timestamp)
        );
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function test_postReceipt_revertsForImpossibleUsage() public {
        IMarket.Receipt memory r = _honest(0);
        r.gpuSecondsCumulative += 1;
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketUsageImpossible.selector, id, BID_GPUS * 300 + 1, BID_GPUS * 300)
        );
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function test_postReceipt_boundsUsageByTheTerminationTime() public {
        vm.prank(lab);
        market.terminate(lease, 0); // at T0 + 10 min
        vm.warp(T0 + 20 minutes);
        IMarket.Receipt memory r = _receipt(lease, 0, T0, T0 + 20 minutes, BID_GPUS * 10 minutes + 1);
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarket.MarketUsageImpossible.selector, id, BID_GPUS * 10 minutes + 1, BID_GPUS * 10 minutes
            )
        );
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
        r.gpuSecondsCumulative -= 1;
        _post(r);
        assertEq(market.pendingClaim(id).amount, price * BID_GPUS * 10 minutes);
    }

    function test_postReceipt_revertsWhenVouchersAlreadyPaidAsMuch() public {
        IMarket.Receipt memory r = _honest(0);
        market.claim(lease, price * r.gpuSecondsCumulative, bytes32(0), _voucher(lease, price * r.gpuSecondsCumulative));
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarket.MarketNothingToClaim.selector,
                id,
                price * r.gpuSecondsCumulative,
                price * r.gpuSecondsCumulative
            )
        );
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function test_postReceipt_revertsWhenNotSignedByTheProvider() public {
        IMarket.Receipt memory r = _honest(0);
        bytes memory sig = _signReceipt(LAB_KEY, r);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, market.hashReceipt(r), provider)
        );
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function test_postReceipt_revertsForUnknownOrClosedLease() public {
        IMarket.Lease memory unknown = lease;
        unknown.duration += 1;
        IMarket.Receipt memory r = _honest(0);
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketUnknownLease.selector, keccak256(abi.encode(unknown))));
        vm.prank(provider);
        market.postReceipt(unknown, r, sig);
        vm.prank(provider);
        market.closeLease(lease);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketLeaseNotOpen.selector, id, IMarket.LeaseStatus.Closed));
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    // --- finalizeClaim --------------------------------------------------------------------------

    function test_finalizeClaim_creditsTheProviderOnceTheWindowHasPassed() public {
        IMarket.Receipt memory r = _honest(1);
        _post(r);
        uint64 readyAt = market.pendingClaim(id).readyAt;
        vm.warp(readyAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketChallengeWindowOpen.selector, id, readyAt));
        market.finalizeClaim(lease);

        vm.warp(readyAt);
        bytes32 digest = market.hashReceipt(r);
        vm.expectEmit(address(market));
        emit IMarket.Claimed(id, price * 2_400, price * 2_400, digest);
        vm.expectEmit(address(market));
        emit IMarket.ClaimFinalized(id, 1, digest, price * 2_400);
        vm.prank(stranger); // anyone may finalize
        assertEq(market.finalizeClaim(lease), price * 2_400);

        assertEq(market.leaseState(id).paid, price * 2_400);
        assertEq(market.withdrawable(provider), price * 2_400);
        IMarket.PendingClaim memory c = market.pendingClaim(id);
        assertEq(c.amount, 0);
        assertEq(c.readyAt, 0);
        assertEq(c.seq, 1, "the last posted seq stays");
        assertEq(c.receiptHash, digest);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNoPendingClaim.selector, id));
        market.finalizeClaim(lease);
    }

    function test_finalizeClaim_paysOnlyWhatVouchersHaveNotPaid() public {
        _post(_honest(1)); // worth 2_400_000
        market.claim(lease, 1_000_000, bytes32(0), _voucher(lease, 1_000_000));
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        assertEq(market.finalizeClaim(lease), 1_400_000);
        assertEq(market.leaseState(id).paid, 2_400_000);
        assertEq(market.withdrawable(provider), 2_400_000);
    }

    function test_finalizeClaim_creditsNothingWhenAVoucherPaidMore() public {
        IMarket.Receipt memory r = _honest(1);
        _post(r);
        market.claim(lease, 3_000_000, bytes32(0), _voucher(lease, 3_000_000));
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.recordLogs();
        assertEq(market.finalizeClaim(lease), 0);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 1, "ClaimFinalized only, no Claimed");
        assertEq(logs[0].topics[0], IMarket.ClaimFinalized.selector);
        assertEq(market.leaseState(id).paid, 3_000_000, "paid never decreases");
        assertEq(market.pendingClaim(id).readyAt, 0, "cleared");
    }

    function test_finalizeClaim_revertsWithoutAPendingClaim() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNoPendingClaim.selector, id));
        market.finalizeClaim(lease);
    }

    function test_finalizeClaim_afterTheLeaseEndedAndTheProviderClosedIsRefused() public {
        _post(_honest(1));
        vm.prank(provider);
        market.closeLease(lease); // the provider gives its claim up with the lease
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketLeaseNotOpen.selector, id, IMarket.LeaseStatus.Closed));
        market.finalizeClaim(lease);
    }

    // --- disputeClaim ---------------------------------------------------------------------------

    function test_disputeClaim_dropsTheClaimForGood() public {
        IMarket.Receipt memory r = _honest(1);
        _post(r);
        bytes32 digest = market.hashReceipt(r);
        vm.expectEmit(address(market));
        emit IMarket.ClaimDisputed(id, 1, digest);
        vm.prank(lab);
        market.disputeClaim(lease);
        IMarket.PendingClaim memory c = market.pendingClaim(id);
        assertEq(c.amount, 0);
        assertEq(c.readyAt, 0);
        assertEq(c.seq, 1);

        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNoPendingClaim.selector, id));
        market.finalizeClaim(lease);
        // The disputed receipt cannot be posted again; a later one can.
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketReceiptNotNewer.selector, id, 1, 1));
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
        _post(_honest(2));
        assertEq(market.pendingClaim(id).seq, 2);
    }

    function test_disputeClaim_revertsWhenNotTheLab() public {
        _post(_honest(0));
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNotLab.selector, id, provider));
        vm.prank(provider);
        market.disputeClaim(lease);
    }

    function test_disputeClaim_revertsOnceTheWindowHasClosed() public {
        _post(_honest(0));
        uint64 readyAt = market.pendingClaim(id).readyAt;
        vm.warp(readyAt);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketChallengeWindowClosed.selector, id, readyAt));
        vm.prank(lab);
        market.disputeClaim(lease);
    }

    function test_disputeClaim_revertsWithoutAPendingClaim() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNoPendingClaim.selector, id));
        vm.prank(lab);
        market.disputeClaim(lease);
    }

    // --- closeLease with a pending claim --------------------------------------------------------

    function test_closeLease_byTheLabWaitsForAPendingClaim() public {
        // Posted after the end: ready after the claim window closes.
        vm.warp(uint256(T0) + DURATION + 1 hours);
        IMarket.Receipt memory r = _receipt(lease, 0, T0, T0 + DURATION, BID_GPUS * DURATION);
        _post(r);
        uint64 readyAt = market.pendingClaim(id).readyAt;
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW); // the claim window after the end has passed
        assertLt(block.timestamp, readyAt);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketClaimPending.selector, id, readyAt));
        vm.prank(lab);
        market.closeLease(lease);

        vm.warp(readyAt);
        assertEq(market.finalizeClaim(lease), escrow);
        vm.prank(lab);
        assertEq(market.closeLease(lease), 0);
    }

    function test_closeLease_byTheLabAfterADispute() public {
        _post(_honest(0));
        vm.prank(lab);
        market.disputeClaim(lease);
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW);
        vm.prank(lab);
        assertEq(market.closeLease(lease), escrow);
    }

    // --- withdraw of slashed stake --------------------------------------------------------------

    function test_withdraw_ofOnlySlashedStakeTransfersFromTheRegistryAlone() public {
        vm.prank(provider);
        market.closeLease(lease);
        assertEq(_withdraw(lab), escrow);
        _slashEquivocation();
        assertEq(market.withdrawable(lab), minStake);
        uint256 marketBefore = usd.balanceOf(address(market));
        vm.recordLogs();
        assertEq(_withdraw(lab), minStake);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 transfers = 0;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].topics[0] == IERC20.Transfer.selector) {
                ++transfers;
                assertEq(address(uint160(uint256(logs[i].topics[1]))), address(registry), "from the registry");
            }
        }
        assertEq(transfers, 1);
        assertEq(usd.balanceOf(address(market)), marketBefore);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNothingToWithdraw.selector, lab));
        vm.prank(lab);
        market.withdraw();
    }

    function test_withdrawable_sumsCreditAndSlashedStake() public {
        market.claim(lease, 1_000, bytes32(0), _voucher(lease, 1_000));
        _slashEquivocation();
        assertEq(market.withdrawable(lab), escrow - 1_000 + minStake);
        assertEq(market.withdrawable(provider), 1_000);
    }

    function test_credit_revertsWhenACreditWouldReach2To128() public {
        // Two leases whose escrows are each about 2^127, refunded to the same lab: a token with a
        // supply this large could carry the credit into the slashed half.
        uint256 hugePrice = (uint256(1) << 127) / 600 + 1; // escrow just above 2^127
        usd.mint(lab2, uint256(1) << 129);
        IMarket.Lease[2] memory leases;
        for (uint256 i = 0; i < 2; ++i) {
            IMarket.Offer memory offer = _offer(provider2, 100 + i);
            offer.pricePerGpuSecond = hugePrice;
            IMarket.Bid memory bid = _bid(lab2, 100 + i);
            bid.maxPricePerGpuSecond = hugePrice;
            bid.duration = 600;
            (leases[i],) = _open(_pair(offer, bid), 1);
        }
        vm.startPrank(provider2);
        market.closeLease(leases[0]);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketCreditOverflow.selector, lab2, hugePrice * 600));
        market.closeLease(leases[1]);
        vm.stopPrank();
    }

    function test_finalizeAndDispute_revertForUnknownLease() public {
        IMarket.Lease memory unknown = lease;
        unknown.start += 1;
        bytes memory err = abi.encodeWithSelector(IMarket.MarketUnknownLease.selector, keccak256(abi.encode(unknown)));
        vm.expectRevert(err);
        market.finalizeClaim(unknown);
        vm.expectRevert(err);
        vm.prank(lab);
        market.disputeClaim(unknown);
    }

    function test_postedReceipt_isNeverProofOfImpossibleUsage() public {
        // What postReceipt accepts is bounded at least as tightly as the slashing rule: a period
        // in the past and in the lease, usage within the lease's current (earliest) end.
        vm.prank(lab);
        market.terminate(lease, 0);
        vm.warp(T0 + 30 minutes);
        IMarket.Receipt memory r = _receipt(lease, 0, T0, T0 + 20 minutes, BID_GPUS * 10 minutes);
        bytes memory sig = _sig(r);
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
        vm.warp(T0 + 2 days);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarket.MarketUsagePossible.selector, id, BID_GPUS * 10 minutes, BID_GPUS * 20 minutes
            )
        );
        _proveImpossibleUsage(lease, r, sig);
    }
}
