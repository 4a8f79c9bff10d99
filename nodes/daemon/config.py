"""What every daemon's config holds, declared once as msgspec structs.

    state = "state.sqlite"                 # the daemon's SQLite file (relative: to the file)

    [key]
    keystore = "key.json"                  # an eth-account keystore (Account.encrypt)
    password_env = "GPUMARKET_KEY_PASSWORD"

    [chain]                                # at least one of the two
    deployment = "deployment.json"         # default: $GPUMARKET_DEPLOYMENT or .gpumarket/...
    rpc_url = "http://127.0.0.1:8545"      # overrides the deployment file's
    confirmations = 0                      # act on events this deep: more where chains reorg

    [relays]
    urls = ["http://127.0.0.1:7000"]

A daemon's config subclasses :class:`DaemonConfig` with its own tables; :func:`load_config`
reads one (:mod:`nodes.daemon.toml` names the field of any problem). Every table is a
:class:`Table`: frozen, and a key it does not declare is an error, so a typo is not ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta, inspect

from market.chain.deploy import Deployment, default_deployment_path
from nodes.daemon.toml import decode, read_toml
from nodes.daemon.values import Invalid, Url
from nodes.errors import ConfigError

Port = Annotated[int, Meta(ge=0, le=65535)]
"""A TCP port; 0 asks for a free one."""
NonEmpty = Annotated[str, Meta(min_length=1)]
DEFAULT_STATE = Path("state.sqlite")


class Table(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One table of a config file: frozen, unknown keys refused (subclasses inherit both).

    Its numbers' bounds (``msgspec.Meta``) hold for a table built in Python too, not only for
    one decoded from a file: a subclass with its own ``__post_init__`` calls this one first."""

    def __post_init__(self) -> None:
        check_bounds(self)


def check_bounds(table: msgspec.Struct) -> None:
    """Raise Invalid for the first field of ``table`` outside its declared bounds."""
    for name, number in _bounded_fields(type(table)):
        value = getattr(table, name)
        if value is None or isinstance(value, bool):
            continue
        for bound, holds, words in (
            (number.ge, operator.ge, "at least"),
            (number.gt, operator.gt, "more than"),
            (number.le, operator.le, "at most"),
            (number.lt, operator.lt, "less than"),
        ):
            if bound is None or holds(value, bound):
                continue
            if holds is operator.gt and bound == 0:
                raise Invalid(
                    f"must be a positive number, got {value!r}", name, type(table).__name__
                )
            raise Invalid(f"must be {words} {bound}, got {value!r}", name, type(table).__name__)


@functools.cache
def _bounded_fields(
    kind: type[msgspec.Struct],
) -> tuple[tuple[str, inspect.IntType | inspect.FloatType], ...]:
    info = inspect.type_info(kind)
    assert isinstance(info, inspect.StructType)
    out = []
    for field in info.fields:
        t = field.type
        if isinstance(t, inspect.UnionType):
            members = [u for u in t.types if not isinstance(u, inspect.NoneType)]
            t = members[0] if len(members) == 1 else t
        if isinstance(t, inspect.IntType | inspect.FloatType) and (
            t.ge is not None or t.gt is not None or t.le is not None or t.lt is not None
        ):
            out.append((field.name, t))
    return tuple(out)


class KeyConfig(Table, frozen=True):
    """``[key]``: the daemon's signing key (:func:`nodes.daemon.keystore.decrypt_key`)."""

    keystore: Path
    password_env: NonEmpty = "GPUMARKET_KEY_PASSWORD"


class ChainConfig(Table, frozen=True):
    """``[chain]``: where the chain is (absent: the default deployment file)."""

    deployment: Path | None = None
    rpc_url: Url | None = None
    confirmations: Annotated[int, Meta(ge=0)] = 0
    """Blocks an event's block must be under before the daemon acts on it."""


class RelaysConfig(Table, frozen=True):
    """``[relays]``: the relays the daemon sends its orders to."""

    urls: tuple[Url, ...] = ()


class HttpListen(Table, frozen=True):
    """Where a daemon listens (the provider's ``[agent]``, the lab's ``[lab]``, the relay's file):
    ``host`` and ``port``, 0 asking for a free one (its ready line says which)."""

    host: NonEmpty = "127.0.0.1"
    port: Port = 0


class DaemonConfig(Table, frozen=True, kw_only=True):
    """The part every daemon's config file has: its state file, key, chain and relays."""

    key: KeyConfig
    state: Path = DEFAULT_STATE
    chain: ChainConfig = msgspec.field(default_factory=ChainConfig)
    relay_table: RelaysConfig = msgspec.field(name="relays", default_factory=RelaysConfig)

    @property
    def relays(self) -> tuple[str, ...]:
        """The relays' base URLs (``[relays] urls``)."""
        return self.relay_table.urls


C = TypeVar("C", bound=DaemonConfig)


def load_config(path: Path, kind: type[C]) -> C:
    """Read and validate the config at ``path`` as ``kind``; raises ConfigError naming the bad
    field. The default state file is next to the config file."""
    raw = read_toml(path)
    _check_chain(raw, str(path))
    config = decode(raw, kind, file=str(path), base=path.parent)
    if not config.state.is_absolute():
        config = msgspec.structs.replace(config, state=path.parent / config.state)
    return config


def _check_chain(raw: dict[str, Any], file: str) -> None:
    """A ``[chain]`` table that is there must say something: an empty one is a mistake."""
    chain, fields = raw.get("chain"), ChainConfig.__struct_fields__
    if isinstance(chain, dict) and set(chain) <= set(fields) and not any(map(chain.get, fields)):
        raise ConfigError(file, "chain", "give deployment, rpc_url or both")


def load_deployment(chain: ChainConfig) -> Deployment:
    """The deployment file named by the config (or the default one), with ``rpc_url`` applied."""
    deployment = Deployment.load(chain.deployment or default_deployment_path())
    if chain.rpc_url is not None:
        deployment = dataclasses.replace(deployment, rpc_url=chain.rpc_url)
    return deployment


__all__ = [
    "ChainConfig",
    "DaemonConfig",
    "HttpListen",
    "KeyConfig",
    "NonEmpty",
    "Port",
    "RelaysConfig",
    "Table",
    "check_bounds",
    "load_config",
    "load_deployment",
]
