// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title IProviderRegistry
/// @notice The market's provider registry: providers register with a stake in the market's ERC-20,
/// publish where to reach them, and leave after an unbonding delay. The market holds the stake.
///
/// A provider's bonded `stake` backs its leases: each open lease locks `escrow * stakeRatioBps /
/// 10_000` of it until the lease's proof window ends (its end plus the claim window), and a proof
/// of cheating slashes that lease's lock to its lab. Only free stake (`stake - locked`) can start
/// unbonding; unbonding stake backs nothing and leaves after the delay
/// (docs/decisions/0013-stake-and-disputes.md).
interface IProviderRegistry {
    /// @notice A provider's on-chain record. Amounts are in the settlement token's smallest unit.
    struct Provider {
        uint96 stake; // bonded stake, the locked part included (not what is unbonding)
        uint96 locked; // part of `stake` locked by leases in their proof window
        uint40 unbondReadyAt; // when `unbonding` may be withdrawn
        bool registered;
        uint96 unbonding; // stake requested for withdrawal, no longer bonded
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
    /// @notice Requested to unstake more than the free (bonded, not locked) stake.
    error RegistryUnstakeExceedsFree(uint256 requested, uint256 free);
    /// @notice Nothing is unbonding, or the unbonding delay has not passed.
    error RegistryNotWithdrawable(uint256 unbonding, uint40 readyAt);

    /// @notice A provider registered.
    event ProviderRegistered(
        address indexed provider, uint256 stake, string endpoint, bytes32 encryptionKey, bytes32 attributesHash
    );
    /// @notice A provider changed its endpoint, key or attributes.
    event ProviderUpdated(address indexed provider, string endpoint, bytes32 encryptionKey, bytes32 attributesHash);
    /// @notice Stake was added.
    event StakeAdded(address indexed provider, uint256 amount, uint256 stake);
    /// @notice `amount` left the bonded stake (now `stake`) to unbond; `unbonding` in all can be
    /// withdrawn from `readyAt`.
    event UnstakeRequested(address indexed provider, uint256 amount, uint256 unbonding, uint40 readyAt);
    /// @notice Unbonded stake was withdrawn; `stake` is the bonded stake left.
    event StakeWithdrawn(address indexed provider, uint256 amount, uint256 stake);

    /// @notice Register the caller, pulling `stake` tokens (approve the market first).
    function register(uint256 stake, string calldata endpoint, bytes32 encryptionKey, bytes32 attributesHash)
        external;

    /// @notice Change the caller's endpoint, encryption key and attributes hash.
    function updateProfile(string calldata endpoint, bytes32 encryptionKey, bytes32 attributesHash) external;

    /// @notice Add `amount` to the caller's stake.
    function addStake(uint256 amount) external;

    /// @notice Move `amount` of free stake to unbonding; restarts the delay for everything unbonding.
    function requestUnstake(uint256 amount) external;

    /// @notice Withdraw everything that finished unbonding.
    function withdrawStake() external returns (uint256 amount);

    /// @notice Bonded stake not locked by leases: what new leases can lock and unbonding can take.
    function freeStake(address provider) external view returns (uint256);

    /// @notice Whether leases may be opened against `provider` (registered, stake >= minimum), as
    /// far as the lock each lease needs is covered by its free stake.
    function isEligible(address provider) external view returns (bool);

    /// @notice The full record of `provider`.
    function getProvider(address provider) external view returns (Provider memory);

    /// @notice Bonded stake a provider needs for new leases.
    function minStake() external view returns (uint256);

    /// @notice Seconds between an unstake request and the withdrawal; slashed stake vests as long.
    function unbondingDelay() external view returns (uint40);
}
