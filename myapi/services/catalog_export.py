"""Streaming export of the catalogue.

JSON and NDJSON come from a server-side cursor (``yield_per``); CSV is
written by the database itself (see ``export_csv``), so the first bytes
leave at once and memory stays flat however many rows match.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import BigInteger, Select, String, case, cast, func, literal, type_coerce
from sqlalchemy.orm import Session

from ..csvcells import FORMULA_PREFIXES, NEUTRALISER, plain_cell
from ..models import Product
from .backends import Backend, backend_for
from .product_columns import COLUMNS, CSV_COLUMNS, KIND, LINK
from .read_ahead import read_ahead

#: Chunks the database may have formatted before the caller takes them.
READ_AHEAD = 2


def export_rows(session: Session, stmt: Select, chunk: int = 2000) -> Iterator:
    """Every row of ``stmt`` from a server-side cursor, ``chunk`` at a time (JSON / NDJSON)."""
    columns = [getattr(Product, name) for name in COLUMNS]
    stmt = stmt.with_only_columns(*columns).execution_options(yield_per=chunk, stream_results=True)
    yield from session.execute(stmt)


# The database writes the CSV export: every cell is formatted (and formula
# cells neutralised) in SQL, so no Python object is built per row. On
# PostgreSQL, COPY (...) TO STDOUT does the CSV quoting; on SQLite the query
# returns whole CSV lines, quoted as the csv module would (backends). The
# cells equal what the JSON representation shows (fields.product_fields) and
# what the generic CSV writer would write for it (myapi.csvcells);
# tests/test_catalog_io.py compares them.


def _neutralised(column):
    return case((func.substr(column, 1, 1).in_(FORMULA_PREFIXES), literal(NEUTRALISER) + column), else_=column)


def _cell(backend: Backend, name: str) -> tuple:
    """Column ``name``'s cell: (SQL text expression, the text column it shows or None).

    Free text may need CSV quoting, and an empty one must be written as a
    bare empty cell.
    """
    column = Product.__table__.c[name]
    kind = KIND[name]
    if kind == "text":
        return _neutralised(column), column
    if kind == "money":
        cents = type_coerce(column, BigInteger)  # the stored integer, not Money's Decimal
        return cast(cents // 100, String) + "." + func.substr(cast(100 + cents % 100, String), 2), None
    if kind == "boolean":
        return case((column, plain_cell(True)), else_=plain_cell(False)), None
    if kind == "timestamp":
        return backend.iso_utc(column), None
    return cast(column, String), None  # integer


def _selected_cells(backend: Backend, link_prefix: str, columns) -> list:
    """The cells of ``columns`` (a subset of CSV_COLUMNS, in that order: a ``fields=`` selection)."""
    unknown = set(columns) - set(CSV_COLUMNS)
    if unknown:
        raise ValueError(f"no CSV cell for {sorted(unknown)}")
    link = (literal(link_prefix) + cast(Product.__table__.c.id, String), None)
    return [link if name == LINK else _cell(backend, name) for name in CSV_COLUMNS if name in columns]


def export_csv(session: Session, stmt: Select, link_prefix: str, columns=CSV_COLUMNS, *,
               chunk: int = 64 * 1024) -> Iterator[bytes]:
    """The CSV export of ``stmt``: the header, then the rows, ~``chunk`` bytes at a time.

    ``columns``: the output columns, a subset of CSV_COLUMNS in its order
    (all of them, or a ``fields=`` selection). ``link_prefix`` + id is each
    row's ``links.self``. Closes ``session`` (a stream session) when it ends
    or the client goes away.

    The database formats the next chunk in a thread while the caller
    compresses and sends this one (services/read_ahead.py); at most
    READ_AHEAD chunks wait, so memory stays flat.
    """
    return read_ahead(_csv_chunks(session, stmt, link_prefix, columns, chunk), depth=READ_AHEAD,
                      name="export-csv")


def _csv_chunks(session: Session, stmt: Select, link_prefix: str, columns, chunk: int) -> Iterator[bytes]:
    with session:
        backend = backend_for(session)
        cells = _selected_cells(backend, link_prefix, columns)
        yield from backend.export_csv(session, stmt, cells, columns, chunk)
