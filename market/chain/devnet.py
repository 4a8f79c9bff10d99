"""A local devnet: start on a free port, control time and mining, always stop.

    with Devnet.start() as dev:
        w3 = dev.web3()
        snap = dev.snapshot()
        dev.increase_time(3600)
        dev.revert(snap)

anvil comes from the pinned npm package (``npm ci``); ``GPUMARKET_ANVIL`` may name another binary.
A second EVM implementation, a Hardhat 2.x node (``npm ci --prefix tools/hardhat``), runs behind
the same interface with ``implementation="hardhat"`` or ``GPUMARKET_EVM=hardhat``: same chain id,
hardfork and funded accounts; the few node-specific methods (mining, balances, code, impersonation)
are mapped to each node's name for them (docs/decisions/0019-second-evm.md). The hardfork is
pinned to the EVM version the contracts are compiled for. Every started devnet is stopped on
:meth:`Devnet.stop`, on interpreter exit, and by the kernel if this process dies
(``PR_SET_PDEATHSIG``), so no node outlives the process that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, get_args

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

from market.artifacts import EVM_VERSION
from market.errors import DevnetError

DEFAULT_CHAIN_ID = 31337
READY_DEADLINE_S = 30.0
STOP_GRACE_S = 5.0
RPC_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 5
_REPO_ANVIL = (
    Path(__file__).resolve().parents[2]
    / "node_modules"
    / "@foundry-rs"
    / "anvil-linux-amd64"
    / "bin"
    / "anvil"
)
_REPO_HARDHAT = Path(__file__).resolve().parents[2] / "tools" / "hardhat"
_live: set[Devnet] = set()

Implementation = Literal["anvil", "hardhat"]
"""The EVM node behind a :class:`Devnet`."""

# The node-specific JSON-RPC methods by implementation; None where the node has none.
_METHODS: dict[Implementation, dict[str, str | None]] = {
    "anvil": {
        "mine": "anvil_mine",
        "set_balance": "anvil_setBalance",
        "set_base_fee": "anvil_setNextBlockBaseFeePerGas",
        "set_code": "anvil_setCode",
        "impersonate": "anvil_impersonateAccount",
        "stop_impersonating": "anvil_stopImpersonatingAccount",
        "set_interval": "anvil_setBlockTimestampInterval",
        "remove_interval": "anvil_removeBlockTimestampInterval",
    },
    "hardhat": {
        "mine": "hardhat_mine",
        "set_balance": "hardhat_setBalance",
        "set_base_fee": "hardhat_setNextBlockBaseFeePerGas",
        "set_code": "hardhat_setCode",
        "impersonate": "hardhat_impersonateAccount",
        "stop_impersonating": "hardhat_stopImpersonatingAccount",
        "set_interval": None,
        "remove_interval": None,
    },
}


def default_implementation() -> Implementation:
    """``$GPUMARKET_EVM`` (``anvil`` or ``hardhat``), anvil when unset."""
    name = os.environ.get("GPUMARKET_EVM", "anvil")
    for known in get_args(Implementation):
        if name == known:
            return known  # type: ignore[no-any-return]
    raise DevnetError(f"GPUMARKET_EVM={name!r} is not one of {get_args(Implementation)}")


def find_hardhat() -> Path:
    """The Hardhat CLI script installed under tools/hardhat."""
    cli = _REPO_HARDHAT / "node_modules" / "hardhat" / "internal" / "cli" / "cli.js"
    if not cli.is_file():
        raise DevnetError("hardhat not found: run `npm ci --prefix tools/hardhat`")
    return cli


def find_anvil() -> Path:
    """The anvil binary: ``$GPUMARKET_ANVIL``, the repository's pinned npm copy, or ``PATH``."""
    if env := os.environ.get("GPUMARKET_ANVIL"):
        return Path(env)
    if _REPO_ANVIL.is_file():
        return _REPO_ANVIL
    if found := shutil.which("anvil"):
        return Path(found)
    raise DevnetError(
        "anvil not found: run `npm ci` in the repository root (or set GPUMARKET_ANVIL)"
    )


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config_written(workdir: Path) -> bool:
    """Whether the node's ``config.json`` is whole: it parses and names the accounts' keys."""
    try:
        config = json.loads((workdir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("private_keys"))


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Devnet:
    """One running node (anvil or Hardhat). Create with :meth:`start`; use as a context manager."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        port: int,
        workdir: Path,
        chain_id: int,
        implementation: Implementation = "anvil",
    ) -> None:
        self._proc = proc
        self.implementation: Implementation = implementation
        self.port = port
        self.chain_id = chain_id
        self._workdir = workdir
        self.rpc_url = f"http://127.0.0.1:{port}"
        self._w3 = Web3(HTTPProvider(self.rpc_url, request_kwargs={"timeout": RPC_TIMEOUT_S}))
        config = json.loads((workdir / "config.json").read_text(encoding="utf-8"))
        self.accounts: list[LocalAccount] = [Account.from_key(k) for k in config["private_keys"]]

    @classmethod
    def start(
        cls,
        *,
        port: int | None = None,
        chain_id: int = DEFAULT_CHAIN_ID,
        accounts: int = 10,
        balance_eth: int = 10_000,
        block_time: float | None = None,
        state_path: Path | None = None,
        implementation: Implementation | None = None,
    ) -> Devnet:
        """Start the node and return once it answers JSON-RPC.

        With ``port=None`` a free port is chosen, and another one if it is taken before the node
        binds. ``state_path`` loads and saves chain state there (saved every second and on stop;
        anvil only). ``implementation`` defaults to :func:`default_implementation`.
        """
        impl = implementation or default_implementation()
        if impl == "hardhat" and state_path is not None:
            raise DevnetError("state_path needs anvil: the Hardhat node keeps no state file")
        last_error = ""
        for _ in range(_PORT_ATTEMPTS if port is None else 1):
            chosen = port if port is not None else free_port()
            workdir = Path(tempfile.mkdtemp(prefix=f"gpumarket-{impl}-"))
            config_out = workdir / "config.json"
            env = None
            if impl == "hardhat":
                args = [
                    "node", str(find_hardhat()), "node",
                    "--config", str(_REPO_HARDHAT / "hardhat.config.js"),
                    "--hostname", "127.0.0.1",
                    "--port", str(chosen),
                ]  # fmt: skip
                env = os.environ | {
                    "GPUMARKET_HARDHAT_CONFIG_OUT": str(config_out),
                    "GPUMARKET_HARDHAT_CHAIN_ID": str(chain_id),
                    "GPUMARKET_HARDHAT_HARDFORK": EVM_VERSION,
                    "GPUMARKET_HARDHAT_ACCOUNTS": str(accounts),
                    "GPUMARKET_HARDHAT_BALANCE_ETH": str(balance_eth),
                    "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true",
                }
                if block_time is not None:
                    env["GPUMARKET_HARDHAT_BLOCK_TIME"] = str(block_time)
            else:
                args = [
                    str(find_anvil()),
                    "--host", "127.0.0.1",
                    "--port", str(chosen),
                    "--chain-id", str(chain_id),
                    "--hardfork", EVM_VERSION,
                    "--accounts", str(accounts),
                    "--balance", str(balance_eth),
                    "--config-out", str(config_out),
                ]  # fmt: skip
                if block_time is not None:
                    args += ["--block-time", str(block_time)]
                if state_path is not None:
                    args += ["--state", str(state_path), "--state-interval", "1"]
            log = (workdir / "node.log").open("wb")
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=_REPO_HARDHAT if impl == "hardhat" else None,
                env=env,
                start_new_session=True,  # Ctrl-C reaches us, and we stop the node in order
                preexec_fn=_die_with_parent,  # the process is single-threaded at start
            )
            log.close()
            try:
                devnet = cls._wait_ready(proc, chosen, workdir, chain_id, impl)
            except DevnetError as exc:
                last_error = str(exc)
                if "in use" not in last_error.lower():
                    raise
                continue
            _live.add(devnet)
            return devnet
        raise DevnetError(f"could not start {impl} on a free port: {last_error}")

    @classmethod
    def _wait_ready(
        cls,
        proc: subprocess.Popen[bytes],
        port: int,
        workdir: Path,
        chain_id: int,
        implementation: Implementation,
    ) -> Devnet:
        probe = Web3(HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 1}))
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (workdir / "node.log").read_text(errors="replace")[-2000:]
                raise DevnetError(f"{implementation} exited with code {proc.returncode}: {tail}")
            # The node writes config.json while it starts: an empty or half-written file is read
            # as "not yet" (seen under load), not as a broken node.
            if _config_written(workdir) and probe.is_connected():
                return cls(proc, port, workdir, chain_id, implementation)
            time.sleep(0.02)  # polling interval while waiting for readiness, bounded by deadline
        _stop_process(proc)
        raise DevnetError(
            f"{implementation} did not answer on port {port} within {READY_DEADLINE_S}s"
        )

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stop(self) -> int:
        """Stop the node: SIGINT (anvil saves state), then SIGTERM, then SIGKILL; returns its exit
        code."""
        _live.discard(self)
        code = _stop_process(self._proc)
        shutil.rmtree(self._workdir, ignore_errors=True)
        if self.implementation == "hardhat" and code == -signal.SIGINT:
            return 0  # Node ends on SIGINT by the signal's default action: a clean stop
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- JSON-RPC ------------------------------------------------------------------------------

    def web3(self, timeout_s: float = RPC_TIMEOUT_S) -> Web3:
        """A new Web3 connected to this devnet."""
        return Web3(
            HTTPProvider(
                self.rpc_url, request_kwargs={"timeout": timeout_s}, cache_allowed_requests=True
            )
        )

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """Call a JSON-RPC method; raises DevnetError if the node is gone or answers an error."""
        if not self.alive:
            raise DevnetError(
                f"{self.implementation} (pid {self.pid}) exited with code {self._proc.returncode}"
            )
        try:
            response = self._w3.provider.make_request(RPCEndpoint(method), params or [])
        except (OSError, ConnectionError) as exc:  # requests' errors derive from OSError
            state = "running" if self.alive else f"exited with code {self._proc.returncode}"
            raise DevnetError(
                f"{self.implementation} at {self.rpc_url} did not answer {method} ({state})"
            ) from exc
        if "error" in response:
            raise DevnetError(f"{method} failed: {response['error']}")
        return response.get("result")

    def node_method(self, action: str) -> str:
        """This node's JSON-RPC method for a node-specific ``action`` (``mine``, ``set_code``...);
        raises DevnetError where the node has none."""
        method = _METHODS[self.implementation][action]
        if method is None:
            anvil_method = _METHODS["anvil"][action]
            raise DevnetError(f"{self.implementation} has no equivalent of {anvil_method}")
        return method

    def supports(self, action: str) -> bool:
        """Whether this node has a method for the node-specific ``action``."""
        return _METHODS[self.implementation][action] is not None

    def snapshot(self) -> str:
        """Snapshot chain state; the id can be reverted to once."""
        snap: str = self.rpc("evm_snapshot")
        return snap

    def revert(self, snapshot_id: str) -> None:
        if not self.rpc("evm_revert", [snapshot_id]):
            raise DevnetError(f"snapshot {snapshot_id} is unknown or was already reverted to")

    @contextlib.contextmanager
    def isolated(self) -> Iterator[None]:
        """Run the body, then put the chain back as it was."""
        snap = self.snapshot()
        try:
            yield
        finally:
            self.revert(snap)

    def increase_time(self, seconds: int) -> None:
        """Advance the clock; the next mined block carries the later timestamp."""
        self.rpc("evm_increaseTime", [seconds])

    def set_next_block_timestamp(self, timestamp: int) -> None:
        self.rpc("evm_setNextBlockTimestamp", [timestamp])

    def set_block_timestamp_interval(self, seconds: int | None) -> None:
        """Give every new block the previous timestamp plus ``seconds``, whatever the wall clock
        says (``None`` goes back to wall-clock time). Makes chain time deterministic for tests."""
        if seconds is None:
            self.rpc(self.node_method("remove_interval"))
        else:
            self.rpc(self.node_method("set_interval"), [seconds])

    def mine(self, blocks: int = 1) -> None:
        self.rpc(self.node_method("mine"), [hex(blocks)])

    def set_automine(self, enabled: bool) -> None:
        """With automine off, transactions wait in the pool until :meth:`mine`."""
        self.rpc("evm_setAutomine", [enabled])

    def set_interval_mining(self, seconds: int) -> None:
        """Mine a block every ``seconds`` (0 turns interval mining off)."""
        self.rpc("evm_setIntervalMining", [seconds])

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc(self.node_method("set_balance"), [address, hex(wei)])

    def set_next_base_fee(self, wei: int) -> None:
        """The base fee per gas of the next block mined."""
        self.rpc(self.node_method("set_base_fee"), [hex(wei)])

    def set_code(self, address: str, runtime_code: str) -> None:
        """Put ``runtime_code`` (0x-hex) at ``address``."""
        self.rpc(self.node_method("set_code"), [address, runtime_code])

    def unsafe_impersonate(self, address: str) -> None:
        """Let unsigned ``eth_sendTransaction`` from ``address`` through, until
        :meth:`stop_impersonating`."""
        self.rpc(self.node_method("impersonate"), [address])

    def stop_impersonating(self, address: str) -> None:
        self.rpc(self.node_method("stop_impersonating"), [address])

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def timestamp(self) -> int:
        """Timestamp of the latest block."""
        block = self.rpc("eth_getBlockByNumber", ["latest", False])
        return int(block["timestamp"], 16)


def _stop_process(proc: subprocess.Popen[bytes]) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE_S)
    return proc.wait()


@atexit.register
def _stop_all() -> None:
    for devnet in list(_live):
        devnet.stop()


def live_devnets() -> list[Devnet]:
    """Devnets started by this process and not yet stopped."""
    return list(_live)


__all__ = [
    "DEFAULT_CHAIN_ID",
    "Devnet",
    "Implementation",
    "default_implementation",
    "find_anvil",
    "find_hardhat",
    "free_port",
    "live_devnets",
]
