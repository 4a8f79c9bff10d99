"""nodes.commands.progress: the line a command prints on stderr before a long wait."""

from __future__ import annotations

import pytest

from nodes.commands.progress import waiting
from nodes.logs import FORMAT_ENV

pytestmark = pytest.mark.unit


def test_a_wait_is_one_line_on_stderr_and_nothing_on_stdout(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(FORMAT_ENV, raising=False)
    waiting("cancelling 0xab")
    waiting("deploying the contracts", on="the transactions")
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "cancelling 0xab: waiting for the transaction…\n"
        "deploying the contracts: waiting for the transactions…\n"
    )


def test_json_logs_on_stderr_get_no_plain_progress_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FORMAT_ENV, " JSON ")
    waiting("lab: bids posted", on="a match")
    assert capsys.readouterr() == ("", "")
