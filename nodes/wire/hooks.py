"""How msgspec meets the library's values: marker types, hooks, and the two walks.

A message field holding one of the library's objects is annotated with a :class:`Marker`, a
type msgspec does not know: msgspec parses that value untyped and hands it to :data:`dec_hook`
(msgpack) or :data:`json_dec_hook` (JSON), which lets the marker decode and check it; what the
hook returns (the library's object) counts as an instance of the marker. Encoding goes the other
way by the annotations: :func:`lowerer` builds, once per type, the function turning a message
into what msgspec encodes (``None`` where msgspec encodes it as it is), in the msgpack form or
the JSON form (bins as 0x-hex strings); :func:`preparer` readies a parsed tree for
``msgspec.convert``. The markers themselves, one per wire form, are in ``values.py``.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable
from typing import Annotated, Any, Final, Union, get_args, get_origin, get_type_hints

import msgspec

from market.errors import ProtocolError

Lowerer = Callable[[Any], Any]

_PATH = re.compile(r" - at `(?:key` in `)?(\$[^`]*)`$")


def path_of(exc: msgspec.ValidationError) -> str:
    """The path msgspec put on its refusal ``exc`` (``$`` for the value itself)."""
    found = _PATH.search(str(exc))
    return found.group(1) if found else "$"


class Nested(ValueError):
    """A refusal inside a value decoded by a hook, carried out through msgspec (which adds the
    value's path) to :func:`nodes.wire.frames.decode`, which puts the paths together."""

    def __init__(self, error: ProtocolError | msgspec.ValidationError, path: str = "$") -> None:
        self.error = error
        self.path = path
        super().__init__(str(error))


class _Holds(type):
    """A marker's metaclass: what its ``dec_hook`` returns (the library's object) counts as an
    instance of it, as msgspec checks."""

    holds: tuple[type, ...]

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, cls.holds)


class Marker(metaclass=_Holds):
    """A type msgspec does not know, so that it hands the raw value to :func:`dec_hook`."""

    what = "value"
    holds: tuple[type, ...] = ()
    numeric = False
    """Lowered only for an int past msgpack's range (see :func:`numbers_only`)."""

    @classmethod
    def decode(cls, raw: object, json: bool) -> object:
        raise NotImplementedError

    @classmethod
    def lower(cls, value: Any, json: bool) -> object:
        return value


class _Boxed:
    """A raw value on its way to a marker's hook through ``msgspec.convert``, which would let a
    value that already looks like the marker's (a str for an address) pass unchecked."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


def _msgpack_hook(cls: type, raw: object) -> object:
    if isinstance(cls, type) and issubclass(cls, Marker):
        return cls.decode(raw.value if isinstance(raw, _Boxed) else raw, False)
    raise NotImplementedError(f"{cls!r} has no wire form")


def _json_hook(cls: type, raw: object) -> object:
    if isinstance(cls, type) and issubclass(cls, Marker):
        return cls.decode(raw.value if isinstance(raw, _Boxed) else raw, True)
    raise NotImplementedError(f"{cls!r} has no wire form")


@functools.cache
def preparer(tp: Any, json: bool) -> Lowerer:
    """The function readying a parsed value of type ``tp`` for ``msgspec.convert``: each value
    bound for a marker boxed (so that its hook always checks it) and, in JSON, 0x-hex strings
    turned into bytes where ``tp`` holds bytes; the rest is left to the types to refuse."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return preparer(args[0], json)
    if isinstance(tp, type) and issubclass(tp, Marker):
        return _Boxed
    if tp is bytes and json:
        return _hex
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        hints = get_type_hints(tp, include_extras=True)
        fields = {f.encode_name: preparer(hints[f.name], json) for f in msgspec.structs.fields(tp)}

        def struct(value: Any) -> Any:
            if not isinstance(value, dict):
                return value
            return {k: fields[k](v) if k in fields else v for k, v in value.items()}

        return struct
    if origin in (tuple, list) and args:
        item = preparer(args[0], json)
        return lambda v: [item(x) for x in v] if isinstance(v, list | tuple) else v
    if origin is dict and args:
        value = preparer(args[1], json)
        return lambda v: {k: value(x) for k, x in v.items()} if isinstance(v, dict) else v
    if origin in (Union, types.UnionType):
        choices = [a for a in args if a is not type(None)]
        inner = preparer(choices[0], json) if len(choices) == 1 else _same
        return lambda v: None if v is None else inner(v)
    return _same


def _same(value: Any) -> Any:
    return value


def _hex(value: Any) -> Any:
    if type(value) is str and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return value  # refused by the field's type, with its path
    return value


dec_hook: Final = _msgpack_hook
"""msgspec's ``dec_hook`` for the msgpack form."""
json_dec_hook: Final = _json_hook
"""msgspec's ``dec_hook`` for the JSON form (bins as 0x-hex strings)."""


@functools.cache
def lowerer(tp: Any, json: bool) -> Lowerer | None:
    """The function turning a value of type ``tp`` into what msgspec encodes in the msgpack form
    (or the JSON form), or None where msgspec encodes the value as it is."""
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Annotated:
        return lowerer(args[0], json)
    if isinstance(tp, type) and issubclass(tp, Marker):
        marker = tp
        return lambda v: marker.lower(v, json)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _struct_lowerer(tp, json, False)
    if json and tp is bytes:
        return lambda v: "0x" + v.hex()
    if origin in (tuple, list) and args:
        item = lowerer(args[0], json)
        return None if item is None else (lambda v: [item(x) for x in v])
    if origin is dict and args:
        value = lowerer(args[1], json)
        return None if value is None else (lambda v: {k: value(x) for k, x in v.items()})
    if origin in (Union, types.UnionType):
        choices = [a for a in args if a is not type(None)]
        inner = lowerer(choices[0], json) if len(choices) == 1 else None
        return None if inner is None else (lambda v: None if v is None else inner(v))
    return None


@functools.cache
def numbers_only(tp: Any) -> bool:
    """Whether msgspec encodes a value of type ``tp`` as it is in the msgpack form unless an int
    is beyond msgpack's range (the only :data:`Number` lowering), which it refuses with an
    OverflowError."""
    origin, args = get_origin(tp), get_args(tp)
    if isinstance(tp, type) and issubclass(tp, Marker):
        return tp.numeric
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        hints = get_type_hints(tp, include_extras=True)
        return all(numbers_only(hints[f.name]) for f in msgspec.structs.fields(tp))
    if origin is not None:
        return all(numbers_only(a) for a in args if not isinstance(a, msgspec.Meta))
    return True


@functools.cache
def _struct_lowerer(cls: type[msgspec.Struct], json: bool, always: bool) -> Lowerer | None:
    hints = get_type_hints(cls, include_extras=True)
    fields = [
        (f.name, f.encode_name, lowerer(hints[f.name], json)) for f in msgspec.structs.fields(cls)
    ]
    if not always and all(lower is None for _, _, lower in fields):
        return None  # msgspec encodes it as it is (works on the library's dataclass too)

    def lower(value: Any) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, key, low in fields:
            item = getattr(value, name)
            out[key] = item if low is None else low(item)
        return out

    return lower


def struct_lowerer(cls: type[msgspec.Struct], json: bool) -> Lowerer:
    """The function turning an object with the attributes of ``cls`` (a Struct, or the
    library's dataclass it describes) into the map of ``cls``'s keys."""
    lower = _struct_lowerer(cls, json, True)
    assert lower is not None  # always a map
    return lower


__all__ = [
    "Lowerer",
    "Marker",
    "Nested",
    "dec_hook",
    "json_dec_hook",
    "lowerer",
    "numbers_only",
    "path_of",
    "preparer",
    "struct_lowerer",
]
