"""A recorded market: order-book samples and opened leases, as JSON lines.

    recording = Recording.load(Path("h100.jsonl"))     # or read_recording(text)
    recording.dump(Path("h100.jsonl"))

One JSON object a line, in time order; the first is the header. Prices are base units of the
token per GPU-second, as orders sign them and the chain records them (the header names the
token, so a reader can show them in tokens per GPU-hour); times are chain timestamps::

    {"kind": "header", "version": 1, "token": {"symbol": "tUSD", "decimals": 6},
     "source": "http://127.0.0.1:7000"}
    {"kind": "book", "time": 1796599722, "model": "H100-80GB",
     "asks": [{"id": "0x…", "price": 694, "gpus": 8, "memory_gib": 80}],
     "bids": [{"id": "0x…", "price": 800, "gpus": 2, "duration": 3600, "min_memory_gib": 0}]}
    {"kind": "lease", "time": 1796599730, "model": "H100-80GB", "memory_gib": 80, "gpus": 2,
     "price": 694, "duration": 3600, "bid": "0x…"}

``book`` is a sample of one model's resting orders (``gpus`` is what is left of each);
``lease`` a lease the chain opened, with the hardware of the offer it filled and the bid it
filled (``bid``, an order hash as the book's ``id``, so a bid seen resting and then filled is
one demand, not two). ``gpumarket price record`` writes such a file from a live relay and chain;
``gpumarket price backtest`` replays one (:mod:`market.pricing.replay`). Unknown kinds and fields
are refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from market.errors import InvalidArgument
from market.units import Token

FORMAT_VERSION = 1
Units = Annotated[int, Meta(ge=0)]
Count = Annotated[int, Meta(ge=1)]


class _Line(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind"):
    pass


class TokenInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    symbol: str
    decimals: Annotated[int, Meta(ge=0, le=77)]

    @property
    def token(self) -> Token:
        return Token(self.symbol, self.decimals)


class Header(_Line, frozen=True, tag="header"):
    version: int
    token: TokenInfo
    source: str = ""


class Ask(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    price: Count
    gpus: Count
    memory_gib: Units


class BidEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    price: Count
    gpus: Count
    duration: Count
    min_memory_gib: Units = 0


class BookSample(_Line, frozen=True, tag="book"):
    time: Units
    model: str
    asks: tuple[Ask, ...] = ()
    bids: tuple[BidEntry, ...] = ()


class LeaseSample(_Line, frozen=True, tag="lease"):
    time: Units
    model: str
    memory_gib: Units
    gpus: Count
    price: Count
    duration: Count
    bid: str = ""


Event = BookSample | LeaseSample
_decoder = msgspec.json.Decoder(Header | BookSample | LeaseSample)


class Recording(msgspec.Struct, frozen=True):
    """A header and its events, in time order."""

    header: Header
    events: tuple[Event, ...]

    @property
    def token(self) -> Token:
        return self.header.token.token

    def lines(self) -> Iterable[str]:
        for item in (self.header, *self.events):
            yield msgspec.json.encode(item).decode()

    def dump(self, path: Path) -> None:
        path.write_text("".join(line + "\n" for line in self.lines()), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Recording:
        return read_recording(path.read_text(encoding="utf-8"), str(path))


def read_recording(text: str, name: str = "recording") -> Recording:
    """The recording in ``text``; InvalidArgument naming the line of any problem."""
    items: list[Header | Event] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(_decoder.decode(line))
        except msgspec.DecodeError as exc:
            raise InvalidArgument("recording", name, f"{name}:{number}: {exc}") from exc
    if not items or not isinstance(items[0], Header):
        raise InvalidArgument("recording", name, f"{name}: the first line must be the header")
    header, events = items[0], items[1:]
    if header.version != FORMAT_VERSION:
        raise InvalidArgument(
            "recording", name, f"{name}: version {header.version}; this reads {FORMAT_VERSION}"
        )
    if any(isinstance(e, Header) for e in events):
        raise InvalidArgument("recording", name, f"{name}: a second header")
    timed = [e for e in events if not isinstance(e, Header)]
    if any(b.time < a.time for a, b in pairwise(timed)):
        raise InvalidArgument("recording", name, f"{name}: events must be in time order")
    return Recording(header, tuple(timed))


__all__ = [
    "FORMAT_VERSION",
    "Ask",
    "BidEntry",
    "BookSample",
    "Event",
    "Header",
    "LeaseSample",
    "Recording",
    "TokenInfo",
    "read_recording",
]
