"""What a bulk change does to a product, column by column: the rules the CSV import's plans and
``PATCH /products`` share (DESIGN §12). No Flask.

* A **diff** is ``{column: {"before": …, "after": …}}`` over the columns
  that change (a created product: every column but the sku, ``before``
  null). Values are shown as the API shows them: money as a two-place
  string ("4.50"), booleans, integers and text as they are.
* The **price guardrail** (``max_price_change=P``): a price moving by more
  than P % of the stored price (exactly P % is allowed) refuses the whole
  change; the refusal lists each offending product with before and after.
* A stale **version** (the row or item was made from an older version of
  the product) is refused for that product, never overwritten.
"""

from __future__ import annotations

import heapq
from decimal import Decimal

from .. import problems
from .errors import Conflict, DomainError
from .product_columns import KIND, WRITABLE

CENT = Decimal("0.01")
#: The columns a diff may name (the sku names the product).
DIFF_COLUMNS = tuple(name for name in WRITABLE if name != "sku")
#: How many offences of the price guardrail a refusal lists (all are counted).
MAX_LISTED_OFFENCES = 100
#: How many of the largest price moves a plan shows.
LARGEST_MOVES = 10


def shown(name: str, value):
    """A stored or parsed value as the API shows it (money arrives in integer cents)."""
    if value is None:
        return None
    kind = KIND[name]
    if kind == "money":
        return str((Decimal(int(value)) * CENT).quantize(CENT))
    if kind == "boolean":
        return bool(value)
    return value


def created_diff(values: dict) -> dict:
    """The diff of a new product: every column, from nothing (``values``: column -> stored form)."""
    return {name: {"before": None, "after": shown(name, values[name])} for name in DIFF_COLUMNS}


def percent_change(before_cents: int, after_cents: int) -> Decimal:
    """The move from ``before`` to ``after`` in percent of ``before``, to two places (signed)."""
    return (Decimal(after_cents - before_cents) * 100 / Decimal(before_cents)).quantize(CENT)


class PriceGuardrail:
    """``max_price_change=P``: collects the price moves larger than P % (all counted, the first listed)."""

    def __init__(self, limit: Decimal | None):
        self.limit = limit
        # |after - before| * 100 > P * before, in integers: P in hundredths of a percent.
        self._hundredths = None if limit is None else int(limit * 100)
        self.count = 0
        self.offences: list[dict] = []

    def check(self, position: dict, sku: str, before_cents: int, after_cents: int) -> bool:
        """Whether the move is allowed; an offence is noted. ``position``: ``{"row": n}`` or ``{"index": i}``."""
        if self._hundredths is None or before_cents == after_cents:
            return True
        if abs(after_cents - before_cents) * 10_000 <= self._hundredths * before_cents:
            return True
        self.count += 1
        if len(self.offences) < MAX_LISTED_OFFENCES:
            change = percent_change(before_cents, after_cents)
            self.offences.append({
                **position, "sku": sku, "field": "price", "before": shown("price", before_cents),
                "after": shown("price", after_cents), "change_percent": str(change),
                "message": f"The price moves {change:+} % ({shown('price', before_cents)} to "
                           f"{shown('price', after_cents)}), more than max_price_change={self.limit}.",
            })
        return False

    @property
    def refused(self) -> str | None:
        if not self.count:
            return None
        return (f"{self.count} price(s) would move more than max_price_change={self.limit} %: "
                "the whole change is refused.")


class LargestMoves:
    """The LARGEST_MOVES largest price moves seen (by their size in percent), in constant memory."""

    def __init__(self):
        self._heap: list = []
        self._order = 0

    def add(self, position: dict, sku: str, before_cents: int, after_cents: int) -> None:
        change = percent_change(before_cents, after_cents)
        self._order += 1
        entry = (abs(change), -self._order, {**position, "sku": sku, "before": shown("price", before_cents),
                                             "after": shown("price", after_cents), "change_percent": str(change)})
        if len(self._heap) < LARGEST_MOVES:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heappushpop(self._heap, entry)

    def listed(self) -> list[dict]:
        return [entry for _, _, entry in sorted(self._heap, reverse=True)]


class PriceChangeRefused(Conflict):
    """``max_price_change`` refused the whole change: ``errors`` lists the offending products."""

    problem = problems.PRICE_CHANGE_REFUSED

    def __init__(self, guardrail: PriceGuardrail, what: str = "nothing was imported"):
        listed = len(guardrail.offences)
        super().__init__(
            f"{guardrail.count} price(s) move more than max_price_change={guardrail.limit} %; {what}."
            + (f" The first {listed} are listed." if guardrail.count > listed else ""),
            guardrail.offences, extra={"error_count": guardrail.count})


class StaleItems(DomainError):
    """Items made from an older version of their product (``PATCH /products``): nothing was changed."""

    problem = problems.PRECONDITION_FAILED

    def __init__(self, errors: list[dict]):
        super().__init__(f"{len(errors)} item(s) name an older version of their product; nothing was changed. "
                         "Read them again.", errors)


def stale_message(sku: str, current: int, given: int) -> str:
    return (f"{sku} is at version {current}; this was made from version {given}: read it again "
            "(nothing of it was written).")
