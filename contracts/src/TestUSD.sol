// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title TestUSD
/// @notice A stablecoin stand-in for devnets and tests: ERC-20 with EIP-2612 permit and an open faucet.
/// @dev Never deploy this to a chain that carries value: anyone may mint.
contract TestUSD is ERC20, ERC20Permit {
    uint8 private immutable _decimals;

    /// @param decimals_ Token decimals (6 like USDC, or 18).
    constructor(uint8 decimals_) ERC20("Test USD", "tUSD") ERC20Permit("Test USD") {
        _decimals = decimals_;
    }

    /// @inheritdoc ERC20
    function decimals() public view override returns (uint8) {
        return _decimals;
    }

    /// @notice Devnet faucet: mints `amount` to `to`. Open to anyone by design.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
