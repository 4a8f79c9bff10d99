"""The lab's TOML config: a full file, defaults, and mistakes named by field."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from market.matching import Constraint, Requirements, encode_attributes
from market.matching.constraints import feature_bit, unfit
from market.protocol.types import Bid, Billing, Offer
from market.receipts import DEFAULT_SAMPLES
from market.units import Token
from nodes.errors import ConfigError
from nodes.jobs.spec import CommandParams, MatmulParams
from nodes.lab.config import JobConfig, LabSettings, load_config
from nodes.provider.agent import job_features
from nodes.provider.config import JobLimits, KeyConfig

TUSD = Token("tUSD", 6)

pytestmark = pytest.mark.unit
WALLET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"

FULL = """
state = "var/lab.sqlite"

[key]
keystore = "lab-key.json"
password_env = "LAB_PASSWORD"
voucher_keystore = "voucher-key.json"
wallet = "0x5fbdb2315678afecb367f032d93f642f64180aa3"

[chain]
deployment = "deployment.json"
rpc_url = "http://10.0.0.5:8545"

[relays]
urls = ["http://127.0.0.1:7000", "https://relay.example"]

[lab]
poll_interval_s = 0.25
host = "0.0.0.0"
port = 9100
allowance = "5"
bid_ttl_s = 600
audit_samples = 8

[[jobs]]
model = "H100-80GB"
gpus = 2
max_price_per_gpu_hour = "0.0108"
duration = 600
billing = "metered"
min_memory_gib = 80
min_bandwidth_gbps = 400
accept = { region = ["eu-west", "uk"], interconnect = "nvlink" }
require = { capabilities = ["ecc", "mig"] }
all_or_none = true
kind = "matmul"
n = 128
seed = 7
rounds = 16

[[jobs]]
model = "L4-24GB"
gpus = 1
max_price_per_gpu_hour = "0.0036"
duration = 60
kind = "command"
argv = ["python", "-c", "print('hello')"]
"""

MINIMAL = """
[key]
keystore = "/keys/k.json"
[relays]
urls = ["http://127.0.0.1:7000"]
[[jobs]]
model = "H100-80GB"
gpus = 1
max_price_per_gpu_hour = "0.0108"
duration = 60
kind = "command"
argv = ["true"]
"""


def _wallet(value: str) -> str:
    """MINIMAL with ``[key] wallet = <value>`` (TOML)."""
    return MINIMAL.replace(
        'keystore = "/keys/k.json"', f'keystore = "/keys/k.json"\nwallet = {value}'
    )


def test_a_wallet_is_read_in_any_case_that_is_not_a_wrong_checksum(tmp_path: Path) -> None:
    for written in (WALLET, WALLET.lower(), "0x" + WALLET[2:].upper()):
        assert load_config(_write(tmp_path, _wallet(f'"{written}"'))).wallet == WALLET


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_full_config_is_read_into_typed_fields(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FULL))
    assert config.state == tmp_path / "var/lab.sqlite"
    assert config.key.keystore == tmp_path / "lab-key.json"
    assert config.key.password_env == "LAB_PASSWORD"
    assert config.chain.deployment == tmp_path / "deployment.json"
    assert config.chain.rpc_url == "http://10.0.0.5:8545"
    assert config.relays == ("http://127.0.0.1:7000", "https://relay.example")
    assert config.lab == LabSettings(
        host="0.0.0.0", port=9100, poll_interval_s=0.25, allowance=Decimal(5), bid_ttl_s=600,
        audit_samples=8,
    )  # fmt: skip
    assert config.voucher_key == KeyConfig(tmp_path / "voucher-key.json", "LAB_PASSWORD")
    assert config.wallet == WALLET  # read in lower case, kept checksummed
    wants = Requirements(
        80,
        (
            Constraint("region", "in", ("eu-west", "uk")),
            Constraint("interconnect", "in", ("nvlink",)),
            Constraint("capabilities", "has", "ecc"),
            Constraint("capabilities", "has", "mig"),
            Constraint("bandwidth_gbps", "ge", 400),
        ),
        all_or_none=True,
    )
    assert config.jobs(TUSD) == (
        JobConfig("H100-80GB", 2, 3, 600, MatmulParams(128, 7, 16), Billing.METERED, wants),
        JobConfig("L4-24GB", 1, 1, 60, CommandParams(("python", "-c", "print('hello')"))),
    )
    assert config.jobs(TUSD)[0].bid_requirements.bid_fields() == {
        "min_memory_gib": 80,
        "min_bandwidth_gbps": 400,
        "required_features": encode_attributes({"capabilities": ("ecc", "mig")}),
        "accepted_features": encode_attributes(
            {"region": ("eu-west", "uk"), "interconnect": "nvlink"}
        ),
        "all_or_none": True,
        "billing": Billing.METERED,  # the job's billing, signed with its requirements
    }
    assert config.jobs(TUSD)[1].bid_requirements == Requirements()  # any offer of the model
    assert config.jobs(TUSD)[1].billing is Billing.RENTAL  # the default
    assert config.jobs(TUSD)[0].max_escrow == 3 * 2 * 600


def test_minimal_config_takes_the_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert config.state == tmp_path / "state.sqlite"
    assert config.key.password_env == "GPUMARKET_KEY_PASSWORD"
    assert (config.chain.deployment, config.chain.rpc_url) == (None, None)
    assert config.lab == LabSettings(
        host="127.0.0.1", port=0, poll_interval_s=1.0, allowance=None, bid_ttl_s=3600,
        audit_samples=DEFAULT_SAMPLES,
    )  # fmt: skip
    assert config.voucher_key is None  # the lab's own key signs its vouchers
    assert config.wallet is None  # the lab is its key's own account
    assert config.jobs(TUSD)[0].billing is Billing.RENTAL


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (MINIMAL + "[lab]\nport = 70000\n", "lab.port", "at most 65535"),
        (MINIMAL + "[lab]\npoll_interval_s = 0\n", "lab.poll_interval_s", "positive"),
        (MINIMAL + '[lab]\nallowance = "-1"\n', "lab.allowance", "negative"),
        (
            MINIMAL + "[lab]\nfund = 5000000\n",
            "lab.fund",
            re.escape('allowance = 5000000 / 10^decimals (a 6-decimal token: "5")'),
        ),
        (
            MINIMAL.replace('max_price_per_gpu_hour = "0.0108"', "max_price_per_gpu_second = 3"),
            "jobs[0].max_price_per_gpu_second",
            re.escape(
                'max_price_per_gpu_hour = 3 x 3600 / 10^decimals (a 6-decimal token: "0.0108")'
            ),
        ),
        (
            MINIMAL.replace('max_price_per_gpu_hour = "0.0108"', 'max_price_per_gpu_hour = "0"'),
            "jobs[0].max_price_per_gpu_hour",
            "more than 0",
        ),
        (
            MINIMAL.replace('max_price_per_gpu_hour = "0.0108"', "max_price_per_gpu_hour = -1"),
            "jobs[0].max_price_per_gpu_hour",
            "negative",
        ),
        (
            MINIMAL.replace('max_price_per_gpu_hour = "0.0108"\n', ""),
            "jobs[0].max_price_per_gpu_hour",
            "missing",
        ),
        (MINIMAL + "[lab]\npoll = 1\n", "lab.poll", "unknown key"),
        (MINIMAL.replace('kind = "command"', 'kind = "shell"'), "jobs[0].kind", "matmul"),
        (MINIMAL.replace('argv = ["true"]', "argv = []"), "jobs[0].argv", "list of 1 to"),
        (MINIMAL.replace('argv = ["true"]', 'argv = ["a", ""]'), "jobs[0].argv[1]", "non-empty"),
        (MINIMAL.replace('argv = ["true"]', 'argv = ["a"]\nn = 4'), "jobs[0].n", "unknown key"),
        (MINIMAL.replace("gpus = 1", "gpus = 0"), "jobs[0].gpus", "at least 1"),
        (MINIMAL.replace('urls = ["http://127.0.0.1:7000"]', "urls = []"), "relays.urls", "relay"),
        (
            MINIMAL.replace('"http://127.0.0.1:7000"', '"ftp://x"'),
            "relays.urls[0]",
            "must be an http",
        ),
        (MINIMAL.split("[[jobs]]")[0], "jobs", "at least one job"),
        (
            MINIMAL.replace("duration = 60", 'duration = 60\nbilling = "hourly"'),
            "jobs[0].billing",
            "one of",
        ),
        (
            MINIMAL.replace('keystore = "/keys/k.json"', 'keystore = "k"\nvoucher_keystore = 3'),
            "key.voucher_keystore",
            "path",
        ),
        (MINIMAL + "[chain]\n", "chain", "deployment, rpc_url or both"),
        (_wallet('"0x5FBdb2315678afecb367f032d93F642f64180aa3"'), "key.wallet", "wrong EIP-55"),
        (_wallet('"0x5fbdb2315678afecb367f032d93f642f64180aa"'), "key.wallet", "20-byte hex"),
        (_wallet('"5fbdb2315678afecb367f032d93f642f64180aa3"'), "key.wallet", "20-byte hex"),
        (_wallet('"0x5fbdb2315678afecb367f032d93f642f64180azz"'), "key.wallet", "20-byte hex"),
        (_wallet(f'"0x{"0" * 40}"'), "key.wallet", "not be the zero address"),
        (_wallet("1234"), "key.wallet", "hex address string"),
        (
            MINIMAL.replace("duration = 60", 'duration = 60\naccept = { colour = "red" }'),
            "jobs[0].accept.colour",
            r"not an attribute orders can sign; known: \['capabilities'",
        ),
        (
            MINIMAL.replace("duration = 60", 'duration = 60\nrequire = { capabilities = "gpu" }'),
            "jobs[0].require.capabilities",
            r"'gpu' is not one of \['ecc', 'mig'",
        ),
        (
            MINIMAL.replace("duration = 60", "duration = 60\nmin_memory_gib = 4294967296"),
            "jobs[0].min_memory_gib",
            "at most 4294967295",
        ),
        (
            MINIMAL.replace("duration = 60", "duration = 60\nall_or_none = 1"),
            "jobs[0].all_or_none",
            "true or false",
        ),
    ],
)
def test_mistakes_are_config_errors_naming_the_field(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        load_config(_write(tmp_path, text))
    assert info.value.field == field


def test_matmul_sizes_are_bounded_like_the_spec(tmp_path: Path) -> None:
    text = MINIMAL.replace('kind = "command"\nargv = ["true"]', 'kind = "matmul"\nn = 2048\n'
                           "seed = 1\nrounds = 1")  # fmt: skip
    with pytest.raises(ConfigError, match="at most 1024") as info:
        load_config(_write(tmp_path, text))
    assert info.value.field == "jobs[0].n"


def test_unreadable_and_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "state = ["))
    assert info.value.field == "(syntax)"


def test_a_job_asking_for_the_network_signs_it_and_bids_only_for_providers_that_allow_it(
    tmp_path: Path,
) -> None:
    config = load_config(_write(tmp_path, MINIMAL + "network = true\n"))
    (job,) = config.jobs(TUSD)
    assert job.network
    bit = feature_bit("capabilities", "job-network")
    fields = job.bid_requirements.bid_fields()
    assert fields["required_features"] & bit
    bid = Bid("0x" + "22" * 20, "H100-80GB", 1, 3, 60, 2_000_000, 1, **fields)
    base = Offer("0x" + "11" * 20, "H100-80GB", 8, 80, 3, 1, 3600, 2_000_000, 1)
    assert unfit(base, bid) is not None  # a provider not allowing it cannot be matched
    assert unfit(replace(base, features=bit), bid) is None
    (plain,) = load_config(_write(tmp_path, MINIMAL)).jobs(TUSD)
    assert not plain.network
    assert not plain.bid_requirements.bid_fields()["required_features"] & bit


def test_a_provider_allowing_the_network_signs_job_network_in_every_offer() -> None:
    bit = feature_bit("capabilities", "job-network")
    assert job_features(JobLimits(3600, None, allow_network=True)) == bit
    assert job_features(JobLimits(3600, None)) == 0
