"""The catalogue: product queries and single-product changes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Select, bindparam, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import OrderItem, Product, utcnow
from . import catalog_export
from . import changes as changes_service
from .changes import FeedPage, Watermark
from .errors import Conflict, NotFound
from .query import (
    FIRST_PAGE,
    Export,
    IfMatch,
    Page,
    Window,
    apply_sort,
    check_version,
    count_rows,
    like_pattern,
    paginate,
    row_columns,
    sort_keys,
)

# Reads that show products select Rows of every column (query.row_columns), not ORM
# objects, and filter and sort on the table's columns: plain Core statements, which
# skip the ORM's compile and loading steps (about a third of a list's time).
PRODUCTS = Product.__table__.c
PRODUCT_ROW = row_columns(Product)
# Built once: a statement's construction costs as much as its cached compilation.
_PRODUCT_BY_ID = select(*PRODUCT_ROW).where(PRODUCTS.id == bindparam("product_id"))

SORT_KEYS = {
    "id": PRODUCTS.id,
    "sku": PRODUCTS.sku,
    "name": PRODUCTS.name,
    "price": PRODUCTS.price,
    "stock": PRODUCTS.stock,
    "date_created": PRODUCTS.date_created,
    "date_updated": PRODUCTS.date_updated,
}

FILTERS = ("category", "q", "min_price", "max_price", "in_stock", "is_available", "updated_since")


def filtered(stmt: Select, *, category: str | None = None, q: str | None = None,
             min_price: Decimal | None = None, max_price: Decimal | None = None,
             in_stock: bool | None = None, is_available: bool | None = None,
             updated_since: dt.datetime | None = None) -> Select:
    """Apply the list filters (shared by the list and the export)."""
    if category is not None:
        stmt = stmt.where(PRODUCTS.category == category)
    if q:
        pattern = like_pattern(q)
        stmt = stmt.where(or_(PRODUCTS.name.ilike(pattern, escape="\\"), PRODUCTS.sku.ilike(pattern, escape="\\")))
    if min_price is not None:
        stmt = stmt.where(PRODUCTS.price >= min_price)
    if max_price is not None:
        stmt = stmt.where(PRODUCTS.price <= max_price)
    if in_stock is True:
        stmt = stmt.where(PRODUCTS.stock > 0)
    elif in_stock is False:
        stmt = stmt.where(PRODUCTS.stock == 0)
    if is_available is not None:
        stmt = stmt.where(PRODUCTS.is_available.is_(is_available))
    if updated_since is not None:
        stmt = stmt.where(PRODUCTS.date_updated >= updated_since)
    return stmt


def filtered_sorted(*, sort=None, columns=(Product,), **filters) -> Select:
    """The products matching the list filters, in the requested order (``columns``: what to select)."""
    return apply_sort(filtered(select(*columns), **filters), sort, SORT_KEYS, PRODUCTS.id.asc())


def list_products(session: Session, *, window: Window = FIRST_PAGE, sort=None, **filters) -> Page:
    """A page of the matching products (a walk of them is continued by the products' change feed)."""
    stmt = filtered_sorted(sort=sort, columns=PRODUCT_ROW, **filters)
    return paginate(session, stmt, window, sort_keys(sort, SORT_KEYS, PRODUCTS.id), feed="product")


def export_products(*, link_prefix: str, **filters) -> Export:
    """Every matching product: rows for JSON and NDJSON, CSV formatted by the database.

    ``link_prefix`` + id is a row's ``links.self`` in the CSV.
    """
    stmt = filtered_sorted(**filters)
    return Export(
        name=f"products-{dt.date.today().isoformat()}",
        rows=lambda session: catalog_export.export_rows(session, stmt),
        csv=lambda session, columns: catalog_export.export_csv(session, stmt, link_prefix, columns),
        count=lambda session: count_rows(session, stmt),
        feed="product",
    )


def changes(session: Session, since: Watermark, *, limit: int = 100) -> FeedPage:
    """The catalogue's change feed after ``since`` (services/changes.py)."""
    return changes_service.feed(session, "product", since, limit=limit)


def read_product(session: Session, product_id: int):
    """The product as a Row (to show it), or NotFound."""
    product = session.execute(_PRODUCT_BY_ID, {"product_id": product_id}).first()
    if product is None:
        raise NotFound(f"No product {product_id}.")
    return product


def get_product(session: Session, product_id: int) -> Product:
    """The product, or NotFound."""
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound(f"No product {product_id}.")
    return product


def _flush_unique_sku(session: Session, product: Product) -> None:
    """Flush a changed product, answering a duplicate sku with 409.

    Its sku is looked up first, so that only the sku's clash is a 409
    (raced: the unique index refuses it, and the request rolls back).
    """
    taken = select(Product.id).where(Product.sku == product.sku, Product.id != product.id)
    with session.no_autoflush:  # look before the pending change is written
        clash = session.scalar(taken)
    if clash is not None:
        raise _sku_taken()
    try:
        session.flush()
    except IntegrityError:  # the sku is taken (by another request since the check); the request rolls back
        raise _sku_taken() from None


def create_product(session: Session, values: dict) -> Product:
    """Insert a product; a taken sku is a 409 (the unique index says so: one statement).

    A Core INSERT, not the ORM's unit of work (which was a third of the
    request's time, spent while SQLite's write lock is held): the answer is
    a transient Product built from the values written, as an order's is.
    """
    now = utcnow()
    written = {**_NEW_PRODUCT, **values, "date_created": now, "date_updated": now}
    try:
        product_id = session.execute(_INSERT_PRODUCT, written).scalar_one()
    except IntegrityError:  # the sku is taken; the request rolls back
        raise _sku_taken() from None
    return Product(id=product_id, **written)


def _sku_taken() -> Conflict:
    return Conflict("A product with this sku exists.", {"sku": "This sku is taken."})


# A new product's defaults, read from the model's columns (description, stock, is_available), and its
# version: the first.
_NEW_PRODUCT = {**{column.name: column.default.arg for column in Product.__table__.c
                   if column.default is not None and column.default.is_scalar}, "version": 1}
_INSERT_PRODUCT = Product.__table__.insert().returning(PRODUCTS.id)


def update_product(session: Session, product_id: int, changes: dict, *, if_match: IfMatch | None = None) -> Product:
    product = get_product(session, product_id)
    check_version(product.version, if_match)
    for name, value in changes.items():
        setattr(product, name, value)
    _flush_unique_sku(session, product)
    return product


def delete_product(session: Session, product_id: int, *, if_match: IfMatch | None = None) -> None:
    """Delete a product no order mentions; otherwise it must be retired instead."""
    product = get_product(session, product_id)
    check_version(product.version, if_match)
    ordered = session.scalar(select(exists().where(OrderItem.product_id == product.id)))
    if ordered:
        raise _in_orders()
    session.delete(product)
    try:
        session.flush()
    except IntegrityError:  # an order for it committed after our check; the request rolls back
        raise _in_orders() from None


def _in_orders() -> Conflict:
    return Conflict(
        "This product appears in orders and cannot be deleted; retire it with is_available=false instead.",
        {"is_available": "Set to false to retire the product."},
    )
