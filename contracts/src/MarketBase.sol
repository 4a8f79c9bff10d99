// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IMarketTypes} from "./interfaces/IMarketTypes.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";

/// @title MarketBase
/// @notice What `Market` and `MarketExtension` share: the deployment parameters (each contract
/// holds them as its own immutables), the one storage layout (declared here only, so that the
/// extension, run by delegatecall, reads and writes the market's slots), and the helpers both
/// halves call. Neither child declares storage of its own (docs/decisions/0013-stake-and-disputes.md).
abstract contract MarketBase is IMarketTypes, EIP712, ReentrancyGuardTransient {
    /// @dev keccak256("Offer(address provider,bytes32 gpuModel,uint32 gpuCount,uint32 memoryGiB,uint32 bandwidthGbps,uint256 features,uint8 billingModes,uint256 pricePerGpuSecond,uint64 minDuration,uint64 maxDuration,uint64 expiry,uint256 nonce,address receiptSigner,address arbiter,uint16 minChargeBps)")
    bytes32 internal constant _OFFER_TYPEHASH = keccak256(
        "Offer(address provider,bytes32 gpuModel,uint32 gpuCount,uint32 memoryGiB,uint32 bandwidthGbps,uint256 features,uint8 billingModes,uint256 pricePerGpuSecond,uint64 minDuration,uint64 maxDuration,uint64 expiry,uint256 nonce,address receiptSigner,address arbiter,uint16 minChargeBps)"
    );
    /// @dev keccak256("Bid(address lab,bytes32 gpuModel,uint32 gpuCount,uint32 minMemoryGiB,uint32 minBandwidthGbps,uint256 requiredFeatures,uint256 acceptedFeatures,uint8 billing,bool allOrNone,uint256 maxPricePerGpuSecond,uint64 duration,uint64 expiry,uint256 nonce,bytes32 jobSpecHash,address voucherSigner,address arbiter,uint16 maxMinChargeBps)");
    /// the enum `billing` is a uint8 to EIP-712.
    bytes32 internal constant _BID_TYPEHASH = keccak256(
        "Bid(address lab,bytes32 gpuModel,uint32 gpuCount,uint32 minMemoryGiB,uint32 minBandwidthGbps,uint256 requiredFeatures,uint256 acceptedFeatures,uint8 billing,bool allOrNone,uint256 maxPricePerGpuSecond,uint64 duration,uint64 expiry,uint256 nonce,bytes32 jobSpecHash,address voucherSigner,address arbiter,uint16 maxMinChargeBps)"
    );
    /// @dev keccak256("Voucher(bytes32 leaseId,uint256 cumulativeAmount,bytes32 receiptHash)")
    bytes32 internal constant _VOUCHER_TYPEHASH =
        keccak256("Voucher(bytes32 leaseId,uint256 cumulativeAmount,bytes32 receiptHash)");
    /// @dev keccak256("Receipt(bytes32 leaseId,uint64 seq,bytes32 prevHash,uint64 periodStart,uint64 periodEnd,uint64 gpuSecondsCumulative,bytes32 outputRoot,bytes32 metricsHash,bytes32 attestationHash)"),
    /// verbatim market.protocol.types.Receipt's type string.
    bytes32 internal constant _RECEIPT_TYPEHASH = keccak256(
        "Receipt(bytes32 leaseId,uint64 seq,bytes32 prevHash,uint64 periodStart,uint64 periodEnd,uint64 gpuSecondsCumulative,bytes32 outputRoot,bytes32 metricsHash,bytes32 attestationHash)"
    );

    /// @notice The highest protocol fee a deployment may set: 10%.
    uint256 public constant MAX_FEE_BPS = 1_000;
    uint256 internal constant _BPS = 10_000;
    /// @dev The longest unbonding delay a deployment may set (ten years): slashed stake vests at
    /// `now + delay`, kept in 32 bits of the credit word (see `_credits`).
    uint256 internal constant _MAX_UNBONDING_DELAY = 3650 days;
    /// @dev Size of a Lease's ABI encoding: twelve static words.
    uint256 internal constant _LEASE_SIZE = 0x180;
    /// @dev Bit offsets of LeaseState's fields after `paid` and `end` in its storage word.
    uint256 internal constant _STATUS_SHIFT = 192;
    uint256 internal constant _SLASHED_SHIFT = 200;
    uint256 internal constant _DISPUTED_SHIFT = 208;
    uint256 internal constant _RELEASED_SHIFT = 216;
    /// @dev Provider's first word: stake in bits 0-95, locked 96-191, unbondReadyAt, registered.
    uint256 internal constant _LOCKED_SHIFT = 96;
    uint256 internal constant _REGISTERED_SHIFT = 232;
    /// @dev The credit word: credit plus one in bits 0-127, slashed stake 128-223, vesting time 224-255.
    uint256 internal constant _SLASHED_CREDIT_SHIFT = 128;
    uint256 internal constant _VESTS_SHIFT = 224;

    /// @dev See `_credits`.
    struct Credit {
        uint256 word;
    }

    IERC20 internal immutable _token;
    uint256 internal immutable _minStake;
    uint40 internal immutable _unbondingDelay;
    uint64 internal immutable _claimWindow;
    uint40 internal immutable _challengeWindow;
    uint40 internal immutable _rulingWindow;
    uint32 internal immutable _stakeRatioBps;
    uint16 internal immutable _disputeBondBps;
    uint16 internal immutable _feeBps;
    address internal immutable _treasury;

    // The storage both halves share. Slither reads each contract alone, so a mapping one half
    // writes and the other reads (or written through storage references and assembly stores,
    // which it does not follow) looks "never initialized" to it: a false positive, disabled per
    // mapping below.
    // slither-disable-next-line uninitialized-state
    mapping(bytes32 leaseId => LeaseState) internal _leases;
    // slither-disable-next-line uninitialized-state
    mapping(address signer => mapping(bytes32 orderHash => OrderState)) internal _orders;
    // slither-disable-next-line uninitialized-state
    mapping(address signer => uint256) internal _minNonce;
    /// @dev One account's credit word (a struct so that a read and a write hash the key once).
    /// Bits 0-127: the account's credit plus one, once it was ever credited (zero before).
    /// Withdrawing leaves them at 1, not 0, so the account's next credit rewrites a non-zero slot
    /// (2,900 gas) instead of setting a zero one (20,000): a claim after a withdrawal stays cheap.
    /// Bits 128-223: stake slashed to the account, not yet withdrawn; bits 224-255: when it vests
    /// (the last slash plus the unbonding delay: a slash pays out no faster than unbonding would).
    // slither-disable-next-line uninitialized-state
    mapping(address account => Credit) internal _credits;
    /// @dev Claims from posted receipts, apart from `_leases` so that opening and claiming a lease
    /// never touch them.
    // slither-disable-next-line uninitialized-state
    mapping(bytes32 leaseId => PendingClaim) internal _claims;
    // slither-disable-next-line uninitialized-state
    mapping(address provider => IProviderRegistry.Provider) internal _providers;

    constructor(Params memory p) EIP712("gpumarket", "1") {
        if (p.feeBps > MAX_FEE_BPS) revert MarketFeeTooHigh(p.feeBps, MAX_FEE_BPS);
        if (p.feeBps > 0 && p.treasury == address(0)) revert MarketZeroTreasury();
        if (p.unbondingDelay > _MAX_UNBONDING_DELAY || p.disputeBondBps > _BPS) revert MarketBadParams();
        _token = IERC20(p.token);
        _minStake = p.minStake;
        _unbondingDelay = p.unbondingDelay;
        _claimWindow = p.claimWindow;
        _challengeWindow = p.challengeWindow;
        _rulingWindow = p.rulingWindow;
        _stakeRatioBps = p.stakeRatioBps;
        _disputeBondBps = p.disputeBondBps;
        _feeBps = p.feeBps;
        _treasury = p.treasury;
    }

    // --- order hashes --------------------------------------------------------------------------

    /// @dev The offer's EIP-712 digest: its struct hash is keccak256(abi.encode(_OFFER_TYPEHASH,
    /// offer)), hashed from a copy of the calldata words (every field is a static word) without
    /// the ABI encoder's per-field checks. A field with dirty high bits gives a digest no signer
    /// signed, so the signature check that always follows refuses it; the fields read later are
    /// checked by the ABI decoder as usual.
    function _hashOffer(Offer calldata offer) internal view returns (bytes32) {
        return _hashTypedDataV4(_structHash(_OFFER_TYPEHASH, _offerWords(offer), 15 * 0x20));
    }

    /// @dev The bid's EIP-712 digest, hashed as `_hashOffer` hashes an offer.
    function _hashBid(Bid calldata bid) internal view returns (bytes32) {
        return _hashTypedDataV4(_structHash(_BID_TYPEHASH, _bidWords(bid), 17 * 0x20));
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

    // --- leases --------------------------------------------------------------------------------

    /// @dev keccak256(abi.encode(lease)), hashed from a copy of the calldata words. A field with
    /// dirty high bits gives an id no lease has (ids are hashed from clean words at opening), and
    /// every use of the lease checks its state first; the fields read later are checked by the
    /// ABI decoder as usual.
    function _leaseId(Lease calldata lease) internal pure returns (bytes32 id) {
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, lease, _LEASE_SIZE)
            id := keccak256(ptr, _LEASE_SIZE)
        }
    }

    /// @dev The state of a lease that is Active or Terminated.
    function _openLeaseState(Lease calldata lease) internal view returns (bytes32 id, LeaseState storage state) {
        id = _leaseId(lease);
        state = _leases[id];
        LeaseStatus status = state.status;
        if (status == LeaseStatus.None) revert MarketUnknownLease(id);
        if (status == LeaseStatus.Closed) revert MarketLeaseNotOpen(id, status);
    }

    /// @dev price * gpus * duration, which fits in uint128 (checked at opening).
    function _escrowOf(Lease calldata lease) internal pure returns (uint256) {
        return lease.pricePerGpuSecond * lease.gpus * lease.duration;
    }

    /// @dev The stake a lease with this escrow locks: escrow < 2^128 and the ratio < 2^32, so the
    /// product cannot overflow.
    function _lockOf(uint256 escrow) internal view returns (uint256 lock) {
        unchecked {
            lock = escrow * _stakeRatioBps / _BPS;
        }
    }

    /// @dev What a close holds back from the lab for an open dispute: the disputed amount beyond
    /// what was paid.
    function _held(uint256 claimed, uint256 paid) internal pure returns (uint256) {
        return claimed > paid ? claimed - paid : 0;
    }

    /// @dev Returns `amount` of `provider`'s locked stake to its free stake. The lock was added
    /// when the lease opened and is removed once (a release or a slash marks the lease), so the
    /// locked part holds it.
    function _unlockStake(address provider, uint256 amount) internal {
        IProviderRegistry.Provider storage p = _providers[provider];
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            sstore(p.slot, sub(sload(p.slot), shl(_LOCKED_SHIFT, amount)))
        }
    }

    // --- signatures ----------------------------------------------------------------------------

    /// @dev Reverts unless `signature` is the ECDSA signature of `key` (receipts and vouchers: keys
    /// fixed when the lease opened, never a contract's revocable answer).
    function _checkKey(address key, bytes32 digest, bytes calldata signature) internal pure {
        if (!_recovers(key, digest, signature)) revert MarketInvalidSignature(digest, key);
    }

    /// @dev The key that signs the lease's receipts: its receipt signer, or the provider. Read
    /// from the calldata words as they are: every caller has matched the terms to an opened
    /// lease's id, hashed from clean words (see `_leaseId`).
    function _receiptKey(Lease calldata lease) internal pure returns (address key) {
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            // receiptSigner is word 8, provider word 0.
            key := calldataload(add(lease, 0x100))
            if iszero(key) { key := calldataload(lease) }
        }
    }

    /// @dev Whether `signature` is `signer`'s ECDSA signature of `digest`, 65 bytes (r, s, v) or
    /// EIP-2098's compact 64 (r, vs), which proofs of cheating use for their smaller calldata.
    /// OpenZeppelin's ECDSA recovers it (`tryRecoverCalldata` for 65 bytes, `tryRecover(r, vs)` for
    /// 64; its 65-byte form refuses the compact one), so malleable signatures (s in the upper half
    /// order) and any v but 27 or 28 are refused, and no signer is the zero address. Tried before
    /// ERC-1271 for gas: SignatureChecker reads the signer's code size first, an EXTCODESIZE that
    /// costs 2,600 gas for an account the transaction has not touched yet, while most signers are
    /// EOAs. A contract signer falls through, having spent one failed ecrecover (its address has no
    /// known key). An EIP-7702 account has code but also its key, whose signature it could always
    /// act on anyway, so accepting it grants nothing more.
    function _recovers(address signer, bytes32 digest, bytes calldata signature) internal pure returns (bool) {
        address recovered;
        ECDSA.RecoverError err;
        if (signature.length == 64) {
            bytes32 r;
            bytes32 vs;
            // solhint-disable-next-line no-inline-assembly
            assembly ("memory-safe") {
                r := calldataload(signature.offset)
                vs := calldataload(add(signature.offset, 0x20))
            }
            // The third value only details a failure (err says whether there was one).
            // slither-disable-next-line unused-return
            (recovered, err,) = ECDSA.tryRecover(digest, r, vs);
        } else {
            // slither-disable-next-line unused-return
            (recovered, err,) = ECDSA.tryRecoverCalldata(digest, signature);
        }
        return err == ECDSA.RecoverError.NoError && recovered == signer;
    }

    // --- receipts ------------------------------------------------------------------------------

    /// @dev GPU-seconds the lease's GPUs can have run from its start until `periodEnd`, or until
    /// `end` if earlier; zero for a period ending before the lease started. At most
    /// 2^32 * 2^64: no overflow.
    function _maxGpuSeconds(Lease calldata lease, uint256 periodEnd, uint256 end) internal pure returns (uint256) {
        uint256 until = periodEnd < end ? periodEnd : end;
        return until > lease.start ? lease.gpus * (until - lease.start) : 0;
    }

    /// @dev The EIP-712 digest of the receipt of lease `id` with this `seq` and body, under
    /// `domainSeparator` (`_domainSeparatorV4()`, read once per proof): what `_hashReceipt` computes
    /// for the whole receipt, from the same words.
    function _receiptDigest(bytes32 domainSeparator, bytes32 id, uint64 seq, ReceiptBody calldata body)
        internal
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

    // --- slashing ------------------------------------------------------------------------------

    /// @dev The lease's id, state and the state's one storage word, read once, if a proof may slash
    /// it: known, not slashed before, and its stake lock not released.
    function _slashable(Lease calldata lease)
        internal
        view
        returns (bytes32 id, LeaseState storage state, uint256 word)
    {
        id = _leaseId(lease);
        state = _leases[id];
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            word := sload(state.slot)
        }
        // LeaseState's layout: paid in bits 0-127, end 128-191, then status, slashed, disputed and
        // stakeReleased, a byte each.
        if (uint8(word >> _STATUS_SHIFT) == uint8(LeaseStatus.None)) revert MarketUnknownLease(id);
        if (uint8(word >> _SLASHED_SHIFT) != 0) revert MarketLeaseAlreadySlashed(id);
        if (uint8(word >> _RELEASED_SHIFT) != 0) revert MarketStakeReleased(id);
    }

    /// @dev Takes the lease's stake lock from the provider for the lab, marks the lease slashed and
    /// closed, and credits the lab the unpaid escrow (or what a close held back for an open
    /// dispute) and an open dispute's bond. The penalty vests for the unbonding delay. `word` is
    /// the lease's state as `_slashable` read it. Moves no token.
    // The settlement, the stake and the credit read best in the one place they happen, in order.
    // solhint-disable-next-line function-max-lines
    function _slash(Lease calldata lease, bytes32 id, LeaseState storage state, uint256 word)
        internal
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
        bool closed = uint8(word >> _STATUS_SHIFT) == uint8(LeaseStatus.Closed);
        if (!closed) {
            unchecked {
                refund = escrow - uint128(word);
            }
        }
        if (uint8(word >> _DISPUTED_SHIFT) != 0) {
            PendingClaim storage pending = _claims[id];
            refund += pending.bond;
            if (closed) refund += _held(pending.amount, uint128(word));
            pending.readyAt = 0;
            pending.bond = 0;
            pending.rulingDeadline = 0;
        }
        // One write: closed, slashed and its lock spent (released); paid and end kept.
        word = (word & ~(uint256(0xffffffff) << _STATUS_SHIFT)) | (uint256(uint8(LeaseStatus.Closed)) << _STATUS_SHIFT)
            | (uint256(1) << _SLASHED_SHIFT) | (uint256(1) << _RELEASED_SHIFT);
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            sstore(state.slot, word)
        }
        penalty = _lockOf(escrow);
        {
            // The lease's lock is part of both `stake` and `locked` (a provider's locked stake never
            // exceeds its stake, and holds every unreleased lock), so neither field borrows.
            IProviderRegistry.Provider storage p = _providers[provider];
            // solhint-disable-next-line no-inline-assembly
            assembly ("memory-safe") {
                sstore(p.slot, sub(sload(p.slot), add(penalty, shl(_LOCKED_SHIFT, penalty))))
            }
        }
        // At most ten years past a timestamp below 2^32 until 2096 (see _MAX_UNBONDING_DELAY).
        uint40 vestsAt = uint40(block.timestamp) + _unbondingDelay;
        emit LeaseSlashed(id, provider, penalty, refund, vestsAt);
        _creditWithSlashed(lab, refund, penalty, vestsAt);
    }

    // --- credits -------------------------------------------------------------------------------

    /// @dev Reverts with an error `_redeem`, `_close` or `_finalize` encoded, with its arguments.
    function _revertWith(bytes memory err) internal pure {
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            revert(add(err, 0x20), mload(err))
        }
    }

    /// @dev Credits `amount` to `provider`, less the protocol fee, which is credited to the treasury.
    function _creditPayment(address provider, uint256 amount) internal {
        uint256 fee = amount * _feeBps / _BPS;
        if (fee > 0) {
            _credit(_treasury, fee);
            emit FeePaid(_treasury, fee);
        }
        _credit(provider, amount - fee);
    }

    /// @dev Adds `amount` to `account`'s credit (see _credits for the plus one). Every credit is
    /// backed by tokens the market holds, so it stays below 2^128 for any token whose supply does;
    /// with a larger one it could carry into the slashed bits, which is refused.
    function _credit(address account, uint256 amount) internal {
        Credit storage credit = _credits[account];
        uint256 stored = credit.word;
        uint256 updated = (stored == 0 ? 1 : stored) + amount;
        if (updated >> _SLASHED_CREDIT_SHIFT != stored >> _SLASHED_CREDIT_SHIFT) {
            revert MarketCreditOverflow(account, amount);
        }
        credit.word = updated;
    }

    /// @dev Like _credit, and adds `slashed` to the stake slashed to `account`, vesting at
    /// `vestsAt` (which also delays what was slashed to it before), in the same write. The slashed
    /// sum has 96 bits, as a stake has: it reverts only past 2^96 unwithdrawn.
    function _creditWithSlashed(address account, uint256 amount, uint256 slashed, uint40 vestsAt) private {
        Credit storage credit = _credits[account];
        uint256 stored = credit.word;
        uint256 updated = (stored == 0 ? 1 : stored) + amount;
        if (updated >> _SLASHED_CREDIT_SHIFT != stored >> _SLASHED_CREDIT_SHIFT) {
            revert MarketCreditOverflow(account, amount);
        }
        uint256 slashedSum = uint96(stored >> _SLASHED_CREDIT_SHIFT) + slashed;
        if (slashedSum > type(uint96).max) revert MarketCreditOverflow(account, slashed);
        credit.word = uint128(updated) | (slashedSum << _SLASHED_CREDIT_SHIFT) | (uint256(vestsAt) << _VESTS_SHIFT);
    }
}
