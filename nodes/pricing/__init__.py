"""``gpumarket price``: pricing help for providers, over the pure :mod:`market.pricing`.

* :mod:`~nodes.pricing.live`: the live market read for it, the relay's book (through its
  ``RelayClient``) and the leases the chain opened;
* :mod:`~nodes.pricing.cli`: ``price suggest``, ``price record`` and ``price backtest``.

It reads the provider's config and runs its pricing policies (``nodes.provider.config``,
``nodes.provider.pricing``) but is no daemon: nothing here signs or sends a transaction.
"""

from nodes.pricing.cli import add_parser
from nodes.pricing.live import MarketFigures, book_sample, lease_samples, market_figures, record

__all__ = [
    "MarketFigures",
    "add_parser",
    "book_sample",
    "lease_samples",
    "market_figures",
    "record",
]
