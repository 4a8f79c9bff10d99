"""Only ``market/chain`` speaks JSON-RPC (issue 15).

Outside it (the rest of market/, the daemons in nodes/, the benchmarks in bench/) no module imports
web3, builds a ``Web3`` or an ``HTTPProvider``, reaches through ``.eth`` or calls a contract
function through web3 (``contract.functions.f(...)``): what they need from the chain is a typed
method of ``market.chain`` (``MarketClient``, ``deploy_over_http``, ``gas_by_function``...).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("market", "nodes", "bench")
CHAIN = REPO / "market" / "chain"
WEB3_NAMES = frozenset({"Web3", "HTTPProvider", "AsyncWeb3", "WebSocketProvider", "IPCProvider"})

ALLOWED: dict[str, str] = {}
"""Files (relative to the repository) that may speak JSON-RPC themselves, and why: a benchmark
that measures web3 itself would be listed here. None does today."""


def _violations(source: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if _web3(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and _web3(node.module):
            found.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in WEB3_NAMES:
                found.append((node.lineno, f"{name}(...)"))
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "functions"
            ):
                found.append((node.lineno, f".functions.{func.attr}(...)"))
        elif isinstance(node, ast.Attribute) and node.attr == "eth":
            found.append((node.lineno, ".eth"))
    return found


def _web3(module: str) -> bool:
    return module == "web3" or module.startswith("web3.")


def test_nothing_outside_market_chain_speaks_json_rpc() -> None:
    found = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if path.is_relative_to(CHAIN) or rel in ALLOWED:
                continue
            found += [f"{rel}:{line}: {what}" for line, what in _violations(path.read_text())]
    assert found == []


def test_the_check_sees_each_way_of_speaking_json_rpc() -> None:
    source = (
        "import web3\n"
        "from web3.contract import Contract\n"
        "w3 = Web3(HTTPProvider(url))\n"
        "w3.eth.block_number\n"
        "token.functions.balanceOf(a).call()\n"
        "token.encode_abi('mint', [a, 1])\n"  # calldata encoded here, sent by market.chain
        "self.view.functions\n"  # a set of names called functions: not a contract call
    )
    assert sorted(line for line, _ in _violations(source)) == [1, 2, 3, 3, 4, 5]
