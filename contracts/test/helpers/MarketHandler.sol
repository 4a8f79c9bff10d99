// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "forge-std/Test.sol";
import {IMarket} from "../../src/interfaces/IMarket.sol";
import {IMarketTypes} from "../../src/interfaces/IMarketTypes.sol";
import {ITestToken} from "./MarketFixture.sol";

/// @notice Drives the market with random but well-formed actions and keeps a model of every lease
/// (its stake lock, minimum charge and dispute included), of every account's credit in the market
/// (slashed stake and its vesting apart), of every provider's stake (bonded, locked, unbonding)
/// and of where every token went. Actions include slashing proofs, optimistic claims from posted
/// receipts, disputes with bonds and their rulings, stake releases, unstaking and adding stake.
/// Calls that the model says must succeed and revert (or the other way round), or that return
/// other amounts than the model, are counted in `mismatches`: the invariant run ignores reverts
/// (fail_on_revert = false), so the handler never reverts itself.
contract MarketHandler is Test {
    /// @notice What the model expects of one lease.
    struct Model {
        uint256 escrow;
        uint256 paid;
        uint256 lock; // the provider's stake it locks: escrow * stakeRatioBps / 10_000
        uint256 minCharge;
        uint64 end;
        IMarketTypes.LeaseStatus status;
        bool slashed;
        bool released; // its stake lock went back (released, or spent by a slash)
        bool posted; // a receipt was posted (lastSeq is meaningful)
        uint64 lastSeq;
        uint256 pendingAmount; // the highest amount posted: the contract keeps it once settled
        uint64 readyAt; // zero when no claim is pending
        bool disputed;
        uint256 bond;
        uint64 rulingDeadline;
    }

    /// @notice What the model expects of one provider's stake.
    struct Stake {
        uint256 stake; // bonded, the locked part included
        uint256 locked;
        uint256 unbonding;
        uint256 unbondReadyAt;
    }

    bytes32 internal constant MODEL = "H100-80GB";
    uint256 internal constant BPS = 10_000;
    /// @dev NVLink (lane 0), InfiniBand (lane 1), eu-west (lane 2), ECC (lane 5).
    uint256 internal constant FEATURES = (1 << 1) | (1 << 17) | (1 << 36) | (1 << 80);
    /// @dev `_preferring` modes.
    uint256 internal constant OPEN = 0; // not closed
    uint256 internal constant PENDING = 1; // a claim pending that finalize may settle
    uint256 internal constant DISPUTED = 2; // a dispute open
    uint256 internal constant RELEASABLE = 3; // closed with its stake still locked
    uint256 internal constant DISPUTABLE = 4; // a claim pending in its challenge window, undisputed
    uint256 internal constant RULABLE = 5; // a dispute open before its deadline, with an arbiter

    IMarket public immutable market;
    ITestToken public immutable token;
    uint256 public immutable feeBps;
    uint64 public immutable claimWindow;
    uint40 public immutable challengeWindow;
    uint40 public immutable rulingWindow;
    uint40 public immutable unbondingDelay;
    uint256 public immutable minStake;
    uint256 public immutable stakeRatioBps;
    uint256 public immutable disputeBondBps;
    address public immutable stranger;
    address public immutable arbiter;
    address public immutable treasury;

    uint256[] internal _providerKeys;
    uint256[] internal _labKeys;
    address[] public providers;
    address[] public labs;

    IMarketTypes.Lease[] internal _leases;
    Model[] internal _models;
    uint256 internal _nonce;

    uint256 public ghostTime;
    uint256 public ghostEscrowed; // pulled from labs at opening
    uint256 public ghostBonds; // pulled from labs by disputes
    uint256 public ghostRefunded; // credited back to labs: refunds, returned bonds, held escrow
    uint256 public ghostFees; // credited to the treasury
    uint256 public ghostProviderIncome; // credited to providers, fees excluded, bonds won included
    uint256 public ghostWithdrawn; // sent out of the market by `withdraw`
    uint256 public ghostSlashed; // stake slashed to labs
    uint256 public ghostStakeAdded; // pulled from providers by `addStake`
    uint256 public ghostStakeWithdrawn; // sent out by `withdrawStake`
    uint256 public immutable initialStakes;
    mapping(address account => uint256) public expectedCredit; // plain credit, withdrawable at once
    mapping(address account => uint256) public expectedSlashed; // slashed stake credited, vesting
    mapping(address account => uint256) public expectedVestsAt;
    mapping(address provider => Stake) internal _stakes;
    uint256 public mismatches;
    mapping(bytes32 action => uint256) public calls;
    mapping(bytes32 action => uint256) public successes;

    constructor(
        IMarket market_,
        uint256[] memory providerKeys,
        uint256[] memory labKeys,
        address stranger_,
        address arbiter_
    ) {
        market = market_;
        token = ITestToken(market_.token());
        feeBps = market_.feeBps();
        claimWindow = market_.claimWindow();
        challengeWindow = market_.challengeWindow();
        rulingWindow = market_.rulingWindow();
        unbondingDelay = market_.unbondingDelay();
        minStake = market_.minStake();
        stakeRatioBps = market_.stakeRatioBps();
        disputeBondBps = market_.disputeBondBps();
        stranger = stranger_;
        arbiter = arbiter_;
        treasury = market_.treasury();
        uint256 stakes = 0;
        for (uint256 i = 0; i < providerKeys.length; ++i) {
            _providerKeys.push(providerKeys[i]);
            address p = vm.addr(providerKeys[i]);
            providers.push(p);
            _stakes[p].stake = market_.getProvider(p).stake;
            stakes += _stakes[p].stake;
        }
        initialStakes = stakes;
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

    function leaseAt(uint256 i) external view returns (IMarketTypes.Lease memory, Model memory) {
        return (_leases[i], _models[i]);
    }

    function expectedStake(address provider) external view returns (Stake memory) {
        return _stakes[provider];
    }

    /// @notice What `withdraw` would pay `account` now, by the model.
    function expectedWithdrawable(address account) external view returns (uint256) {
        return expectedCredit[account] + (block.timestamp >= expectedVestsAt[account] ? expectedSlashed[account] : 0);
    }

    /// @notice Every account the market may credit or be asked to pay: providers, labs, the
    /// treasury, the arbiter and the stranger (neither of whom is ever credited).
    function accounts() public view returns (address[] memory all) {
        all = new address[](providers.length + labs.length + 3);
        for (uint256 i = 0; i < providers.length; ++i) {
            all[i] = providers[i];
        }
        for (uint256 i = 0; i < labs.length; ++i) {
            all[providers.length + i] = labs[i];
        }
        all[all.length - 3] = treasury;
        all[all.length - 2] = arbiter;
        all[all.length - 1] = stranger;
    }

    // --- opening ----------------------------------------------------------------------------------

    /// @notice Opens 1 to 3 leases from one offer (a partial fill each), for bids of random labs.
    /// The offer asks a minimum charge half the time and names the arbiter half the time; one
    /// time in four its price makes each lease lock about all of the provider's free stake.
    function openLeases(uint256 providerSeed, uint256 labSeed, uint256 gpusSeed, uint256 durationSeed, uint256 priceSeed)
        external
    {
        _sync();
        uint256 fills = _bound(labSeed >> 128, 1, 3);
        uint256 pi = providerSeed % providers.length;
        uint32 gpus = uint32(_bound(gpusSeed, 1, 16));
        uint64 duration = uint64(_bound(durationSeed, 1 minutes, 3 days));
        uint256 price = _bound(priceSeed, 1, 1_000);
        if (priceSeed % 4 == 0) {
            Stake storage s = _stakes[providers[pi]];
            uint256 free = s.stake > s.locked ? s.stake - s.locked : 0;
            price = (free * BPS / stakeRatioBps) / (uint256(gpus) * duration) + (priceSeed >> 2) % 2;
            if (price == 0) price = 1;
        }
        (IMarketTypes.Offer memory offer, bytes memory offerSig) =
            _offer(pi, gpus * fills, price, uint256(keccak256(abi.encode(priceSeed))));
        uint256 firstLab = labSeed % labs.length;
        for (uint256 i = 0; i < fills; ++i) {
            _openOne(offer, offerSig, (firstLab + i) % labs.length, gpus, duration);
        }
    }

    function _offer(uint256 pi, uint256 gpuCount, uint256 price, uint256 termsSeed)
        internal
        returns (IMarketTypes.Offer memory offer, bytes memory offerSig)
    {
        offer = IMarketTypes.Offer({
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
            receiptSigner: address(0),
            arbiter: (termsSeed >> 32) & 1 == 1 ? arbiter : address(0),
            minChargeBps: termsSeed & 1 == 1 ? uint16(_bound(termsSeed >> 8, 1, BPS)) : 0
        });
        offerSig = _sign(_providerKeys[pi], market.hashOffer(offer));
    }

    /// @dev A fresh bid of lab `li` that the handler's offers meet (billing by duration parity),
    /// accepting any minimum charge and naming `arbiter_`.
    function _bidFor(uint256 li, uint32 gpus, uint64 duration, uint256 maxPrice, bool allOrNone, address arbiter_)
        internal
        returns (IMarketTypes.Bid memory)
    {
        return IMarketTypes.Bid({
            lab: labs[li],
            gpuModel: MODEL,
            gpuCount: gpus,
            minMemoryGiB: 80,
            minBandwidthGbps: 100,
            requiredFeatures: FEATURES & ~uint256(0xffff),
            acceptedFeatures: 0xffff, // any interconnect
            billing: duration % 2 == 0 ? IMarketTypes.Billing.Rental : IMarketTypes.Billing.Metered,
            allOrNone: allOrNone,
            maxPricePerGpuSecond: maxPrice,
            duration: duration,
            expiry: uint64(block.timestamp),
            nonce: ++_nonce,
            jobSpecHash: keccak256(abi.encode(_nonce)),
            voucherSigner: address(0),
            arbiter: arbiter_,
            maxMinChargeBps: uint16(BPS)
        });
    }

    /// @dev The lease a fill opens now, at `price`, the bid having `filledBefore` GPUs filled.
    function _leaseFor(
        IMarketTypes.Offer memory offer,
        IMarketTypes.Bid memory bid,
        uint32 gpus,
        uint256 price,
        uint256 filledBefore
    ) internal view returns (IMarketTypes.Lease memory) {
        return IMarketTypes.Lease({
            provider: offer.provider,
            lab: bid.lab,
            gpus: gpus,
            pricePerGpuSecond: price,
            start: uint64(block.timestamp),
            duration: bid.duration,
            salt: keccak256(abi.encode(market.hashOffer(offer), market.hashBid(bid), filledBefore)),
            billing: bid.billing,
            receiptSigner: address(0),
            voucherSigner: address(0),
            arbiter: offer.arbiter,
            minCharge: price * gpus * bid.duration * offer.minChargeBps / BPS
        });
    }

    /// @dev A new lease's model.
    function _modelOf(IMarketTypes.Lease memory lease) internal view returns (Model memory m) {
        m.escrow = lease.pricePerGpuSecond * lease.gpus * lease.duration;
        m.lock = m.escrow * stakeRatioBps / BPS;
        m.minCharge = lease.minCharge;
        m.end = lease.start + lease.duration;
        m.status = IMarketTypes.LeaseStatus.Active;
    }

    /// @dev Whether `provider` may lock `lock` more: stake at the minimum, free stake covering it.
    function _lockable(address provider, uint256 locked, uint256 lock) internal view returns (bool) {
        uint256 stake = _stakes[provider].stake;
        return stake >= minStake && lock <= stake - locked;
    }

    function _openOne(IMarketTypes.Offer memory offer, bytes memory offerSig, uint256 li, uint32 gpus, uint64 duration)
        internal
    {
        calls["open"]++;
        IMarketTypes.Bid memory bid = _bidFor(li, gpus, duration, offer.pricePerGpuSecond, false, offer.arbiter);
        bytes memory bidSig = _sign(_labKeys[li], market.hashBid(bid));
        IMarketTypes.Lease memory lease = _leaseFor(offer, bid, gpus, offer.pricePerGpuSecond, 0);
        Model memory m = _modelOf(lease);
        bool expectOk = _lockable(offer.provider, _stakes[offer.provider].locked, m.lock);
        try market.openLease(offer, offerSig, bid, bidSig, gpus) returns (bytes32 id) {
            if (!expectOk || id != keccak256(abi.encode(lease))) mismatches++;
            _pushLease(lease, m);
            ghostEscrowed += m.escrow;
            successes["open"]++;
        } catch (bytes memory err) {
            // Well-formed and funded: opening fails only for the stake, with the error that says why.
            if (expectOk || bytes4(err) != _lockError(offer.provider)) mismatches++;
        }
    }

    function _pushLease(IMarketTypes.Lease memory lease, Model memory m) internal {
        _leases.push(lease);
        _models.push(m);
        _stakes[lease.provider].locked += m.lock;
    }

    /// @dev The error a lease the provider's stake cannot back fails with.
    function _lockError(address provider) internal view returns (bytes4) {
        return _stakes[provider].stake < minStake
            ? IMarketTypes.MarketProviderStakeTooLow.selector
            : IMarketTypes.MarketStakeLockUncovered.selector;
    }

    /// @notice What one batch open is made of, and what the model expects of it.
    struct Batch {
        IMarketTypes.SignedOffer[] offers;
        IMarketTypes.SignedBid[] bids;
        IMarketTypes.Match[] matches;
        IMarketTypes.Lease[] leases; // one per match, as the market must open it
        bool auction;
        uint256 clearingPrice;
        address arbiter; // every order of the batch names it
        bytes4 lockError; // the stake error of the first match its provider's stake cannot back
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
        b.arbiter = uint256(keccak256(abi.encode(offerSeed, bidSeed))) & 1 == 1 ? arbiter : address(0);
        uint256 nOffers = 1 + offerSeed % 2;
        uint256 nBids = 1 + bidSeed % 3;
        b.offers = new IMarketTypes.SignedOffer[](nOffers);
        b.bids = new IMarketTypes.SignedBid[](nBids);
        b.matches = new IMarketTypes.Match[](nOffers * nBids);
        b.leases = new IMarketTypes.Lease[](nOffers * nBids);
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
        _checkBatchLocks(b);
    }

    /// @dev Offer `i` of the batch, from one of the providers in turn; returns its ask.
    function _batchOffer(Batch memory b, uint256 i, uint256 offerSeed, uint256 priceSeed) internal returns (uint256) {
        uint256 pi = ((offerSeed >> 8) + i) % providers.length;
        uint256 termsSeed = uint256(keccak256(abi.encode(offerSeed, i))) & 0xffffff;
        if (b.arbiter != address(0)) termsSeed |= 1 << 32;
        (IMarketTypes.Offer memory offer, bytes memory sig) =
            _offer(pi, 48, _bound(priceSeed >> (32 * i), 1, 1_000), termsSeed);
        b.offers[i] = IMarketTypes.SignedOffer(offer, sig);
        return offer.pricePerGpuSecond;
    }

    /// @dev Bid `j` of the batch, from one of the labs in turn, all-or-none at random.
    function _batchBid(Batch memory b, uint256 j, uint256 bidSeed, uint256 gpusSeed, uint256 maxPrice) internal {
        uint32 gpus = uint32(_bound(gpusSeed >> (16 * j), 1, 16));
        uint64 duration = uint64(_bound(gpusSeed >> (64 + 32 * j), 1 minutes, 3 days));
        uint256 li = ((bidSeed >> 8) + j) % labs.length;
        IMarketTypes.Bid memory bid = _bidFor(li, gpus, duration, maxPrice, (bidSeed >> (16 + j)) & 1 == 1, b.arbiter);
        b.bids[j] = IMarketTypes.SignedBid(bid, _sign(_labKeys[li], market.hashBid(bid)));
    }

    /// @dev Splits each bid across the offers (the last offer takes the rest), the first bid one
    /// GPU short when `short`; rebuilds the leases the market must open.
    function _buildMatches(Batch memory b, uint256 splitSeed, bool short) internal view {
        uint256 k = 0;
        for (uint256 j = 0; j < b.bids.length; ++j) {
            IMarketTypes.Bid memory bid = b.bids[j].bid;
            uint32 want = bid.gpuCount;
            if (j == 0 && short && want > 1) {
                want -= 1;
                if (bid.allOrNone) b.shortCluster = true;
            }
            uint32 filled = 0;
            for (uint256 i = 0; i < b.offers.length && filled < want; ++i) {
                uint32 gpus =
                    i + 1 == b.offers.length ? want - filled : uint32(_bound(splitSeed >> (8 * k), 1, want - filled));
                b.matches[k] = IMarketTypes.Match(uint32(i), uint32(j), gpus);
                IMarketTypes.Offer memory offer = b.offers[i].offer;
                uint256 leasePrice = b.auction ? b.clearingPrice : offer.pricePerGpuSecond;
                b.leases[k] = _leaseFor(offer, bid, gpus, leasePrice, filled);
                b.escrow += leasePrice * gpus * bid.duration;
                filled += gpus;
                ++k;
            }
        }
        // Drop the unused tail of the match and lease lists.
        IMarketTypes.Match[] memory matches = b.matches;
        IMarketTypes.Lease[] memory leases = b.leases;
        assembly ("memory-safe") {
            mstore(matches, k)
            mstore(leases, k)
        }
    }

    /// @dev Locks the batch's leases in order on a copy of the providers' locked stake: the first
    /// its provider cannot back is the error the batch must fail with (matches are recorded, each
    /// locking its stake, before any all-or-none bid is checked).
    function _checkBatchLocks(Batch memory b) internal view {
        uint256[] memory locked = new uint256[](providers.length);
        for (uint256 p = 0; p < providers.length; ++p) {
            locked[p] = _stakes[providers[p]].locked;
        }
        for (uint256 k = 0; k < b.leases.length; ++k) {
            address provider = b.leases[k].provider;
            uint256 p = _providerIndex(provider);
            uint256 lock = _modelOf(b.leases[k]).lock;
            if (!_lockable(provider, locked[p], lock)) {
                b.lockError = _lockError(provider);
                return;
            }
            locked[p] += lock;
        }
    }

    function _recordBatch(Batch memory b, bytes32[] memory ids, bytes32 action) internal {
        if (b.lockError != bytes4(0) || b.shortCluster || ids.length != b.leases.length) {
            mismatches++;
            return;
        }
        for (uint256 k = 0; k < ids.length; ++k) {
            IMarketTypes.Lease memory lease = b.leases[k];
            if (ids[k] != keccak256(abi.encode(lease))) mismatches++;
            _pushLease(lease, _modelOf(lease));
        }
        ghostEscrowed += b.escrow;
        successes[action]++;
    }

    /// @dev A refused batch must have been expected to fail, with the error of the first check
    /// that fails: a match whose provider's stake cannot back it, else an all-or-none bid filled
    /// in part (checked once every match is recorded).
    function _batchRefused(Batch memory b, bytes memory err) internal {
        bytes4 expected =
            b.lockError != bytes4(0) ? b.lockError : b.shortCluster ? IMarketTypes.MarketClusterIncomplete.selector : bytes4(0);
        if (expected == bytes4(0) || err.length < 4 || bytes4(err) != expected) mismatches++;
    }

    // --- vouchers and termination ---------------------------------------------------------------

    /// @notice Redeems a random cumulative voucher (up to 125% of the escrow) on a random lease.
    function claim(uint256 leaseSeed, uint256 amountSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["claim"]++;
        uint256 i = leaseSeed % _leases.length;
        IMarketTypes.Lease memory lease = _leases[i];
        Model storage m = _models[i];
        uint256 cumulative = _bound(amountSeed, 0, m.escrow + m.escrow / 4);
        bytes memory sig = _voucher(lease, cumulative);
        uint256 target = cumulative < m.escrow ? cumulative : m.escrow;
        bool expectOk = m.status != IMarketTypes.LeaseStatus.Closed && target > m.paid;
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
        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](3);
        uint256[] memory idx = new uint256[](3);
        for (uint256 k = 0; k < 3; ++k) {
            idx[k] = seeds[k] % _leases.length;
            Model storage m = _models[idx[k]];
            uint256 cumulative = _bound(seeds[k] >> 64, 0, m.escrow + m.escrow / 4);
            items[k] =
                IMarketTypes.ClaimItem(_leases[idx[k]], cumulative, bytes32(0), _voucher(_leases[idx[k]], cumulative));
        }
        // The model of the batch: items in order, payments to consecutive equal providers summed
        // into one credit (and one fee), skipped items leaving the run open.
        uint256 expectedTotal = 0;
        address payee = address(0);
        uint256 owed = 0;
        for (uint256 k = 0; k < 3; ++k) {
            Model storage m = _models[idx[k]];
            uint256 target = items[k].cumulativeAmount < m.escrow ? items[k].cumulativeAmount : m.escrow;
            if (m.status == IMarketTypes.LeaseStatus.Closed || target <= m.paid) continue;
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
        IMarketTypes.Lease memory lease = _leases[i];
        Model storage m = _models[i];
        uint256 cumulative = _bound(amountSeed, 0, m.escrow + m.escrow / 4);
        bool byLab = callerSeed % 4 != 0;
        bool expectOk = byLab && m.status == IMarketTypes.LeaseStatus.Active && block.timestamp < m.end;
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
            m.status = IMarketTypes.LeaseStatus.Terminated;
            successes["terminate"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    // --- closing and releasing --------------------------------------------------------------------

    /// @notice The provider, the lab or a stranger closes a random lease.
    function closeLease(uint256 leaseSeed, uint256 callerSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["close"]++;
        uint256 i = leaseSeed % _leases.length;
        IMarketTypes.Lease memory lease = _leases[i];
        uint256 who = callerSeed % 3;
        address caller = who == 0 ? lease.provider : who == 1 ? lease.lab : stranger;
        bool expectOk = _closable(_models[i], caller == lease.provider);
        vm.prank(caller);
        try market.closeLease(lease) returns (uint256 refund) {
            if (!expectOk || refund != _applyClose(lease, _models[i])) {
                mismatches++;
                return;
            }
            successes["close"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @dev Whether a close by the provider (or by anyone else) must succeed: open, and past the
    /// claim window after the end without a claim pending undisputed, unless by the provider.
    function _closable(Model storage m, bool byProvider) internal view returns (bool) {
        if (m.status == IMarketTypes.LeaseStatus.Closed) return false;
        if (byProvider) return true;
        return block.timestamp >= uint256(m.end) + claimWindow && (m.readyAt == 0 || m.disputed);
    }

    /// @dev A close in the model: the minimum charge to the provider (once the lease is over),
    /// the unpaid escrow but an
    /// open dispute's amount back to the lab, and the lock released past the proof window.
    function _applyClose(IMarketTypes.Lease memory lease, Model storage m) internal returns (uint256 refund) {
        // Owed once the lease is over (its end, or the lab's termination): a provider giving it up
        // earlier forgoes it.
        uint256 charge = block.timestamp >= m.end && m.minCharge > m.paid ? m.minCharge - m.paid : 0;
        if (charge > 0) {
            m.paid += charge;
            _recordPayment(lease.provider, charge);
        }
        refund = m.escrow - m.paid;
        if (m.disputed) refund -= _held(m.pendingAmount, m.paid);
        m.status = IMarketTypes.LeaseStatus.Closed;
        ghostRefunded += refund;
        expectedCredit[lease.lab] += refund;
        if (block.timestamp >= uint256(m.end) + claimWindow) _release(lease.provider, m);
    }

    function _release(address provider, Model storage m) internal {
        _stakes[provider].locked -= m.lock;
        m.released = true;
    }

    /// @notice Closes three random leases in one `closeLeaseBatch` (the same lease may appear
    /// twice), as their first lease's provider, its lab or a stranger.
    function closeLeaseBatch(uint256 seedA, uint256 seedB, uint256 seedC, uint256 callerSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["closeBatch"]++;
        uint256[3] memory idx = [seedA % _leases.length, seedB % _leases.length, seedC % _leases.length];
        IMarketTypes.Lease[] memory items = new IMarketTypes.Lease[](3);
        for (uint256 k = 0; k < 3; ++k) {
            items[k] = _leases[idx[k]];
        }
        uint256 who = callerSeed % 3;
        address caller = who == 0 ? items[0].provider : who == 1 ? items[0].lab : stranger;
        uint256 expectedTotal = 0;
        for (uint256 k = 0; k < 3; ++k) {
            Model storage m = _models[idx[k]];
            if (_closable(m, caller == items[k].provider)) expectedTotal += _applyClose(items[k], m);
        }
        vm.prank(caller);
        try market.closeLeaseBatch(items) returns (uint256 refunded) {
            if (refunded != expectedTotal) mismatches++;
            else successes["closeBatch"]++;
        } catch {
            mismatches++; // a batch never reverts on bad items
        }
    }

    /// @notice Someone releases the stake lock of a random closed lease.
    function releaseStake(uint256 leaseSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["release"]++;
        uint256 i = _preferring(leaseSeed, RELEASABLE);
        Model storage m = _models[i];
        bool expectOk = m.status == IMarketTypes.LeaseStatus.Closed && !m.released
            && block.timestamp >= uint256(m.end) + claimWindow;
        vm.prank(stranger);
        try market.releaseStake(_leases[i]) returns (uint256 amount) {
            if (!expectOk || amount != m.lock) {
                mismatches++;
                return;
            }
            _release(_leases[i].provider, m);
            successes["release"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    // --- credits ----------------------------------------------------------------------------------

    /// @notice A random account (credited or not) withdraws: it must get exactly its credit and its
    /// vested slashed stake, and an account without either must be refused with
    /// MarketNothingToWithdraw.
    function withdraw(uint256 accountSeed) external {
        _sync();
        calls["withdraw"]++;
        address[] memory all = accounts();
        address account = all[accountSeed % all.length];
        bool vested = block.timestamp >= expectedVestsAt[account] && expectedSlashed[account] > 0;
        uint256 expected = expectedCredit[account] + (vested ? expectedSlashed[account] : 0);
        uint256 balanceBefore = token.balanceOf(account);
        vm.prank(account);
        try market.withdraw() returns (uint256 amount) {
            if (expected == 0 || amount != expected || token.balanceOf(account) != balanceBefore + amount) {
                mismatches++;
                return;
            }
            expectedCredit[account] = 0;
            if (vested) (expectedSlashed[account], expectedVestsAt[account]) = (0, 0);
            ghostWithdrawn += amount;
            successes["withdraw"]++;
        } catch (bytes memory err) {
            bytes memory nothing = abi.encodeWithSelector(IMarketTypes.MarketNothingToWithdraw.selector, account);
            if (expected > 0 || keccak256(err) != keccak256(nothing)) mismatches++;
        }
    }

    // --- proofs -----------------------------------------------------------------------------------

    /// @notice Someone proves that a random lease's provider signed two receipts for one seq.
    function slashEquivocation(uint256 leaseSeed, uint64 seq, uint64 usage) external {
        if (_leases.length == 0) return;
        _sync();
        calls["slash"]++;
        uint256 i = leaseSeed % _leases.length;
        IMarketTypes.Lease memory lease = _leases[i];
        Model storage m = _models[i];
        IMarketTypes.Receipt memory a = _receiptFor(lease, seq, lease.start, lease.start + 1, usage);
        IMarketTypes.Receipt memory b = _receiptFor(lease, seq, lease.start, lease.start + 1, usage ^ 1);
        uint256 key = _providerKeyOf(lease.provider);
        bytes memory sigA = _sign(key, market.hashReceipt(a));
        bytes memory sigB = _sign(key, market.hashReceipt(b));
        // Slashable while its lock is held: neither slashed nor released.
        bool expectOk = !m.slashed && !m.released;
        vm.prank(stranger);
        try market.slashEquivocation(lease, seq, _body(a), sigA, _body(b), sigB) returns (uint256 penalty) {
            if (!expectOk || penalty != m.lock) {
                mismatches++;
                return;
            }
            _applySlash(lease, m);
            successes["slash"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @dev A slash in the model: the lock from the provider's stake to the lab (vesting), the
    /// unpaid escrow (or what a close held back) and an open dispute's bond back to the lab.
    function _applySlash(IMarketTypes.Lease memory lease, Model storage m) internal {
        bool closed = m.status == IMarketTypes.LeaseStatus.Closed;
        uint256 refund = closed ? 0 : m.escrow - m.paid;
        if (m.disputed) {
            refund += m.bond;
            if (closed) refund += _held(m.pendingAmount, m.paid);
            (m.disputed, m.bond, m.rulingDeadline, m.readyAt) = (false, 0, 0, 0);
        }
        Stake storage s = _stakes[lease.provider];
        s.stake -= m.lock;
        s.locked -= m.lock;
        (m.status, m.slashed, m.released) = (IMarketTypes.LeaseStatus.Closed, true, true);
        ghostRefunded += refund;
        ghostSlashed += m.lock;
        expectedCredit[lease.lab] += refund;
        expectedSlashed[lease.lab] += m.lock;
        expectedVestsAt[lease.lab] = block.timestamp + unbondingDelay;
    }

    // --- posted receipts and disputes -------------------------------------------------------------

    /// @notice The provider posts a receipt for a random lease: the next seq, usage up to what its
    /// GPUs could have run by now (mostly above what was paid and posted before).
    function postReceipt(uint256 leaseSeed, uint256 usageSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["post"]++;
        uint256 i = _preferring(leaseSeed, OPEN);
        IMarketTypes.Lease memory lease = _leases[i];
        Model storage m = _models[i];
        uint256 floor = m.paid > m.pendingAmount ? m.paid : m.pendingAmount;
        IMarketTypes.Receipt memory r = _nextReceipt(lease, m, floor, usageSeed);
        bytes memory sig = _sign(_providerKeyOf(lease.provider), market.hashReceipt(r));
        uint256 amount = lease.pricePerGpuSecond * r.gpuSecondsCumulative;
        bool expectOk = m.status != IMarketTypes.LeaseStatus.Closed && !m.disputed && amount > floor;
        vm.prank(lease.provider);
        try market.postReceipt(lease, r, sig) {
            if (!expectOk) {
                mismatches++;
                return;
            }
            (m.posted, m.lastSeq, m.pendingAmount) = (true, r.seq, amount);
            m.readyAt = uint64(block.timestamp) + challengeWindow;
            successes["post"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @dev The lease's next receipt, from its start until now (or its end): usage up to what its
    /// GPUs could have run, three times in four above `floor` when they could.
    function _nextReceipt(IMarketTypes.Lease memory lease, Model storage m, uint256 floor, uint256 usageSeed)
        internal
        view
        returns (IMarketTypes.Receipt memory)
    {
        uint64 until = uint64(block.timestamp < m.end ? block.timestamp : m.end);
        uint256 maxUsage = lease.gpus * uint256(until - lease.start);
        uint256 minUsage = usageSeed % 4 != 0 ? floor / lease.pricePerGpuSecond + 1 : 0;
        uint64 usage = uint64(_bound(usageSeed >> 2, minUsage < maxUsage ? minUsage : maxUsage, maxUsage));
        return _receiptFor(lease, m.posted ? m.lastSeq + 1 : 0, lease.start, until, usage);
    }

    /// @dev Whether the lease's pending claim may be finalized now: pending, open (or closed with
    /// its dispute held back), past its challenge window or, when disputed, its ruling deadline.
    function _finalizable(Model storage m) internal view returns (bool) {
        if (m.readyAt == 0) return false;
        if (m.status == IMarketTypes.LeaseStatus.Closed && !m.disputed) return false;
        return block.timestamp >= (m.disputed ? m.rulingDeadline : m.readyAt);
    }

    /// @dev A finalization in the model; returns the claim's payment (the caller credits it, with
    /// its fee); an unruled dispute's bond goes to the provider here.
    function _applyFinalize(address provider, Model storage m) internal returns (uint256 amount) {
        if (m.disputed) {
            if (m.bond > 0) {
                expectedCredit[provider] += m.bond;
                ghostProviderIncome += m.bond;
            }
            (m.disputed, m.bond, m.rulingDeadline) = (false, 0, 0);
        }
        m.readyAt = 0;
        amount = _held(m.pendingAmount, m.paid);
        if (amount > 0) m.paid = m.pendingAmount;
    }

    /// @notice Someone finalizes a random lease's pending claim.
    function finalizeClaim(uint256 leaseSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["finalize"]++;
        uint256 i = _preferring(leaseSeed, PENDING);
        Model storage m = _models[i];
        bool expectOk = _finalizable(m);
        vm.prank(stranger);
        try market.finalizeClaim(_leases[i]) returns (uint256 amount) {
            if (!expectOk) {
                mismatches++;
                return;
            }
            uint256 expected = _applyFinalize(_leases[i].provider, m);
            if (amount != expected) mismatches++;
            if (expected > 0) _recordPayment(_leases[i].provider, expected);
            successes["finalize"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @notice Finalizes three leases' pending claims in one `finalizeClaimBatch` (mostly leases
    /// with a claim pending, ready or not).
    function finalizeClaimBatch(uint256 seedA, uint256 seedB, uint256 seedC) external {
        if (_leases.length == 0) return;
        _sync();
        calls["finalizeBatch"]++;
        uint256[3] memory idx = [_preferring(seedA, PENDING), _preferring(seedB, PENDING), seedC % _leases.length];
        IMarketTypes.Lease[] memory items = new IMarketTypes.Lease[](3);
        // The model of the batch: items in order, payments to consecutive equal providers summed
        // into one credit (and one fee), skipped items leaving the run open.
        uint256 expectedTotal = 0;
        address payee = address(0);
        uint256 owed = 0;
        for (uint256 k = 0; k < 3; ++k) {
            items[k] = _leases[idx[k]];
            Model storage m = _models[idx[k]];
            if (!_finalizable(m)) continue;
            uint256 amount = _applyFinalize(items[k].provider, m);
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

    /// @notice The lab disputes a random lease's pending claim, posting its bond.
    function disputeClaim(uint256 leaseSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["dispute"]++;
        uint256 i = _preferring(leaseSeed, leaseSeed % 4 == 0 ? PENDING : DISPUTABLE);
        Model storage m = _models[i];
        bool expectOk = m.status != IMarketTypes.LeaseStatus.Closed && m.readyAt != 0 && !m.disputed
            && block.timestamp < m.readyAt;
        uint256 bond = _held(m.pendingAmount, m.paid) * disputeBondBps / BPS;
        address lab = _leases[i].lab;
        uint256 balanceBefore = token.balanceOf(lab);
        vm.prank(lab);
        try market.disputeClaim(_leases[i]) {
            if (!expectOk || token.balanceOf(lab) != balanceBefore - bond) {
                mismatches++;
                return;
            }
            (m.disputed, m.bond, m.rulingDeadline) = (true, bond, uint64(block.timestamp) + rulingWindow);
            ghostBonds += bond;
            successes["dispute"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @notice The arbiter (or, one time in four, a stranger) rules on a random lease's dispute.
    function ruleDispute(uint256 leaseSeed, bool forProvider, uint256 callerSeed) external {
        if (_leases.length == 0) return;
        _sync();
        calls["rule"]++;
        uint256 i = _preferring(leaseSeed, leaseSeed % 4 == 0 ? DISPUTED : RULABLE);
        IMarketTypes.Lease memory lease = _leases[i];
        Model storage m = _models[i];
        address caller = callerSeed % 4 == 0 ? stranger : arbiter;
        bool expectOk = lease.arbiter != address(0) && caller == lease.arbiter && m.disputed
            && block.timestamp < m.rulingDeadline;
        vm.prank(caller);
        try market.ruleDispute(lease, forProvider) {
            if (!expectOk) {
                mismatches++;
                return;
            }
            _applyRuling(lease, m, forProvider);
            successes["rule"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @dev A ruling in the model. For the provider: the claim paid, the bond credited to it. For
    /// the lab: the bond (and what a close held back) credited back to it.
    function _applyRuling(IMarketTypes.Lease memory lease, Model storage m, bool forProvider) internal {
        uint256 amount = _held(m.pendingAmount, m.paid);
        uint256 bond = m.bond;
        (m.disputed, m.bond, m.rulingDeadline, m.readyAt) = (false, 0, 0, 0);
        if (forProvider) {
            if (amount > 0) {
                m.paid = m.pendingAmount;
                _recordPayment(lease.provider, amount);
            }
            expectedCredit[lease.provider] += bond;
            ghostProviderIncome += bond;
        } else {
            uint256 refund = bond + (m.status == IMarketTypes.LeaseStatus.Closed ? amount : 0);
            expectedCredit[lease.lab] += refund;
            ghostRefunded += refund;
        }
    }

    // --- stake ------------------------------------------------------------------------------------

    /// @notice A provider asks to unstake part of its free stake (one time in eight, more than it).
    function requestUnstake(uint256 providerSeed, uint256 amountSeed) external {
        _sync();
        calls["unstake"]++;
        address provider = providers[providerSeed % providers.length];
        Stake storage s = _stakes[provider];
        uint256 free = s.stake - s.locked;
        uint256 amount = amountSeed % 8 == 0 ? free + 1 : _bound(amountSeed >> 3, 1, free / 4 + 1);
        bool expectOk = amount <= free;
        vm.prank(provider);
        try market.requestUnstake(amount) {
            if (!expectOk) {
                mismatches++;
                return;
            }
            s.stake -= amount;
            s.unbonding += amount;
            s.unbondReadyAt = block.timestamp + unbondingDelay;
            successes["unstake"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @notice A provider withdraws its unbonded stake.
    function withdrawStake(uint256 providerSeed) external {
        _sync();
        calls["withdrawStake"]++;
        address provider = providers[providerSeed % providers.length];
        Stake storage s = _stakes[provider];
        bool expectOk = s.unbonding > 0 && block.timestamp >= s.unbondReadyAt;
        uint256 balanceBefore = token.balanceOf(provider);
        vm.prank(provider);
        try market.withdrawStake() returns (uint256 amount) {
            if (!expectOk || amount != s.unbonding || token.balanceOf(provider) != balanceBefore + amount) {
                mismatches++;
                return;
            }
            s.unbonding = 0;
            ghostStakeWithdrawn += amount;
            successes["withdrawStake"]++;
        } catch {
            if (expectOk) mismatches++;
        }
    }

    /// @notice A provider adds up to 5,000 tokens (of 6 decimals) of what it holds to its stake.
    function addStake(uint256 providerSeed, uint256 amountSeed) external {
        _sync();
        address provider = providers[providerSeed % providers.length];
        uint256 held = token.balanceOf(provider);
        if (held == 0) return;
        calls["addStake"]++;
        uint256 amount = _bound(amountSeed, 1, held < 5_000e6 ? held : 5_000e6);
        vm.prank(provider);
        try market.addStake(amount) {
            _stakes[provider].stake += amount;
            ghostStakeAdded += amount;
            successes["addStake"]++;
        } catch {
            mismatches++;
        }
    }

    /// @notice Moves time forward by up to an hour or, half the time, up to two days.
    function warp(uint256 secondsSeed) external {
        calls["warp"]++;
        successes["warp"]++;
        ghostTime += _bound(secondsSeed >> 1, 1, secondsSeed & 1 == 0 ? 1 hours : 2 days);
        vm.warp(ghostTime);
    }

    // --- internals ------------------------------------------------------------------------------

    /// @dev Re-applies the handler's clock, whatever the runner did with block.timestamp between calls.
    function _sync() internal {
        vm.warp(ghostTime);
    }

    function _held(uint256 claimed, uint256 paid) internal pure returns (uint256) {
        return claimed > paid ? claimed - paid : 0;
    }

    function _recordPayment(address provider, uint256 amount) internal {
        uint256 fee = amount * feeBps / BPS;
        ghostFees += fee;
        ghostProviderIncome += amount - fee;
        expectedCredit[treasury] += fee;
        expectedCredit[provider] += amount - fee;
    }

    /// @dev From a random lease on, the first one that suits `mode` (see the constants), so that
    /// actions mostly meet leases they can act on; the random one if none.
    function _preferring(uint256 seed, uint256 mode) internal view returns (uint256) {
        uint256 n = _leases.length;
        for (uint256 k = 0; k < n; ++k) {
            uint256 i = (seed % n + k) % n; // seed % n first: seed + k could overflow
            Model storage m = _models[i];
            if (_suits(i, mode)) return i;
        }
        return seed % n;
    }

    function _suits(uint256 i, uint256 mode) internal view returns (bool) {
        Model storage m = _models[i];
        bool closed = m.status == IMarketTypes.LeaseStatus.Closed;
        if (mode == OPEN) return !closed;
        if (mode == PENDING) return m.readyAt != 0 && (!closed || m.disputed);
        if (mode == DISPUTED) return m.disputed;
        if (mode == RELEASABLE) return closed && !m.released;
        if (mode == DISPUTABLE) return !closed && m.readyAt != 0 && !m.disputed && block.timestamp < m.readyAt;
        return m.disputed && _leases[i].arbiter != address(0) && block.timestamp < m.rulingDeadline;
    }

    function _receiptFor(IMarketTypes.Lease memory lease, uint64 seq, uint64 start, uint64 end, uint64 usage)
        internal
        pure
        returns (IMarketTypes.Receipt memory)
    {
        return IMarketTypes.Receipt(
            keccak256(abi.encode(lease)), seq, bytes32(0), start, end, usage, keccak256(abi.encode(seq)), 0, 0
        );
    }

    function _providerIndex(address provider) internal view returns (uint256 i) {
        while (providers[i] != provider) ++i;
    }

    function _providerKeyOf(address provider) internal view returns (uint256) {
        return _providerKeys[_providerIndex(provider)];
    }

    function _labKeyOf(address lab) internal view returns (uint256) {
        for (uint256 i = 0; i < labs.length; ++i) {
            if (labs[i] == lab) return _labKeys[i];
        }
        return 0;
    }

    function _voucher(IMarketTypes.Lease memory lease, uint256 cumulative) internal view returns (bytes memory) {
        bytes32 digest =
            market.hashVoucher(IMarketTypes.Voucher(keccak256(abi.encode(lease)), cumulative, bytes32(0)));
        return _sign(_labKeyOf(lease.lab), digest);
    }

    function _body(IMarketTypes.Receipt memory r) internal pure returns (IMarketTypes.ReceiptBody memory) {
        return IMarketTypes.ReceiptBody({
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
