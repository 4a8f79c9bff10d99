"""``gpumarket price``: what to ask per GPU-hour, and what a pricing policy would have earned.

gpumarket price suggest --relay URL (--config provider.toml | --model M --gpus N --memory-gib G)
                        [--blocks N] [--percentile P] [--deployment FILE] [--json]
gpumarket price record --relay URL --model M [--model M2] [--samples N] [--interval S]
                       --out FILE [--deployment FILE]
gpumarket price backtest FILE (--config provider.toml | --policy NAME [--params TOML])
                         [--model M --gpus N --memory-gib G] [--json]

``suggest`` quotes each GPU group of the provider's config (or the hardware given) from the
relay's book and the leases of the last ``--blocks`` blocks (:mod:`market.pricing.quote`), and
says what the quote rests on. ``record`` samples books and reads the leases opened meanwhile
into a recording (:mod:`market.pricing.record`); ``backtest`` replays one through the config's
``[pricing]`` (or ``--policy`` with ``--params``, a TOML inline table as in the config) for each
GPU group (:mod:`market.pricing.replay`). Prices are shown in tokens per GPU-hour; ``--json``
gives base units (per GPU-second and per GPU-hour) with the token's symbol and decimals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tomllib
from pathlib import Path
from typing import Any

from market.chain.client import MarketClient
from market.chain.deploy import Deployment, default_deployment_path
from market.errors import InvalidArgument
from market.pricing import BookSample, Hardware, Quote, Recording, ReplayResult, replay, suggest
from market.units import Token, per_gpu_hour
from nodes.pricing.live import MarketFigures, market_figures, record
from nodes.provider.config import PricingConfig, ProviderConfig, load_config
from nodes.provider.pricing import load_policy
from nodes.wire.relay_client import RelayClient


def add_parser(sub: Any) -> None:
    """Add ``price`` and its subcommands to the ``gpumarket`` parser's subparsers."""
    price = sub.add_parser("price", help="pricing help: suggest a price, record, backtest")
    commands = price.add_subparsers(dest="price_command", required=True)

    sg = commands.add_parser("suggest", help="quote a price per GPU-hour from the live market")
    sg.add_argument("--relay", required=True, metavar="URL", help="the relay whose book to read")
    _hardware_options(sg, config_help="the provider's TOML file: quote each GPU group")
    sg.add_argument("--blocks", type=int, default=50_000, help="lease history window in blocks")
    sg.add_argument("--percentile", type=float, default=25.0, help="of the asks to undercut")
    sg.add_argument("--deployment", type=Path, default=None, metavar="FILE")
    sg.add_argument("--json", action="store_true", help="base units, for scripts")
    sg.set_defaults(func=cmd_suggest)

    rc = commands.add_parser("record", help="record a relay's book and the chain's leases")
    rc.add_argument("--relay", required=True, metavar="URL")
    rc.add_argument("--model", action="append", required=True, help="a GPU model (repeatable)")
    rc.add_argument("--samples", type=int, default=60, help="book samples per model")
    rc.add_argument("--interval", type=float, default=10.0, metavar="SECONDS")
    rc.add_argument("--out", type=Path, required=True, metavar="FILE", help="the JSONL to write")
    rc.add_argument("--deployment", type=Path, default=None, metavar="FILE")
    rc.set_defaults(func=cmd_record)

    bt = commands.add_parser("backtest", help="replay a recording through a pricing policy")
    bt.add_argument("recording", type=Path, help="a file gpumarket price record wrote")
    _hardware_options(bt, config_help="the provider's TOML file: its [pricing] and GPU groups")
    bt.add_argument("--policy", help='"fixed", "utilisation" or "module:Class" (not --config)')
    bt.add_argument(
        "--params", default="{}", help='a TOML inline table: { floor_per_gpu_hour = "1" ... }'
    )
    bt.add_argument("--json", action="store_true", help="base units, for scripts")
    bt.set_defaults(func=cmd_backtest)


def _hardware_options(parser: argparse.ArgumentParser, *, config_help: str) -> None:
    parser.add_argument("--config", type=Path, help=config_help)
    parser.add_argument("--model", help="GPU model, such as H100-80GB (without --config)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs of the model (default 1)")
    parser.add_argument("--memory-gib", type=int, default=0, help="memory per GPU")


def _config(args: argparse.Namespace) -> ProviderConfig | None:
    return None if args.config is None else load_config(args.config)


def _hardware(args: argparse.Namespace, config: ProviderConfig | None) -> list[Hardware]:
    if config is not None and args.model is None:
        groups = config.inventory.gpus
        if not groups:
            raise InvalidArgument("config", args.config, "declare the GPU groups to price "
                                  "([[inventory.gpus]]) or give --model")  # fmt: skip
        return [Hardware(g.model, g.count, g.memory_gib) for g in groups]
    if args.model is None:
        raise InvalidArgument("model", None, "give --config provider.toml or --model MODEL")
    return [Hardware(args.model, args.gpus, args.memory_gib)]


def _client(path: Path | None) -> MarketClient:
    return MarketClient.connect(Deployment.load(path or default_deployment_path()))


# --- suggest -------------------------------------------------------------------------------------


def cmd_suggest(args: argparse.Namespace) -> int:
    hardware = _hardware(args, _config(args))
    client = _client(args.deployment)
    token = client.token_metadata()

    async def read() -> list[MarketFigures]:
        async with RelayClient(args.relay) as relay:
            return [await market_figures(relay, client, hw, blocks=args.blocks) for hw in hardware]

    figures = asyncio.run(read())
    quotes = [suggest(f.asks, f.bids, f.cleared, args.percentile) for f in figures]
    if args.json:
        doc = {
            "token": {"symbol": token.symbol, "decimals": token.decimals},
            "quotes": [_quote_document(f, q) for f, q in zip(figures, quotes, strict=True)],
        }
        print(json.dumps(doc, indent=2))
    else:
        for f, q in zip(figures, quotes, strict=True):
            print(_quote_text(f, q, token))
    return 0


def _quote_document(f: MarketFigures, q: Quote) -> dict[str, Any]:
    hourly = None if q.price is None else per_gpu_hour(q.price)
    return {
        "model": f.hardware.model, "gpus": f.hardware.gpus, "memory_gib": f.hardware.memory_gib,
        "price_per_gpu_second": q.price, "price_per_gpu_hour": hourly, "basis": q.basis,
        "percentile": q.percentile, "asks": q.asks, "ask_at_percentile": q.ask_at_percentile,
        "cheapest_ask": q.cheapest_ask, "bids": q.bids, "best_bid": q.best_bid,
        "leases": q.leases, "cleared_low": q.cleared_low, "cleared_median": q.cleared_median,
        "cleared_high": q.cleared_high, "blocks": f.blocks, "leases_unread": f.leases_unread,
    }  # fmt: skip


_BASIS = {
    "asks+leases": "the lower of the {p:g}th-percentile ask and the median cleared price",
    "asks": "the {p:g}th-percentile ask (no leases in the window)",
    "leases": "the median cleared price (no asks resting)",
    "bids": "the best resting bid (no asks, no leases): it would take the GPUs now",
    "none": "nothing: no asks, bids or leases of this model",
}


def _quote_text(f: MarketFigures, q: Quote, token: Token) -> str:
    def hourly(price: int | None) -> str:
        return "-" if price is None else token.format(per_gpu_hour(price))

    cleared = (
        f"25th {hourly(q.cleared_low)}, median {hourly(q.cleared_median)}, "
        f"75th {hourly(q.cleared_high)}"
    )
    hw = f.hardware
    head = f"{hw.model} x{hw.gpus} ({hw.memory_gib} GiB): "
    if q.price is None:
        head += "no quote"
    else:
        head += f"suggest {token.format_price(q.price)}"
    lines = [
        head,
        f"  asks      {q.asks} resting: cheapest {hourly(q.cheapest_ask)}, "
        f"{q.percentile:g}th percentile {hourly(q.ask_at_percentile)}",
        f"  bids      {q.bids} resting that this memory meets: best {hourly(q.best_bid)}",
        f"  leases    {q.leases} opened in the last {f.blocks} blocks: {cleared}",
        f"  basis     {_BASIS[q.basis].format(p=q.percentile)}; prices per GPU-hour",
    ]
    if f.leases_unread:
        lines.append(f"  note      {f.leases_unread} leases opened through a wallet: model unread")
    if q.price is not None:
        text = token.plain(per_gpu_hour(q.price))
        lines.append(
            f'  config    [pricing] policy = "fixed", params = {{ price_per_gpu_hour = "{text}" }}'
        )
    return "\n".join(lines)


# --- record --------------------------------------------------------------------------------------


def cmd_record(args: argparse.Namespace) -> int:
    if args.samples < 1 or args.interval < 0:
        raise InvalidArgument("samples", args.samples, "--samples at least 1, --interval >= 0")
    client = _client(args.deployment)

    async def run() -> Recording:
        async with RelayClient(args.relay) as relay:
            return await record(relay, client, args.model, samples=args.samples,
                                interval_s=args.interval)  # fmt: skip

    recording = asyncio.run(run())
    recording.dump(args.out)
    books = sum(1 for e in recording.events if isinstance(e, BookSample))
    print(f"recorded {books} book samples and {len(recording.events) - books} leases "
          f"into {args.out}")  # fmt: skip
    return 0


# --- backtest ------------------------------------------------------------------------------------


def cmd_backtest(args: argparse.Namespace) -> int:
    recording = Recording.load(args.recording)
    config = _config(args)
    if (config is None) == (args.policy is None):
        raise InvalidArgument("policy", args.policy, "give --config or --policy, one of them")
    if config is not None:
        pricing = config.pricing
    else:
        try:
            params = tomllib.loads(f"params = {args.params}")["params"]
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgument(
                "params", args.params, f"--params is no TOML table: {exc}"
            ) from exc
        pricing = PricingConfig(args.policy, params)
    policy = load_policy(pricing, recording.token)
    results = [(hw, replay(recording, policy, hw)) for hw in _hardware(args, config)]
    token = recording.token
    if args.json:
        doc = {
            "token": {"symbol": token.symbol, "decimals": token.decimals},
            "policy": pricing.policy,
            "results": [_result_document(hw, r) for hw, r in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        for hw, r in results:
            print(_result_text(hw, r, pricing.policy, token))
    return 0


def _result_document(hw: Hardware, r: ReplayResult) -> dict[str, Any]:
    return {
        "model": hw.model, "gpus": hw.gpus, "memory_gib": hw.memory_gib,
        "opportunities": r.opportunities, "matched": r.matched, "match_rate": r.match_rate,
        "priced_out": r.priced_out, "capacity_misses": r.capacity_misses, "earned": r.earned,
        "gpu_seconds": r.gpu_seconds, "average_price_per_gpu_second": r.average_price,
        "span_s": r.span_s,
    }  # fmt: skip


def _result_text(hw: Hardware, r: ReplayResult, policy: str, token: Token) -> str:
    gpu_hours = f"{r.gpu_seconds / 3600:,.2f}"
    average = token.format_price(r.average_price) if r.gpu_seconds else "-"
    return "\n".join([
        f"{hw.model} x{hw.gpus} ({hw.memory_gib} GiB), policy {policy}, over {r.span_s} s "
        "of recording:",
        f"  matched   {r.matched} of {r.opportunities} opportunities ({r.match_rate:.0%}); "
        f"{r.priced_out} lost on price, {r.capacity_misses} found too few GPUs free",
        f"  earned    {token.format(r.earned)} for {gpu_hours} GPU-hours sold "
        f"(average {average})",
    ])  # fmt: skip


__all__ = ["add_parser", "cmd_backtest", "cmd_record", "cmd_suggest"]
