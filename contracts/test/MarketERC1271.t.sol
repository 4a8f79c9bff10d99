// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IMarket} from "../src/interfaces/IMarket.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {ERC1271Lab} from "./helpers/ERC1271Lab.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";

/// @notice Labs that are contracts: their bids and vouchers are checked through ERC-1271 after the
/// ECDSA check fails, and in `claimBatch` that check gets a bounded amount of gas.
contract MarketERC1271Test is MarketFixture {
    uint256 internal constant WALLET_OWNER_KEY = 0x5AFE;
    /// @dev Enough for any batch below, far below what a check burning everything would take.
    uint256 internal constant BATCH_GAS = 1_000_000;

    TestUSD internal usd;
    ERC1271Lab internal wallet;

    function setUp() public {
        usd = new TestUSD(6);
        _deploy(address(usd), 6, 0, address(0));
        wallet = new ERC1271Lab(vm.addr(WALLET_OWNER_KEY));
        usd.mint(address(wallet), 1_000_000 * unit);
        vm.prank(address(wallet));
        usd.approve(address(market), type(uint256).max);
    }

    /// @dev A lease of the wallet, its bid signed by the wallet owner's key.
    function _openWalletLease(uint256 nonce) internal returns (IMarket.Lease memory lease, bytes32 id) {
        IMarket.Offer memory offer = _offer(provider, nonce);
        IMarket.Bid memory bid = _bid(address(wallet), nonce);
        Pair memory p = Pair(offer, _signOffer(offer), bid, _sign(WALLET_OWNER_KEY, market.hashBid(bid)));
        return _open(p, 1);
    }

    function _walletItem(IMarket.Lease memory lease, uint256 cumulative)
        internal
        view
        returns (IMarket.ClaimItem memory)
    {
        bytes32 id = keccak256(abi.encode(lease));
        bytes memory sig = _signVoucher(WALLET_OWNER_KEY, id, cumulative, bytes32(0));
        return IMarket.ClaimItem(lease, cumulative, bytes32(0), sig);
    }

    function _eoaItem(IMarket.Lease memory lease, uint256 cumulative)
        internal
        view
        returns (IMarket.ClaimItem memory)
    {
        return IMarket.ClaimItem(lease, cumulative, bytes32(0), _voucher(lease, cumulative));
    }

    // --- opening --------------------------------------------------------------------------------

    function test_openLease_pullsEscrowFromErc1271LabContract() public {
        uint256 before = usd.balanceOf(address(wallet));
        (IMarket.Lease memory lease,) = _openWalletLease(0);
        assertEq(lease.lab, address(wallet));
        assertEq(usd.balanceOf(address(wallet)), before - _escrowOf(lease));
    }

    function test_openLease_revertsWhenErc1271LabContractRejectsSignature() public {
        IMarket.Offer memory offer = _offer(provider, 0);
        IMarket.Bid memory bid = _bid(address(wallet), 0);
        bytes32 bidHash = market.hashBid(bid);
        bytes memory offerSig = _signOffer(offer);
        bytes memory notTheOwners = _sign(LAB_KEY, bidHash);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, bidHash, address(wallet)));
        market.openLease(offer, offerSig, bid, notTheOwners, 1);
    }

    // --- claim ----------------------------------------------------------------------------------

    function test_claim_creditsProviderOnErc1271LabVoucher() public {
        (IMarket.Lease memory lease, bytes32 id) = _openWalletLease(0);
        IMarket.ClaimItem memory item = _walletItem(lease, 1_000);
        vm.expectEmit(address(market));
        emit IMarket.Claimed(id, 1_000, 1_000, bytes32(0));
        assertEq(market.claim(lease, 1_000, bytes32(0), item.signature), 1_000);
        assertEq(market.withdrawable(provider), 1_000);
    }

    function test_claim_givesErc1271CheckMoreGasThanTheBatchAllowance() public {
        (IMarket.Lease memory lease, bytes32 id) = _openWalletLease(0);
        wallet.setGasToBurn(market.BATCH_ERC1271_GAS() + 30_000);
        IMarket.ClaimItem memory item = _walletItem(lease, 1_000);
        assertEq(market.claim{gas: BATCH_GAS}(lease, 1_000, bytes32(0), item.signature), 1_000);
        assertEq(market.leaseState(id).paid, 1_000);
    }

    // --- claimBatch -----------------------------------------------------------------------------

    function test_claimBatch_creditsErc1271LabVoucherAlongsideEoaVoucher() public {
        (IMarket.Lease memory walletLease, bytes32 walletId) = _openWalletLease(0);
        (IMarket.Lease memory eoaLease, bytes32 eoaId) = _open(_defaultPair(), 1);
        IMarket.ClaimItem[] memory items = new IMarket.ClaimItem[](2);
        items[0] = _walletItem(walletLease, 700);
        items[1] = _eoaItem(eoaLease, 300);

        vm.expectEmit(address(market));
        emit IMarket.Claimed(walletId, 700, 700, bytes32(0));
        vm.expectEmit(address(market));
        emit IMarket.Claimed(eoaId, 300, 300, bytes32(0));
        assertEq(market.claimBatch{gas: BATCH_GAS}(items), 1_000);
        assertEq(market.withdrawable(provider), 1_000);
    }

    function test_claimBatch_skipsGasBurningErc1271LabAndCreditsOthers() public {
        Pair memory p = _defaultPair();
        (IMarket.Lease memory a, bytes32 idA) = _open(p, 1);
        (IMarket.Lease memory burner, bytes32 idBurner) = _openWalletLease(0);
        (IMarket.Lease memory c, bytes32 idC) = _open(p, 1);
        IMarket.ClaimItem[] memory items = new IMarket.ClaimItem[](3);
        items[0] = _eoaItem(a, 100);
        items[1] = _walletItem(burner, 200);
        items[2] = _eoaItem(c, 300);
        // The wallet's vouchers were valid; its check now burns whatever gas it is given.
        wallet.setGasToBurn(wallet.BURN_ALL());

        vm.expectEmit(address(market));
        emit IMarket.Claimed(idA, 100, 100, bytes32(0));
        vm.expectEmit(address(market));
        emit IMarket.ClaimSkipped(idBurner, IMarket.MarketInvalidSignature.selector);
        vm.expectEmit(address(market));
        emit IMarket.Claimed(idC, 300, 300, bytes32(0));
        uint256 gasBefore = gasleft();
        uint256 total = market.claimBatch{gas: BATCH_GAS}(items);
        uint256 gasUsed = gasBefore - gasleft();

        assertEq(total, 400);
        assertEq(market.withdrawable(provider), 400);
        assertEq(market.leaseState(idBurner).paid, 0);
        // The burner cost the batch its allowance, not the 63/64 of everything it would otherwise take.
        assertLt(gasUsed, market.BATCH_ERC1271_GAS() + 150_000, "burner bounded");
    }

    function test_claimBatch_skipsErc1271LabNeedingMoreThanItsAllowance() public {
        (IMarket.Lease memory lease, bytes32 id) = _openWalletLease(0);
        wallet.setGasToBurn(market.BATCH_ERC1271_GAS() + 1);
        IMarket.ClaimItem[] memory items = new IMarket.ClaimItem[](1);
        items[0] = _walletItem(lease, 500);
        vm.expectEmit(address(market));
        emit IMarket.ClaimSkipped(id, IMarket.MarketInvalidSignature.selector);
        assertEq(market.claimBatch{gas: BATCH_GAS}(items), 0);
        // Alone, the same voucher pays.
        assertEq(market.claim{gas: BATCH_GAS}(lease, 500, bytes32(0), items[0].signature), 500);
    }

    function test_claimBatch_revertsWhenGasLimitLeavesErc1271CheckLessThanItsAllowance() public {
        (IMarket.Lease memory lease,) = _openWalletLease(0);
        wallet.setGasToBurn(wallet.BURN_ALL());
        IMarket.ClaimItem[] memory items = new IMarket.ClaimItem[](1);
        items[0] = _walletItem(lease, 500);
        // Too little gas for the check to get its allowance: a sender must not be able to make a
        // contract signature fail this way, so the batch reverts instead of skipping the item.
        vm.expectRevert(
            abi.encodeWithSelector(
                IMarket.MarketSignatureCheckOutOfGas.selector, address(wallet), market.BATCH_ERC1271_GAS()
            )
        );
        market.claimBatch{gas: 45_000}(items);
    }
}
