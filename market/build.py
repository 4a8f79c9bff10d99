"""Compile ``contracts/src`` with the pinned solcjs and write artifacts into ``market/artifacts``.

Run ``python -m market.build`` after changing a contract. The compiler is the npm package ``solc``
pinned in ``package-lock.json``, reached through ``tools/solc`` (the same wrapper forge and slither
use). Artifacts are committed, so the library works where Node is absent; a test rebuilds them and
fails when they no longer match their sources.

Each artifact holds the ABI, creation and runtime bytecode, the compiler version and settings, and
the keccak256 of every source the contract was compiled from (taken from solc's metadata).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from eth_hash.auto import keccak

from market.artifacts import ARTIFACTS_DIR, EVM_VERSION
from market.errors import CompilerError, ToolchainError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = REPO_ROOT / "contracts" / "src"
SOLC_WRAPPER = REPO_ROOT / "tools" / "solc"
ERRORS_MODULE = REPO_ROOT / "market" / "chain" / "contract_errors.py"

SETTINGS: dict[str, Any] = {
    "evmVersion": EVM_VERSION,
    "optimizer": {"enabled": True, "runs": 2_000},
    "viaIR": False,
    "metadata": {"bytecodeHash": "none"},
    "remappings": [],
    "outputSelection": {
        "*": {
            "*": [
                "abi",
                "evm.bytecode.object",
                "evm.deployedBytecode.object",
                "metadata",
                "userdoc",
            ]
        }
    },
}
SOLC_TIMEOUT_S = 300
# A contract that delegates the calls it does not run itself to another (Market's fallback runs
# MarketExtension by delegatecall): its artifact's ABI is both contracts' functions, events and
# errors, which is the ABI callers of its address need (IMarket).
DELEGATES = {"Market": "MarketExtension"}


def source_files(root: Path = CONTRACTS_DIR) -> list[Path]:
    """Every Solidity file under ``root``, in a stable order."""
    return sorted(root.rglob("*.sol"))


def source_name(path: Path) -> str:
    """The solc source unit name of a file in this repository (its POSIX path from the root)."""
    return path.resolve().relative_to(REPO_ROOT).as_posix()


def _standard_json_input() -> dict[str, Any]:
    sources = {source_name(p): {"content": p.read_text(encoding="utf-8")} for p in source_files()}
    if not sources:
        raise ToolchainError(f"no Solidity sources under {CONTRACTS_DIR}")
    return {"language": "Solidity", "sources": sources, "settings": SETTINGS}


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ToolchainError(
            "Node.js is required to compile contracts: install Node.js >= 20 and npm "
            "(Debian: apt-get install nodejs npm), then run `npm ci`"
        )
    return node


def run_solc(standard_input: dict[str, Any]) -> dict[str, Any]:
    """Run solc's standard-JSON interface through the wrapper with real files for stdin/stdout."""
    if not (REPO_ROOT / "node_modules" / "solc").is_dir():
        raise ToolchainError(
            "the pinned solc is not installed: run `npm ci` in the repository root"
        )
    with tempfile.TemporaryDirectory(prefix="gpumarket-solc-") as tmp:
        in_path, out_path = Path(tmp) / "input.json", Path(tmp) / "output.json"
        in_path.write_text(json.dumps(standard_input), encoding="utf-8")
        with in_path.open("rb") as stdin, out_path.open("wb") as stdout:
            proc = subprocess.run(
                [_node(), str(SOLC_WRAPPER), "--standard-json", "--base-path", str(REPO_ROOT)],
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                cwd=REPO_ROOT,
                timeout=SOLC_TIMEOUT_S,
                check=False,
            )
        raw = out_path.read_text(encoding="utf-8")
    if proc.returncode != 0:
        raise ToolchainError(
            f"solc wrapper exited {proc.returncode}: {proc.stderr.decode()[-2000:]}"
        )
    start = raw.find("{")  # solcjs may print a line of text before the JSON
    if start < 0:
        raise ToolchainError(f"solc produced no JSON: {raw[:500]!r}")
    output: dict[str, Any] = json.loads(raw[start:])
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompilerError([e.get("formattedMessage", e.get("message", "")) for e in errors])
    return output


def compiler_version() -> str:
    out = subprocess.run(
        [_node(), str(SOLC_WRAPPER), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=REPO_ROOT,
    ).stdout
    return out.strip().splitlines()[-1].removeprefix("Version: ")


def artifacts_from_output(output: dict[str, Any], version: str) -> dict[str, dict[str, Any]]:
    """Artifacts for the deployable contracts defined in ``contracts/src``, keyed by name."""
    settings = {k: v for k, v in SETTINGS.items() if k != "outputSelection"}
    artifacts: dict[str, dict[str, Any]] = {}
    for unit, contracts in sorted(output["contracts"].items()):
        if not unit.startswith("contracts/"):
            continue
        for name, c in sorted(contracts.items()):
            bytecode = c["evm"]["bytecode"]["object"]
            if not bytecode:  # interfaces and abstract contracts
                continue
            if name in artifacts:
                raise ToolchainError(f"two contracts are named {name!r}; names must be unique")
            metadata = json.loads(c["metadata"])
            artifacts[name] = {
                "contractName": name,
                "sourceName": unit,
                "abi": c["abi"],
                "userdoc": c.get("userdoc", {}),
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
                "compiler": {"version": version, "settings": settings},
                "sources": {
                    s: meta["keccak256"] for s, meta in sorted(metadata["sources"].items())
                },
            }
    for name, delegate in DELEGATES.items():
        if name in artifacts and delegate in artifacts:
            artifacts[name]["abi"] = _merged_abi(artifacts[name]["abi"], artifacts[delegate]["abi"])
    return artifacts


def _merged_abi(own: list[dict[str, Any]], delegated: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``own`` plus every entry of ``delegated`` it lacks (the delegate's constructor aside)."""

    def key(item: dict[str, Any]) -> tuple[str, str, str]:
        types = ",".join(i["type"] for i in item.get("inputs", []))
        return item["type"], item.get("name", ""), types

    seen = {key(item) for item in own}
    extra = [i for i in delegated if i["type"] != "constructor" and key(i) not in seen]
    return own + extra


def build(out_dir: Path = ARTIFACTS_DIR, errors_module: Path | None = None) -> dict[str, Path]:
    """Compile every contract and write one ``<Name>.json`` per deployable contract to ``out_dir``.

    Files of contracts that no longer exist are removed. Also writes the typed exception classes
    of every custom error to ``market/chain/contract_errors.py`` (or ``errors_module``). Returns
    the written paths by name.
    """
    version = compiler_version()
    artifacts = artifacts_from_output(run_solc(_standard_json_input()), version)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, artifact in artifacts.items():
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(artifact, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        written[name] = path
    for stale in out_dir.glob("*.json"):
        if stale.stem not in artifacts:
            stale.unlink()
    errors_path = errors_module or ERRORS_MODULE
    errors_path.write_text(_ruff_format(render_errors_module(artifacts)), encoding="utf-8")
    written["contract_errors"] = errors_path
    return written


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


_PY_TYPES = {"address": "str", "bool": "bool", "string": "str"}


def _py_type(solidity_type: str) -> str:
    if solidity_type in _PY_TYPES:
        return _PY_TYPES[solidity_type]
    if solidity_type.startswith(("uint", "int")):
        return "int"
    if solidity_type.startswith("bytes"):
        return "bytes"
    raise ToolchainError(f"no Python type for Solidity type {solidity_type!r} in a custom error")


_ERRORS_HEADER = '''"""Typed exceptions for every custom error in the contracts' ABIs.

Generated by ``python -m market.build`` from the compiled artifacts: do not edit by hand.
Each class carries the error's arguments as attributes; ``ERRORS`` maps 4-byte selectors to
classes for ``market.chain.revert.decode_revert``.
"""

from __future__ import annotations

from market.errors import ContractError
'''


def render_errors_module(artifacts: dict[str, dict[str, Any]]) -> str:
    """Python source with one ContractError subclass per custom error in the artifacts' ABIs."""
    errors: dict[str, tuple[dict[str, Any], str]] = {}
    for artifact in artifacts.values():
        for item in artifact["abi"]:
            if item["type"] != "error":
                continue
            signature = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            notices = artifact.get("userdoc", {}).get("errors", {}).get(signature, [])
            notice = notices[0].get("notice", "") if notices else ""
            if signature not in errors or (notice and not errors[signature][1]):
                errors[signature] = (item, notice)
    ordered = sorted(errors.items(), key=lambda kv: kv[1][0]["name"])
    names = [item["name"] for _, (item, _) in ordered]
    if len(names) != len(set(names)):
        raise ToolchainError("two custom errors share a name but not their parameters")
    out = [_ERRORS_HEADER]
    for signature, (item, notice) in ordered:
        params = [(_snake(i["name"]) or f"arg{n}", i["type"]) for n, i in enumerate(item["inputs"])]
        doc = " ".join(notice.split()).replace('"', "'") or f"``{signature}``"
        if len(doc) > 88:  # wrapped to the line length the linter allows
            doc = "\n    ".join(textwrap.wrap(doc, 92)) + "\n    "
        selector = keccak(signature.encode())[:4].hex()
        out += [
            "",
            f"class {item['name']}(ContractError):",
            f'    """{doc}"""',
            "",
            f'    SIGNATURE = "{signature}"',
            f'    SELECTOR = bytes.fromhex("{selector}")',
            "    PARAMS = (" + "".join(f"({p!r}, {t!r}), " for p, t in params).rstrip() + ")",
            "",
            "    def __init__(",
            "        self,",
            *[f"        {p}: {_py_type(t)}," for p, t in params],
            "        *,",
            '        what: str = "call",',
            "        tx_hash: str | None = None,",
            "    ) -> None:",
            *[f"        self.{p} = {p}" for p, _ in params],
            "        super().__init__(what, ("
            + "".join(f"{p}, " for p, _ in params).rstrip()
            + "), tx_hash)",
            "",
        ]
    out += ["", "ERRORS: dict[bytes, type[ContractError]] = {"]
    out += [f"    {n}.SELECTOR: {n}," for n in names]
    out += ["}", "", "__all__ = [", '    "ERRORS",', *[f'    "{n}",' for n in names], "]", ""]
    return "\n".join(out)


def _ruff_format(source: str) -> str:
    """Format generated code with the project's ruff settings, as `ruff format --check` wants."""
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(ERRORS_MODULE), "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise ToolchainError(f"ruff could not format the generated errors module: {proc.stderr}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m market.build", description=__doc__)
    parser.add_argument("--out", type=Path, default=ARTIFACTS_DIR, help="artifact directory")
    args = parser.parse_args(argv)
    for name, path in build(args.out).items():
        print(
            f"{name:24} {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
