// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IMarket} from "../../src/interfaces/IMarket.sol";

/// @notice A 6-decimals token that calls `onTokenReceived` on a recipient that asked for it, as
/// ERC-777 and ERC-1363 tokens do: it hands the recipient control in the middle of a transfer.
/// Tests only: anyone may mint.
contract CallbackToken is ERC20 {
    mapping(address account => bool) public wantsCallback;

    constructor() ERC20("Callback USD", "CBUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice The caller is called back on every transfer it receives.
    function requestCallback() external {
        wantsCallback[msg.sender] = true;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (wantsCallback[to]) ReentrantWithdrawer(to).onTokenReceived(from, value);
    }
}

/// @notice A treasury that tries to withdraw again from inside the token transfer of its withdrawal.
contract ReentrantWithdrawer {
    IMarket public market;
    uint256 public reentries;
    bytes public reentryError;

    function setMarket(IMarket market_) external {
        market = market_;
    }

    function listenTo(CallbackToken token) external {
        token.requestCallback();
    }

    function withdraw() external returns (uint256) {
        return market.withdraw();
    }

    function onTokenReceived(address, uint256) external {
        ++reentries;
        try market.withdraw() returns (uint256 amount) {
            reentryError = abi.encode("re-entered withdraw paid", amount);
        } catch (bytes memory err) {
            reentryError = err;
        }
    }
}
