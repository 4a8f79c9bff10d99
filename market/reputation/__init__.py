"""Provider reputation: figures derived only from on-chain history, computed the same way by anyone.

    figures.py    Reputation: per-provider counts and sums, lease outcomes, one reference score
    labs.py       LabRecord: a lab's disputes, opened, won and lost, and the bonds it lost
    book.py       ReputationBook: folds decoded chain events in, in any order, incrementally
    selection.py  SelectionPolicy, rank_offers: a lab's hook into the matcher's offers and fills

Pure: no web3. ``market.chain.history`` reads the events and block timestamps this folds; the
relay serves the result (``GET /v1/reputation``).
"""

from market.reputation.book import READ_EVENTS, TIMED_EVENTS, ChainLog, ReputationBook
from market.reputation.figures import SLASH_WEIGHT, Reputation
from market.reputation.labs import LabRecord
from market.reputation.selection import Ranked, SelectionPolicy, offer_in, rank_offers

__all__ = [
    "READ_EVENTS",
    "SLASH_WEIGHT",
    "TIMED_EVENTS",
    "ChainLog",
    "LabRecord",
    "Ranked",
    "Reputation",
    "ReputationBook",
    "SelectionPolicy",
    "offer_in",
    "rank_offers",
]
