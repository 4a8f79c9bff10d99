// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";

/// @title ProviderRegistry
/// @notice Stake, profile and unbonding of GPU providers. No owner: only the market can slash.
contract ProviderRegistry is IProviderRegistry, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    IERC20 private immutable _token;
    address private immutable _market;
    uint256 private immutable _minStake;
    uint40 private immutable _unbondingDelay;

    mapping(address provider => Provider) private _providers;

    /// @param token_ The staking token (the market's settlement token).
    /// @param market_ The only account allowed to slash.
    /// @param minStake_ Free stake a provider needs for leases to be opened against it.
    /// @param unbondingDelay_ Seconds between an unstake request and the withdrawal.
    constructor(IERC20 token_, address market_, uint256 minStake_, uint40 unbondingDelay_) {
        _token = token_;
        _market = market_;
        _minStake = minStake_;
        _unbondingDelay = unbondingDelay_;
    }

    /// @inheritdoc IProviderRegistry
    function register(uint256 stake, string calldata endpoint, bytes32 encryptionKey, bytes32 attributesHash)
        external
        nonReentrant
    {
        Provider storage p = _providers[msg.sender];
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
        Provider storage p = _registered(msg.sender);
        p.encryptionKey = encryptionKey;
        p.attributesHash = attributesHash;
        p.endpoint = endpoint;
        emit ProviderUpdated(msg.sender, endpoint, encryptionKey, attributesHash);
    }

    /// @inheritdoc IProviderRegistry
    function addStake(uint256 amount) external nonReentrant {
        if (amount == 0) revert RegistryZeroAmount();
        Provider storage p = _registered(msg.sender);
        uint96 stake = _toUint96(uint256(p.stake) + amount);
        p.stake = stake;
        emit StakeAdded(msg.sender, amount, stake);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IProviderRegistry
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert RegistryZeroAmount();
        Provider storage p = _registered(msg.sender);
        uint256 free = p.stake - p.unbonding;
        if (amount > free) revert RegistryUnstakeExceedsFree(amount, free);
        // Cannot overflow: unbonding + amount <= stake, which fits in uint96.
        uint96 unbonding = p.unbonding + uint96(amount);
        uint40 readyAt = uint40(block.timestamp) + _unbondingDelay;
        p.unbonding = unbonding;
        p.unbondReadyAt = readyAt;
        emit UnstakeRequested(msg.sender, amount, unbonding, readyAt);
    }

    /// @inheritdoc IProviderRegistry
    function withdraw() external nonReentrant returns (uint256 amount) {
        Provider storage p = _registered(msg.sender);
        amount = p.unbonding;
        if (amount == 0 || block.timestamp < p.unbondReadyAt) {
            revert RegistryNotWithdrawable(amount, p.unbondReadyAt);
        }
        uint96 stake = p.stake - uint96(amount);
        p.stake = stake;
        p.unbonding = 0;
        emit StakeWithdrawn(msg.sender, amount, stake);
        _token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IProviderRegistry
    function slash(address provider, uint256 amount) external returns (uint256 slashed) {
        if (msg.sender != _market) revert RegistryOnlyMarket(msg.sender);
        Provider storage p = _providers[provider];
        uint256 word;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            word := sload(p.slot)
        }
        // Provider's first word: stake in bits 0-95, unbonding 96-191, then unbondReadyAt and
        // registered, kept as they are. Read and written once.
        uint256 stake = uint96(word);
        uint256 unbonding = uint96(word >> 96);
        slashed = amount < stake ? amount : stake;
        // Cannot underflow: slashed <= stake; the unbonding part is capped at what is left.
        stake -= slashed;
        if (unbonding > stake) unbonding = stake;
        word = (word >> 192 << 192) | (unbonding << 96) | stake;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            sstore(p.slot, word)
        }
        // No transfer and no event: the market's LeaseSlashed names the provider and the amount,
        // and the market credits the beneficiary and calls `release` when it withdraws.
    }

    /// @inheritdoc IProviderRegistry
    function release(address to, uint256 amount) external nonReentrant {
        if (msg.sender != _market) revert RegistryOnlyMarket(msg.sender);
        _token.safeTransfer(to, amount);
    }

    /// @inheritdoc IProviderRegistry
    function freeStake(address provider) external view returns (uint256) {
        Provider storage p = _providers[provider];
        return p.stake - p.unbonding;
    }

    /// @inheritdoc IProviderRegistry
    function stakeStatus(address provider) external view returns (bool registered, uint256 free) {
        Provider storage p = _providers[provider];
        return (p.registered, p.stake - p.unbonding);
    }

    /// @inheritdoc IProviderRegistry
    function isEligible(address provider) external view returns (bool) {
        Provider storage p = _providers[provider];
        return p.registered && p.stake - p.unbonding >= _minStake;
    }

    /// @inheritdoc IProviderRegistry
    function getProvider(address provider) external view returns (Provider memory) {
        return _providers[provider];
    }

    /// @inheritdoc IProviderRegistry
    function token() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc IProviderRegistry
    function market() external view returns (address) {
        return _market;
    }

    /// @inheritdoc IProviderRegistry
    function minStake() external view returns (uint256) {
        return _minStake;
    }

    /// @inheritdoc IProviderRegistry
    function unbondingDelay() external view returns (uint40) {
        return _unbondingDelay;
    }

    function _registered(address provider) private view returns (Provider storage p) {
        p = _providers[provider];
        if (!p.registered) revert RegistryNotRegistered(provider);
    }

    function _toUint96(uint256 amount) private pure returns (uint96) {
        if (amount > type(uint96).max) revert RegistryStakeOverflow(amount);
        return uint96(amount);
    }
}
