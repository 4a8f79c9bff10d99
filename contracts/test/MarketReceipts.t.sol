// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Vm} from "forge-std/Vm.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IMarketCore} from "../src/interfaces/IMarketCore.sol";
import {IMarketTypes} from "../src/interfaces/IMarketTypes.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {ERC1271Lab} from "./helpers/ERC1271Lab.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";

/// @notice Receipts on-chain: their EIP-712 digest, the two slashing proofs (equivocation and
/// impossible usage) and the optimistic claim (post, finalize, dispute). A 6-decimals TestUSD, no
/// fee; the lease is BID_GPUS GPUs for DURATION at `price`, escrow 14.4 tUSD; it locks as much of
/// its provider's stake (the minimum stake, 1,000 tUSD), which is what a proof slashes. Slashed
/// stake vests for the unbonding delay before the lab can withdraw it.
contract MarketReceiptsTest is MarketFixture {
    TestUSD internal usd;
    IMarketTypes.Lease internal lease;
    bytes32 internal id;
    uint256 internal escrow;
    uint256 internal lock; // the lease's stake lock: escrow * STAKE_RATIO_BPS / 10_000

    function setUp() public {
        usd = new TestUSD(6);
        _deploy(address(usd), 6, 0, address(0));
        (lease, id) = _open(_defaultPair(), BID_GPUS);
        escrow = _escrowOf(lease);
        lock = _leaseLock(lease);
        vm.warp(T0 + 10 minutes);
    }

    // --- helpers --------------------------------------------------------------------------------

    /// @dev The provider's honest receipt `seq` for [T0 + seq * 5 min, T0 + (seq + 1) * 5 min),
    /// every GPU busy.
    function _honest(uint64 seq) internal view returns (IMarketTypes.Receipt memory) {
        uint64 end = T0 + (seq + 1) * 5 minutes;
        return _receipt(lease, seq, T0 + seq * 5 minutes, end, BID_GPUS * (end - T0));
    }

    function _sig(IMarketTypes.Receipt memory r) internal view returns (bytes memory) {
        return _signReceipt(PROVIDER_KEY, r);
    }

    /// @dev Two different receipts `seq`, both signed by the provider: the honest one and one with
    /// a smaller usage.
    function _fork(uint64 seq)
        internal
        view
        returns (IMarketTypes.Receipt memory a, bytes memory sigA, IMarketTypes.Receipt memory b, bytes memory sigB)
    {
        a = _honest(seq);
        b = _honest(seq);
        b.gpuSecondsCumulative -= 1;
        sigA = _sig(a);
        sigB = _sig(b);
    }

    function _slashEquivocation() internal returns (uint256) {
        (IMarketTypes.Receipt memory a, bytes memory sigA, IMarketTypes.Receipt memory b, bytes memory sigB) = _fork(1);
        return _proveEquivocation(lease, a, sigA, b, sigB);
    }

    function _post(IMarketTypes.Receipt memory r) internal {
        bytes memory sig = _sig(r);
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function _stakeOf(address who) internal view returns (uint256) {
        return market.getProvider(who).stake;
    }

    /// @dev When stake slashed now vests.
    function _vestsAt() internal view returns (uint40) {
        return uint40(block.timestamp) + UNBONDING_DELAY;
    }

    function _assertSlashedAndClosed(uint128 paid) internal view {
        IMarketTypes.LeaseState memory s = market.leaseState(id);
        assertEq(uint8(s.status), uint8(IMarketTypes.LeaseStatus.Closed), "closed");
        assertTrue(s.slashed, "slashed");
        assertEq(s.paid, paid, "paid kept");
    }


    // --- EIP-712 --------------------------------------------------------------------------------

    function test_hashReceipt_equalsIndependentEip712Digest() public view {
        IMarketTypes.Receipt memory r = _honest(3);
        r.attestationHash = keccak256("attestation");
        assertEq(market.hashReceipt(r), _receiptDigest(r));
    }

    /// @dev A third implementation: forge's own EIP-712 encoder, fed the typed data as JSON.
    function test_hashReceipt_equalsForgeEip712HashTypedData() public view {
        IMarketTypes.Receipt memory r = _honest(3);
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

    function test_constructor_setsChallengeWindowAndTheLeaseLocksItsStake() public view {
        assertEq(market.challengeWindow(), CHALLENGE_WINDOW);
        assertEq(market.stakeRatioBps(), STAKE_RATIO_BPS);
        assertEq(lock, 14_400_000, "the whole escrow at 100%");
        assertEq(market.getProvider(provider).locked, lock);
        assertEq(market.freeStake(provider), minStake - lock);
    }

    // --- slashEquivocation ----------------------------------------------------------------------

    function test_slashEquivocation_slashesStakeToLabRefundsEscrowAndSettlesLease() public {
        market.claim(lease, 1_000_000, bytes32(0), _voucher(lease, 1_000_000));
        (IMarketTypes.Receipt memory a, bytes memory sigA, IMarketTypes.Receipt memory b, bytes memory sigB) = _fork(1);
        uint256 labBefore = usd.balanceOf(lab);
        uint256 marketBefore = usd.balanceOf(address(market));
        uint40 vestsAt = _vestsAt();

        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseSlashed(id, provider, lock, escrow - 1_000_000, vestsAt);
        vm.recordLogs();
        vm.prank(stranger); // anyone may prove it; the lab is the beneficiary
        uint256 penalty = _proveEquivocation(lease, a, sigA, b, sigB);

        assertEq(vm.getRecordedLogs().length, 1, "LeaseSlashed alone: no transfer");
        assertEq(penalty, lock, "the lease's stake lock");
        assertEq(_stakeOf(provider), minStake - lock);
        assertEq(market.getProvider(provider).locked, 0, "the lock is spent");
        assertFalse(market.isEligible(provider), "below the minimum stake now");
        _assertSlashedAndClosed(1_000_000);
        assertTrue(market.leaseState(id).stakeReleased, "nothing more to slash on it");
        assertEq(market.withdrawable(lab), escrow - 1_000_000, "the refund now; the penalty vests");
        (uint256 slashed, uint40 vests) = market.slashedCredit(lab);
        assertEq(slashed, lock);
        assertEq(vests, vestsAt);
        assertEq(market.withdrawable(stranger), 0, "the prover gets nothing");
        assertEq(usd.balanceOf(address(market)), marketBefore, "accounting only");

        // The refund is withdrawn at once, the penalty once it has vested.
        assertEq(_withdraw(lab), escrow - 1_000_000);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToWithdraw.selector, lab));
        vm.prank(lab);
        market.withdraw();
        vm.warp(vestsAt - 1);
        assertEq(market.withdrawable(lab), 0);
        vm.warp(vestsAt);
        assertEq(market.withdrawable(lab), lock);
        vm.expectEmit(address(market));
        emit IMarketTypes.Withdrawn(lab, lock);
        assertEq(_withdraw(lab), lock);
        assertEq(usd.balanceOf(lab), labBefore + escrow - 1_000_000 + lock);
        assertEq(usd.balanceOf(address(market)), staked - lock + 1_000_000, "stake left and the provider's credit");
        assertEq(market.withdrawable(lab), 0);
        (slashed,) = market.slashedCredit(lab);
        assertEq(slashed, 0);
        assertEq(_withdraw(provider), 1_000_000, "payment for accepted work is kept");
    }

    function test_slashEquivocation_afterTermination() public {
        vm.prank(lab);
        market.terminate(lease, 500_000);
        uint256 penalty = _slashEquivocation();
        assertEq(penalty, lock);
        _assertSlashedAndClosed(500_000);
        assertEq(market.withdrawable(lab), escrow - 500_000);
        (uint256 slashed,) = market.slashedCredit(lab);
        assertEq(slashed, lock);
    }

    function test_slashEquivocation_afterProviderClosedCreditsOnlyThePenalty() public {
        // A provider that sees the proof coming and closes first still gets slashed.
        vm.prank(provider);
        uint256 refund = market.closeLease(lease);
        assertEq(refund, escrow);
        assertFalse(market.leaseState(id).stakeReleased, "closed within its proof window: still locked");
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseSlashed(id, provider, lock, 0, _vestsAt());
        assertEq(_slashEquivocation(), lock);
        _assertSlashedAndClosed(0);
        assertEq(market.withdrawable(lab), escrow, "the close's refund");
        (uint256 slashed,) = market.slashedCredit(lab);
        assertEq(slashed, lock);
    }

    function test_slashEquivocation_paysEachLeasesLockWhateverTheProviderUnstaked() public {
        (IMarketTypes.Lease memory other, bytes32 otherId) = _open(_pair(_offer(provider, 1), _bid(lab2, 1)), 1);
        uint256 otherLock = _leaseLock(other);
        uint256 free = minStake - lock - otherLock;
        assertEq(market.freeStake(provider), free);
        // Only free stake can unbond: the two locks stay bonded.
        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.RegistryUnstakeExceedsFree.selector, free + 1, free));
        market.requestUnstake(free + 1);
        market.requestUnstake(free);
        vm.stopPrank();
        assertEq(_stakeOf(provider), lock + otherLock);

        assertEq(_slashEquivocation(), lock);
        assertEq(_stakeOf(provider), otherLock);
        assertEq(market.getProvider(provider).unbonding, free, "unbonding stake is not touched");

        // A second lease of the same provider: its own lock is still there for its lab.
        IMarketTypes.Receipt memory a = _receipt(other, 0, T0, T0 + 60, 60);
        IMarketTypes.Receipt memory b = _receipt(other, 0, T0, T0 + 60, 59);
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseSlashed(otherId, provider, otherLock, _escrowOf(other), _vestsAt());
        uint256 penalty = _proveEquivocation(other, a, _sig(a), b, _sig(b));
        assertEq(penalty, otherLock);
        assertEq(_stakeOf(provider), 0);
        assertEq(market.getProvider(provider).locked, 0);
        assertEq(market.withdrawable(lab2), _escrowOf(other));
        (uint256 slashed,) = market.slashedCredit(lab2);
        assertEq(slashed, otherLock);
    }

    function test_slashEquivocation_revertsTheSecondTime() public {
        _slashEquivocation();
        (IMarketTypes.Receipt memory a, bytes memory sigA, IMarketTypes.Receipt memory b, bytes memory sigB) = _fork(0);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketLeaseAlreadySlashed.selector, id));
        _proveEquivocation(lease, a, sigA, b, sigB);
        IMarketTypes.Receipt memory r = _honest(0);
        r.periodEnd = uint64(block.timestamp + 1);
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketLeaseAlreadySlashed.selector, id));
        _proveImpossibleUsage(lease, r, sig);
    }

    function test_slashEquivocation_revertsForUnknownLease() public {
        (IMarketTypes.Receipt memory a, bytes memory sigA, IMarketTypes.Receipt memory b, bytes memory sigB) = _fork(1);
        IMarketTypes.Lease memory unknown = lease;
        unknown.gpus = 3;
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketUnknownLease.selector, keccak256(abi.encode(unknown))));
        _proveEquivocation(unknown, a, sigA, b, sigB);
    }

    /// @dev The proof implies the lease id: a receipt of another lease of the same provider is,
    /// for this lease, a receipt the provider never signed.
    function test_slashEquivocation_revertsWhenAReceiptNamesAnotherLease() public {
        (IMarketTypes.Lease memory other,) = _open(_pair(_offer(provider, 1), _bid(lab, 1)), 1);
        IMarketTypes.Receipt memory a = _honest(1);
        IMarketTypes.Receipt memory b = _receipt(other, 1, T0, T0 + 60, 60);
        (bytes memory sigA, bytes memory sigB) = (_sig(a), _sig(b));
        IMarketTypes.Receipt memory bHere = _receipt(lease, 1, T0, T0 + 60, 60);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(bHere), provider)
        );
        _proveEquivocation(lease, a, sigA, b, sigB);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(bHere), provider)
        );
        _proveEquivocation(lease, b, sigB, a, sigA);
    }

    /// @dev One seq for both: a receipt signed for another seq is not signed for this one.
    function test_slashEquivocation_revertsForReceiptsOfDifferentSeqs() public {
        IMarketTypes.Receipt memory a = _honest(1);
        IMarketTypes.Receipt memory b = _honest(2);
        (bytes memory sigA, bytes memory sigB) = (_sig(a), _sig(b));
        IMarketTypes.Receipt memory bAtSeq1 = _honest(2);
        bAtSeq1.seq = 1;
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(bAtSeq1), provider)
        );
        _proveEquivocation(lease, a, sigA, b, sigB);
    }

    function test_slashEquivocation_revertsForTheSameReceiptTwice() public {
        IMarketTypes.Receipt memory a = _honest(1);
        bytes memory sig = _sig(a);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketReceiptsNotConflicting.selector, market.hashReceipt(a)));
        _proveEquivocation(lease, a, sig, a, sig);
        // The same receipt with its signature in both forms is still one receipt.
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketReceiptsNotConflicting.selector, market.hashReceipt(a)));
        _proveEquivocation(lease, a, sig, a, _compact(sig));
    }

    function test_slashEquivocation_acceptsEip2098CompactSignatures() public {
        (IMarketTypes.Receipt memory a, bytes memory sigA, IMarketTypes.Receipt memory b, bytes memory sigB) = _fork(1);
        assertEq(_compact(sigA).length, 64);
        assertEq(_proveEquivocation(lease, a, _compact(sigA), b, sigB), lock);
        _assertSlashedAndClosed(0);
        assertEq(market.withdrawable(lab), escrow);
    }

    function test_slashEquivocation_revertsOnAForgedCompactSignature() public {
        (IMarketTypes.Receipt memory a, bytes memory sigA, IMarketTypes.Receipt memory b,) = _fork(1);
        bytes memory forged = _compact(_signReceipt(LAB_KEY, b));
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(b), provider)
        );
        _proveEquivocation(lease, a, _compact(sigA), b, forged);
    }

    /// @dev A uint64 body field with high bits set is refused as the ABI decoder refuses it (an
    /// empty revert), not hashed into a digest nobody signed.
    function test_slashEquivocation_revertsOnADirtyUint64BodyWord() public {
        (IMarketTypes.Receipt memory a, bytes memory sigA, IMarketTypes.Receipt memory b, bytes memory sigB) = _fork(1);
        bytes memory data =
            abi.encodeCall(IMarketCore.slashEquivocation, (lease, uint64(1), _body(a), sigA, _body(b), sigB));
        // lease (12 words) and seq come first; a.periodEnd is a's word 2.
        uint256 offset = 4 + 32 * (12 + 1 + 2);
        data[offset] = 0x01;
        (bool ok, bytes memory ret) = address(market).call(data);
        assertFalse(ok);
        assertEq(ret.length, 0);
    }

    function test_slashEquivocation_revertsWhenOneReceiptIsNotSignedByTheProvider() public {
        (IMarketTypes.Receipt memory a, bytes memory sigA, IMarketTypes.Receipt memory b,) = _fork(1);
        bytes memory forged = _signReceipt(LAB_KEY, b); // the lab cannot frame its provider
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(b), provider)
        );
        _proveEquivocation(lease, a, sigA, b, forged);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(b), provider)
        );
        _proveEquivocation(lease, b, forged, a, sigA);
    }

    function test_slashEquivocation_revertsOnAMalleableSignature() public {
        (IMarketTypes.Receipt memory a, bytes memory sigA, IMarketTypes.Receipt memory b, bytes memory sigB) = _fork(1);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(b), provider)
        );
        _proveEquivocation(lease, a, sigA, b, _malleate(sigB));
    }

    /// @dev A lease from a contract provider (a wallet whose owner key signs its offers through
    /// ERC-1271) whose receipts `RECEIPT_KEY` signs.
    function _openContractProviderLease(uint256 ownerKey, uint256 receiptKey)
        internal
        returns (ERC1271Lab wallet, IMarketTypes.Lease memory walletLease)
    {
        wallet = new ERC1271Lab(vm.addr(ownerKey));
        usd.mint(address(wallet), minStake);
        vm.startPrank(address(wallet));
        usd.approve(address(market), minStake);
        market.register(minStake, "https://wallet.example", bytes32(0), bytes32(0));
        vm.stopPrank();
        staked += minStake;
        IMarketTypes.Offer memory offer = _offer(address(wallet), 0);
        offer.receiptSigner = vm.addr(receiptKey);
        IMarketTypes.Bid memory bid = _bid(lab, 7);
        Pair memory p = Pair(offer, _sign(ownerKey, market.hashOffer(offer)), bid, _signBid(bid));
        (walletLease,) = _open(p, 1);
    }

    function test_slashEquivocation_ofAContractProviderChecksItsReceiptSignerNotErc1271() public {
        uint256 ownerKey = 0x5AFE;
        uint256 receiptKey = 0xBEEF;
        (ERC1271Lab wallet, IMarketTypes.Lease memory walletLease) = _openContractProviderLease(ownerKey, receiptKey);
        IMarketTypes.Receipt memory a = _receipt(walletLease, 0, T0 + 600, T0 + 601, 1);
        IMarketTypes.Receipt memory b = _receipt(walletLease, 0, T0 + 600, T0 + 601, 0);

        // The wallet owner's signatures pass ERC-1271 but are not the lease's receipt key.
        bytes memory ownerB = _sign(ownerKey, market.hashReceipt(b));
        assertEq(wallet.isValidSignature(market.hashReceipt(b), ownerB), bytes4(0x1626ba7e));
        bytes memory sigA = _sign(receiptKey, market.hashReceipt(a));
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(b), vm.addr(receiptKey))
        );
        _proveEquivocation(walletLease, a, sigA, b, ownerB);

        // Receipts of the receipt key prove it, whatever the wallet answers now.
        wallet.setRevoked(true);
        wallet.setGasToBurn(wallet.BURN_ALL());
        bytes memory sigB = _sign(receiptKey, market.hashReceipt(b));
        uint256 walletLock = _leaseLock(walletLease);
        assertEq(_proveEquivocation(walletLease, a, sigA, b, sigB), walletLock);
        assertEq(_stakeOf(address(wallet)), minStake - walletLock);
    }

    function test_receiptSigner_ofAnEoaProviderIsTheOnlyKeyForItsReceipts() public {
        uint256 receiptKey = 0xBEEF;
        address signer = vm.addr(receiptKey);
        IMarketTypes.Offer memory offer = _offer(provider, 9);
        offer.receiptSigner = signer;
        (IMarketTypes.Lease memory l, bytes32 lid) = _open(_pair(offer, _bid(lab, 9)), 2);
        assertEq(l.receiptSigner, signer);
        vm.warp(l.start + 5 minutes);
        IMarketTypes.Receipt memory r = _receipt(l, 0, l.start, l.start + 5 minutes, 2 * 5 minutes);

        // The provider's own key no longer signs this lease's receipts.
        bytes memory providerSig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(r), signer));
        vm.prank(provider);
        market.postReceipt(l, r, providerSig);

        bytes memory sig = _signReceipt(receiptKey, r);
        vm.prank(provider);
        market.postReceipt(l, r, sig);
        assertEq(market.pendingClaim(lid).amount, price * 2 * 5 minutes);

        // And it proves impossible usage.
        IMarketTypes.Receipt memory bad = _receipt(l, 1, l.start, l.start + 5 minutes, 2 * 5 minutes + 1);
        bytes memory badByProvider = _sig(bad);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(bad), signer)
        );
        _proveImpossibleUsage(l, bad, badByProvider);
        assertEq(_proveImpossibleUsage(l, bad, _signReceipt(receiptKey, bad)), _leaseLock(l));
    }

    // --- slashImpossibleUsage -------------------------------------------------------------------

    function test_slashImpossibleUsage_slashesUsageAboveGpusTimesElapsed() public {
        IMarketTypes.Receipt memory r = _honest(0); // ends at T0 + 5 min: at most 4 x 300 GPU-seconds
        r.gpuSecondsCumulative = BID_GPUS * 5 minutes + 1;
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseSlashed(id, provider, lock, escrow, _vestsAt());
        assertEq(_proveImpossibleUsage(lease, r, _sig(r)), lock);
        _assertSlashedAndClosed(0);
        assertEq(market.withdrawable(lab), escrow);
        (uint256 slashed,) = market.slashedCredit(lab);
        assertEq(slashed, lock);
    }

    function test_slashImpossibleUsage_revertsAtExactlyGpusTimesElapsed() public {
        IMarketTypes.Receipt memory r = _honest(0);
        assertEq(r.gpuSecondsCumulative, BID_GPUS * 5 minutes);
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketUsagePossible.selector, id, r.gpuSecondsCumulative, BID_GPUS * 300)
        );
        _proveImpossibleUsage(lease, r, sig);
    }

    function test_slashImpossibleUsage_slashesAPeriodEndingInTheFuture() public {
        IMarketTypes.Receipt memory r = _receipt(lease, 2, T0 + 10 minutes, uint64(block.timestamp) + 1, 0);
        assertEq(_proveImpossibleUsage(lease, r, _sig(r)), lock);
    }

    function test_slashImpossibleUsage_revertsForAPeriodEndingNow() public {
        IMarketTypes.Receipt memory r = _receipt(lease, 2, T0 + 5 minutes, uint64(block.timestamp), 0);
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketUsagePossible.selector, id, 0, BID_GPUS * 600));
        _proveImpossibleUsage(lease, r, sig);
    }

    function test_slashImpossibleUsage_slashesAPeriodStartingBeforeTheLease() public {
        IMarketTypes.Receipt memory r = _receipt(lease, 0, T0 - 1, T0 + 60, 0);
        assertEq(_proveImpossibleUsage(lease, r, _sig(r)), lock);
    }

    function test_slashImpossibleUsage_boundsByTheScheduledEndNotThePeriodEnd() public {
        vm.warp(uint256(T0) + DURATION + 1 days);
        IMarketTypes.Receipt memory r = _receipt(lease, 12, T0 + DURATION, T0 + DURATION + 1 hours, BID_GPUS * DURATION);
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketUsagePossible.selector, id, BID_GPUS * DURATION, BID_GPUS * DURATION)
        );
        _proveImpossibleUsage(lease, r, sig);
        r.gpuSecondsCumulative += 1;
        assertEq(_proveImpossibleUsage(lease, r, _sig(r)), lock);
    }

    function test_slashImpossibleUsage_ignoresATerminationRacingTheReceipt() public {
        // The lab terminates at T0 + 10 min; a receipt up to T0 + 11 min (signed before the
        // termination was mined) is refused for payment but is not proof of cheating.
        vm.prank(lab);
        market.terminate(lease, 0);
        vm.warp(T0 + 11 minutes);
        IMarketTypes.Receipt memory r = _receipt(lease, 2, T0 + 10 minutes, T0 + 11 minutes, BID_GPUS * 11 minutes);
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarketTypes.MarketUsagePossible.selector, id, BID_GPUS * 11 minutes, BID_GPUS * 11 minutes
            )
        );
        _proveImpossibleUsage(lease, r, sig);
    }

    function test_slashImpossibleUsage_revertsWhenTheReceiptNamesAnotherLease() public {
        (IMarketTypes.Lease memory other,) = _open(_pair(_offer(provider, 1), _bid(lab, 1)), 1);
        IMarketTypes.Receipt memory r = _receipt(other, 0, T0, uint64(block.timestamp) + 1, 0);
        bytes memory sig = _sig(r);
        // The proof implies this lease's id: the provider did not sign that receipt.
        IMarketTypes.Receipt memory here = _receipt(lease, 0, T0, uint64(block.timestamp) + 1, 0);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(here), provider));
        _proveImpossibleUsage(lease, r, sig);
    }

    function test_slashImpossibleUsage_revertsWhenNotSignedByTheProvider() public {
        IMarketTypes.Receipt memory r = _receipt(lease, 0, T0, uint64(block.timestamp) + 1, 0);
        bytes memory sig = _signReceipt(PROVIDER2_KEY, r);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(r), provider)
        );
        _proveImpossibleUsage(lease, r, sig);
    }

    function test_slashImpossibleUsage_revertsForUnknownLease() public {
        IMarketTypes.Lease memory unknown = lease;
        unknown.salt = bytes32(0);
        IMarketTypes.Receipt memory r = _receipt(unknown, 0, T0, uint64(block.timestamp) + 1, 0);
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketUnknownLease.selector, keccak256(abi.encode(unknown))));
        _proveImpossibleUsage(unknown, r, sig);
    }

    // --- a slashed lease is settled -------------------------------------------------------------

    function test_slashedLease_refusesClaimsTerminationCloseAndPosts() public {
        IMarketTypes.Receipt memory r = _honest(1);
        bytes memory voucher = _voucher(lease, 1_000);
        _slashEquivocation();
        bytes memory notOpen =
            abi.encodeWithSelector(IMarketTypes.MarketLeaseNotOpen.selector, id, IMarketTypes.LeaseStatus.Closed);
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
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketLeaseNotOpen.selector, id, IMarketTypes.LeaseStatus.Closed));
        market.finalizeClaim(lease);
        assertEq(market.withdrawable(provider), 0);
    }

    // --- postReceipt ----------------------------------------------------------------------------

    function test_postReceipt_recordsAPendingClaimAndEmitsTheReceipt() public {
        IMarketTypes.Receipt memory r = _honest(1); // 4 GPUs x 600 s
        bytes memory sig = _sig(r);
        bytes32 digest = market.hashReceipt(r);
        uint64 readyAt = uint64(block.timestamp) + CHALLENGE_WINDOW;
        vm.expectEmit(address(market));
        emit IMarketTypes.ReceiptPosted(id, digest, price * 2_400, readyAt, r, sig);
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
        IMarketTypes.PendingClaim memory c = market.pendingClaim(id);
        assertEq(c.amount, price * 2_400);
        assertEq(c.seq, 1);
        assertEq(c.readyAt, readyAt);
        assertEq(c.receiptHash, digest);
        assertEq(market.leaseState(id).paid, 0, "nothing paid before the window");
    }

    function test_postReceipt_aHigherSeqReplacesTheClaimAndRestartsTheWindow() public {
        _post(_honest(0));
        vm.warp(block.timestamp + 1 hours);
        IMarketTypes.Receipt memory r = _honest(1);
        _post(r);
        IMarketTypes.PendingClaim memory c = market.pendingClaim(id);
        assertEq(c.seq, 1);
        assertEq(c.amount, price * 2_400);
        assertEq(c.readyAt, block.timestamp + CHALLENGE_WINDOW);
        assertEq(c.receiptHash, market.hashReceipt(r));
    }

    function test_postReceipt_revertsForASeqNotAboveTheLastPosted() public {
        _post(_honest(1));
        IMarketTypes.Receipt memory older = _honest(0);
        bytes memory sig = _sig(older);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketReceiptNotNewer.selector, id, 0, 1));
        vm.prank(provider);
        market.postReceipt(lease, older, sig);
        IMarketTypes.Receipt memory same = _honest(1);
        sig = _sig(same);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketReceiptNotNewer.selector, id, 1, 1));
        vm.prank(provider);
        market.postReceipt(lease, same, sig);
    }

    function test_postReceipt_revertsWhenNotTheProvider() public {
        IMarketTypes.Receipt memory r = _honest(0);
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNotProvider.selector, id, stranger));
        vm.prank(stranger);
        market.postReceipt(lease, r, sig);
    }

    function test_postReceipt_revertsForAReceiptReplayedFromAnotherLease() public {
        (IMarketTypes.Lease memory other,) = _open(_pair(_offer(provider, 1), _bid(lab, 1)), BID_GPUS);
        IMarketTypes.Receipt memory r = _receipt(other, 0, T0, T0 + 5 minutes, BID_GPUS * 5 minutes);
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketReceiptWrongLease.selector, id, r.leaseId));
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function test_postReceipt_revertsForAPeriodInTheFutureOrBeforeTheLease() public {
        IMarketTypes.Receipt memory r = _receipt(lease, 0, T0, uint64(block.timestamp) + 1, 4);
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarketTypes.MarketReceiptPeriodInvalid.selector, id, T0, block.timestamp + 1, block.timestamp
            )
        );
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
        r = _receipt(lease, 0, T0 - 1, T0 + 60, 4);
        sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketReceiptPeriodInvalid.selector, id, T0 - 1, T0 + 60, block.timestamp)
        );
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function test_postReceipt_revertsForImpossibleUsage() public {
        IMarketTypes.Receipt memory r = _honest(0);
        r.gpuSecondsCumulative += 1;
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketUsageImpossible.selector, id, BID_GPUS * 300 + 1, BID_GPUS * 300)
        );
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function test_postReceipt_boundsUsageByTheTerminationTime() public {
        vm.prank(lab);
        market.terminate(lease, 0); // at T0 + 10 min
        vm.warp(T0 + 20 minutes);
        IMarketTypes.Receipt memory r = _receipt(lease, 0, T0, T0 + 20 minutes, BID_GPUS * 10 minutes + 1);
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarketTypes.MarketUsageImpossible.selector, id, BID_GPUS * 10 minutes + 1, BID_GPUS * 10 minutes
            )
        );
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
        r.gpuSecondsCumulative -= 1;
        _post(r);
        assertEq(market.pendingClaim(id).amount, price * BID_GPUS * 10 minutes);
    }

    function test_postReceipt_revertsWhenVouchersAlreadyPaidAsMuch() public {
        IMarketTypes.Receipt memory r = _honest(0);
        market.claim(lease, price * r.gpuSecondsCumulative, bytes32(0), _voucher(lease, price * r.gpuSecondsCumulative));
        bytes memory sig = _sig(r);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarketTypes.MarketNothingToClaim.selector,
                id,
                price * r.gpuSecondsCumulative,
                price * r.gpuSecondsCumulative
            )
        );
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function test_postReceipt_revertsWhenNotSignedByTheProvider() public {
        IMarketTypes.Receipt memory r = _honest(0);
        bytes memory sig = _signReceipt(LAB_KEY, r);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashReceipt(r), provider)
        );
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    function test_postReceipt_revertsForUnknownOrClosedLease() public {
        IMarketTypes.Lease memory unknown = lease;
        unknown.duration += 1;
        IMarketTypes.Receipt memory r = _honest(0);
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketUnknownLease.selector, keccak256(abi.encode(unknown))));
        vm.prank(provider);
        market.postReceipt(unknown, r, sig);
        vm.prank(provider);
        market.closeLease(lease);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketLeaseNotOpen.selector, id, IMarketTypes.LeaseStatus.Closed));
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
    }

    // --- finalizeClaim --------------------------------------------------------------------------

    function test_finalizeClaim_creditsTheProviderOnceTheWindowHasPassed() public {
        IMarketTypes.Receipt memory r = _honest(1);
        _post(r);
        uint64 readyAt = market.pendingClaim(id).readyAt;
        vm.warp(readyAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketChallengeWindowOpen.selector, id, readyAt));
        market.finalizeClaim(lease);

        vm.warp(readyAt);
        bytes32 digest = market.hashReceipt(r);
        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(id, price * 2_400, price * 2_400, digest);
        vm.expectEmit(address(market));
        emit IMarketTypes.ClaimFinalized(id, 1, digest, price * 2_400, 0);
        vm.prank(stranger); // anyone may finalize
        assertEq(market.finalizeClaim(lease), price * 2_400);

        assertEq(market.leaseState(id).paid, price * 2_400);
        assertEq(market.withdrawable(provider), price * 2_400);
        IMarketTypes.PendingClaim memory c = market.pendingClaim(id);
        assertEq(c.amount, price * 2_400, "the amount stays: the floor a later receipt must raise");
        assertEq(c.readyAt, 0);
        assertEq(c.seq, 1, "the last posted seq stays");
        assertEq(c.receiptHash, digest);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNoPendingClaim.selector, id));
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
        IMarketTypes.Receipt memory r = _honest(1);
        _post(r);
        market.claim(lease, 3_000_000, bytes32(0), _voucher(lease, 3_000_000));
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.recordLogs();
        assertEq(market.finalizeClaim(lease), 0);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 1, "ClaimFinalized only, no Claimed");
        assertEq(logs[0].topics[0], IMarketTypes.ClaimFinalized.selector);
        assertEq(market.leaseState(id).paid, 3_000_000, "paid never decreases");
        assertEq(market.pendingClaim(id).readyAt, 0, "cleared");
    }

    function test_finalizeClaim_revertsWithoutAPendingClaim() public {
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNoPendingClaim.selector, id));
        market.finalizeClaim(lease);
    }

    function test_finalizeClaim_afterTheLeaseEndedAndTheProviderClosedIsRefused() public {
        _post(_honest(1));
        vm.prank(provider);
        market.closeLease(lease); // the provider gives its claim up with the lease
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketLeaseNotOpen.selector, id, IMarketTypes.LeaseStatus.Closed));
        market.finalizeClaim(lease);
    }

    // --- disputeClaim ---------------------------------------------------------------------------

    function test_disputeClaim_pullsABondAndHoldsTheClaimUntilTheRulingDeadline() public {
        IMarketTypes.Receipt memory r = _honest(1); // worth 2_400_000
        _post(r);
        bytes32 digest = market.hashReceipt(r);
        uint64 readyAt = market.pendingClaim(id).readyAt;
        uint256 bond = uint256(2_400_000) * DISPUTE_BOND_BPS / BPS;
        assertEq(bond, 240_000);
        uint64 deadline = uint64(block.timestamp) + RULING_WINDOW;
        uint256 labBefore = usd.balanceOf(lab);
        uint256 marketBefore = usd.balanceOf(address(market));

        vm.expectEmit(address(market));
        emit IMarketTypes.ClaimDisputed(id, lab, 1, digest, bond, deadline);
        vm.prank(lab);
        market.disputeClaim(lease);

        assertEq(usd.balanceOf(lab), labBefore - bond, "the bond is pulled from the lab");
        assertEq(usd.balanceOf(address(market)), marketBefore + bond);
        IMarketTypes.PendingClaim memory c = market.pendingClaim(id);
        assertEq(c.amount, 2_400_000);
        assertEq(c.readyAt, readyAt, "still pending");
        assertEq(c.seq, 1);
        assertEq(c.bond, bond);
        assertEq(c.rulingDeadline, deadline);
        assertTrue(market.leaseState(id).disputed);

        // While disputed: no second dispute, no new post, no finalization before the deadline.
        bytes memory disputed = abi.encodeWithSelector(IMarketTypes.MarketClaimDisputed.selector, id, deadline);
        vm.expectRevert(disputed);
        vm.prank(lab);
        market.disputeClaim(lease);
        IMarketTypes.Receipt memory later = _honest(2);
        bytes memory laterSig = _sig(later);
        vm.warp(T0 + 20 minutes);
        vm.expectRevert(disputed);
        vm.prank(provider);
        market.postReceipt(lease, later, laterSig);
        vm.warp(deadline - 1);
        vm.expectRevert(disputed);
        market.finalizeClaim(lease);

        // Nobody ruled (the lease has no arbiter): from the deadline the claim and the bond pay the provider.
        vm.warp(deadline);
        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(id, 2_400_000, 2_400_000, digest);
        vm.expectEmit(address(market));
        emit IMarketTypes.ClaimFinalized(id, 1, digest, 2_400_000, bond);
        vm.prank(stranger);
        assertEq(market.finalizeClaim(lease), 2_400_000);
        assertEq(market.withdrawable(provider), 2_400_000 + bond);
        assertEq(market.leaseState(id).paid, 2_400_000);
        assertFalse(market.leaseState(id).disputed);
        c = market.pendingClaim(id);
        assertEq(c.readyAt, 0);
        assertEq(c.bond, 0);
        assertEq(c.rulingDeadline, 0);

        // The settled receipt cannot be posted again; a later one can.
        bytes memory sig = _sig(r);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketReceiptNotNewer.selector, id, 1, 1));
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
        _post(later);
        assertEq(market.pendingClaim(id).seq, 2);
    }

    function test_disputeClaim_bondsOnlyWhatVouchersHaveNotPaid() public {
        _post(_honest(1)); // worth 2_400_000
        market.claim(lease, 1_000_000, bytes32(0), _voucher(lease, 1_000_000));
        uint256 labBefore = usd.balanceOf(lab);
        vm.prank(lab);
        market.disputeClaim(lease);
        assertEq(market.pendingClaim(id).bond, 140_000, "10% of the 1_400_000 disputed");
        assertEq(usd.balanceOf(lab), labBefore - 140_000);
    }

    function test_disputeClaim_revertsWhenTheLabHasNotApprovedTheBond() public {
        _post(_honest(1));
        vm.prank(lab);
        usd.approve(address(market), 0);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, 240_000)
        );
        vm.prank(lab);
        market.disputeClaim(lease);
        assertFalse(market.leaseState(id).disputed);
    }

    function test_ruleDispute_forTheLabReturnsTheBondAndVoidsTheClaim() public {
        (IMarketTypes.Lease memory l, bytes32 lid) = _openWithArbiter(stranger);
        vm.warp(l.start + 5 minutes);
        IMarketTypes.Receipt memory r = _receipt(l, 0, l.start, l.start + 5 minutes, 5 minutes);
        bytes memory sig = _sig(r);
        vm.prank(provider);
        market.postReceipt(l, r, sig);
        uint256 labBefore = usd.balanceOf(lab);
        vm.prank(lab);
        market.disputeClaim(l);
        uint256 bond = price * 5 minutes * DISPUTE_BOND_BPS / BPS;
        assertEq(usd.balanceOf(lab), labBefore - bond);

        vm.expectEmit(address(market));
        emit IMarketTypes.DisputeRuled(lid, stranger, false, price * 5 minutes, bond);
        vm.prank(stranger);
        market.ruleDispute(l, false);

        assertEq(market.withdrawable(lab), bond, "the bond back");
        assertEq(market.withdrawable(provider), 0);
        assertEq(market.leaseState(lid).paid, 0);
        assertFalse(market.leaseState(lid).disputed);
        IMarketTypes.PendingClaim memory c = market.pendingClaim(lid);
        assertEq(c.readyAt, 0, "void");
        assertEq(c.bond, 0);
        assertEq(c.amount, price * 5 minutes, "the floor a later receipt must raise");
        vm.warp(block.timestamp + RULING_WINDOW);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNoPendingClaim.selector, lid));
        market.finalizeClaim(l);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNotDisputed.selector, lid));
        vm.prank(stranger);
        market.ruleDispute(l, true);
    }

    function test_ruleDispute_forTheProviderPaysTheClaimAndTheBond() public {
        (IMarketTypes.Lease memory l, bytes32 lid) = _openWithArbiter(stranger);
        vm.warp(l.start + 5 minutes);
        IMarketTypes.Receipt memory r = _receipt(l, 0, l.start, l.start + 5 minutes, 5 minutes);
        bytes memory sig = _sig(r);
        vm.prank(provider);
        market.postReceipt(l, r, sig);
        vm.prank(lab);
        market.disputeClaim(l);
        uint256 amount = price * 5 minutes;
        uint256 bond = amount * DISPUTE_BOND_BPS / BPS;

        vm.expectEmit(address(market));
        emit IMarketTypes.DisputeRuled(lid, stranger, true, amount, bond);
        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(lid, amount, amount, market.hashReceipt(r));
        vm.prank(stranger);
        market.ruleDispute(l, true);

        assertEq(market.withdrawable(provider), amount + bond);
        assertEq(market.withdrawable(lab), 0);
        assertEq(market.leaseState(lid).paid, amount);
        assertEq(market.pendingClaim(lid).readyAt, 0);
    }

    /// @dev A lease of one GPU between the provider and the lab naming `arbiter`, opened now.
    function _openWithArbiter(address arbiter) internal returns (IMarketTypes.Lease memory, bytes32) {
        IMarketTypes.Offer memory offer = _offer(provider, 42);
        offer.arbiter = arbiter;
        IMarketTypes.Bid memory bid = _bid(lab, 42);
        bid.arbiter = arbiter;
        return _open(_pair(offer, bid), 1);
    }

    function test_disputeClaim_revertsWhenNotTheLab() public {
        _post(_honest(0));
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNotLab.selector, id, provider));
        vm.prank(provider);
        market.disputeClaim(lease);
    }

    function test_disputeClaim_revertsOnceTheWindowHasClosed() public {
        _post(_honest(0));
        uint64 readyAt = market.pendingClaim(id).readyAt;
        vm.warp(readyAt);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketChallengeWindowClosed.selector, id, readyAt));
        vm.prank(lab);
        market.disputeClaim(lease);
    }

    function test_disputeClaim_revertsWithoutAPendingClaim() public {
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNoPendingClaim.selector, id));
        vm.prank(lab);
        market.disputeClaim(lease);
    }

    // --- closeLease with a pending claim --------------------------------------------------------

    function test_closeLease_byTheLabWaitsForAPendingClaim() public {
        // Posted after the end: ready after the claim window closes.
        vm.warp(uint256(T0) + DURATION + 1 hours);
        IMarketTypes.Receipt memory r = _receipt(lease, 0, T0, T0 + DURATION, BID_GPUS * DURATION);
        _post(r);
        uint64 readyAt = market.pendingClaim(id).readyAt;
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW); // the claim window after the end has passed
        assertLt(block.timestamp, readyAt);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketClaimPending.selector, id, readyAt));
        vm.prank(lab);
        market.closeLease(lease);

        vm.warp(readyAt);
        assertEq(market.finalizeClaim(lease), escrow);
        vm.prank(lab);
        assertEq(market.closeLease(lease), 0);
    }

    function test_closeLease_byTheLabAfterADisputeHoldsTheDisputedAmountBack() public {
        _post(_honest(0)); // worth 1_200_000
        vm.prank(lab);
        market.disputeClaim(lease);
        uint256 bond = 120_000;
        uint64 deadline = market.pendingClaim(id).rulingDeadline;
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW);
        assertLt(block.timestamp, deadline);
        vm.prank(lab);
        assertEq(market.closeLease(lease), escrow - 1_200_000, "the disputed amount stays in escrow");
        assertEq(market.withdrawable(lab), escrow - 1_200_000);
        assertTrue(market.leaseState(id).stakeReleased, "closed after the proof window: the lock is released");

        // Unruled at the deadline, the claim and the bond pay the provider from what was held.
        vm.warp(deadline);
        assertEq(market.finalizeClaim(lease), 1_200_000);
        assertEq(market.withdrawable(provider), 1_200_000 + bond);
        assertEq(usd.balanceOf(address(market)), staked + escrow + bond, "escrow and bond all credited");
        assertEq(market.withdrawable(lab) + market.withdrawable(provider), escrow + bond);
    }

    // --- withdraw of slashed stake --------------------------------------------------------------

    function test_withdraw_ofOnlySlashedStakeWaitsForItToVestThenTransfersOnce() public {
        vm.prank(provider);
        market.closeLease(lease);
        assertEq(_withdraw(lab), escrow);
        _slashEquivocation();
        uint40 vestsAt = _vestsAt();
        assertEq(market.withdrawable(lab), 0, "vesting");
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToWithdraw.selector, lab));
        vm.prank(lab);
        market.withdraw();
        vm.warp(vestsAt);
        assertEq(market.withdrawable(lab), lock);
        uint256 marketBefore = usd.balanceOf(address(market));
        vm.recordLogs();
        assertEq(_withdraw(lab), lock);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 transfers = 0;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].topics[0] == IERC20.Transfer.selector) {
                ++transfers;
                assertEq(address(uint160(uint256(logs[i].topics[1]))), address(market), "from the market");
            }
        }
        assertEq(transfers, 1);
        assertEq(usd.balanceOf(address(market)), marketBefore - lock);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToWithdraw.selector, lab));
        vm.prank(lab);
        market.withdraw();
    }

    function test_withdrawable_sumsCreditAndSlashedStakeOnceVested() public {
        market.claim(lease, 1_000, bytes32(0), _voucher(lease, 1_000));
        _slashEquivocation();
        assertEq(market.withdrawable(lab), escrow - 1_000);
        vm.warp(_vestsAt());
        assertEq(market.withdrawable(lab), escrow - 1_000 + lock);
        assertEq(market.withdrawable(provider), 1_000);
    }

    function test_slash_delaysWhatWasSlashedBeforeToTheLastSlashsVesting() public {
        (IMarketTypes.Lease memory other, bytes32 otherId) = _open(_pair(_offer(provider2, 1), _bid(lab, 1)), 1);
        _slashEquivocation();
        uint40 first = _vestsAt();
        vm.warp(first - 1);
        IMarketTypes.Receipt memory a = _receipt(other, 0, T0, T0 + 60, 60);
        IMarketTypes.Receipt memory b = _receipt(other, 0, T0, T0 + 60, 59);
        assertEq(
            _proveEquivocation(other, a, _signReceipt(PROVIDER2_KEY, a), b, _signReceipt(PROVIDER2_KEY, b)),
            _leaseLock(other)
        );
        (uint256 slashed, uint40 vestsAt) = market.slashedCredit(lab);
        assertEq(slashed, lock + _leaseLock(other));
        assertEq(vestsAt, _vestsAt(), "the last slash's vesting");
        vm.warp(first);
        assertEq(market.withdrawable(lab), escrow + _escrowOf(other), "refunds only");
        vm.warp(vestsAt);
        assertEq(market.withdrawable(lab), escrow + _escrowOf(other) + slashed);
        assertTrue(market.leaseState(otherId).slashed);
    }

    function test_credit_revertsWhenACreditWouldReach2To128() public {
        // Two leases whose escrows are each about 2^127, refunded to the same lab: a token with a
        // supply this large could carry the credit into the slashed half. No stake (96 bits) could
        // cover such locks: this market locks none.
        stakeRatioBps = 0;
        usd = new TestUSD(6);
        _deploy(address(usd), 6, 0, address(0));
        uint256 hugePrice = (uint256(1) << 127) / 600 + 1; // escrow just above 2^127
        usd.mint(lab2, uint256(1) << 129);
        IMarketTypes.Lease[2] memory leases;
        for (uint256 i = 0; i < 2; ++i) {
            IMarketTypes.Offer memory offer = _offer(provider2, 100 + i);
            offer.pricePerGpuSecond = hugePrice;
            IMarketTypes.Bid memory bid = _bid(lab2, 100 + i);
            bid.maxPricePerGpuSecond = hugePrice;
            bid.duration = 600;
            (leases[i],) = _open(_pair(offer, bid), 1);
        }
        vm.startPrank(provider2);
        market.closeLease(leases[0]);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketCreditOverflow.selector, lab2, hugePrice * 600));
        market.closeLease(leases[1]);
        vm.stopPrank();
    }

    function test_finalizeAndDispute_revertForUnknownLease() public {
        IMarketTypes.Lease memory unknown = lease;
        unknown.start += 1;
        bytes memory err = abi.encodeWithSelector(IMarketTypes.MarketUnknownLease.selector, keccak256(abi.encode(unknown)));
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
        IMarketTypes.Receipt memory r = _receipt(lease, 0, T0, T0 + 20 minutes, BID_GPUS * 10 minutes);
        bytes memory sig = _sig(r);
        vm.prank(provider);
        market.postReceipt(lease, r, sig);
        vm.warp(T0 + 2 days);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarketTypes.MarketUsagePossible.selector, id, BID_GPUS * 10 minutes, BID_GPUS * 20 minutes
            )
        );
        _proveImpossibleUsage(lease, r, sig);
    }
}
