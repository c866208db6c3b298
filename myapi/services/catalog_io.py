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

from sqlalchemy import BigInteger, Select, String, case, cast, func, literal, select, text, type_coerce
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
    """Every row of ``stmt`` from a server-side cursor, ``chunk`` at a time (JSON / NDJSON)."""
    columns = [getattr(Product, name) for name in EXPORT_COLUMNS]
    stmt = stmt.with_only_columns(*columns).execution_options(yield_per=chunk, stream_results=True)
    yield from session.execute(stmt)


# The database writes the CSV export: every cell is formatted (and formula
# cells neutralised) in SQL, so no Python object is built per row. On
# PostgreSQL, COPY (...) TO STDOUT does the CSV quoting; on SQLite the query
# returns whole CSV lines, quoted as the csv module would. The cells equal
# what the JSON representation shows (fields.product_fields) and what the
# generic CSV writer would write for it; tests/test_catalog_io.py compares them.
CSV_COLUMNS = (*EXPORT_COLUMNS, "links.self")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # as representations.neutralise
CSV_SPECIALS = '*[",\r\n]*'  # GLOB: a cell the csv module would quote


def _neutralised(column):
    return case((func.substr(column, 1, 1).in_(FORMULA_PREFIXES), literal("'") + column), else_=column)


def _csv_cells(dialect: str, link_prefix: str) -> list:
    """The export's cells as SQL text expressions, in CSV_COLUMNS order (None: a text column)."""
    table = Product.__table__.c
    cents = type_coerce(table.price, BigInteger)  # the stored integer, not Money's Decimal
    if dialect == "postgresql":
        def iso(column):
            return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    else:
        def iso(column):
            # Stored as naive UTC text, "YYYY-MM-DD HH:MM:SS.ffffff"; slicing it
            # is a third of the cost of strftime() over a whole export.
            stored = type_coerce(column, String)
            return func.substr(stored, 1, 10) + "T" + func.substr(stored, 12, 8) + "Z"
    return [
        (cast(table.id, String), False),
        (_neutralised(table.sku), True),
        (_neutralised(table.name), True),
        (_neutralised(table.description), True),
        (_neutralised(table.category), True),
        (cast(cents // 100, String) + "." + func.substr(cast(100 + cents % 100, String), 2), False),
        (cast(table.stock, String), False),
        (case((table.is_available, "true"), else_="false"), False),
        (iso(table.date_created), False),
        (iso(table.date_updated), False),
        (literal(link_prefix) + cast(table.id, String), False),
    ]


def _copy_select(stmt: Select, link_prefix: str) -> Select:
    # NULLIF: COPY quotes an empty string (""); the csv module leaves it bare.
    cells = _csv_cells("postgresql", link_prefix)
    return stmt.with_only_columns(*(func.nullif(cell, "") if is_text else cell for cell, is_text in cells))


def _csv_line_select(stmt: Select, link_prefix: str) -> Select:
    def quoted(cell):
        return case((cell.op("GLOB")(CSV_SPECIALS), '"' + func.replace(cell, '"', '""') + '"'), else_=cell)

    cells = [quoted(cell) if is_text else cell for cell, is_text in _csv_cells("sqlite", link_prefix)]
    line = cells[0]
    for cell in cells[1:]:
        line = line + "," + cell
    return stmt.with_only_columns(line + "\r\n")


def export_csv(session: Session, stmt: Select, link_prefix: str, *, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """The CSV export of ``stmt``: the header, then the rows, ~``chunk`` bytes at a time.

    ``link_prefix`` + id is each row's ``links.self``.
    Closes ``session`` (a stream session) when it ends or the client goes away.
    """
    header = ",".join(CSV_COLUMNS)
    with session:
        if session.get_bind().dialect.name == "postgresql":
            yield (header + "\n").encode()
            yield from _copy_out(session, _copy_select(stmt, link_prefix), chunk)
        else:
            yield (header + "\r\n").encode()
            yield from _lines(session, _csv_line_select(stmt, link_prefix), chunk)


def _driver_statement(session: Session, query: Select):
    """``query`` as the driver's own SQL text and parameters (bind processors applied)."""
    dialect = session.get_bind().dialect
    compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    for name, bind in compiled.binds.items():
        process = bind.type.bind_processor(dialect)
        if process is not None and name in params:
            params[name] = process(params[name])
    if compiled.positiontup is not None:  # qmark (SQLite)
        return compiled.string, [params[name] for name in compiled.positiontup]
    return compiled.string, params


def _lines(session: Session, query: Select, chunk: int) -> Iterator[bytes]:
    """The query's CSV lines, joined 2,000 at a time, through the driver's own cursor.

    The rows are one-string tuples: nothing for SQLAlchemy to process.
    """
    sql, params = _driver_statement(session, query)
    cursor = session.connection().connection.driver_connection.cursor()
    try:
        cursor.execute(sql, params)
        pieces: list[bytes] = []
        size = 0
        while rows := cursor.fetchmany(2000):
            piece = "".join([row[0] for row in rows]).encode("utf-8")
            pieces.append(piece)
            size += len(piece)
            if size >= chunk:
                yield b"".join(pieces)
                pieces, size = [], 0
        yield b"".join(pieces)
    finally:
        cursor.close()


def _copy_out(session: Session, query: Select, chunk: int) -> Iterator[bytes]:
    """PostgreSQL writes the CSV: COPY (query) TO STDOUT, relayed as it arrives.

    psycopg merges the (already validated) filter values into the COPY
    statement client-side with its own quoting: PostgreSQL takes no bind
    parameters in COPY.
    """
    sql, params = _driver_statement(session, query)
    driver_connection = session.connection().connection.driver_connection
    buffer = bytearray()
    with driver_connection.cursor() as cursor, cursor.copy(
            f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
        for data in copy:
            buffer += data
            if len(buffer) >= chunk:
                yield bytes(buffer)
                buffer.clear()
    yield bytes(buffer)
