"""A leased job as the lab specifies it: what to run and where to seal its outputs.

The spec travels sealed to the provider (``SubmitJob``); its plaintext is one msgpack map::

    {"v": 1, "kind": "matmul", "labKey": <32-byte X25519 public key>,
     "params": {"n": 128, "seed": 7, "rounds": 16}}
    {"v": 1, "kind": "train", "labKey": ..., "params": {"seed": 7, "segments": 100, "steps": 200,
     "width": 32}}
    {"v": 1, "kind": "command", "labKey": ..., "params": {"argv": ["python", "-c", "..."]}}
    {"v": 1, "kind": "command", "labKey": ..., "params": {...}, "network": true}

The lab's bid commits to it: ``Bid.job_spec_hash`` is the keccak256 of exactly these bytes, so the
provider runs only a job the lab signed for, and outputs are sealed to the key inside it.

* ``matmul``: ``rounds`` integer products ``A_k @ B_k`` of ``n x n`` matrices drawn from
  ``seed + k`` (:func:`nodes.jobs.matmul.matrices`), written one after the other as int64
  little-endian; the lab checks each with Freivalds' algorithm.
* ``train``: a deterministic training run in ``segments`` segments (:mod:`nodes.jobs.train`),
  writing a checkpoint after each; the lab re-executes a sample of segments from the checkpoint
  before each and compares bytes.
* ``command``: any argv, run in the provider's runtime; ``"python"`` as ``argv[0]`` is the
  provider's Python interpreter. A deterministic command is checked by running it again.

Every job runs in the provider's sandbox without a network; ``network: true`` asks for the host's
network, and a provider whose policy does not allow it refuses the job (``JobRefused``). The key
is written only when true, so the bytes (and ``jobSpecHash``) of a spec without it are those of
the specs signed before the field existed, and ``"network": false`` is not canonical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import msgpack

from market.errors import DecodeError
from market.protocol.keccak import keccak

SPEC_VERSION: Final = 1
MAX_N: Final = 1024
MAX_ROUNDS: Final = 100_000
MAX_ARGS: Final = 64
MAX_ARG_LEN: Final = 8192
MAX_SEGMENTS: Final = 100_000
MAX_STEPS: Final = 100_000
MAX_WIDTH: Final = 256
INPUTS: Final = 16
"""Inputs of the training workload's model."""
Kind = Literal["matmul", "train", "command"]


@dataclass(frozen=True, slots=True)
class MatmulParams:
    n: int
    seed: int
    rounds: int

    @property
    def product_bytes(self) -> int:
        return 8 * self.n * self.n


@dataclass(frozen=True, slots=True)
class TrainParams:
    """A segmented training run (:mod:`nodes.jobs.train`): ``segments`` checkpoints, each after
    ``steps`` steps of a model with ``width`` hidden units, from ``seed``."""

    seed: int
    segments: int
    steps: int
    width: int

    @property
    def record_bytes(self) -> int:
        """Bytes of one checkpoint record: index and loss (int64 each), then the weights."""
        return 16 + 8 * (INPUTS * self.width + self.width)


@dataclass(frozen=True, slots=True)
class CommandParams:
    argv: tuple[str, ...]


Params = MatmulParams | TrainParams | CommandParams


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What the lab wants run, and the X25519 key its outputs are sealed to."""

    lab_key: bytes
    params: Params
    network: bool = False
    """The job asks for the host's network (signed: part of ``jobSpecHash``)."""

    @property
    def kind(self) -> Kind:
        if isinstance(self.params, MatmulParams):
            return "matmul"
        return "train" if isinstance(self.params, TrainParams) else "command"

    def encode(self) -> bytes:
        """The plaintext (canonical: the same spec always gives the same bytes)."""
        if isinstance(self.params, MatmulParams):
            p = self.params
            params: dict[str, object] = {"n": p.n, "seed": p.seed, "rounds": p.rounds}
        elif isinstance(self.params, TrainParams):
            t = self.params
            params = {"seed": t.seed, "segments": t.segments, "steps": t.steps, "width": t.width}
        else:
            params = {"argv": list(self.params.argv)}
        tree: dict[str, object] = {
            "v": SPEC_VERSION, "kind": self.kind, "labKey": self.lab_key, "params": params
        }  # fmt: skip
        if self.network:  # only when true: the hash of a spec without it is unchanged
            tree["network"] = True
        packed: bytes = msgpack.packb(tree, use_bin_type=True)
        return packed

    @property
    def hash(self) -> bytes:
        """What the lab's bid carries as ``job_spec_hash``."""
        return keccak(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> JobSpec:
        """The spec in ``data``; raises DecodeError naming what is wrong."""
        try:
            tree = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=64)
        except (ValueError, msgpack.UnpackException) as exc:
            raise DecodeError(f"job spec: malformed msgpack ({exc})") from exc
        keys = {"v", "kind", "labKey", "params"}
        if not isinstance(tree, dict) or not keys <= set(tree) <= keys | {"network"}:
            raise DecodeError("job spec: a map of exactly v, kind, labKey, params (and network)")
        network = tree.get("network", False)
        if type(network) is not bool:
            raise DecodeError("job spec: network must be true or false")
        if tree["v"] != SPEC_VERSION:
            raise DecodeError(f"job spec: version {tree['v']!r}, this node reads {SPEC_VERSION}")
        key, params = tree["labKey"], tree["params"]
        if type(key) is not bytes or len(key) != 32:
            raise DecodeError("job spec: labKey must be a 32-byte X25519 public key")
        if not isinstance(params, dict):
            raise DecodeError("job spec: params must be a map")
        if tree["kind"] == "matmul":
            spec = cls(key, _matmul(params), network)
        elif tree["kind"] == "train":
            spec = cls(key, _train(params), network)
        elif tree["kind"] == "command":
            spec = cls(key, _command(params), network)
        else:
            raise DecodeError(f"job spec: unknown kind {tree['kind']!r} (matmul, train or command)")
        if spec.encode() != data:
            raise DecodeError("job spec: not in canonical form")
        return spec


def _int(params: dict[str, object], name: str, low: int, high: int) -> int:
    value = params.get(name)
    if type(value) is not int or not low <= value <= high:
        raise DecodeError(f"job spec: params.{name} must be an integer in [{low}, {high}]")
    return value


def _matmul(params: dict[str, object]) -> MatmulParams:
    if set(params) != {"n", "seed", "rounds"}:
        raise DecodeError("job spec: matmul params are exactly n, seed, rounds")
    return MatmulParams(
        _int(params, "n", 1, MAX_N),
        _int(params, "seed", 0, 2**63 - 1),
        _int(params, "rounds", 1, MAX_ROUNDS),
    )


def _train(params: dict[str, object]) -> TrainParams:
    if set(params) != {"seed", "segments", "steps", "width"}:
        raise DecodeError("job spec: train params are exactly seed, segments, steps, width")
    return TrainParams(
        _int(params, "seed", 0, 2**63 - 1),
        _int(params, "segments", 1, MAX_SEGMENTS),
        _int(params, "steps", 1, MAX_STEPS),
        _int(params, "width", 1, MAX_WIDTH),
    )


def _command(params: dict[str, object]) -> CommandParams:
    argv = params.get("argv")
    if set(params) != {"argv"} or not isinstance(argv, list) or not 1 <= len(argv) <= MAX_ARGS:
        raise DecodeError(f"job spec: command params are exactly argv, 1 to {MAX_ARGS} strings")
    if not all(type(a) is str and 0 < len(a) <= MAX_ARG_LEN and "\0" not in a for a in argv):
        raise DecodeError(f"job spec: each argument a non-empty string of <= {MAX_ARG_LEN}")
    return CommandParams(tuple(argv))


__all__ = ["CommandParams", "JobSpec", "MatmulParams", "Params", "TrainParams"]
