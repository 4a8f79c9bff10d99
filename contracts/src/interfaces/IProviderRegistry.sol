// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title IProviderRegistry
/// @notice Providers register with a stake in the market's ERC-20, publish where to reach them, and
/// can leave after an unbonding delay. Only the market may slash, and only on proof.
///
/// Slashing is accounting only: it takes the amount out of the provider's stake, and the tokens
/// stay here until the market releases them to the one they were slashed for, when that account
/// withdraws its credit from the market. The registry's balance is therefore the sum of all stakes
/// plus what was slashed and not yet released (docs/decisions/0006-slashing.md).
interface IProviderRegistry {
    /// @notice A provider's on-chain record. Amounts are in the settlement token's smallest unit.
    struct Provider {
        uint96 stake; // total stake, including what is unbonding (still slashable)
        uint96 unbonding; // part of `stake` requested for withdrawal
        uint40 unbondReadyAt; // when `unbonding` may be withdrawn
        bool registered;
        bytes32 encryptionKey; // X25519 public key that sealed job payloads are encrypted to
        bytes32 attributesHash; // hash of the provider's declared attributes (region, interconnect...)
        string endpoint; // where the provider agent answers
    }

    /// @notice The caller is already registered.
    error RegistryAlreadyRegistered(address provider);
    /// @notice The account is not registered.
    error RegistryNotRegistered(address provider);
    /// @notice A zero amount was given where a positive one is required.
    error RegistryZeroAmount();
    /// @notice The amount exceeds what the uint96 stake accounting can hold.
    error RegistryStakeOverflow(uint256 amount);
    /// @notice Requested to unstake more than the free (not yet unbonding) stake.
    error RegistryUnstakeExceedsFree(uint256 requested, uint256 free);
    /// @notice Nothing is unbonding, or the unbonding delay has not passed.
    error RegistryNotWithdrawable(uint256 unbonding, uint40 readyAt);
    /// @notice Only the market may call this.
    error RegistryOnlyMarket(address caller);

    /// @notice A provider registered.
    event ProviderRegistered(
        address indexed provider, uint256 stake, string endpoint, bytes32 encryptionKey, bytes32 attributesHash
    );
    /// @notice A provider changed its endpoint, key or attributes.
    event ProviderUpdated(address indexed provider, string endpoint, bytes32 encryptionKey, bytes32 attributesHash);
    /// @notice Stake was added.
    event StakeAdded(address indexed provider, uint256 amount, uint256 stake);
    /// @notice Part of the stake started unbonding; it can be withdrawn from `readyAt`.
    event UnstakeRequested(address indexed provider, uint256 amount, uint256 unbonding, uint40 readyAt);
    /// @notice Unbonded stake was withdrawn.
    event StakeWithdrawn(address indexed provider, uint256 amount, uint256 stake);

    /// @notice Register the caller, pulling `stake` tokens (approve the registry first).
    function register(uint256 stake, string calldata endpoint, bytes32 encryptionKey, bytes32 attributesHash)
        external;

    /// @notice Change the caller's endpoint, encryption key and attributes hash.
    function updateProfile(string calldata endpoint, bytes32 encryptionKey, bytes32 attributesHash) external;

    /// @notice Add `amount` to the caller's stake.
    function addStake(uint256 amount) external;

    /// @notice Start unbonding `amount` of free stake; restarts the delay for everything unbonding.
    function requestUnstake(uint256 amount) external;

    /// @notice Withdraw everything that finished unbonding.
    function withdraw() external returns (uint256 amount);

    /// @notice Take up to `amount` of `provider`'s stake, for the market to credit to the lab it
    /// slashes for; the tokens stay here until `release`. Market only. Emits nothing: the market's
    /// `LeaseSlashed` names the provider, the lab and the amount (docs/decisions/0006-slashing.md).
    /// @return slashed What was actually taken (at most the stake).
    function slash(address provider, uint256 amount) external returns (uint256 slashed);

    /// @notice Send `amount` of slashed stake to `to`. Market only: the market releases to each
    /// beneficiary exactly what it slashed for it, when the beneficiary withdraws.
    function release(address to, uint256 amount) external;

    /// @notice Stake not unbonding: what counts towards the minimum.
    function freeStake(address provider) external view returns (uint256);

    /// @notice Registration and free stake in one read, for the market's lease check.
    function stakeStatus(address provider) external view returns (bool registered, uint256 free);

    /// @notice Whether leases may be opened against `provider` (registered, free stake >= minimum).
    function isEligible(address provider) external view returns (bool);

    /// @notice The full record of `provider`.
    function getProvider(address provider) external view returns (Provider memory);

    /// @notice The staking token.
    function token() external view returns (address);

    /// @notice The only account allowed to slash.
    function market() external view returns (address);

    /// @notice Free stake a provider needs for new leases.
    function minStake() external view returns (uint256);

    /// @notice Seconds between an unstake request and the withdrawal.
    function unbondingDelay() external view returns (uint40);
}
