// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IMarketTypes} from "../src/interfaces/IMarketTypes.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";

/// @notice Every signed field is bound by its signature: changing any one of them after signing
/// makes the order or voucher invalid. Each tampered value is chosen so that every check made
/// before the signature check still passes, so the signature check is what rejects it.
contract MarketSignedFieldsFuzzTest is MarketFixture {
    function setUp() public {
        _deploy(address(new TestUSD(6)), 6, 0, address(0));
    }

    function _expectOfferRejected(Pair memory p) internal {
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarketTypes.MarketInvalidSignature.selector, market.hashOffer(p.offer), p.offer.provider
            )
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function _expectBidRejected(Pair memory p) internal {
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, market.hashBid(p.bid), p.bid.lab)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    // --- Offer ----------------------------------------------------------------------------------

    function testFuzz_offerProvider_tamperedIsRejected(address value) public {
        vm.assume(value != provider);
        Pair memory p = _defaultPair();
        p.offer.provider = value;
        _expectOfferRejected(p);
    }

    function testFuzz_offerGpuModel_tamperedIsRejected(bytes32 value) public {
        vm.assume(value != H100);
        Pair memory p = _defaultPair();
        p.offer.gpuModel = value;
        p.bid.gpuModel = value; // the bid is re-signed for the new model: only the offer is tampered
        p.bidSig = _signBid(p.bid);
        _expectOfferRejected(p);
    }

    function testFuzz_offerGpuCount_tamperedIsRejected(uint32 value) public {
        vm.assume(value != OFFER_GPUS);
        Pair memory p = _defaultPair();
        p.offer.gpuCount = value;
        _expectOfferRejected(p);
    }

    function testFuzz_offerMemoryGiB_tamperedIsRejected(uint32 value) public {
        Pair memory p = _defaultPair();
        vm.assume(value != p.offer.memoryGiB);
        p.offer.memoryGiB = value;
        _expectOfferRejected(p);
    }

    function testFuzz_offerPrice_tamperedIsRejected(uint256 value) public {
        Pair memory p = _defaultPair();
        value = bound(value, 0, p.bid.maxPricePerGpuSecond); // still crossed
        vm.assume(value != p.offer.pricePerGpuSecond);
        p.offer.pricePerGpuSecond = value;
        _expectOfferRejected(p);
    }

    function testFuzz_offerMinDuration_tamperedIsRejected(uint64 value) public {
        Pair memory p = _defaultPair();
        value = uint64(bound(value, 0, p.bid.duration)); // still in range
        vm.assume(value != p.offer.minDuration);
        p.offer.minDuration = value;
        _expectOfferRejected(p);
    }

    function testFuzz_offerMaxDuration_tamperedIsRejected(uint64 value) public {
        Pair memory p = _defaultPair();
        value = uint64(bound(value, p.bid.duration, type(uint64).max));
        vm.assume(value != p.offer.maxDuration);
        p.offer.maxDuration = value;
        _expectOfferRejected(p);
    }

    function testFuzz_offerExpiry_tamperedIsRejected(uint64 value) public {
        Pair memory p = _defaultPair();
        value = uint64(bound(value, block.timestamp, type(uint64).max)); // not expired
        vm.assume(value != p.offer.expiry);
        p.offer.expiry = value;
        _expectOfferRejected(p);
    }

    function testFuzz_offerNonce_tamperedIsRejected(uint256 value) public {
        vm.assume(value != 0);
        Pair memory p = _defaultPair();
        p.offer.nonce = value;
        _expectOfferRejected(p);
    }

    function testFuzz_offerBandwidthGbps_tamperedIsRejected(uint32 value) public {
        Pair memory p = _defaultPair();
        vm.assume(value != p.offer.bandwidthGbps);
        p.offer.bandwidthGbps = value;
        _expectOfferRejected(p);
    }

    function testFuzz_offerFeatures_tamperedIsRejected(uint256 value) public {
        Pair memory p = _defaultPair();
        vm.assume(value != p.offer.features);
        p.offer.features = value;
        _expectOfferRejected(p);
    }

    function testFuzz_offerBillingModes_tamperedIsRejected(uint8 value) public {
        Pair memory p = _defaultPair();
        vm.assume(value != p.offer.billingModes);
        p.offer.billingModes = value;
        _expectOfferRejected(p);
    }

    function testFuzz_offerReceiptSigner_tamperedIsRejected(address value) public {
        Pair memory p = _defaultPair();
        vm.assume(value != p.offer.receiptSigner);
        p.offer.receiptSigner = value;
        _expectOfferRejected(p);
    }

    // --- Bid ------------------------------------------------------------------------------------

    function testFuzz_bidLab_tamperedIsRejected(address value) public {
        vm.assume(value != lab);
        Pair memory p = _defaultPair();
        p.bid.lab = value;
        _expectBidRejected(p);
    }

    function testFuzz_bidGpuModel_tamperedIsRejected(bytes32 value) public {
        vm.assume(value != H100);
        Pair memory p = _defaultPair();
        p.bid.gpuModel = value;
        p.offer.gpuModel = value; // the offer is re-signed for the new model: only the bid is tampered
        p.offerSig = _signOffer(p.offer);
        _expectBidRejected(p);
    }

    function testFuzz_bidGpuCount_tamperedIsRejected(uint32 value) public {
        vm.assume(value != BID_GPUS);
        Pair memory p = _defaultPair();
        p.bid.gpuCount = value;
        _expectBidRejected(p);
    }

    function testFuzz_bidMinMemoryGiB_tamperedIsRejected(uint32 value) public {
        Pair memory p = _defaultPair();
        vm.assume(value != p.bid.minMemoryGiB);
        p.bid.minMemoryGiB = value;
        _expectBidRejected(p);
    }

    function testFuzz_bidMinBandwidthGbps_tamperedIsRejected(uint32 value) public {
        Pair memory p = _defaultPair();
        vm.assume(value != p.bid.minBandwidthGbps);
        p.bid.minBandwidthGbps = value;
        _expectBidRejected(p);
    }

    function testFuzz_bidRequiredFeatures_tamperedIsRejected(uint256 value) public {
        Pair memory p = _defaultPair();
        vm.assume(value != p.bid.requiredFeatures);
        p.bid.requiredFeatures = value;
        _expectBidRejected(p);
    }

    function testFuzz_bidAcceptedFeatures_tamperedIsRejected(uint256 value) public {
        Pair memory p = _defaultPair();
        vm.assume(value != p.bid.acceptedFeatures);
        p.bid.acceptedFeatures = value;
        _expectBidRejected(p);
    }

    function test_bidBilling_tamperedIsRejected() public {
        Pair memory p = _defaultPair();
        p.bid.billing = IMarketTypes.Billing.Metered; // the offer accepts both
        _expectBidRejected(p);
    }

    function test_bidAllOrNone_tamperedIsRejected() public {
        Pair memory p = _defaultPair();
        p.bid.allOrNone = true;
        _expectBidRejected(p);
    }

    function testFuzz_bidVoucherSigner_tamperedIsRejected(address value) public {
        Pair memory p = _defaultPair();
        vm.assume(value != p.bid.voucherSigner);
        p.bid.voucherSigner = value;
        _expectBidRejected(p);
    }

    function testFuzz_bidMaxPrice_tamperedIsRejected(uint256 value) public {
        Pair memory p = _defaultPair();
        value = bound(value, p.offer.pricePerGpuSecond, type(uint256).max); // still crossed
        vm.assume(value != p.bid.maxPricePerGpuSecond);
        p.bid.maxPricePerGpuSecond = value;
        _expectBidRejected(p);
    }

    function testFuzz_bidDuration_tamperedIsRejected(uint64 value) public {
        Pair memory p = _defaultPair();
        value = uint64(bound(value, p.offer.minDuration, p.offer.maxDuration)); // still in range
        vm.assume(value != p.bid.duration);
        p.bid.duration = value;
        _expectBidRejected(p);
    }

    function testFuzz_bidExpiry_tamperedIsRejected(uint64 value) public {
        Pair memory p = _defaultPair();
        value = uint64(bound(value, block.timestamp, type(uint64).max));
        vm.assume(value != p.bid.expiry);
        p.bid.expiry = value;
        _expectBidRejected(p);
    }

    function testFuzz_bidNonce_tamperedIsRejected(uint256 value) public {
        vm.assume(value != 0);
        Pair memory p = _defaultPair();
        p.bid.nonce = value;
        _expectBidRejected(p);
    }

    function testFuzz_bidJobSpecHash_tamperedIsRejected(bytes32 value) public {
        Pair memory p = _defaultPair();
        vm.assume(value != p.bid.jobSpecHash);
        p.bid.jobSpecHash = value;
        _expectBidRejected(p);
    }

    // --- Voucher --------------------------------------------------------------------------------

    function _expectVoucherRejected(IMarketTypes.Lease memory lease, uint256 amount, bytes32 receipt, bytes memory sig)
        internal
    {
        bytes32 id = keccak256(abi.encode(lease));
        bytes32 digest = market.hashVoucher(IMarketTypes.Voucher(id, amount, receipt));
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, lab));
        market.claim(lease, amount, receipt, sig);
    }

    function testFuzz_voucherLeaseId_tamperedIsRejected(bytes32 value) public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.assume(value != id);
        bytes memory sig = _signVoucher(LAB_KEY, value, 1_000, bytes32(0)); // signed for another lease
        _expectVoucherRejected(lease, 1_000, bytes32(0), sig);
    }

    function testFuzz_voucherCumulativeAmount_tamperedIsRejected(uint256 signed, uint256 value) public {
        vm.assume(value != signed);
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        bytes memory sig = _signVoucher(LAB_KEY, id, signed, bytes32(0));
        _expectVoucherRejected(lease, value, bytes32(0), sig);
    }

    function testFuzz_voucherReceiptHash_tamperedIsRejected(bytes32 signed, bytes32 value) public {
        vm.assume(value != signed);
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        bytes memory sig = _signVoucher(LAB_KEY, id, 1_000, signed);
        _expectVoucherRejected(lease, 1_000, value, sig);
    }

    function testFuzz_voucherTamperedInBatchIsSkipped(uint256 value) public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.assume(value != 1_000);
        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](1);
        items[0] = IMarketTypes.ClaimItem(lease, value, bytes32(0), _signVoucher(LAB_KEY, id, 1_000, bytes32(0)));
        vm.expectEmit(address(market));
        emit IMarketTypes.ClaimSkipped(id, IMarketTypes.MarketInvalidSignature.selector);
        assertEq(market.claimBatch(items), 0);
        assertEq(market.leaseState(id).paid, 0);
    }

    // --- digests --------------------------------------------------------------------------------

    function testFuzz_hashOffer_equalsIndependentDigest(IMarketTypes.Offer memory offer) public view {
        assertEq(market.hashOffer(offer), _offerDigest(offer));
    }

    /// @dev A bid as the fuzzer generates it: the enum as a bool (an out-of-range enum would not decode).
    struct FuzzBid {
        address lab;
        bytes32 gpuModel;
        uint32 gpuCount;
        uint32 minMemoryGiB;
        uint32 minBandwidthGbps;
        uint256 requiredFeatures;
        uint256 acceptedFeatures;
        bool metered;
        bool allOrNone;
        uint256 maxPricePerGpuSecond;
        uint64 duration;
        uint64 expiry;
        uint256 nonce;
        bytes32 jobSpecHash;
        address voucherSigner;
        address arbiter;
        uint16 maxMinChargeBps;
    }

    function testFuzz_hashBid_equalsIndependentDigest(FuzzBid memory f) public view {
        IMarketTypes.Bid memory bid = IMarketTypes.Bid({
            lab: f.lab,
            gpuModel: f.gpuModel,
            gpuCount: f.gpuCount,
            minMemoryGiB: f.minMemoryGiB,
            minBandwidthGbps: f.minBandwidthGbps,
            requiredFeatures: f.requiredFeatures,
            acceptedFeatures: f.acceptedFeatures,
            billing: f.metered ? IMarketTypes.Billing.Metered : IMarketTypes.Billing.Rental,
            allOrNone: f.allOrNone,
            maxPricePerGpuSecond: f.maxPricePerGpuSecond,
            duration: f.duration,
            expiry: f.expiry,
            nonce: f.nonce,
            jobSpecHash: f.jobSpecHash,
            voucherSigner: f.voucherSigner,
            arbiter: f.arbiter,
            maxMinChargeBps: f.maxMinChargeBps
        });
        assertEq(market.hashBid(bid), _bidDigest(bid));
    }

    function testFuzz_hashVoucher_equalsIndependentDigest(bytes32 id, uint256 amount, bytes32 receipt)
        public
        view
    {
        assertEq(market.hashVoucher(IMarketTypes.Voucher(id, amount, receipt)), _voucherDigest(id, amount, receipt));
    }

    // --- expiry ---------------------------------------------------------------------------------

    function testFuzz_openLease_acceptsUntilExpiryInclusive(uint64 expiry, uint64 openAt) public {
        expiry = uint64(bound(expiry, T0, T0 + 365 days));
        openAt = uint64(bound(openAt, T0, T0 + 366 days));
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.expiry = expiry;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.expiry = type(uint64).max;
        Pair memory p = _pair(offer, bid);
        vm.warp(openAt);
        if (openAt > expiry) {
            vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketOrderExpired.selector, market.hashOffer(offer), expiry));
            market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
        } else {
            _open(p, 1);
        }
    }
}

/// @notice Escrow and fee arithmetic: whatever the price, size, duration, fee, stake ratio and
/// vouchers, the provider, the treasury and the refund together are credited, and then withdraw,
/// exactly the escrow; the stake the lease locked stays in the market, then goes back to free stake.
contract MarketArithmeticFuzzTest is MarketFixture {
    struct Amounts {
        uint256 labBefore;
        uint256 providerBefore;
        uint256 treasuryBefore;
        uint256 escrow;
        uint256 lock;
        uint256 expectedFee;
        uint256 paid;
    }

    /// @dev The largest escrow whose lock a provider's stake (uint96, the minimum already in) covers.
    function _maxEscrow() internal view returns (uint256) {
        if (stakeRatioBps == 0) return type(uint128).max;
        return (type(uint96).max - minStake) * BPS / stakeRatioBps;
    }

    function _feeOn(uint256 amount, uint256 feeBps) internal pure returns (uint256) {
        return amount * feeBps / 10_000;
    }

    function testFuzz_settlement_providerPlusTreasuryPlusRefundEqualsEscrow(
        uint256 unitPrice,
        uint32 gpus,
        uint64 duration,
        uint16 feeBps,
        uint256 voucher,
        uint256 terminateAt,
        bool doTerminate
    ) public {
        feeBps = uint16(bound(feeBps, 0, 1_000));
        // The stake ratio from the fee's bits: zero a quarter of the time, which leaves the escrow
        // its whole uint128 range; otherwise up to twice the escrow, which a uint96 stake bounds.
        stakeRatioBps = feeBps % 4 == 0 ? 0 : uint32(bound(uint256(keccak256(abi.encode(unitPrice))), 1, 20_000));
        _deploy(address(new TestUSD(6)), 6, feeBps, treasury);
        gpus = uint32(bound(gpus, 1, type(uint32).max));
        duration = uint64(bound(duration, 1, 10 * 365 days));
        unitPrice = bound(unitPrice, 1, _maxEscrow() / (uint256(gpus) * duration));

        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.gpuCount = gpus;
        offer.pricePerGpuSecond = unitPrice;
        offer.minDuration = 1;
        offer.maxDuration = type(uint64).max;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.gpuCount = gpus;
        bid.duration = duration;
        bid.maxPricePerGpuSecond = unitPrice;

        Amounts memory a;
        a.escrow = unitPrice * gpus * duration;
        a.lock = _lockOf(a.escrow);
        token.mint(lab, a.escrow);
        if (a.lock > 0) _addStake(provider, a.lock);
        a.labBefore = token.balanceOf(lab);
        a.providerBefore = token.balanceOf(provider);
        a.treasuryBefore = token.balanceOf(treasury);

        (IMarketTypes.Lease memory lease,) = _open(_pair(offer, bid), gpus);
        assertEq(token.balanceOf(address(market)), staked + a.escrow);
        assertEq(market.getProvider(provider).locked, a.lock, "the lease locks its share of the escrow");
        assertEq(market.freeStake(provider), minStake);

        // A voucher, possibly above the escrow.
        voucher = bound(voucher, 1, a.escrow * 2);
        uint256 first = voucher < a.escrow ? voucher : a.escrow;
        assertEq(market.claim(lease, voucher, bytes32(0), _voucher(lease, voucher)), first);
        a.expectedFee = _feeOn(first, feeBps);
        a.paid = first;

        // Optionally the lab terminates, paying more up to a second amount.
        if (doTerminate) {
            vm.warp(bound(terminateAt, T0, uint256(T0) + duration - 1));
            uint256 second = bound(voucher ^ terminateAt, 0, a.escrow * 2);
            uint256 target = second < a.escrow ? second : a.escrow;
            vm.prank(lab);
            market.terminate(lease, second);
            if (target > a.paid) {
                a.expectedFee += _feeOn(target - a.paid, feeBps);
                a.paid = target;
            }
        }

        vm.prank(provider);
        uint256 refund = market.closeLease(lease);
        assertEq(market.withdrawable(lab), refund, "refund credited");
        assertEq(
            market.withdrawable(provider) + market.withdrawable(treasury) + refund + staked,
            token.balanceOf(address(market)),
            "the market holds exactly the credits and the stakes"
        );
        uint256 withdrawn = _withdrawIfCredited(provider) + _withdrawIfCredited(treasury) + _withdrawIfCredited(lab);
        assertEq(withdrawn, a.escrow, "withdrawals send the whole escrow");

        uint256 toProvider = token.balanceOf(provider) - a.providerBefore;
        uint256 toTreasury = token.balanceOf(treasury) - a.treasuryBefore;
        assertEq(toProvider + toTreasury + refund, a.escrow, "escrow conserved");
        assertEq(toProvider + toTreasury, a.paid, "payments");
        assertEq(toTreasury, a.expectedFee, "fee rounds down per payment");
        assertLe(toTreasury * 10_000, a.paid * feeBps, "fee never above the rate");
        assertEq(refund, a.escrow - a.paid);
        assertEq(token.balanceOf(lab), a.labBefore - a.paid);
        assertEq(token.balanceOf(address(market)), staked, "the stakes alone");

        // Closed within its proof window, the lease keeps its lock until the window is over.
        assertEq(market.getProvider(provider).locked, a.lock);
        vm.warp(uint256(market.leaseState(keccak256(abi.encode(lease))).end) + CLAIM_WINDOW);
        assertEq(market.releaseStake(lease), a.lock);
        assertEq(market.getProvider(provider).locked, 0);
        assertEq(market.freeStake(provider), minStake + a.lock);
    }

    function testFuzz_claim_neverPaysBeyondEscrow(uint256 first, uint256 second) public {
        _deploy(address(new TestUSD(6)), 6, 0, address(0));
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        uint256 escrow = _escrowOf(lease);
        first = bound(first, 1, type(uint256).max);
        market.claim(lease, first, bytes32(0), _voucher(lease, first));
        uint256 paid = first < escrow ? first : escrow;
        assertEq(market.leaseState(id).paid, paid);

        bytes memory sig = _voucher(lease, second);
        uint256 target = second < escrow ? second : escrow;
        if (target <= paid) {
            vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToClaim.selector, id, second, paid));
            market.claim(lease, second, bytes32(0), sig);
        } else {
            assertEq(market.claim(lease, second, bytes32(0), sig), target - paid);
        }
        assertLe(market.leaseState(id).paid, escrow);
        assertEq(market.withdrawable(provider), market.leaseState(id).paid, "credited what was paid");
        assertEq(token.balanceOf(address(market)), staked + escrow, "unpaid escrow plus credit");
    }
}
