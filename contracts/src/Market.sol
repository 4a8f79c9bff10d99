// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {IMarketCore} from "./interfaces/IMarketCore.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {MarketBase} from "./MarketBase.sol";
import {MarketExtension} from "./MarketExtension.sol";

/// @title Market
/// @notice Leases of GPU capacity from EIP-712 signed offers and bids, with escrow, cumulative
/// vouchers, termination, refunds and an optional protocol fee. Payments, fees and refunds are
/// credited inside the market and withdrawn by their owners (docs/decisions/0005-pull-payments.md).
/// Providers stake here; each lease locks part of its provider's stake, which a proof of cheating
/// slashes to its lab (docs/decisions/0006-slashing.md, 0013-stake-and-disputes.md).
/// Nobody holds special powers: every parameter is fixed at deployment.
///
/// This contract runs `IMarketCore`, the hot paths; every other call falls through to
/// `MarketExtension`, run by delegatecall on this contract's storage (both inherit the one layout
/// from `MarketBase`), because the whole market exceeds the 24,576-byte code limit. The full
/// interface is `IMarket`.
contract Market is MarketBase, IMarketCore {
    using SafeERC20 for IERC20;

    /// @dev The low 15 bits and the top bit of each 16-bit lane of a features word.
    uint256 private constant _LANE_LOW_BITS = 0x7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff;
    uint256 private constant _LANE_TOP_BITS = 0x8000800080008000800080008000800080008000800080008000800080008000;

    address private immutable _extension;

    /// @param params The deployment parameters (see `IMarketTypes.Params`).
    constructor(Params memory params) MarketBase(params) {
        _extension = address(new MarketExtension(params));
    }

    /// @notice Every function of `IMarketExtension` runs in `MarketExtension`, by delegatecall.
    // solhint-disable-next-line no-complex-fallback
    fallback() external {
        address extension_ = _extension;
        // solhint-disable-next-line no-inline-assembly
        assembly {
            calldatacopy(0, 0, calldatasize())
            let success := delegatecall(gas(), extension_, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(success) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    // --- opening leases ---------------------------------------------------------------------

    /// @inheritdoc IMarketCore
    function openLease(Offer calldata offer, bytes calldata offerSig, Bid calldata bid, bytes calldata bidSig, uint32 gpus)
        external
        nonReentrant
        returns (bytes32)
    {
        return _openLease(offer, offerSig, bid, bidSig, gpus);
    }

    /// @inheritdoc IMarketCore
    function openLeaseWithPermit(
        Offer calldata offer,
        bytes calldata offerSig,
        Bid calldata bid,
        bytes calldata bidSig,
        uint32 gpus,
        Permit calldata permit
    ) external nonReentrant returns (bytes32) {
        // A front-run permit (same signature already used) must not block the lease: ignore a
        // failing permit and let the allowance decide in transferFrom.
        // solhint-disable no-empty-blocks
        try IERC20Permit(address(_token)).permit(
            bid.lab, address(this), permit.value, permit.deadline, permit.v, permit.r, permit.s
        ) {} catch {}
        // solhint-enable no-empty-blocks
        return _openLease(offer, offerSig, bid, bidSig, gpus);
    }

    function _openLease(
        Offer calldata offer,
        bytes calldata offerSig,
        Bid calldata bid,
        bytes calldata bidSig,
        uint32 gpus
    ) private returns (bytes32 id) {
        if (gpus == 0) revert MarketZeroFill();
        bytes32 offerHash = _checkOffer(offer, offerSig);
        bytes32 bidHash = _checkBid(bid, bidSig);
        _checkPair(offer, bid);
        uint256 price = offer.pricePerGpuSecond;
        if (price > bid.maxPricePerGpuSecond) revert MarketPriceNotCrossed(price, bid.maxPricePerGpuSecond);
        uint256 escrow;
        (id, escrow) = _record(offer, bid, gpus, price, offerHash, bidHash);
        if (bid.allOrNone) _checkCluster(bid, bidHash);
        // The lab authorised this pull by signing the bid, checked in _checkBid.
        // slither-disable-next-line arbitrary-send-erc20
        _token.safeTransferFrom(bid.lab, address(this), escrow);
    }

    /// @inheritdoc IMarketCore
    function openLeaseBatch(SignedOffer[] calldata offers, SignedBid[] calldata bids, Match[] calldata matches)
        external
        nonReentrant
        returns (bytes32[] memory leaseIds)
    {
        (leaseIds,) = _openBatch(offers, bids, matches, 0, false);
    }

    /// @inheritdoc IMarketCore
    function openLeaseAuction(
        SignedOffer[] calldata offers,
        SignedBid[] calldata bids,
        Match[] calldata matches,
        uint256 clearingPrice
    ) external nonReentrant returns (bytes32[] memory leaseIds) {
        uint256 gpus;
        (leaseIds, gpus) = _openBatch(offers, bids, matches, clearingPrice, true);
        emit AuctionCleared(clearingPrice, leaseIds.length, gpus);
    }

    /// @dev Opens every match of a batch, each at its offer's price or, when `uniform`, at
    /// `clearingPrice`. Orders are checked once each, then the matches recorded (each locking its
    /// provider's stake), then all-or-none bids checked whole, and the escrow pulled last (one
    /// transfer per run of one lab's bids).
    // The four phases read best in one place, in the order they run.
    // solhint-disable-next-line function-max-lines
    function _openBatch(
        SignedOffer[] calldata offers,
        SignedBid[] calldata bids,
        Match[] calldata matches,
        uint256 clearingPrice,
        bool uniform
    ) private returns (bytes32[] memory ids, uint256 totalGpus) {
        if (matches.length == 0) revert MarketEmptyBatch();
        bytes32[] memory offerHashes = new bytes32[](offers.length);
        for (uint256 i = 0; i < offers.length; ++i) {
            Offer calldata offer = offers[i].offer;
            offerHashes[i] = _checkOffer(offer, offers[i].signature);
            if (uniform && offer.pricePerGpuSecond > clearingPrice) {
                revert MarketClearingPriceBelowAsk(offerHashes[i], offer.pricePerGpuSecond, clearingPrice);
            }
        }
        bytes32[] memory bidHashes = new bytes32[](bids.length);
        for (uint256 j = 0; j < bids.length; ++j) {
            Bid calldata bid = bids[j].bid;
            bidHashes[j] = _checkBid(bid, bids[j].signature);
            if (uniform && clearingPrice > bid.maxPricePerGpuSecond) {
                revert MarketClearingPriceAboveBid(bidHashes[j], bid.maxPricePerGpuSecond, clearingPrice);
            }
        }
        uint256[] memory escrows = new uint256[](bids.length);
        ids = new bytes32[](matches.length);
        for (uint256 k = 0; k < matches.length; ++k) {
            Match calldata m = matches[k];
            if (m.offer >= offers.length || m.bid >= bids.length) revert MarketMatchOutOfRange(k);
            if (m.gpus == 0) revert MarketZeroFill();
            Offer calldata offer = offers[m.offer].offer;
            Bid calldata bid = bids[m.bid].bid;
            _checkPair(offer, bid);
            uint256 price = clearingPrice;
            if (!uniform) {
                price = offer.pricePerGpuSecond;
                if (price > bid.maxPricePerGpuSecond) revert MarketPriceNotCrossed(price, bid.maxPricePerGpuSecond);
            }
            uint256 escrow;
            (ids[k], escrow) = _record(offer, bid, m.gpus, price, offerHashes[m.offer], bidHashes[m.bid]);
            // Each escrow is below 2^128 and a batch holds far fewer than 2^128 matches.
            escrows[m.bid] += escrow;
            totalGpus += m.gpus;
        }
        address payer = address(0);
        uint256 owed = 0;
        for (uint256 j = 0; j < bids.length; ++j) {
            Bid calldata bid = bids[j].bid;
            if (bid.allOrNone) _checkCluster(bid, bidHashes[j]);
            if (bid.lab != payer) {
                // Every lab paying here signed a bid of this batch, checked above.
                // slither-disable-next-line arbitrary-send-erc20,calls-loop
                if (owed > 0) _token.safeTransferFrom(payer, address(this), owed);
                payer = bid.lab;
                owed = 0;
            }
            owed += escrows[j];
        }
        // slither-disable-next-line arbitrary-send-erc20
        if (owed > 0) _token.safeTransferFrom(payer, address(this), owed);
    }

    /// @dev Records the fills, locks the provider's stake for the lease, stores the lease and returns
    /// its id and escrow. Moves no token.
    function _record(
        Offer calldata offer,
        Bid calldata bid,
        uint32 gpus,
        uint256 price,
        bytes32 offerHash,
        bytes32 bidHash
    ) private returns (bytes32 id, uint256 escrow) {
        if (offer.provider == bid.lab) revert MarketSelfDealing(bid.lab);
        _fill(offer.provider, offerHash, offer.nonce, offer.gpuCount, gpus);
        uint128 bidFilledBefore = _fill(bid.lab, bidHash, bid.nonce, bid.gpuCount, gpus);
        if (bid.duration > type(uint64).max - block.timestamp) revert MarketLeaseTooLong(bid.duration);
        escrow = _escrow(price, gpus, bid.duration);
        _lockStake(offer.provider, _lockOf(escrow));
        Lease memory lease = Lease({
            provider: offer.provider,
            lab: bid.lab,
            gpus: gpus,
            pricePerGpuSecond: price,
            start: uint64(block.timestamp),
            duration: bid.duration,
            salt: _salt(offerHash, bidHash, bidFilledBefore),
            billing: bid.billing,
            receiptSigner: offer.receiptSigner,
            voucherSigner: bid.voucherSigner,
            arbiter: offer.arbiter,
            minCharge: _minCharge(escrow, offer.minChargeBps)
        });
        // keccak256(abi.encode(lease)), hashed in place: a memory struct of static fields is its
        // ABI encoding, twelve clean words.
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            id := keccak256(lease, _LEASE_SIZE)
        }
        // A fresh salt per fill means the id is new, so `paid` and the flags are zero already: only
        // the end and the status are set (one write, cheaper than the whole struct). The slot is
        // written before any token call.
        LeaseState storage state = _leases[id];
        state.end = lease.start + lease.duration;
        state.status = LeaseStatus.Active;
        // emit LeaseOpened(id, offerHash, bidHash, lease), from the struct's memory as it is: its
        // twelve clean words are the event's data, without the ABI encoder's copy.
        bytes32 topic = LeaseOpened.selector;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            log4(lease, _LEASE_SIZE, topic, id, offerHash, bidHash)
        }
    }

    /// @dev The part of `escrow` a lease pays its provider whatever the use: escrow < 2^128 and
    /// minChargeBps <= 10_000 (`_checkPair`), so it is at most the escrow.
    function _minCharge(uint256 escrow, uint16 minChargeBps) private pure returns (uint256 charge) {
        unchecked {
            charge = escrow * minChargeBps / _BPS;
        }
    }

    /// @dev keccak256(abi.encode(offerHash, bidHash, bidFilledBefore)), unique per fill, hashed in
    /// free memory (not allocated: only the hashing reads it).
    function _salt(bytes32 offerHash, bytes32 bidHash, uint256 bidFilledBefore) private pure returns (bytes32 salt) {
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, offerHash)
            mstore(add(ptr, 0x20), bidHash)
            mstore(add(ptr, 0x40), bidFilledBefore)
            salt := keccak256(ptr, 0x60)
        }
    }

    /// @dev An offer's hash, once its expiry and signature are checked. A contract provider must
    /// name the ECDSA key that signs its receipts.
    function _checkOffer(Offer calldata offer, bytes calldata signature) private view returns (bytes32 offerHash) {
        offerHash = _hashOffer(offer);
        if (block.timestamp > offer.expiry) revert MarketOrderExpired(offerHash, offer.expiry);
        if (_checkSignature(offer.provider, offerHash, signature) && offer.receiptSigner == address(0)) {
            revert MarketSignerKeyRequired(offer.provider);
        }
    }

    /// @dev A bid's hash, once its expiry and signature are checked. A contract lab must name the
    /// ECDSA key that signs its vouchers.
    function _checkBid(Bid calldata bid, bytes calldata signature) private view returns (bytes32 bidHash) {
        bidHash = _hashBid(bid);
        if (block.timestamp > bid.expiry) revert MarketOrderExpired(bidHash, bid.expiry);
        if (_checkSignature(bid.lab, bidHash, signature) && bid.voucherSigner == address(0)) {
            revert MarketSignerKeyRequired(bid.lab);
        }
    }

    /// @dev Every signed term of the pair but the price: model, duration, the bid's requirements
    /// against what the offer signed, the billing mode, the arbiter and the minimum charge.
    /// market.matching's `fits` is this rule.
    function _checkPair(Offer calldata offer, Bid calldata bid) private pure {
        if (offer.gpuModel != bid.gpuModel) revert MarketGpuModelMismatch(offer.gpuModel, bid.gpuModel);
        if (bid.duration < offer.minDuration || bid.duration > offer.maxDuration) {
            revert MarketDurationOutOfRange(bid.duration, offer.minDuration, offer.maxDuration);
        }
        if (offer.memoryGiB < bid.minMemoryGiB) revert MarketMemoryTooLow(offer.memoryGiB, bid.minMemoryGiB);
        if (offer.bandwidthGbps < bid.minBandwidthGbps) {
            revert MarketBandwidthTooLow(offer.bandwidthGbps, bid.minBandwidthGbps);
        }
        uint256 features = offer.features;
        uint256 missing = bid.requiredFeatures & ~features;
        if (missing != 0) revert MarketFeaturesMissing(missing);
        uint256 accepted = bid.acceptedFeatures;
        if (accepted != 0) {
            uint256 unmet = _nonZeroLanes(accepted) & ~_nonZeroLanes(accepted & features);
            if (unmet != 0) {
                uint256 lane = 0;
                while ((unmet >> (16 * lane + 15)) & 1 == 0) ++lane;
                revert MarketFeatureNotAccepted(lane, (features >> (16 * lane)) & 0xffff, (accepted >> (16 * lane)) & 0xffff);
            }
        }
        Billing billing = bid.billing;
        if ((uint256(offer.billingModes) >> uint8(billing)) & 1 == 0) {
            revert MarketBillingNotOffered(billing, offer.billingModes);
        }
        if (offer.arbiter != bid.arbiter) revert MarketArbiterMismatch(offer.arbiter, bid.arbiter);
        uint16 minChargeBps = offer.minChargeBps;
        if (minChargeBps > bid.maxMinChargeBps || minChargeBps > _BPS) {
            revert MarketMinChargeTooHigh(minChargeBps, bid.maxMinChargeBps);
        }
    }

    /// @dev The top bit of each 16-bit lane of `x` that is not zero: adding 0x7fff to a lane's low
    /// 15 bits reaches its top bit iff they are not all zero, and never carries into the next lane.
    function _nonZeroLanes(uint256 x) private pure returns (uint256) {
        unchecked {
            return (((x & _LANE_LOW_BITS) + _LANE_LOW_BITS) | x) & _LANE_TOP_BITS;
        }
    }

    /// @dev Locks `lock` of the provider's stake for a new lease: reverts unless the provider is
    /// registered, its bonded stake is at least the minimum and its free stake (bonded, not locked)
    /// covers the lock. One read and one write of the provider's first word.
    function _lockStake(address provider, uint256 lock) private {
        IProviderRegistry.Provider storage p = _providers[provider];
        uint256 word;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            word := sload(p.slot)
        }
        if (uint8(word >> _REGISTERED_SHIFT) == 0) revert MarketProviderNotRegistered(provider);
        uint256 stake = uint96(word);
        if (stake < _minStake) revert MarketProviderStakeTooLow(provider, stake, _minStake);
        // locked <= stake always holds.
        uint256 free = stake - uint96(word >> _LOCKED_SHIFT);
        if (lock > free) revert MarketStakeLockUncovered(provider, free, lock);
        // locked + lock <= stake < 2^96: the addition stays in the locked bits.
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            sstore(p.slot, add(word, shl(_LOCKED_SHIFT, lock)))
        }
    }

    /// @dev An all-or-none bid must be filled whole by the end of the transaction that first fills
    /// it; since nothing fills it later, it is then filled whole or never.
    function _checkCluster(Bid calldata bid, bytes32 bidHash) private view {
        uint256 filled = _orders[bid.lab][bidHash].filled;
        if (filled != bid.gpuCount) revert MarketClusterIncomplete(bidHash, filled, bid.gpuCount);
    }

    /// @dev Checks nonce floor, cancellation and remaining size, then records the fill.
    function _fill(address signer, bytes32 orderHash, uint256 nonce, uint32 size, uint32 gpus)
        private
        returns (uint128 filledBefore)
    {
        uint256 floor = _minNonce[signer];
        // The floor cancels the nonces below it, and the largest floor every nonce.
        if (nonce < floor || floor == type(uint256).max) revert MarketOrderNonceCancelled(orderHash, nonce, floor);
        OrderState storage state = _orders[signer][orderHash];
        // OrderState's one word: filled in bits 0-127, cancelled in 128-135; read and written once.
        uint256 word;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            word := sload(state.slot)
        }
        if (word >> 128 != 0) revert MarketOrderCancelled(orderHash);
        filledBefore = uint128(word);
        // filledBefore <= size always holds, so the subtraction cannot underflow.
        uint256 remaining = size - filledBefore;
        if (gpus > remaining) revert MarketFillExceedsOrder(orderHash, gpus, remaining);
        // filledBefore + gpus <= size < 2^32, and the order is not cancelled: the new word.
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            sstore(state.slot, add(filledBefore, gpus))
        }
    }

    /// @dev Reverts unless `signature` is `signer`'s: ECDSA first (see _recovers), then ERC-1271
    /// for a contract signer. Returns whether it took ERC-1271.
    function _checkSignature(address signer, bytes32 digest, bytes calldata signature)
        private
        view
        returns (bool byContract)
    {
        if (_recovers(signer, digest, signature)) return false;
        if (signer.code.length > 0 && SignatureChecker.isValidERC1271SignatureNowCalldata(signer, digest, signature)) {
            return true;
        }
        revert MarketInvalidSignature(digest, signer);
    }

    /// @dev The key that signs the lease's vouchers: its voucher signer, or the lab.
    function _voucherKey(Lease calldata lease) private pure returns (address key) {
        key = lease.voucherSigner;
        if (key == address(0)) key = lease.lab;
    }

    function _escrow(uint256 price, uint256 gpus, uint256 duration) private pure returns (uint256 escrow) {
        // price < 2^128, gpus < 2^32, duration < 2^64: the product fits in 2^224 and cannot overflow.
        if (price > type(uint128).max) revert MarketEscrowOverflow(price, gpus, duration);
        unchecked {
            escrow = price * gpus * duration;
        }
        if (escrow > type(uint128).max) revert MarketEscrowOverflow(price, gpus, duration);
    }

    // --- payment ----------------------------------------------------------------------------

    /// @inheritdoc IMarketCore
    function claim(Lease calldata lease, uint256 cumulativeAmount, bytes32 receiptHash, bytes calldata labSig)
        external
        nonReentrant
        returns (uint256 amount)
    {
        bytes memory err;
        (amount,, err) = _redeem(lease, cumulativeAmount, receiptHash, labSig);
        if (err.length > 0) _revertWith(err);
        _creditPayment(lease.provider, amount);
    }

    /// @inheritdoc IMarketCore
    function claimBatch(ClaimItem[] calldata items) external nonReentrant returns (uint256 total) {
        // Payments to the same provider in consecutive items are summed into one credit (and fee).
        address payee = address(0);
        uint256 owed = 0;
        for (uint256 i = 0; i < items.length; ++i) {
            ClaimItem calldata item = items[i];
            (uint256 amount, bytes32 id, bytes memory err) =
                _redeem(item.lease, item.cumulativeAmount, item.receiptHash, item.signature);
            if (err.length > 0) {
                emit ClaimSkipped(id, bytes4(err));
                continue;
            }
            if (item.lease.provider != payee) {
                if (owed > 0) _creditPayment(payee, owed);
                payee = item.lease.provider;
                owed = 0;
            }
            owed += amount;
            total += amount;
        }
        if (owed > 0) _creditPayment(payee, owed);
    }

    /// @dev Validates a voucher and records the payment. Never reverts on bad input: it returns the
    /// encoded custom error instead, so a batch can skip the item.
    function _redeem(Lease calldata lease, uint256 cumulativeAmount, bytes32 receiptHash, bytes calldata labSig)
        private
        returns (uint256 amount, bytes32 id, bytes memory err)
    {
        id = _leaseId(lease);
        LeaseState storage state = _leases[id];
        {
            LeaseStatus status = state.status;
            if (status == LeaseStatus.None) return (0, id, abi.encodeWithSelector(MarketUnknownLease.selector, id));
            if (status == LeaseStatus.Closed) {
                return (0, id, abi.encodeWithSelector(MarketLeaseNotOpen.selector, id, status));
            }
        }
        {
            bytes32 digest =
                _hashTypedDataV4(keccak256(abi.encode(_VOUCHER_TYPEHASH, id, cumulativeAmount, receiptHash)));
            address key = _voucherKey(lease);
            if (!_recovers(key, digest, labSig)) {
                return (0, id, abi.encodeWithSelector(MarketInvalidSignature.selector, digest, key));
            }
        }
        // The target is the voucher capped at the escrow, which fits in uint128 (checked at opening).
        uint256 target = _escrowOf(lease);
        if (cumulativeAmount < target) target = cumulativeAmount;
        uint128 paid = state.paid;
        if (target <= paid) {
            return (0, id, abi.encodeWithSelector(MarketNothingToClaim.selector, id, cumulativeAmount, paid));
        }
        state.paid = uint128(target);
        amount = target - paid;
        emit Claimed(id, amount, target, receiptHash);
    }

    // --- end of a lease ---------------------------------------------------------------------

    /// @inheritdoc IMarketCore
    function terminate(Lease calldata lease, uint256 cumulativeAmount) external nonReentrant {
        bytes32 id = _leaseId(lease);
        LeaseState storage state = _leases[id];
        if (state.status == LeaseStatus.None) revert MarketUnknownLease(id);
        if (msg.sender != lease.lab) revert MarketNotLab(id, msg.sender);
        if (state.status != LeaseStatus.Active) revert MarketLeaseNotOpen(id, state.status);
        if (block.timestamp >= state.end) revert MarketLeaseEnded(id, state.end);
        uint256 cap = _escrowOf(lease);
        uint256 target = cumulativeAmount < cap ? cumulativeAmount : cap;
        uint128 paid = state.paid;
        uint256 amount = target > paid ? target - paid : 0;
        uint64 end = uint64(block.timestamp);
        state.end = end;
        state.status = LeaseStatus.Terminated;
        if (amount > 0) {
            state.paid = uint128(target);
            emit Claimed(id, amount, target, bytes32(0));
        }
        emit LeaseTerminated(id, end, state.paid);
        if (amount > 0) _creditPayment(lease.provider, amount);
    }

    /// @inheritdoc IMarketCore
    function closeLease(Lease calldata lease) external nonReentrant returns (uint256 refund) {
        bytes memory err;
        (refund,, err) = _close(lease);
        if (err.length > 0) _revertWith(err);
    }

    /// @inheritdoc IMarketCore
    function closeLeaseBatch(Lease[] calldata leases) external nonReentrant returns (uint256 refunded) {
        for (uint256 i = 0; i < leases.length; ++i) {
            (uint256 refund, bytes32 id, bytes memory err) = _close(leases[i]);
            if (err.length > 0) {
                emit CloseSkipped(id, bytes4(err));
                continue;
            }
            refunded += refund;
        }
    }

    /// @dev Closes a lease: pays the provider up to the lease's minimum charge, holds back an open
    /// dispute's amount, credits the lab the rest of the unpaid escrow and, past the proof window,
    /// releases the lease's stake lock. Never reverts on bad input: it returns the encoded custom
    /// error instead, so a batch can skip the item.
    // The checks, the settlement and the release read best in the order they run.
    // solhint-disable-next-line function-max-lines
    function _close(Lease calldata lease) private returns (uint256 refund, bytes32 id, bytes memory err) {
        id = _leaseId(lease);
        LeaseState storage state = _leases[id];
        LeaseStatus status = state.status;
        if (status == LeaseStatus.None) return (0, id, abi.encodeWithSelector(MarketUnknownLease.selector, id));
        if (status == LeaseStatus.Closed) {
            return (0, id, abi.encodeWithSelector(MarketLeaseNotOpen.selector, id, status));
        }
        uint256 releasableAt = uint256(state.end) + _claimWindow;
        bool disputed = state.disputed;
        if (msg.sender != lease.provider) {
            if (block.timestamp < releasableAt) {
                return (0, id, abi.encodeWithSelector(MarketClaimWindowOpen.selector, id, releasableAt));
            }
            // A lab must not close away a claim it neither paid nor disputed.
            uint64 readyAt = _claims[id].readyAt;
            if (readyAt != 0 && !disputed) {
                return (0, id, abi.encodeWithSelector(MarketClaimPending.selector, id, readyAt));
            }
        }
        uint256 paid = state.paid;
        // The minimum charge is for a lease the lab held to its end (or ended itself early); a
        // provider giving a lease up before then is owed none of it.
        uint256 charge = block.timestamp >= state.end ? _held(lease.minCharge, paid) : 0;
        paid += charge;
        // paid <= escrow and held <= escrow - paid (claims are capped by the escrow): no underflow.
        refund = _escrowOf(lease) - paid;
        if (disputed) refund -= _held(_claims[id].amount, paid);
        bool release = block.timestamp >= releasableAt;
        state.paid = uint128(paid);
        state.status = LeaseStatus.Closed;
        if (release) state.stakeReleased = true;
        if (charge > 0) emit Claimed(id, charge, paid, bytes32(0));
        emit LeaseClosed(id, paid, refund);
        if (charge > 0) _creditPayment(lease.provider, charge);
        if (refund > 0) _credit(lease.lab, refund);
        if (release) {
            uint256 lock = _lockOf(_escrowOf(lease));
            _unlockStake(lease.provider, lock);
            emit StakeReleased(id, lease.provider, lock);
        }
    }

    // --- withdrawal -------------------------------------------------------------------------

    /// @inheritdoc IMarketCore
    function withdraw() external nonReentrant returns (uint256 amount) {
        Credit storage account = _credits[msg.sender];
        uint256 stored = account.word;
        uint256 slashed = uint96(stored >> _SLASHED_CREDIT_SHIFT);
        if (slashed > 0 && block.timestamp < stored >> _VESTS_SHIFT) slashed = 0; // not vested yet
        // The credit bits are at least 1 once the account was credited, which every slash to it is.
        uint256 credit = uint128(stored);
        if (credit > 0) --credit;
        amount = credit + slashed;
        if (amount == 0) revert MarketNothingToWithdraw(msg.sender);
        // Cleared before the token call, so a re-entered withdraw finds nothing; stake still
        // vesting stays with its time.
        account.word = slashed > 0 ? 1 : (stored >> _SLASHED_CREDIT_SHIFT << _SLASHED_CREDIT_SHIFT) | 1;
        emit Withdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    // --- proofs of cheating -----------------------------------------------------------------

    /// @inheritdoc IMarketCore
    function slashEquivocation(
        Lease calldata lease,
        uint64 seq,
        ReceiptBody calldata a,
        bytes calldata sigA,
        ReceiptBody calldata b,
        bytes calldata sigB
    ) external returns (uint256) {
        (bytes32 id, LeaseState storage state, uint256 word) = _slashable(lease);
        (bytes32 digestA, bytes32 digestB) = _receiptDigests(id, seq, a, b);
        if (digestA == digestB) revert MarketReceiptsNotConflicting(digestA);
        address key = _receiptKey(lease);
        _checkKey(key, digestA, sigA);
        _checkKey(key, digestB, sigB);
        return _slash(lease, id, state, word);
    }

    /// @dev The EIP-712 digests of two receipts of lease `id` with this `seq`.
    function _receiptDigests(bytes32 id, uint64 seq, ReceiptBody calldata a, ReceiptBody calldata b)
        private
        view
        returns (bytes32 digestA, bytes32 digestB)
    {
        bytes32 domainSeparator = _domainSeparatorV4();
        digestA = _receiptDigest(domainSeparator, id, seq, a);
        digestB = _receiptDigest(domainSeparator, id, seq, b);
    }
}
