"""``PATCH /products``: many products changed at once, all or nothing (DESIGN §12). No Flask.

Each item names one product, by ``sku`` or by ``id`` (not both), and
carries the changes of ``PATCH /products/<id>`` (already checked by the same
input types) and, optionally, the ``version`` it was made from (If-Match
for that item). Every product is read and locked first, in id order (as
orders lock theirs), then every rule is checked over every item before
anything is written:

* an item naming no product, or a product another item names, is a 400
  listing every such item (``{"index", "field", "message"}``);
* a stale ``version`` is a 412 listing every stale item with the current
  version (nothing written: read them again);
* ``max_price_change`` refuses the whole request (409) when any price moves
  more than that percent (the import's guardrail, services/product_diff.py).

A value equal to the stored one is no change; a product none of whose
values change keeps its version (and ETag), like an unchanged import row,
and is not in the answer: it answers the changed products (DESIGN §12).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..models import Product
from .backends import backend_for
from .errors import Invalid
from .import_audit import Actor, record_patch
from .product_diff import DIFF_COLUMNS, PriceChangeRefused, PriceGuardrail, StaleItems, shown, stale_message

MAX_ITEMS = 1000


@dataclass
class BulkResult:
    """What a ``PATCH /products`` did: the changed products (as they are now, in the request's order), the counts."""

    items: list[Product]
    rows: int = 0
    updated: int = 0
    unchanged: int = 0
    changes: list[dict] = field(default_factory=list)  # {index, sku, action: "updated", changes}
    columns: tuple[str, ...] = ()
    max_price_change: Decimal | None = None
    created: int = 0
    rejected: int = 0
    error_count: int = 0
    on_error: str | None = None
    dry_run: bool = False
    plan: bool = False
    import_id: int | None = None


def _stored(value, name: str):
    """A model value in the form shown() takes (money in cents)."""
    return int(value * 100) if name == "price" else value


def bulk_update(session: Session, items: list[dict], *, max_price_change: Decimal | None = None,
                actor: Actor | None = None) -> BulkResult:
    """Apply every item's changes in the caller's transaction, or raise and change nothing.

    ``actor``'s audit record is added to the same transaction (the result's ``import_id``).
    """
    products = _named_products(session, items)
    stale = [{"index": index, "field": "version", "version": product.version,
              "message": stale_message(product.sku, product.version, item["version"])}
             for index, (item, product) in enumerate(zip(items, products, strict=True))
             if item.get("version") is not None and item["version"] != product.version]
    if stale:
        raise StaleItems(stale)
    guardrail = PriceGuardrail(max_price_change)
    result = BulkResult(items=[], rows=len(items), max_price_change=max_price_change,
                        columns=tuple(name for name in DIFF_COLUMNS if any(name in item for item in items)))
    pending = []
    for index, (item, product) in enumerate(zip(items, products, strict=True)):
        changed = {name: value for name, value in item.items() if name in DIFF_COLUMNS
                   and getattr(product, name) != value}
        if not changed:
            result.unchanged += 1
            continue
        if "price" in changed:
            guardrail.check({"index": index}, product.sku, _stored(product.price, "price"),
                            _stored(changed["price"], "price"))
        result.updated += 1
        result.changes.append({"index": index, "sku": product.sku, "action": "updated", "changes": {
            name: {"before": shown(name, _stored(getattr(product, name), name)),
                   "after": shown(name, _stored(value, name))}
            for name, value in changed.items()}})
        pending.append((product, changed))
    if guardrail.count:
        raise PriceChangeRefused(guardrail, "nothing was changed")
    for product, changed in pending:
        for name, value in changed.items():
            setattr(product, name, value)
        result.items.append(product)
    session.flush()  # one UPDATE per changed product, each checking and bumping its version
    if actor is not None:
        result.import_id = record_patch(session, actor, result)
    return result


def _named_products(session: Session, items: list[dict]) -> list[Product]:
    """The product each item names, locked in id order; Invalid listing every item naming none or a taken one."""
    errors: list[dict] = []
    skus = {item["sku"] for item in items if "sku" in item}
    ids = {item["id"] for item in items if "id" in item}
    stmt = select(Product).where(or_(Product.sku.in_(skus), Product.id.in_(ids))).order_by(Product.id)
    found = session.scalars(backend_for(session).for_update(stmt)).all()
    by_sku = {product.sku: product for product in found}
    by_id = {product.id: product for product in found}
    products: list[Product | None] = []
    named: dict[int, int] = {}  # product id -> the index of the item that named it
    for index, item in enumerate(items):
        key = "sku" if "sku" in item else "id"
        product = by_sku.get(item["sku"]) if key == "sku" else by_id.get(item["id"])
        products.append(product)
        if product is None:
            errors.append({"index": index, "field": key, "message": f"No product has this {key}."})
        elif product.id in named:
            errors.append({"index": index, "field": key,
                           "message": f"Item {named[product.id]} names the same product: name each product once."})
        else:
            named[product.id] = index
    if errors:
        raise Invalid(f"{len(errors)} item(s) name no product or one another item names; nothing was changed.",
                      errors)
    return products
