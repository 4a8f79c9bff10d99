"""Decoding a daemon's TOML config into its msgspec structs, every problem a ConfigError naming
the field's path.

    config = load_toml(Path("provider.toml"), ProviderConfig)
    # ConfigError: provider.toml: inventory.gpus[1].count: must be at least 1, got 0

The structs declare the file (keys, types, bounds as ``msgspec.Meta``, unknown keys refused);
msgspec validates while it decodes, and its ``ValidationError`` (``Expected `int` >= 1 - at
`$.inventory.gpus[1].count```) is translated here into the field's path and a sentence that says
what the field must be. Paths (relative ones are relative to the file's folder) and the values of
:mod:`nodes.daemon.values` (any type with a ``parse`` classmethod) by their own ``parse``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from msgspec import inspect

from nodes.daemon.values import Invalid
from nodes.errors import ConfigError

T = TypeVar("T")
Segment = str | int

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_BOUND = re.compile(r"^Expected `[^`]*` (?P<op>>=|<=|>|<) (?P<n>\S+)$")
_LENGTH = re.compile(r"^Expected `(?P<kind>array|str|object)` of length (?P<op>>=|<=) (?P<n>\d+)$")
_KIND = re.compile(r"^Expected `(?P<kind>[^`| ]+)[^`]*`, got `(?P<got>[^`]+)`$")
_FIELD = re.compile(r"^Object (?P<what>contains unknown|missing required) field `(?P<name>[^`]+)`$")
_KINDS = {
    "int": "must be an integer",
    "float": "must be a number",
    "bool": "must be true or false",
    "str": "must be a string",
    "object": "must be a table",
    "array": "must be a list",
}


def load_toml(path: Path, kind: type[T]) -> T:
    """Read the TOML file at ``path`` and decode it as ``kind``."""
    return decode(read_toml(path), kind, file=str(path), base=path.parent)


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file at ``path`` as a dict; ConfigError when unreadable or not TOML."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "(syntax)", str(exc)) from exc


def decode(raw: object, kind: type[T], *, file: str, base: Path) -> T:
    """``raw`` (a TOML document) as ``kind``; relative paths are taken from ``base``."""

    def hook(target: type, value: object) -> object:
        if target is Path:
            if not isinstance(value, str) or not value:
                raise Invalid("must be a path (a non-empty string)")
            path = Path(value).expanduser()
            return path if path.is_absolute() else base / path
        parse = getattr(target, "parse", None)
        if parse is None:
            raise NotImplementedError(target)
        return parse(value)

    try:
        return msgspec.convert(raw, kind, dec_hook=hook)
    except msgspec.ValidationError as exc:
        raise translate(exc, raw, kind, file) from exc


def translate(exc: msgspec.ValidationError, raw: object, kind: type, file: str) -> ConfigError:
    """msgspec's error as a ConfigError naming the field (``jobs[1].argv``) and what it must be."""
    match = _AT.match(str(exc))
    msg, where = (match["msg"], match["path"] or "") if match else (str(exc), "")
    path: list[Segment] = [
        name if name else (int(index) if index.isdigit() else index)
        for name, index in _SEGMENT.findall(where)
    ]
    cause = exc.__cause__
    if isinstance(cause, Invalid):
        return ConfigError(file, join(path, cause.field), cause.reason)
    value = _value_at(raw, path)
    if field := _FIELD.match(msg):
        name = field["name"]
        if field["what"] == "missing required":
            return ConfigError(file, join(path, name), "missing")
        known = _keys(_type_at(kind, raw, path))
        return ConfigError(file, join(path, name), f"unknown key; expected one of {known}")
    return ConfigError(file, join(path, ""), _reason(msg, value, _type_at(kind, raw, path)))


def join(path: Sequence[Segment], field: str) -> str:
    """``inventory.gpus[1]`` and ``count`` (or ``[0]``, ``.name``) as one dotted path."""
    out = ""
    for segment in path:
        out += f"[{segment}]" if isinstance(segment, int) or segment == "..." else f".{segment}"
    if field:
        out += field if field[0] in ".[" else f".{field}"
    return out.lstrip(".")


def _reason(msg: str, value: object, target: inspect.Type | None) -> str:
    if bound := _BOUND.match(msg):
        n, op = bound["n"], bound["op"]
        if op == ">" and float(n) == 0:
            return f"must be a positive number, got {value!r}"
        words = {">=": "at least", "<=": "at most", ">": "more than", "<": "less than"}[op]
        return f"must be {words} {n}, got {value!r}"
    if length := _LENGTH.match(msg):
        n, at_least = int(length["n"]), length["op"] == ">="
        if length["kind"] == "str":
            return "must be a non-empty string" if at_least and n == 1 else (
                f"must be {'at least' if at_least else 'at most'} {n} characters")  # fmt: skip
        if at_least and n == 1:
            return "must be a non-empty list"
        return f"must be a list of {'at least' if at_least else 'at most'} {n} items"
    if kind := _KIND.match(msg):
        return f"{_KINDS.get(kind['kind'], 'must be ' + kind['kind'])}, got {value!r}"
    if msg.startswith(("Invalid enum value", "Invalid value")):
        return f"must be one of {_options(target)}, got {value!r}"
    return msg


def _value_at(raw: object, path: Sequence[Segment]) -> object:
    for segment in path:
        if isinstance(raw, dict) and isinstance(segment, str):
            raw = raw.get(segment)
        elif isinstance(raw, list) and isinstance(segment, int) and segment < len(raw):
            raw = raw[segment]
        else:
            return None
    return raw


def _type_at(kind: type, raw: object, path: Sequence[Segment]) -> inspect.Type | None:
    """The declared type at ``path`` (a tagged union resolved by the value's tag)."""
    current: inspect.Type | None = inspect.type_info(kind)
    for i, segment in enumerate(path):
        current = _unwrap(current, _value_at(raw, path[:i]))
        if isinstance(current, inspect.UnionType) and _tags(current, segment):
            return current  # the tag field itself
        if isinstance(current, inspect.StructType) and isinstance(segment, str):
            field = next((f for f in current.fields if f.encode_name == segment), None)
            current = None if field is None else field.type
        elif isinstance(current, inspect.ListType | inspect.VarTupleType | inspect.SetType):
            current = current.item_type
        elif isinstance(current, inspect.DictType):
            current = current.value_type
        else:
            return None
    return _unwrap(current, _value_at(raw, path))


def _unwrap(t: inspect.Type | None, value: object) -> inspect.Type | None:
    while isinstance(t, inspect.Metadata):
        t = t.type
    if isinstance(t, inspect.UnionType):
        types = [u for u in t.types if not isinstance(u, inspect.NoneType)]
        if len(types) == 1:
            return _unwrap(types[0], value)
        for u in types:  # a tagged union: the member the value's tag names
            if not isinstance(u, inspect.StructType) or u.tag_field is None:
                continue
            if isinstance(value, dict) and value.get(u.tag_field) == u.tag:
                return u
    return t


def _tags(union: inspect.UnionType, segment: Segment) -> list[object]:
    members = [u for u in union.types if isinstance(u, inspect.StructType)]
    if members and all(u.tag_field == segment for u in members):
        return [u.tag for u in members]
    return []


def _keys(t: inspect.Type | None) -> list[str]:
    return sorted(f.encode_name for f in t.fields) if isinstance(t, inspect.StructType) else []


def _options(t: inspect.Type | None) -> list[object]:
    if isinstance(t, inspect.LiteralType):
        return list(t.values)
    if isinstance(t, inspect.EnumType):
        return [m.value if not isinstance(m.value, int) else m.name.lower() for m in t.cls]
    if isinstance(t, inspect.UnionType):
        return [u.tag for u in t.types if isinstance(u, inspect.StructType)]
    return []


__all__ = ["decode", "join", "load_toml", "read_toml", "translate"]
