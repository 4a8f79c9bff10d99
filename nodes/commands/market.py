"""The market in the CLI: what a relay holds, a lab's bids and their fate, a lease, a cancel.

    gpumarket models                        GPU models with resting orders (GET /v1/models)
    gpumarket book MODEL [--depth N]        both sides of one model's book (GET /v1/book/MODEL)
    gpumarket offers [--model M --gpus N --max-price P --billing rental|metered --min-memory G]
                                            resting offers, cheapest first, with reputations
    gpumarket bids [--lab ADDR | --config lab.toml]
                                            a lab's bids: resting, matched (lease), unmatched
                                            (why, and what would match), fill failed (the error)
    gpumarket explain [--lab ADDR | --config lab.toml] [BID_HASH]
                                            why a lab's bids do not match, and the change that would
    gpumarket explain --offer ORDER_HASH --bid ORDER_HASH
                                            why this resting pair does not match
    gpumarket lease LEASE_ID [--config lab.toml]
                                            a lease's terms, state and events (GET /v1/leases/ID),
                                            and the lab's last receipt and best voucher
    gpumarket cancel (ORDER_HASH... | --all) --config FILE
                                            cancel on-chain with the config's keystore

An error (no relay, a refusal, no answer) is one ``error:`` line on stderr and exit 1.
Every command takes ``--json`` (the answer's body as JSON, for programs: the wire format, so
amounts in base units and prices per GPU-second, with the token's symbol and decimals) and
``--relay URL`` (default: ``$GPUMARKET_RELAY``, else the first of ``--config``'s ``[relays]
urls``). Tables show prices per GPU-hour and amounts in tokens (``market.units``); ``--max-price``
is tokens per GPU-hour.
"""

from __future__ import annotations

import argparse
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from market.chain.client import MarketClient
from market.errors import MarketError
from market.matching import Explanation
from market.protocol.eip712 import Domain
from market.protocol.types import Billing, Offer, checksum_address
from market.units import SECONDS_PER_HOUR, Token
from nodes.commands.progress import waiting
from nodes.daemon.config import load_deployment
from nodes.daemon.keystore import decrypt_key, keystore_address
from nodes.errors import NodeError
from nodes.lab.config import LabConfig, load_config
from nodes.lab.store import LAB_MIGRATIONS, LabStore
from nodes.state.db import StateDB
from nodes.wire import BookSnapshot, ErrorResponse, ExplainResponse, decode, decode_as
from nodes.wire.frames import MAX_READ_SIZE, decode_read
from nodes.wire.hooks import lowerer
from nodes.wire.reads import (
    BidList,
    BidView,
    LeaseEvent,
    LeaseView,
    ModelList,
    OfferList,
    TokenView,
)

RELAY_ENV = "GPUMARKET_RELAY"
TIMEOUT_S = 15.0
PRICE_FIELDS = ("price_per_gpu_second", "max_price_per_gpu_second")
"""Explanation fields holding a price per GPU-second, shown per GPU-hour."""
R = TypeVar("R", ModelList, OfferList, BidList, LeaseView)


class CommandError(NodeError):
    """A market command cannot answer: the message says what to do."""


# --- reading a relay -----------------------------------------------------------------------------


def relay_url(args: argparse.Namespace) -> str:
    """``--relay``, else ``$GPUMARKET_RELAY``, else the first relay of ``--config``."""
    url: str | None = getattr(args, "relay", None) or os.environ.get(RELAY_ENV)
    config = getattr(args, "config", None)
    if not url and config is not None:
        relays = _lab_config(config).relays
        url = relays[0] if relays else None
    if not url:
        raise CommandError(f"which relay? give --relay URL or set {RELAY_ENV}")
    return url.rstrip("/")


def fetch(url: str, path: str) -> bytes:
    """The body of ``GET url+path`` (msgpack); CommandError for a refusal or no answer."""
    request = urllib.request.Request(url + path, headers={"Accept": "application/msgpack"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return bytes(response.read(MAX_READ_SIZE + 1))
    except urllib.error.HTTPError as exc:
        body = exc.read(MAX_READ_SIZE)
        try:
            refusal = decode(body)
        except MarketError:
            raise CommandError(f"{url}{path}: HTTP {exc.code}") from exc
        message = refusal.message if isinstance(refusal, ErrorResponse) else str(exc)
        raise CommandError(f"{url}{path}: {message}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise CommandError(f"no answer from the relay at {url}: {exc}") from exc


def read(url: str, path: str, cls: type[R]) -> R:
    return decode_read(fetch(url, path), cls)


def as_json(message: msgspec.Struct) -> str:
    """A message's body as indented JSON (bins 0x-hex, addresses EIP-55)."""
    lower = lowerer(type(message), True)
    body = message if lower is None else lower(message)
    return msgspec.json.format(msgspec.json.encode(body)).decode()


# --- formatting ----------------------------------------------------------------------------------


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """Rows in aligned columns under ``header``."""
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)  # fmt: skip


def short(value: bytes | str) -> str:
    text = "0x" + value.hex() if isinstance(value, bytes) else value
    return text[:10] + "…" + text[-4:] if len(text) > 16 else text


def token_of(view: TokenView) -> Token:
    return Token(view.symbol, view.decimals)


def explanation_lines(explanation: Explanation, token: Token) -> list[str]:
    """The reasons, and the single-field changes that would make the order match (prices per
    GPU-hour in tokens)."""
    lines = [f"  reason: {r.code}: {r.message}" for r in explanation.reasons]
    for c in explanation.changes:
        if c.field in PRICE_FIELDS and isinstance(c.current, int) and isinstance(c.suggested, int):
            name = c.field.replace("_per_gpu_second", "")
            lines.append(f"  would match with {name} {token.format_price(c.current)} -> "
                         f"{token.format_price(c.suggested)}")  # fmt: skip
        else:
            lines.append(f"  would match with {c.field} {c.current} -> {c.suggested}")
    return lines


def bid_lines(bid: BidView, token: Token) -> list[str]:
    price = token.format_price(bid.max_price_per_gpu_second)
    head = (f"bid {short(bid.order_hash)}  {bid.model}  {bid.remaining}/{bid.gpus} GPUs left  "
            f"max {price}  {bid.duration}s  {bid.fate}")  # fmt: skip
    lines = [head]
    lines += [f"  lease 0x{lease.hex()}" for lease in bid.lease_ids]
    if bid.error:
        lines.append(f"  fill failed: {bid.error}")
    if bid.explanation is not None:
        lines += explanation_lines(bid.explanation, token)
    return lines


# --- commands ------------------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    answer = read(relay_url(args), "/v1/models", ModelList)
    if args.json:
        print(as_json(answer))
        return 0
    if not answer.models:
        print("no resting orders on this relay")
        return 0
    token = token_of(answer.token)
    rows = [(m.model, m.offers, m.gpus_offered,
             token.format_price(m.best_ask) if m.offers else "-", m.bids, m.gpus_wanted,
             token.format_price(m.best_bid) if m.bids else "-") for m in answer.models]  # fmt: skip
    print(table(rows, ("MODEL", "OFFERS", "GPUS", "BEST ASK", "BIDS", "GPUS", "BEST BID")))
    return 0


def cmd_book(args: argparse.Namespace) -> int:
    url = relay_url(args)
    model = urllib.parse.quote(args.model, safe="")
    snapshot = decode_as(fetch(url, f"/v1/book/{model}?depth={args.depth}"), BookSnapshot)
    if args.json:
        print(as_json(snapshot))
        return 0
    token = token_of(read(url, "/v1/models", ModelList).token)
    for title, entries in (("offers", snapshot.offers), ("bids", snapshot.bids)):
        rows = []
        for e in entries:
            m = e.order.signed.message
            if isinstance(m, Offer):
                price, signer = m.price_per_gpu_second, m.provider
            else:
                price, signer = m.max_price_per_gpu_second, m.lab
            rows.append((token.format_price(price), e.remaining, m.gpu_count, short(signer)))
        print(f"{snapshot.model} {title} ({len(rows)})")
        print(table(rows, ("PRICE", "LEFT", "GPUS", "SIGNER")) if rows else "  none")
    return 0


def cmd_offers(args: argparse.Namespace) -> int:
    url = relay_url(args)
    query: dict[str, str] = {"gpus": str(args.gpus), "limit": str(args.limit)}
    if args.model:
        query["model"] = args.model
    if args.max_price is not None:  # tokens per GPU-hour, as the offers sign it per second
        token = token_of(read(url, "/v1/models", ModelList).token)
        query["maxPrice"] = str(per_gpu_second_at_most(token.parse(args.max_price)))
    if args.billing:
        query["billing"] = args.billing
    if args.min_memory:
        query["minMemory"] = str(args.min_memory)
    answer = read(url, "/v1/offers?" + urllib.parse.urlencode(query), OfferList)
    if args.json:
        print(as_json(answer))
        return 0
    if not answer.offers:
        print("no offer matches")
        return 0
    token = token_of(answer.token)
    rows = []
    for o in answer.offers:
        rep = o.reputation
        standing = (f"{rep.leases_completed}/{rep.leases_opened} completed, "
                    f"{rep.slashes} slashed") if rep is not None else "unknown"  # fmt: skip
        duration = f"{o.min_duration}-{o.max_duration}s"
        price = token.format_price(o.price_per_gpu_second)
        rows.append((price, o.model, f"{o.remaining}/{o.gpus}", o.memory_gib, duration,
                     short(o.provider), standing))  # fmt: skip
    print(table(rows, ("PRICE", "MODEL", "LEFT", "GIB", "DURATION", "PROVIDER",
                       "REPUTATION")))  # fmt: skip
    return 0


def _lab_address(args: argparse.Namespace) -> str:
    if args.lab:
        return str(args.lab)
    if args.config is None:
        raise CommandError("whose bids? give --lab ADDRESS or --config lab.toml")
    config = _lab_config(args.config)
    return config.key.wallet or keystore_address(config.key.keystore)


def _bids(args: argparse.Namespace) -> BidList:
    lab = _lab_address(args)
    return read(relay_url(args), f"/v1/bids?lab={lab}", BidList)


def cmd_bids(args: argparse.Namespace) -> int:
    answer = _bids(args)
    if args.json:
        print(as_json(answer))
        return 0
    if not answer.bids:
        print(f"no bids of {answer.lab} on this relay")
    for bid in answer.bids:
        print("\n".join(bid_lines(bid, token_of(answer.token))))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    if args.offer is not None or args.bid_hash is not None:
        return _explain_pair(args)
    answer = _bids(args)
    chosen = [b for b in answer.bids if args.bid is None or "0x" + b.order_hash.hex() == args.bid]
    if args.bid is not None and not chosen:
        raise CommandError(f"no bid {args.bid} of {answer.lab} on this relay")
    if args.json:
        print(as_json(msgspec.structs.replace(answer, bids=tuple(chosen))))
        return 0
    for bid in chosen:
        print("\n".join(bid_lines(bid, token_of(answer.token))))
        if bid.fate == "resting":
            print("  nothing stands in its way: a fill is on its way")
        elif bid.fate == "matched":
            print("  matched: see `gpumarket lease ID`")
    return 0


def _explain_pair(args: argparse.Namespace) -> int:
    if args.offer is None or args.bid_hash is None:
        raise CommandError("explain a pair with both --offer ORDER_HASH and --bid ORDER_HASH")
    url = relay_url(args)
    query = urllib.parse.urlencode({"offer": args.offer, "bid": args.bid_hash})
    answer = decode_as(fetch(url, f"/v1/explain?{query}"), ExplainResponse)
    if args.json:
        print(as_json(answer))
        return 0
    token = token_of(read(url, "/v1/models", ModelList).token)
    explanation = answer.explanation
    if explanation.matchable:
        print(f"bid {args.bid_hash} can match offer {args.offer} now: a fill is on its way")
    else:
        print(f"bid {args.bid_hash} does not match offer {args.offer}:")
        print("\n".join(explanation_lines(explanation, token)))
    return 0


def cmd_lease(args: argparse.Namespace) -> int:
    lease_id = args.lease_id if args.lease_id.startswith("0x") else "0x" + args.lease_id
    url = relay_url(args)
    waiting(f"lease {lease_id}", on=f"the relay at {url} (it reads the lease's events on chain)")
    view = read(url, f"/v1/leases/{lease_id}", LeaseView)
    if args.json:
        print(as_json(view))
        return 0
    t, token = view.terms, token_of(view.token)
    print(f"lease {lease_id}  {view.status}" + ("  slashed" if view.slashed else "")
          + ("  disputed" if view.disputed else ""))  # fmt: skip
    print(f"  provider {t.provider}  lab {t.lab}")
    print(f"  {t.gpus} GPUs at {token.format_price(t.price_per_gpu_second)}, {t.duration}s from "
          f"{t.start}, billing {Billing(t.billing).name.lower()}")  # fmt: skip
    print(f"  paid {token.format(view.paid)}; ends at {view.end or 'its full duration'}")
    for e in view.events:
        print(event_line(e, token))
    if args.config is not None:
        print("\n".join(local_lines(args.config, view, token)))
    return 0


def event_line(e: LeaseEvent, token: Token) -> str:
    """One chain event of a lease, its token amounts in tokens and its times as UTC dates."""

    def shown(k: str, v: int) -> str:
        if k in e.amounts:
            return token.format(v)
        if k in e.times:
            return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(v))
        return str(v)

    values = " ".join(f"{k}={shown(k, v)}" for k, v in e.values.items())
    return f"  block {e.block}: {e.name} {values}".rstrip()


def local_lines(path: Path, view: LeaseView, token: Token) -> list[str]:
    """What the lab's own state file holds of the lease: its last accepted receipt and its best
    voucher (read only; the file is not created when absent)."""
    config = _lab_config(path)
    if not config.state.exists():
        return [f"  lab state: {config.state} does not exist yet"]
    domain = MarketClient.connect(load_deployment(config.chain), timeout_s=TIMEOUT_S).domain
    return holdings_lines(config.state, domain, view.lease_id, token)


def holdings_lines(state: Path, domain: Domain, lease_id: bytes, token: Token) -> list[str]:
    """The last receipt a lab's state file accepted for ``lease_id`` and its best voucher."""
    db = StateDB.open(state, migrations=LAB_MIGRATIONS)
    try:
        store = LabStore(db, domain)
        head, best = store.head(lease_id), store.best_voucher(lease_id)
    finally:
        db.close()
    lines = [f"  lab state {state}:"]
    if head is None:
        lines.append("    no receipt accepted")
    else:
        r = head.message
        lines.append(f"    last receipt accepted: seq {r.seq}, period {r.period_start}-"
                     f"{r.period_end}, {r.gpu_seconds_cumulative} GPU-seconds in all")  # fmt: skip
    if best is None:
        lines.append("    no voucher signed")
    else:
        voucher, sent = best
        acknowledged = "acknowledged by the provider" if sent else "not yet acknowledged"
        amount = token.format(voucher.message.cumulative_amount)
        lines.append(f"    best voucher: {amount} in all, {acknowledged}")
    return lines


def cmd_cancel(args: argparse.Namespace) -> int:
    if not args.all and not args.order_hash:
        raise CommandError("cancel what? give ORDER_HASH... or --all")
    if args.config is None:
        raise CommandError("cancel signs with a key: give --config lab.toml (or a provider's)")
    config = _lab_config(args.config)
    key = decrypt_key(config.key)
    client = MarketClient.connect(
        load_deployment(config.chain), key, wallet=config.key.wallet, timeout_s=TIMEOUT_S
    )
    done: list[str] = []
    if args.all:
        floor = time.time_ns()
        waiting("raising the nonce floor (every order signed so far)")
        client.cancel_orders_up_to(floor)
        done.append(f"nonce floor {floor}")
    for text in args.order_hash:
        waiting(f"cancelling {text}")
        client.cancel_order(_hash32(text))
        done.append(text)
    if args.json:
        print(msgspec.json.encode({"account": client.address, "cancelled": done}).decode())
    else:
        for item in done:
            print(f"cancelled {item}")
    return 0


def per_gpu_second_at_most(per_hour: int) -> int:
    """The highest per-GPU-second price whose GPU-hour costs at most ``per_hour`` base units."""
    return per_hour // SECONDS_PER_HOUR


def _hash32(text: str) -> bytes:
    raw = text[2:] if text.startswith("0x") else text
    try:
        value = bytes.fromhex(raw)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise CommandError(f"an order hash is 32 bytes in hex, got {text!r}")
    return value


def _lab_config(path: Path) -> LabConfig:
    return load_config(path)


def _address(text: str) -> str:
    try:
        return str(checksum_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a 0x-prefixed 20-byte address: {text!r}") from None


# --- parsers -------------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, config: bool = False) -> None:
    parser.add_argument("--relay", default=None, metavar="URL",
                        help=f"the relay to ask (default: ${RELAY_ENV})")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    if config:
        parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                            help="a lab config: its relays, its address, its keystore")  # fmt: skip


def add_parsers(subparsers: Any) -> None:
    """Register ``models``, ``book``, ``offers``, ``bids``, ``explain``, ``lease``, ``cancel``."""
    p = subparsers.add_parser("models", help="GPU models with resting orders on a relay")
    _common(p, config=True)
    p.set_defaults(func=cmd_models)

    p = subparsers.add_parser("book", help="one GPU model's order book")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--depth", type=int, default=20, help="orders per side (default 20)")
    _common(p, config=True)
    p.set_defaults(func=cmd_book)

    p = subparsers.add_parser("offers", help="resting offers, cheapest first, with reputations")
    p.add_argument("--model", default=None)
    p.add_argument("--gpus", type=int, default=1, help="at least this many GPUs left")
    p.add_argument("--max-price", default=None, metavar="TOKENS",
                   help="at most this price per GPU-hour, in tokens (e.g. 2.50)")  # fmt: skip
    p.add_argument("--billing", choices=("rental", "metered"), default=None)
    p.add_argument("--min-memory", type=int, default=0, help="GiB per GPU at least")
    p.add_argument("--limit", type=int, default=50)
    _common(p, config=True)
    p.set_defaults(func=cmd_offers)

    for name, func, what in (
        ("bids", cmd_bids, "a lab's bids and their fate: matched, unmatched (why), fill failed"),
        ("explain", cmd_explain, "why a lab's bids do not match, and the change that would"),
    ):
        p = subparsers.add_parser(name, help=what)
        if name == "explain":
            p.add_argument("bid", nargs="?", default=None, metavar="BID_HASH")
            p.add_argument("--offer", default=None, metavar="ORDER_HASH",
                           help="explain this resting offer against --bid")  # fmt: skip
            p.add_argument("--bid", dest="bid_hash", default=None, metavar="ORDER_HASH",
                           help="with --offer: the resting bid of the pair")  # fmt: skip
        p.add_argument("--lab", type=_address, default=None, metavar="ADDRESS")
        _common(p, config=True)
        p.set_defaults(func=func)

    p = subparsers.add_parser("lease", help="a lease's terms, state and events from the chain")
    p.add_argument("lease_id", metavar="LEASE_ID")
    _common(p, config=True)
    p.set_defaults(func=cmd_lease)

    p = subparsers.add_parser("cancel", help="cancel orders on-chain (by hash, or --all)")
    p.add_argument("order_hash", nargs="*", metavar="ORDER_HASH")
    p.add_argument("--all", action="store_true", help="every order signed so far")
    p.add_argument("--json", action="store_true", help="print what was cancelled as JSON")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="the config whose keystore signs")  # fmt: skip
    p.set_defaults(func=cmd_cancel)


__all__ = ["CommandError", "add_parsers", "as_json", "bid_lines", "relay_url", "table"]
