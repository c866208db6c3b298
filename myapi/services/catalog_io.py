"""CSV import and streaming export of the catalogue.

Import reads the upload as a stream of CSV records, validates each with the
same input types as ``PUT /products/<id>`` (given to it as ``rules``), and
upserts valid rows by sku in batches inside one transaction: on PostgreSQL
each batch is COPY'd into a temporary table and upserted from it with one
``INSERT ... SELECT ... ON CONFLICT`` while a second thread validates the
next batch; on SQLite the driver's ``executemany`` runs one upsert per row.
Memory holds a few batches, not the file. Any bad row makes the whole import
a no-op (the transaction is rolled back) and every bad row is reported, the
first 100 in full. Imports run one at a time (an advisory lock on
PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), so two overlapping uploads
neither deadlock nor interleave.

Export streams: JSON and NDJSON from a server-side cursor (``yield_per``),
CSV written by the database itself (see ``export_csv``), so the first bytes
leave at once and memory stays flat however many rows match.
"""

from __future__ import annotations

import csv
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, Select, String, case, cast, func, literal, select, text, type_coerce
from sqlalchemy.orm import Session

from ..models import Product, utcnow
from .errors import Invalid

BATCH_SIZE = 1000
PG_BATCH_SIZE = 5_000  # COPY + one INSERT ... SELECT per batch: bigger batches, fewer statements
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
    dry_run: bool = False

    def add_error(self, row: int, column: str, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"row": row, "field": column, "message": message})


class ImportRejected(Invalid):
    """The file is not an importable CSV (header problems, no rows...)."""


class InvalidRows(Invalid):
    """Rows that break the rules: nothing was imported; ``errors`` lists them."""

    title = "Invalid rows"

    def __init__(self, result: ImportResult):
        listed = len(result.errors)
        super().__init__(
            f"{result.error_count} row error(s); nothing was imported."
            + (f" The first {listed} are listed." if result.error_count > listed else ""),
            result.errors,
            extra={"error_count": result.error_count},
        )


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


def _validator(columns: list[str], rules: dict[str, Rule]):
    """A function checking one CSV record against ``rules``, built once per import.

    It returns the upsert row (a tuple in IMPORT_COLUMNS order, the price in
    integer cents) or None after recording the record's errors in ``result``.
    """
    width = len(columns)
    # (name, the cell's index or None when the column is absent, rule)
    plan = [(name, columns.index(name) if name in columns else None, rules[name]) for name in IMPORT_COLUMNS]
    price_at = IMPORT_COLUMNS.index("price")

    def validated(record: list[str], row_number: int, result: ImportResult) -> tuple | None:
        if len(record) != width:
            result.add_error(row_number, "*", f"Expected {width} cells, found {len(record)}.")
            return None
        values, ok = [], True
        for name, index, rule in plan:
            cell = "" if index is None else record[index]
            if cell == "":
                if rule.required:
                    result.add_error(row_number, name, "This field is required.")
                    ok = False
                values.append(rule.default)
                continue
            try:
                values.append(rule.convert(cell))
            except ValueError as error:
                result.add_error(row_number, name, str(error))
                ok = False
                values.append(None)
        if not ok:
            return None
        values[price_at] = int(values[price_at] * 100)  # a validated Decimal with two places: exact
        return tuple(values)

    return validated


def _validated_batches(reader, columns: list[str], rules: dict[str, Rule], result: ImportResult,
                       batch_size: int) -> Iterator[list[tuple]]:
    """Validate every record; yield the good ones as upsert rows, ``batch_size`` distinct skus at a time.

    A sku repeated in the file: the last row wins (ON CONFLICT may not touch
    a row twice in one statement, and later batches overwrite earlier ones).
    Once any row is bad nothing more is yielded: the rest is only validated.
    """
    validated = _validator(columns, rules)
    batch: dict[str, tuple] = {}
    row_number = 1
    try:
        for record in reader:
            row_number += 1
            if not "".join(record).strip():
                continue  # blank lines are not products
            result.rows += 1
            row = validated(record, row_number, result)
            if row is None or result.error_count:
                continue
            batch[row[0]] = row
            if len(batch) >= batch_size:
                yield list(batch.values())
                batch = {}
    except csv.Error as error:
        result.add_error(row_number + 1, "*", f"Not valid CSV: {error}.")
    except UnicodeDecodeError:
        result.add_error(row_number + 1, "*", "The file is not UTF-8 text.")
    if batch and not result.error_count:
        yield list(batch.values())


def _read_ahead(items: Iterator, *, depth: int = 1) -> Iterator:
    """``items``, produced in a thread while the caller works on the previous one.

    For PostgreSQL imports: validating the next batch (Python) overlaps the
    database writing this one (the driver releases the GIL while it waits).
    At most ``depth`` items wait in the queue, so memory stays bounded; an
    exception in the producer is raised in the caller; the producer stops
    when the caller does.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as error:  # handed to the caller, raised there
            put((done, error))

    thread = threading.Thread(target=produce, name="import-validate", daemon=True)
    thread.start()
    try:
        while True:
            item, error = handoff.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


# SQLite: the driver's own executemany of one statement (SQLAlchemy's
# per-row parameter processing was two thirds of the import's time).
SQLITE_UPSERT = """
INSERT INTO products (sku, name, description, category, price, stock, is_available, version, date_created, date_updated)
VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
ON CONFLICT (sku) DO UPDATE SET
    name = excluded.name, description = excluded.description, category = excluded.category,
    price = excluded.price, stock = excluded.stock, is_available = excluded.is_available,
    version = products.version + 1, date_updated = excluded.date_updated
"""

# PostgreSQL: COPY the batch into a temporary table, then one INSERT ... SELECT
# ... ON CONFLICT upserts it (a statement per row was a third of the speed).
# xmax = 0 marks a row the INSERT created rather than updated.
STAGING_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS import_batch (
    sku text, name text, description text, category text, price bigint, stock integer, is_available boolean
) ON COMMIT DROP
"""
STAGED_UPSERT = """
WITH upserted AS (
    INSERT INTO products (sku, name, description, category, price, stock, is_available,
                          version, date_created, date_updated)
    SELECT sku, name, description, category, price, stock, is_available, 1, :now, :now FROM import_batch
    ON CONFLICT (sku) DO UPDATE SET
        name = excluded.name, description = excluded.description, category = excluded.category,
        price = excluded.price, stock = excluded.stock, is_available = excluded.is_available,
        version = products.version + 1, date_updated = excluded.date_updated
    RETURNING xmax = 0 AS created
)
SELECT count(*) FILTER (WHERE created), count(*) FROM upserted
"""


def _sqlite_upsert(session: Session, rows: list[tuple], result: ImportResult) -> None:
    skus = [row[0] for row in rows]
    existing = 0
    for start in range(0, len(skus), 500):  # well under SQLite's bound-parameter limit
        existing += session.scalar(select(func.count()).where(Product.sku.in_(skus[start:start + 500])))
    result.updated += existing
    result.created += len(rows) - existing
    # The column's own bind processor: the timestamp is stored as SQLAlchemy stores it.
    dialect = session.get_bind().dialect
    now = Product.__table__.c.date_updated.type.dialect_impl(dialect).bind_processor(dialect)(utcnow())
    cursor = session.connection().connection.driver_connection.cursor()
    try:
        cursor.executemany(SQLITE_UPSERT, [(*row, now, now) for row in rows])
    finally:
        cursor.close()


def _postgresql_upsert(session: Session, payload: bytes, result: ImportResult) -> None:
    """COPY one batch (COPY text, see _copy_payload) into import_batch and upsert it from there."""
    session.execute(text("TRUNCATE import_batch"))
    cursor = session.connection().connection.driver_connection.cursor()
    columns = "sku, name, description, category, price, stock, is_available"
    with cursor, cursor.copy(f"COPY import_batch ({columns}) FROM STDIN") as copy:
        copy.write(payload)
    created, total = session.execute(text(STAGED_UPSERT), {"now": utcnow()}).one()
    result.created += created
    result.updated += total - created


_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(value) else value


def _copy_payload(rows: list[tuple]) -> bytes:
    """Upsert rows as COPY's text format, built by the validating thread.

    sku and category are validated slugs: nothing in them needs escaping.
    """
    lines = [
        f"{sku}\t{_copy_text(name)}\t{_copy_text(description)}\t{category}\t{cents}\t{stock}\t"
        f"{'t' if is_available else 'f'}\n"
        for sku, name, description, category, cents, stock, is_available in rows
    ]
    return "".join(lines).encode("utf-8")  # the connection's client_encoding (db.make_engine)


def lock_imports(session: Session) -> None:
    """Serialise imports across processes and hosts (SQLite: BEGIN IMMEDIATE does)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": IMPORT_LOCK_ID})


def import_products(session: Session, lines: Iterable[str], rules: dict[str, Rule], *,
                    dry_run: bool = False) -> ImportResult:
    """Validate and upsert every row of a CSV stream, in the caller's transaction.

    Any bad row raises InvalidRows (the request then rolls back: nothing
    was written). A dry run does the whole import inside a savepoint and
    rolls the savepoint back: validated and counted, nothing kept.
    """
    if dry_run:
        savepoint = session.begin_nested()
        try:
            result = import_products(session, lines, rules)
        finally:
            savepoint.rollback()
        result.dry_run = True
        return result
    reader = csv.reader(lines)
    try:
        columns = _check_header(next(reader, None))
    except csv.Error as error:
        raise ImportRejected(f"The header row is not valid CSV: {error}.") from None
    except UnicodeDecodeError:
        raise ImportRejected("The file is not UTF-8 text.") from None
    lock_imports(session)
    result = ImportResult()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(STAGING_TABLE))
        upsert = _postgresql_upsert
        validated = _validated_batches(reader, columns, rules, result, PG_BATCH_SIZE)
        batches = _read_ahead(_copy_payload(rows) for rows in validated)
    else:  # SQLite writes in this process: a second thread would only contend for the GIL
        upsert = _sqlite_upsert
        batches = _validated_batches(reader, columns, rules, result, BATCH_SIZE)
    # closing(): when a write fails, the validating thread stops now, not
    # whenever the traceback holding the generator is collected.
    with closing(batches):
        for batch in batches:
            if not result.error_count:
                upsert(session, batch, result)
    if result.error_count:
        raise InvalidRows(result)
    if result.rows == 0:
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
    """The export's cells as SQL text expressions, in CSV_COLUMNS order.

    Each is (expression, the text column it shows or None): free text may need
    CSV quoting, and an empty one must be written as a bare empty cell.
    """
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
        (cast(table.id, String), None),
        (_neutralised(table.sku), table.sku),
        (_neutralised(table.name), table.name),
        (_neutralised(table.description), table.description),
        (_neutralised(table.category), table.category),
        (cast(cents // 100, String) + "." + func.substr(cast(100 + cents % 100, String), 2), None),
        (cast(table.stock, String), None),
        (case((table.is_available, "true"), else_="false"), None),
        (iso(table.date_created), None),
        (iso(table.date_updated), None),
        (literal(link_prefix) + cast(table.id, String), None),
    ]


def _selected_cells(dialect: str, link_prefix: str, columns) -> list:
    """The cells of ``columns`` (a subset of CSV_COLUMNS, in that order: a ``fields=`` selection)."""
    unknown = set(columns) - set(CSV_COLUMNS)
    if unknown:
        raise ValueError(f"no CSV cell for {sorted(unknown)}")
    return [cell for name, cell in zip(CSV_COLUMNS, _csv_cells(dialect, link_prefix), strict=True) if name in columns]


def _copy_select(stmt: Select, link_prefix: str, columns=CSV_COLUMNS) -> Select:
    # NULLIF: COPY quotes an empty string (""); the csv module leaves it bare.
    cells = _selected_cells("postgresql", link_prefix, columns)
    return stmt.with_only_columns(*(cell if text_column is None else func.nullif(cell, "")
                                    for cell, text_column in cells))


def _csv_line_select(stmt: Select, link_prefix: str, columns=CSV_COLUMNS) -> Select:
    def quoted(cell, text_column):
        # Tested on the stored text: the neutralising apostrophe never needs quoting,
        # and SQLite then evaluates the cell once, in whichever branch applies.
        return case((text_column.op("GLOB")(CSV_SPECIALS), '"' + func.replace(cell, '"', '""') + '"'), else_=cell)

    cells = [cell if text_column is None else quoted(cell, text_column)
             for cell, text_column in _selected_cells("sqlite", link_prefix, columns)]
    line = cells[0]
    for cell in cells[1:]:
        line = line + "," + cell
    return stmt.with_only_columns(line + "\r\n")


def export_csv(session: Session, stmt: Select, link_prefix: str, columns=CSV_COLUMNS, *,
               chunk: int = 64 * 1024) -> Iterator[bytes]:
    """The CSV export of ``stmt``: the header, then the rows, ~``chunk`` bytes at a time.

    ``columns``: the output columns, a subset of CSV_COLUMNS in its order
    (all of them, or a ``fields=`` selection). ``link_prefix`` + id is each
    row's ``links.self``. Closes ``session`` (a stream session) when it ends
    or the client goes away.
    """
    header = ",".join(columns)
    with session:
        if session.get_bind().dialect.name == "postgresql":
            yield (header + "\n").encode()
            yield from _copy_out(session, _copy_select(stmt, link_prefix, columns), chunk)
        else:
            yield (header + "\r\n").encode()
            yield from _lines(session, _csv_line_select(stmt, link_prefix, columns), chunk)


def _driver_statement(session: Session, query: Select):
    """``query`` as the driver's own SQL text and parameters (bind processors applied)."""
    dialect = session.get_bind().dialect
    compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    for name, bind in compiled.binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
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
