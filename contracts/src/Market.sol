// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IMarket} from "./interfaces/IMarket.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {ProviderRegistry} from "./ProviderRegistry.sol";

/// @title Market
/// @notice Leases of GPU capacity from EIP-712 signed offers and bids, with escrow, cumulative
/// vouchers, termination, refunds and an optional protocol fee. Payments, fees and refunds are
/// credited inside the market and withdrawn by their owners (docs/decisions/0005-pull-payments.md).
/// Provider receipts back slashing proofs and optimistic claims (docs/decisions/0006-slashing.md).
/// Nobody holds special powers: the fee, treasury, challenge window and slash penalty are fixed at
/// deployment, and the registry is created here with this market as its only slasher.
contract Market is IMarket, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @dev keccak256("Offer(address provider,bytes32 gpuModel,uint32 gpuCount,uint32 memoryGiB,uint32 bandwidthGbps,uint256 features,uint8 billingModes,uint256 pricePerGpuSecond,uint64 minDuration,uint64 maxDuration,uint64 expiry,uint256 nonce,address receiptSigner)")
    bytes32 private constant _OFFER_TYPEHASH = keccak256(
        "Offer(address provider,bytes32 gpuModel,uint32 gpuCount,uint32 memoryGiB,uint32 bandwidthGbps,uint256 features,uint8 billingModes,uint256 pricePerGpuSecond,uint64 minDuration,uint64 maxDuration,uint64 expiry,uint256 nonce,address receiptSigner)"
    );
    /// @dev keccak256("Bid(address lab,bytes32 gpuModel,uint32 gpuCount,uint32 minMemoryGiB,uint32 minBandwidthGbps,uint256 requiredFeatures,uint256 acceptedFeatures,uint8 billing,bool allOrNone,uint256 maxPricePerGpuSecond,uint64 duration,uint64 expiry,uint256 nonce,bytes32 jobSpecHash,address voucherSigner)");
    /// the enum `billing` is a uint8 to EIP-712.
    bytes32 private constant _BID_TYPEHASH = keccak256(
        "Bid(address lab,bytes32 gpuModel,uint32 gpuCount,uint32 minMemoryGiB,uint32 minBandwidthGbps,uint256 requiredFeatures,uint256 acceptedFeatures,uint8 billing,bool allOrNone,uint256 maxPricePerGpuSecond,uint64 duration,uint64 expiry,uint256 nonce,bytes32 jobSpecHash,address voucherSigner)"
    );
    /// @dev keccak256("Voucher(bytes32 leaseId,uint256 cumulativeAmount,bytes32 receiptHash)")
    bytes32 private constant _VOUCHER_TYPEHASH =
        keccak256("Voucher(bytes32 leaseId,uint256 cumulativeAmount,bytes32 receiptHash)");
    /// @dev keccak256("Receipt(bytes32 leaseId,uint64 seq,bytes32 prevHash,uint64 periodStart,uint64 periodEnd,uint64 gpuSecondsCumulative,bytes32 outputRoot,bytes32 metricsHash,bytes32 attestationHash)"),
    /// verbatim market.protocol.types.Receipt's type string.
    bytes32 private constant _RECEIPT_TYPEHASH = keccak256(
        "Receipt(bytes32 leaseId,uint64 seq,bytes32 prevHash,uint64 periodStart,uint64 periodEnd,uint64 gpuSecondsCumulative,bytes32 outputRoot,bytes32 metricsHash,bytes32 attestationHash)"
    );

    /// @notice The highest protocol fee a deployment may set: 10%.
    uint256 public constant MAX_FEE_BPS = 1_000;
    uint256 private constant _BPS = 10_000;
    /// @dev Bit offsets of LeaseState's `status` and `slashed` in its storage word.
    uint256 private constant _STATUS_SHIFT = 192;
    uint256 private constant _SLASHED_SHIFT = 200;
    /// @dev The low 15 bits and the top bit of each 16-bit lane of a features word.
    uint256 private constant _LANE_LOW_BITS = 0x7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff7fff;
    uint256 private constant _LANE_TOP_BITS = 0x8000800080008000800080008000800080008000800080008000800080008000;

    /// @dev See `_credits`.
    struct Credit {
        uint256 plusOneAndSlashed;
    }

    IERC20 private immutable _token;
    IProviderRegistry private immutable _registry;
    uint256 private immutable _minStake;
    uint64 private immutable _claimWindow;
    uint40 private immutable _challengeWindow;
    uint256 private immutable _slashPenalty;
    uint16 private immutable _feeBps;
    address private immutable _treasury;

    // Written through storage references and, in a slash, by one assembly store, which slither
    // does not follow (a false "never initialized").
    // slither-disable-next-line uninitialized-state
    mapping(bytes32 leaseId => LeaseState) private _leases;
    mapping(address signer => mapping(bytes32 orderHash => OrderState)) private _orders;
    mapping(address signer => uint256) private _minNonce;
    /// @dev One account's credit word (a struct so that a read and a write hash the key once).
    /// Low 128 bits: an account's credit plus one, once it was ever credited (zero before).
    /// Withdrawing leaves them at 1, not 0, so the account's next credit rewrites a non-zero slot
    /// (2,900 gas) instead of setting a zero one (20,000): a claim after a withdrawal stays cheap.
    /// High 128 bits: stake slashed to the account, which the registry holds until the account
    /// withdraws (docs/decisions/0006-slashing.md); zero for every account never slashed for.
    // Written through storage references, which slither does not follow (see _leases).
    // slither-disable-next-line uninitialized-state
    mapping(address account => Credit) private _credits;
    /// @dev Claims from posted receipts, apart from `_leases` so that opening and claiming a lease
    /// never touch them.
    mapping(bytes32 leaseId => PendingClaim) private _claims;

    /// @param token_ The settlement and staking token (any ERC-20).
    /// @param minStake_ Free stake a provider needs for leases to open against it.
    /// @param unbondingDelay_ Seconds a provider waits between unstake request and withdrawal.
    /// @param claimWindow_ Seconds after a lease's end during which only its provider may close it.
    /// @param challengeWindow_ Seconds a posted receipt's claim waits for the lab's dispute.
    /// @param slashPenalty_ Stake a proof of cheating slashes to the lab (at most the whole stake).
    /// @param feeBps_ Protocol fee on payments in basis points (0 for none, at most MAX_FEE_BPS).
    /// @param treasury_ Receiver of protocol fees (may be zero when the fee is zero).
    constructor(
        IERC20 token_,
        uint256 minStake_,
        uint40 unbondingDelay_,
        uint64 claimWindow_,
        uint40 challengeWindow_,
        uint256 slashPenalty_,
        uint16 feeBps_,
        address treasury_
    ) EIP712("gpumarket", "1") {
        if (feeBps_ > MAX_FEE_BPS) revert MarketFeeTooHigh(feeBps_, MAX_FEE_BPS);
        if (feeBps_ > 0 && treasury_ == address(0)) revert MarketZeroTreasury();
        _token = token_;
        _minStake = minStake_;
        _claimWindow = claimWindow_;
        _challengeWindow = challengeWindow_;
        _slashPenalty = slashPenalty_;
        _feeBps = feeBps_;
        _treasury = treasury_;
        _registry = new ProviderRegistry(token_, address(this), minStake_, unbondingDelay_);
    }

    // --- opening leases ------------------------------------------------------------------------

    /// @inheritdoc IMarket
    function openLease(Offer calldata offer, bytes calldata offerSig, Bid calldata bid, bytes calldata bidSig, uint32 gpus)
        external
        nonReentrant
        returns (bytes32)
    {
        return _openLease(offer, offerSig, bid, bidSig, gpus);
    }

    /// @inheritdoc IMarket
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
        _checkStake(offer.provider);
        uint256 escrow;
        (id, escrow) = _record(offer, bid, gpus, price, offerHash, bidHash);
        if (bid.allOrNone) _checkCluster(bid, bidHash);
        // The lab authorised this pull by signing the bid, checked in _checkBid.
        // slither-disable-next-line arbitrary-send-erc20
        _token.safeTransferFrom(bid.lab, address(this), escrow);
    }

    /// @inheritdoc IMarket
    function openLeaseBatch(SignedOffer[] calldata offers, SignedBid[] calldata bids, Match[] calldata matches)
        external
        nonReentrant
        returns (bytes32[] memory leaseIds)
    {
        (leaseIds,) = _openBatch(offers, bids, matches, 0, false);
    }

    /// @inheritdoc IMarket
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
    /// `clearingPrice`. Orders are checked once each, then the matches recorded, then all-or-none
    /// bids checked whole, and the escrow pulled last (one transfer per run of one lab's bids).
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
            _checkStake(offer.provider);
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

    /// @dev Records the fills, stores the lease and returns its id and escrow. Moves no token.
    function _record(
        Offer calldata offer,
        Bid calldata bid,
        uint32 gpus,
        uint256 price,
        bytes32 offerHash,
        bytes32 bidHash
    ) private returns (bytes32 id, uint256 escrow) {
        _fill(offer.provider, offerHash, offer.nonce, offer.gpuCount, gpus);
        uint128 bidFilledBefore = _fill(bid.lab, bidHash, bid.nonce, bid.gpuCount, gpus);
        if (bid.duration > type(uint64).max - block.timestamp) revert MarketLeaseTooLong(bid.duration);
        escrow = _escrow(price, gpus, bid.duration);
        Lease memory lease = Lease({
            provider: offer.provider,
            lab: bid.lab,
            gpus: gpus,
            pricePerGpuSecond: price,
            start: uint64(block.timestamp),
            duration: bid.duration,
            salt: keccak256(abi.encode(offerHash, bidHash, bidFilledBefore)),
            billing: bid.billing,
            receiptSigner: offer.receiptSigner,
            voucherSigner: bid.voucherSigner
        });
        // keccak256(abi.encode(lease)), hashed in place: a memory struct of static fields is its
        // ABI encoding, ten clean words.
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            id := keccak256(lease, 0x140)
        }
        // A fresh salt per fill means the id is new, so `paid` and `slashed` are zero already: only
        // the end and the status are set (one write, cheaper than the whole struct). The slot is
        // written before any token call.
        LeaseState storage state = _leases[id];
        state.end = lease.start + lease.duration;
        state.status = LeaseStatus.Active;
        emit LeaseOpened(id, lease.provider, lease.lab, offerHash, bidHash, lease);
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

    /// @dev The offer's EIP-712 digest: its struct hash is keccak256(abi.encode(_OFFER_TYPEHASH,
    /// offer)), hashed from a copy of the calldata words (every field is a static word) without
    /// the ABI encoder's per-field checks. A field with dirty high bits gives a digest no signer
    /// signed, so the signature check that always follows refuses it; the fields read later are
    /// checked by the ABI decoder as usual.
    function _hashOffer(Offer calldata offer) private view returns (bytes32) {
        return _hashTypedDataV4(_structHash(_OFFER_TYPEHASH, _offerWords(offer), 13 * 0x20));
    }

    /// @dev The bid's EIP-712 digest, hashed as `_hashOffer` hashes an offer.
    function _hashBid(Bid calldata bid) private view returns (bytes32) {
        return _hashTypedDataV4(_structHash(_BID_TYPEHASH, _bidWords(bid), 15 * 0x20));
    }

    function _offerWords(Offer calldata offer) private pure returns (uint256 offset) {
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            offset := offer
        }
    }

    function _bidWords(Bid calldata bid) private pure returns (uint256 offset) {
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            offset := bid
        }
    }

    /// @dev keccak256(typehash || the `size` bytes of calldata at `offset`).
    function _structHash(bytes32 typehash, uint256 offset, uint256 size) private pure returns (bytes32 hash) {
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), offset, size)
            hash := keccak256(ptr, add(size, 0x20))
        }
    }

    /// @dev Every signed term of the pair but the price: model, duration, the bid's requirements
    /// against what the offer signed, and the billing mode. market.matching's `fits` is this rule.
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
    }

    /// @dev The top bit of each 16-bit lane of `x` that is not zero: adding 0x7fff to a lane's low
    /// 15 bits reaches its top bit iff they are not all zero, and never carries into the next lane.
    function _nonZeroLanes(uint256 x) private pure returns (uint256) {
        unchecked {
            return (((x & _LANE_LOW_BITS) + _LANE_LOW_BITS) | x) & _LANE_TOP_BITS;
        }
    }

    /// @dev Reverts unless the provider is registered with at least the minimum free stake.
    /// `_registry.stakeStatus(provider)`, encoded and decoded by hand in scratch space (the
    /// registry is this market's own and answers two words): a few hundred gas less than the
    /// compiler's call on every lease opened. A revert is passed on.
    function _checkStake(address provider) private view {
        address registry_ = address(_registry);
        bytes4 selector = IProviderRegistry.stakeStatus.selector;
        bool registered;
        uint256 free;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            mstore(0x00, selector)
            mstore(0x04, provider)
            if iszero(staticcall(gas(), registry_, 0x00, 0x24, 0x00, 0x40)) {
                let ptr := mload(0x40)
                returndatacopy(ptr, 0, returndatasize())
                revert(ptr, returndatasize())
            }
            if lt(returndatasize(), 0x40) { revert(0, 0) }
            registered := iszero(iszero(mload(0x00)))
            free := mload(0x20)
        }
        if (!registered) revert MarketProviderNotRegistered(provider);
        if (free < _minStake) revert MarketProviderStakeTooLow(provider, free, _minStake);
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
        if (nonce < floor) revert MarketOrderNonceCancelled(orderHash, nonce, floor);
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

    /// @dev Reverts unless `signature` is the ECDSA signature of `key` (receipts and vouchers: keys
    /// fixed when the lease opened, never a contract's revocable answer).
    function _checkKey(address key, bytes32 digest, bytes calldata signature) private view {
        if (!_recovers(key, digest, signature)) revert MarketInvalidSignature(digest, key);
    }

    /// @dev The key that signs the lease's receipts: its receipt signer, or the provider. Read
    /// from the calldata words as they are: every caller has matched the terms to an opened
    /// lease's id, hashed from clean words (see `_leaseId`).
    function _receiptKey(Lease calldata lease) private pure returns (address key) {
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            // receiptSigner is word 8, provider word 0.
            key := calldataload(add(lease, 0x100))
            if iszero(key) { key := calldataload(lease) }
        }
    }

    /// @dev The key that signs the lease's vouchers: its voucher signer, or the lab.
    function _voucherKey(Lease calldata lease) private pure returns (address key) {
        key = lease.voucherSigner;
        if (key == address(0)) key = lease.lab;
    }

    /// @dev Whether `signature` is `signer`'s ECDSA signature of `digest`, 65 bytes (r, s, v) or
    /// EIP-2098's compact 64 (r, vs), which proofs of cheating use for their smaller calldata.
    /// Malleable signatures (s in the upper half order) and any v but 27 or 28 are refused, as
    /// OpenZeppelin's ECDSA refuses them; the `ecrecover` precompile is called directly, without
    /// the library's error reporting, which the market does not use. Tried before ERC-1271 for gas:
    /// SignatureChecker reads the signer's code size first, an EXTCODESIZE that costs 2,600 gas
    /// for an account the transaction has not touched yet, while most signers are EOAs. A contract
    /// signer falls through, having spent one failed ecrecover (its address has no known key). An
    /// EIP-7702 account has code but also its key, whose signature it could always act on anyway,
    /// so accepting it grants nothing more.
    function _recovers(address signer, bytes32 digest, bytes calldata signature) private view returns (bool valid) {
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            let length := signature.length
            if or(eq(length, 64), eq(length, 65)) {
                let r := calldataload(signature.offset)
                let s := calldataload(add(signature.offset, 0x20))
                let v := 0
                switch length
                case 64 {
                    // vs: the parity of v in the top bit, s below it.
                    v := add(shr(255, s), 27)
                    s := and(s, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff)
                }
                default { v := byte(0, calldataload(add(signature.offset, 0x40))) }
                if iszero(gt(s, 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0)) {
                    // ecrecover(digest, v, r, s) in free memory (not allocated: only the call reads
                    // it); the precompile returns the signer, or nothing when it cannot recover one
                    // (v not 27 or 28 included), so a zero `signer` never matches.
                    let ptr := mload(0x40)
                    mstore(ptr, digest)
                    mstore(add(ptr, 0x20), v)
                    mstore(add(ptr, 0x40), r)
                    mstore(add(ptr, 0x60), s)
                    let success := staticcall(gas(), 0x01, ptr, 0x80, 0x00, 0x20)
                    valid := and(success, and(eq(returndatasize(), 0x20), eq(mload(0x00), signer)))
                }
            }
        }
    }

    function _escrow(uint256 price, uint256 gpus, uint256 duration) private pure returns (uint256 escrow) {
        // price < 2^128, gpus < 2^32, duration < 2^64: the product fits in 2^224 and cannot overflow.
        if (price > type(uint128).max) revert MarketEscrowOverflow(price, gpus, duration);
        escrow = price * gpus * duration;
        if (escrow > type(uint128).max) revert MarketEscrowOverflow(price, gpus, duration);
    }

    // --- cancellation --------------------------------------------------------------------------

    /// @inheritdoc IMarket
    function cancelOrder(bytes32 orderHash) external {
        if (_orders[msg.sender][orderHash].cancelled) return; // already cancelled: no change, no event
        _orders[msg.sender][orderHash].cancelled = true;
        emit OrderCancelled(msg.sender, orderHash);
    }

    /// @inheritdoc IMarket
    function cancelOrdersUpTo(uint256 minNonce_) external {
        uint256 current = _minNonce[msg.sender];
        if (minNonce_ <= current) revert MarketNonceFloorNotRaised(current, minNonce_);
        _minNonce[msg.sender] = minNonce_;
        emit NonceFloorRaised(msg.sender, minNonce_);
    }

    // --- payment -------------------------------------------------------------------------------

    /// @inheritdoc IMarket
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

    /// @inheritdoc IMarket
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
        uint256 target = lease.pricePerGpuSecond * lease.gpus * lease.duration;
        if (cumulativeAmount < target) target = cumulativeAmount;
        uint128 paid = state.paid;
        if (target <= paid) {
            return (0, id, abi.encodeWithSelector(MarketNothingToClaim.selector, id, cumulativeAmount, paid));
        }
        state.paid = uint128(target);
        amount = target - paid;
        emit Claimed(id, amount, target, receiptHash);
    }

    /// @dev Reverts with an error `_redeem`, `_close` or `_finalize` encoded, with its arguments.
    function _revertWith(bytes memory err) private pure {
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            revert(add(err, 0x20), mload(err))
        }
    }

    /// @dev Credits `amount` to `provider`, less the protocol fee, which is credited to the treasury.
    function _creditPayment(address provider, uint256 amount) private {
        uint256 fee = amount * _feeBps / _BPS;
        if (fee > 0) {
            _credit(_treasury, fee);
            emit FeePaid(_treasury, fee);
        }
        _credit(provider, amount - fee);
    }

    /// @dev Adds `amount` to `account`'s credit (see _credits for the plus one). Every credit is
    /// backed by tokens the market holds, so it stays below 2^128 for any token whose supply does;
    /// with a larger one it could carry into the slashed half, which is refused.
    function _credit(address account, uint256 amount) private {
        Credit storage credit = _credits[account];
        uint256 stored = credit.plusOneAndSlashed;
        uint256 updated = (stored == 0 ? 1 : stored) + amount;
        if (updated >> 128 != stored >> 128) revert MarketCreditOverflow(account, amount);
        credit.plusOneAndSlashed = updated;
    }

    /// @dev Like _credit, and adds `slashed` to the stake slashed to `account` (the high half), in
    /// the same write. Each slash is at most a uint96 stake, so the high half cannot overflow before
    /// 2^32 slashes of the largest stake to one account (and would revert then).
    function _creditWithSlashed(address account, uint256 amount, uint256 slashed) private {
        Credit storage credit = _credits[account];
        uint256 stored = credit.plusOneAndSlashed;
        uint256 updated = (stored == 0 ? 1 : stored) + amount;
        if (updated >> 128 != stored >> 128) revert MarketCreditOverflow(account, amount);
        credit.plusOneAndSlashed = updated + (slashed << 128);
    }

    // --- end of a lease ------------------------------------------------------------------------

    /// @inheritdoc IMarket
    function terminate(Lease calldata lease, uint256 cumulativeAmount) external nonReentrant {
        bytes32 id = _leaseId(lease);
        LeaseState storage state = _leases[id];
        if (state.status == LeaseStatus.None) revert MarketUnknownLease(id);
        if (msg.sender != lease.lab) revert MarketNotLab(id, msg.sender);
        if (state.status != LeaseStatus.Active) revert MarketLeaseNotOpen(id, state.status);
        if (block.timestamp >= state.end) revert MarketLeaseEnded(id, state.end);
        uint256 cap = lease.pricePerGpuSecond * lease.gpus * lease.duration;
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

    /// @inheritdoc IMarket
    function closeLease(Lease calldata lease) external nonReentrant returns (uint256 refund) {
        bytes memory err;
        (refund,, err) = _close(lease);
        if (err.length > 0) _revertWith(err);
    }

    /// @inheritdoc IMarket
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

    /// @dev Closes a lease and credits its lab the unpaid escrow. Never reverts on bad input: it
    /// returns the encoded custom error instead, so a batch can skip the item.
    function _close(Lease calldata lease) private returns (uint256 refund, bytes32 id, bytes memory err) {
        id = _leaseId(lease);
        LeaseState storage state = _leases[id];
        LeaseStatus status = state.status;
        if (status == LeaseStatus.None) return (0, id, abi.encodeWithSelector(MarketUnknownLease.selector, id));
        if (status == LeaseStatus.Closed) {
            return (0, id, abi.encodeWithSelector(MarketLeaseNotOpen.selector, id, status));
        }
        if (msg.sender != lease.provider) {
            uint256 closesAt = uint256(state.end) + _claimWindow;
            if (block.timestamp < closesAt) {
                return (0, id, abi.encodeWithSelector(MarketClaimWindowOpen.selector, id, closesAt));
            }
            // A lab must not close away a claim it neither paid nor disputed.
            uint64 readyAt = _claims[id].readyAt;
            if (readyAt != 0) return (0, id, abi.encodeWithSelector(MarketClaimPending.selector, id, readyAt));
        }
        uint256 paid = state.paid;
        // paid <= escrow always holds, so the refund cannot underflow.
        refund = lease.pricePerGpuSecond * lease.gpus * lease.duration - paid;
        state.status = LeaseStatus.Closed;
        emit LeaseClosed(id, paid, refund);
        if (refund > 0) _credit(lease.lab, refund);
    }

    // --- withdrawal ----------------------------------------------------------------------------

    /// @inheritdoc IMarket
    function withdraw() external nonReentrant returns (uint256 amount) {
        Credit storage account = _credits[msg.sender];
        uint256 stored = account.plusOneAndSlashed;
        // Below 2, the credit is zero and nothing was slashed to the account (see _credits).
        if (stored < 2) revert MarketNothingToWithdraw(msg.sender);
        uint256 slashed = stored >> 128;
        uint256 credit;
        // The low half is at least 1 once the account was credited, which every slash to it is;
        // the halves are below 2^128 each, so neither line overflows or underflows.
        unchecked {
            credit = uint128(stored) - 1;
            amount = credit + slashed;
        }
        // The credit is cleared before the token calls, so a re-entered withdraw finds nothing.
        account.plusOneAndSlashed = 1;
        emit Withdrawn(msg.sender, amount);
        if (credit > 0) _token.safeTransfer(msg.sender, credit);
        if (slashed > 0) _registry.release(msg.sender, slashed);
    }

    // --- proofs of cheating --------------------------------------------------------------------

    /// @inheritdoc IMarket
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

    /// @inheritdoc IMarket
    function slashImpossibleUsage(Lease calldata lease, uint64 seq, ReceiptBody calldata r, bytes calldata sig)
        external
        returns (uint256)
    {
        (bytes32 id, LeaseState storage state, uint256 word) = _slashable(lease);
        uint256 maxGpuSeconds = _maxGpuSeconds(lease, r.periodEnd, uint256(lease.start) + lease.duration);
        if (r.periodEnd <= block.timestamp && r.periodStart >= lease.start && r.gpuSecondsCumulative <= maxGpuSeconds)
        {
            revert MarketUsagePossible(id, r.gpuSecondsCumulative, maxGpuSeconds);
        }
        _checkKey(_receiptKey(lease), _receiptDigest(_domainSeparatorV4(), id, seq, r), sig);
        return _slash(lease, id, state, word);
    }

    /// @dev The lease's id, state and the state's one storage word, read once, if a proof may slash
    /// it: known, and not slashed before.
    function _slashable(Lease calldata lease)
        private
        view
        returns (bytes32 id, LeaseState storage state, uint256 word)
    {
        id = _leaseId(lease);
        state = _leases[id];
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            word := sload(state.slot)
        }
        // LeaseState's layout: paid in bits 0-127, end 128-191, status 192-199, slashed 200-207.
        if (uint8(word >> _STATUS_SHIFT) == uint8(LeaseStatus.None)) revert MarketUnknownLease(id);
        if (uint8(word >> _SLASHED_SHIFT) != 0) revert MarketLeaseAlreadySlashed(id);
    }

    /// @dev Takes the penalty from the provider's stake for the lab, marks the lease slashed and
    /// closed, and credits the lab the penalty and (unless the lease had closed) the unpaid escrow.
    /// `word` is the lease's state as `_slashable` read it. Moves no token: the registry keeps the
    /// slashed stake until the lab withdraws. No call leaves this market's own two contracts, so
    /// there is nothing to re-enter.
    function _slash(Lease calldata lease, bytes32 id, LeaseState storage state, uint256 word)
        private
        returns (uint256 penalty)
    {
        // The terms hash to an opened lease's id (`_slashable`), and that id was hashed from the
        // terms' clean ABI words: every word is clean, and is read as it is. The escrow fits in
        // uint128 (checked at opening) and paid <= escrow: neither the product nor the difference
        // overflows.
        address provider;
        address lab;
        uint256 escrow;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            provider := calldataload(lease)
            lab := calldataload(add(lease, 0x20))
            // gpus * pricePerGpuSecond * duration: words 2, 3 and 5.
            escrow := mul(mul(calldataload(add(lease, 0x40)), calldataload(add(lease, 0x60))), calldataload(add(lease, 0xa0)))
        }
        uint256 refund = 0;
        if (uint8(word >> _STATUS_SHIFT) != uint8(LeaseStatus.Closed)) {
            unchecked {
                refund = escrow - uint128(word);
            }
        }
        // One write: closed and slashed, paid and end kept; before the registry call.
        word = (word & ~(uint256(0xffff) << _STATUS_SHIFT)) | (uint256(uint8(LeaseStatus.Closed)) << _STATUS_SHIFT)
            | (uint256(1) << _SLASHED_SHIFT);
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            sstore(state.slot, word)
        }
        penalty = _slashStake(provider);
        emit LeaseSlashed(id, provider, penalty, refund);
        _creditWithSlashed(lab, refund, penalty);
    }

    /// @dev `_registry.slash(provider, _slashPenalty)`, encoded and decoded by hand (the registry
    /// is this market's own, created in the constructor, and answers one word): a few hundred gas
    /// less than the compiler's call, on the path the slash gas goal measures. A revert is passed on.
    function _slashStake(address provider) private returns (uint256 penalty) {
        address registry_ = address(_registry);
        uint256 amount = _slashPenalty;
        bytes4 selector = IProviderRegistry.slash.selector;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            // slash(provider, amount) in free memory (not allocated: only the call reads it).
            let ptr := mload(0x40)
            mstore(ptr, selector)
            mstore(add(ptr, 0x04), provider)
            mstore(add(ptr, 0x24), amount)
            if iszero(call(gas(), registry_, 0, ptr, 0x44, 0x00, 0x20)) {
                returndatacopy(ptr, 0, returndatasize())
                revert(ptr, returndatasize())
            }
            if lt(returndatasize(), 0x20) { revert(0, 0) }
            penalty := mload(0x00)
        }
    }

    /// @dev GPU-seconds the lease's GPUs can have run from its start until `periodEnd`, or until
    /// `end` if earlier; zero for a period ending before the lease started. At most
    /// 2^32 * 2^64: no overflow.
    function _maxGpuSeconds(Lease calldata lease, uint256 periodEnd, uint256 end) private pure returns (uint256) {
        uint256 until = periodEnd < end ? periodEnd : end;
        return until > lease.start ? lease.gpus * (until - lease.start) : 0;
    }

    /// @dev The receipt's EIP-712 digest. Its struct hash is keccak256(abi.encode(_RECEIPT_TYPEHASH,
    /// r)) computed over a copy of the calldata words, which the ABI encoder would also check and
    /// copy one field at a time. A uint64 field with high bits set is refused as that encoder would
    /// (an empty revert), so the digest is that of the receipt as the signer's EIP-712 encoding sees it.
    function _hashReceipt(Receipt calldata r) private view returns (bytes32) {
        bytes32 typehash = _RECEIPT_TYPEHASH;
        bytes32 structHash;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            // seq, periodStart, periodEnd, gpuSecondsCumulative: words 1, 3, 4, 5.
            let high := or(or(calldataload(add(r, 0x20)), calldataload(add(r, 0x60))), calldataload(add(r, 0x80)))
            if shr(64, or(high, calldataload(add(r, 0xa0)))) { revert(0, 0) }
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), r, 0x120)
            structHash := keccak256(ptr, 0x140)
        }
        return _hashTypedDataV4(structHash);
    }

    /// @dev The EIP-712 digest of the receipt of lease `id` with this `seq` and body, under
    /// `domainSeparator` (`_domainSeparatorV4()`, read once per proof): what `_hashReceipt` computes
    /// for the whole receipt, from the same words.
    function _receiptDigest(bytes32 domainSeparator, bytes32 id, uint64 seq, ReceiptBody calldata body)
        private
        pure
        returns (bytes32 digest)
    {
        bytes32 typehash = _RECEIPT_TYPEHASH;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            // periodStart, periodEnd, gpuSecondsCumulative (body words 1 to 3) must be uint64s, as
            // the ABI decoder would require.
            let high := or(or(calldataload(add(body, 0x20)), calldataload(add(body, 0x40))), calldataload(add(body, 0x60)))
            if shr(64, high) { revert(0, 0) }
            // keccak256(abi.encode(_RECEIPT_TYPEHASH, id, seq, body...)), in free memory (not
            // allocated: only the hashing reads it).
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            mstore(add(ptr, 0x20), id)
            mstore(add(ptr, 0x40), seq)
            calldatacopy(add(ptr, 0x60), body, 0xe0)
            let structHash := keccak256(ptr, 0x140)
            // MessageHashUtils.toTypedDataHash(domainSeparator, structHash).
            mstore(ptr, hex"1901")
            mstore(add(ptr, 0x02), domainSeparator)
            mstore(add(ptr, 0x22), structHash)
            digest := keccak256(ptr, 0x42)
        }
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

    /// @dev keccak256(abi.encode(lease)), hashed from a copy of the calldata words. A field with
    /// dirty high bits gives an id no lease has (ids are hashed from clean words at opening), and
    /// every use of the lease checks its state first; the fields read later are checked by the
    /// ABI decoder as usual.
    function _leaseId(Lease calldata lease) private pure returns (bytes32 id) {
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, lease, 0x140)
            id := keccak256(ptr, 0x140)
        }
    }

    // --- optimistic claims ---------------------------------------------------------------------

    /// @inheritdoc IMarket
    function postReceipt(Lease calldata lease, Receipt calldata r, bytes calldata sig) external {
        (bytes32 id, LeaseState storage state) = _openLeaseState(lease);
        if (msg.sender != lease.provider) revert MarketNotProvider(id, msg.sender);
        if (r.leaseId != id) revert MarketReceiptWrongLease(id, r.leaseId);
        {
            PendingClaim storage last = _claims[id];
            // A receipt hash is never zero, so a zero one means nothing was posted yet.
            if (last.receiptHash != bytes32(0) && r.seq <= last.seq) revert MarketReceiptNotNewer(id, r.seq, last.seq);
        }
        uint256 amount = _claimable(lease, id, state, r);
        bytes32 digest = _hashReceipt(r);
        _checkKey(_receiptKey(lease), digest, sig);
        // block.timestamp < 2^40 for millennia and the window is a uint40: no uint64 overflow.
        uint64 readyAt = uint64(block.timestamp) + _challengeWindow;
        // amount <= escrow < 2^128 (checked at opening).
        _claims[id] = PendingClaim({amount: uint128(amount), seq: r.seq, readyAt: readyAt, receiptHash: digest});
        emit ReceiptPosted(id, digest, amount, readyAt, r, sig);
    }

    /// @dev What receipt `r` is worth in total, price * usage, once its period and usage are checked
    /// against the lease's current end and now; reverts unless above what was paid.
    function _claimable(Lease calldata lease, bytes32 id, LeaseState storage state, Receipt calldata r)
        private
        view
        returns (uint256 amount)
    {
        if (r.periodStart < lease.start || r.periodEnd > block.timestamp) {
            revert MarketReceiptPeriodInvalid(id, r.periodStart, r.periodEnd, block.timestamp);
        }
        uint256 maxGpuSeconds = _maxGpuSeconds(lease, r.periodEnd, state.end);
        if (r.gpuSecondsCumulative > maxGpuSeconds) {
            revert MarketUsageImpossible(id, r.gpuSecondsCumulative, maxGpuSeconds);
        }
        // usage <= gpus * (end - start) <= gpus * duration, so amount <= escrow < 2^128: the escrow
        // caps it without a check.
        amount = lease.pricePerGpuSecond * r.gpuSecondsCumulative;
        uint128 paid = state.paid;
        if (amount <= paid) revert MarketNothingToClaim(id, amount, paid);
    }

    /// @inheritdoc IMarket
    function finalizeClaim(Lease calldata lease) external nonReentrant returns (uint256 amount) {
        bytes memory err;
        (amount,, err) = _finalize(lease);
        if (err.length > 0) _revertWith(err);
        if (amount > 0) _creditPayment(lease.provider, amount);
    }

    /// @inheritdoc IMarket
    function finalizeClaimBatch(Lease[] calldata leases) external nonReentrant returns (uint256 total) {
        // Payments to the same provider in consecutive items are summed into one credit (and fee).
        address payee = address(0);
        uint256 owed = 0;
        for (uint256 i = 0; i < leases.length; ++i) {
            Lease calldata lease = leases[i];
            (uint256 amount, bytes32 id, bytes memory err) = _finalize(lease);
            if (err.length > 0) {
                emit FinalizeSkipped(id, bytes4(err));
                continue;
            }
            if (lease.provider != payee) {
                if (owed > 0) _creditPayment(payee, owed);
                payee = lease.provider;
                owed = 0;
            }
            owed += amount;
            total += amount;
        }
        if (owed > 0) _creditPayment(payee, owed);
    }

    /// @dev Finalizes the lease's pending claim and records the payment, returning what it adds
    /// (the caller credits it). Never reverts on bad input: it returns the encoded custom error.
    function _finalize(Lease calldata lease) private returns (uint256 amount, bytes32 id, bytes memory err) {
        id = _leaseId(lease);
        LeaseState storage state = _leases[id];
        {
            LeaseStatus status = state.status;
            if (status == LeaseStatus.None) return (0, id, abi.encodeWithSelector(MarketUnknownLease.selector, id));
            if (status == LeaseStatus.Closed) {
                return (0, id, abi.encodeWithSelector(MarketLeaseNotOpen.selector, id, status));
            }
        }
        PendingClaim storage pending = _claims[id];
        uint64 readyAt = pending.readyAt;
        if (readyAt == 0) return (0, id, abi.encodeWithSelector(MarketNoPendingClaim.selector, id));
        if (block.timestamp < readyAt) {
            return (0, id, abi.encodeWithSelector(MarketChallengeWindowOpen.selector, id, readyAt));
        }
        uint128 target = pending.amount;
        pending.amount = 0;
        pending.readyAt = 0;
        uint128 paid = state.paid;
        if (target > paid) {
            state.paid = target;
            amount = target - paid;
            emit Claimed(id, amount, target, pending.receiptHash);
        }
        emit ClaimFinalized(id, pending.seq, pending.receiptHash, amount);
    }

    /// @inheritdoc IMarket
    function disputeClaim(Lease calldata lease) external {
        (bytes32 id,) = _openLeaseState(lease);
        if (msg.sender != lease.lab) revert MarketNotLab(id, msg.sender);
        PendingClaim storage pending = _claims[id];
        uint64 readyAt = pending.readyAt;
        if (readyAt == 0) revert MarketNoPendingClaim(id);
        if (block.timestamp >= readyAt) revert MarketChallengeWindowClosed(id, readyAt);
        // The seq and hash stay: a receipt up to this seq cannot be posted again.
        pending.amount = 0;
        pending.readyAt = 0;
        emit ClaimDisputed(id, pending.seq, pending.receiptHash);
    }

    /// @dev The state of a lease that is Active or Terminated.
    function _openLeaseState(Lease calldata lease) private view returns (bytes32 id, LeaseState storage state) {
        id = _leaseId(lease);
        state = _leases[id];
        LeaseStatus status = state.status;
        if (status == LeaseStatus.None) revert MarketUnknownLease(id);
        if (status == LeaseStatus.Closed) revert MarketLeaseNotOpen(id, status);
    }

    // --- views ---------------------------------------------------------------------------------

    /// @inheritdoc IMarket
    function hashOffer(Offer calldata offer) external view returns (bytes32) {
        return _hashOffer(offer);
    }

    /// @inheritdoc IMarket
    function hashBid(Bid calldata bid) external view returns (bytes32) {
        return _hashBid(bid);
    }

    /// @inheritdoc IMarket
    function hashVoucher(Voucher calldata voucher) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(_VOUCHER_TYPEHASH, voucher)));
    }

    /// @inheritdoc IMarket
    function hashReceipt(Receipt calldata receipt) external view returns (bytes32) {
        return _hashReceipt(receipt);
    }

    /// @inheritdoc IMarket
    function leaseId(Lease calldata lease) external pure returns (bytes32) {
        return _leaseId(lease);
    }

    /// @inheritdoc IMarket
    function leaseState(bytes32 leaseId_) external view returns (LeaseState memory) {
        return _leases[leaseId_];
    }

    /// @inheritdoc IMarket
    function withdrawable(address account) external view returns (uint256) {
        uint256 stored = _credits[account].plusOneAndSlashed;
        return stored == 0 ? 0 : uint128(stored) - 1 + (stored >> 128);
    }

    /// @inheritdoc IMarket
    function pendingClaim(bytes32 leaseId_) external view returns (PendingClaim memory) {
        return _claims[leaseId_];
    }

    /// @inheritdoc IMarket
    function orderState(address signer, bytes32 orderHash) external view returns (OrderState memory) {
        return _orders[signer][orderHash];
    }

    /// @inheritdoc IMarket
    function minNonce(address signer) external view returns (uint256) {
        return _minNonce[signer];
    }

    /// @inheritdoc IMarket
    function registry() external view returns (IProviderRegistry) {
        return _registry;
    }

    /// @inheritdoc IMarket
    function token() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc IMarket
    function claimWindow() external view returns (uint64) {
        return _claimWindow;
    }

    /// @inheritdoc IMarket
    function challengeWindow() external view returns (uint40) {
        return _challengeWindow;
    }

    /// @inheritdoc IMarket
    function slashPenalty() external view returns (uint256) {
        return _slashPenalty;
    }

    /// @inheritdoc IMarket
    function feeBps() external view returns (uint16) {
        return _feeBps;
    }

    /// @inheritdoc IMarket
    function treasury() external view returns (address) {
        return _treasury;
    }

    /// @inheritdoc IMarket
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
