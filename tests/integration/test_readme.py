"""Every Python example in README.md runs as written and stops the devnet it starts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from market.chain.devnet import live_devnets

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# What each example prints last, in README order: TestUSD's decimals, then the lease's settlement.
LAST_LINES = ["6", "provider paid 3.00 tUSD, lab refunded 5.64 tUSD"]


def python_blocks() -> list[tuple[int, str]]:
    """(first line number, source) of each ```python block in the README."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def test_readme_has_one_expected_output_per_python_example() -> None:
    blocks = python_blocks()
    assert len(blocks) == len(LAST_LINES)
    assert "from market.roles import Lab, Provider" in blocks[1][1]


@pytest.mark.parametrize(
    ("first_line", "source", "last_line"),
    [
        pytest.param(line, source, last, id=f"README.md:{line}")
        for (line, source), last in zip(python_blocks(), LAST_LINES, strict=False)
    ],
)
def test_readme_example_runs_prints_and_stops_its_devnet(
    first_line: int, source: str, last_line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = set(live_devnets())
    # Padded so that a traceback names the README's own line numbers.
    code = compile("\n" * (first_line - 1) + source, str(README), "exec")
    exec(code, {"__name__": "readme_example"})  # the examples' own asserts check balances
    assert capsys.readouterr().out.splitlines()[-1] == last_line
    assert set(live_devnets()) == before, "the example left an anvil running"
