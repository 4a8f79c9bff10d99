"""The first hour's commands without a chain: keystores, preflight lines, init templates, nits."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from market.units import Token
from nodes import cli
from nodes.commands.init import InitSettings, lab_template, provider_template
from nodes.commands.keys import find_keystores, parse_private_key, read_password
from nodes.daemon.config import KeyConfig
from nodes.daemon.keystore import decrypt_key, keystore_address, write_keystore
from nodes.daemon.preflight import (
    Tokens,
    allowance_check,
    balance_check,
    gas_check,
    raise_first_failure,
    report,
    stake_check,
)
from nodes.errors import AgentError, ConfigError, KeystoreError
from nodes.lab.config import load_config as load_lab_config
from nodes.provider.config import load_config as load_provider_config
from nodes.provider.inventory import MARKET_MODELS
from nodes.relay.config import RelayConfig

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
KEY = bytes(range(1, 33))
ADDRESS = Account.from_key(KEY).address
USD = 10**6
T = Tokens(6, "tUSD")


# --- keystores ---------------------------------------------------------------------------------


def test_keystore_is_written_owner_only_and_decrypts_to_the_key(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    assert write_keystore(path, KEY, "pw", iterations=2) == ADDRESS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keystore_address(path) == ADDRESS
    assert decrypt_key(KeyConfig(path, "PW"), {"PW": "pw"}) == KEY


def test_keystore_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write_keystore(path, KEY, "pw", iterations=2)
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="never overwritten"):
        write_keystore(path, bytes(32 * [7]), "pw", iterations=2)
    assert path.read_bytes() == before


def test_private_key_text_is_parsed_with_or_without_0x_and_else_refused() -> None:
    assert parse_private_key(f"  0x{KEY.hex()}\n", "stdin") == KEY
    assert parse_private_key(KEY.hex(), "stdin") == KEY
    with pytest.raises(KeystoreError, match="64 hex digits"):
        parse_private_key("0x1234", "stdin")


def test_password_comes_from_its_variable_and_is_never_guessed_without_a_terminal() -> None:
    assert read_password("PW", confirm=True, environ={"PW": "secret"}) == "secret"
    with pytest.raises(KeystoreError, match="environment variable PW"):
        read_password("PW", confirm=True, environ={}, stdin=io.StringIO())


def test_keys_list_finds_keystores_and_skips_other_json(tmp_path: Path) -> None:
    write_keystore(tmp_path / "a.json", KEY, "pw", iterations=2)
    (tmp_path / "deployment.json").write_text(json.dumps({"version": 1}))
    found = find_keystores([tmp_path])
    assert [(k.address, Path(k.file).name) for k in found] == [(ADDRESS, "a.json")]


def test_keys_import_reads_the_key_from_stdin_never_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPUMARKET_KEY_PASSWORD", "pw")
    monkeypatch.setattr("sys.stdin", io.StringIO(KEY.hex() + "\n"))
    out = tmp_path / "imported.json"
    assert cli.main(["keys", "import", "--out", str(out)]) == 0
    assert keystore_address(out) == ADDRESS
    assert ADDRESS in capsys.readouterr().out
    with pytest.raises(SystemExit):  # no option takes the key itself
        cli.build_parser().parse_args(["keys", "import", "--out", "x", "--key", KEY.hex()])


# --- preflight lines ---------------------------------------------------------------------------


def test_tokens_read_in_whole_units_with_symbol() -> None:
    assert T(1_000 * USD) == "1,000 tUSD"
    assert T(48_000) == "0.048 tUSD"
    assert T.whole(48_000) == 1


def test_stake_below_minimum_fails_with_the_field_to_set() -> None:
    check = stake_check(50 * USD, 100 * USD, "[agent] stake", T)
    assert not check.ok
    assert check.line() == (
        "FAIL  stake      50 tUSD to stake is below the market's minimum 100 tUSD "
        "-> set [agent] stake = 100 or more"
    )
    with pytest.raises(AgentError, match=r"set \[agent\] stake = 100 or more"):
        raise_first_failure([gas_check(ADDRESS, 1, 31337), check])


def test_missing_tokens_point_to_the_faucet_on_a_devnet_only() -> None:
    devnet = balance_check(ADDRESS, 10 * USD, 1000 * USD, "the stake", 31337, T)
    assert devnet.fix == f"get tokens: gpumarket faucet {ADDRESS} 990"
    other = balance_check(ADDRESS, 10 * USD, 1000 * USD, "the stake", 1, T)
    assert "faucet" not in other.fix
    assert other.fix == f"send {ADDRESS} at least 990 tUSD more of the market's token"
    assert gas_check(ADDRESS, 0, 31337).fix == f"get ether: gpumarket faucet {ADDRESS} 0 --eth 1"


def test_report_prints_every_line_and_fails_on_any_failure() -> None:
    out = io.StringIO()
    checks = [allowance_check(0, 5, "the lab", T), gas_check(ADDRESS, 0, 31337)]
    assert report(checks, out) == 1
    assert [line[:4] for line in out.getvalue().splitlines()] == ["ok  ", "FAIL"]
    assert report([allowance_check(5, 5, "the lab", T)], io.StringIO()) == 0


# --- init templates ----------------------------------------------------------------------------


def _settings(tmp_path: Path) -> InitSettings:
    return InitSettings(
        deployment_file=tmp_path / "deployment.json",
        rpc_url="http://127.0.0.1:41234",
        chain_id=31337,
        keystore="key.json",
        password_env="GPUMARKET_KEY_PASSWORD",
        relay="http://127.0.0.1:7000",
        model="A100-80GB",
        stake_tokens=1000,
        token_decimals=6,
    )


TOKEN = Token("tUSD", 6)


def test_provider_template_loads_with_the_agents_loader(tmp_path: Path) -> None:
    path = tmp_path / "provider.toml"
    path.write_text(provider_template(_settings(tmp_path)))
    config = load_provider_config(path)
    assert config.chain.rpc_url == "http://127.0.0.1:41234"
    assert config.chain.deployment == tmp_path / "deployment.json"
    assert config.key.keystore == tmp_path / "key.json"
    assert config.relays == ("http://127.0.0.1:7000",)
    assert [g.model for g in config.inventory.gpus] == ["A100-80GB"]
    assert config.agent.stake is not None
    assert config.agent.stake.units(TOKEN) == 1000 * USD
    assert config.pricing.params["price_per_gpu_hour"] == "1.80"


def test_lab_template_loads_with_the_labs_loader(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(lab_template(_settings(tmp_path)))
    config = load_lab_config(path)
    assert config.chain.rpc_url == "http://127.0.0.1:41234"
    jobs = config.jobs(TOKEN)
    assert [(j.model, j.gpus, j.duration) for j in jobs] == [("A100-80GB", 1, 60)]
    assert [j.max_price_per_gpu_second for j in jobs] == [800]  # 2.88 per GPU-hour, 6 decimals


def test_every_key_of_the_templates_is_commented(tmp_path: Path) -> None:
    for text in (provider_template(_settings(tmp_path)), lab_template(_settings(tmp_path))):
        keys = [line for line in text.splitlines() if "=" in line and not line.startswith("#")]
        assert keys
        assert [line for line in keys if "  # " not in line] == []


# --- nits ----------------------------------------------------------------------------------------


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("gpumarket 0.")


def test_relay_peer_without_a_scheme_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"peers: .*give the scheme, as http://HOST:PORT"):
        RelayConfig(db_path=tmp_path / "r.sqlite", peers=("localhost:9",))
    assert RelayConfig(db_path=tmp_path / "r.sqlite", peers=("http://localhost:9",)).peers


def test_guide_lists_every_market_model_name() -> None:
    guide = (REPO / "docs" / "guides.md").read_text(encoding="utf-8")
    assert [m for m in MARKET_MODELS if f"`{m}`" not in guide] == []
