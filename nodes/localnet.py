"""A whole market on one machine: anvil, the contracts, and daemons as separate processes.

    with Devnet.start(block_time=1) as dev:
        net = LocalMarket(dev, folder)                 # deploys, funds accounts from the faucet
        relay = net.start_relay()
        provider = net.start_provider(0)               # config + keystore written, ready awaited
        lab = net.start_lab(0, jobs=[matmul_job(...)]) # exits 0 once its leases are settled
        lab.wait(timeout_s=120)
        provider.kill(); net.restart(provider)        # SIGKILL and start again, same state
        net.stop_all()                                # SIGTERM, then SIGKILL past a grace

The main job (:mod:`nodes.demo`), the end-to-end tests and ``bench.e2e`` all run the market this
way. Each daemon is ``python -m nodes.cli <command>`` with its own TOML config and encrypted
keystore in ``folder``; its stdout's ``... ready url=...`` line says it serves, its stderr (the
structured log) goes to ``folder/<name>.log`` and, line by line, to ``on_log``. Accounts: 0
deploys and mints, 1 is the relay's matcher, providers are 2.. and labs follow them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from market.chain.client import MarketClient
from market.chain.deploy import Contracts, MarketParams, deploy
from market.chain.devnet import Devnet, free_port
from market.errors import InvalidArgument
from market.units import Token, per_gpu_hour
from nodes.errors import DaemonDidNotStart
from nodes.logs import FORMAT_ENV

TOKEN = Token("tUSD", 6)
"""The settlement token a LocalMarket deploys (TestUSD, six decimals)."""
USD = TOKEN.one
MODELS = ("H100-80GB", "A100-80GB")
PASSWORD_ENV = "GPUMARKET_KEY_PASSWORD"
MATCHER_ENV = "GPUMARKET_MATCHER_KEY"
PASSWORD = "local-only"
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 30.0
MAX_PROVIDERS = 6
PARAMS = MarketParams(min_stake=100 * USD, unbonding_delay=60, claim_window=20, challenge_window=10)
"""Short windows, so a silent lab or a late close settles in seconds."""
CHALLENGE = (
    'n = 128\nrows = 8\ndefault_class = "cpu-test"\nallowance_s = 3.0\n'
    'classes = { "H100-80GB" = "cpu-test", "A100-80GB" = "cpu-test" }\n'
)
"""The labs' hardware challenge here: small, every model held to the ``cpu-test`` class (the GPUs
of a local market are declared; the machine is a CPU), with room for a busy machine."""
LogSink = Callable[[str, str], None]
"""Called with (daemon name, log line) for every line a daemon logs."""


@dataclass
class Daemon:
    """One daemon process; :meth:`LocalMarket.restart` starts it again with the same config."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    log: Path
    module: str = "nodes.cli"
    """What ``python -m`` runs: the CLI, or a stand-in for it (``bench.cheating_provider``)."""
    proc: subprocess.Popen[str] | None = None
    ready_line: str = ""
    _ready: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return self.ready_field("url")

    @property
    def address(self) -> str:
        return self.ready_field("address")

    def ready_field(self, name: str) -> str:
        """A ``name=value`` field of its ready line (``url``, ``address``, ``metrics``)."""
        return next(
            (p.split("=", 1)[1] for p in self.ready_line.split() if p.startswith(f"{name}=")), ""
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout_s: float) -> int:
        """The exit code (raises subprocess.TimeoutExpired)."""
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, grace_s: float = STOP_GRACE_S) -> int:
        """SIGTERM (graceful stop), then SIGKILL past ``grace_s``; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


class LocalMarket:
    def __init__(
        self,
        dev: Devnet,
        folder: Path,
        *,
        params: MarketParams = PARAMS,
        on_log: LogSink | None = None,
        fund_usd: int = 10_000,
    ) -> None:
        self.dev = dev
        self.folder = folder
        self.on_log = on_log
        self.daemons: list[Daemon] = []
        w3 = dev.web3()
        self.contracts: Contracts = deploy(w3, dev.accounts[0], rpc_url=dev.rpc_url, params=params)
        self.deployment_file = folder / "deployment.json"
        self.contracts.deployment.save(self.deployment_file)
        self.faucet = MarketClient(w3, self.contracts, dev.accounts[0])
        """Account 0's client: it mints TestUSD, and reads the chain for the round's reports."""
        self.fund_usd = fund_usd
        self._funded: set[str] = set()

    # --- accounts ----------------------------------------------------------------------------

    @property
    def matcher(self) -> LocalAccount:
        return self.dev.accounts[1]

    def provider_account(self, i: int) -> LocalAccount:
        return self.dev.accounts[2 + i]

    def lab_account(self, i: int) -> LocalAccount:
        return self.dev.accounts[2 + MAX_PROVIDERS + i]

    def fund(self, account: LocalAccount | str) -> None:
        """Mint ``fund_usd`` to an account (a key's, or an address such as a wallet's), once."""
        address = account if isinstance(account, str) else account.address
        if address not in self._funded:
            self.faucet.mint_test_usd(address, self.fund_usd * USD)
            self._funded.add(address)

    def balance(self, address: str) -> int:
        return self.faucet.balance_of(address)

    def _keystore(self, name: str, acct: LocalAccount) -> Path:
        path = self.folder / f"{name}-key.json"
        if not path.exists():
            keyfile = Account.encrypt(acct.key, PASSWORD, iterations=2**12)  # local use only
            path.write_text(json.dumps(keyfile), encoding="utf-8")
        return path

    # --- daemons -----------------------------------------------------------------------------

    def _env(self, **extra: str) -> dict[str, str]:
        # Key=value logs whatever the caller's environment says: this module and the demo read them.
        return {**os.environ, PASSWORD_ENV: PASSWORD, FORMAT_ENV: "keyvalue", **extra}

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str], module: str = "nodes.cli"
    ) -> Daemon:
        daemon = Daemon(name, tuple(argv), env, self.folder / f"{name}.log", module)
        self.daemons.append(daemon)
        self._launch(daemon)
        return daemon

    def restart(self, daemon: Daemon) -> Daemon:
        """Start a stopped (or killed) daemon again, with the same config and state."""
        if daemon.running:
            raise InvalidArgument("daemon", daemon.name, f"{daemon.name} is still running")
        self._launch(daemon)
        return daemon

    def _launch(self, d: Daemon) -> None:
        d.ready_line = ""
        d._ready = threading.Event()
        d.proc = subprocess.Popen(
            [sys.executable, "-m", d.module, *d.argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=d.env,
            cwd=self.folder,
        )
        # Each reader holds its own process and event: a reader of a killed process may finish
        # after the restart began, and must not wake the wait for the new one.
        threading.Thread(target=self._read_stdout, args=(d, d.proc, d._ready), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(d, d.proc), daemon=True).start()
        if not d._ready.wait(READY_TIMEOUT_S) or not d.ready_line:
            d.kill()
            tail = d.log.read_text(encoding="utf-8")[-2000:] if d.log.exists() else ""
            raise DaemonDidNotStart(d.name, tail)

    def _read_stdout(self, d: Daemon, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                if " ready " in f" {line} " and not ready.is_set():
                    d.ready_line = line.strip()
                    ready.set()
        ready.set()  # it exited: no need to wait any longer

    def _read_stderr(self, d: Daemon, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        with proc.stderr, d.log.open("a", encoding="utf-8") as f:
            for line in proc.stderr:
                f.write(line)
                f.flush()
                if self.on_log is not None:
                    self.on_log(d.name, line.rstrip("\n"))

    def stop_all(self) -> None:
        """SIGTERM every daemon still running, newest first; SIGKILL past the grace."""
        for d in reversed(self.daemons):
            if d.running:
                assert d.proc is not None
                d.proc.terminate()
        for d in self.daemons:
            if d.proc is not None:
                d.terminate()

    # --- the three kinds ---------------------------------------------------------------------

    def start_relay(
        self, name: str = "relay", options: Sequence[str] = (), *, rpc_url: str | None = None
    ) -> Daemon:
        """The relay, matching with the market's matcher key; ``options`` are more of
        ``gpumarket relay``'s (``--matching auction``); ``rpc_url`` replaces the devnet's (in a
        deployment file of its own). It serves on a port of its own, kept across restarts, as
        the providers' and labs' configs name it."""
        deployment = self.deployment_file
        if rpc_url is not None:
            deployment = self.folder / f"{name}-deployment.json"
            replace(self.contracts.deployment, rpc_url=rpc_url).save(deployment)
        argv = ["relay", "--deployment", deployment.name, "--db", f"{name}.sqlite",
                "--port", str(free_port()), "--matcher-key-env", MATCHER_ENV,
                *options]  # fmt: skip
        return self.start(name, argv, self._env(**{MATCHER_ENV: "0x" + self.matcher.key.hex()}))

    def _config(
        self,
        name: str,
        acct: LocalAccount,
        relays: Sequence[str],
        rpc_url: str | None,
        body: str,
        *,
        key: str = "",
        holder: str | None = None,
    ) -> Path:
        """``name``.toml: what every daemon's config starts with (its state file, its key and
        ``key``'s further lines, the chain, the relays), then ``body``; the account whose tokens
        it spends funded (``holder``, else the key's), its state folder made."""
        self.fund(acct if holder is None else holder)
        (self.folder / name).mkdir(exist_ok=True)
        urls = ", ".join(_toml_string(u) for u in relays)
        rpc = "" if rpc_url is None else f"rpc_url = {_toml_string(rpc_url)}\n"
        config = self.folder / f"{name}.toml"
        config.write_text(
            f'state = "{name}/state.sqlite"\n'
            f'[key]\nkeystore = "{self._keystore(name, acct).name}"\n'
            f'password_env = "{PASSWORD_ENV}"\n{key}'
            f'[chain]\ndeployment = "{self.deployment_file.name}"\n{rpc}'
            f"[relays]\nurls = [{urls}]\n{body}",
            encoding="utf-8",
        )
        return config

    def start_provider(
        self,
        i: int,
        relays: Sequence[str],
        *,
        price: int | None = None,
        gpus: int = 8,
        agent: str = "",
        rpc_url: str | None = None,
        model: str | None = None,
        billing: Sequence[str] = ("rental",),
        module: str = "nodes.cli",
        env: dict[str, str] | None = None,
    ) -> Daemon:
        """Provider ``i``: ``gpus`` GPUs of ``model`` (default ``MODELS[i % 2]``) at ``price``,
        offered for the ``billing`` modes (``rental``, ``metered``); ``agent`` is extra TOML for
        its ``[agent]`` table (a key it sets replaces the default); ``rpc_url`` replaces the
        devnet's; ``module`` is what ``python -m`` runs (a stand-in for the CLI, with ``env``
        added to its environment). It serves on a port of its own, kept across restarts, as the
        endpoint it registers on-chain is."""
        name = f"provider{i}"
        defaults = {
            "port": str(free_port()),
            "stake": '"1000"',  # tokens; each lease locks its escrow of it (default ratio)
            "offer_ttl_s": "30",
            "min_duration_s": "5",
            "max_duration_s": "3600",
            "claim_interval_s": "2",
            "final_voucher_wait_s": "8",
            "billing": f"[{', '.join(_toml_string(b) for b in billing)}]",
        }
        given = {line.split("=", 1)[0].strip() for line in agent.splitlines() if "=" in line}
        agent_keys = "".join(f"{k} = {v}\n" for k, v in defaults.items() if k not in given)
        body = (
            f'[inventory]\n[[inventory.gpus]]\nmodel = "{model or MODELS[i % 2]}"\n'
            f"count = {gpus}\nmemory_gib = 80\n"
            f'[pricing]\npolicy = "fixed"\n'
            f"params = {{ price_per_gpu_hour = {_hourly(price or 500 + 100 * i)} }}\n"
            f"[metering]\ninterval_s = 2\n"
            f"[agent]\n{agent_keys}{agent}"
        )
        config = self._config(name, self.provider_account(i), relays, rpc_url, body)
        argv = ["provider", "--config", config.name]
        return self.start(name, argv, self._env(**(env or {})), module)

    def start_lab(
        self,
        i: int,
        relays: Sequence[str],
        jobs: Sequence[str],
        *,
        exit_when_done: bool = True,
        rpc_url: str | None = None,
        voucher_key: LocalAccount | None = None,
        wallet: str | None = None,
        lab_config: str = "",
        challenge: str = "",
    ) -> Daemon:
        """Lab ``i`` with ``jobs`` (each a ``[[jobs]]`` TOML table: :func:`matmul_job`,
        :func:`train_job`, :func:`command_job`); ``voucher_key`` signs its vouchers (its bids
        name it) instead of the lab's own key. With ``wallet`` (a contract wallet deployed
        beforehand, owned by :meth:`lab_account` ``i``) the lab acts for the wallet (``[key]
        wallet``), which is funded instead of the owner's account (the owner pays only gas).
        ``lab_config`` is more of its ``[lab]`` table (``audit_samples = 10``), ``challenge``
        its ``[challenge]`` table (default :data:`CHALLENGE`)."""
        name = f"lab{i}"
        body = (
            "[lab]\npoll_interval_s = 0.5\nbid_ttl_s = 120\n" + lab_config
            + f"[challenge]\n{challenge or CHALLENGE}" + "".join(jobs)
        )  # fmt: skip
        key = (
            ""
            if voucher_key is None
            else f'voucher_keystore = "{self._keystore(f"{name}-voucher", voucher_key).name}"\n'
        ) + ("" if wallet is None else f"wallet = {_toml_string(wallet)}\n")
        config = self._config(
            name, self.lab_account(i), relays, rpc_url, body, key=key, holder=wallet
        )
        argv = ["lab", "--config", config.name] + (["--exit-when-done"] if exit_when_done else [])
        return self.start(name, argv, self._env())


def matmul_job(model: str, *, gpus: int = 2, duration: int, seed: int, n: int = 128,
               rounds: int = 24, max_price: int = 800, billing: str = "rental") -> str:  # fmt: skip
    """A ``[[jobs]]`` table: ``rounds`` int64 products of ``n x n`` matrices, Freivalds-checked;
    ``billing`` is ``rental`` or ``metered``."""
    return (f'[[jobs]]\nmodel = "{model}"\ngpus = {gpus}\n'
            f"max_price_per_gpu_hour = {_hourly(max_price)}\n"
            f'duration = {duration}\nbilling = "{billing}"\nkind = "matmul"\nn = {n}\n'
            f"seed = {seed}\nrounds = {rounds}\n")  # fmt: skip


def train_job(model: str, *, gpus: int = 2, duration: int, seed: int, segments: int = 20,
              steps: int = 20, width: int = 16, max_price: int = 800,
              billing: str = "rental") -> str:  # fmt: skip
    """A ``[[jobs]]`` table: a training run of ``segments`` checkpoints, sampled segments
    re-executed by the lab; ``billing`` is ``rental`` or ``metered``."""
    return (f'[[jobs]]\nmodel = "{model}"\ngpus = {gpus}\n'
            f"max_price_per_gpu_hour = {_hourly(max_price)}\n"
            f'duration = {duration}\nbilling = "{billing}"\nkind = "train"\nseed = {seed}\n'
            f"segments = {segments}\nsteps = {steps}\nwidth = {width}\n")  # fmt: skip


def command_job(model: str, argv: Sequence[str], *, gpus: int = 2, duration: int,
                max_price: int = 800, billing: str = "rental") -> str:  # fmt: skip
    """A ``[[jobs]]`` table: a command, checked by running it again; ``billing`` is ``rental``
    or ``metered``."""
    quoted = ", ".join(_toml_string(a) for a in argv)
    return (f'[[jobs]]\nmodel = "{model}"\ngpus = {gpus}\n'
            f"max_price_per_gpu_hour = {_hourly(max_price)}\n"
            f'duration = {duration}\nbilling = "{billing}"\nkind = "command"\n'
            f"argv = [{quoted}]\n")  # fmt: skip


def _hourly(per_second: int) -> str:
    """A per-GPU-second price in :data:`TOKEN` base units as the config's per-GPU-hour string
    (exact: it converts back to ``per_second``)."""
    return _toml_string(TOKEN.plain(per_gpu_hour(per_second)))


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string


__all__ = [
    "CHALLENGE",
    "MODELS",
    "PARAMS",
    "TOKEN",
    "USD",
    "Daemon",
    "LocalMarket",
    "command_job",
    "matmul_job",
    "train_job",
]
