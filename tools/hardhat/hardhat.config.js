// The Hardhat 2.x node that market.chain.devnet starts for `implementation="hardhat"`
// (make test-hardhat). Every setting comes from the environment the devnet sets, so that the node
// matches anvil's: chain id, hardfork, the same mnemonic's funded accounts. The derived private
// keys are written where GPUMARKET_HARDHAT_CONFIG_OUT says, in anvil's --config-out shape.
const fs = require("node:fs");
const { derivePrivateKeys } = require("hardhat/internal/core/providers/util");

// anvil's and Hardhat's default development mnemonic and path.
const MNEMONIC = "test test test test test test test test test test test junk";
const HD_PATH = "m/44'/60'/0'/0";

const env = process.env;
const count = Number(env.GPUMARKET_HARDHAT_ACCOUNTS ?? "10");
const balance = (BigInt(env.GPUMARKET_HARDHAT_BALANCE_ETH ?? "10000") * 10n ** 18n).toString();
const keys = derivePrivateKeys(MNEMONIC, HD_PATH, 0, count, "").map((k) => `0x${k.toString("hex")}`);
if (env.GPUMARKET_HARDHAT_CONFIG_OUT) {
  fs.writeFileSync(env.GPUMARKET_HARDHAT_CONFIG_OUT, JSON.stringify({ private_keys: keys }));
}
const blockTime = env.GPUMARKET_HARDHAT_BLOCK_TIME;

module.exports = {
  networks: {
    hardhat: {
      chainId: Number(env.GPUMARKET_HARDHAT_CHAIN_ID ?? "31337"),
      hardfork: env.GPUMARKET_HARDHAT_HARDFORK ?? "prague",
      accounts: keys.map((privateKey) => ({ privateKey, balance })),
      // anvil's default block gas limit.
      blockGasLimit: 30_000_000,
      // Like anvil and geth, a transaction that reverts is mined and its hash returned; Hardhat
      // otherwise answers eth_sendRawTransaction with an error.
      throwOnTransactionFailures: false,
      mining: blockTime
        ? { auto: false, interval: Math.round(Number(blockTime) * 1000) }
        : { auto: true, interval: 0 },
    },
  },
};
