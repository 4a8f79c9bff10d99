// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Vm} from "forge-std/Vm.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IMarketTypes} from "../src/interfaces/IMarketTypes.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";

/// @notice Batch builders shared by the batch suites: orders and matches are added to storage
/// lists, then opened in one call and checked against the leases rebuilt here.
abstract contract MarketBatchFixture is MarketFixture {
    IMarketTypes.SignedOffer[] internal _batchOffers;
    IMarketTypes.SignedBid[] internal _batchBids;
    IMarketTypes.Match[] internal _batchMatches;

    function _addOffer(IMarketTypes.Offer memory offer) internal returns (uint32 index) {
        index = uint32(_batchOffers.length);
        _batchOffers.push(_signedOffer(offer));
    }

    function _addBid(IMarketTypes.Bid memory bid) internal returns (uint32 index) {
        index = uint32(_batchBids.length);
        _batchBids.push(_signedBid(bid));
    }

    function _addMatch(uint32 offer, uint32 bid, uint32 gpus) internal {
        _batchMatches.push(IMarketTypes.Match(offer, bid, gpus));
    }

    /// @dev The leases the batch would open now, each at `clearingPrice` or, when it is zero, at
    /// its offer's price: a bid's fill before each match counts the batch's earlier matches of it.
    function _expectedBatch(uint256 clearingPrice) internal view returns (IMarketTypes.Lease[] memory leases) {
        uint256 n = _batchMatches.length;
        leases = new IMarketTypes.Lease[](n);
        for (uint256 k = 0; k < n; ++k) {
            IMarketTypes.Match memory m = _batchMatches[k];
            IMarketTypes.Offer memory offer = _batchOffers[m.offer].offer;
            IMarketTypes.Bid memory bid = _batchBids[m.bid].bid;
            bytes32 bidHash = market.hashBid(bid);
            uint256 filledBefore = market.orderState(bid.lab, bidHash).filled;
            for (uint256 j = 0; j < k; ++j) {
                if (market.hashBid(_batchBids[_batchMatches[j].bid].bid) == bidHash) {
                    filledBefore += _batchMatches[j].gpus;
                }
            }
            uint256 leasePrice = clearingPrice == 0 ? offer.pricePerGpuSecond : clearingPrice;
            leases[k] = _leaseOf(offer, bid, m.gpus, leasePrice, filledBefore);
        }
    }

    /// @dev openLeaseBatch of the lists; checks the ids against the leases rebuilt here.
    function _openBatch() internal returns (IMarketTypes.Lease[] memory leases, bytes32[] memory ids) {
        leases = _expectedBatch(0);
        ids = market.openLeaseBatch(_batchOffers, _batchBids, _batchMatches);
        _assertIds(leases, ids);
    }

    /// @dev openLeaseAuction of the lists at `clearingPrice`; checks the ids likewise.
    function _openAuction(uint256 clearingPrice) internal returns (IMarketTypes.Lease[] memory leases, bytes32[] memory ids) {
        leases = _expectedBatch(clearingPrice);
        ids = market.openLeaseAuction(_batchOffers, _batchBids, _batchMatches, clearingPrice);
        _assertIds(leases, ids);
    }

    function _assertIds(IMarketTypes.Lease[] memory leases, bytes32[] memory ids) internal view {
        assertEq(ids.length, leases.length, "one id per match");
        for (uint256 k = 0; k < ids.length; ++k) {
            assertEq(ids[k], keccak256(abi.encode(leases[k])), "lease id");
            assertEq(uint8(market.leaseState(ids[k]).status), uint8(IMarketTypes.LeaseStatus.Active), "active");
        }
    }

    function _expectBatchRevert(bytes memory err) internal {
        vm.expectRevert(err);
        market.openLeaseBatch(_batchOffers, _batchBids, _batchMatches);
    }

    /// @dev The token transfers in `logs`, as (from, to, value).
    function _transfers(Vm.Log[] memory logs)
        internal
        view
        returns (address[] memory from, address[] memory to, uint256[] memory value)
    {
        uint256 n = 0;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].emitter == address(token) && logs[i].topics[0] == IERC20.Transfer.selector) ++n;
        }
        from = new address[](n);
        to = new address[](n);
        value = new uint256[](n);
        n = 0;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].emitter == address(token) && logs[i].topics[0] == IERC20.Transfer.selector) {
                from[n] = address(uint160(uint256(logs[i].topics[1])));
                to[n] = address(uint160(uint256(logs[i].topics[2])));
                value[n] = abi.decode(logs[i].data, (uint256));
                ++n;
            }
        }
    }
}

/// @notice openLeaseBatch, openLeaseAuction and all-or-none bids. A 6-decimals TestUSD, no fee.
contract MarketBatchOpenTest is MarketBatchFixture {
    TestUSD internal usd;

    function setUp() public {
        usd = new TestUSD(6);
        _deploy(address(usd), 6, 0, address(0));
    }

    function _allOrNoneBid(uint256 nonce, uint32 gpuCount) internal view returns (IMarketTypes.Bid memory bid) {
        bid = _bid(lab, nonce);
        bid.gpuCount = gpuCount;
        bid.allOrNone = true;
    }

    // --- openLeaseBatch -------------------------------------------------------------------------

    function test_openLeaseBatch_opensEveryMatchAtItsOffersPriceAndPullsEscrowOncePerRunOfALab() public {
        IMarketTypes.Offer memory dear = _offer(provider2, 0);
        dear.pricePerGpuSecond = price * 2;
        _addOffer(_offer(provider, 0));
        _addOffer(dear);
        // Bids of lab, lab, lab2, lab: three runs of one lab, so three transfers.
        _addBid(_bid(lab, 0));
        _addBid(_bid(lab, 1));
        _addBid(_bid(lab2, 0));
        _addBid(_bid(lab, 2));
        _addMatch(0, 0, 4);
        _addMatch(1, 1, 2);
        _addMatch(0, 2, 3);
        _addMatch(1, 3, 1);
        uint256[2] memory before = [usd.balanceOf(lab), usd.balanceOf(lab2)];
        // The escrow of each match: price x GPUs x duration.
        uint256[4] memory esc = [price * 4 * DURATION, price * 2 * 2 * DURATION, price * 3 * DURATION, price * 2 * DURATION];

        vm.recordLogs();
        vm.prank(stranger); // anyone may open
        (IMarketTypes.Lease[] memory leases,) = _openBatch();
        (address[] memory from, address[] memory to, uint256[] memory value) = _transfers(vm.getRecordedLogs());

        for (uint256 k = 0; k < 4; ++k) {
            assertEq(leases[k].pricePerGpuSecond, k % 2 == 0 ? price : price * 2, "each lease at its offer's price");
            assertEq(_escrowOf(leases[k]), esc[k]);
        }
        assertEq(from.length, 3, "one pull per run of one lab's bids");
        (address[3] memory payers, uint256[3] memory pulled) = ([lab, lab2, lab], [esc[0] + esc[1], esc[2], esc[3]]);
        for (uint256 i = 0; i < 3; ++i) {
            assertEq(from[i], payers[i]);
            assertEq(to[i], address(market));
            assertEq(value[i], pulled[i]);
        }
        assertEq(usd.balanceOf(lab), before[0] - esc[0] - esc[1] - esc[3]);
        assertEq(usd.balanceOf(lab2), before[1] - esc[2]);
        assertEq(usd.balanceOf(address(market)), staked + esc[0] + esc[1] + esc[2] + esc[3]);
        assertEq(market.orderState(provider, market.hashOffer(_offer(provider, 0))).filled, 7);
        assertEq(market.orderState(provider2, market.hashOffer(dear)).filled, 3);
        // Each match locks its own provider's stake, escrow for escrow.
        assertEq(market.getProvider(provider).locked, esc[0] + esc[2]);
        assertEq(market.getProvider(provider2).locked, esc[1] + esc[3]);
    }

    function test_openLeaseBatch_revertsWhenAMatchsLockIsNotCoveredAndLeavesNoState() public {
        IMarketTypes.Offer memory dear = _offer(provider, 0);
        dear.pricePerGpuSecond = price * 50; // 2 GPUs for an hour: 360 tUSD of escrow, and of lock
        uint32 o = _addOffer(dear);
        for (uint256 j = 0; j < 3; ++j) {
            IMarketTypes.Bid memory bid = _bid(j == 1 ? lab2 : lab, j);
            bid.maxPricePerGpuSecond = price * 50;
            _addMatch(o, _addBid(bid), 2);
        }
        // Two locks (720 tUSD) fit the 1,000 tUSD stake; the third finds 280 tUSD free.
        _expectBatchRevert(
            abi.encodeWithSelector(IMarketTypes.MarketStakeLockUncovered.selector, provider, 280 * unit, 360 * unit)
        );
        assertEq(market.getProvider(provider).locked, 0);
        assertEq(market.orderState(provider, market.hashOffer(dear)).filled, 0);
        assertEq(usd.balanceOf(address(market)), staked);

        // Without the third match the batch opens.
        _batchMatches.pop();
        _openBatch();
        assertEq(market.getProvider(provider).locked, 720 * unit);
        assertEq(market.freeStake(provider), 280 * unit);
    }

    function test_openLeaseBatch_emitsLeaseOpenedForEachMatch() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        _addMatch(_addOffer(offer), _addBid(bid), 1);
        _addMatch(0, 0, 2);
        IMarketTypes.Lease[] memory expected = _expectedBatch(0);
        bytes32 offerHash = market.hashOffer(offer);
        bytes32 bidHash = market.hashBid(bid);
        for (uint256 k = 0; k < 2; ++k) {
            vm.expectEmit(address(market));
            emit IMarketTypes.LeaseOpened(keccak256(abi.encode(expected[k])), offerHash, bidHash, expected[k]);
        }
        market.openLeaseBatch(_batchOffers, _batchBids, _batchMatches);
    }

    function test_openLeaseBatch_sameBidTwiceGetsDistinctSalts() public {
        uint32 o0 = _addOffer(_offer(provider, 0));
        uint32 o1 = _addOffer(_offer(provider2, 0));
        uint32 b = _addBid(_bid(lab, 0));
        _addMatch(o0, b, 3);
        _addMatch(o1, b, 1);
        (IMarketTypes.Lease[] memory leases, bytes32[] memory ids) = _openBatch();
        bytes32 bidHash = market.hashBid(_bid(lab, 0));
        assertEq(leases[0].salt, keccak256(abi.encode(market.hashOffer(_offer(provider, 0)), bidHash, uint256(0))));
        assertEq(leases[1].salt, keccak256(abi.encode(market.hashOffer(_offer(provider2, 0)), bidHash, uint256(3))));
        assertTrue(ids[0] != ids[1]);
        assertEq(market.orderState(lab, bidHash).filled, BID_GPUS);
    }

    function test_openLeaseBatch_revertsOnEmptyBatch() public {
        _addOffer(_offer(provider, 0));
        _addBid(_bid(lab, 0));
        _expectBatchRevert(abi.encodeWithSelector(IMarketTypes.MarketEmptyBatch.selector));
    }

    function test_openLeaseBatch_revertsOnAMatchNamingAMissingOffer() public {
        uint32 o = _addOffer(_offer(provider, 0));
        uint32 b = _addBid(_bid(lab, 0));
        _addMatch(o, b, 1);
        _addMatch(1, b, 1); // one offer only
        _expectBatchRevert(abi.encodeWithSelector(IMarketTypes.MarketMatchOutOfRange.selector, 1));
    }

    function test_openLeaseBatch_revertsOnAMatchNamingAMissingBid() public {
        uint32 o = _addOffer(_offer(provider, 0));
        _addBid(_bid(lab, 0));
        _addMatch(o, type(uint32).max, 1);
        _expectBatchRevert(abi.encodeWithSelector(IMarketTypes.MarketMatchOutOfRange.selector, 0));
    }

    function test_openLeaseBatch_revertsOnAZeroFill() public {
        uint32 o = _addOffer(_offer(provider, 0));
        uint32 b = _addBid(_bid(lab, 0));
        _addMatch(o, b, 1);
        _addMatch(o, b, 0);
        _expectBatchRevert(abi.encodeWithSelector(IMarketTypes.MarketZeroFill.selector));
    }

    function test_openLeaseBatch_oneBadPairRevertsTheWholeBatchWithItsError() public {
        IMarketTypes.Offer memory slow = _offer(provider2, 0);
        slow.bandwidthGbps = 100; // the bids want 200
        uint32 good = _addOffer(_offer(provider, 0));
        uint32 bad = _addOffer(slow);
        uint32 a = _addBid(_bid(lab, 0));
        uint32 b = _addBid(_bid(lab2, 0));
        _addMatch(good, a, 2);
        _addMatch(good, b, 2);
        _addMatch(bad, a, 2);
        uint256 labBefore = usd.balanceOf(lab);
        uint256 lab2Before = usd.balanceOf(lab2);
        IMarketTypes.Lease[] memory expected = _expectedBatch(0);

        _expectBatchRevert(abi.encodeWithSelector(IMarketTypes.MarketBandwidthTooLow.selector, 100, 200));

        assertEq(usd.balanceOf(lab), labBefore);
        assertEq(usd.balanceOf(lab2), lab2Before);
        assertEq(usd.balanceOf(address(market)), staked);
        assertEq(market.orderState(provider, market.hashOffer(_offer(provider, 0))).filled, 0);
        assertEq(market.orderState(lab, market.hashBid(_bid(lab, 0))).filled, 0);
        assertEq(market.orderState(lab2, market.hashBid(_bid(lab2, 0))).filled, 0);
        assertEq(uint8(market.leaseState(keccak256(abi.encode(expected[0]))).status), uint8(IMarketTypes.LeaseStatus.None));
    }

    function test_openLeaseBatch_revertsWhenAnOfferAsksMoreThanABidPays() public {
        IMarketTypes.Offer memory dear = _offer(provider2, 0);
        dear.pricePerGpuSecond = price * 2 + 1;
        uint32 o0 = _addOffer(_offer(provider, 0));
        uint32 o1 = _addOffer(dear);
        uint32 b = _addBid(_bid(lab, 0));
        _addMatch(o0, b, 1);
        _addMatch(o1, b, 1);
        _expectBatchRevert(abi.encodeWithSelector(IMarketTypes.MarketPriceNotCrossed.selector, price * 2 + 1, price * 2));
    }

    function test_openLeaseBatch_revertsWhenMatchesOverfillAnOffer() public {
        IMarketTypes.Offer memory offer = _offer(provider, 0);
        uint32 o = _addOffer(offer);
        IMarketTypes.Bid memory big = _bid(lab, 0);
        big.gpuCount = 16;
        uint32 b = _addBid(big);
        _addMatch(o, b, 5);
        _addMatch(o, b, 4); // 3 GPUs left of 8
        _expectBatchRevert(
            abi.encodeWithSelector(IMarketTypes.MarketFillExceedsOrder.selector, market.hashOffer(offer), 4, 3)
        );
    }

    function test_openLeaseBatch_revertsOnABadSignatureEvenOfAnUnmatchedOrder() public {
        uint32 o = _addOffer(_offer(provider, 0));
        uint32 b = _addBid(_bid(lab, 0));
        IMarketTypes.Offer memory other = _offer(provider2, 5);
        bytes32 digest = market.hashOffer(other);
        _batchOffers.push(IMarketTypes.SignedOffer(other, _sign(PROVIDER_KEY, digest)));
        _addMatch(o, b, 1);
        _expectBatchRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, provider2));
    }

    // --- all-or-none ----------------------------------------------------------------------------

    function test_openLease_revertsWhenAnAllOrNoneBidIsFilledInPart() public {
        IMarketTypes.Bid memory bid = _allOrNoneBid(0, BID_GPUS);
        Pair memory p = _pair(_offer(provider, 0), bid);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketClusterIncomplete.selector, market.hashBid(bid), 3, BID_GPUS)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, BID_GPUS - 1);
        // Filled whole, it opens; nothing can fill it again.
        (IMarketTypes.Lease memory lease,) = _open(p, BID_GPUS);
        assertEq(lease.gpus, BID_GPUS);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketFillExceedsOrder.selector, market.hashBid(bid), 1, 0)
        );
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLeaseBatch_fillsAnAllOrNoneBidAcrossTwoProviders() public {
        IMarketTypes.Bid memory cluster = _allOrNoneBid(0, 12); // more than one offer's 8 GPUs
        uint32 o0 = _addOffer(_offer(provider, 0));
        uint32 o1 = _addOffer(_offer(provider2, 0));
        uint32 b = _addBid(cluster);
        _addMatch(o0, b, 8);
        _addMatch(o1, b, 4);
        uint256 labBefore = usd.balanceOf(lab);
        (IMarketTypes.Lease[] memory leases,) = _openBatch();
        assertEq(leases[0].provider, provider);
        assertEq(leases[1].provider, provider2);
        assertEq(market.orderState(lab, market.hashBid(cluster)).filled, 12);
        assertEq(usd.balanceOf(lab), labBefore - price * 12 * DURATION);
        assertEq(usd.balanceOf(address(market)), staked + price * 12 * DURATION);
    }

    function test_openLeaseBatch_anAllOrNoneBidFilledInPartRevertsAndLeavesNoState() public {
        IMarketTypes.Bid memory cluster = _allOrNoneBid(0, 12);
        IMarketTypes.Offer memory a = _offer(provider, 0);
        IMarketTypes.Offer memory b = _offer(provider2, 0);
        uint32 o0 = _addOffer(a);
        uint32 o1 = _addOffer(b);
        uint32 c = _addBid(cluster);
        uint32 other = _addBid(_bid(lab2, 0)); // a plain bid in the same batch
        _addMatch(o0, c, 8);
        _addMatch(o1, other, 2);
        _addMatch(o1, c, 3); // one short
        uint256 labBefore = usd.balanceOf(lab);
        uint256 lab2Before = usd.balanceOf(lab2);

        _expectBatchRevert(
            abi.encodeWithSelector(IMarketTypes.MarketClusterIncomplete.selector, market.hashBid(cluster), 11, 12)
        );

        assertEq(market.orderState(lab, market.hashBid(cluster)).filled, 0);
        assertEq(market.orderState(lab2, market.hashBid(_bid(lab2, 0))).filled, 0);
        assertEq(market.orderState(provider, market.hashOffer(a)).filled, 0);
        assertEq(market.orderState(provider2, market.hashOffer(b)).filled, 0);
        assertEq(usd.balanceOf(lab), labBefore);
        assertEq(usd.balanceOf(lab2), lab2Before);
        assertEq(usd.balanceOf(address(market)), staked);

        // The whole cluster in a later batch opens.
        _batchMatches[2].gpus = 4;
        _openBatch();
        assertEq(market.orderState(lab, market.hashBid(cluster)).filled, 12);
    }

    // --- openLeaseAuction -----------------------------------------------------------------------

    function test_openLeaseAuction_opensEveryLeaseAtTheClearingPrice() public {
        uint256 clearing = price * 3 / 2;
        IMarketTypes.Offer memory cheap = _offer(provider, 0); // asks price
        IMarketTypes.Offer memory atClearing = _offer(provider2, 0);
        atClearing.pricePerGpuSecond = clearing;
        IMarketTypes.Bid memory generous = _bid(lab, 0); // up to 2 x price
        IMarketTypes.Bid memory exact = _bid(lab2, 0);
        exact.maxPricePerGpuSecond = clearing;
        exact.duration = 2 hours;
        uint32 o0 = _addOffer(cheap);
        uint32 o1 = _addOffer(atClearing);
        uint32 b0 = _addBid(generous);
        uint32 b1 = _addBid(exact);
        _addMatch(o0, b0, 3);
        _addMatch(o1, b0, 1);
        _addMatch(o1, b1, 2);
        uint256 labBefore = usd.balanceOf(lab);
        uint256 lab2Before = usd.balanceOf(lab2);

        vm.expectEmit(address(market));
        emit IMarketTypes.AuctionCleared(clearing, 3, 6);
        (IMarketTypes.Lease[] memory leases,) = _openAuction(clearing);

        for (uint256 k = 0; k < leases.length; ++k) {
            assertEq(leases[k].pricePerGpuSecond, clearing, "every lease at the clearing price");
        }
        assertEq(usd.balanceOf(lab), labBefore - clearing * 4 * DURATION);
        assertEq(usd.balanceOf(lab2), lab2Before - clearing * 2 * 2 hours);
        assertEq(usd.balanceOf(address(market)), staked + clearing * 4 * DURATION + clearing * 2 * 2 hours);
        // Paid at the clearing price: the whole escrow is claimable.
        uint256 escrow0 = clearing * 3 * DURATION;
        assertEq(market.claim(leases[0], escrow0, bytes32(0), _voucher(leases[0], escrow0)), escrow0);
    }

    function test_openLeaseAuction_revertsWhenTheClearingPriceIsBelowAnAsk() public {
        IMarketTypes.Offer memory dear = _offer(provider2, 0);
        dear.pricePerGpuSecond = price + 1;
        uint32 o0 = _addOffer(_offer(provider, 0));
        uint32 o1 = _addOffer(dear);
        uint32 b = _addBid(_bid(lab, 0));
        _addMatch(o0, b, 1);
        _addMatch(o1, b, 1);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketClearingPriceBelowAsk.selector, market.hashOffer(dear), price + 1, price)
        );
        market.openLeaseAuction(_batchOffers, _batchBids, _batchMatches, price);
    }

    function test_openLeaseAuction_revertsWhenTheClearingPriceIsAboveABidsMaximum() public {
        IMarketTypes.Bid memory thrifty = _bid(lab2, 0);
        thrifty.maxPricePerGpuSecond = price + 4;
        uint32 o = _addOffer(_offer(provider, 0));
        uint32 b0 = _addBid(_bid(lab, 0));
        uint32 b1 = _addBid(thrifty);
        _addMatch(o, b0, 1);
        _addMatch(o, b1, 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarketTypes.MarketClearingPriceAboveBid.selector, market.hashBid(thrifty), price + 4, price + 5
            )
        );
        market.openLeaseAuction(_batchOffers, _batchBids, _batchMatches, price + 5);
    }

    function test_openLeaseAuction_acceptsAClearingPriceEqualToTheAskAndTheMaximum() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.maxPricePerGpuSecond = price;
        _addMatch(_addOffer(_offer(provider, 0)), _addBid(bid), 2);
        (IMarketTypes.Lease[] memory leases,) = _openAuction(price);
        assertEq(leases[0].pricePerGpuSecond, price);
        assertEq(usd.balanceOf(address(market)), staked + price * 2 * DURATION);
    }

    function test_openLeaseAuction_fillsAnAllOrNoneClusterAtTheClearingPrice() public {
        IMarketTypes.Bid memory cluster = _allOrNoneBid(0, 10);
        IMarketTypes.Offer memory other = _offer(provider2, 0);
        other.pricePerGpuSecond = price + 10;
        uint32 o0 = _addOffer(_offer(provider, 0));
        uint32 o1 = _addOffer(other);
        uint32 b = _addBid(cluster);
        _addMatch(o0, b, 6);
        _addMatch(o1, b, 3);
        vm.expectRevert(
            abi.encodeWithSelector(IMarketTypes.MarketClusterIncomplete.selector, market.hashBid(cluster), 9, 10)
        );
        market.openLeaseAuction(_batchOffers, _batchBids, _batchMatches, price + 10);
        _batchMatches[1].gpus = 4;
        vm.expectEmit(address(market));
        emit IMarketTypes.AuctionCleared(price + 10, 2, 10);
        _openAuction(price + 10);
        assertEq(usd.balanceOf(address(market)), staked + (price + 10) * 10 * DURATION);
    }

    function test_openLeaseAuction_revertsOnEmptyBatch() public {
        _addOffer(_offer(provider, 0));
        vm.expectRevert(IMarketTypes.MarketEmptyBatch.selector);
        market.openLeaseAuction(_batchOffers, _batchBids, _batchMatches, price);
    }
}

/// @notice closeLeaseBatch and finalizeClaimBatch: good items processed, bad ones skipped with the
/// selector of their error. A 6-decimals TestUSD, no fee unless a test redeploys with one.
contract MarketBatchSettleTest is MarketBatchFixture {
    TestUSD internal usd;

    function setUp() public {
        usd = new TestUSD(6);
        _deploy(address(usd), 6, 0, address(0));
    }

    function _leases2(IMarketTypes.Lease memory a, IMarketTypes.Lease memory b) internal pure returns (IMarketTypes.Lease[] memory l) {
        l = new IMarketTypes.Lease[](2);
        (l[0], l[1]) = (a, b);
    }

    /// @dev The provider posts `usage` GPU-seconds for `lease` as of now, as receipt `seq`.
    function _post(IMarketTypes.Lease memory lease, uint64 seq, uint64 usage, uint256 key) internal {
        IMarketTypes.Receipt memory r = _receipt(lease, seq, lease.start, uint64(block.timestamp), usage);
        bytes memory sig = _signReceipt(key, r);
        vm.prank(lease.provider);
        market.postReceipt(lease, r, sig);
    }

    // --- closeLeaseBatch ------------------------------------------------------------------------

    function test_closeLeaseBatch_closesGoodLeasesAndSkipsUnknownAndClosedOnes() public {
        Pair memory p = _defaultPair();
        (IMarketTypes.Lease memory a, bytes32 idA) = _open(p, 1);
        (IMarketTypes.Lease memory closed, bytes32 idClosed) = _open(p, 1);
        (IMarketTypes.Lease memory b, bytes32 idB) = _open(p, 2);
        market.claim(a, 1_000, bytes32(0), _voucher(a, 1_000));
        vm.prank(provider);
        market.closeLease(closed);
        uint256 labCredit = market.withdrawable(lab);
        IMarketTypes.Lease memory unknown = _copy(a);
        unknown.salt = keccak256("nope");
        IMarketTypes.Lease[] memory leases = new IMarketTypes.Lease[](4);
        (leases[0], leases[1], leases[2], leases[3]) = (a, unknown, closed, b);

        uint256 refundA = _escrowOf(a) - 1_000;
        uint256 refundB = _escrowOf(b);
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseClosed(idA, 1_000, refundA);
        vm.expectEmit(address(market));
        emit IMarketTypes.CloseSkipped(keccak256(abi.encode(unknown)), IMarketTypes.MarketUnknownLease.selector);
        vm.expectEmit(address(market));
        emit IMarketTypes.CloseSkipped(idClosed, IMarketTypes.MarketLeaseNotOpen.selector);
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseClosed(idB, 0, refundB);
        vm.prank(provider);
        assertEq(market.closeLeaseBatch(leases), refundA + refundB);

        assertEq(market.withdrawable(lab), labCredit + refundA + refundB);
        assertEq(uint8(market.leaseState(idA).status), uint8(IMarketTypes.LeaseStatus.Closed));
        assertEq(uint8(market.leaseState(idB).status), uint8(IMarketTypes.LeaseStatus.Closed));
        assertEq(usd.balanceOf(address(market)), staked + _escrowOf(a) + _escrowOf(closed) + _escrowOf(b), "no token moved");
    }

    function test_closeLeaseBatch_byAStrangerSkipsLeasesInTheirClaimWindowOrWithAPendingClaim() public {
        Pair memory p = _defaultPair();
        (IMarketTypes.Lease memory ended, bytes32 idEnded) = _open(p, 1);
        (IMarketTypes.Lease memory pending, bytes32 idPending) = _open(p, 1);
        vm.warp(T0 + DURATION);
        _post(pending, 0, 60, PROVIDER_KEY);
        uint64 readyAt = uint64(block.timestamp) + CHALLENGE_WINDOW;
        (IMarketTypes.Lease memory later, bytes32 idLater) = _open(_pair(_offer(provider, 1), _bid(lab, 1)), 1);
        vm.warp(uint256(T0) + DURATION + CLAIM_WINDOW);
        IMarketTypes.Lease[] memory leases = new IMarketTypes.Lease[](3);
        (leases[0], leases[1], leases[2]) = (pending, ended, later);
        uint256 laterClosesAt = uint256(later.start) + DURATION + CLAIM_WINDOW;

        vm.expectEmit(address(market));
        emit IMarketTypes.CloseSkipped(idPending, IMarketTypes.MarketClaimPending.selector);
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseClosed(idEnded, 0, _escrowOf(ended));
        vm.expectEmit(address(market));
        emit IMarketTypes.CloseSkipped(idLater, IMarketTypes.MarketClaimWindowOpen.selector);
        vm.prank(stranger);
        assertEq(market.closeLeaseBatch(leases), _escrowOf(ended));

        assertEq(market.withdrawable(lab), _escrowOf(ended));
        assertEq(market.withdrawable(stranger), 0);
        // Each skip is the error the single call raises.
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketClaimPending.selector, idPending, readyAt));
        vm.prank(stranger);
        market.closeLease(pending);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketClaimWindowOpen.selector, idLater, laterClosesAt));
        vm.prank(stranger);
        market.closeLease(later);
    }

    function test_closeLeaseBatch_emptyBatchRefundsNothing() public {
        vm.recordLogs();
        assertEq(market.closeLeaseBatch(new IMarketTypes.Lease[](0)), 0);
        assertEq(vm.getRecordedLogs().length, 0);
    }

    function test_closeLeaseBatch_theSameLeaseTwiceClosesOnceAndSkipsTheSecond() public {
        (IMarketTypes.Lease memory a, bytes32 idA) = _open(_defaultPair(), 1);
        vm.expectEmit(address(market));
        emit IMarketTypes.LeaseClosed(idA, 0, _escrowOf(a));
        vm.expectEmit(address(market));
        emit IMarketTypes.CloseSkipped(idA, IMarketTypes.MarketLeaseNotOpen.selector);
        vm.prank(provider);
        assertEq(market.closeLeaseBatch(_leases2(a, a)), _escrowOf(a));
        assertEq(market.withdrawable(lab), _escrowOf(a));
    }

    // --- finalizeClaimBatch ---------------------------------------------------------------------

    /// @dev Six leases for the finalize batch: a (2 GPUs, claim ready, vouchers paid part), none (no
    /// claim), unknown (never opened), b (provider2, claim ready), closed (claim posted, then
    /// closed by the provider), early (claim posted a second too late). Now: a's window has passed.
    function _finalizeScenario() internal returns (IMarketTypes.Lease[] memory leases) {
        Pair memory p = _defaultPair();
        leases = new IMarketTypes.Lease[](6);
        (leases[0],) = _open(p, 2);
        (leases[1],) = _open(p, 1);
        (leases[3],) = _open(_pair(_offer(provider2, 0), _bid(lab2, 0)), 1);
        (leases[4],) = _open(p, 1);
        leases[2] = _copy(leases[0]);
        leases[2].salt = keccak256("nope");
        vm.warp(T0 + 10 minutes);
        _post(leases[0], 0, 1_000, PROVIDER_KEY);
        _post(leases[3], 0, 400, PROVIDER2_KEY);
        _post(leases[4], 0, 100, PROVIDER_KEY);
        vm.prank(provider);
        market.closeLease(leases[4]);
        market.claim(leases[0], price * 300, bytes32(0), _voucher(leases[0], price * 300));
        vm.warp(T0 + 10 minutes + CHALLENGE_WINDOW - 1);
        (leases[5],) = _open(_pair(_offer(provider, 1), _bid(lab, 1)), 1);
        vm.warp(block.timestamp + 1);
        _post(leases[5], 0, 1, PROVIDER_KEY); // its window runs a day from now
    }

    function test_finalizeClaimBatch_finalizesReadyClaimsAndSkipsTheRest() public {
        IMarketTypes.Lease[] memory leases = _finalizeScenario();
        bytes32[6] memory ids;
        for (uint256 i = 0; i < 6; ++i) {
            ids[i] = keccak256(abi.encode(leases[i]));
        }
        bytes32 hashA = market.pendingClaim(ids[0]).receiptHash;
        bytes32 hashB = market.pendingClaim(ids[3]).receiptHash;
        uint256 payA = price * 1_000 - price * 300;
        uint256 payB = price * 400;
        uint256 providerBefore = market.withdrawable(provider);

        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(ids[0], payA, price * 1_000, hashA);
        vm.expectEmit(address(market));
        emit IMarketTypes.ClaimFinalized(ids[0], 0, hashA, payA, 0);
        vm.expectEmit(address(market));
        emit IMarketTypes.FinalizeSkipped(ids[1], IMarketTypes.MarketNoPendingClaim.selector);
        vm.expectEmit(address(market));
        emit IMarketTypes.FinalizeSkipped(ids[2], IMarketTypes.MarketUnknownLease.selector);
        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(ids[3], payB, payB, hashB);
        vm.expectEmit(address(market));
        emit IMarketTypes.ClaimFinalized(ids[3], 0, hashB, payB, 0);
        vm.expectEmit(address(market));
        emit IMarketTypes.FinalizeSkipped(ids[4], IMarketTypes.MarketLeaseNotOpen.selector);
        vm.expectEmit(address(market));
        emit IMarketTypes.FinalizeSkipped(ids[5], IMarketTypes.MarketChallengeWindowOpen.selector);
        vm.prank(stranger);
        assertEq(market.finalizeClaimBatch(leases), payA + payB);

        assertEq(market.withdrawable(provider), providerBefore + payA);
        assertEq(market.withdrawable(provider2), payB);
        assertEq(market.leaseState(ids[0]).paid, price * 1_000);
        assertEq(market.leaseState(ids[3]).paid, payB);
        assertEq(market.pendingClaim(ids[0]).readyAt, 0);
        assertEq(market.pendingClaim(ids[5]).amount, price, "the early claim stays pending");
        assertEq(usd.balanceOf(address(market)), staked + _totalEscrow(leases), "no token moved");
    }

    /// @dev The escrow of every opened lease of the finalize scenario (all but the unknown one).
    function _totalEscrow(IMarketTypes.Lease[] memory leases) internal pure returns (uint256 total) {
        for (uint256 i = 0; i < leases.length; ++i) {
            if (i != 2) total += _escrowOf(leases[i]);
        }
    }

    function test_finalizeClaimBatch_aClaimVouchersPaidFinalizesForNothing() public {
        (IMarketTypes.Lease memory a, bytes32 idA) = _open(_defaultPair(), 1);
        vm.warp(T0 + 10 minutes);
        _post(a, 0, 100, PROVIDER_KEY);
        market.claim(a, price * 200, bytes32(0), _voucher(a, price * 200));
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        bytes32 hashA = market.pendingClaim(idA).receiptHash;
        IMarketTypes.Lease[] memory leases = new IMarketTypes.Lease[](1);
        leases[0] = a;
        vm.expectEmit(address(market));
        emit IMarketTypes.ClaimFinalized(idA, 0, hashA, 0, 0);
        assertEq(market.finalizeClaimBatch(leases), 0);
        assertEq(market.withdrawable(provider), price * 200);
    }

    function test_finalizeClaimBatch_chargesOneFeePerRunOfOneProvider() public {
        _deploy(address(new TestUSD(6)), 6, 3, treasury); // 0.03%
        Pair memory p = _defaultPair();
        (IMarketTypes.Lease memory a,) = _open(p, 1);
        (IMarketTypes.Lease memory b,) = _open(p, 1);
        vm.warp(T0 + 10 minutes);
        // 2 GPU-seconds each, 2,000 units: a fee of 0.6 apiece rounds to nothing, 1.2 on both to 1.
        _post(a, 0, 2, PROVIDER_KEY);
        _post(b, 0, 2, PROVIDER_KEY);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        assertEq(price * 2, 2_000);
        vm.expectEmit(address(market));
        emit IMarketTypes.FeePaid(treasury, 1);
        assertEq(market.finalizeClaimBatch(_leases2(a, b)), 4_000);
        assertEq(market.withdrawable(treasury), 1);
        assertEq(market.withdrawable(provider), 3_999);
    }

    function test_finalizeClaimBatch_emptyBatchPaysNothing() public {
        vm.recordLogs();
        assertEq(market.finalizeClaimBatch(new IMarketTypes.Lease[](0)), 0);
        assertEq(vm.getRecordedLogs().length, 0);
    }
}
