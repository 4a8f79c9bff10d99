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
