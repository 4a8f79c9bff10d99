"""Reading one TOML table field by field, each error naming the field's dotted path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, overload
from urllib.parse import urlsplit

from market.matching.constraints import VOCABULARY
from nodes.errors import ConfigError


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()


class Table:
    """One TOML table of the config file at ``file``; ``prefix`` is its dotted path."""

    def __init__(
        self, file: str, prefix: str, raw: Mapping[str, Any], *, base: Path, present: bool = True
    ) -> None:
        self.file = file
        self.prefix = prefix
        self.raw = raw
        self.base = base
        self.present = present

    def name(self, field: str) -> str:
        return f"{self.prefix}.{field}" if self.prefix and field else self.prefix or field

    def error(self, field: str, reason: str) -> ConfigError:
        return ConfigError(self.file, self.name(field), reason)

    def expect(self, known: Iterable[str]) -> None:
        """Refuse keys the agent does not read (a typo would otherwise be ignored); called
        before the fields are read, so a misspelt key is reported as such, not as missing."""
        unknown = sorted(set(self.raw) - set(known))
        if unknown:
            raise self.error(unknown[0], f"unknown key; expected one of {sorted(known)}")

    def _get(self, field: str, default: object) -> object:
        if field in self.raw:
            return self.raw[field]
        if default is REQUIRED:
            raise self.error(field, "missing")
        return default

    def table(self, field: str, *, required: bool = True) -> Table:
        value = self.raw.get(field)
        if value is None:
            if required:
                raise self.error(field, "missing table")
            return Table(self.file, self.name(field), {}, base=self.base, present=False)
        if not isinstance(value, dict):
            raise self.error(field, f"must be a table, got {type(value).__name__}")
        return Table(self.file, self.name(field), value, base=self.base)

    def tables(self, field: str) -> list[Table]:
        value = self._get(field, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(field, "must be an array of tables ([[...]])")
        return [
            Table(self.file, f"{self.name(field)}[{i}]", v, base=self.base)
            for i, v in enumerate(value)
        ]

    def text(self, field: str, default: str | _Required = REQUIRED) -> str:
        value = self._get(field, default)
        if not isinstance(value, str) or not value:
            raise self.error(field, "must be a non-empty string")
        return value

    def flag(self, field: str, default: bool) -> bool:
        value = self._get(field, default)
        if not isinstance(value, bool):
            raise self.error(field, "must be true or false")
        return value

    def integer(self, field: str, default: int | _Required = REQUIRED, *, minimum: int = 1) -> int:
        value = self._get(field, default)
        if type(value) is not int:
            raise self.error(field, f"must be an integer, got {value!r}")
        if value < minimum:
            raise self.error(field, f"must be at least {minimum}, got {value}")
        return value

    @overload
    def number(self, field: str, default: float) -> float: ...
    @overload
    def number(self, field: str, default: None) -> float | None: ...
    def number(self, field: str, default: float | None) -> float | None:
        value = self._get(field, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(field, f"must be a positive number, got {value!r}")
        if not 0 < value < float("inf"):
            raise self.error(field, f"must be a positive number, got {value!r}")
        return float(value)

    def int_list(self, field: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self._get(field, list(default))
        if not isinstance(value, list) or any(type(v) is not int or v < 0 for v in value):
            raise self.error(field, "must be a list of non-negative integers")
        return tuple(value)

    @overload
    def path(self, field: str, default: str | _Required = REQUIRED) -> Path: ...
    @overload
    def path(self, field: str, default: None) -> Path | None: ...
    def path(self, field: str, default: str | _Required | None = REQUIRED) -> Path | None:
        value = self._get(field, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.error(field, "must be a path (a non-empty string)")
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    def url(self, field: str, default: None) -> str | None:
        value = self._get(field, default)
        return None if value is None else self._check_url(field, value)

    def url_list(self, field: str) -> tuple[str, ...]:
        value = self._get(field, [])
        if not isinstance(value, list):
            raise self.error(field, "must be a list of URLs")
        return tuple(self._check_url(f"{field}[{i}]", v) for i, v in enumerate(value))

    def _check_url(self, field: str, value: object) -> str:
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise self.error(field, f"must be an http(s) URL, got {value!r}")
        return str(value)

    def choice(self, field: str, allowed: Iterable[str], default: str) -> str:
        """One of ``allowed`` (``billing = "metered"``)."""
        options = tuple(allowed)
        value = self._get(field, default)
        if value not in options:
            raise self.error(field, f"must be one of {list(options)}, got {value!r}")
        return str(value)

    def choices(
        self, field: str, allowed: Iterable[str], default: tuple[str, ...]
    ) -> tuple[str, ...]:
        """A non-empty list of distinct names from ``allowed`` (``billing = ["rental",
        "metered"]``)."""
        options = tuple(allowed)
        value = self._get(field, list(default))
        if not isinstance(value, list) or not value:
            raise self.error(field, f"must be a non-empty list of {list(options)}")
        for i, item in enumerate(value):
            if item not in options:
                raise self.error(f"{field}[{i}]", f"must be one of {list(options)}, got {item!r}")
        if len(set(value)) != len(value):
            raise self.error(field, "a name repeats")
        return tuple(str(v) for v in value)

    def gpu_model(self, field: str) -> str:
        value = self.text(field)
        if not value.isascii() or not value.isprintable() or len(value) > 32:
            raise self.error(field, f"must be at most 32 printable ASCII characters: {value!r}")
        return value

    def attributes(self, field: str) -> dict[str, tuple[str, ...]]:
        """Signed attributes by name (``{ region = "eu-west", capabilities = ["ecc", "mig"] }``):
        each attribute and value one of ``market.matching.VOCABULARY``'s (a free-form one could
        not be signed, so the contract could not enforce it), a list for several values."""
        value = self._get(field, {})
        if not isinstance(value, dict):
            raise self.error(field, "must be a table of attribute = value or [values]")
        out: dict[str, tuple[str, ...]] = {}
        for name, given in value.items():
            where = f"{field}.{name}"
            if name not in VOCABULARY:
                raise self.error(
                    where, f"is not an attribute orders can sign; known: {sorted(VOCABULARY)}"
                )
            allowed = VOCABULARY[name][1]
            values = given if isinstance(given, list) else [given]
            if not values:
                raise self.error(where, f"name at least one of {list(allowed)}")
            for v in values:
                if v not in allowed:
                    raise self.error(where, f"{v!r} is not one of {list(allowed)}")
            if len(set(values)) != len(values):
                raise self.error(where, "a value repeats")
            out[name] = tuple(values)
        return out

    def mapping(self, field: str) -> dict[str, object]:
        value = self._get(field, {})
        if not isinstance(value, dict):
            raise self.error(field, "must be a table of parameters")
        return dict(value)


__all__ = ["REQUIRED", "Table"]
