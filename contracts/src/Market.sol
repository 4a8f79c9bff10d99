// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
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
/// Nobody holds special powers: the fee and treasury are fixed at deployment, and the registry is
/// created here with this market as its only slasher.
contract Market is IMarket, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @dev keccak256("Offer(address provider,bytes32 gpuModel,uint32 gpuCount,uint32 memoryGiB,uint256 pricePerGpuSecond,uint64 minDuration,uint64 maxDuration,uint64 expiry,uint256 nonce,bytes32 attributesHash)")
    bytes32 private constant _OFFER_TYPEHASH = keccak256(
        "Offer(address provider,bytes32 gpuModel,uint32 gpuCount,uint32 memoryGiB,uint256 pricePerGpuSecond,uint64 minDuration,uint64 maxDuration,uint64 expiry,uint256 nonce,bytes32 attributesHash)"
    );
    /// @dev keccak256("Bid(address lab,bytes32 gpuModel,uint32 gpuCount,uint256 maxPricePerGpuSecond,uint64 duration,uint64 expiry,uint256 nonce,bytes32 jobSpecHash)")
    bytes32 private constant _BID_TYPEHASH = keccak256(
        "Bid(address lab,bytes32 gpuModel,uint32 gpuCount,uint256 maxPricePerGpuSecond,uint64 duration,uint64 expiry,uint256 nonce,bytes32 jobSpecHash)"
    );
    /// @dev keccak256("Voucher(bytes32 leaseId,uint256 cumulativeAmount,bytes32 receiptHash)")
    bytes32 private constant _VOUCHER_TYPEHASH =
        keccak256("Voucher(bytes32 leaseId,uint256 cumulativeAmount,bytes32 receiptHash)");

    /// @notice The highest protocol fee a deployment may set: 10%.
    uint256 public constant MAX_FEE_BPS = 1_000;
    uint256 private constant _BPS = 10_000;
    /// @notice Gas an ERC-1271 lab contract may spend checking one voucher in `claimBatch`, so that
    /// one contract burning gas costs the batch this much and is skipped instead of failing it.
    /// Enough for a Safe or an ECDSA-based smart wallet; a lab whose check needs more is paid by
    /// `claim`, which gives the check all the transaction's gas.
    uint256 public constant BATCH_ERC1271_GAS = 50_000;

    IERC20 private immutable _token;
    IProviderRegistry private immutable _registry;
    uint256 private immutable _minStake;
    uint64 private immutable _claimWindow;
    uint16 private immutable _feeBps;
    address private immutable _treasury;

    mapping(bytes32 leaseId => LeaseState) private _leases;
    mapping(address signer => mapping(bytes32 orderHash => OrderState)) private _orders;
    mapping(address signer => uint256) private _minNonce;
    /// @dev An account's credit plus one, once it was ever credited (zero before). Withdrawing
    /// leaves the slot at 1, not 0, so the account's next credit rewrites a non-zero slot (2,900
    /// gas) instead of setting a zero one (20,000): a claim after a withdrawal stays cheap.
    mapping(address account => uint256 creditPlusOne) private _credits;

    /// @param token_ The settlement and staking token (any ERC-20).
    /// @param minStake_ Free stake a provider needs for leases to open against it.
    /// @param unbondingDelay_ Seconds a provider waits between unstake request and withdrawal.
    /// @param claimWindow_ Seconds after a lease's end during which only its provider may close it.
    /// @param feeBps_ Protocol fee on payments in basis points (0 for none, at most MAX_FEE_BPS).
    /// @param treasury_ Receiver of protocol fees (may be zero when the fee is zero).
    constructor(
        IERC20 token_,
        uint256 minStake_,
        uint40 unbondingDelay_,
        uint64 claimWindow_,
        uint16 feeBps_,
        address treasury_
    ) EIP712("gpumarket", "1") {
        if (feeBps_ > MAX_FEE_BPS) revert MarketFeeTooHigh(feeBps_, MAX_FEE_BPS);
        if (feeBps_ > 0 && treasury_ == address(0)) revert MarketZeroTreasury();
        _token = token_;
        _minStake = minStake_;
        _claimWindow = claimWindow_;
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
        (bytes32 offerHash, bytes32 bidHash) = _checkOrders(offer, offerSig, bid, bidSig);
        return _record(offer, bid, gpus, offerHash, bidHash);
    }

    /// @dev Records the fills, checks the provider's stake, stores the lease and pulls the escrow.
    function _record(Offer calldata offer, Bid calldata bid, uint32 gpus, bytes32 offerHash, bytes32 bidHash)
        private
        returns (bytes32 id)
    {
        _fill(offer.provider, offerHash, offer.nonce, offer.gpuCount, gpus);
        uint128 bidFilledBefore = _fill(bid.lab, bidHash, bid.nonce, bid.gpuCount, gpus);

        {
            (bool registered, uint256 free) = _registry.stakeStatus(offer.provider);
            if (!registered) revert MarketProviderNotRegistered(offer.provider);
            if (free < _minStake) revert MarketProviderStakeTooLow(offer.provider, free, _minStake);
        }

        if (bid.duration > type(uint64).max - block.timestamp) revert MarketLeaseTooLong(bid.duration);
        uint256 escrow = _escrow(offer.pricePerGpuSecond, gpus, bid.duration);
        Lease memory lease = Lease({
            provider: offer.provider,
            lab: bid.lab,
            gpus: gpus,
            pricePerGpuSecond: offer.pricePerGpuSecond,
            start: uint64(block.timestamp),
            duration: bid.duration,
            salt: keccak256(abi.encode(offerHash, bidHash, bidFilledBefore))
        });
        id = keccak256(abi.encode(lease));
        // A fresh salt per fill means the id is new; the slot is written before the token call.
        _leases[id] = LeaseState({paid: 0, end: lease.start + lease.duration, status: LeaseStatus.Active});
        emit LeaseOpened(id, lease.provider, lease.lab, offerHash, bidHash, lease, escrow);
        // The lab authorised this pull by signing the bid, checked in _checkOrders.
        // slither-disable-next-line arbitrary-send-erc20
        _token.safeTransferFrom(bid.lab, address(this), escrow);
    }

    /// @dev Checks everything about the pair that does not depend on storage; returns the hashes.
    function _checkOrders(Offer calldata offer, bytes calldata offerSig, Bid calldata bid, bytes calldata bidSig)
        private
        view
        returns (bytes32 offerHash, bytes32 bidHash)
    {
        offerHash = _hashTypedDataV4(keccak256(abi.encode(_OFFER_TYPEHASH, offer)));
        bidHash = _hashTypedDataV4(keccak256(abi.encode(_BID_TYPEHASH, bid)));
        if (block.timestamp > offer.expiry) revert MarketOrderExpired(offerHash, offer.expiry);
        if (block.timestamp > bid.expiry) revert MarketOrderExpired(bidHash, bid.expiry);
        if (offer.gpuModel != bid.gpuModel) revert MarketGpuModelMismatch(offer.gpuModel, bid.gpuModel);
        if (bid.duration < offer.minDuration || bid.duration > offer.maxDuration) {
            revert MarketDurationOutOfRange(bid.duration, offer.minDuration, offer.maxDuration);
        }
        if (offer.pricePerGpuSecond > bid.maxPricePerGpuSecond) {
            revert MarketPriceNotCrossed(offer.pricePerGpuSecond, bid.maxPricePerGpuSecond);
        }
        _checkSignature(offer.provider, offerHash, offerSig);
        _checkSignature(bid.lab, bidHash, bidSig);
    }

    /// @dev Checks nonce floor, cancellation and remaining size, then records the fill.
    function _fill(address signer, bytes32 orderHash, uint256 nonce, uint32 size, uint32 gpus)
        private
        returns (uint128 filledBefore)
    {
        uint256 floor = _minNonce[signer];
        if (nonce < floor) revert MarketOrderNonceCancelled(orderHash, nonce, floor);
        OrderState storage state = _orders[signer][orderHash];
        if (state.cancelled) revert MarketOrderCancelled(orderHash);
        filledBefore = state.filled;
        // filledBefore <= size always holds, so the subtraction cannot underflow.
        uint256 remaining = size - filledBefore;
        if (gpus > remaining) revert MarketFillExceedsOrder(orderHash, gpus, remaining);
        state.filled = filledBefore + gpus;
    }

    function _checkSignature(address signer, bytes32 digest, bytes calldata signature) private view {
        // ECDSA first (see _recovers), then ERC-1271 for contract signers.
        if (_recovers(signer, digest, signature)) return;
        if (signer.code.length > 0 && SignatureChecker.isValidERC1271SignatureNowCalldata(signer, digest, signature)) {
            return;
        }
        revert MarketInvalidSignature(digest, signer);
    }

    /// @dev Whether `signature` is `signer`'s ECDSA signature of `digest` (OpenZeppelin rejects
    /// malleable and malformed ones). Tried before ERC-1271 for gas: SignatureChecker reads the
    /// signer's code size first, an EXTCODESIZE that costs 2,600 gas for an account the transaction
    /// has not touched yet, while most signers are EOAs. A contract signer falls through, having
    /// spent one failed ecrecover (its address has no known key). An EIP-7702 account has code
    /// but also its key, whose signature it could always act on anyway, so accepting it grants
    /// nothing more.
    function _recovers(address signer, bytes32 digest, bytes calldata signature) private pure returns (bool) {
        // The third value only details an error, which makes the signature invalid either way.
        // slither-disable-next-line unused-return
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        return err == ECDSA.RecoverError.NoError && recovered == signer;
    }

    /// @dev SignatureChecker.isValidERC1271SignatureNowCalldata with the call limited to
    /// BATCH_ERC1271_GAS, which OpenZeppelin does not offer. Only 32 bytes of the answer are
    /// copied, so a long return cannot cost memory either.
    function _isValidERC1271SignatureBounded(address signer, bytes32 digest, bytes calldata signature)
        private
        view
        returns (bool valid)
    {
        bytes4 selector = IERC1271.isValidSignature.selector;
        uint256 gasLimit = BATCH_ERC1271_GAS;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            // isValidSignature(digest, signature), ABI-encoded in free memory (not allocated: only
            // the call reads it): selector, digest, offset 0x40, length, data, zero padding.
            let ptr := mload(0x40)
            let length := signature.length
            mstore(ptr, selector)
            mstore(add(ptr, 0x04), digest)
            mstore(add(ptr, 0x24), 0x40)
            mstore(add(ptr, 0x44), length)
            calldatacopy(add(ptr, 0x64), signature.offset, length)
            mstore(add(add(ptr, 0x64), length), 0)
            let padded := shl(5, shr(5, add(length, 0x1f)))
            let success := staticcall(gasLimit, signer, ptr, add(padded, 0x64), 0x00, 0x20)
            valid := and(success, and(gt(returndatasize(), 0x1f), eq(mload(0x00), selector)))
        }
        // The sender must not be able to fail a valid contract signature by sending too little gas
        // for the call to get its limit (63/64 rule). If the call ran out of gas having been given
        // less than gasLimit, what is left now is below gasLimit / 63 (OpenZeppelin's
        // ERC2771Forwarder makes the same check); then the whole batch reverts.
        if (!valid && gasleft() < gasLimit / 63) revert MarketSignatureCheckOutOfGas(signer, gasLimit);
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
        (amount,, err) = _redeem(lease, cumulativeAmount, receiptHash, labSig, false);
        if (err.length > 0) {
            // Re-raise the custom error _redeem encoded, with its arguments.
            // solhint-disable-next-line no-inline-assembly
            assembly ("memory-safe") {
                revert(add(err, 0x20), mload(err))
            }
        }
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
                _redeem(item.lease, item.cumulativeAmount, item.receiptHash, item.signature, true);
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
    /// encoded custom error instead, so a batch can skip the item. In a batch (`batched`) an
    /// ERC-1271 lab contract's check gets at most BATCH_ERC1271_GAS.
    function _redeem(
        Lease calldata lease,
        uint256 cumulativeAmount,
        bytes32 receiptHash,
        bytes calldata labSig,
        bool batched
    ) private returns (uint256 amount, bytes32 id, bytes memory err) {
        id = keccak256(abi.encode(lease));
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
            if (!_isVoucherSigned(lease.lab, digest, labSig, batched)) {
                return (0, id, abi.encodeWithSelector(MarketInvalidSignature.selector, digest, lease.lab));
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

    /// @dev ECDSA first (see _recovers), then ERC-1271 for a contract lab, bounded in a batch.
    function _isVoucherSigned(address lab, bytes32 digest, bytes calldata signature, bool batched)
        private
        view
        returns (bool)
    {
        if (_recovers(lab, digest, signature)) return true;
        if (lab.code.length == 0) return false;
        return batched
            ? _isValidERC1271SignatureBounded(lab, digest, signature)
            : SignatureChecker.isValidERC1271SignatureNowCalldata(lab, digest, signature);
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
    /// backed by tokens the market holds, so the sum stays far below 2^256 (checked all the same).
    function _credit(address account, uint256 amount) private {
        uint256 stored = _credits[account];
        _credits[account] = (stored == 0 ? 1 : stored) + amount;
    }

    // --- end of a lease ------------------------------------------------------------------------

    /// @inheritdoc IMarket
    function terminate(Lease calldata lease, uint256 cumulativeAmount) external nonReentrant {
        bytes32 id = keccak256(abi.encode(lease));
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
        bytes32 id = keccak256(abi.encode(lease));
        LeaseState storage state = _leases[id];
        LeaseStatus status = state.status;
        if (status == LeaseStatus.None) revert MarketUnknownLease(id);
        if (status == LeaseStatus.Closed) revert MarketLeaseNotOpen(id, status);
        if (msg.sender != lease.provider) {
            uint256 closesAt = uint256(state.end) + _claimWindow;
            if (block.timestamp < closesAt) revert MarketClaimWindowOpen(id, closesAt);
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
        uint256 stored = _credits[msg.sender];
        if (stored < 2) revert MarketNothingToWithdraw(msg.sender);
        // stored >= 2 was just checked, so the subtraction cannot underflow.
        unchecked {
            amount = stored - 1;
        }
        // The credit is cleared before the token call, so a re-entered withdraw finds nothing.
        _credits[msg.sender] = 1;
        emit Withdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    // --- views ---------------------------------------------------------------------------------

    /// @inheritdoc IMarket
    function hashOffer(Offer calldata offer) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(_OFFER_TYPEHASH, offer)));
    }

    /// @inheritdoc IMarket
    function hashBid(Bid calldata bid) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(_BID_TYPEHASH, bid)));
    }

    /// @inheritdoc IMarket
    function hashVoucher(Voucher calldata voucher) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(_VOUCHER_TYPEHASH, voucher)));
    }

    /// @inheritdoc IMarket
    function leaseId(Lease calldata lease) external pure returns (bytes32) {
        return keccak256(abi.encode(lease));
    }

    /// @inheritdoc IMarket
    function leaseState(bytes32 leaseId_) external view returns (LeaseState memory) {
        return _leases[leaseId_];
    }

    /// @inheritdoc IMarket
    function withdrawable(address account) external view returns (uint256) {
        uint256 stored = _credits[account];
        return stored == 0 ? 0 : stored - 1;
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
