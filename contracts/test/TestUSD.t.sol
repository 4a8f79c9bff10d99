// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "forge-std/Test.sol";
import {TestUSD} from "../src/TestUSD.sol";

contract TestUSDTest is Test {
    TestUSD internal usd;

    function setUp() public {
        usd = new TestUSD(6);
    }

    function test_decimals_areThoseGivenAtDeployment() public view {
        assertEq(usd.decimals(), 6);
    }

    function testFuzz_mint_creditsRecipientAndSupply(address to, uint128 amount) public {
        vm.assume(to != address(0));
        usd.mint(to, amount);
        assertEq(usd.balanceOf(to), amount);
        assertEq(usd.totalSupply(), amount);
    }

    function test_permit_setsAllowanceFromSignature() public {
        uint256 ownerKey = 0xA11CE;
        address owner = vm.addr(ownerKey);
        address spender = address(0xBEEF);
        uint256 deadline = block.timestamp + 1 hours;
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                owner,
                spender,
                1e6,
                usd.nonces(owner),
                deadline
            )
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", usd.DOMAIN_SEPARATOR(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ownerKey, digest);
        usd.permit(owner, spender, 1e6, deadline, v, r, s);
        assertEq(usd.allowance(owner, spender), 1e6);
    }
}
