"""CSV import and streaming export of the catalogue.

Import reads the upload as a stream of CSV records, validates each with the
same input types as ``POST /products`` (given to it as ``rules``), and
upserts valid rows by sku in batches with one Core ``INSERT ... ON CONFLICT``
per batch, inside one transaction. Memory holds one batch, not the file. Any
bad row makes the whole import a no-op (the transaction is rolled back) and
every bad row is reported, the first 100 in full. Imports run one at a time
(an advisory lock on PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), so two
overlapping uploads neither deadlock nor interleave.

Export streams rows from a server-side cursor (``yield_per``), so the first
bytes leave at once and memory stays flat however many rows match.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import Select, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..models import Product, utcnow
from .errors import ServiceError

BATCH_SIZE = 1000
MAX_REPORTED_ERRORS = 100
IMPORT_LOCK_ID = 0x6D79617069  # "myapi": the advisory lock that serialises imports

# Columns the export writes and the import reads, in order.
EXPORT_COLUMNS = (
    "id", "sku", "name", "description", "category", "price", "stock", "is_available",
    "date_created", "date_updated",
)
IMPORT_COLUMNS = ("sku", "name", "description", "category", "price", "stock", "is_available")
REQUIRED_IMPORT_COLUMNS = ("sku", "name", "category", "price", "stock")
# What an export writes that an import does not set: accepted and ignored,
# so an exported file can be edited and imported again as it is.
READ_ONLY_COLUMNS = ("id", "date_created", "date_updated", "links.self")


@dataclass
class Rule:
    """How to read one column: the input type, and what an empty cell means."""

    convert: Callable
    required: bool
    default: object = None


@dataclass
class ImportResult:
    rows: int = 0
    created: int = 0
    updated: int = 0
    errors: list[dict] = field(default_factory=list)
    error_count: int = 0

    def add_error(self, row: int, column: str, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"row": row, "field": column, "message": message})


class ImportRejected(ServiceError):
    """The file is not an importable CSV (header problems, no rows...)."""

    title = "Invalid request"
    type = "urn:myapi:problem:validation-error"


def _check_header(header: list[str] | None) -> list[str]:
    if not header:
        raise ImportRejected("The file is empty: it needs a header row and at least one product.")
    columns = [name.strip().lower() for name in header]
    missing = [name for name in REQUIRED_IMPORT_COLUMNS if name not in columns]
    unknown = [name for name in columns if name not in IMPORT_COLUMNS and name not in READ_ONLY_COLUMNS]
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    errors = {}
    for name in missing:
        errors[name] = "Missing column."
    for name in unknown:
        errors[name[:64] or "(blank)"] = "Unknown column."
    for name in duplicated:
        errors[name[:64]] = "Column appears more than once."
    if errors:
        raise ImportRejected(
            "The header row must name the columns " + ", ".join(IMPORT_COLUMNS)
            + " (description and is_available are optional).",
            errors,
        )
    return columns


def _validated(record: list[str], columns: list[str], rules: dict[str, Rule], row_number: int,
               result: ImportResult) -> dict | None:
    if len(record) != len(columns):
        result.add_error(row_number, "*", f"Expected {len(columns)} cells, found {len(record)}.")
        return None
    cells = dict(zip(columns, record, strict=True))
    values, ok = {}, True
    for name in IMPORT_COLUMNS:
        rule = rules[name]
        cell = cells.get(name, "")
        if cell == "":
            if rule.required:
                result.add_error(row_number, name, "This field is required.")
                ok = False
            else:
                values[name] = rule.default
            continue
        try:
            values[name] = rule.convert(cell)
        except ValueError as error:
            result.add_error(row_number, name, str(error))
            ok = False
    return values if ok else None


def _upsert(session: Session, batch: list[dict], result: ImportResult) -> None:
    # Last row wins for a sku repeated inside one batch (ON CONFLICT may not
    # touch a row twice in one statement); rows are applied in file order.
    by_sku = {row["sku"]: row for row in batch}
    existing = set(session.scalars(select(Product.sku).where(Product.sku.in_(list(by_sku)))))
    result.updated += len(existing)
    result.created += len(by_sku) - len(existing)

    now = utcnow()
    rows = [{**row, "version": 1, "date_created": now, "date_updated": now} for row in by_sku.values()]
    # One statement, many parameter sets: SQLAlchemy batches them as
    # "insertmanyvalues" from a statement compiled once and cached, instead
    # of compiling a fresh 1000-row VALUES clause for every batch.
    session.execute(_upsert_statement(session.get_bind().dialect.name), rows)


def _upsert_statement(dialect: str):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Product.__table__)
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["sku"],
        set_={
            "name": excluded.name,
            "description": excluded.description,
            "category": excluded.category,
            "price": excluded.price,
            "stock": excluded.stock,
            "is_available": excluded.is_available,
            "version": Product.__table__.c.version + 1,
            "date_updated": excluded.date_updated,
        },
    )


def lock_imports(session: Session) -> None:
    """Serialise imports across processes and hosts (SQLite: BEGIN IMMEDIATE does)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": IMPORT_LOCK_ID})


def import_products(session: Session, lines: Iterable[str], rules: dict[str, Rule], *,
                    batch_size: int = BATCH_SIZE) -> ImportResult:
    """Validate and upsert every row of a CSV stream, in the caller's transaction.

    The caller commits only when ``result.error_count == 0`` and it is not a
    dry run; otherwise it rolls back and nothing was written.
    """
    reader = csv.reader(lines)
    try:
        columns = _check_header(next(reader, None))
    except csv.Error as error:
        raise ImportRejected(f"The header row is not valid CSV: {error}.") from None
    except UnicodeDecodeError:
        raise ImportRejected("The file is not UTF-8 text.") from None
    lock_imports(session)
    result = ImportResult()
    batch: list[dict] = []
    row_number = 1
    try:
        for record in reader:
            row_number += 1
            if not any(cell.strip() for cell in record):
                continue  # blank lines are not products
            result.rows += 1
            values = _validated(record, columns, rules, row_number, result)
            if values is None or result.error_count:
                continue  # once a row is bad nothing will be written: only validate
            batch.append(values)
            if len(batch) >= batch_size:
                _upsert(session, batch, result)
                batch.clear()
    except csv.Error as error:
        result.add_error(row_number + 1, "*", f"Not valid CSV: {error}.")
    except UnicodeDecodeError:
        result.add_error(row_number + 1, "*", "The file is not UTF-8 text.")
    if batch and not result.error_count:
        _upsert(session, batch, result)
    if result.rows == 0 and not result.error_count:
        raise ImportRejected("The file has a header but no product rows.")
    return result


# -- export -------------------------------------------------------------------


def export_rows(session: Session, stmt: Select, chunk: int = 2000) -> Iterator:
    """Every row of ``stmt`` from a server-side cursor, ``chunk`` at a time."""
    columns = [getattr(Product, name) for name in EXPORT_COLUMNS]
    stmt = stmt.with_only_columns(*columns).execution_options(yield_per=chunk, stream_results=True)
    yield from session.execute(stmt)
