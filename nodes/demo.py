"""The main job: a market round on an embedded devnet.

For now it starts anvil, deploys the contract set, funds a lab from the TestUSD faucet and prints
what was deployed; it grows into the full round (providers, labs, leases, receipts, settlement).
"""

from __future__ import annotations

from typing import TextIO

from market.chain.deploy import deploy
from market.chain.devnet import Devnet
from market.chain.tx import Transactor


def run(out: TextIO) -> int:
    with Devnet.start() as dev:
        w3 = dev.web3()
        print(
            f"devnet    anvil on {dev.rpc_url} (chain id {dev.chain_id}, pid {dev.pid})", file=out
        )
        contracts = deploy(w3, dev.accounts[0], rpc_url=dev.rpc_url)
        d = contracts.deployment
        for name, address in sorted(d.contracts.items()):
            code = w3.eth.get_code(address)
            print(f"deployed  {name:16} {address} ({len(code)} bytes of code)", file=out)
        lab = dev.accounts[1]
        token = contracts.token
        decimals = token.functions.decimals().call()
        amount = 1_000 * 10**decimals
        mint = token.functions.mint(lab.address, amount)._encode_transaction_data()
        Transactor(w3, lab).send(token.address, mint, what="mint")
        balance = token.functions.balanceOf(lab.address).call()
        print(f"funded    lab {lab.address} with {balance / 10**decimals:,.2f} tUSD", file=out)
        print(f"done      deploy block {d.deploy_block}, head {w3.eth.block_number}", file=out)
    return 0
