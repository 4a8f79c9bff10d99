"""The daemons' shared room: what the relay, the provider agent and the lab client all need, so
that none of them imports another's.

* :mod:`~nodes.daemon.config`: the config's common part (state file, ``[key]``, ``[chain]``,
  ``[relays]``) as msgspec structs, the deployment it names;
* :mod:`~nodes.daemon.toml`: a TOML file decoded into a config's structs, every problem a
  ConfigError naming the field's path; :mod:`~nodes.daemon.values` the values it checks beyond
  bounds (URLs, GPU models, signed attributes, billing modes, addresses, sizes);
  :mod:`~nodes.daemon.amounts` amounts in tokens and prices per GPU-hour as written, converted
  once the token's decimals are read, and the retired base-unit keys refused;
* :mod:`~nodes.daemon.keystore`: the signing key, decrypted with a password from the environment;
* :mod:`~nodes.daemon.guard`: child processes that never outlive their daemon;
* :mod:`~nodes.daemon.startup`: listening, the ready line, stopping on SIGTERM or SIGINT;
* :mod:`~nodes.daemon.explain`: why an order does not match, as one ``no_match`` event;
* :mod:`~nodes.daemon.preflight`: the checks a daemon runs before it stakes, approves or signs
  (and ``--check`` prints), one line each with its fix;
* :mod:`~nodes.daemon.health`: whether the daemon's chain rounds reach the chain, for
  ``/healthz`` (503 while they do not) and the gauge ``gpumarket_chain_up``.

It imports nothing of ``nodes.relay``, ``nodes.provider`` or ``nodes.lab`` (``tests/unit/
test_layers.py`` holds every room to its imports).
"""

from nodes.daemon.amounts import PerGpuHour, Tokens, refuse_retired
from nodes.daemon.config import (
    ChainConfig,
    DaemonConfig,
    KeyConfig,
    RelaysConfig,
    Table,
    load_config,
    load_deployment,
)
from nodes.daemon.explain import explanation_fields, log_no_match
from nodes.daemon.guard import die_with_parent
from nodes.daemon.keystore import decrypt_key
from nodes.daemon.startup import Listener, listen, ready_line, stop_signals
from nodes.daemon.toml import load_toml
from nodes.daemon.values import Invalid

__all__ = [
    "ChainConfig",
    "DaemonConfig",
    "Invalid",
    "KeyConfig",
    "Listener",
    "PerGpuHour",
    "RelaysConfig",
    "Table",
    "Tokens",
    "decrypt_key",
    "die_with_parent",
    "explanation_fields",
    "listen",
    "load_config",
    "load_deployment",
    "load_toml",
    "log_no_match",
    "ready_line",
    "refuse_retired",
    "stop_signals",
]
