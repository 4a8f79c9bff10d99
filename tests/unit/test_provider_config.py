"""The provider's TOML config: a full file, defaults, and every kind of mistake named by field."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account

from market.chain.deploy import Deployment
from market.errors import AmountTooPrecise
from market.protocol.types import Billing
from market.units import Token
from nodes.errors import ConfigError, KeystoreError
from nodes.provider import (
    AgentConfig,
    GpuDeclaration,
    JobLimits,
    KeyConfig,
    decrypt_key,
    load_config,
    load_deployment,
)

pytestmark = pytest.mark.unit

FULL = """
state = "var/provider.sqlite"

[key]
keystore = "provider-key.json"
password_env = "MY_PASSWORD"

[chain]
deployment = "deployment.json"
rpc_url = "http://10.0.0.5:8545"
confirmations = 12

[relays]
urls = ["http://127.0.0.1:7000", "https://relay.example"]

[inventory]
detect = true
[[inventory.gpus]]
model = "H100-80GB"
count = 2
memory_gib = 80
devices = [2, 3]
[[inventory.gpus]]
model = "A100-40GB"
count = 1
memory_gib = 40

[pricing]
policy = "utilisation"
params = { floor_per_gpu_hour = "1.50", ceiling_per_gpu_hour = "4" }

[metering]
interval_s = 30

[jobs]
max_wall_time_s = 600
max_memory_gib = 1.5
sandbox = "none"
allow_network = true
max_processes = 64
max_cpu_cores = 2.5
max_disk_gib = 0.5

[agent]
host = "0.0.0.0"
port = 7100
public_url = "https://gpu.example:7100"
stake = "250.5"
offer_ttl_s = 120
min_duration_s = 60
max_duration_s = 7200
claim_interval_s = 30
max_unpaid_periods = 2
final_voucher_wait_s = 600
billing = ["metered", "rental"]
"""

MINIMAL = """
[key]
keystore = "/keys/k.json"
[[inventory.gpus]]
model = "L4-24GB"
count = 1
memory_gib = 24
[pricing]
policy = "fixed"
params = { price_per_gpu_hour = "0.0036" }
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "provider.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_full_config_is_read_into_typed_fields(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FULL))
    assert config.state == tmp_path / "var/provider.sqlite"
    assert config.key == KeyConfig(tmp_path / "provider-key.json", "MY_PASSWORD")
    assert config.chain.deployment == tmp_path / "deployment.json"
    assert config.chain.rpc_url == "http://10.0.0.5:8545"
    assert config.chain.confirmations == 12
    assert config.agent == AgentConfig(
        host="0.0.0.0", port=7100, public_url="https://gpu.example:7100",
        stake=Decimal("250.5"), offer_ttl_s=120, min_duration_s=60, max_duration_s=7200,
        claim_interval_s=30, max_unpaid_periods=2, final_voucher_wait_s=600,
        billing=(Billing.METERED, Billing.RENTAL),
    )  # fmt: skip
    assert config.relays == ("http://127.0.0.1:7000", "https://relay.example")
    assert config.inventory.detect
    assert config.inventory.gpus == (
        GpuDeclaration("H100-80GB", 2, 80, (2, 3)),
        GpuDeclaration("A100-40GB", 1, 40, (0,)),
    )
    assert (config.pricing.policy, dict(config.pricing.params)) == (
        "utilisation",
        {"floor_per_gpu_hour": "1.50", "ceiling_per_gpu_hour": "4"},
    )
    assert config.metering.interval_s == 30
    assert config.jobs == JobLimits(
        600, 3 * 2**29, sandbox="none", allow_network=True, max_processes=64, cpu_cores=2.5,
        disk_bytes=2**29,
    )  # fmt: skip


def test_minimal_config_takes_the_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert config.state == tmp_path / "state.sqlite"
    assert config.key == KeyConfig(Path("/keys/k.json"), "GPUMARKET_KEY_PASSWORD")
    assert (config.chain.deployment, config.chain.rpc_url) == (None, None)
    assert config.chain.confirmations == 0
    assert config.agent == AgentConfig()  # a free port on loopback, the market's minimum stake
    assert config.agent.billing == (Billing.RENTAL,)  # offers accept rentals only
    assert config.relays == ()
    assert not config.inventory.detect
    assert config.metering.interval_s == 60
    assert (config.jobs.wall_time_s, config.jobs.memory_bytes) == (86_400, None)
    assert config.jobs.sandbox == "bwrap"  # every job confined unless the operator opts out
    assert not config.jobs.allow_network
    assert (config.jobs.max_processes, config.jobs.cpu_cores, config.jobs.disk_bytes) == (
        1024, None, None
    )  # fmt: skip


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        config.relays = ("http://x",)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("old", "new", "field", "reason"),
    [
        ("[key]\nkeystore", "[key]\nkeyfile", "key.keyfile", "unknown key"),
        ('keystore = "/keys/k.json"', "", "key.keystore", "missing"),
        ("[pricing]", "[chain]\n[pricing]", "chain", "give deployment, rpc_url or both"),
        ("[pricing]", '[relays]\nurls = ["ftp://x"]\n[pricing]', "relays.urls[0]", "http(s)"),
        ("count = 1", "count = 0", "inventory.gpus[0].count", "at least 1"),
        ("count = 1", "count = true", "inventory.gpus[0].count", "must be an integer"),
        ("count = 1", "count = 1\ndevices = [0, 1]", "inventory.gpus[0].devices", "2 device"),
        ("count = 1", "count = 1\ndevices = [-1]", "inventory.gpus[0].devices", "non-negative"),
        ('"L4-24GB"', '"' + "X" * 33 + '"', "inventory.gpus[0].model", "at most 32"),
        ("memory_gib = 24", "memory_gib = 24\nvram = 1", "inventory.gpus[0].vram", "unknown"),
        ('policy = "fixed"', "", "pricing.policy", "missing"),
        (
            'params = { price_per_gpu_hour = "0.0036" }',
            "params = 3",
            "pricing.params",
            "must be a table",
        ),
        ("[pricing]", "[metering]\ninterval_s = 0\n[pricing]", "metering.interval_s", "least 1"),
        ("[pricing]", "[metering]\nperiod = 5\n[pricing]", "metering.period", "unknown key"),
        ("[pricing]", "[jobs]\nmax_memory_gib = -2\n[pricing]", "jobs.max_memory_gib", "positive"),
        ("[pricing]", "[jobs]\nmax_memory_gib = true\n[pricing]", "jobs.max_memory_gib", "number"),
        ("[key]", 'statee = "x"\n[key]', "statee", "unknown key"),
        ("[pricing]", '[jobs]\nsandbox = "docker"\n[pricing]', "jobs.sandbox", "one of"),
        ("[pricing]", '[jobs]\nallow_network = "yes"\n[pricing]', "jobs.allow_network", "true"),
        ("[pricing]", "[jobs]\nmax_processes = 0\n[pricing]", "jobs.max_processes", "least 1"),
        ("[pricing]", "[jobs]\nmax_cpu_cores = 0\n[pricing]", "jobs.max_cpu_cores", "positive"),
        ("[pricing]", "[jobs]\nmax_disk_gib = -1\n[pricing]", "jobs.max_disk_gib", "positive"),
        ("[pricing]", "[jobs]\nnetwork = true\n[pricing]", "jobs.network", "unknown key"),
        ("[pricing]", "[chain]\nconfirmations = -1\n[pricing]", "chain.confirmations", "least 0"),
        ("[pricing]", "[agent]\nport = 70000\n[pricing]", "agent.port", "at most 65535"),
        ("[pricing]", "[agent]\nmax_duration_s = 5\n[pricing]", "agent.max_duration_s", "below"),
        ("[pricing]", "[agent]\nclaim_every = 5\n[pricing]", "agent.claim_every", "unknown key"),
        ("[pricing]", "[agent]\nbilling = []\n[pricing]", "agent.billing", "non-empty list"),
        ("[pricing]", '[agent]\nbilling = "rental"\n[pricing]', "agent.billing", "list"),
        ("[pricing]", '[agent]\nbilling = ["hourly"]\n[pricing]', "agent.billing[0]", "one of"),
        (
            "[pricing]",
            '[agent]\nbilling = ["rental", "rental"]\n[pricing]',
            "agent.billing",
            "repeats",
        ),
        ('[key]\nkeystore = "/keys/k.json"', "key = 3", "key", "must be a table"),
        (
            "memory_gib = 24",
            'memory_gib = 24\nattributes = { colour = "red" }',
            "inventory.gpus[0].attributes.colour",
            "is not an attribute orders can sign; known: ['capabilities', 'form_factor',",
        ),
        (
            "memory_gib = 24",
            'memory_gib = 24\nattributes = { region = "mars" }',
            "inventory.gpus[0].attributes.region",
            "'mars' is not one of ['us-east', 'us-west',",
        ),
        (
            "memory_gib = 24",
            'memory_gib = 24\nattributes = { capabilities = ["ecc", "ecc"] }',
            "inventory.gpus[0].attributes.capabilities",
            "repeats",
        ),
        (
            "memory_gib = 24",
            "memory_gib = 24\nattributes = { region = [] }",
            "inventory.gpus[0].attributes.region",
            "name at least one of",
        ),
        (
            "memory_gib = 24",
            "memory_gib = 24\nattributes = 3",
            "inventory.gpus[0].attributes",
            "table",
        ),
        (
            "memory_gib = 24",
            "memory_gib = 24\nbandwidth_gbps = 4294967296",
            "inventory.gpus[0].bandwidth_gbps",
            "at most 4294967295",
        ),
        (
            "[pricing]",
            "[inventory]\ndetect = true\nbandwidth_gbps = -1\n[pricing]",
            "inventory.bandwidth_gbps",
            "at least 0",
        ),
    ],
)
def test_bad_field_is_a_config_error_naming_it(
    tmp_path: Path, old: str, new: str, field: str, reason: str
) -> None:
    assert old in MINIMAL
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, MINIMAL.replace(old, new, 1)))
    assert info.value.field == field
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{tmp_path / 'provider.toml'}: {field}: ")


def test_signed_terms_of_the_inventory_and_its_groups_are_read(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "memory_gib = 24",
        'memory_gib = 24\nbandwidth_gbps = 400\nattributes = { interconnect = "nvlink",'
        ' capabilities = ["ecc", "mig"] }',
    ).replace(
        "[pricing]",
        '[inventory]\nbandwidth_gbps = 100\nattributes = { region = "eu-west" }\n[pricing]',
    )
    inventory = load_config(_write(tmp_path, text)).inventory
    assert (inventory.bandwidth_gbps, dict(inventory.attributes)) == (100, {"region": ("eu-west",)})
    [gpu] = inventory.gpus
    assert (gpu.bandwidth_gbps, dict(gpu.attributes)) == (
        400,
        {"interconnect": ("nvlink",), "capabilities": ("ecc", "mig")},
    )
    assert load_config(_write(tmp_path, MINIMAL)).inventory.gpus[0].bandwidth_gbps is None


def test_no_gpus_declared_without_detection_is_refused(tmp_path: Path) -> None:
    text = '[key]\nkeystore = "k"\n[inventory]\ndetect = false\n[pricing]\npolicy = "fixed"\n'
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert info.value.field == "inventory.gpus"


def test_detection_alone_needs_no_declared_gpus(tmp_path: Path) -> None:
    text = '[key]\nkeystore = "k"\n[inventory]\ndetect = true\n[pricing]\npolicy = "fixed"\n'
    assert load_config(_write(tmp_path, text)).inventory.gpus == ()


def test_device_declared_in_two_groups_is_refused(tmp_path: Path) -> None:
    text = FULL.replace("memory_gib = 40", "memory_gib = 40\ndevices = [3]")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert (info.value.field, info.value.reason) == (
        "inventory.gpus[1].devices",
        "[3] also declared",
    )


def test_unreadable_or_malformed_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "[key\n"))
    assert info.value.field == "(syntax)"


def test_rpc_url_overrides_the_deployment_files(tmp_path: Path) -> None:
    deployment = Deployment(31337, "http://127.0.0.1:8545", 1, {})
    deployment.save(tmp_path / "deployment.json")
    (tmp_path / "provider.toml").write_text(FULL)
    config = load_config(tmp_path / "provider.toml")
    assert load_deployment(config.chain).rpc_url == "http://10.0.0.5:8545"
    assert load_deployment(config.chain).chain_id == 31337


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    key = bytes(range(1, 33))
    path = tmp_path_factory.mktemp("keys") / "key.json"
    path.write_text(json.dumps(Account.encrypt(key, "s3cret", kdf="pbkdf2", iterations=16)))
    return path, key


def test_keystore_decrypts_with_the_password_from_the_environment(
    keystore: tuple[Path, bytes],
) -> None:
    path, key = keystore
    assert decrypt_key(KeyConfig(path, "PW"), {"PW": "s3cret"}) == key


@pytest.mark.parametrize(
    ("env", "reason"),
    [({}, "set the password in the environment variable PW"), ({"PW": "wrong"}, "wrong password")],
)
def test_keystore_without_the_right_password_is_a_keystore_error(
    keystore: tuple[Path, bytes], env: dict[str, str], reason: str
) -> None:
    with pytest.raises(KeystoreError) as info:
        decrypt_key(KeyConfig(keystore[0], "PW"), env)
    assert reason in info.value.reason
    assert info.value.path == str(keystore[0])


def test_missing_or_foreign_keystore_file_is_a_keystore_error(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="cannot read"):
        decrypt_key(KeyConfig(tmp_path / "none.json", "PW"), {"PW": "x"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeystoreError, match="not JSON"):
        decrypt_key(KeyConfig(tmp_path / "bad.json", "PW"), {"PW": "x"})
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(KeystoreError):
        decrypt_key(KeyConfig(tmp_path / "other.json", "PW"), {"PW": "x"})


@pytest.mark.parametrize(
    ("written", "tokens"),
    [('"250.5"', Decimal("250.5")), ("250.5", Decimal("250.5")), ("200", Decimal(200)),
     ('"1,000"', Decimal(1000))],
)  # fmt: skip
def test_the_stake_is_read_in_tokens_exactly_and_converted_with_the_tokens_decimals(
    tmp_path: Path, written: str, tokens: Decimal
) -> None:
    config = load_config(_write(tmp_path, MINIMAL + f"[agent]\nstake = {written}\n"))
    assert config.agent.stake == tokens
    assert config.agent.stake is not None
    assert config.agent.stake.units(Token("tUSD", 6)) == int(tokens * 10**6)
    assert config.agent.stake.units(Token("DAI", 18)) == int(tokens * 10**18)


def test_a_stake_finer_than_the_tokens_decimals_is_refused_when_converted(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL + '[agent]\nstake = "1.0000001"\n'))
    assert config.agent.stake is not None
    with pytest.raises(AmountTooPrecise, match="more decimals than tUSD has"):
        config.agent.stake.units(Token("tUSD", 6))


@pytest.mark.parametrize("written", ['"-1"', '"ten"', "true", '"1 ETH"'])
def test_a_stake_that_is_no_amount_of_tokens_is_a_config_error(
    tmp_path: Path, written: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, MINIMAL + f"[agent]\nstake = {written}\n"))
    assert info.value.field == "agent.stake"
    assert "amount of tokens" in info.value.reason
