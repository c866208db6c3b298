"""A product's columns as the API shows them: the one list, and what each holds.

``COLUMNS`` is the order of every representation of a product: the field
dict (``common.fields.product_fields`` is built from it, then ``links``),
the CSV export (``CSV_COLUMNS``: then ``links.self``) and the CSV import,
which sets the ``WRITABLE`` columns and accepts and ignores the others.
``KIND`` says what each column holds, read from the Product table's column
types, so that each user formats or converts a column by its kind rather
than by its name. No Flask.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Integer, String

from ..models import Money, Product, UTCDateTime

COLUMNS = (
    "id", "sku", "name", "description", "category", "price", "stock", "is_available",
    "date_created", "date_updated",
)
READ_ONLY = ("id", "date_created", "date_updated")  # set by the database, never by a client
WRITABLE = tuple(name for name in COLUMNS if name not in READ_ONLY)
LINK = "links.self"  # the product's URL: its id after a prefix
CSV_COLUMNS = (*COLUMNS, LINK)

# Checked in this order: Money and UTCDateTime are TypeDecorators, not Integer or DateTime.
_KINDS = (("money", Money), ("timestamp", UTCDateTime), ("boolean", Boolean), ("integer", Integer),
          ("text", String))


def _kind(name: str) -> str:
    column_type = Product.__table__.c[name].type
    for kind, sqltype in _KINDS:
        if isinstance(column_type, sqltype):
            return kind
    raise TypeError(f"products.{name}: no kind for {column_type!r}")


# name -> "integer", "text", "money" (stored as integer cents), "boolean" or "timestamp" (UTC)
KIND = {name: _kind(name) for name in COLUMNS}
