// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title NoBoolToken
/// @notice A test token whose transfer, transferFrom and approve return nothing, like USDT on
/// mainnet. The market must work with it through SafeERC20. Devnet and tests only; anyone may mint.
// ERC-20 requires the lower-case names `name` and `symbol`.
// solhint-disable const-name-snakecase
contract NoBoolToken {
    string public constant name = "No Bool Token";
    string public constant symbol = "NOBOOL";
    uint8 public immutable decimals;
    uint256 public totalSupply;
    mapping(address account => uint256) public balanceOf;
    mapping(address owner => mapping(address spender => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    error NoBoolTokenInsufficient(uint256 available, uint256 needed);

    constructor(uint8 decimals_) {
        decimals = decimals_;
    }

    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    // Deliberately returns nothing, like USDT: the market must cope (SafeERC20).
    // slither-disable-next-line erc20-interface
    function approve(address spender, uint256 amount) external {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
    }

    // Deliberately returns nothing, like USDT: the market must cope (SafeERC20).
    // slither-disable-next-line erc20-interface
    function transfer(address to, uint256 amount) external {
        _move(msg.sender, to, amount);
    }

    // Deliberately returns nothing, like USDT: the market must cope (SafeERC20).
    // slither-disable-next-line erc20-interface
    function transferFrom(address from, address to, uint256 amount) external {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed < amount) revert NoBoolTokenInsufficient(allowed, amount);
        if (allowed != type(uint256).max) allowance[from][msg.sender] = allowed - amount;
        _move(from, to, amount);
    }

    function _move(address from, address to, uint256 amount) private {
        uint256 balance = balanceOf[from];
        if (balance < amount) revert NoBoolTokenInsufficient(balance, amount);
        balanceOf[from] = balance - amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}
