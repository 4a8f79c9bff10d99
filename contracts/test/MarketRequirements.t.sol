// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IMarketTypes} from "../src/interfaces/IMarketTypes.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";

/// @notice The signed terms a bid requires of an offer (memory, bandwidth, feature bits per lane,
/// billing mode), each violation with its own error, and the billing mode a lease records. The
/// fuzz test checks `openLease` against the rule written out here independently, lane by lane.
contract MarketRequirementsTest is MarketFixture {
    TestUSD internal usd;

    function setUp() public {
        usd = new TestUSD(6);
        _deploy(address(usd), 6, 0, address(0));
    }

    function _expectOpenReverts(IMarketTypes.Offer memory offer, IMarketTypes.Bid memory bid, bytes memory err) internal {
        Pair memory p = _pair(offer, bid);
        vm.expectRevert(err);
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    // --- each requirement -----------------------------------------------------------------------

    function test_openLease_revertsWhenOfferMemoryBelowBidMinimum() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.memoryGiB = 79;
        _expectOpenReverts(offer, _bid(lab, 0), abi.encodeWithSelector(IMarketTypes.MarketMemoryTooLow.selector, 79, 80));
    }

    function test_openLease_revertsWhenOfferBandwidthBelowBidMinimum() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.minBandwidthGbps = 401;
        _expectOpenReverts(
            _offer(provider, 0), bid, abi.encodeWithSelector(IMarketTypes.MarketBandwidthTooLow.selector, 400, 401)
        );
    }

    function test_openLease_revertsWithTheMissingFeatureBits() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.requiredFeatures = ECC | MIG | NVLINK | (1 << 255);
        _expectOpenReverts(
            _offer(provider, 0), bid, abi.encodeWithSelector(IMarketTypes.MarketFeaturesMissing.selector, MIG | (1 << 255))
        );
    }

    function test_openLease_revertsWhenALaneHasNoAcceptedValue() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.acceptedFeatures = NVLINK | US_EAST; // the offer is in eu-west (lane 2, value 4)
        _expectOpenReverts(
            _offer(provider, 0),
            bid,
            abi.encodeWithSelector(IMarketTypes.MarketFeatureNotAccepted.selector, 2, EU_WEST >> 32, US_EAST >> 32)
        );
    }

    function test_openLease_reportsTheLowestUnmetLane() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.acceptedFeatures = NVSWITCH | PCIE | US_EAST; // lanes 0 and 2 unmet
        _expectOpenReverts(
            _offer(provider, 0),
            bid,
            abi.encodeWithSelector(IMarketTypes.MarketFeatureNotAccepted.selector, 0, NVLINK, NVSWITCH | PCIE)
        );
    }

    function test_openLease_checksTheTopBitOfTheTopLane() public {
        uint256 top = uint256(1) << 255; // lane 15, value 15
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.acceptedFeatures = top;
        _expectOpenReverts(
            _offer(provider, 0), bid, abi.encodeWithSelector(IMarketTypes.MarketFeatureNotAccepted.selector, 15, 0, 0x8000)
        );
        IMarketTypes.Offer memory offer = _offer(provider, 1);
        offer.features |= top;
        (IMarketTypes.Lease memory lease,) = _open(_pair(offer, bid), 1);
        assertEq(lease.gpus, 1);
    }

    function test_openLease_aZeroLaneAcceptsAnOfferDeclaringNothingThere() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.features = ECC; // no interconnect, network or region declared
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.acceptedFeatures = 0;
        _open(_pair(offer, bid), 1);
        // A lane the bid constrains is not met by declaring nothing.
        IMarketTypes.Bid memory strict = _bid(lab, 1);
        _expectOpenReverts(
            offer, strict, abi.encodeWithSelector(IMarketTypes.MarketFeatureNotAccepted.selector, 0, 0, NVLINK | NVSWITCH)
        );
    }

    function test_openLease_revertsWhenBillingModeNotOffered() public {
        IMarketTypes.Offer memory rentalOnly = _offer(provider, 0);
        rentalOnly.billingModes = RENTAL_BIT;
        IMarketTypes.Bid memory metered = _bid(lab, 0);
        metered.billing = IMarketTypes.Billing.Metered;
        _expectOpenReverts(
            rentalOnly,
            metered,
            abi.encodeWithSelector(IMarketTypes.MarketBillingNotOffered.selector, IMarketTypes.Billing.Metered, RENTAL_BIT)
        );
        IMarketTypes.Offer memory meteredOnly = _offer(provider, 1);
        meteredOnly.billingModes = METERED_BIT;
        _expectOpenReverts(
            meteredOnly,
            _bid(lab, 1),
            abi.encodeWithSelector(IMarketTypes.MarketBillingNotOffered.selector, IMarketTypes.Billing.Rental, METERED_BIT)
        );
    }

    function test_openLease_checksRequirementsInOrder() public {
        // Everything wrong at once: memory is reported first.
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.memoryGiB = 1;
        offer.bandwidthGbps = 1;
        offer.features = 0;
        offer.billingModes = 0;
        _expectOpenReverts(offer, _bid(lab, 0), abi.encodeWithSelector(IMarketTypes.MarketMemoryTooLow.selector, 1, 80));
        offer.memoryGiB = 80;
        _expectOpenReverts(offer, _bid(lab, 0), abi.encodeWithSelector(IMarketTypes.MarketBandwidthTooLow.selector, 1, 200));
        offer.bandwidthGbps = 200;
        _expectOpenReverts(offer, _bid(lab, 0), abi.encodeWithSelector(IMarketTypes.MarketFeaturesMissing.selector, ECC));
        offer.features = ECC;
        _expectOpenReverts(
            offer,
            _bid(lab, 0),
            abi.encodeWithSelector(IMarketTypes.MarketFeatureNotAccepted.selector, 0, 0, NVLINK | NVSWITCH)
        );
        offer.features = ECC | NVSWITCH | EU_CENTRAL;
        _expectOpenReverts(
            offer,
            _bid(lab, 0),
            abi.encodeWithSelector(IMarketTypes.MarketBillingNotOffered.selector, IMarketTypes.Billing.Rental, 0)
        );
        offer.billingModes = RENTAL_BIT;
        _open(_pair(offer, _bid(lab, 0)), 1);
    }

    function test_openLease_opensWhenEveryTermIsMetExactly() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.minMemoryGiB = offer.memoryGiB;
        bid.minBandwidthGbps = offer.bandwidthGbps;
        bid.requiredFeatures = offer.features; // every bit
        bid.acceptedFeatures = offer.features; // exactly the offer's value in each lane
        bid.billing = IMarketTypes.Billing.Metered;
        Pair memory p = _pair(offer, bid);
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(p, 3);
        assertEq(uint8(lease.billing), uint8(IMarketTypes.Billing.Metered));
        assertEq(uint8(market.leaseState(id).status), uint8(IMarketTypes.LeaseStatus.Active));
        assertEq(usd.balanceOf(address(market)), staked + price * 3 * DURATION);
    }

    // --- the rule, against an independent reference ---------------------------------------------

    /// @dev The error openLease must raise for these terms, or nothing: the rule of IMarketTypes' `Bid`,
    /// written with a loop over the lanes.
    function _referenceError(IMarketTypes.Offer memory o, IMarketTypes.Bid memory b) internal pure returns (bytes memory) {
        if (o.memoryGiB < b.minMemoryGiB) {
            return abi.encodeWithSelector(IMarketTypes.MarketMemoryTooLow.selector, o.memoryGiB, b.minMemoryGiB);
        }
        if (o.bandwidthGbps < b.minBandwidthGbps) {
            return abi.encodeWithSelector(IMarketTypes.MarketBandwidthTooLow.selector, o.bandwidthGbps, b.minBandwidthGbps);
        }
        uint256 missing = 0;
        for (uint256 bit = 0; bit < 256; ++bit) {
            uint256 mask = uint256(1) << bit;
            if (b.requiredFeatures & mask != 0 && o.features & mask == 0) missing |= mask;
        }
        if (missing != 0) return abi.encodeWithSelector(IMarketTypes.MarketFeaturesMissing.selector, missing);
        for (uint256 lane = 0; lane < 16; ++lane) {
            uint256 accepted = (b.acceptedFeatures >> (16 * lane)) % 65536;
            uint256 offered = (o.features >> (16 * lane)) % 65536;
            bool someAccepted = false;
            for (uint256 v = 0; v < 16; ++v) {
                if ((accepted >> v) % 2 == 1 && (offered >> v) % 2 == 1) someAccepted = true;
            }
            if (accepted != 0 && !someAccepted) {
                return abi.encodeWithSelector(IMarketTypes.MarketFeatureNotAccepted.selector, lane, offered, accepted);
            }
        }
        bool offered_ = b.billing == IMarketTypes.Billing.Rental ? o.billingModes % 2 == 1 : (o.billingModes / 2) % 2 == 1;
        if (!offered_) {
            return abi.encodeWithSelector(IMarketTypes.MarketBillingNotOffered.selector, b.billing, o.billingModes);
        }
        return "";
    }

    function _lowestBit(uint256 x) internal pure returns (uint256) {
        // Two's complement: x & -x keeps the lowest set bit (zero for zero); wraps on purpose.
        unchecked {
            return x & (~x + 1);
        }
    }

    /// @dev Generated inputs of the fuzz test.
    struct Seeds {
        uint8 memoryGiB;
        uint8 minMemoryGiB;
        uint8 bandwidth;
        uint8 minBandwidth;
        uint256 rawFeatures;
        uint256 rawRequired;
        uint256 rawAccepted;
        uint256 shape;
        uint8 billingModes;
        bool metered;
    }

    /// @dev Random terms, shaped so that each check fails about one time in five and all pass about
    /// one time in three, boundaries included: a minimum above the offer's number (by one or
    /// more), or at most the number; offer features with about half their lanes empty; required
    /// bits taken from the offer's, with one random bit added, none, or sparse random ones; about
    /// one constrained lane of accepted values, which meets the offer, avoids it or is random;
    /// billing modes of the offer usually both, sometimes random.
    function _shaped(Seeds memory s) internal view returns (IMarketTypes.Offer memory offer, IMarketTypes.Bid memory bid) {
        offer = _offer(provider, 0);
        bid = _bid(lab, 0);
        offer.memoryGiB = s.memoryGiB;
        bid.minMemoryGiB = _minimum(s.memoryGiB, s.minMemoryGiB);
        offer.bandwidthGbps = s.bandwidth;
        bid.minBandwidthGbps = _minimum(s.bandwidth, s.minBandwidth);
        uint256 features = s.rawFeatures;
        for (uint256 lane = 0; lane < 16; ++lane) {
            if ((s.shape >> lane) & 1 == 1) features &= ~(uint256(0xffff) << (16 * lane));
        }
        offer.features = features;
        uint256 mode = (s.shape >> 16) % 8;
        uint256 required = s.rawRequired;
        if (mode == 4) required = (required & features) | (uint256(1) << (required % 256));
        else if (mode == 5) required = 0;
        else if (mode == 6) required &= (required >> 64) & (required >> 128);
        else required &= features;
        bid.requiredFeatures = required;
        uint256 accepted = 0;
        for (uint256 lane = 0; lane < 16; ++lane) {
            if ((s.shape >> (96 + 4 * lane)) % 16 != 0) continue; // a zero lane: any value
            uint256 raw = (s.rawAccepted >> (16 * lane)) & 0xffff;
            uint256 offered = (features >> (16 * lane)) & 0xffff;
            uint256 pick = (s.shape >> (32 + 2 * lane)) % 4;
            uint256 bits;
            if (pick < 2) bits = offered == 0 ? 0 : raw | _lowestBit(offered); // meets the offer
            else if (pick == 2) bits = raw & ~offered; // avoids it (unless zero: any)
            else bits = raw;
            accepted |= bits << (16 * lane);
        }
        bid.acceptedFeatures = accepted;
        offer.billingModes = s.billingModes % 4 == 0 ? s.billingModes : s.billingModes | RENTAL_BIT | METERED_BIT;
        bid.billing = s.metered ? IMarketTypes.Billing.Metered : IMarketTypes.Billing.Rental;
    }

    /// @dev A bid minimum for an offer's `value`: one above it one time in five, else at most it.
    function _minimum(uint8 value, uint8 seed) internal pure returns (uint32) {
        if (seed % 5 == 0) return uint32(value) + 1 + (seed >> 7);
        return uint32(seed % (uint256(value) + 1));
    }

    function testFuzz_openLease_succeedsIffTheReferenceRuleHolds(Seeds memory seeds) public {
        (IMarketTypes.Offer memory offer, IMarketTypes.Bid memory bid) = _shaped(seeds);
        bytes memory err = _referenceError(offer, bid);
        Pair memory p = _pair(offer, bid);
        if (err.length > 0) {
            vm.expectRevert(err);
            market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
        } else {
            (IMarketTypes.Lease memory lease, bytes32 id) = _open(p, 1);
            assertEq(uint8(lease.billing), uint8(bid.billing));
            assertEq(uint8(market.leaseState(id).status), uint8(IMarketTypes.LeaseStatus.Active));
        }
    }

    // --- billing --------------------------------------------------------------------------------

    function test_openLease_recordsTheBidsBillingModeInTheLease() public {
        IMarketTypes.Bid memory rental = _bid(lab, 0);
        IMarketTypes.Bid memory metered = _bid(lab, 1);
        metered.billing = IMarketTypes.Billing.Metered;
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        (IMarketTypes.Lease memory a, bytes32 idA) = _open(_pair(offer, rental), 1);
        (IMarketTypes.Lease memory b, bytes32 idB) = _open(_pair(offer, metered), 1);
        assertEq(uint8(a.billing), uint8(IMarketTypes.Billing.Rental));
        assertEq(uint8(b.billing), uint8(IMarketTypes.Billing.Metered));
        // The mode is part of the terms: the same lease with the other mode is unknown.
        IMarketTypes.Lease memory flipped = _copy(b);
        flipped.billing = IMarketTypes.Billing.Rental;
        bytes32 flippedId = keccak256(abi.encode(flipped));
        assertTrue(flippedId != idB && flippedId != idA);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketUnknownLease.selector, flippedId));
        vm.prank(provider);
        market.closeLease(flipped);
    }

    /// @dev A lease of `gpus` GPUs from `provider_` to the lab in `billing` mode.
    function _openMode(address provider_, uint256 nonce, IMarketTypes.Billing billing, uint32 gpus)
        internal
        returns (IMarketTypes.Lease memory lease, bytes32 id)
    {
        IMarketTypes.Bid memory bid = _bid(lab, nonce);
        bid.billing = billing;
        return _open(_pair(_offer(provider_, nonce), bid), gpus);
    }

    function test_slashImpossibleUsage_slashesRentalAndMeteredLeasesAlike() public {
        (IMarketTypes.Lease memory rental, bytes32 rentalId) = _openMode(provider, 0, IMarketTypes.Billing.Rental, 2);
        (IMarketTypes.Lease memory metered, bytes32 meteredId) = _openMode(provider2, 0, IMarketTypes.Billing.Metered, 2);
        vm.warp(T0 + 10 minutes);
        uint256 labBefore = market.withdrawable(lab);

        // 2 GPUs x 600 s at most by now, in either mode.
        IMarketTypes.Receipt memory r = _receipt(rental, 0, T0, T0 + 10 minutes, 2 * 600 + 1);
        IMarketTypes.Receipt memory m = _receipt(metered, 0, T0, T0 + 10 minutes, 2 * 600 + 1);
        uint40 vestsAt = uint40(block.timestamp) + UNBONDING_DELAY;
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseSlashed(rentalId, provider, _leaseLock(rental), _escrowOf(rental), vestsAt);
        assertEq(_proveImpossibleUsage(rental, r, _signReceipt(PROVIDER_KEY, r)), _leaseLock(rental));
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseSlashed(meteredId, provider2, _leaseLock(metered), _escrowOf(metered), vestsAt);
        assertEq(_proveImpossibleUsage(metered, m, _signReceipt(PROVIDER2_KEY, m)), _leaseLock(metered));

        vm.warp(vestsAt);
        assertEq(
            market.withdrawable(lab),
            labBefore + _escrowOf(rental) + _escrowOf(metered) + _leaseLock(rental) + _leaseLock(metered),
            "both escrows and, once vested, both penalties"
        );
        assertTrue(market.leaseState(rentalId).slashed);
        assertTrue(market.leaseState(meteredId).slashed);
    }

    function test_slashImpossibleUsage_refusesPossibleUsageInEitherMode() public {
        (IMarketTypes.Lease memory rental, bytes32 rentalId) = _openMode(provider, 0, IMarketTypes.Billing.Rental, 2);
        (IMarketTypes.Lease memory metered, bytes32 meteredId) = _openMode(provider2, 0, IMarketTypes.Billing.Metered, 2);
        vm.warp(T0 + 10 minutes);
        // A metered lease's idle GPUs: less than the bound is fine; a rental's full bound too.
        IMarketTypes.Receipt memory m = _receipt(metered, 0, T0, T0 + 10 minutes, 300);
        IMarketTypes.Receipt memory r = _receipt(rental, 0, T0, T0 + 10 minutes, 2 * 600);
        bytes memory sigM = _signReceipt(PROVIDER2_KEY, m);
        bytes memory sigR = _signReceipt(PROVIDER_KEY, r);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketUsagePossible.selector, meteredId, 300, 1_200));
        _proveImpossibleUsage(metered, m, sigM);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketUsagePossible.selector, rentalId, 1_200, 1_200));
        _proveImpossibleUsage(rental, r, sigR);
    }

    function test_postReceipt_paysMeteredUsageAfterTheChallengeWindow() public {
        (IMarketTypes.Lease memory metered, bytes32 id) = _openMode(provider, 0, IMarketTypes.Billing.Metered, 2);
        vm.warp(T0 + 10 minutes);
        IMarketTypes.Receipt memory m = _receipt(metered, 0, T0, T0 + 10 minutes, 300); // one GPU busy half the time
        bytes memory sig = _signReceipt(PROVIDER_KEY, m);
        vm.prank(provider);
        market.postReceipt(metered, m, sig);
        vm.warp(T0 + 10 minutes + CHALLENGE_WINDOW);
        assertEq(market.finalizeClaim(metered), price * 300);
        assertEq(market.leaseState(id).paid, price * 300);
        assertEq(market.withdrawable(provider), price * 300);
    }
}
