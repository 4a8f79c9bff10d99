"""A relay cluster's config: a ``[cluster]`` table (or ``--cluster``, ``--nats``, ``--instance``)
naming the NATS server, the cluster and this instance; a cluster over SQLite refused; a relay
without it unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.cli import build_parser, cmd_relay
from nodes.errors import ConfigError
from nodes.relay.config import ClusterConfig, RelayConfig, load_config

URL = "postgresql://relay@10.0.0.5:5432/relay"
CLUSTER = '[cluster]\nnats_url = "nats://10.0.0.6:4222"\nname = "main"\ninstance = "relay-a"\n'


def test_cluster_table_is_read_beside_a_postgres_store(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(f'store = "{URL}"\n{CLUSTER}lease_ttl_s = 3.0\n')
    config = load_config(path)
    assert config.cluster == ClusterConfig(
        nats_url="nats://10.0.0.6:4222", name="main", instance="relay-a", lease_ttl_s=3.0
    )


def test_cluster_over_sqlite_is_refused_naming_the_cluster_field(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(f'db_path = "relay.sqlite"\n{CLUSTER}')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == "cluster"
    assert 'store = "postgresql://..."' in info.value.reason


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('nats_url = "http://10.0.0.6:4222"', "nats_url"),
        ('name = "no spaces"', "name"),
        ('instance = ""', "instance"),
        ("lease_ttl_s = 0.1", "lease_ttl_s"),
    ],
)
def test_a_bad_cluster_key_is_refused_naming_it(tmp_path: Path, line: str, field: str) -> None:
    keys = {
        "nats_url": 'nats_url = "nats://h:4222"',
        "name": 'name = "main"',
        "instance": 'instance = "a"',
    }
    keys[field] = line
    path = tmp_path / "relay.toml"
    path.write_text(f'store = "{URL}"\n[cluster]\n' + "\n".join(keys.values()) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert field in info.value.field


def test_a_relay_without_cluster_is_a_relay_alone(tmp_path: Path) -> None:
    assert RelayConfig(db_path=tmp_path / "relay.sqlite").cluster is None


def test_cli_cluster_needs_nats_and_instance(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["relay", "--store", URL, "--cluster", "main"])
    assert cmd_relay(args) == 2
    assert "--cluster needs --nats URL and --instance ID" in capsys.readouterr().err


def test_cli_cluster_over_db_is_refused(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["relay", "--db", str(tmp_path / "r.sqlite"), "--cluster", "main",
         "--nats", "nats://h:4222", "--instance", "a"]
    )  # fmt: skip
    with pytest.raises(ConfigError) as info:
        cmd_relay(args)
    assert info.value.field == "cluster"


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--cluster", "no spaces", "--nats", "nats://h:4222", "--instance", "a"], "name"),
        (["--cluster", "main", "--nats", "h:4222", "--instance", "a"], "nats_url"),
        (["--cluster", "main", "--nats", "nats://h:4222", "--instance", ""], "instance"),
    ],
)
def test_cli_cluster_options_are_checked_as_a_files_are(flags: list[str], field: str) -> None:
    args = build_parser().parse_args(["relay", "--store", URL, *flags])
    with pytest.raises(ConfigError) as info:
        cmd_relay(args)
    assert info.value.field == field
