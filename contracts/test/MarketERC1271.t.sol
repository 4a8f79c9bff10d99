// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {IMarketTypes} from "../src/interfaces/IMarketTypes.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {ERC1271Lab} from "./helpers/ERC1271Lab.sol";
import {MarketFixture} from "./helpers/MarketFixture.sol";

/// @notice Orders from contracts and the keys fixed in a lease. A contract lab's bid (or a contract
/// provider's offer) is checked through ERC-1271 after the ECDSA check fails, and must then name
/// the ECDSA key that signs its vouchers (receipts): evidence checked after opening is verified
/// against that key alone, so a wallet turning hostile cannot revoke it.
contract MarketERC1271Test is MarketFixture {
    uint256 internal constant WALLET_OWNER_KEY = 0x5AFE;
    uint256 internal constant VOUCHER_KEY = 0xF00D;
    uint256 internal constant RECEIPT_KEY = 0xBEEF;
    /// @dev Far below what a check burning all gas would take from a transaction's whole limit.
    uint256 internal constant CALL_GAS = 1_000_000;

    TestUSD internal usd;
    ERC1271Lab internal wallet;
    address internal voucherSigner = vm.addr(VOUCHER_KEY);
    address internal receiptSigner = vm.addr(RECEIPT_KEY);

    function setUp() public {
        usd = new TestUSD(6);
        _deploy(address(usd), 6, 0, address(0));
        wallet = new ERC1271Lab(vm.addr(WALLET_OWNER_KEY));
        usd.mint(address(wallet), 1_000_000 * unit);
        vm.prank(address(wallet));
        usd.approve(address(market), type(uint256).max);
    }

    /// @dev The wallet's bid, naming `voucherSigner_`, its pair with the provider's offer, both signed
    /// (the bid by the wallet owner's key, for ERC-1271).
    function _walletPair(uint256 nonce, address voucherSigner_) internal view returns (Pair memory p) {
        IMarketTypes.Offer memory offer = _offer(provider, nonce);
        IMarketTypes.Bid memory bid = _bid(address(wallet), nonce);
        bid.voucherSigner = voucherSigner_;
        p = Pair(offer, _signOffer(offer), bid, _sign(WALLET_OWNER_KEY, market.hashBid(bid)));
    }

    /// @dev A lease of the wallet whose vouchers VOUCHER_KEY signs.
    function _openWalletLease(uint256 nonce) internal returns (IMarketTypes.Lease memory lease, bytes32 id) {
        return _open(_walletPair(nonce, voucherSigner), 1);
    }

    /// @dev A voucher for `lease` signed by `key`.
    function _voucherBy(uint256 key, IMarketTypes.Lease memory lease, uint256 cumulative)
        internal
        view
        returns (bytes memory)
    {
        return _signVoucher(key, keccak256(abi.encode(lease)), cumulative, bytes32(0));
    }

    function _walletItem(IMarketTypes.Lease memory lease, uint256 cumulative)
        internal
        view
        returns (IMarketTypes.ClaimItem memory)
    {
        return IMarketTypes.ClaimItem(lease, cumulative, bytes32(0), _voucherBy(VOUCHER_KEY, lease, cumulative));
    }

    function _eoaItem(IMarketTypes.Lease memory lease, uint256 cumulative)
        internal
        view
        returns (IMarketTypes.ClaimItem memory)
    {
        return IMarketTypes.ClaimItem(lease, cumulative, bytes32(0), _voucher(lease, cumulative));
    }

    /// @dev Registers the wallet as a provider (its owner key signs its offers through ERC-1271).
    function _registerWalletProvider() internal {
        vm.startPrank(address(wallet));
        usd.approve(address(market), minStake);
        market.register(minStake, "https://wallet.example", bytes32(0), bytes32(0));
        vm.stopPrank();
        staked += minStake;
    }

    /// @dev The wallet's offer naming `receiptSigner_`, signed by the wallet owner, with the lab's bid.
    function _walletProviderPair(address receiptSigner_) internal view returns (Pair memory p) {
        IMarketTypes.Offer memory offer = _offer(address(wallet), 0);
        offer.receiptSigner = receiptSigner_;
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        p = Pair(offer, _sign(WALLET_OWNER_KEY, market.hashOffer(offer)), bid, _signBid(bid));
    }

    // --- opening --------------------------------------------------------------------------------

    function test_openLease_acceptsErc1271LabBidAndFixesItsVoucherSigner() public {
        uint256 before = usd.balanceOf(address(wallet));
        Pair memory p = _walletPair(0, voucherSigner);
        // The ECDSA check fails (the wallet has no key), then the wallet is asked.
        vm.expectCall(
            address(wallet), abi.encodeCall(IERC1271.isValidSignature, (market.hashBid(p.bid), p.bidSig)), 1
        );
        (IMarketTypes.Lease memory lease,) = _open(p, 1);
        assertEq(lease.lab, address(wallet));
        assertEq(lease.voucherSigner, voucherSigner);
        assertEq(lease.receiptSigner, address(0));
        assertEq(usd.balanceOf(address(wallet)), before - _escrowOf(lease));
        assertEq(usd.balanceOf(address(market)), staked + _escrowOf(lease));
    }

    function test_openLease_revertsWhenErc1271LabContractRejectsSignature() public {
        Pair memory p = _walletPair(0, voucherSigner);
        bytes32 bidHash = market.hashBid(p.bid);
        p.bidSig = _sign(LAB_KEY, bidHash); // not the owner's
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, bidHash, address(wallet)));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_revertsWhenErc1271LabNamesNoVoucherSigner() public {
        Pair memory p = _walletPair(0, address(0));
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketSignerKeyRequired.selector, address(wallet)));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLeaseBatch_revertsWhenErc1271LabNamesNoVoucherSigner() public {
        Pair memory p = _walletPair(0, address(0));
        IMarketTypes.SignedOffer[] memory offers = new IMarketTypes.SignedOffer[](1);
        offers[0] = IMarketTypes.SignedOffer(p.offer, p.offerSig);
        IMarketTypes.SignedBid[] memory bids = new IMarketTypes.SignedBid[](1);
        bids[0] = IMarketTypes.SignedBid(p.bid, p.bidSig);
        IMarketTypes.Match[] memory matches = new IMarketTypes.Match[](1);
        matches[0] = IMarketTypes.Match(0, 0, 1);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketSignerKeyRequired.selector, address(wallet)));
        market.openLeaseBatch(offers, bids, matches);
    }

    function test_openLease_revertsWhenErc1271ProviderNamesNoReceiptSigner() public {
        _registerWalletProvider();
        Pair memory p = _walletProviderPair(address(0));
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketSignerKeyRequired.selector, address(wallet)));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    function test_openLease_acceptsErc1271ProviderNamingAReceiptSigner() public {
        _registerWalletProvider();
        (IMarketTypes.Lease memory lease,) = _open(_walletProviderPair(receiptSigner), 1);
        assertEq(lease.provider, address(wallet));
        assertEq(lease.receiptSigner, receiptSigner);
        assertEq(market.getProvider(address(wallet)).locked, _leaseLock(lease), "its stake backs the lease");
        assertEq(usd.balanceOf(address(market)), staked + _escrowOf(lease));
    }

    function test_openLease_eoaOrdersMayNameNoSignerKey() public {
        (IMarketTypes.Lease memory lease,) = _open(_defaultPair(), 1);
        assertEq(lease.receiptSigner, address(0));
        assertEq(lease.voucherSigner, address(0));
    }

    function test_openLease_acceptsEip2098CompactOrderSignatures() public {
        Pair memory p = _defaultPair();
        p.offerSig = _compact(p.offerSig);
        p.bidSig = _compact(p.bidSig);
        assertEq(p.offerSig.length, 64);
        assertEq(p.bidSig.length, 64);
        (IMarketTypes.Lease memory lease,) = _open(p, 2);
        assertEq(usd.balanceOf(address(market)), staked + _escrowOf(lease));
    }

    function test_openLease_revertsOnACompactSignatureOfAnotherKey() public {
        Pair memory p = _defaultPair();
        bytes32 digest = market.hashOffer(p.offer);
        p.offerSig = _compact(_sign(PROVIDER2_KEY, digest));
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, provider));
        market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, 1);
    }

    // --- vouchers -------------------------------------------------------------------------------

    function test_claim_creditsProviderOnErc1271LabVoucherSignedByItsVoucherSigner() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _openWalletLease(0);
        bytes memory sig = _voucherBy(VOUCHER_KEY, lease, 1_000);
        vm.expectCall(address(wallet), abi.encodeWithSelector(IERC1271.isValidSignature.selector), 0);
        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(id, 1_000, 1_000, bytes32(0));
        assertEq(market.claim(lease, 1_000, bytes32(0), sig), 1_000);
        assertEq(market.withdrawable(provider), 1_000);
    }

    function test_claim_revertsOnErc1271LabVoucherSignedByTheWalletOwner() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _openWalletLease(0);
        bytes32 digest = market.hashVoucher(IMarketTypes.Voucher(id, 1_000, bytes32(0)));
        bytes memory ownerSig = _voucherBy(WALLET_OWNER_KEY, lease, 1_000);
        // The wallet would approve it, but a voucher is not an order: ERC-1271 is not consulted.
        assertEq(wallet.isValidSignature(digest, ownerSig), IERC1271.isValidSignature.selector);
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, voucherSigner));
        market.claim(lease, 1_000, bytes32(0), ownerSig);
    }

    function test_claim_paysVouchersOfAWalletThatTurnedHostileAfterOpening() public {
        (IMarketTypes.Lease memory lease, bytes32 id) = _openWalletLease(0);
        bytes memory sig = _voucherBy(VOUCHER_KEY, lease, 1_000);
        // The wallet now refuses everything and burns all the gas it is given.
        wallet.setRevoked(true);
        wallet.setGasToBurn(wallet.BURN_ALL());
        assertEq(market.claim{gas: CALL_GAS}(lease, 1_000, bytes32(0), sig), 1_000);
        assertEq(market.leaseState(id).paid, 1_000);
        // Nor can it stop the provider's later vouchers in a batch.
        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](1);
        items[0] = _walletItem(lease, 1_500);
        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(id, 500, 1_500, bytes32(0));
        assertEq(market.claimBatch{gas: CALL_GAS}(items), 500);
        assertEq(market.withdrawable(provider), 1_500);
    }

    function test_claim_eoaLabNamingAVoucherSignerIsBoundToThatKey() public {
        IMarketTypes.Bid memory bid = _bid(lab, 0);
        bid.voucherSigner = voucherSigner;
        (IMarketTypes.Lease memory lease, bytes32 id) = _open(_pair(_offer(provider, 0), bid), 1);
        assertEq(lease.voucherSigner, voucherSigner);
        bytes32 digest = market.hashVoucher(IMarketTypes.Voucher(id, 1_000, bytes32(0)));
        bytes memory labSig = _voucher(lease, 1_000); // the lab's own key
        vm.expectRevert(abi.encodeWithSelector(IMarketTypes.MarketInvalidSignature.selector, digest, voucherSigner));
        market.claim(lease, 1_000, bytes32(0), labSig);
        assertEq(market.claim(lease, 1_000, bytes32(0), _voucherBy(VOUCHER_KEY, lease, 1_000)), 1_000);
    }

    function test_claim_acceptsAnEip2098CompactVoucherOfTheVoucherSigner() public {
        (IMarketTypes.Lease memory lease,) = _openWalletLease(0);
        bytes memory sig = _compact(_voucherBy(VOUCHER_KEY, lease, 1_000));
        assertEq(market.claim(lease, 1_000, bytes32(0), sig), 1_000);
    }

    // --- claimBatch -----------------------------------------------------------------------------

    function test_claimBatch_creditsErc1271LabVoucherAlongsideEoaVoucher() public {
        (IMarketTypes.Lease memory walletLease, bytes32 walletId) = _openWalletLease(0);
        (IMarketTypes.Lease memory eoaLease, bytes32 eoaId) = _open(_defaultPair(), 1);
        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](2);
        items[0] = _walletItem(walletLease, 700);
        items[1] = _eoaItem(eoaLease, 300);

        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(walletId, 700, 700, bytes32(0));
        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(eoaId, 300, 300, bytes32(0));
        assertEq(market.claimBatch(items), 1_000);
        assertEq(market.withdrawable(provider), 1_000);
    }

    function test_claimBatch_skipsErc1271LabVoucherSignedByTheWalletOwnerAndPaysOthers() public {
        Pair memory p = _defaultPair();
        (IMarketTypes.Lease memory a, bytes32 idA) = _open(p, 1);
        (IMarketTypes.Lease memory w, bytes32 idW) = _openWalletLease(0);
        (IMarketTypes.Lease memory c, bytes32 idC) = _open(p, 1);
        IMarketTypes.ClaimItem[] memory items = new IMarketTypes.ClaimItem[](3);
        items[0] = _eoaItem(a, 100);
        items[1] = IMarketTypes.ClaimItem(w, 200, bytes32(0), _voucherBy(WALLET_OWNER_KEY, w, 200));
        items[2] = _eoaItem(c, 300);

        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(idA, 100, 100, bytes32(0));
        vm.expectEmit(address(market));
        emit IMarketTypes.ClaimSkipped(idW, IMarketTypes.MarketInvalidSignature.selector);
        vm.expectEmit(address(market));
        emit IMarketTypes.Claimed(idC, 300, 300, bytes32(0));
        assertEq(market.claimBatch(items), 400);
        assertEq(market.withdrawable(provider), 400);
        assertEq(market.leaseState(idW).paid, 0);
    }
}
