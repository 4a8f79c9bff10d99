// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice A 6-decimals token with an issuer's blacklist, as USDC and USDT have: a blacklisted
/// account can neither send nor receive, so any transfer to it reverts. Tests only: anyone may mint
/// and blacklist.
contract BlacklistToken is ERC20 {
    mapping(address account => bool) public blacklisted;

    error BlacklistTokenBlacklisted(address account);

    constructor() ERC20("Blacklist USD", "BLUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setBlacklisted(address account, bool value) external {
        blacklisted[account] = value;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (blacklisted[from]) revert BlacklistTokenBlacklisted(from);
        if (blacklisted[to]) revert BlacklistTokenBlacklisted(to);
        super._update(from, to, value);
    }
}
