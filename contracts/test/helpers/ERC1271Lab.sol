// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @notice A lab (or provider) that is a contract (a smart wallet): it approves what its owner's
/// key signed, through ERC-1271. `setRevoked` makes it refuse everything and `setGasToBurn` makes
/// its check spend gas first, up to all of it: a wallet turning hostile after its leases opened.
/// Tests only.
contract ERC1271Lab is IERC1271 {
    /// @notice Burn every unit of gas the check is given.
    uint256 public constant BURN_ALL = type(uint256).max;

    address public immutable owner;
    uint256 public gasToBurn;
    bool public revoked;

    constructor(address owner_) {
        owner = owner_;
    }

    /// @notice Only the owner may make the wallet call out.
    error ERC1271LabNotOwner(address caller);

    /// @notice Call `dest` with `value` and `func` as this wallet, for its owner only, passing a
    /// revert on with its data: the interface of ERC-4337's reference SimpleAccount, through which
    /// an owner key acts for the wallet (market.chain.wallet).
    function execute(address dest, uint256 value, bytes calldata func) external {
        if (msg.sender != owner) revert ERC1271LabNotOwner(msg.sender);
        (bool ok, bytes memory result) = dest.call{value: value}(func);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
    }

    function setGasToBurn(uint256 gasToBurn_) external {
        gasToBurn = gasToBurn_;
    }

    function setRevoked(bool revoked_) external {
        revoked = revoked_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        uint256 burn = gasToBurn;
        if (burn == BURN_ALL) {
            // Spins until the call runs out of gas.
            while (gasleft() > 0) {}
        } else if (burn > 0) {
            uint256 stopAt = gasleft() - burn;
            while (gasleft() > stopAt) {}
        }
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(hash, signature);
        bool valid = !revoked && err == ECDSA.RecoverError.NoError && recovered == owner;
        return valid ? IERC1271.isValidSignature.selector : bytes4(0xffffffff);
    }
}
