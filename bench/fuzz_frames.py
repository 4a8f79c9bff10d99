"""The fuzz campaign's frames: valid wire messages, mutations of them, and noise, all seeded.

:func:`valid_pool` draws valid messages of every type from the wire's Hypothesis strategies
(``tests/unit/wire_strategies.py``) under a fixed seed; :class:`FrameMaker` turns one
``random.Random`` into frames: a valid frame as it is, bit flips, truncation, a field's value
swapped for another type or an edge value (integers at 2^63 and 2^64, long strings, deep nesting),
a wrong version or type name, a missing or extra key, random bytes, frames past the size limit.
:func:`order_frames` adds frames of orders signed for the market under test, which get past the
signature check into the rest of admission.
The same seed gives the same frames in the same order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
from hypothesis import HealthCheck, Phase, given, seed, settings

from market.matching import Submission
from market.protocol.types import Bid, Offer, Signed
from nodes.wire import ExplainRequest, Gossip, Message, SubmitOrders, encode
from nodes.wire.frames import MESSAGES

_DEEP = "\x00deep-nesting\x00"
"""A placeholder string whose packed bytes are swapped for a deeply nested value (msgpack's
packer refuses to nest past 512 levels; a frame on the wire may claim any depth)."""
EDGE_INTS = (0, -1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), -(2**31))
HUGE_CLAIMS = (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
               b"\xc6\x7f\xff\xff\xff", b"\xc1", b"\xd4\x01\x00")  # fmt: skip
"""Frames of a few bytes that claim a huge array, map, string or bin, or use reserved codes."""
OTHER_TYPES = ("Teleport", "", "submitorders", "ErrorResponse", "x" * 300)


def valid_pool(seed_value: int, per_draw: int) -> list[bytes]:
    """``per_draw`` valid frames of every message type, drawn under ``seed_value``."""
    from tests.unit.wire_strategies import MESSAGES, SAMPLES  # the wire tests' strategies

    frames: list[bytes] = [encode(m) for m in SAMPLES.values()]

    @seed(seed_value)
    @settings(max_examples=per_draw, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(MESSAGES)
    def draw(message: Message) -> None:
        frames.append(encode(message))

    draw()
    return frames


def order_frames(rng: random.Random, orders: Sequence[Signed[Offer] | Signed[Bid]],
                 n: int) -> list[bytes]:  # fmt: skip
    """``n`` frames of each of SubmitOrders, Gossip and ExplainRequest carrying ``orders``
    (signed for this market: they pass the signature check and reach the rest of admission)."""
    frames = []
    for _ in range(n):
        picked = tuple(Submission(o) for o in rng.sample(list(orders), rng.randint(1, 4)))
        frames.append(encode(SubmitOrders(picked)))
        frames.append(encode(Gossip("fuzz-origin", "fuzz-peer", rng.randint(1, 3), picked)))
        frames.append(encode(ExplainRequest(rng.choice(orders).message)))
    return frames


def type_name(frame: bytes) -> str:
    """The ``type`` of a valid frame."""
    tree = msgpack.unpackb(frame, raw=False)
    return str(tree["type"])


class FrameMaker:
    """Frames from one seeded generator; ``limit`` is the receiver's frame size limit."""

    def __init__(self, rng: random.Random, pool: Sequence[bytes], limit: int) -> None:
        self.rng = rng
        self.limit = limit
        self.by_type: dict[str, list[bytes]] = {}
        for frame in pool:
            self.by_type.setdefault(type_name(frame), []).append(frame)
        self.pool = list(pool)
        self._oversize: dict[int, bytes] = {}
        self.kinds: list[tuple[str, float, Callable[[bytes], bytes]]] = [
            ("valid", 0.22, lambda f: f),
            ("bit_flip", 0.14, self._bit_flip),
            ("truncated", 0.08, self._truncate),
            ("field_swap", 0.26, self._swap_field),
            ("envelope", 0.10, self._envelope),
            ("deep_nesting", 0.04, self._deep),
            ("random_bytes", 0.12, lambda f: self._noise()),
            ("oversize", 0.004, lambda f: self._too_large()),
        ]
        self._weights = [w for _, w, _ in self.kinds]

    def valid(self, wanted: str | None) -> bytes:
        """A valid frame: half the time of type ``wanted`` (when known), else of any type."""
        if self.rng.random() < 0.5 and wanted in self.by_type:
            return self.rng.choice(self.by_type[wanted])
        return self.rng.choice(self.pool)

    def frame(self, wanted: str | None = None) -> tuple[str, bytes]:
        """(kind, frame): a frame of a kind drawn by weight, mutated from a valid one."""
        kind, _, make = self.rng.choices(self.kinds, self._weights)[0]
        return kind, make(self.valid(wanted))

    # --- byte-level ------------------------------------------------------------------------

    def _bit_flip(self, frame: bytes) -> bytes:
        data = bytearray(frame)
        for _ in range(self.rng.randint(1, 8)):
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        return bytes(data)

    def _truncate(self, frame: bytes) -> bytes:
        return frame[: self.rng.randrange(len(frame))]

    def _noise(self) -> bytes:
        rng = self.rng
        pick = rng.random()
        if pick < 0.1:  # a tiny frame declaring an enormous container or string
            return rng.choice(HUGE_CLAIMS)
        return rng.randbytes(rng.choice([0, 1, 2, 8, 64, 512, 4096]))

    def _too_large(self) -> bytes:
        size = self.limit + self.rng.choice([1, 1024, 65536])
        if size not in self._oversize:
            body = {"orders": [b"\x00" * size]}
            self._oversize[size] = msgpack.packb({"v": 1, "type": "SubmitOrders", "body": body})
        return self._oversize[size]

    # --- tree-level ------------------------------------------------------------------------

    def _slots(self, tree: Any) -> list[tuple[Any, Any]]:
        """Every (container, key) under ``tree``: where a value can be replaced."""
        out: list[tuple[Any, Any]] = []
        stack = [tree]
        while stack:
            node = stack.pop()
            keys = list(node) if isinstance(node, dict) else range(len(node))
            for key in keys:
                out.append((node, key))
                if isinstance(node[key], dict | list):
                    stack.append(node[key])
        return out

    def _replacement(self, old: Any) -> Any:
        rng = self.rng
        options: list[Callable[[], Any]] = [
            lambda: rng.choice(EDGE_INTS),
            lambda: "x" * rng.choice([65, 300, 5000, 20000]),
            lambda: (
                "".join(chr(rng.randrange(0x20, 0x10FFFF)) for _ in range(rng.randrange(40)))
                .encode("utf-8", "replace")
                .decode("utf-8", "replace")
            ),
            lambda: rng.randbytes(rng.choice([0, 1, 19, 20, 21, 31, 32, 33, 64, 65, 66, 5000])),
            lambda: None,
            lambda: rng.random() < 0.5,
            lambda: rng.choice([0.5, float("nan"), float("inf"), -0.0]),
            list,
            dict,
            lambda: [old] * rng.choice([1, 2, 1001]),
            lambda: {"extra": old},
            lambda: {1: old},
            lambda: str(old),
        ]
        return rng.choice(options)()

    def _swap_field(self, frame: bytes) -> bytes:
        tree = msgpack.unpackb(frame, raw=False)
        slots = self._slots(tree)
        for _ in range(self.rng.randint(1, 3)):
            node, key = self.rng.choice(slots)
            node[key] = self._replacement(node[key])
        return _pack(tree)

    def _envelope(self, frame: bytes) -> bytes:
        rng = self.rng
        tree = msgpack.unpackb(frame, raw=False)
        pick = rng.randrange(6)
        if pick == 0:
            tree["v"] = rng.choice([0, 2, -1, 2**64 - 1, "1", None, 1.0])
        elif pick == 1:
            tree["type"] = rng.choice([*OTHER_TYPES, *MESSAGES])
        elif pick == 2:
            del tree[rng.choice(list(tree))]
        elif pick == 3:
            tree[rng.choice(["extra", "V", "body "])] = 1
        elif pick == 4:
            body = tree["body"]
            if isinstance(body, dict) and body:
                del body[rng.choice(list(body))]
        else:
            tree = [tree["v"], tree["type"], tree["body"]]
        return _pack(tree)

    def _deep(self, frame: bytes) -> bytes:
        tree = msgpack.unpackb(frame, raw=False)
        node, key = self.rng.choice(self._slots(tree))
        node[key] = _DEEP
        depth = self.rng.choice([100, 1000, 100_000])
        nested = self.rng.choice([b"\x91", b"\x81\xa1k"]) * depth + b"\xc0"
        return _pack(tree).replace(msgpack.packb(_DEEP), nested, 1)


def _pack(tree: Any) -> bytes:
    packed: bytes = msgpack.packb(tree, use_bin_type=True)
    return packed


__all__ = ["FrameMaker", "order_frames", "type_name", "valid_pool"]
