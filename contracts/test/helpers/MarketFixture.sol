// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "forge-std/Test.sol";
import {Market} from "../../src/Market.sol";
import {IMarket} from "../../src/interfaces/IMarket.sol";
import {IMarketTypes} from "../../src/interfaces/IMarketTypes.sol";

/// @notice The token surface the tests use. `approve` and `transfer` are declared without a return
/// value so the same calls work for TestUSD (returns bool, ignored) and NoBoolToken (returns nothing).
interface ITestToken {
    function mint(address to, uint256 amount) external;
    function approve(address spender, uint256 amount) external;
    function balanceOf(address account) external view returns (uint256);
    function totalSupply() external view returns (uint256);
}

/// @notice Deployment, actors, order builders, signing and an independent EIP-712 implementation
/// shared by the market test suites.
abstract contract MarketFixture is Test {
    // --- EIP-712, written out independently of Market.sol --------------------------------------
    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant OFFER_TYPEHASH = keccak256(
        "Offer(address provider,bytes32 gpuModel,uint32 gpuCount,uint32 memoryGiB,uint32 bandwidthGbps,uint256 features,uint8 billingModes,uint256 pricePerGpuSecond,uint64 minDuration,uint64 maxDuration,uint64 expiry,uint256 nonce,address receiptSigner,address arbiter,uint16 minChargeBps)"
    );
    /// @dev The enum `billing` is a uint8 to EIP-712.
    bytes32 internal constant BID_TYPEHASH = keccak256(
        "Bid(address lab,bytes32 gpuModel,uint32 gpuCount,uint32 minMemoryGiB,uint32 minBandwidthGbps,uint256 requiredFeatures,uint256 acceptedFeatures,uint8 billing,bool allOrNone,uint256 maxPricePerGpuSecond,uint64 duration,uint64 expiry,uint256 nonce,bytes32 jobSpecHash,address voucherSigner,address arbiter,uint16 maxMinChargeBps)"
    );
    bytes32 internal constant VOUCHER_TYPEHASH =
        keccak256("Voucher(bytes32 leaseId,uint256 cumulativeAmount,bytes32 receiptHash)");
    bytes32 internal constant RECEIPT_TYPEHASH = keccak256(
        "Receipt(bytes32 leaseId,uint64 seq,bytes32 prevHash,uint64 periodStart,uint64 periodEnd,uint64 gpuSecondsCumulative,bytes32 outputRoot,bytes32 metricsHash,bytes32 attestationHash)"
    );

    /// @dev secp256k1 group order, for building the malleable twin of a signature.
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    // --- parameters -----------------------------------------------------------------------------
    bytes32 internal constant H100 = "H100-80GB";
    bytes32 internal constant A100 = "A100-40GB";
    uint40 internal constant UNBONDING_DELAY = 7 days;
    uint64 internal constant CLAIM_WINDOW = 1 days;
    uint40 internal constant CHALLENGE_WINDOW = 1 days;
    uint40 internal constant RULING_WINDOW = 3 days;
    /// @dev Each lease locks its whole escrow of stake (the deployment default).
    uint32 internal constant STAKE_RATIO_BPS = 10_000;
    uint16 internal constant DISPUTE_BOND_BPS = 1_000;
    uint256 internal constant BPS = 10_000;
    uint64 internal constant T0 = 1_700_000_000;
    uint64 internal constant DURATION = 1 hours;
    uint32 internal constant OFFER_GPUS = 8;
    uint32 internal constant BID_GPUS = 4;

    // --- attribute bits (market.matching.constraints.VOCABULARY: lane * 16 + value index) -------
    uint256 internal constant PCIE = 1 << 0; // lane 0, interconnect
    uint256 internal constant NVLINK = 1 << 1;
    uint256 internal constant NVSWITCH = 1 << 2;
    uint256 internal constant INFINIBAND = 1 << 17; // lane 1, network
    uint256 internal constant EU_WEST = 1 << 36; // lane 2, region
    uint256 internal constant EU_CENTRAL = 1 << 37;
    uint256 internal constant US_EAST = 1 << 32;
    uint256 internal constant ECC = 1 << 80; // lane 5, capabilities
    uint256 internal constant MIG = 1 << 81;
    /// @dev What the default offer signs: NVLink, InfiniBand, eu-west, ECC.
    uint256 internal constant OFFER_FEATURES = NVLINK | INFINIBAND | EU_WEST | ECC;
    /// @dev Billing mode bits of `Offer.billingModes`.
    uint8 internal constant RENTAL_BIT = uint8(1) << uint8(IMarketTypes.Billing.Rental);
    uint8 internal constant METERED_BIT = uint8(1) << uint8(IMarketTypes.Billing.Metered);

    // --- actors ---------------------------------------------------------------------------------
    uint256 internal constant PROVIDER_KEY = 0xB0B;
    uint256 internal constant PROVIDER2_KEY = 0xCA7;
    uint256 internal constant LAB_KEY = 0xA11CE;
    uint256 internal constant LAB2_KEY = 0xD0C;
    uint256 internal constant STRANGER_KEY = 0xE7E;
    address internal provider = vm.addr(PROVIDER_KEY);
    address internal provider2 = vm.addr(PROVIDER2_KEY);
    address internal lab = vm.addr(LAB_KEY);
    address internal lab2 = vm.addr(LAB2_KEY);
    address internal stranger = vm.addr(STRANGER_KEY);
    address internal treasury = makeAddr("treasury");

    // --- deployment -----------------------------------------------------------------------------
    ITestToken internal token;
    /// @dev The market, with its extension's functions (reached through its fallback).
    IMarket internal market;
    uint256 internal unit; // one whole token in its smallest unit
    uint256 internal minStake;
    uint256 internal price; // per GPU-second: 0.001 token
    /// @dev The stake ratio the next `_deploy` uses (a test may change it before deploying).
    uint32 internal stakeRatioBps = STAKE_RATIO_BPS;
    /// @dev What the fixture's providers staked in the market (`_registerProvider` adds to it):
    /// the part of the market's token balance that is neither escrow nor credit.
    uint256 internal staked;

    /// @notice A signed offer and bid, ready for openLease.
    struct Pair {
        IMarketTypes.Offer offer;
        bytes offerSig;
        IMarketTypes.Bid bid;
        bytes bidSig;
    }

    /// @dev Deploys the market on `token_`, funds and approves every actor, registers both providers.
    function _deploy(address token_, uint8 decimals, uint16 feeBps, address treasury_) internal {
        vm.warp(T0);
        token = ITestToken(token_);
        unit = 10 ** decimals;
        minStake = 1_000 * unit;
        price = unit / 1_000;
        staked = 0;
        market = IMarket(address(new Market(_params(token_, feeBps, treasury_))));

        address[4] memory actors = [provider, provider2, lab, lab2];
        for (uint256 i = 0; i < actors.length; ++i) {
            token.mint(actors[i], 1_000_000 * unit);
            vm.prank(actors[i]);
            token.approve(address(market), type(uint256).max);
        }
        _registerProvider(provider);
        _registerProvider(provider2);
    }

    /// @dev The fixture's deployment parameters on `token_` with this fee.
    function _params(address token_, uint16 feeBps, address treasury_)
        internal
        view
        returns (IMarketTypes.Params memory)
    {
        return IMarketTypes.Params({
            token: token_,
            minStake: minStake,
            unbondingDelay: UNBONDING_DELAY,
            claimWindow: CLAIM_WINDOW,
            challengeWindow: CHALLENGE_WINDOW,
            rulingWindow: RULING_WINDOW,
            stakeRatioBps: stakeRatioBps,
            disputeBondBps: DISPUTE_BOND_BPS,
            feeBps: feeBps,
            treasury: treasury_
        });
    }

    /// @dev Registers `who` with the minimum stake (it has approved the market).
    function _registerProvider(address who) internal {
        vm.prank(who);
        market.register(minStake, "https://gpu.example:7000", keccak256(abi.encode(who, "x25519")), bytes32(0));
        staked += minStake;
    }

    /// @dev Mints `amount` to provider `who` and adds it to its stake.
    function _addStake(address who, uint256 amount) internal {
        token.mint(who, amount);
        vm.prank(who);
        market.addStake(amount);
        staked += amount;
    }

    /// @dev The stake a lease with this escrow locks, as the market computes it.
    function _lockOf(uint256 escrow) internal view returns (uint256) {
        return escrow * stakeRatioBps / BPS;
    }

    /// @dev The stake `lease` locks (and a proof of cheating slashes).
    function _leaseLock(IMarketTypes.Lease memory lease) internal view returns (uint256) {
        return _lockOf(_escrowOf(lease));
    }

    // --- orders ---------------------------------------------------------------------------------

    function _offer(address provider_, uint256 nonce) internal view returns (IMarketTypes.Offer memory) {
        return IMarketTypes.Offer({
            provider: provider_,
            gpuModel: H100,
            gpuCount: OFFER_GPUS,
            memoryGiB: 80,
            bandwidthGbps: 400,
            features: OFFER_FEATURES,
            billingModes: RENTAL_BIT | METERED_BIT,
            pricePerGpuSecond: price,
            minDuration: 10 minutes,
            maxDuration: 1 days,
            expiry: uint64(block.timestamp + 1 hours),
            nonce: nonce,
            receiptSigner: address(0),
            arbiter: address(0),
            minChargeBps: 0
        });
    }

    /// @dev A bid the default offer meets: at least 80 GiB and 200 Gbps, ECC required, NVLink or
    /// NVSwitch, eu-west or eu-central; a rental.
    function _bid(address lab_, uint256 nonce) internal view returns (IMarketTypes.Bid memory) {
        return IMarketTypes.Bid({
            lab: lab_,
            gpuModel: H100,
            gpuCount: BID_GPUS,
            minMemoryGiB: 80,
            minBandwidthGbps: 200,
            requiredFeatures: ECC,
            acceptedFeatures: NVLINK | NVSWITCH | EU_WEST | EU_CENTRAL,
            billing: IMarketTypes.Billing.Rental,
            allOrNone: false,
            maxPricePerGpuSecond: price * 2,
            duration: DURATION,
            expiry: uint64(block.timestamp + 1 hours),
            nonce: nonce,
            jobSpecHash: keccak256("train llama"),
            voucherSigner: address(0),
            arbiter: address(0),
            maxMinChargeBps: 0
        });
    }

    function _keyOf(address who) internal view returns (uint256) {
        if (who == provider) return PROVIDER_KEY;
        if (who == provider2) return PROVIDER2_KEY;
        if (who == lab) return LAB_KEY;
        if (who == lab2) return LAB2_KEY;
        if (who == stranger) return STRANGER_KEY;
        revert("fixture: no key for signer");
    }

    function _sign(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function _signOffer(IMarketTypes.Offer memory offer) internal view returns (bytes memory) {
        return _sign(_keyOf(offer.provider), market.hashOffer(offer));
    }

    function _signBid(IMarketTypes.Bid memory bid) internal view returns (bytes memory) {
        return _sign(_keyOf(bid.lab), market.hashBid(bid));
    }

    function _signVoucher(uint256 key, bytes32 id, uint256 cumulativeAmount, bytes32 receiptHash)
        internal
        view
        returns (bytes memory)
    {
        return _sign(key, market.hashVoucher(IMarketTypes.Voucher(id, cumulativeAmount, receiptHash)));
    }

    /// @dev The lab's voucher for `lease`.
    function _voucher(IMarketTypes.Lease memory lease, uint256 cumulativeAmount) internal view returns (bytes memory) {
        return _signVoucher(_keyOf(lease.lab), keccak256(abi.encode(lease)), cumulativeAmount, bytes32(0));
    }

    /// @dev A receipt for `lease` (its seq-th) for the period [periodStart, periodEnd) with
    /// `gpuSeconds` cumulative usage; the other fields are filled in deterministically.
    function _receipt(
        IMarketTypes.Lease memory lease,
        uint64 seq,
        uint64 periodStart,
        uint64 periodEnd,
        uint64 gpuSeconds
    ) internal pure returns (IMarketTypes.Receipt memory) {
        return IMarketTypes.Receipt({
            leaseId: keccak256(abi.encode(lease)),
            seq: seq,
            prevHash: seq == 0 ? bytes32(0) : keccak256(abi.encode("prev", seq)),
            periodStart: periodStart,
            periodEnd: periodEnd,
            gpuSecondsCumulative: gpuSeconds,
            outputRoot: keccak256(abi.encode("outputs", seq)),
            metricsHash: keccak256(abi.encode("metrics", seq)),
            attestationHash: bytes32(0)
        });
    }

    /// @dev The provider's signature of a receipt, by the market's hash.
    function _signReceipt(uint256 key, IMarketTypes.Receipt memory r) internal view returns (bytes memory) {
        return _sign(key, market.hashReceipt(r));
    }

    /// @dev The receipt as the proofs take it: every field after leaseId and seq.
    function _body(IMarketTypes.Receipt memory r) internal pure returns (IMarketTypes.ReceiptBody memory) {
        return IMarketTypes.ReceiptBody({
            prevHash: r.prevHash,
            periodStart: r.periodStart,
            periodEnd: r.periodEnd,
            gpuSecondsCumulative: r.gpuSecondsCumulative,
            outputRoot: r.outputRoot,
            metricsHash: r.metricsHash,
            attestationHash: r.attestationHash
        });
    }

    /// @dev slashEquivocation with whole receipts: `a`'s seq, each one's body (their lease ids are
    /// implied by `lease`, which makes a receipt of another lease a receipt nobody signed).
    function _proveEquivocation(
        IMarketTypes.Lease memory lease,
        IMarketTypes.Receipt memory a,
        bytes memory sigA,
        IMarketTypes.Receipt memory b,
        bytes memory sigB
    ) internal returns (uint256) {
        return market.slashEquivocation(lease, a.seq, _body(a), sigA, _body(b), sigB);
    }

    /// @dev slashImpossibleUsage with a whole receipt.
    function _proveImpossibleUsage(IMarketTypes.Lease memory lease, IMarketTypes.Receipt memory r, bytes memory sig)
        internal
        returns (uint256)
    {
        return market.slashImpossibleUsage(lease, r.seq, _body(r), sig);
    }

    /// @dev A 65-byte signature in EIP-2098 compact form (r, vs).
    function _compact(bytes memory sig) internal pure returns (bytes memory) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
        return abi.encodePacked(r, bytes32(uint256(s) | (uint256(v - 27) << 255)));
    }

    function _pair(IMarketTypes.Offer memory offer, IMarketTypes.Bid memory bid) internal view returns (Pair memory p) {
        p.offer = offer;
        p.bid = bid;
        p.offerSig = _signOffer(offer);
        p.bidSig = _signBid(bid);
    }

    function _defaultPair() internal view returns (Pair memory) {
        return _pair(_offer(provider, 0), _bid(lab, 0));
    }

    /// @dev The lease openLease would create now for this pair and fill size.
    function _expectedLease(Pair memory p, uint32 gpus) internal view returns (IMarketTypes.Lease memory) {
        uint128 bidFilledBefore = market.orderState(p.bid.lab, market.hashBid(p.bid)).filled;
        return _leaseOf(p.offer, p.bid, gpus, p.offer.pricePerGpuSecond, bidFilledBefore);
    }

    /// @dev The lease a fill of `gpus` from `offer` to `bid` at `price` opens now, the bid having
    /// `bidFilledBefore` GPUs filled before it.
    function _leaseOf(
        IMarketTypes.Offer memory offer,
        IMarketTypes.Bid memory bid,
        uint32 gpus,
        uint256 price_,
        uint256 bidFilledBefore
    ) internal view returns (IMarketTypes.Lease memory) {
        bytes32 salt = keccak256(abi.encode(market.hashOffer(offer), market.hashBid(bid), bidFilledBefore));
        return IMarketTypes.Lease({
            provider: offer.provider,
            lab: bid.lab,
            gpus: gpus,
            pricePerGpuSecond: price_,
            start: uint64(block.timestamp),
            duration: bid.duration,
            salt: salt,
            billing: bid.billing,
            receiptSigner: offer.receiptSigner,
            voucherSigner: bid.voucherSigner,
            arbiter: offer.arbiter,
            minCharge: price_ * gpus * bid.duration * offer.minChargeBps / BPS
        });
    }

    /// @dev A copy of `lease` (memory structs are references).
    function _copy(IMarketTypes.Lease memory lease) internal pure returns (IMarketTypes.Lease memory) {
        return abi.decode(abi.encode(lease), (IMarketTypes.Lease));
    }

    function _signedOffer(IMarketTypes.Offer memory offer) internal view returns (IMarketTypes.SignedOffer memory) {
        return IMarketTypes.SignedOffer(offer, _signOffer(offer));
    }

    function _signedBid(IMarketTypes.Bid memory bid) internal view returns (IMarketTypes.SignedBid memory) {
        return IMarketTypes.SignedBid(bid, _signBid(bid));
    }

    /// @dev Opens a lease and checks its id against the terms rebuilt in the test.
    function _open(Pair memory p, uint32 gpus) internal returns (IMarketTypes.Lease memory lease, bytes32 id) {
        lease = _expectedLease(p, gpus);
        id = market.openLease(p.offer, p.offerSig, p.bid, p.bidSig, gpus);
        assertEq(id, keccak256(abi.encode(lease)), "lease id");
    }

    function _escrowOf(IMarketTypes.Lease memory lease) internal pure returns (uint256) {
        return lease.pricePerGpuSecond * lease.gpus * lease.duration;
    }

    /// @dev `who` withdraws its whole credit; returns what was sent.
    function _withdraw(address who) internal returns (uint256) {
        vm.prank(who);
        return market.withdraw();
    }

    /// @dev `who` withdraws its credit if it has any (a withdrawal of nothing reverts); returns it.
    function _withdrawIfCredited(address who) internal returns (uint256) {
        return market.withdrawable(who) == 0 ? 0 : _withdraw(who);
    }

    /// @dev The same signature with s replaced by n - s and v flipped: recovers the same signer.
    function _malleate(bytes memory sig) internal pure returns (bytes memory) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
        return abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
    }

    // --- independent EIP-712 digests --------------------------------------------------------------

    function _domainSeparator() internal view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("gpumarket"), keccak256("1"), block.chainid, address(market))
        );
    }

    function _typedDigest(bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", _domainSeparator(), structHash));
    }

    /// @dev EIP-712 encodes each field as one word: uint8 and bool widened, the enum as its uint8.
    function _offerDigest(IMarketTypes.Offer memory o) internal view returns (bytes32) {
        bytes memory head = abi.encode(OFFER_TYPEHASH, o.provider, o.gpuModel, o.gpuCount, o.memoryGiB);
        bytes memory middle = abi.encode(uint256(o.bandwidthGbps), o.features, uint256(o.billingModes));
        bytes memory tail = abi.encode(
            o.pricePerGpuSecond, o.minDuration, o.maxDuration, o.expiry, o.nonce, uint256(uint160(o.receiptSigner))
        );
        tail = bytes.concat(tail, abi.encode(uint256(uint160(o.arbiter)), uint256(o.minChargeBps)));
        return _typedDigest(keccak256(bytes.concat(head, middle, tail)));
    }

    function _bidDigest(IMarketTypes.Bid memory b) internal view returns (bytes32) {
        bytes memory head = abi.encode(BID_TYPEHASH, b.lab, b.gpuModel, b.gpuCount);
        bytes memory requirements =
            abi.encode(b.minMemoryGiB, b.minBandwidthGbps, b.requiredFeatures, b.acceptedFeatures);
        bytes memory terms = abi.encode(uint256(uint8(b.billing)), b.allOrNone ? uint256(1) : 0, b.maxPricePerGpuSecond);
        bytes memory tail =
            abi.encode(b.duration, b.expiry, b.nonce, b.jobSpecHash, uint256(uint160(b.voucherSigner)));
        tail = bytes.concat(tail, abi.encode(uint256(uint160(b.arbiter)), uint256(b.maxMinChargeBps)));
        return _typedDigest(keccak256(bytes.concat(head, requirements, terms, tail)));
    }

    function _voucherDigest(bytes32 id, uint256 cumulativeAmount, bytes32 receiptHash)
        internal
        view
        returns (bytes32)
    {
        return _typedDigest(keccak256(abi.encode(VOUCHER_TYPEHASH, id, cumulativeAmount, receiptHash)));
    }

    function _receiptDigest(IMarketTypes.Receipt memory r) internal view returns (bytes32) {
        bytes memory head = abi.encode(RECEIPT_TYPEHASH, r.leaseId, r.seq, r.prevHash, r.periodStart);
        bytes memory tail =
            abi.encode(r.periodEnd, r.gpuSecondsCumulative, r.outputRoot, r.metricsHash, r.attestationHash);
        return _typedDigest(keccak256(bytes.concat(head, tail)));
    }
}
