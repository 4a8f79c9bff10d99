"""The main job: a full market round of separate processes on an embedded devnet.

    gpumarket demo [--providers 3] [--labs 2] [--jobs 2]

It starts anvil (one block a second), deploys the contracts, funds each account from the TestUSD
faucet, writes each daemon an encrypted keystore and a TOML config in a fresh folder, and starts,
as processes talking over loopback sockets: a relay (order book and matcher), the provider
agents (``gpumarket provider``) and the labs (``gpumarket lab --exit-when-done``). Providers
register with stake and offer their GPUs; labs bid, each bid committing to its job; the relay's
matcher opens the leases on-chain with the labs' escrow; labs send their sealed jobs (integer
matrix products, checked by Freivalds, and a command job, checked by running it again);
providers run them, sign a receipt each metering period and deliver the sealed outputs; labs
verify every receipt and output and pay by signed vouchers; providers claim in batches and close
each lease when its work is paid, which credits the unused escrow back to the lab; everyone
withdraws. Progress is printed as it happens; the round ends with a ledger (balances before and
after, leases, receipts, vouchers, gas) and fails unless every token is accounted for and every
lease closed. The daemons' logs stay in the round's folder.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from eth_account import Account
from eth_account.signers.local import LocalAccount

from market.chain.deploy import Contracts, MarketParams, deploy
from market.chain.devnet import Devnet
from market.chain.tx import Transactor

USD = 10**6
MODELS = ("H100-80GB", "A100-80GB")
PASSWORD_ENV = "GPUMARKET_KEY_PASSWORD"
MATCHER_ENV = "GPUMARKET_MATCHER_KEY"
PASSWORD = "demo-only"
LEASE_S = 16
READY_TIMEOUT_S = 60.0
ROUND_TIMEOUT_S = 300.0
# The round's own windows, short so that a silent lab or a late close is settled in seconds.
PARAMS = MarketParams(min_stake=100 * USD, unbonding_delay=60, claim_window=20, challenge_window=10)
# The command job: a deterministic hash chain; the lab runs it again to check it.
HASH_CHAIN = (
    "import hashlib,sys\n"
    "h=hashlib.sha256(sys.argv[1].encode()).digest()\n"
    "for i in range(40):\n"
    "    for _ in range(20000): h=hashlib.sha256(h).digest()\n"
    "    print(i, h.hex(), flush=True)\n"
)
SHOWN = {
    "registered", "offered", "lease_opened", "job_received", "job_started", "job_exited",
    "receipt", "claimed", "lease_closed_by_provider", "withdrawn", "claim_finalized",
    "receipt_posted", "payment_stopped",
}  # fmt: skip


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen[str]
    log: Path
    ready: str = ""
    _ready_event: threading.Event = field(default_factory=threading.Event)


class Round:
    def __init__(self, dev: Devnet, out: TextIO, providers: int, labs: int, jobs: int) -> None:
        self.dev, self.out = dev, out
        self.n_providers, self.n_labs, self.n_jobs = providers, labs, jobs
        self.folder = Path(tempfile.mkdtemp(prefix="gpumarket-round-"))
        self.daemons: list[Daemon] = []
        self.lock = threading.Lock()
        w3 = dev.web3()
        self.contracts: Contracts = deploy(w3, dev.accounts[0], rpc_url=dev.rpc_url, params=PARAMS)
        self.deployment_file = self.folder / "deployment.json"
        self.contracts.deployment.save(self.deployment_file)
        accounts = dev.accounts[1:]
        self.matcher = accounts[0]
        self.providers = accounts[1 : 1 + providers]
        self.labs = accounts[1 + providers : 1 + providers + labs]
        self.log("devnet", f"anvil on {dev.rpc_url} (chain id {dev.chain_id}); round folder "
                 f"{self.folder}")  # fmt: skip
        token = self.contracts.token
        faucet = Transactor(w3, dev.accounts[0])
        for acct in [*self.providers, *self.labs]:
            faucet.send(token.address, token.encode_abi("mint", [acct.address, 10_000 * USD]))
        self.watch = [a.address for a in [*self.providers, *self.labs]]
        self.watch += [self.contracts.market.address, self.contracts.registry.address]
        self.before = {a: self.balance(a) for a in self.watch}

    def log(self, event: str, text: str) -> None:
        with self.lock:
            print(f"{event:10}{text}", file=self.out, flush=True)

    def balance(self, address: str) -> int:
        token = self.contracts.token
        return int(token.functions.balanceOf(address).call())

    # --- processes ---------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env[PASSWORD_ENV] = PASSWORD
        env.update(extra)
        return env

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Daemon:
        log = self.folder / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodes.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.folder,
        )
        daemon = Daemon(name, proc, log)
        threading.Thread(target=self._stdout, args=(daemon,), daemon=True).start()
        threading.Thread(target=self._stderr, args=(daemon,), daemon=True).start()
        self.daemons.append(daemon)
        return daemon

    def _stdout(self, d: Daemon) -> None:
        assert d.proc.stdout is not None
        for line in d.proc.stdout:
            if " ready " in f" {line}" and not d._ready_event.is_set():
                d.ready = line.strip()
                d._ready_event.set()
        d._ready_event.set()

    def _stderr(self, d: Daemon) -> None:
        assert d.proc.stderr is not None
        with d.log.open("w", encoding="utf-8") as f:
            for line in d.proc.stderr:
                f.write(line)
                f.flush()
                parts = line.split(" ", 4)
                if len(parts) < 4:
                    continue
                level, event = parts[1], parts[3].strip()
                if d.name.startswith("lab") or event in SHOWN or level in ("warning", "error"):
                    self.log(d.name, f"{event} {parts[4].strip() if len(parts) > 4 else ''}")

    def wait_ready(self, d: Daemon) -> str:
        if not d._ready_event.wait(READY_TIMEOUT_S) or not d.ready:
            raise SystemExit(f"error: {d.name} did not start; see {d.log}")
        field_ = next((p for p in d.ready.split() if p.startswith("url=")), "url=")
        return field_.removeprefix("url=")

    def keystore(self, name: str, acct: LocalAccount) -> Path:
        path = self.folder / f"{name}-key.json"
        path.write_text(json.dumps(Account.encrypt(acct.key, PASSWORD, iterations=2**12)))
        return path

    # --- the round ---------------------------------------------------------------------------

    def play(self) -> int:
        relay = self.start(
            "relay",
            ["relay", "--deployment", str(self.deployment_file), "--db", "relay.sqlite",
             "--matcher-key-env", MATCHER_ENV],
            self.env(**{MATCHER_ENV: "0x" + self.matcher.key.hex()}),
        )  # fmt: skip
        relay_url = self.wait_ready(relay)
        self.log("relay", f"{relay_url}")
        providers = []
        for i, acct in enumerate(self.providers):
            config = self.provider_config(i, acct, relay_url)
            providers.append(self.start(f"provider{i}", ["provider", "--config", str(config)],
                                        self.env()))  # fmt: skip
        for d in providers:
            self.log(d.name, f"serving at {self.wait_ready(d)}")
        labs = []
        for i, acct in enumerate(self.labs):
            config = self.lab_config(i, acct, relay_url)
            labs.append(self.start(f"lab{i}", ["lab", "--config", str(config), "--exit-when-done"],
                                   self.env()))  # fmt: skip
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        failed = []
        for d in labs:
            try:
                code = d.proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                code = -1
            if code != 0:
                failed.append(f"{d.name} (exit {code}; see {d.log})")
        self.stop_all()
        if failed:
            print(f"error: {', '.join(failed)}", file=self.out)
            return 1
        return self.ledger()

    def stop_all(self) -> None:
        for d in reversed(self.daemons):
            if d.proc.poll() is None:
                d.proc.terminate()
        for d in self.daemons:
            try:
                d.proc.wait(30)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait()

    def provider_config(self, i: int, acct: LocalAccount, relay_url: str) -> Path:
        name = f"provider{i}"
        path = self.folder / f"{name}.toml"
        path.write_text(
            f'state = "{name}/state.sqlite"\n'
            f'[key]\nkeystore = "{self.keystore(name, acct).name}"\n'
            f'password_env = "{PASSWORD_ENV}"\n'
            f'[chain]\ndeployment = "{self.deployment_file.name}"\n'
            f'[relays]\nurls = ["{relay_url}"]\n'
            f'[inventory]\n[[inventory.gpus]]\nmodel = "{MODELS[i % 2]}"\ncount = 8\n'
            f"memory_gib = 80\n"
            f'[pricing]\npolicy = "fixed"\nparams = {{ price_per_gpu_second = {500 + 100 * i} }}\n'
            f"[metering]\ninterval_s = 2\n"
            f"[agent]\nstake = 200\noffer_ttl_s = 30\nmin_duration_s = 5\n"
            f"claim_interval_s = 2\nfinal_voucher_wait_s = 8\n",
            encoding="utf-8",
        )
        (self.folder / name).mkdir(exist_ok=True)
        return path

    def lab_config(self, i: int, acct: LocalAccount, relay_url: str) -> Path:
        name = f"lab{i}"
        path = self.folder / f"{name}.toml"
        jobs = []
        for j in range(self.n_jobs):
            head = (f'[[jobs]]\nmodel = "{MODELS[j % 2]}"\ngpus = 2\n'
                    f"max_price_per_gpu_second = 800\nduration = {LEASE_S}\n")  # fmt: skip
            if j % 2 == 0:
                jobs.append(head + f'kind = "matmul"\nn = 128\nseed = {100 * i + j}\nrounds = 24\n')
            else:
                argv = ["python", "-c", HASH_CHAIN, f"lab{i}-job{j}"]
                quoted = ", ".join(_toml_string(a) for a in argv)
                jobs.append(head + f'kind = "command"\nargv = [{quoted}]\n')
        path.write_text(
            f'state = "{name}/state.sqlite"\n'
            f'[key]\nkeystore = "{self.keystore(name, acct).name}"\n'
            f'password_env = "{PASSWORD_ENV}"\n'
            f'[chain]\ndeployment = "{self.deployment_file.name}"\n'
            f'[relays]\nurls = ["{relay_url}"]\n'
            f"[lab]\npoll_interval_s = 0.5\n" + "".join(jobs),
            encoding="utf-8",
        )
        (self.folder / name).mkdir(exist_ok=True)
        return path

    # --- the ledger --------------------------------------------------------------------------

    def ledger(self) -> int:
        w3 = self.dev.web3()
        first = self.contracts.deployment.deploy_block
        gas = sum(
            int(w3.eth.get_block(n)["gasUsed"]) for n in range(first, w3.eth.block_number + 1)
        )
        events = self.contracts.market.events
        opened = len(events.LeaseOpened().get_logs(from_block=first))
        closed = len(events.LeaseClosed().get_logs(from_block=first))
        receipts = vouchers = 0
        for i in range(self.n_providers):
            with sqlite3.connect(self.folder / f"provider{i}" / "state.sqlite") as db:
                receipts += db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0]
                vouchers += db.execute("SELECT COUNT(*) FROM vouchers").fetchone()[0]
        after = {a: self.balance(a) for a in self.watch}
        names = {a.address: f"provider {i}" for i, a in enumerate(self.providers)}
        names |= {a.address: f"lab {i}" for i, a in enumerate(self.labs)}
        names[self.contracts.market.address] = "market"
        names[self.contracts.registry.address] = "registry"
        print("\nledger (tUSD)", file=self.out)
        for a in self.watch:
            print(f"  {names[a]:11} {self.before[a] / USD:12.2f} -> {after[a] / USD:12.2f}"
                  f"  ({(after[a] - self.before[a]) / USD:+.2f})", file=self.out)  # fmt: skip
        print(f"  {opened} leases opened, {closed} closed; {receipts} receipts signed and "
              f"delivered, {vouchers} vouchers; {gas:,} gas used", file=self.out)  # fmt: skip
        if sum(after.values()) != sum(self.before.values()):
            print("error: tokens were created or lost", file=self.out)
            return 1
        if opened == 0 or closed != opened:
            print(f"error: {opened - closed} of {opened} leases are still open", file=self.out)
            return 1
        print("done      every token accounted for, every lease closed", file=self.out)
        return 0


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def run(out: TextIO, *, providers: int = 3, labs: int = 2, jobs: int = 2) -> int:
    if not 1 <= providers <= 6 or not 1 <= labs <= 3 or jobs < 1:
        print("error: 1-6 providers, 1-3 labs and at least one job per lab", file=out)
        return 2
    with Devnet.start(accounts=max(10, providers + labs + 2), block_time=1) as dev:
        round_ = Round(dev, out, providers, labs, jobs)
        try:
            return round_.play()
        finally:
            round_.stop_all()


__all__ = ["run"]
