// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IMarketExtension} from "./interfaces/IMarketExtension.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title MarketExtension
/// @notice The half of the market its code limit leaves out of `Market`: the provider registry and
/// stake, cancellation, optimistic claims and disputes, the usage proof and the views. `Market`
/// creates it and delegates to it every call it does not run itself, so it runs on the market's
/// storage (the layout both inherit from `MarketBase`) and its events come from the market's
/// address. Calls that would move tokens refuse to run anywhere else.
contract MarketExtension is MarketBase, IMarketExtension {
    using SafeERC20 for IERC20;

    /// @notice Called on the extension's own address, not through the market.
    error MarketNotDelegated();

    address private immutable _self;

    /// @param params The market's deployment parameters.
    constructor(Params memory params) MarketBase(params) {
        _self = address(this);
    }

    /// @dev Only through the market: called directly, a function that pulls tokens would keep them
    /// here, out of every account's reach.
    modifier delegated() {
        if (address(this) == _self) revert MarketNotDelegated();
        _;
    }

    // --- provider registry and stake --------------------------------------------------------

    /// @inheritdoc IProviderRegistry
    function register(uint256 stake, string calldata endpoint, bytes32 encryptionKey, bytes32 attributesHash)
        external
        delegated
        nonReentrant
    {
        IProviderRegistry.Provider storage p = _providers[msg.sender];
        if (p.registered) revert RegistryAlreadyRegistered(msg.sender);
        p.registered = true;
        p.stake = _toUint96(stake);
        p.encryptionKey = encryptionKey;
        p.attributesHash = attributesHash;
        p.endpoint = endpoint;
        emit ProviderRegistered(msg.sender, stake, endpoint, encryptionKey, attributesHash);
        // Effects are recorded before the token call.
        if (stake > 0) _token.safeTransferFrom(msg.sender, address(this), stake);
    }

    /// @inheritdoc IProviderRegistry
    function updateProfile(string calldata endpoint, bytes32 encryptionKey, bytes32 attributesHash) external {
        IProviderRegistry.Provider storage p = _registered(msg.sender);
        p.encryptionKey = encryptionKey;
        p.attributesHash = attributesHash;
        p.endpoint = endpoint;
        emit ProviderUpdated(msg.sender, endpoint, encryptionKey, attributesHash);
    }

    /// @inheritdoc IProviderRegistry
    function addStake(uint256 amount) external delegated nonReentrant {
        if (amount == 0) revert RegistryZeroAmount();
        IProviderRegistry.Provider storage p = _registered(msg.sender);
        uint96 stake = _toUint96(uint256(p.stake) + amount);
        p.stake = stake;
        emit StakeAdded(msg.sender, amount, stake);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IProviderRegistry
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert RegistryZeroAmount();
        IProviderRegistry.Provider storage p = _registered(msg.sender);
        uint256 free = p.stake - p.locked;
        if (amount > free) revert RegistryUnstakeExceedsFree(amount, free);
        // amount <= free <= stake < 2^96, and unbonding + stake never exceed what was staked.
        uint96 stake = p.stake - uint96(amount);
        uint96 unbonding = _toUint96(uint256(p.unbonding) + amount);
        uint40 readyAt = uint40(block.timestamp) + _unbondingDelay;
        p.stake = stake;
        p.unbonding = unbonding;
        p.unbondReadyAt = readyAt;
        emit UnstakeRequested(msg.sender, amount, unbonding, readyAt);
    }

    /// @inheritdoc IProviderRegistry
    function withdrawStake() external nonReentrant returns (uint256 amount) {
        IProviderRegistry.Provider storage p = _registered(msg.sender);
        amount = p.unbonding;
        if (amount == 0 || block.timestamp < p.unbondReadyAt) {
            revert RegistryNotWithdrawable(amount, p.unbondReadyAt);
        }
        p.unbonding = 0;
        emit StakeWithdrawn(msg.sender, amount, p.stake);
        _token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IProviderRegistry
    function freeStake(address provider) external view returns (uint256) {
        IProviderRegistry.Provider storage p = _providers[provider];
        return p.stake - p.locked;
    }

    /// @inheritdoc IProviderRegistry
    function isEligible(address provider) external view returns (bool) {
        IProviderRegistry.Provider storage p = _providers[provider];
        return p.registered && p.stake >= _minStake;
    }

    /// @inheritdoc IProviderRegistry
    function getProvider(address provider) external view returns (IProviderRegistry.Provider memory) {
        return _providers[provider];
    }

    /// @inheritdoc IProviderRegistry
    function minStake() external view returns (uint256) {
        return _minStake;
    }

    /// @inheritdoc IProviderRegistry
    function unbondingDelay() external view returns (uint40) {
        return _unbondingDelay;
    }

    function _registered(address provider) private view returns (IProviderRegistry.Provider storage p) {
        p = _providers[provider];
        if (!p.registered) revert RegistryNotRegistered(provider);
    }

    function _toUint96(uint256 amount) private pure returns (uint96) {
        if (amount > type(uint96).max) revert RegistryStakeOverflow(amount);
        return uint96(amount);
    }

    // --- cancellation -----------------------------------------------------------------------

    /// @inheritdoc IMarketExtension
    function cancelOrder(bytes32 orderHash) external {
        if (_orders[msg.sender][orderHash].cancelled) return; // already cancelled: no change, no event
        _orders[msg.sender][orderHash].cancelled = true;
        emit OrderCancelled(msg.sender, orderHash);
    }

    /// @inheritdoc IMarketExtension
    function cancelOrdersUpTo(uint256 minNonce_) external {
        uint256 current = _minNonce[msg.sender];
        if (minNonce_ <= current) revert MarketNonceFloorNotRaised(current, minNonce_);
        _minNonce[msg.sender] = minNonce_;
        emit NonceFloorRaised(msg.sender, minNonce_);
    }

    // --- optimistic claims and disputes -----------------------------------------------------

    /// @inheritdoc IMarketExtension
    function postReceipt(Lease calldata lease, Receipt calldata r, bytes calldata sig) external {
        (bytes32 id, LeaseState storage state) = _openLeaseState(lease);
        if (msg.sender != lease.provider) revert MarketNotProvider(id, msg.sender);
        if (r.leaseId != id) revert MarketReceiptWrongLease(id, r.leaseId);
        PendingClaim storage last = _claims[id];
        if (state.disputed) revert MarketClaimDisputed(id, last.rulingDeadline);
        // A receipt hash is never zero, so a zero one means nothing was posted yet.
        if (last.receiptHash != bytes32(0) && r.seq <= last.seq) revert MarketReceiptNotNewer(id, r.seq, last.seq);
        uint256 amount = _claimable(lease, id, state, r);
        // Only a higher amount restarts the window: re-posting cannot keep a refund locked.
        if (amount <= last.amount) revert MarketClaimNotRaised(id, amount, last.amount);
        bytes32 digest = _hashReceipt(r);
        _checkKey(_receiptKey(lease), digest, sig);
        // block.timestamp < 2^40 for millennia and the window is a uint40: no uint64 overflow.
        uint64 readyAt = uint64(block.timestamp) + _challengeWindow;
        // amount <= escrow < 2^128 (checked at opening). No dispute is open: bond and deadline are zero.
        last.amount = uint128(amount);
        last.seq = r.seq;
        last.readyAt = readyAt;
        last.receiptHash = digest;
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

    /// @inheritdoc IMarketExtension
    function finalizeClaim(Lease calldata lease) external nonReentrant returns (uint256 amount) {
        bytes memory err;
        (amount,, err) = _finalize(lease);
        if (err.length > 0) _revertWith(err);
        if (amount > 0) _creditPayment(lease.provider, amount);
    }

    /// @inheritdoc IMarketExtension
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
    /// (the caller credits it); an unruled dispute's bond is credited to the provider here. Never
    /// reverts on bad input: it returns the encoded custom error.
    function _finalize(Lease calldata lease) private returns (uint256 amount, bytes32 id, bytes memory err) {
        id = _leaseId(lease);
        LeaseState storage state = _leases[id];
        bool disputed = state.disputed;
        {
            LeaseStatus status = state.status;
            if (status == LeaseStatus.None) return (0, id, abi.encodeWithSelector(MarketUnknownLease.selector, id));
            // A closed lease keeps an open dispute's amount in escrow until it is settled.
            if (status == LeaseStatus.Closed && !disputed) {
                return (0, id, abi.encodeWithSelector(MarketLeaseNotOpen.selector, id, status));
            }
        }
        PendingClaim storage pending = _claims[id];
        uint64 readyAt = pending.readyAt;
        if (readyAt == 0) return (0, id, abi.encodeWithSelector(MarketNoPendingClaim.selector, id));
        uint256 bond = 0;
        if (disputed) {
            uint64 deadline = pending.rulingDeadline;
            if (block.timestamp < deadline) {
                return (0, id, abi.encodeWithSelector(MarketClaimDisputed.selector, id, deadline));
            }
            bond = pending.bond;
            pending.bond = 0;
            pending.rulingDeadline = 0;
            state.disputed = false;
        } else if (block.timestamp < readyAt) {
            return (0, id, abi.encodeWithSelector(MarketChallengeWindowOpen.selector, id, readyAt));
        }
        pending.readyAt = 0;
        uint128 target = pending.amount;
        uint128 paid = state.paid;
        if (target > paid) {
            state.paid = target;
            amount = target - paid;
            emit Claimed(id, amount, target, pending.receiptHash);
        }
        emit ClaimFinalized(id, pending.seq, pending.receiptHash, amount, bond);
        if (bond > 0) _credit(lease.provider, bond);
    }

    /// @inheritdoc IMarketExtension
    function disputeClaim(Lease calldata lease) external delegated nonReentrant {
        (bytes32 id, LeaseState storage state) = _openLeaseState(lease);
        if (msg.sender != lease.lab) revert MarketNotLab(id, msg.sender);
        PendingClaim storage pending = _claims[id];
        uint64 readyAt = pending.readyAt;
        if (readyAt == 0) revert MarketNoPendingClaim(id);
        if (state.disputed) revert MarketClaimDisputed(id, pending.rulingDeadline);
        if (block.timestamp >= readyAt) revert MarketChallengeWindowClosed(id, readyAt);
        // The disputed amount is below 2^128 and the ratio at most 10_000: the bond fits.
        uint256 bond = _held(pending.amount, state.paid) * _disputeBondBps / _BPS;
        uint64 deadline = uint64(block.timestamp) + _rulingWindow;
        pending.bond = uint128(bond);
        pending.rulingDeadline = deadline;
        state.disputed = true;
        emit ClaimDisputed(id, msg.sender, pending.seq, pending.receiptHash, bond, deadline);
        if (bond > 0) _token.safeTransferFrom(msg.sender, address(this), bond);
    }

    /// @inheritdoc IMarketExtension
    function ruleDispute(Lease calldata lease, bool forProvider) external nonReentrant {
        bytes32 id = _leaseId(lease);
        LeaseState storage state = _leases[id];
        if (state.status == LeaseStatus.None) revert MarketUnknownLease(id);
        address arbiter = lease.arbiter;
        if (arbiter == address(0) || msg.sender != arbiter) revert MarketNotArbiter(id, msg.sender);
        if (!state.disputed) revert MarketNotDisputed(id);
        PendingClaim storage pending = _claims[id];
        uint64 deadline = pending.rulingDeadline;
        if (block.timestamp >= deadline) revert MarketRulingTooLate(id, deadline);
        uint256 bond = pending.bond;
        uint128 target = pending.amount;
        uint128 paid = state.paid;
        uint256 amount = _held(target, paid);
        pending.readyAt = 0;
        pending.bond = 0;
        pending.rulingDeadline = 0;
        state.disputed = false;
        emit DisputeRuled(id, arbiter, forProvider, amount, bond);
        if (forProvider) {
            if (amount > 0) {
                state.paid = target;
                emit Claimed(id, amount, target, pending.receiptHash);
                _creditPayment(lease.provider, amount);
            }
            if (bond > 0) _credit(lease.provider, bond);
        } else {
            // The claim stays as the floor a later receipt must raise; a close held its amount back.
            uint256 refund = bond + (state.status == LeaseStatus.Closed ? amount : 0);
            if (refund > 0) _credit(lease.lab, refund);
        }
    }

    /// @inheritdoc IMarketExtension
    function releaseStake(Lease calldata lease) external returns (uint256 amount) {
        bytes32 id = _leaseId(lease);
        LeaseState storage state = _leases[id];
        LeaseStatus status = state.status;
        if (status != LeaseStatus.Closed) revert MarketLeaseNotClosed(id, status);
        if (state.stakeReleased) revert MarketStakeReleased(id);
        uint256 releasableAt = uint256(state.end) + _claimWindow;
        if (block.timestamp < releasableAt) revert MarketStakeHeld(id, releasableAt);
        state.stakeReleased = true;
        amount = _lockOf(_escrowOf(lease));
        _unlockStake(lease.provider, amount);
        emit StakeReleased(id, lease.provider, amount);
    }

    // --- proofs of cheating -----------------------------------------------------------------

    /// @inheritdoc IMarketExtension
    function slashImpossibleUsage(Lease calldata lease, uint64 seq, ReceiptBody calldata r, bytes calldata sig)
        external
        nonReentrant
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

    // --- views ------------------------------------------------------------------------------

    /// @inheritdoc IMarketExtension
    function hashOffer(Offer calldata offer) external view returns (bytes32) {
        return _hashOffer(offer);
    }

    /// @inheritdoc IMarketExtension
    function hashBid(Bid calldata bid) external view returns (bytes32) {
        return _hashBid(bid);
    }

    /// @inheritdoc IMarketExtension
    function hashVoucher(Voucher calldata voucher) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(_VOUCHER_TYPEHASH, voucher)));
    }

    /// @inheritdoc IMarketExtension
    function hashReceipt(Receipt calldata receipt) external view returns (bytes32) {
        return _hashReceipt(receipt);
    }

    /// @inheritdoc IMarketExtension
    function leaseId(Lease calldata lease) external pure returns (bytes32) {
        return _leaseId(lease);
    }

    /// @inheritdoc IMarketExtension
    function leaseState(bytes32 leaseId_) external view returns (LeaseState memory) {
        return _leases[leaseId_];
    }

    /// @inheritdoc IMarketExtension
    function withdrawable(address account) external view returns (uint256) {
        uint256 stored = _credits[account].word;
        uint256 credit = uint128(stored);
        if (credit > 0) --credit;
        if (block.timestamp >= stored >> _VESTS_SHIFT) credit += uint96(stored >> _SLASHED_CREDIT_SHIFT);
        return credit;
    }

    /// @inheritdoc IMarketExtension
    function slashedCredit(address account) external view returns (uint256 amount, uint40 vestsAt) {
        uint256 stored = _credits[account].word;
        return (uint96(stored >> _SLASHED_CREDIT_SHIFT), uint40(stored >> _VESTS_SHIFT));
    }

    /// @inheritdoc IMarketExtension
    function stakeRatioBps() external view returns (uint32) {
        return _stakeRatioBps;
    }

    /// @inheritdoc IMarketExtension
    function disputeBondBps() external view returns (uint16) {
        return _disputeBondBps;
    }

    /// @inheritdoc IMarketExtension
    function rulingWindow() external view returns (uint40) {
        return _rulingWindow;
    }

    /// @inheritdoc IMarketExtension
    function extension() external view returns (address) {
        return _self;
    }

    /// @inheritdoc IMarketExtension
    function pendingClaim(bytes32 leaseId_) external view returns (PendingClaim memory) {
        return _claims[leaseId_];
    }

    /// @inheritdoc IMarketExtension
    function orderState(address signer, bytes32 orderHash) external view returns (OrderState memory) {
        return _orders[signer][orderHash];
    }

    /// @inheritdoc IMarketExtension
    function minNonce(address signer) external view returns (uint256) {
        return _minNonce[signer];
    }

    /// @inheritdoc IMarketExtension
    function token() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc IMarketExtension
    function claimWindow() external view returns (uint64) {
        return _claimWindow;
    }

    /// @inheritdoc IMarketExtension
    function challengeWindow() external view returns (uint40) {
        return _challengeWindow;
    }

    /// @inheritdoc IMarketExtension
    function feeBps() external view returns (uint16) {
        return _feeBps;
    }

    /// @inheritdoc IMarketExtension
    function treasury() external view returns (address) {
        return _treasury;
    }

    /// @inheritdoc IMarketExtension
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
