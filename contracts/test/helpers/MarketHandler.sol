// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "forge-std/Test.sol";
import {Market} from "../../src/Market.sol";
import {IMarket} from "../../src/interfaces/IMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {ITestToken} from "./MarketFixture.sol";

/// @notice Drives the market with random but well-formed actions and keeps a model of every lease,
/// of every account's credit in the market, of every provider's stake and of where every token
/// went. Actions include slashing proofs and optimistic claims from posted receipts. Calls that the model says must succeed and revert (or the other
/// way round), or that return other amounts than the model, are counted in `mismatches`: the
/// invariant run ignores reverts (fail_on_revert = false), so the handler never reverts itself.
contract MarketHandler is Test {
    /// @notice What the model expects of one lease.
    struct Model {
        uint256 escrow;
        uint256 paid;
        uint64 end;
        IMarket.LeaseStatus status;
        bool slashed;
        bool posted; // a receipt was posted (lastSeq is meaningful)
        uint64 lastSeq;
        uint256 pendingAmount;
        uint64 readyAt; // zero when no claim is pending
    }

    bytes32 internal constant MODEL = "H100-80GB";
    uint256 internal constant BPS = 10_000;
    /// @dev NVLink (lane 0), InfiniBand (lane 1), eu-west (lane 2), ECC (lane 5).
    uint256 internal constant FEATURES = (1 << 1) | (1 << 17) | (1 << 36) | (1 << 80);

    Market public immutable market;
    ITestToken public immutable token;
    uint256 public immutable feeBps;
    uint64 public immutable claimWindow;
    uint40 public immutable challengeWindow;
    uint256 public immutable slashPenalty;
    IProviderRegistry public immutable registry;
    address public immutable stranger;
    address public immutable treasury;

    uint256[] internal _providerKeys;
    uint256[] internal _labKeys;
    address[] public providers;
    address[] public labs;

    IMarket.Lease[] internal _leases;
    Model[] internal _models;
    uint256 internal _nonce;

    uint256 public ghostTime;
    uint256 public ghostEscrowed; // pulled from labs at opening
    uint256 public ghostRefunded; // credited back to labs at close
    uint256 public ghostFees; // credited to the treasury
    uint256 public ghostProviderIncome; // credited to providers, fees excluded
    uint256 public ghostWithdrawn; // sent out of the market (or the registry) by withdrawals
    uint256 public ghostSlashed; // stake slashed to labs
    mapping(address account => uint256) public expectedCredit; // everything withdraw would pay
    mapping(address account => uint256) public expectedSlashCredit; // the part the registry pays
    mapping(address provider => uint256) public expectedStake;
    uint256 public mismatches;
    mapping(bytes32 action => uint256) public calls;
    mapping(bytes32 action => uint256) public successes;

    constructor(Market market_, uint256[] memory providerKeys, uint256[] memory labKeys, address stranger_) {
        market = market_;
        token = ITestToken(market_.token());
        feeBps = market_.feeBps();
        claimWindow = market_.claimWindow();
        challengeWindow = market_.challengeWindow();
        slashPenalty = market_.slashPenalty();
        registry = market_.registry();
        stranger = stranger_;
        treasury = market_.treasury();
        for (uint256 i = 0; i < providerKeys.length; ++i) {
            _providerKeys.push(providerKeys[i]);
            providers.push(vm.addr(providerKeys[i]));
            expectedStake[providers[i]] = registry.getProvider(providers[i]).stake;
        }
        for (uint256 i = 0; i < labKeys.length; ++i) {
            _labKeys.push(labKeys[i]);
            labs.push(vm.addr(labKeys[i]));
        }
        ghostTime = block.timestamp;
    }

    // --- views for the invariants ---------------------------------------------------------------

    function leaseCount() external view returns (uint256) {
        return _leases.length;
    }

    function leaseAt(uint256 i) external view returns (IMarket.Lease memory, Model memory) {
        return (_leases[i], _models[i]);
    }

    /// @notice Every account the market may credit or be asked to pay: providers, labs, the
    /// treasury and the stranger (who is never credited).
    function accounts() public view returns (address[] memory all) {
        all = new address[](providers.length + labs.length + 2);
        for (uint256 i = 0; i < providers.length; ++i) {
            all[i] = providers[i];
        }
        for (uint256 i = 0; i < labs.length; ++i) {
            all[providers.length + i] = labs[i];
        }
        all[all.length - 2] = treasury;
        all[all.length - 1] = stranger;
    }

    // --- actions --------------------------------------------------------------------------------

    /// @notice Opens 1 to 3 leases from one offer (a partial fill each), for bids of random labs.
    function openLeases(uint256 providerSeed, uint256 labSeed, uint256 gpusSeed, uint256 durationSeed, uint256 priceSeed)
        external
    {
        _sync();
        uint256 fills = _bound(labSeed >> 128, 1, 3);
        uint256 pi = providerSeed % providers.length;
        uint32 gpus = uint32(_bound(gpusSeed, 1, 16));
        (IMarket.Offer memory offer, bytes memory offerSig) = _offer(pi, gpus * fills, _bound(priceSeed, 1, 1_000));
        uint64 duration = uint64(_bound(durationSeed, 1 minutes, 3 days));
        uint256 firstLab = labSeed % labs.length;
        for (uint256 i = 0; i < fills; ++i) {
            _openOne(offer, offerSig, (firstLab + i) % labs.length, gpus, duration);
        }
    }

    function _offer(uint256 pi, uint256 gpuCount, uint256 price)
        internal
        returns (IMarket.Offer memory offer, bytes memory offerSig)
    {
        offer = IMarket.Offer({
            provider: providers[pi],
            gpuModel: MODEL,
            gpuCount: uint32(gpuCount),
            memoryGiB: 80,
            bandwidthGbps: 400,
            features: FEATURES,
            billingModes: 3, // rental and metered
            pricePerGpuSecond: price,
            minDuration: 1,
            maxDuration: 30 days,
            expiry: uint64(block.timestamp), // valid through this very second
            nonce: ++_nonce,
            receiptSigner: address(0)
        });
        offerSig = _sign(_providerKeys[pi], market.hashOffer(offer));
    }

    /// @dev A fresh bid of lab `li` that the handler's offers meet (billing by duration parity).
    function _bidFor(uint256 li, uint32 gpus, uint64 duration, uint256 maxPrice, bool allOrNone)
        internal
        returns (IMarket.Bid memory)
    {
        return IMarket.Bid({
            lab: labs[li],
            gpuModel: MODEL,
            gpuCount: gpus,
            minMemoryGiB: 80,
            minBandwidthGbps: 100,
            requiredFeatures: FEATURES & ~uint256(0xffff),
            acceptedFeatures: 0xffff, // any interconnect
            billing: duration % 2 == 0 ? IMarket.Billing.Rental : IMarket.Billing.Metered,
            allOrNone: allOrNone,
            maxPricePerGpuSecond: maxPrice,
            duration: duration,
            expiry: uint64(block.timestamp),
            nonce: ++_nonce,
            jobSpecHash: keccak256(abi.encode(_nonce)),
            voucherSigner: address(0)
        });
    }

    function _openOne(IMarket.Offer memory offer, bytes memory offerSig, uint256 li, uint32 gpus, uint64 duration)
        internal
    {
        calls["open"]++;
        IMarket.Bid memory bid = _bidFor(li, gpus, duration, offer.pricePerGpuSecond, false);
        bytes32 bidHash = market.hashBid(bid);
        bytes memory bidSig = _sign(_labKeys[li], bidHash);
        IMarket.Lease memory lease = IMarket.Lease({
            provider: offer.provider,
            lab: bid.lab,
            gpus: gpus,
            pricePerGpuSecond: offer.pricePerGpuSecond,
            start: uint64(block.timestamp),
            duration: duration,
            salt: keccak256(abi.encode(market.hashOffer(offer), bidHash, uint256(0))),
            billing: bid.billing,
            receiptSigner: address(0),
            voucherSigner: address(0)
        });
        uint256 escrow = offer.pricePerGpuSecond * gpus * duration;
        bool staked = expectedStake[offer.provider] >= market.registry().minStake();
        try market.openLease(offer, offerSig, bid, bidSig, gpus) returns (bytes32 id) {
            if (!staked || id != keccak256(abi.encode(lease))) mismatches++;
            _leases.push(lease);
            _models.push(
                Model(escrow, 0, lease.start + duration, IMarket.LeaseStatus.Active, false, false, 0, 0, 0)
            );
            ghostEscrowed += escrow;
            successes["open"]++;
        } catch {
            if (staked) mismatches++; // well-formed, funded and staked: opening must succeed
        }
    }

    /// @notice Redeems a random cumulative voucher (up to 125% of the escrow) on a random lease.
    function claim(uint256 leaseSeed, uint256 amountSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["claim"]++;
        uint256 i = leaseSeed % _leases.length;
        IMarket.Lease memory lease = _leases[i];
        Model storage m = _models[i];
        uint256 cumulative = _bound(amountSeed, 0, m.escrow + m.escrow / 4);
        bytes memory sig = _voucher(lease, cumulative);
        uint256 target = cumulative < m.escrow ? cumulative : m.escrow;
        bool expectOk = m.status != IMarket.LeaseStatus.Closed && target > m.paid;
        try market.claim(lease, cumulative, bytes32(0), sig) returns (uint256 amount) {
            if (!expectOk || amount != target - m.paid) {
                mismatches++;
                return;
            }
            m.paid = target;
            _recordPayment(lease.provider, amount);
            successes["claim"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @notice Redeems three random vouchers in one batch (the same lease may appear twice).
    function claimBatch(uint256 seedA, uint256 seedB, uint256 seedC) external {
        if (_leases.length == 0) return;
        _sync();
        calls["batch"]++;
        uint256[3] memory seeds = [seedA, seedB, seedC];
        IMarket.ClaimItem[] memory items = new IMarket.ClaimItem[](3);
        uint256[] memory idx = new uint256[](3);
        for (uint256 k = 0; k < 3; ++k) {
            idx[k] = seeds[k] % _leases.length;
            Model storage m = _models[idx[k]];
            uint256 cumulative = _bound(seeds[k] >> 64, 0, m.escrow + m.escrow / 4);
            items[k] = IMarket.ClaimItem(_leases[idx[k]], cumulative, bytes32(0), _voucher(_leases[idx[k]], cumulative));
        }
        // The model of the batch: items in order, payments to consecutive equal providers summed
        // into one credit (and one fee), skipped items leaving the run open.
        uint256 expectedTotal = 0;
        address payee = address(0);
        uint256 owed = 0;
        for (uint256 k = 0; k < 3; ++k) {
            Model storage m = _models[idx[k]];
            uint256 target = items[k].cumulativeAmount < m.escrow ? items[k].cumulativeAmount : m.escrow;
            if (m.status == IMarket.LeaseStatus.Closed || target <= m.paid) continue;
            if (items[k].lease.provider != payee) {
                if (owed > 0) _recordPayment(payee, owed);
                payee = items[k].lease.provider;
                owed = 0;
            }
            owed += target - m.paid;
            expectedTotal += target - m.paid;
            m.paid = target;
        }
        if (owed > 0) _recordPayment(payee, owed);
        try market.claimBatch(items) returns (uint256 total) {
            if (total != expectedTotal) mismatches++;
            else successes["batch"]++;
        } catch {
            mismatches++; // a batch never reverts on bad items
        }
    }

    /// @notice The lab (or, one time in four, someone else) terminates a random lease.
    function terminate(uint256 leaseSeed, uint256 amountSeed, uint256 callerSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["terminate"]++;
        uint256 i = leaseSeed % _leases.length;
        IMarket.Lease memory lease = _leases[i];
        Model storage m = _models[i];
        uint256 cumulative = _bound(amountSeed, 0, m.escrow + m.escrow / 4);
        bool byLab = callerSeed % 4 != 0;
        bool expectOk = byLab && m.status == IMarket.LeaseStatus.Active && block.timestamp < m.end;
        vm.prank(byLab ? lease.lab : stranger);
        try market.terminate(lease, cumulative) {
            if (!expectOk) {
                mismatches++;
                return;
            }
            uint256 target = cumulative < m.escrow ? cumulative : m.escrow;
            if (target > m.paid) {
                _recordPayment(lease.provider, target - m.paid);
                m.paid = target;
            }
            m.end = uint64(block.timestamp);
            m.status = IMarket.LeaseStatus.Terminated;
            successes["terminate"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @notice The provider, the lab or a stranger closes a random lease.
    function closeLease(uint256 leaseSeed, uint256 callerSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["close"]++;
        uint256 i = leaseSeed % _leases.length;
        IMarket.Lease memory lease = _leases[i];
        Model storage m = _models[i];
        uint256 who = callerSeed % 3;
        address caller = who == 0 ? lease.provider : who == 1 ? lease.lab : stranger;
        bool expectOk = m.status != IMarket.LeaseStatus.Closed
            && (caller == lease.provider || (block.timestamp >= uint256(m.end) + claimWindow && m.readyAt == 0));
        vm.prank(caller);
        try market.closeLease(lease) returns (uint256 refund) {
            if (!expectOk || refund != m.escrow - m.paid) {
                mismatches++;
                return;
            }
            m.status = IMarket.LeaseStatus.Closed;
            ghostRefunded += refund;
            expectedCredit[lease.lab] += refund;
            successes["close"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @notice A random account (credited or not) withdraws: it must get exactly its credit, and an
    /// account without one must be refused with MarketNothingToWithdraw.
    function withdraw(uint256 accountSeed) external {
        _sync();
        calls["withdraw"]++;
        address[] memory all = accounts();
        address account = all[accountSeed % all.length];
        uint256 expected = expectedCredit[account];
        uint256 balanceBefore = token.balanceOf(account);
        vm.prank(account);
        try market.withdraw() returns (uint256 amount) {
            if (expected == 0 || amount != expected || token.balanceOf(account) != balanceBefore + amount) {
                mismatches++;
                return;
            }
            expectedCredit[account] = 0;
            expectedSlashCredit[account] = 0;
            ghostWithdrawn += amount;
            successes["withdraw"]++;
        } catch (bytes memory err) {
            bytes memory nothing = abi.encodeWithSelector(IMarket.MarketNothingToWithdraw.selector, account);
            if (expected > 0 || keccak256(err) != keccak256(nothing)) mismatches++;
        }
    }

    /// @notice Someone proves that a random lease's provider signed two receipts for one seq.
    function slashEquivocation(uint256 leaseSeed, uint64 seq, uint64 usage) external {
        if (_leases.length == 0) return;
        _sync();
        calls["slash"]++;
        uint256 i = leaseSeed % _leases.length;
        IMarket.Lease memory lease = _leases[i];
        Model storage m = _models[i];
        IMarket.Receipt memory a = _receiptFor(lease, seq, lease.start, lease.start + 1, usage);
        IMarket.Receipt memory b = _receiptFor(lease, seq, lease.start, lease.start + 1, usage ^ 1);
        uint256 key = _providerKeyOf(lease.provider);
        bytes memory sigA = _sign(key, market.hashReceipt(a));
        bytes memory sigB = _sign(key, market.hashReceipt(b));
        vm.prank(stranger);
        try market.slashEquivocation(lease, seq, _body(a), sigA, _body(b), sigB) returns (uint256 penalty) {
            uint256 stake = expectedStake[lease.provider];
            uint256 expectedPenalty = stake < slashPenalty ? stake : slashPenalty;
            if (m.slashed || penalty != expectedPenalty) {
                mismatches++;
                return;
            }
            uint256 refund = m.status == IMarket.LeaseStatus.Closed ? 0 : m.escrow - m.paid;
            expectedStake[lease.provider] = stake - penalty;
            m.status = IMarket.LeaseStatus.Closed;
            m.slashed = true;
            ghostRefunded += refund;
            ghostSlashed += penalty;
            expectedCredit[lease.lab] += refund + penalty;
            expectedSlashCredit[lease.lab] += penalty;
            successes["slash"]++;
        } catch {
            if (!m.slashed) mismatches++;
        }
    }

    /// @notice The provider posts a receipt for a random lease: usage up to what its GPUs could
    /// have run by now, the next seq.
    function postReceipt(uint256 leaseSeed, uint256 usageSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["post"]++;
        uint256 i = _preferring(leaseSeed, false);
        IMarket.Lease memory lease = _leases[i];
        Model storage m = _models[i];
        uint64 until = uint64(block.timestamp < m.end ? block.timestamp : m.end);
        uint64 usage = uint64(_bound(usageSeed, 0, lease.gpus * uint256(until - lease.start)));
        uint64 seq = m.posted ? m.lastSeq + 1 : 0;
        IMarket.Receipt memory r = _receiptFor(lease, seq, lease.start, until, usage);
        bytes memory sig = _sign(_providerKeyOf(lease.provider), market.hashReceipt(r));
        uint256 amount = lease.pricePerGpuSecond * usage;
        bool expectOk = m.status != IMarket.LeaseStatus.Closed && amount > m.paid;
        vm.prank(lease.provider);
        try market.postReceipt(lease, r, sig) {
            if (!expectOk) {
                mismatches++;
                return;
            }
            (m.posted, m.lastSeq, m.pendingAmount) = (true, seq, amount);
            m.readyAt = uint64(block.timestamp) + challengeWindow;
            successes["post"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @notice Someone finalizes a random lease's pending claim.
    function finalizeClaim(uint256 leaseSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["finalize"]++;
        uint256 i = _preferring(leaseSeed, true);
        Model storage m = _models[i];
        bool expectOk = m.status != IMarket.LeaseStatus.Closed && m.readyAt != 0 && block.timestamp >= m.readyAt;
        vm.prank(stranger);
        try market.finalizeClaim(_leases[i]) returns (uint256 amount) {
            uint256 expected = m.pendingAmount > m.paid ? m.pendingAmount - m.paid : 0;
            if (!expectOk || amount != expected) {
                mismatches++;
                return;
            }
            if (expected > 0) {
                m.paid = m.pendingAmount;
                _recordPayment(_leases[i].provider, expected);
            }
            (m.pendingAmount, m.readyAt) = (0, 0);
            successes["finalize"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @notice The lab disputes a random lease's pending claim.
    function disputeClaim(uint256 leaseSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["dispute"]++;
        uint256 i = _preferring(leaseSeed, true);
        Model storage m = _models[i];
        bool expectOk = m.status != IMarket.LeaseStatus.Closed && m.readyAt != 0 && block.timestamp < m.readyAt;
        vm.prank(_leases[i].lab);
        try market.disputeClaim(_leases[i]) {
            if (!expectOk) {
                mismatches++;
                return;
            }
            (m.pendingAmount, m.readyAt) = (0, 0);
            successes["dispute"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @notice What one batch open is made of, and what the model expects of it.
    struct Batch {
        IMarket.SignedOffer[] offers;
        IMarket.SignedBid[] bids;
        IMarket.Match[] matches;
        IMarket.Lease[] leases; // one per match, as the market must open it
        bool auction;
        uint256 clearingPrice;
        bool unstaked; // an offer's provider was slashed below the minimum stake
        bool shortCluster; // an all-or-none bid is filled in part
        uint256 escrow; // pulled in all
    }

    /// @notice Opens, in one `openLeaseBatch` (or, when `auction`, one `openLeaseAuction` at a
    /// clearing price between the highest ask and the lowest bid maximum), 1 to 3 bids of random
    /// labs from 1 or 2 offers, each bid split across the offers. Bids are all-or-none at random;
    /// when `short`, the first bid is filled one GPU short, which an all-or-none bid must refuse
    /// with nothing opened at all.
    function openBatch(uint256 offerSeed, uint256 bidSeed, uint256 gpusSeed, uint256 priceSeed, bool auction, bool short)
        external
    {
        _sync();
        bytes32 action = auction ? bytes32("auction") : bytes32("openBatch");
        calls[action]++;
        Batch memory b = _buildBatch(offerSeed, bidSeed, gpusSeed, priceSeed, auction, short);
        if (b.auction) {
            try market.openLeaseAuction(b.offers, b.bids, b.matches, b.clearingPrice) returns (bytes32[] memory ids) {
                _recordBatch(b, ids, action);
            } catch (bytes memory err) {
                _batchRefused(b, err);
            }
        } else {
            try market.openLeaseBatch(b.offers, b.bids, b.matches) returns (bytes32[] memory ids) {
                _recordBatch(b, ids, action);
            } catch (bytes memory err) {
                _batchRefused(b, err);
            }
        }
    }

    function _buildBatch(uint256 offerSeed, uint256 bidSeed, uint256 gpusSeed, uint256 priceSeed, bool auction, bool short)
        internal
        returns (Batch memory b)
    {
        b.auction = auction;
        uint256 nOffers = 1 + offerSeed % 2;
        uint256 nBids = 1 + bidSeed % 3;
        b.offers = new IMarket.SignedOffer[](nOffers);
        b.bids = new IMarket.SignedBid[](nBids);
        b.matches = new IMarket.Match[](nOffers * nBids);
        b.leases = new IMarket.Lease[](nOffers * nBids);
        uint256 maxAsk = 0;
        for (uint256 i = 0; i < nOffers; ++i) {
            uint256 ask = _batchOffer(b, i, offerSeed, priceSeed);
            if (ask > maxAsk) maxAsk = ask;
        }
        // Bid maxima at or above every ask; the clearing price at or below every maximum.
        uint256 minMax = type(uint256).max;
        for (uint256 j = 0; j < nBids; ++j) {
            uint256 maxPrice = maxAsk + _bound(priceSeed >> (64 + 16 * j), 0, 100);
            if (maxPrice < minMax) minMax = maxPrice;
            _batchBid(b, j, bidSeed, gpusSeed, maxPrice);
        }
        b.clearingPrice = auction ? maxAsk + _bound(priceSeed >> 192, 0, minMax - maxAsk) : 0;
        _buildMatches(b, gpusSeed >> 160, short);
    }

    /// @dev Offer `i` of the batch, from one of the providers in turn; returns its ask.
    function _batchOffer(Batch memory b, uint256 i, uint256 offerSeed, uint256 priceSeed) internal returns (uint256) {
        uint256 pi = ((offerSeed >> 8) + i) % providers.length;
        (IMarket.Offer memory offer, bytes memory sig) = _offer(pi, 48, _bound(priceSeed >> (32 * i), 1, 1_000));
        b.offers[i] = IMarket.SignedOffer(offer, sig);
        if (expectedStake[offer.provider] < registry.minStake()) b.unstaked = true;
        return offer.pricePerGpuSecond;
    }

    /// @dev Bid `j` of the batch, from one of the labs in turn, all-or-none at random.
    function _batchBid(Batch memory b, uint256 j, uint256 bidSeed, uint256 gpusSeed, uint256 maxPrice) internal {
        uint32 gpus = uint32(_bound(gpusSeed >> (16 * j), 1, 16));
        uint64 duration = uint64(_bound(gpusSeed >> (64 + 32 * j), 1 minutes, 3 days));
        uint256 li = ((bidSeed >> 8) + j) % labs.length;
        IMarket.Bid memory bid = _bidFor(li, gpus, duration, maxPrice, (bidSeed >> (16 + j)) & 1 == 1);
        b.bids[j] = IMarket.SignedBid(bid, _sign(_labKeys[li], market.hashBid(bid)));
    }

    /// @dev Splits each bid across the offers (the last offer takes the rest), the first bid one
    /// GPU short when `short`; rebuilds the leases the market must open.
    function _buildMatches(Batch memory b, uint256 splitSeed, bool short) internal view {
        uint256 k = 0;
        for (uint256 j = 0; j < b.bids.length; ++j) {
            IMarket.Bid memory bid = b.bids[j].bid;
            uint32 want = bid.gpuCount;
            if (j == 0 && short && want > 1) {
                want -= 1;
                if (bid.allOrNone) b.shortCluster = true;
            }
            uint32 filled = 0;
            for (uint256 i = 0; i < b.offers.length && filled < want; ++i) {
                uint32 gpus = i + 1 == b.offers.length ? want - filled : uint32(_bound(splitSeed >> (8 * k), 1, want - filled));
                b.matches[k] = IMarket.Match(uint32(i), uint32(j), gpus);
                IMarket.Offer memory offer = b.offers[i].offer;
                uint256 leasePrice = b.auction ? b.clearingPrice : offer.pricePerGpuSecond;
                bytes32 salt = keccak256(abi.encode(market.hashOffer(offer), market.hashBid(bid), uint256(filled)));
                b.leases[k] = IMarket.Lease({
                    provider: offer.provider,
                    lab: bid.lab,
                    gpus: gpus,
                    pricePerGpuSecond: leasePrice,
                    start: uint64(block.timestamp),
                    duration: bid.duration,
                    salt: salt,
                    billing: bid.billing,
                    receiptSigner: address(0),
                    voucherSigner: address(0)
                });
                b.escrow += leasePrice * gpus * bid.duration;
                filled += gpus;
                ++k;
            }
        }
        // Drop the unused tail of the match and lease lists.
        IMarket.Match[] memory matches = b.matches;
        IMarket.Lease[] memory leases = b.leases;
        assembly ("memory-safe") {
            mstore(matches, k)
            mstore(leases, k)
        }
    }

    function _recordBatch(Batch memory b, bytes32[] memory ids, bytes32 action) internal {
        if (b.unstaked || b.shortCluster || ids.length != b.leases.length) {
            mismatches++;
            return;
        }
        for (uint256 k = 0; k < ids.length; ++k) {
            IMarket.Lease memory lease = b.leases[k];
            if (ids[k] != keccak256(abi.encode(lease))) mismatches++;
            _leases.push(lease);
            _models.push(
                Model(
                    lease.pricePerGpuSecond * lease.gpus * lease.duration,
                    0,
                    lease.start + lease.duration,
                    IMarket.LeaseStatus.Active,
                    false,
                    false,
                    0,
                    0,
                    0
                )
            );
        }
        ghostEscrowed += b.escrow;
        successes[action]++;
    }

    /// @dev A refused batch must have been expected to fail, with the error of the first check
    /// that fails: an offer's provider below the minimum stake (orders are checked before any
    /// match), else an all-or-none bid filled in part (checked once every match is recorded).
    function _batchRefused(Batch memory b, bytes memory err) internal {
        bytes4 expected = b.unstaked
            ? IMarket.MarketProviderStakeTooLow.selector
            : b.shortCluster ? IMarket.MarketClusterIncomplete.selector : bytes4(0);
        if (expected == bytes4(0) || err.length < 4 || bytes4(err) != expected) mismatches++;
    }

    /// @notice Closes three random leases in one `closeLeaseBatch` (the same lease may appear
    /// twice), as their first lease's provider, its lab or a stranger.
    function closeLeaseBatch(uint256 seedA, uint256 seedB, uint256 seedC, uint256 callerSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["closeBatch"]++;
        uint256[3] memory idx = [seedA % _leases.length, seedB % _leases.length, seedC % _leases.length];
        IMarket.Lease[] memory items = new IMarket.Lease[](3);
        for (uint256 k = 0; k < 3; ++k) {
            items[k] = _leases[idx[k]];
        }
        uint256 who = callerSeed % 3;
        address caller = who == 0 ? items[0].provider : who == 1 ? items[0].lab : stranger;
        uint256 expectedTotal = 0;
        for (uint256 k = 0; k < 3; ++k) {
            Model storage m = _models[idx[k]];
            bool ok = m.status != IMarket.LeaseStatus.Closed
                && (caller == items[k].provider || (block.timestamp >= uint256(m.end) + claimWindow && m.readyAt == 0));
            if (!ok) continue;
            uint256 refund = m.escrow - m.paid;
            m.status = IMarket.LeaseStatus.Closed;
            ghostRefunded += refund;
            expectedCredit[items[k].lab] += refund;
            expectedTotal += refund;
        }
        vm.prank(caller);
        try market.closeLeaseBatch(items) returns (uint256 refunded) {
            if (refunded != expectedTotal) mismatches++;
            else successes["closeBatch"]++;
        } catch {
            mismatches++; // a batch never reverts on bad items
        }
    }

    /// @notice Finalizes three leases' pending claims in one `finalizeClaimBatch` (mostly leases
    /// with a claim pending, ready or not).
    function finalizeClaimBatch(uint256 seedA, uint256 seedB, uint256 seedC) external {
        if (_leases.length == 0) return;
        _sync();
        calls["finalizeBatch"]++;
        uint256[3] memory idx = [_preferring(seedA, true), _preferring(seedB, true), seedC % _leases.length];
        IMarket.Lease[] memory items = new IMarket.Lease[](3);
        // The model of the batch: items in order, payments to consecutive equal providers summed
        // into one credit (and one fee), skipped items leaving the run open.
        uint256 expectedTotal = 0;
        address payee = address(0);
        uint256 owed = 0;
        for (uint256 k = 0; k < 3; ++k) {
            items[k] = _leases[idx[k]];
            Model storage m = _models[idx[k]];
            if (m.status == IMarket.LeaseStatus.Closed || m.readyAt == 0 || block.timestamp < m.readyAt) continue;
            uint256 amount = m.pendingAmount > m.paid ? m.pendingAmount - m.paid : 0;
            if (amount > 0) m.paid = m.pendingAmount;
            (m.pendingAmount, m.readyAt) = (0, 0);
            if (items[k].provider != payee) {
                if (owed > 0) _recordPayment(payee, owed);
                payee = items[k].provider;
                owed = 0;
            }
            owed += amount;
            expectedTotal += amount;
        }
        if (owed > 0) _recordPayment(payee, owed);
        vm.prank(stranger);
        try market.finalizeClaimBatch(items) returns (uint256 total) {
            if (total != expectedTotal) mismatches++;
            else successes["finalizeBatch"]++;
        } catch {
            mismatches++;
        }
    }

    /// @notice Moves time forward by up to two days.
    function warp(uint256 secondsSeed) external {
        calls["warp"]++;
        successes["warp"]++;
        ghostTime += _bound(secondsSeed, 1, 2 days);
        vm.warp(ghostTime);
    }

    // --- internals ------------------------------------------------------------------------------

    /// @dev Re-applies the handler's clock, whatever the runner did with block.timestamp between calls.
    function _sync() internal {
        vm.warp(ghostTime);
    }

    function _recordPayment(address provider, uint256 amount) internal {
        uint256 fee = amount * feeBps / BPS;
        ghostFees += fee;
        ghostProviderIncome += amount - fee;
        expectedCredit[treasury] += fee;
        expectedCredit[provider] += amount - fee;
    }

    /// @dev From a random lease on, the first one not closed (with a pending claim if `pending`),
    /// so that claim actions mostly meet leases they can act on; the random one if none.
    function _preferring(uint256 seed, bool pending) internal view returns (uint256) {
        uint256 n = _leases.length;
        for (uint256 k = 0; k < n; ++k) {
            uint256 i = (seed % n + k) % n; // seed % n first: seed + k could overflow
            Model storage m = _models[i];
            if (m.status != IMarket.LeaseStatus.Closed && (!pending || m.readyAt != 0)) return i;
        }
        return seed % n;
    }

    function _receiptFor(IMarket.Lease memory lease, uint64 seq, uint64 start, uint64 end, uint64 usage)
        internal
        pure
        returns (IMarket.Receipt memory)
    {
        return IMarket.Receipt(
            keccak256(abi.encode(lease)), seq, bytes32(0), start, end, usage, keccak256(abi.encode(seq)), 0, 0
        );
    }

    function _providerKeyOf(address provider) internal view returns (uint256) {
        for (uint256 i = 0; i < providers.length; ++i) {
            if (providers[i] == provider) return _providerKeys[i];
        }
        return 0;
    }

    function _labKeyOf(address lab) internal view returns (uint256) {
        for (uint256 i = 0; i < labs.length; ++i) {
            if (labs[i] == lab) return _labKeys[i];
        }
        return 0;
    }

    function _voucher(IMarket.Lease memory lease, uint256 cumulative) internal view returns (bytes memory) {
        bytes32 digest = market.hashVoucher(IMarket.Voucher(keccak256(abi.encode(lease)), cumulative, bytes32(0)));
        return _sign(_labKeyOf(lease.lab), digest);
    }

    function _body(IMarket.Receipt memory r) internal pure returns (IMarket.ReceiptBody memory) {
        return IMarket.ReceiptBody({
            prevHash: r.prevHash,
            periodStart: r.periodStart,
            periodEnd: r.periodEnd,
            gpuSecondsCumulative: r.gpuSecondsCumulative,
            outputRoot: r.outputRoot,
            metricsHash: r.metricsHash,
            attestationHash: r.attestationHash
        });
    }

    function _sign(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }
}
