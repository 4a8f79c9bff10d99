// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Vm} from "forge-std/Vm.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {Market} from "../src/Market.sol";
import {IMarket} from "../src/interfaces/IMarket.sol";
import {IMarketTypes} from "../src/interfaces/IMarketTypes.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {NoBoolToken} from "../src/mocks/NoBoolToken.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";

/// @notice Unit tests of the market on a 6-decimals TestUSD without protocol fee.
contract MarketTest is MarketFixture {
    TestUSD internal usd;

    function setUp() public virtual {
        usd = new TestUSD(6);
        _deploy(address(usd), 6, 0, address(0));
    }

    // --- deployment -----------------------------------------------------------------------------

    function test_constructor_setsParametersAndCreatesItsExtension() public view {
        assertEq(market.token(), address(usd));
        assertEq(market.claimWindow(), CLAIM_WINDOW);
        assertEq(market.challengeWindow(), CHALLENGE_WINDOW);
        assertEq(market.rulingWindow(), RULING_WINDOW);
        assertEq(market.stakeRatioBps(), STAKE_RATIO_BPS);
        assertEq(market.disputeBondBps(), DISPUTE_BOND_BPS);
        assertEq(market.feeBps(), 0);
        assertEq(market.treasury(), address(0));
        assertEq(market.minStake(), minStake);
        assertEq(market.unbondingDelay(), UNBONDING_DELAY);
        assertEq(Market(address(market)).MAX_FEE_BPS(), 1_000);
        assertTrue(market.extension() != address(0) && market.extension() != address(market));
        assertGt(market.extension().code.length, 0);
    }

    function test_constructor_revertsWhenFeeAboveMax() public {
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketFeeTooHigh.selector, 1_001, 1_000));
        new Market(_params(address(usd), 1_001, treasury));
    }

    function test_constructor_revertsWhenFeeWithoutTreasury() public {
        vm.expectRevert(IMarketTypes.MarketZeroTreasury.selector);
        new Market(_params(address(usd), 1, address(0)));
    }

    function test_constructor_acceptsMaxFee() public {
        IMarket m = IMarket(address(new Market(_params(address(usd), 1_000, treasury))));
        assertEq(m.feeBps(), 1_000);
        assertEq(m.treasury(), treasury);
    }

    function test_constructor_revertsOnADisputeBondAboveTheWholeAmount() public {
        IMarketTypes.Params memory p = _params(address(usd), 0, address(0));
        p.disputeBondBps = 10_001;
        vm.expectRevert(IMarketTypes.MarketBadParams.selector);
        new Market(p);
        p.disputeBondBps = 10_000;
        assertEq(IMarket(address(new Market(p))).disputeBondBps(), 10_000);
    }

    function test_constructor_revertsOnAnUnbondingDelayAboveTenYears() public {
        IMarketTypes.Params memory p = _params(address(usd), 0, address(0));
        p.unbondingDelay = 3650 days + 1;
        vm.expectRevert(IMarketTypes.MarketBadParams.selector);
        new Market(p);
        p.unbondingDelay = 3650 days;
        assertEq(IMarket(address(new Market(p))).unbondingDelay(), 3650 days);
    }

    function test_extension_refusesToMoveTokensWhenCalledDirectly() public {
        IMarket ext = IMarket(market.extension());
        vm.expectRevert(abi.encodeWithSignature("MarketNotDelegated()"));
        vm.prank(stranger);
        ext.register(0, "https://direct.example", bytes32(0), bytes32(0));
        vm.expectRevert(abi.encodeWithSignature("MarketNotDelegated()"));
        vm.prank(provider);
        ext.addStake(1);
    }

    // --- EIP-712 --------------------------------------------------------------------------------

    function test_domainSeparator_matchesIndependentComputation() public view {
        assertEq(market.DOMAIN_SEPARATOR(), _domainSeparator());
    }

    function test_hashes_equalIndependentEip712Digests() public view {
        IMarketTypes.Offer memory offer = _offer(provider, 7);
        IMarketTypes.Bid memory bid = _bid(lab, 9);
        assertEq(market.hashOffer(offer), _offerDigest(offer), "offer");
        assertEq(market.hashBid(bid), _bidDigest(bid), "bid");
        bytes32 id = keccak256("some lease");
        assertEq(market.hashVoucher(IMarketTypes.Voucher(id, 123, keccak256("r"))), _voucherDigest(id, 123, keccak256("r")));
    }

    /// @dev The domain and its type, as forge's EIP-712 JSON takes them.
    function _jsonDomain() internal view returns (string memory domain, string memory domainType) {
        domain = string.concat(
            '"domain":{"name":"gpumarket","version":"1","chainId":',
            vm.toString(block.chainid),
            ',"verifyingContract":"',
            vm.toString(address(market)),
            '"}'
        );
        domainType = string.concat(
            '"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},',
            '{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}]'
        );
    }

    /// @dev `"name":"value"`, a JSON member with a string value (numbers as decimal strings too).
    function _member(string memory name, string memory value) internal pure returns (string memory) {
        return string.concat('"', name, '":"', value, '"');
    }

    /// @dev A third implementation: forge's own EIP-712 encoder, fed the typed data as JSON.
    function test_hashes_equalForgeEip712HashTypedData_offer() public view {
        IMarketTypes.Offer memory o = _offer(provider, 7);
        o.receiptSigner = stranger;
        o.arbiter = lab2;
        o.minChargeBps = 2_500;
        (string memory domain, string memory domainType) = _jsonDomain();
        string memory types = string.concat(
            '"types":{',
            domainType,
            ',"Offer":[{"name":"provider","type":"address"},{"name":"gpuModel","type":"bytes32"},',
            '{"name":"gpuCount","type":"uint32"},{"name":"memoryGiB","type":"uint32"},',
            '{"name":"bandwidthGbps","type":"uint32"},{"name":"features","type":"uint256"},',
            '{"name":"billingModes","type":"uint8"},{"name":"pricePerGpuSecond","type":"uint256"},',
            '{"name":"minDuration","type":"uint64"},{"name":"maxDuration","type":"uint64"},',
            '{"name":"expiry","type":"uint64"},{"name":"nonce","type":"uint256"},',
            '{"name":"receiptSigner","type":"address"},{"name":"arbiter","type":"address"},',
            '{"name":"minChargeBps","type":"uint16"}]}'
        );
        string memory message = string.concat(
            '"message":{',
            _member("provider", vm.toString(o.provider)),
            ",",
            _member("gpuModel", vm.toString(o.gpuModel)),
            ",",
            _member("gpuCount", vm.toString(uint256(o.gpuCount))),
            ",",
            _member("memoryGiB", vm.toString(uint256(o.memoryGiB))),
            ",",
            _member("bandwidthGbps", vm.toString(uint256(o.bandwidthGbps))),
            ",",
            _member("features", vm.toString(o.features))
        );
        message = string.concat(
            message,
            ",",
            _member("billingModes", vm.toString(uint256(o.billingModes))),
            ",",
            _member("pricePerGpuSecond", vm.toString(o.pricePerGpuSecond)),
            ",",
            _member("minDuration", vm.toString(uint256(o.minDuration))),
            ",",
            _member("maxDuration", vm.toString(uint256(o.maxDuration))),
            ",",
            _member("expiry", vm.toString(uint256(o.expiry))),
            ",",
            _member("nonce", vm.toString(o.nonce)),
            ",",
            _member("receiptSigner", vm.toString(o.receiptSigner))
        );
        message = string.concat(
            message,
            ",",
            _member("arbiter", vm.toString(o.arbiter)),
            ",",
            _member("minChargeBps", vm.toString(uint256(o.minChargeBps))),
            "}"
        );
        string memory json = string.concat("{", types, ',"primaryType":"Offer",', domain, ",", message, "}");
        assertEq(vm.eip712HashTypedData(json), market.hashOffer(o));
    }

    /// @dev The same for a bid: its enum is a uint8 and its flag a bool to EIP-712.
    function test_hashes_equalForgeEip712HashTypedData_bid() public view {
        IMarketTypes.Bid memory b = _bid(lab, 9);
        b.billing = IMarketTypes.Billing.Metered;
        b.allOrNone = true;
        b.voucherSigner = stranger;
        b.arbiter = lab2;
        b.maxMinChargeBps = 7_000;
        (string memory domain, string memory domainType) = _jsonDomain();
        string memory types = string.concat(
            '"types":{',
            domainType,
            ',"Bid":[{"name":"lab","type":"address"},{"name":"gpuModel","type":"bytes32"},',
            '{"name":"gpuCount","type":"uint32"},{"name":"minMemoryGiB","type":"uint32"},',
            '{"name":"minBandwidthGbps","type":"uint32"},{"name":"requiredFeatures","type":"uint256"},',
            '{"name":"acceptedFeatures","type":"uint256"},{"name":"billing","type":"uint8"},',
            '{"name":"allOrNone","type":"bool"},{"name":"maxPricePerGpuSecond","type":"uint256"},',
            '{"name":"duration","type":"uint64"},{"name":"expiry","type":"uint64"},',
            '{"name":"nonce","type":"uint256"},{"name":"jobSpecHash","type":"bytes32"},',
            '{"name":"voucherSigner","type":"address"},{"name":"arbiter","type":"address"},',
            '{"name":"maxMinChargeBps","type":"uint16"}]}'
        );
        string memory message = string.concat(
            '"message":{',
            _member("lab", vm.toString(b.lab)),
            ",",
            _member("gpuModel", vm.toString(b.gpuModel)),
            ",",
            _member("gpuCount", vm.toString(uint256(b.gpuCount))),
            ",",
            _member("minMemoryGiB", vm.toString(uint256(b.minMemoryGiB))),
            ",",
            _member("minBandwidthGbps", vm.toString(uint256(b.minBandwidthGbps))),
            ",",
            _member("requiredFeatures", vm.toString(b.requiredFeatures)),
            ",",
            _member("acceptedFeatures", vm.toString(b.acceptedFeatures))
        );
        message = string.concat(
            message,
            ",",
            _member("billing", vm.toString(uint256(uint8(b.billing)))),
            ',"allOrNone":true,',
            _member("maxPricePerGpuSecond", vm.toString(b.maxPricePerGpuSecond)),
            ",",
            _member("duration", vm.toString(uint256(b.duration))),
            ",",
            _member("expiry", vm.toString(uint256(b.expiry))),
            ",",
            _member("nonce", vm.toString(b.nonce)),
            ",",
            _member("jobSpecHash", vm.toString(b.jobSpecHash)),
            ",",
            _member("voucherSigner", vm.toString(b.voucherSigner))
        );
        message = string.concat(
            message,
            ",",
            _member("arbiter", vm.toString(b.arbiter)),
            ",",
            _member("maxMinChargeBps", vm.toString(uint256(b.maxMinChargeBps))),
            "}"
        );
        string memory json = string.concat("{", types, ',"primaryType":"Bid",', domain, ",", message, "}");
        assertEq(vm.eip712HashTypedData(json), market.hashBid(b));
    }

    function test_hashes_dependOnMarketAddress() public {
        IMarket other = IMarket(address(new Market(_params(address(usd), 0, address(0)))));
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        assertTrue(other.hashOffer(offer) != market.hashOffer(offer));
    }

    function test_leaseId_isKeccakOfAbiEncodedTerms() public view {
        IMarketTypes.Lease memory lease = IMarketTypes.Lease(
            provider, lab, 2, 5, T0, 60, keccak256("salt"), IMarketTypes.Billing.Metered, stranger, lab2, provider2, 150
        );
        assertEq(market.leaseId(lease), keccak256(abi.encode(lease)));
    }

    // --- full path ------------------------------------------------------------------------------

    function test_fullPath_openClaimSeveralTimesCloseAfterWindowRefundsExactly() public {
        uint256 labStart = usd.balanceOf(lab);
        uint256 providerStart = usd.balanceOf(provider);
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        uint256 escrow = price * BID_GPUS * DURATION;
        assertEq(escrow, 14_400_000, "14.40 tUSD");
        assertEq(usd.balanceOf(lab), labStart - escrow);
        assertEq(usd.balanceOf(address(market)), staked + escrow);
        assertEq(market.getProvider(provider).locked, escrow, "the lease locks its escrow of stake");

        // Three vouchers at 10, 20 and 30 minutes, redeemed by the provider.
        uint256[3] memory cumulative = [uint256(2_400_000), 4_800_000, 7_200_000];
        for (uint256 i = 0; i < cumulative.length; ++i) {
            vm.warp(T0 + (i + 1) * 10 minutes);
            bytes memory sig = _voucher(lease, cumulative[i]);
            vm.prank(provider);
            uint256 amount = market.claim(lease, cumulative[i], bytes32(0), sig);
            assertEq(amount, 2_400_000);
            assertEq(market.leaseState(id).paid, cumulative[i]);
        }
        assertEq(market.withdrawable(provider), 7_200_000, "credited");
        assertEq(usd.balanceOf(provider), providerStart, "nothing sent before a withdrawal");

        // Nobody claims further; the lab closes once the claim window after the end has passed.
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW);
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseClosed(id, 7_200_000, escrow - 7_200_000);
        vm.expectEmit(address(market));
        emit IMarketTypes.StakeReleased(id, provider, escrow);
        vm.prank(lab);
        uint256 refund = market.closeLease(lease);
        assertEq(market.getProvider(provider).locked, 0, "its proof window is over: the lock is released");

        assertEq(refund, 7_200_000);
        assertEq(market.withdrawable(lab), 7_200_000);
        assertEq(usd.balanceOf(address(market)), staked + escrow, "the market holds both credits");

        // Each party takes its credit out in one transfer.
        assertEq(_withdraw(provider), 7_200_000);
        assertEq(_withdraw(lab), 7_200_000);
        assertEq(usd.balanceOf(lab), labStart - 7_200_000);
        assertEq(usd.balanceOf(provider), providerStart + 7_200_000);
        assertEq(usd.balanceOf(address(market)), staked);
        IMarketTypes.LeaseState memory state = market.leaseState(id);
        assertEq(uint8(state.status), uint8(IMarketTypes.LeaseStatus.Closed));
        assertEq(state.paid, 7_200_000);
        assertEq(state.end, T0 + DURATION);
    }

    // --- openLease ------------------------------------------------------------------------------

    function test_openLease_emitsLeaseOpenedStoresStateAndPullsEscrow() public {
        Pair memory p = _defaultPair();
        IMarketTypes.Lease memory lease = _expectedLease(p, 3);
        bytes32 id = keccak256(abi.encode(lease));
        bytes32 offerHash = market.hashOffer(p.offer);
        bytes32 bidHash = market.hashBid(p.bid);
        uint256 escrow = price * 3 * DURATION;

        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseOpened(id, offerHash, bidHash, lease);
        vm.expectEmit(address(usd));
        emit IERC20.Transfer(lab, address(market), escrow);
        vm.prank(stranger); // anyone may open a crossing pair
        bytes32 returned = market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 3);

        assertEq(returned, id);
        IMarketTypes.LeaseState memory state = market.leaseState(id);
        assertEq(uint8(state.status), uint8(IMarketTypes.LeaseStatus.Active));
        assertEq(state.paid, 0);
        assertEq(state.end, T0 + DURATION);
        assertEq(market.orderState(provider, offerHash).filled, 3);
        assertEq(market.orderState(lab, bidHash).filled, 3);
        assertEq(usd.balanceOf(address(market)), staked + escrow);
    }

    function test_openLease_chargesOfferPriceNotBidMaximum() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), 1);
        assertEq(lease.pricePerGpuSecond, price);
        assertEq(usd.balanceOf(address(market)), staked + price * DURATION);
    }

    function test_openLease_revertsOnZeroFill() public {
        Pair memory p = _defaultPair();
        vm.expectRevert(IMarketTypes.MarketZeroFill.selector);
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 0);
    }

    function test_openLease_acceptsOfferAtExpirySecond() public {
        Pair memory p = _defaultPair();
        vm.warp(p.offer.expiry);
        _open(p, 1);
    }

    function test_openLease_revertsOneSecondAfterOfferExpiry() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.expiry = T0 + 30 minutes; // before the bid's
        Pair memory p = _pair(offer, _bid(lab, 0));
        vm.warp(uint256(offer.expiry) + 1);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketOrderExpired.selector, market.hashOffer(offer), offer.expiry)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_acceptsBidAtExpirySecond() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.expiry = T0 + 30 minutes;
        Pair memory p = _pair(_offer(provider, 0), bid);
        vm.warp(bid.expiry);
        _open(p, 1);
    }

    function test_openLease_revertsOneSecondAfterBidExpiry() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.expiry = T0 + 30 minutes;
        Pair memory p = _pair(_offer(provider, 0), bid);
        vm.warp(uint256(bid.expiry) + 1);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketOrderExpired.selector, market.hashBid(bid), bid.expiry));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsOnGpuModelMismatch() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.gpuModel = A100;
        Pair memory p = _pair(_offer(provider, 0), bid);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketGpuModelMismatch.selector, H100, A100));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsWhenDurationBelowOfferMinimum() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.duration = 10 minutes - 1;
        Pair memory p = _pair(_offer(provider, 0), bid);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketDurationOutOfRange.selector, 10 minutes - 1, 10 minutes, 1 days)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsWhenDurationAboveOfferMaximum() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.duration = 1 days + 1;
        Pair memory p = _pair(_offer(provider, 0), bid);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketDurationOutOfRange.selector, 1 days + 1, 10 minutes, 1 days)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_acceptsDurationAtBothBoundsOfOfferRange() public {
        IMarketTypes.Bid memory shortBid = _bid(lab, 0);
        shortBid.duration = 10 minutes;
        IMarketTypes.Bid memory longBid = _bid(lab, 1);
        longBid.duration = 1 days;
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        (IMarketTypes.Lease memory a,) = _open(_pair(offer, shortBid), 1);
        (IMarketTypes.Lease memory b,) = _open(_pair(offer, longBid), 1);
        assertEq(a.duration, 10 minutes);
        assertEq(b.duration, 1 days);
    }

    function test_openLease_revertsWhenPriceNotCrossed() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.maxPricePerGpuSecond = price - 1;
        Pair memory p = _pair(_offer(provider, 0), bid);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketPriceNotCrossed.selector, price, price - 1));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_acceptsPriceEqualToBidMaximum() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.maxPricePerGpuSecond = price;
        _open(_pair(_offer(provider, 0), bid), 1);
    }

    function test_openLease_revertsWhenOfferSignedByAnotherKey() public {
        Pair memory p = _defaultPair();
        bytes32 digest = market.hashOffer(p.offer);
        p.offerSig = _sign(PROVIDER2_KEY, digest);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, provider));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsWhenBidSignedByAnotherKey() public {
        Pair memory p = _defaultPair();
        bytes32 digest = market.hashBid(p.bid);
        p.bidSig = _sign(LAB2_KEY, digest);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, lab));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsOnMalformedSignatureLength() public {
        Pair memory p = _defaultPair();
        bytes32 digest = market.hashBid(p.bid);
        p.bidSig = bytes.concat(p.bidSig, hex"00");
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, lab));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsOnMalleableOfferSignature() public {
        Pair memory p = _defaultPair();
        bytes32 digest = market.hashOffer(p.offer);
        bytes memory twin = _malleate(p.offerSig);
        // The twin is a valid secp256k1 signature of the same digest by the same key...
        (address recovered) = _ecrecover(digest, twin);
        assertEq(recovered, provider);
        // ...but the market only accepts the low-s form.
        p.offerSig = twin;
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, provider));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsOnMalleableBidSignature() public {
        Pair memory p = _defaultPair();
        bytes32 digest = market.hashBid(p.bid);
        p.bidSig = _malleate(p.bidSig);
        assertEq(_ecrecover(digest, p.bidSig), lab);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, lab));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsWhenOfferNonceBelowFloor() public {
        Pair memory p = _pair(_offer(provider, 4), _bid(lab, 0));
        vm.prank(provider);
        market.cancelOrdersUpTo(5);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketOrderNonceCancelled.selector, market.hashOffer(p.offer), 4, 5)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsWhenBidNonceBelowFloor() public {
        Pair memory p = _pair(_offer(provider, 0), _bid(lab, 2));
        vm.prank(lab);
        market.cancelOrdersUpTo(3);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketOrderNonceCancelled.selector, market.hashBid(p.bid), 2, 3)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_acceptsNonceEqualToFloor() public {
        Pair memory p = _pair(_offer(provider, 5), _bid(lab, 0));
        vm.prank(provider);
        market.cancelOrdersUpTo(5);
        _open(p, 1);
    }

    function test_openLease_revertsWhenOfferCancelledByHash() public {
        Pair memory p = _defaultPair();
        bytes32 offerHash = market.hashOffer(p.offer);
        vm.prank(provider);
        market.cancelOrder(offerHash);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketOrderCancelled.selector, offerHash));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsWhenBidCancelledByHash() public {
        Pair memory p = _defaultPair();
        bytes32 bidHash = market.hashBid(p.bid);
        vm.prank(lab);
        market.cancelOrder(bidHash);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketOrderCancelled.selector, bidHash));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_ignoresCancellationBySomeoneElse() public {
        Pair memory p = _defaultPair();
        bytes32 offerHash = market.hashOffer(p.offer);
        vm.prank(stranger);
        market.cancelOrder(offerHash); // recorded under the stranger, not the provider
        _open(p, 1);
    }

    function test_openLease_revertsWhenFillExceedsBid() public {
        Pair memory p = _defaultPair();
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarketTypes.MarketFillExceedsOrder.selector, market.hashBid(p.bid), BID_GPUS + 1, BID_GPUS
            )
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, BID_GPUS + 1);
    }

    function test_openLease_revertsWhenFillExceedsOfferRemainder() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        IMarketTypes.Bid memory big = _bid(lab, 0);
        big.gpuCount = 100;
        Pair memory p = _pair(offer, big);
        _open(p, 6);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketFillExceedsOrder.selector, market.hashOffer(offer), 3, 2)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 3);
    }

    function test_openLease_revertsWhenProviderNotRegistered() public {
        Pair memory p = _pair(_offer(stranger, 0), _bid(lab, 0));
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketProviderNotRegistered.selector, stranger));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsWhenProviderFreeStakeBelowMinimum() public {
        vm.prank(provider);
        market.requestUnstake(1);
        Pair memory p = _defaultPair();
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketProviderStakeTooLow.selector, provider, minStake - 1, minStake)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsWhenPriceExceedsUint128() public {
        uint256 hugePrice = uint256(type(uint128).max) + 1;
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.pricePerGpuSecond = hugePrice;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.maxPricePerGpuSecond = hugePrice;
        Pair memory p = _pair(offer, bid);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketEscrowOverflow.selector, hugePrice, uint256(1), uint256(DURATION))
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsWhenEscrowExceedsUint128() public {
        // price * 2 GPUs * 1 hour is one unit above type(uint128).max.
        uint256 unitPrice = uint256(type(uint128).max) / (2 * DURATION) + 1;
        assertGt(unitPrice * 2 * DURATION, type(uint128).max);
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.pricePerGpuSecond = unitPrice;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.maxPricePerGpuSecond = unitPrice;
        Pair memory p = _pair(offer, bid);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketEscrowOverflow.selector, unitPrice, uint256(2), uint256(DURATION))
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 2);
    }

    function test_openLease_revertsWhenLeaseWouldEndPastUint64() public {
        uint64 tooLong = type(uint64).max - T0 + 1;
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.maxDuration = type(uint64).max;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.duration = tooLong;
        Pair memory p = _pair(offer, bid);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketLeaseTooLong.selector, tooLong));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_acceptsLeaseEndingAtUint64Max() public {
        uint64 longest = type(uint64).max - T0;
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        offer.maxDuration = type(uint64).max;
        offer.pricePerGpuSecond = 1;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.duration = longest;
        token.mint(lab, longest); // escrow: 1 unit per second
        _addStake(provider, longest); // and as much stake to lock
        (, bytes32 id) = _open(_pair(offer, bid), 1);
        assertEq(market.getProvider(provider).locked, longest);
        assertEq(market.leaseState(id).end, type(uint64).max);
    }

    function test_openLease_revertsWhenLabHasNotApproved() public {
        vm.prank(lab);
        usd.approve(address(market), 0);
        Pair memory p = _defaultPair();
        uint256 escrow = price * DURATION;
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, escrow)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    // --- partial fills --------------------------------------------------------------------------

    function test_partialFill_oneOfferServesSeveralBids() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0); // 8 GPUs
        bytes memory offerSig = _signOffer(offer);
        IMarketTypes.Bid memory bidA = _bid(lab, 0); // 4 GPUs
        IMarketTypes.Bid memory bidB = _bid(lab2, 0);
        bidB.gpuCount = 3;
        IMarketTypes.Bid memory bidC = _bid(lab2, 1);

        (IMarketTypes.Lease memory a, bytes32 idA) = _open(Pair(offer, offerSig, bidA, _signBid(bidA)), 4);
        (IMarketTypes.Lease memory b, bytes32 idB) = _open(Pair(offer, offerSig, bidB, _signBid(bidB)), 3);
        assertEq(market.orderState(provider, market.hashOffer(offer)).filled, 7);
        assertEq(a.lab, lab);
        assertEq(b.lab, lab2);
        assertTrue(idA != idB);

        // One GPU remains on the offer.
        bytes memory sigC = _signBid(bidC);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketFillExceedsOrder.selector, market.hashOffer(offer), 2, 1)
        );
        market.openLease(offer, offerSig, bidC, sigC, 2);
        _open(Pair(offer, offerSig, bidC, sigC), 1);
        assertEq(market.orderState(provider, market.hashOffer(offer)).filled, OFFER_GPUS);
        assertEq(usd.balanceOf(address(market)), staked + price * OFFER_GPUS * DURATION);
    }

    function test_partialFill_oneBidServedBySeveralProviders() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0); // 4 GPUs
        bytes memory bidSig = _signBid(bid);
        IMarketTypes.Offer memory cheap = _offer(provider, 0);
        IMarketTypes.Offer memory dear = _offer(provider2, 0);
        dear.pricePerGpuSecond = price * 2;

        (IMarketTypes.Lease memory a,) = _open(Pair(cheap, _signOffer(cheap), bid, bidSig), 1);
        (IMarketTypes.Lease memory b,) = _open(Pair(dear, _signOffer(dear), bid, bidSig), 3);

        assertEq(a.provider, provider);
        assertEq(b.provider, provider2);
        assertEq(b.pricePerGpuSecond, price * 2, "each lease at its own offer's price");
        assertTrue(a.salt != b.salt);
        assertEq(market.orderState(lab, market.hashBid(bid)).filled, BID_GPUS);
        assertEq(usd.balanceOf(address(market)), staked + price * 1 * DURATION + price * 2 * 3 * DURATION);
    }

    function test_partialFill_samePairTwiceOpensDistinctLeases() public {
        Pair memory p = _defaultPair();
        (IMarketTypes.Lease memory a, bytes32 idA) = _open(p, 1);
        (IMarketTypes.Lease memory b, bytes32 idB) = _open(p, 1);
        assertTrue(idA != idB, "the bid's fill so far is part of the salt");
        assertEq(a.start, b.start);
        assertEq(b.salt, keccak256(abi.encode(market.hashOffer(p.offer), market.hashBid(p.bid), uint256(1))));
    }

    // --- openLeaseWithPermit --------------------------------------------------------------------

    function _permit(uint256 value) internal view returns (IMarketTypes.Permit memory permit) {
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                lab,
                address(market),
                value,
                usd.nonces(lab),
                block.timestamp + 1 hours
            )
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", usd.DOMAIN_SEPARATOR(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(LAB_KEY, digest);
        permit = IMarketTypes.Permit(value, block.timestamp + 1 hours, v, r, s);
    }

    function test_openLeaseWithPermit_appliesPermitWhenNoAllowance() public {
        vm.prank(lab);
        usd.approve(address(market), 0);
        Pair memory p = _defaultPair();
        uint256 escrow = price * BID_GPUS * DURATION;
        IMarketTypes.Permit memory permit = _permit(escrow);
        IMarketTypes.Lease memory lease = _expectedLease(p, BID_GPUS);

        bytes32 id = market.openLeaseWithPermit(p.offer, p.offerSig, p.bid, p.bidSig, BID_GPUS, permit);

        assertEq(id, keccak256(abi.encode(lease)));
        assertEq(usd.nonces(lab), 1);
        assertEq(usd.allowance(lab, address(market)), 0, "permit consumed exactly");
        assertEq(usd.balanceOf(address(market)), staked + escrow);
    }

    function test_openLeaseWithPermit_succeedsWhenPermitWasFrontRun() public {
        vm.prank(lab);
        usd.approve(address(market), 0);
        Pair memory p = _defaultPair();
        uint256 escrow = price * BID_GPUS * DURATION;
        IMarketTypes.Permit memory permit = _permit(escrow);

        // An observer submits the lab's permit first: the market's own permit call now fails.
        usd.permit(lab, address(market), permit.value, permit.deadline, permit.v, permit.r, permit.s);
        assertEq(usd.nonces(lab), 1);

        vm.prank(stranger);
        bytes32 id = market.openLeaseWithPermit(p.offer, p.offerSig, p.bid, p.bidSig, BID_GPUS, permit);

        assertEq(uint8(market.leaseState(id).status), uint8(IMarketTypes.LeaseStatus.Active));
        assertEq(usd.balanceOf(address(market)), staked + escrow);
        assertEq(usd.allowance(lab, address(market)), 0);
    }

    function test_openLeaseWithPermit_revertsOnAllowanceWhenPermitInvalidAndNotApproved() public {
        vm.prank(lab);
        usd.approve(address(market), 0);
        Pair memory p = _defaultPair();
        uint256 escrow = price * BID_GPUS * DURATION;
        IMarketTypes.Permit memory permit = _permit(escrow);
        permit.s = bytes32(uint256(permit.s) ^ 1); // broken permit signature

        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, escrow)
        );
        market.openLeaseWithPermit(p.offer, p.offerSig, p.bid, p.bidSig, BID_GPUS, permit);
    }

    function test_openLeaseWithPermit_worksWithTokenWithoutPermit() public {
        // Any failing permit is ignored: here the token has no permit function at all.
        NoBoolToken nb = new NoBoolToken(6);
        _deploy(address(nb), 6, 0, address(0));
        Pair memory p = _defaultPair();
        bytes32 id = market.openLeaseWithPermit(p.offer, p.offerSig, p.bid, p.bidSig, 1, IMarketTypes.Permit(0, 0, 0, 0, 0));
        assertEq(uint8(market.leaseState(id).status), uint8(IMarketTypes.LeaseStatus.Active));
        assertEq(nb.balanceOf(address(market)), staked + price * DURATION);
    }

    // --- cancellation ---------------------------------------------------------------------------

    function test_cancelOrder_marksCancelledAndEmits() public {
        bytes32 h = keccak256("order");
        vm.expectEmit(address(market));
        emit IMarketTypes.OrderCancelled(lab, h);
        vm.prank(lab);
        market.cancelOrder(h);
        assertTrue(market.orderState(lab, h).cancelled);
        assertFalse(market.orderState(provider, h).cancelled);
    }

    function test_cancelOrder_isIdempotentWithoutSecondEvent() public {
        bytes32 h = keccak256("order");
        vm.prank(lab);
        market.cancelOrder(h);
        vm.recordLogs();
        vm.prank(lab);
        market.cancelOrder(h);
        assertEq(vm.getRecordedLogs().length, 0);
        assertTrue(market.orderState(lab, h).cancelled);
    }

    function test_cancelOrder_stopsRemainderOfPartlyFilledOrder() public {
        Pair memory p = _defaultPair();
        (, bytes32 id) = _open(p, 1);
        bytes32 bidHash = market.hashBid(p.bid);
        vm.prank(lab);
        market.cancelOrder(bidHash);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketOrderCancelled.selector, bidHash));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
        assertEq(uint8(market.leaseState(id).status), uint8(IMarketTypes.LeaseStatus.Active), "open lease unaffected");
    }

    function test_cancelOrdersUpTo_raisesFloorAndEmits() public {
        vm.expectEmit(address(market));
        emit IMarketTypes.NonceFloorRaised(provider, 10);
        vm.prank(provider);
        market.cancelOrdersUpTo(10);
        assertEq(market.minNonce(provider), 10);
        assertEq(market.minNonce(lab), 0);
    }

    function test_cancelOrdersUpTo_revertsWhenFloorNotIncreased() public {
        vm.prank(provider);
        market.cancelOrdersUpTo(10);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNonceFloorNotRaised.selector, 10, 10));
        vm.prank(provider);
        market.cancelOrdersUpTo(10);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNonceFloorNotRaised.selector, 10, 9));
        vm.prank(provider);
        market.cancelOrdersUpTo(9);
    }

    function test_cancelOrdersUpTo_revertsOnZeroFromFreshAccount() public {
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNonceFloorNotRaised.selector, 0, 0));
        vm.prank(lab);
        market.cancelOrdersUpTo(0);
    }

    // --- claim ----------------------------------------------------------------------------------

    function test_claim_creditsDifferenceAndEmitsWithoutMovingTokens() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        bytes32 receipt = keccak256("receipt 1");
        bytes memory sig = _signVoucher(LAB_KEY, id, 1_000_000, receipt);
        uint256 before = usd.balanceOf(provider);

        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(id, 1_000_000, 1_000_000, receipt);
        vm.recordLogs();
        uint256 amount = market.claim(lease, 1_000_000, receipt, sig);

        assertEq(amount, 1_000_000);
        assertEq(market.withdrawable(provider), 1_000_000);
        assertEq(usd.balanceOf(provider), before);
        assertEq(usd.balanceOf(address(market)), staked + _escrowOf(lease));
        assertEq(_countTransfers(vm.getRecordedLogs()), 0, "a claim moves no token");
        assertEq(market.leaseState(id).paid, 1_000_000);
    }

    function test_claim_byThirdPartyCreditsProvider() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        bytes memory sig = _voucher(lease, 500_000);
        vm.prank(stranger);
        market.claim(lease, 500_000, bytes32(0), sig);
        assertEq(market.withdrawable(provider), 500_000);
        assertEq(market.withdrawable(stranger), 0);
    }

    function test_claim_capsAtEscrow() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        uint256 escrow = _escrowOf(lease);
        bytes memory sig = _voucher(lease, escrow * 10);
        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(id, escrow, escrow, bytes32(0));
        uint256 amount = market.claim(lease, escrow * 10, bytes32(0), sig);
        assertEq(amount, escrow);
        assertEq(market.leaseState(id).paid, escrow);
        assertEq(market.withdrawable(provider), escrow);

        // Fully paid: the close refunds nothing, and the market holds only the provider's credit.
        vm.prank(provider);
        assertEq(market.closeLease(lease), 0);
        assertEq(market.withdrawable(lab), 0);
        assertEq(usd.balanceOf(address(market)), staked + escrow);
    }

    function test_claim_revertsWithNothingToClaimOnReplay() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        bytes memory sig = _voucher(lease, 700);
        market.claim(lease, 700, bytes32(0), sig);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToClaim.selector, id, 700, 700));
        market.claim(lease, 700, bytes32(0), sig);
    }

    function test_claim_revertsWithNothingToClaimOnOlderVoucher() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        bytes memory older = _voucher(lease, 300);
        bytes memory newer = _voucher(lease, 900);
        market.claim(lease, 900, bytes32(0), newer);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToClaim.selector, id, 300, 900));
        market.claim(lease, 300, bytes32(0), older);
    }

    function test_claim_revertsWithNothingToClaimOnZeroVoucher() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        bytes memory sig = _voucher(lease, 0);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToClaim.selector, id, 0, 0));
        market.claim(lease, 0, bytes32(0), sig);
    }

    function test_claim_revertsWithNothingToClaimAboveEscrowOnceFullyPaid() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        uint256 escrow = _escrowOf(lease);
        market.claim(lease, escrow, bytes32(0), _voucher(lease, escrow));
        bytes memory sig = _voucher(lease, escrow + 1);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToClaim.selector, id, escrow + 1, escrow));
        market.claim(lease, escrow + 1, bytes32(0), sig);
    }

    function test_claim_revertsOnUnknownLease() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        lease.gpus = 3; // terms of no lease
        bytes32 id = keccak256(abi.encode(lease));
        bytes memory sig = _voucher(lease, 1);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketUnknownLease.selector, id));
        market.claim(lease, 1, bytes32(0), sig);
    }

    function test_claim_revertsWhenVoucherNotSignedByLab() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        bytes memory sig = _signVoucher(PROVIDER_KEY, id, 1_000, bytes32(0));
        bytes32 digest = market.hashVoucher(IMarketTypes.Voucher(id, 1_000, bytes32(0)));
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, lab));
        market.claim(lease, 1_000, bytes32(0), sig);
    }

    function test_claim_revertsOnVoucherForAnotherLease() public {
        Pair memory p = _defaultPair();
        (IMarketTypes.Lease memory a, bytes32 idA) = _open(p, 1);
        (IMarketTypes.Lease memory b, bytes32 idB) = _open(p, 1);
        bytes memory sigForA = _voucher(a, 1_000);
        bytes32 digestB = market.hashVoucher(IMarketTypes.Voucher(idB, 1_000, bytes32(0)));
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digestB, lab));
        market.claim(b, 1_000, bytes32(0), sigForA);
        assertEq(market.leaseState(idA).paid, 0);
    }

    function test_claim_revertsOnMalleableVoucherSignature() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        bytes memory sig = _malleate(_voucher(lease, 1_000));
        bytes32 digest = market.hashVoucher(IMarketTypes.Voucher(id, 1_000, bytes32(0)));
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, lab));
        market.claim(lease, 1_000, bytes32(0), sig);
    }

    function test_claim_acceptsAnEip2098CompactVoucherSignature() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        bytes memory sig = _compact(_voucher(lease, 1_000));
        assertEq(sig.length, 64);
        assertEq(market.claim(lease, 1_000, bytes32(0), sig), 1_000);
        assertEq(market.leaseState(id).paid, 1_000);
    }

    function test_claim_revertsOnAVOtherThan27Or28() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        bytes memory sig = _voucher(lease, 1_000);
        bytes32 digest = market.hashVoucher(IMarketTypes.Voucher(id, 1_000, bytes32(0)));
        for (uint8 v = 0; v < 30; ++v) {
            if (v == 27 || v == 28) continue;
            sig[64] = bytes1(v);
            vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, lab));
            market.claim(lease, 1_000, bytes32(0), sig);
        }
    }

    function test_claim_revertsAfterClose() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        bytes memory sig = _voucher(lease, 1_000);
        vm.prank(provider);
        market.closeLease(lease);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketLeaseNotOpen.selector, id, IMarketTypes.LeaseStatus.Closed)
        );
        market.claim(lease, 1_000, bytes32(0), sig);
    }

    function test_claim_staysPossibleAfterEndUntilClose() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW + 100 days);
        market.claim(lease, 5_000, bytes32(0), _voucher(lease, 5_000));
        assertEq(market.leaseState(id).paid, 5_000);
    }

    // --- claimBatch -----------------------------------------------------------------------------

    function _item(IMarketTypes.Lease memory lease, uint256 cumulative) internal view returns (IMarketTypes.ClaimItem memory) {
        return IMarketTypes.ClaimItem(lease, cumulative, bytes32(0), _voucher(lease, cumulative));
    }

    function test_claimBatch_skipsBadItemAndPaysOthers() public {
        Pair memory p = _defaultPair();
        (IMarketTypes.Lease memory a, bytes32 idA) = _open(p, 1);
        (IMarketTypes.Lease memory b, bytes32 idB) = _open(p, 1);
        (IMarketTypes.Lease memory c, bytes32 idC) = _open(p, 1);

        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](3);
        items[0] = _item(a, 100);
        items[1] = _item(b, 200);
        items[1].cumulativeAmount = 201; // tampered: signature no longer matches
        items[2] = _item(c, 300);

        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(idA, 100, 100, bytes32(0));
        vm.expectEmit(address(market));
        emit IMarketTypes.ClaimSkipped(idB, IMarketTypes.MarketInvalidSignature.selector);
        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(idC, 300, 300, bytes32(0));
        uint256 total = market.claimBatch(items);

        assertEq(total, 400);
        assertEq(market.withdrawable(provider), 400);
        assertEq(market.leaseState(idA).paid, 100);
        assertEq(market.leaseState(idB).paid, 0);
        assertEq(market.leaseState(idC).paid, 300);
    }

    function test_claimBatch_reportsEachSkipReasonBySelector() public {
        Pair memory p = _defaultPair();
        (IMarketTypes.Lease memory a, bytes32 idA) = _open(p, 1);
        (IMarketTypes.Lease memory closed, bytes32 idClosed) = _open(p, 1);
        vm.prank(provider);
        market.closeLease(closed);
        market.claim(a, 50, bytes32(0), _voucher(a, 50));
        IMarketTypes.Lease memory unknown = _copy(a);
        unknown.salt = keccak256("nope");

        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](3);
        items[0] = _item(unknown, 10);
        items[1] = _item(closed, 10);
        items[2] = _item(a, 50); // already paid

        vm.recordLogs();
        uint256 total = market.claimBatch(items);
        assertEq(total, 0);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 3, "three skips, nothing else");
        bytes32 skipped = IMarketTypes.ClaimSkipped.selector;
        assertEq(logs[0].topics[0], skipped);
        assertEq(logs[0].topics[1], keccak256(abi.encode(unknown)));
        assertEq(abi.decode(logs[0].data, (bytes4)), IMarketTypes.MarketUnknownLease.selector);
        assertEq(logs[1].topics[1], idClosed);
        assertEq(abi.decode(logs[1].data, (bytes4)), IMarketTypes.MarketLeaseNotOpen.selector);
        assertEq(logs[2].topics[1], idA);
        assertEq(abi.decode(logs[2].data, (bytes4)), IMarketTypes.MarketNothingToClaim.selector);
    }

    function test_claimBatch_creditsEachProviderAndMovesNoToken() public {
        Pair memory p1 = _defaultPair();
        Pair memory p2 = _pair(_offer(provider2, 0), _bid(lab2, 0));
        (IMarketTypes.Lease memory a1,) = _open(p1, 1);
        (IMarketTypes.Lease memory a2,) = _open(p1, 1);
        (IMarketTypes.Lease memory b1,) = _open(p2, 1);

        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](3);
        items[0] = _item(a1, 100);
        items[1] = _item(a2, 250);
        items[2] = _item(b1, 70);

        vm.recordLogs();
        uint256 total = market.claimBatch(items);
        assertEq(total, 420);
        assertEq(market.withdrawable(provider), 350);
        assertEq(market.withdrawable(provider2), 70);
        assertEq(_countTransfers(vm.getRecordedLogs()), 0, "credits only: withdrawals move the tokens");
    }

    function test_claimBatch_interleavedProvidersAreEachCreditedTheirSum() public {
        Pair memory p1 = _defaultPair();
        Pair memory p2 = _pair(_offer(provider2, 0), _bid(lab2, 0));
        (IMarketTypes.Lease memory a1,) = _open(p1, 1);
        (IMarketTypes.Lease memory b1,) = _open(p2, 1);
        (IMarketTypes.Lease memory a2,) = _open(p1, 1);

        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](3);
        items[0] = _item(a1, 100);
        items[1] = _item(b1, 70);
        items[2] = _item(a2, 250);

        assertEq(market.claimBatch(items), 420);
        assertEq(market.withdrawable(provider), 350);
        assertEq(market.withdrawable(provider2), 70);
        assertEq(_withdraw(provider), 350, "one transfer for both runs");
    }

    function test_claimBatch_sameLeaseTwicePaysOnlyTheIncrease() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](3);
        items[0] = _item(lease, 100);
        items[1] = _item(lease, 400);
        items[2] = _item(lease, 300); // stale by now: skipped
        vm.expectEmit(address(market));
        emit IMarketTypes.ClaimSkipped(id, IMarketTypes.MarketNothingToClaim.selector);
        assertEq(market.claimBatch(items), 400);
        assertEq(market.withdrawable(provider), 400);
    }

    function test_claimBatch_emptyBatchPaysNothing() public {
        vm.recordLogs();
        assertEq(market.claimBatch(new IMarketTypes.ClaimItem[](0)), 0);
        assertEq(vm.getRecordedLogs().length, 0);
    }

    function _countTransfers(Vm.Log[] memory logs) internal view returns (uint256 n) {
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].emitter == address(token) && logs[i].topics[0] == IERC20.Transfer.selector) ++n;
        }
    }

    // --- terminate ------------------------------------------------------------------------------

    function test_terminate_revertsWhenCallerIsNotLab() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNotLab.selector, id, provider));
        vm.prank(provider);
        market.terminate(lease, 0);
    }

    function test_terminate_creditsWorkToDateAndRefundsRestAtClose() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        uint256 escrow = _escrowOf(lease);
        market.claim(lease, 1_000_000, bytes32(0), _voucher(lease, 1_000_000));
        vm.warp(T0 + 15 minutes);
        uint256 providerBefore = usd.balanceOf(provider);
        uint256 labBefore = usd.balanceOf(lab);

        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(id, 2_600_000, 3_600_000, bytes32(0));
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseTerminated(id, T0 + 15 minutes, 3_600_000);
        vm.prank(lab);
        market.terminate(lease, 3_600_000); // 15 minutes of 4 GPUs

        assertEq(market.withdrawable(provider), 1_000_000 + 2_600_000);
        IMarketTypes.LeaseState memory state = market.leaseState(id);
        assertEq(uint8(state.status), uint8(IMarketTypes.LeaseStatus.Terminated));
        assertEq(state.end, T0 + 15 minutes);
        assertEq(state.paid, 3_600_000);

        vm.warp(uint256(T0) + 15 minutes + CLAIM_WINDOW);
        vm.prank(lab);
        assertEq(market.closeLease(lease), escrow - 3_600_000);
        assertEq(market.withdrawable(lab), escrow - 3_600_000);
        assertEq(_withdraw(lab), escrow - 3_600_000);
        assertEq(_withdraw(provider), 3_600_000);
        assertEq(usd.balanceOf(lab), labBefore + escrow - 3_600_000);
        assertEq(usd.balanceOf(provider), providerBefore + 3_600_000);
        assertEq(usd.balanceOf(address(market)), staked);
    }

    function test_terminate_belowPaidPaysNothing() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        market.claim(lease, 5_000, bytes32(0), _voucher(lease, 5_000));

        vm.recordLogs();
        vm.prank(lab);
        market.terminate(lease, 1_000);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 1, "LeaseTerminated only");
        assertEq(logs[0].topics[0], IMarketTypes.LeaseTerminated.selector);
        (uint64 end, uint256 paid) = abi.decode(logs[0].data, (uint64, uint256));
        assertEq(end, T0);
        assertEq(paid, 5_000);
        assertEq(market.withdrawable(provider), 5_000);
        assertEq(market.leaseState(id).paid, 5_000);
    }

    function test_terminate_capsPaymentAtEscrow() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        uint256 escrow = _escrowOf(lease);
        vm.prank(lab);
        market.terminate(lease, type(uint256).max);
        assertEq(market.leaseState(id).paid, escrow);
        assertEq(market.withdrawable(provider), escrow);
    }

    function test_terminate_revertsAtEndSecond() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.warp(uint256(T0) + DURATION);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketLeaseEnded.selector, id, T0 + DURATION));
        vm.prank(lab);
        market.terminate(lease, 0);
    }

    function test_terminate_acceptsOneSecondBeforeEnd() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.warp(uint256(T0) + DURATION - 1);
        vm.prank(lab);
        market.terminate(lease, 0);
        assertEq(market.leaseState(id).end, T0 + DURATION - 1);
    }

    function test_terminate_revertsWhenAlreadyTerminated() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.prank(lab);
        market.terminate(lease, 0);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketLeaseNotOpen.selector, id, IMarketTypes.LeaseStatus.Terminated)
        );
        vm.prank(lab);
        market.terminate(lease, 0);
    }

    function test_terminate_revertsWhenClosed() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.prank(provider);
        market.closeLease(lease);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketLeaseNotOpen.selector, id, IMarketTypes.LeaseStatus.Closed));
        vm.prank(lab);
        market.terminate(lease, 0);
    }

    function test_terminate_revertsOnUnknownLease() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        lease.start += 1;
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketUnknownLease.selector, keccak256(abi.encode(lease))));
        vm.prank(lab);
        market.terminate(lease, 0);
    }

    function test_terminate_thenClaimsStillPossibleUntilClose() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.warp(T0 + 20 minutes);
        vm.prank(lab);
        market.terminate(lease, 1_000_000);

        // The provider redeems a later voucher the lab signed for the work up to termination.
        vm.warp(T0 + 2 hours);
        uint256 amount = market.claim(lease, 4_800_000, bytes32(0), _voucher(lease, 4_800_000));
        assertEq(amount, 3_800_000);
        assertEq(market.withdrawable(provider), 1_000_000 + 3_800_000);
        assertEq(uint8(market.leaseState(id).status), uint8(IMarketTypes.LeaseStatus.Terminated));

        vm.warp(uint256(T0) + 20 minutes + CLAIM_WINDOW);
        vm.prank(stranger);
        assertEq(market.closeLease(lease), _escrowOf(lease) - 4_800_000);

        bytes memory late = _voucher(lease, 5_000_000);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketLeaseNotOpen.selector, id, IMarketTypes.LeaseStatus.Closed));
        market.claim(lease, 5_000_000, bytes32(0), late);
    }

    // --- closeLease -----------------------------------------------------------------------------

    function test_closeLease_byProviderAtAnyTimeCreditsUnpaidToLab() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        market.claim(lease, 123_456, bytes32(0), _voucher(lease, 123_456));
        uint256 labBefore = usd.balanceOf(lab);
        uint256 escrow = _escrowOf(lease);

        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseClosed(id, 123_456, escrow - 123_456);
        vm.recordLogs();
        vm.prank(provider);
        uint256 refund = market.closeLease(lease); // the lease is still running

        assertEq(refund, escrow - 123_456);
        assertEq(_countTransfers(vm.getRecordedLogs()), 0, "a close moves no token");
        assertEq(market.withdrawable(lab), refund);
        assertEq(usd.balanceOf(lab), labBefore);
        assertEq(uint8(market.leaseState(id).status), uint8(IMarketTypes.LeaseStatus.Closed));

        vm.expectEmit(address(usd));
        emit IERC20.Transfer(address(market), lab, refund);
        assertEq(_withdraw(lab), refund);
        assertEq(usd.balanceOf(lab), labBefore + refund);
    }

    function test_closeLease_byLabRevertsOneSecondBeforeWindowCloses() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        uint256 closesAt = uint256(T0) + DURATION + CLAIM_WINDOW;
        vm.warp(closesAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketClaimWindowOpen.selector, id, closesAt));
        vm.prank(lab);
        market.closeLease(lease);
    }

    function test_closeLease_byLabRevertsWhileActive() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        uint256 closesAt = uint256(T0) + DURATION + CLAIM_WINDOW;
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketClaimWindowOpen.selector, id, closesAt));
        vm.prank(lab);
        market.closeLease(lease);
    }

    function test_closeLease_byAnyoneAtExactWindowClose() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW);
        vm.prank(stranger);
        uint256 refund = market.closeLease(lease);
        assertEq(refund, _escrowOf(lease));
        assertEq(market.withdrawable(lab), refund, "refund credited to the lab, not the caller");
        assertEq(market.withdrawable(stranger), 0);
    }

    function test_closeLease_afterTerminationWindowCountsFromTermination() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.warp(T0 + 5 minutes);
        vm.prank(lab);
        market.terminate(lease, 0);
        uint256 closesAt = uint256(T0) + 5 minutes + CLAIM_WINDOW;
        vm.warp(closesAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketClaimWindowOpen.selector, id, closesAt));
        vm.prank(lab);
        market.closeLease(lease);
        vm.warp(closesAt);
        vm.prank(lab);
        assertEq(market.closeLease(lease), _escrowOf(lease));
    }

    function test_closeLease_revertsWhenAlreadyClosed() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        vm.prank(provider);
        market.closeLease(lease);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketLeaseNotOpen.selector, id, IMarketTypes.LeaseStatus.Closed));
        vm.prank(provider);
        market.closeLease(lease);
    }

    function test_closeLease_revertsOnUnknownLease() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        lease.lab = stranger;
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketUnknownLease.selector, keccak256(abi.encode(lease))));
        vm.prank(provider);
        market.closeLease(lease);
    }

    function test_closeLease_fullyPaidCreditsNothingToLab() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        uint256 escrow = _escrowOf(lease);
        market.claim(lease, escrow, bytes32(0), _voucher(lease, escrow));
        vm.prank(provider);
        assertEq(market.closeLease(lease), 0);
        assertEq(market.withdrawable(lab), 0);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketNothingToWithdraw.selector, lab));
        vm.prank(lab);
        market.withdraw();
    }
}

/// @notice A protocol fee of 2.5% to a treasury.
contract MarketFeeTest is MarketFixture {
    uint16 internal constant FEE_BPS = 250;

    function setUp() public {
        _deploy(address(new TestUSD(6)), 6, FEE_BPS, treasury);
    }

    function test_claim_creditsFeeToTreasuryAndRestToProvider() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        uint256 providerBefore = token.balanceOf(provider);
        bytes memory sig = _voucher(lease, 1_000_000);

        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(id, 1_000_000, 1_000_000, bytes32(0));
        vm.expectEmit(address(market));
        emit IMarketTypes.FeePaid(treasury, 25_000);
        uint256 amount = market.claim(lease, 1_000_000, bytes32(0), sig);

        assertEq(amount, 1_000_000, "the claimed amount includes the fee");
        assertEq(market.withdrawable(treasury), 25_000);
        assertEq(market.withdrawable(provider), 975_000);
        assertEq(market.leaseState(id).paid, 1_000_000);
        assertEq(_withdraw(treasury), 25_000);
        assertEq(_withdraw(provider), 975_000);
        assertEq(token.balanceOf(treasury), 25_000);
        assertEq(token.balanceOf(provider), providerBefore + 975_000);
    }

    function test_claim_feeRoundsDownToZeroOnDust() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        market.claim(lease, 39, bytes32(0), _voucher(lease, 39)); // 39 * 250 / 10_000 = 0
        assertEq(market.withdrawable(treasury), 0);
        assertEq(market.withdrawable(provider), 39);
    }

    function test_fullPath_providerPlusTreasuryPlusRefundEqualsEscrow() public {
        uint256 labBefore = token.balanceOf(lab);
        uint256 providerBefore = token.balanceOf(provider);
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        uint256 escrow = _escrowOf(lease);

        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](1);
        items[0] = IMarketTypes.ClaimItem(lease, 3_333_333, bytes32(0), _voucher(lease, 3_333_333));
        market.claimBatch(items);
        vm.warp(T0 + 30 minutes);
        vm.prank(lab);
        market.terminate(lease, 7_000_001);
        vm.prank(provider);
        uint256 refund = market.closeLease(lease);
        assertEq(token.balanceOf(address(market)), staked + escrow, "everything is still credited, not sent");
        assertEq(_withdraw(provider) + _withdraw(treasury) + _withdraw(lab), escrow);

        uint256 toProvider = token.balanceOf(provider) - providerBefore;
        uint256 toTreasury = token.balanceOf(treasury);
        assertEq(toTreasury, 83_333 + 91_666); // each payment rounds its fee down
        assertEq(toProvider + toTreasury, 7_000_001);
        assertEq(refund, escrow - 7_000_001);
        assertEq(toProvider + toTreasury + refund, escrow);
        assertEq(token.balanceOf(lab), labBefore - 7_000_001);
        assertEq(token.balanceOf(address(market)), staked);
    }

    function test_terminate_chargesFeeOnWorkToDate() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        vm.expectEmit(address(market));
        emit IMarketTypes.FeePaid(treasury, 10_000);
        vm.prank(lab);
        market.terminate(lease, 400_000);
        assertEq(market.withdrawable(treasury), 10_000);
        assertEq(market.withdrawable(provider), 390_000);
    }

    function test_closeLease_refundCarriesNoFee() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), BID_GPUS);
        vm.prank(provider);
        market.closeLease(lease);
        assertEq(market.withdrawable(treasury), 0);
        assertEq(market.withdrawable(lab), _escrowOf(lease));
    }
}

/// @notice The full path on a token whose transfer, transferFrom and approve return nothing.
contract MarketNoBoolTokenTest is MarketFixture {
    NoBoolToken internal nb;

    function setUp() public {
        nb = new NoBoolToken(6);
        _deploy(address(nb), 6, 100, treasury);
    }

    function test_fullPath_worksWithTokenReturningNoBool() public {
        uint256 labStart = nb.balanceOf(lab);
        uint256 providerStart = nb.balanceOf(provider);
        assertEq(nb.balanceOf(address(market)), 2 * minStake, "stakes pulled through SafeERC20");

        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_defaultPair(), BID_GPUS);
        uint256 escrow = _escrowOf(lease);
        assertEq(nb.balanceOf(address(market)), staked + escrow);

        market.claim(lease, 1_000_000, bytes32(0), _voucher(lease, 1_000_000));
        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](1);
        items[0] = IMarketTypes.ClaimItem(lease, 2_000_000, bytes32(0), _voucher(lease, 2_000_000));
        assertEq(market.claimBatch(items), 1_000_000);
        vm.warp(T0 + 10 minutes);
        vm.prank(lab);
        market.terminate(lease, 2_400_000);
        vm.warp(uint256(T0) + 10 minutes + CLAIM_WINDOW);
        vm.prank(lab);
        uint256 refund = market.closeLease(lease);
        assertEq(_withdraw(treasury), 24_000); // withdrawals go through the no-bool transfer
        assertEq(_withdraw(provider), 2_400_000 - 24_000);
        assertEq(_withdraw(lab), refund);

        assertEq(refund, escrow - 2_400_000);
        assertEq(nb.balanceOf(treasury), 10_000 + 10_000 + 4_000);
        assertEq(nb.balanceOf(provider), providerStart + 2_400_000 - 24_000);
        assertEq(nb.balanceOf(lab), labStart - 2_400_000);
        assertEq(nb.balanceOf(address(market)), staked);
        assertEq(uint8(market.leaseState(id).status), uint8(IMarketTypes.LeaseStatus.Closed));

        // Stake withdrawals go through the no-bool transfer as well (the lease's lock was released
        // by the close after its claim window).
        vm.startPrank(provider);
        market.requestUnstake(minStake);
        vm.warp(block.timestamp + UNBONDING_DELAY);
        market.withdrawStake();
        vm.stopPrank();
        assertEq(nb.balanceOf(provider), providerStart + minStake + 2_400_000 - 24_000);
        assertEq(nb.balanceOf(address(market)), staked - minStake, "provider2's stake is left");
    }

    function test_openLease_revertsWithTokenErrorWhenLabUnderfunded() public {
        Pair memory p = _pair(_offer(provider, 0), _bid(stranger, 0)); // the stranger holds no tokens
        vm.prank(stranger);
        nb.approve(address(market), type(uint256).max);
        vm.expectRevert(
            abi.encodeWithSelector(NoBoolToken.NoBoolTokenInsufficient.selector, 0, price * DURATION)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }
}

/// @notice The full path on an 18-decimals TestUSD: amounts scale, nothing overflows.
contract MarketEighteenDecimalsTest is MarketFixture {
    function setUp() public {
        _deploy(address(new TestUSD(18)), 18, 250, treasury);
    }

    function test_fullPath_worksWithEighteenDecimals() public {
        assertEq(price, 1e15);
        uint256 labStart = token.balanceOf(lab);
        uint256 providerStart = token.balanceOf(provider);

        // The longest lease the offer allows, on every GPU it has.
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.gpuCount = OFFER_GPUS;
        bid.duration = 1 days;
        (IMarketTypes.Lease memory lease,) = _open(_pair(_offer(provider, 0), bid), OFFER_GPUS);
        uint256 escrow = _escrowOf(lease);
        assertEq(escrow, 691.2e18);

        uint256 owed = 123.456789012345678e18;
        market.claim(lease, owed, bytes32(0), _voucher(lease, owed));
        vm.warp(uint256(T0) + 1 days + CLAIM_WINDOW);
        vm.prank(lab);
        uint256 refund = market.closeLease(lease);
        _withdraw(treasury);
        _withdraw(provider);
        _withdraw(lab);

        uint256 fee = owed * 250 / 10_000;
        assertEq(token.balanceOf(treasury), fee);
        assertEq(token.balanceOf(provider), providerStart + owed - fee);
        assertEq(refund, escrow - owed);
        assertEq(token.balanceOf(lab), labStart - owed);
        assertEq(token.balanceOf(address(market)), staked);
    }
}

/// @dev Recovers the signer of a 65-byte signature with the raw precompile (accepts high s).
function _ecrecover(bytes32 digest, bytes memory sig) pure returns (address) {
    bytes32 r;
    bytes32 s;
    uint8 v;
    assembly ("memory-safe") {
        r := mload(add(sig, 0x20))
        s := mload(add(sig, 0x40))
        v := byte(0, mload(add(sig, 0x60)))
    }
    return ecrecover(digest, v, r, s);
}
