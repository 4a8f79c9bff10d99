"""Which store a relay's config names: ``db_path`` (SQLite) or ``store`` (a PostgreSQL URL), one of
the two; a bad URL refused naming the field, a password never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.cli import build_parser
from nodes.errors import ConfigError
from nodes.relay.config import RelayConfig, load_config
from nodes.relay.store import open_store
from nodes.relay.store_postgres import redacted
from nodes.relay.store_sqlite import SqliteStore

URL = "postgresql://relay:s3cret@10.0.0.5:5432/relay?sslmode=require"


def test_store_url_is_read_from_toml_instead_of_db_path(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(f'store = "{URL}"\nport = 7000\n')
    config = load_config(path)
    assert (config.store, config.db_path) == (URL, None)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("port = 7000\n", "db_path"),
        (f'db_path = "relay.sqlite"\nstore = "{URL}"\n', "store"),
    ],
)
def test_one_of_db_path_and_store_is_required(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == field
    assert "one of db_path (a SQLite file) and store (a postgresql:// URL)" in info.value.reason


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://relay:s3cret@h/relay", "must be a postgresql:// URL, got mysql://"),
        ("relay.sqlite", "must be a postgresql:// URL, got no scheme"),
        ("postgresql://relay:s3cret@h/relay?bogus_key=1", "not a connection URL psycopg reads"),
    ],
)
def test_a_store_that_is_no_postgres_url_is_refused_naming_the_field(
    tmp_path: Path, url: str, reason: str
) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(f'store = "{url}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == "store"
    assert reason in info.value.reason
    assert "s3cret" not in str(info.value)
    with pytest.raises(ConfigError, match="store"):  # built in Python (the CLI's --store) too
        RelayConfig(store=url)


def test_a_url_is_shown_without_its_password() -> None:
    assert redacted(URL) == "postgresql://relay@10.0.0.5:5432/relay"


def test_the_cli_takes_store_or_db_never_both(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["relay", "--store", URL])
    assert (args.store, args.db) == (URL, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["relay", "--store", URL, "--db", "r.sqlite"])
    assert "argument --db: not allowed with argument --store" in capsys.readouterr().err


def test_db_path_opens_the_sqlite_store(tmp_path: Path) -> None:
    store = open_store(RelayConfig(db_path=tmp_path / "relay.sqlite"))
    assert isinstance(store, SqliteStore)
    assert store.location == str(tmp_path / "relay.sqlite")
    store.close()
