"""The daemons' shared config room: TOML decoded into msgspec structs, msgspec's errors named
by field, bounds that hold in Python too, the documented files loading, the relay's file."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

import nodes.lab.config
import nodes.provider.config
from nodes.daemon.config import ChainConfig, KeyConfig, Table
from nodes.daemon.startup import ready_line, stop_signals
from nodes.daemon.toml import decode, join
from nodes.errors import ConfigError
from nodes.relay.config import Limits, RelayConfig, load_config

pytestmark = pytest.mark.unit


def _documented_file(module: ModuleType) -> str:
    """The complete file in the module's docstring (the indented block after ``::``)."""
    assert module.__doc__ is not None
    block = module.__doc__.split("::\n\n", 1)[1]
    lines = []
    for line in block.split("\n"):
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


@pytest.mark.parametrize("module", [nodes.provider.config, nodes.lab.config])
def test_the_file_each_config_documents_loads(module: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "daemon.toml"
    path.write_text(_documented_file(module))
    config = module.load_config(path)
    assert config.relays == ("http://127.0.0.1:7000",)
    assert config.state.parent == tmp_path  # relative to the file


class _Inner(Table, frozen=True):
    count: int = msgspec.field(default=1)
    ratio: float = 1.0


class _Outer(Table, frozen=True):
    inner: tuple[_Inner, ...] = ()
    key: KeyConfig | None = None


def _error(raw: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        decode(raw, _Outer, file="f.toml", base=Path("/base"))
    return info.value


def test_unknown_key_is_named_with_the_keys_the_table_knows() -> None:
    error = _error({"inner": [{"count": 2}, {"cuont": 3}]})
    assert (error.field, error.reason) == ("inner[1].cuont", "unknown key; expected one of "
                                           "['count', 'ratio']")  # fmt: skip
    assert str(error) == "f.toml: inner[1].cuont: unknown key; expected one of ['count', 'ratio']"


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        ({"inner": [{"count": "x"}]}, "inner[0].count", "must be an integer, got 'x'"),
        ({"inner": [{"ratio": True}]}, "inner[0].ratio", "must be a number, got True"),
        ({"inner": 3}, "inner", "must be a list, got 3"),
        ({"key": {}}, "key.keystore", "missing"),
        ({"key": {"keystore": ""}}, "key.keystore", "must be a path (a non-empty string)"),
        (
            {"key": {"keystore": "k", "password_env": ""}},
            "key.password_env",
            "must be a non-empty string",
        ),
    ],
)
def test_msgspec_errors_become_config_errors_naming_the_field(
    raw: object, field: str, reason: str
) -> None:
    error = _error(raw)
    assert (error.path, error.field, error.reason) == ("f.toml", field, reason)


def test_relative_paths_are_taken_from_the_files_folder() -> None:
    outer = decode({"key": {"keystore": "k.json"}}, _Outer, file="f.toml", base=Path("/base"))
    assert outer.key == KeyConfig(Path("/base/k.json"))
    absolute = decode({"key": {"keystore": "/k.json"}}, _Outer, file="f", base=Path("/base"))
    assert absolute.key is not None
    assert absolute.key.keystore == Path("/k.json")


def test_join_writes_the_path_as_a_user_reads_it() -> None:
    assert join(["jobs", 1], "argv") == "jobs[1].argv"
    assert join(["inventory", "gpus", 0], ".colour") == "inventory.gpus[0].colour"
    assert join(["agent", "billing"], "[2]") == "agent.billing[2]"
    assert join([], "state") == "state"


def test_bounds_hold_for_a_table_built_in_python() -> None:
    with pytest.raises(ConfigError) as info:
        ChainConfig(confirmations=-1)
    assert (info.value.path, info.value.field, info.value.reason) == (
        "ChainConfig", "confirmations", "must be at least 0, got -1"
    )  # fmt: skip
    with pytest.raises(ConfigError) as info:
        Limits(client_rate_per_s=0.0)
    assert (info.value.field, info.value.reason) == (
        "client_rate_per_s", "must be a positive number, got 0.0"
    )  # fmt: skip


RELAY = """
db_path = "relay.sqlite"
port = 7000
peers = ["http://10.0.0.2:7000"]
matching = "auction"
auction_interval_s = 2.5

[limits]
max_book_orders = 10
"""


def test_relay_config_is_read_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(RELAY)
    config = load_config(path, matcher_key="0xkey")
    assert config == RelayConfig(
        db_path=tmp_path / "relay.sqlite", port=7000, peers=("http://10.0.0.2:7000",),
        matching="auction", auction_interval_s=2.5, matcher_key="0xkey",
        limits=Limits(max_book_orders=10),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "field", "reason"),
    [
        ('"auction"', '"sealed"', "matching", "must be one of ['auction', 'continuous']"),
        ("port = 7000", "port = 70000", "port", "must be at most 65535"),
        ("max_book_orders = 10", "max_book_orders = 0", "limits.max_book_orders", "at least 1"),
        ("max_book_orders = 10", "book = 1", "limits.book", "unknown key"),
        ('"http://10.0.0.2:7000"', '"10.0.0.2"', "peers[0]", "must be an http(s) URL"),
        (
            'db_path = "relay.sqlite"',
            'db_path = "r"\nmatcher_key = "0x1"',
            "matcher_key",
            "--matcher-key-env",
        ),
    ],
)
def test_relay_config_mistakes_name_the_field(
    tmp_path: Path, old: str, new: str, field: str, reason: str
) -> None:
    path = tmp_path / "relay.toml"
    assert old in RELAY
    path.write_text(RELAY.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == field
    assert reason in info.value.reason


def test_ready_line_is_the_daemon_then_its_fields() -> None:
    assert ready_line("lab", address="0xab", metrics="http://h:1/metrics") == (
        "lab ready address=0xab metrics=http://h:1/metrics"
    )


def test_a_stop_signal_calls_stop_while_inside_and_not_after() -> None:
    async def main() -> list[str]:
        stopped = asyncio.Event()
        calls: list[str] = []

        def stop() -> None:
            calls.append("stop")
            stopped.set()

        with stop_signals(stop):
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stopped.wait(), 10)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        return calls

    assert asyncio.run(main()) == ["stop"]
