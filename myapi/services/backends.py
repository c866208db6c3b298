"""What differs between SQLite and PostgreSQL, one object per database.

A service asks ``backend_for(session)`` and calls the backend rather than
comparing dialect names. A backend knows how to lock rows for an update,
format a UTC timestamp in SQL (a report's month, an export's ISO time),
serialise imports, bulk upsert a batch of products, stream a query's
rows as CSV written by the database, and give an Idempotency-Key's owner
its lock (services/owner_locks.py: an advisory lock on PostgreSQL, a file
record lock on SQLite):

* SQLite: the request's ``BEGIN IMMEDIATE`` already serialises writers, so
  nothing more is locked; the import runs the driver's own ``executemany``;
  the CSV lines are built by the query itself.
* PostgreSQL: ``SELECT ... FOR UPDATE``; an advisory lock serialises
  imports; each batch is COPY'd into a temporary table and upserted from it
  with one ``INSERT ... SELECT ... ON CONFLICT``; the export is ``COPY (...)
  TO STDOUT``, relayed as it arrives.

Both upserts update a row only when a column differs from the stored value
(``ON CONFLICT ... DO UPDATE ... WHERE``): an unchanged row keeps its version
and date_updated, and is counted as unchanged. They set only the columns the
file has (a stored product keeps the others). An import that reads before it
writes (issue 16: plans, skip_rows, version rows, guardrails, partial files)
also reads a batch's stored products (``current_products``, locked when it
writes) and keeps the skus it met in an indexed temporary table
(``seen_skus``); the default import lists its first changes with
``changed_rows`` (on PostgreSQL compared in the database). Both append each batch's
(sku, row number) pairs to a temporary table without an index, and one
``GROUP BY`` at the end finds a sku the file named in two batches (an index
kept up to date row by row cost a sixth of the PostgreSQL import's time).

The SQL is built from ``product_columns`` (the column list) and
``myapi.csvcells`` (the CSV rules).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
from collections.abc import Iterator

from sqlalchemy import Select, String, Table, case, func, literal_column, select, text, type_coerce
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ClauseElement, Executable

from ..csvcells import DELIMITER, LINE_END, QUOTE, QUOTED_IF_CONTAINS
from ..models import Product, utcnow
from .owner_locks import AdvisoryXactLock, FileRecordLock, OwnerLock
from .product_columns import KIND, WRITABLE

IMPORT_CACHE_KIB = -64 * 1024  # SQLite's page cache during an import: 64 MiB (negative: KiB, not pages)
IMPORT_LOCK_ID = 0x6D79617069  # "myapi": the advisory lock that serialises imports
SKU_AT = WRITABLE.index("sku")  # the upsert's key, in a row of WRITABLE values


class ExplainJSON(Executable, ClauseElement):
    """``EXPLAIN (FORMAT JSON) <statement>`` (PostgreSQL), the statement's parameters bound as usual."""

    inherit_cache = False

    def __init__(self, statement: Select):
        self.statement = statement


@compiles(ExplainJSON, "postgresql")
def _explain_json(element: ExplainJSON, compiler, **kw) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.statement, **kw)


def backend_for(session: Session) -> Backend:
    """The backend of the database ``session`` is bound to."""
    name = session.get_bind().dialect.name
    try:
        return BACKENDS[name]
    except KeyError:
        raise LookupError(f"myapi runs on SQLite or PostgreSQL, not {name}") from None


class Backend:
    """The interface; the SQLite and PostgreSQL classes below implement it."""

    import_batch_size: int  # distinct skus per upsert
    read_ahead: bool  # prepare the next batch in a thread while the database writes this one

    def for_update(self, stmt: Select, *, of=None) -> Select:
        """``stmt`` locking the rows it reads (of ``of``) until the transaction ends."""
        raise NotImplementedError

    def month(self, timestamp):
        """``YYYY-MM`` of a UTC timestamp column, as SQL."""
        raise NotImplementedError

    def iso_utc(self, timestamp):
        """``YYYY-MM-DDTHH:MM:SSZ`` of a UTC timestamp column, as SQL (as fields.DateTime writes it)."""
        raise NotImplementedError

    def lock_imports(self, session: Session) -> None:
        """Serialise imports across processes and hosts, until the transaction ends."""
        raise NotImplementedError

    def horizon_expression(self):
        """SQL for the id of the oldest transaction still running, below which every one has ended
        (services/changes.py); None where writers are serialised and every visible change is final."""
        raise NotImplementedError

    def running_horizon(self, session: Session) -> int | None:
        """The value of :meth:`horizon_expression` now (None where there is none)."""
        expression = self.horizon_expression()
        return None if expression is None else session.scalar(select(expression))

    def owner_lock(self, session: Session, number: int) -> OwnerLock:
        """The lock an Idempotency-Key's owner holds while it works (services/owner_locks.py)."""
        raise NotImplementedError

    def estimate_rows(self, session: Session, stmt: Select) -> int | None:
        """The database's own estimate of how many rows ``stmt`` selects (``count=estimated``), or
        None when it has none (the caller then counts)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def bulk_writes(self, session: Session) -> Iterator[None]:
        """Around an import: the connection set up for writing many rows, and set back after, whatever happened."""
        yield

    def prepare_import(self, session: Session) -> None:
        """Ready the transaction for ``upsert`` and ``note_skus`` calls."""
        raise NotImplementedError

    def import_batch(self, numbers: list[int], rows: list[tuple]):
        """Rows of WRITABLE values (distinct skus, money in cents) and their row numbers in the file,
        in the form ``upsert`` and ``note_skus`` take."""
        raise NotImplementedError

    def upsert(self, session: Session, batch, columns: tuple[str, ...] = WRITABLE, *,
               staged: bool = False) -> tuple[int, int, int]:
        """Insert or update (by sku) one ``import_batch``, and note its skus as ``note_skus`` does;
        the counts (created, updated, unchanged). A row equal to the stored product is not written.
        ``columns``: the columns the file has (a stored product keeps the others; a new one gets every
        column of the row). ``staged``: ``changed_rows`` has just been given this batch."""
        raise NotImplementedError

    def changed_rows(self, session: Session, batch, rows: list[tuple], numbers: list[int],
                     columns: tuple[str, ...], last_row: int, limit: int) -> list[tuple[int, tuple | None, tuple]]:
        """Before ``upsert``: the batch's rows up to row ``last_row`` that would change a product, at most
        ``limit``, in row order, as (row number, the stored WRITABLE values or None for a new sku, the
        row's). ``rows`` and ``numbers`` are the batch before ``import_batch`` encoded it."""
        raise NotImplementedError

    def note_skus(self, session: Session, batch) -> None:
        """Note the batch's skus and row numbers, writing no product (an import that already failed)."""
        raise NotImplementedError

    def repeated_skus(self, session: Session) -> list[tuple[str, int]]:
        """``(sku, row number)`` of every noted sku that two batches named, by sku and row."""
        raise NotImplementedError

    def finish_import(self, session: Session) -> None:
        """Drop what ``prepare_import`` made, once every batch is written."""
        raise NotImplementedError

    # An import that reads before it writes (plans, skip_rows, version rows, guardrails, partial files).

    def current_products(self, session: Session, skus: list[str], *, lock: bool) -> dict[str, tuple]:
        """``{sku: (id, version, *WRITABLE values)}`` of the stored products among ``skus`` (money in
        cents; a boolean may come as 0 or 1); with ``lock``, locked until the transaction ends (in id order)."""
        raise NotImplementedError

    def prepare_seen(self, session: Session) -> None:
        """A temporary table of the skus an import has met so far, indexed (``seen_skus``)."""
        raise NotImplementedError

    def seen_skus(self, session: Session, skus: list[str]) -> dict[str, int]:
        """``{sku: the row that named it first}`` of the ``skus`` an earlier batch noted."""
        raise NotImplementedError

    def note_seen(self, session: Session, pairs: list[tuple[str, int]]) -> None:
        """Note ``(sku, row number)`` pairs, none of them noted before."""
        raise NotImplementedError

    def export_csv(self, session: Session, stmt: Select, cells: list, columns, chunk: int) -> Iterator[bytes]:
        """The CSV of ``stmt``: the header (``columns``), then the rows, ~``chunk`` bytes at a time.

        ``cells``: one (text expression, the text column it shows or None) per
        column: free text may need CSV quoting, and an empty one must be
        written as a bare empty cell.
        """
        raise NotImplementedError


# -- SQLite ---------------------------------------------------------------------------

_WRITABLE = ", ".join(WRITABLE)


def _on_conflict(distinct: str, present: tuple[str, ...] = WRITABLE) -> str:
    """The upsert's conflict clause; ``distinct`` is the dialect's null-safe "differs" operator.

    Only the ``present`` columns (those the file has) are set: a stored
    product keeps the others. The WHERE leaves a row whose every such
    column is already the stored value untouched: same version, same
    date_updated (a nightly sync of an unchanged catalogue changes no ETag).
    """
    columns = [name for name in WRITABLE if name != "sku" and name in present]
    if not columns:  # a file of skus alone changes nothing
        return "ON CONFLICT (sku) DO NOTHING"
    return f"""ON CONFLICT (sku) DO UPDATE SET
    {", ".join(f"{name} = excluded.{name}" for name in columns)},
    version = products.version + 1, date_updated = excluded.date_updated
    WHERE {" OR ".join(f"products.{name} {distinct} excluded.{name}" for name in columns)}"""

# The driver's own executemany of one statement (SQLAlchemy's per-row
# parameter processing was two thirds of the import's time). The SQL texts
# here are built from the constant column names of product_columns alone.
SQLITE_UPSERT = f"""
INSERT INTO products ({_WRITABLE}, version, date_created, date_updated)
VALUES ({", ".join("?" for _ in WRITABLE)}, 1, ?, ?)
{_on_conflict("IS NOT")}
"""  # noqa: S608


@functools.lru_cache(maxsize=64)
def _sqlite_upsert(present: tuple[str, ...]) -> str:
    """SQLITE_UPSERT setting only the ``present`` columns of a stored product."""
    return SQLITE_UPSERT if present == WRITABLE else SQLITE_UPSERT.replace(
        _on_conflict("IS NOT"), _on_conflict("IS NOT", present))


# The product row triggers of the change feed (migration 0003) that an upsert fires: name and SQL.
SQLITE_ROW_TRIGGERS = """
SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'products'
AND name IN ('products_changes_insert', 'products_changes_update') ORDER BY name
"""
# The changes of one import batch (what those triggers would have written): the rows above the id
# before the batch were created, the others stamped with the batch's date_updated were updated.
# Two range reads (the primary key, ix_products_date_updated), never an OR that would scan the table.
SQLITE_RECORD_UPDATED = """
INSERT INTO changes (entity, entity_id, op, kind, version, owner_id, txid, date_created)
SELECT 'product', id, 'upsert', 'updated', version, NULL, 0, date_updated
FROM products WHERE date_updated = ? AND id <= ? ORDER BY id
"""
SQLITE_RECORD_CREATED = """
INSERT INTO changes (entity, entity_id, op, kind, version, owner_id, txid, date_created)
SELECT 'product', id, 'upsert', 'created', version, NULL, 0, date_updated FROM products WHERE id > ? ORDER BY id
"""

# The stored products among some skus, as (sku, id, version, *WRITABLE): money in cents.
CURRENT_PRODUCTS = f"SELECT sku, id, version, {_WRITABLE} FROM products WHERE sku IN ({{marks}})"  # noqa: S608
# Every (sku, row number) of this import so far: appended, never looked up row by row.
SQLITE_SKUS_TABLE = "CREATE TEMP TABLE IF NOT EXISTS import_skus (sku TEXT NOT NULL, row_number INTEGER NOT NULL)"
SQLITE_NOTE_SKUS = "INSERT INTO temp.import_skus (sku, row_number) VALUES (?, ?)"
# The skus two batches named (a batch holds a sku once), with each row that named them.
REPEATED_SKUS = """
SELECT sku, row_number FROM {table}
WHERE sku IN (SELECT sku FROM {table} GROUP BY sku HAVING count(*) > 1)
ORDER BY sku, row_number
"""  # noqa: S608

# GLOB: a cell the csv module would quote.
CSV_SPECIALS = "*[" + "".join(QUOTED_IF_CONTAINS) + "]*"


class SQLite(Backend):
    import_batch_size = 1000
    read_ahead = False  # SQLite writes in this process: a second thread would only contend for the GIL

    def horizon_expression(self):
        return None  # BEGIN IMMEDIATE: one writer at a time, so ids are in commit order

    def estimate_rows(self, session: Session, stmt: Select) -> int | None:
        # sqlite_stat1 (written by ANALYZE) has a table's row count, and nothing about a
        # filter's selectivity: an estimate for an unfiltered list of a table ANALYZEd once.
        froms = stmt.get_final_froms()
        if stmt.whereclause is not None or len(froms) != 1 or not isinstance(froms[0], Table):
            return None
        if session.scalar(text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")) == 0:
            return None
        # stat is "<rows> <rows per key>..." (one line per index, or per table without one).
        return session.scalar(text("SELECT max(CAST(stat AS INTEGER)) FROM sqlite_stat1 WHERE tbl = :table"),
                              {"table": froms[0].name})

    def for_update(self, stmt: Select, *, of=None) -> Select:
        return stmt  # the request's BEGIN IMMEDIATE already serialises writers

    def month(self, timestamp):
        return func.strftime("%Y-%m", timestamp)  # SQLite stores UTC

    def iso_utc(self, timestamp):
        # Stored as naive UTC text, "YYYY-MM-DD HH:MM:SS.ffffff"; slicing it
        # is a third of the cost of strftime() over a whole export.
        stored = type_coerce(timestamp, String)
        return func.substr(stored, 1, 10) + "T" + func.substr(stored, 12, 8) + "Z"

    def lock_imports(self, session: Session) -> None:
        pass  # the request's BEGIN IMMEDIATE does

    def owner_lock(self, session: Session, number: int) -> OwnerLock:
        return FileRecordLock(session.get_bind().url.database, number)

    @contextlib.contextmanager
    def bulk_writes(self, session: Session) -> Iterator[None]:
        # SQLite's page cache is 2 MiB per connection by default. An import writes six b-trees
        # (the table, the sku, name, price, category and date indexes) in key order, not file
        # order: with the default cache, pages of the name and price indexes spill and are read
        # again many times. 64 MiB made the upsert of 100k new rows ~1.5x faster (benchmarks/ANALYSIS.md).
        # The pragma is the connection's, not the transaction's: it is set back on the driver's
        # connection itself, which answers even after a failed statement.
        driver = session.connection().connection.driver_connection
        before = driver.execute("PRAGMA cache_size").fetchone()[0]
        driver.execute(f"PRAGMA cache_size={IMPORT_CACHE_KIB:d}")
        try:
            yield
        finally:
            driver.execute(f"PRAGMA cache_size={int(before):d}")

    def prepare_import(self, session: Session) -> None:
        session.execute(text(SQLITE_SKUS_TABLE))
        session.execute(text("DELETE FROM temp.import_skus"))  # a committed import's, on this connection

    def import_batch(self, numbers: list[int], rows: list[tuple]) -> tuple[list[int], list[tuple]]:
        return numbers, rows

    def note_skus(self, session: Session, batch: tuple[list[int], list[tuple]]) -> None:
        numbers, rows = batch
        cursor = session.connection().connection.driver_connection.cursor()
        try:
            cursor.executemany(SQLITE_NOTE_SKUS, zip([row[SKU_AT] for row in rows], numbers, strict=True))
        finally:
            cursor.close()

    def repeated_skus(self, session: Session) -> list[tuple[str, int]]:
        return [tuple(found) for found in session.execute(text(REPEATED_SKUS.format(table="temp.import_skus")))]

    def changed_rows(self, session: Session, batch, rows: list[tuple], numbers: list[int],
                     columns: tuple[str, ...], last_row: int, limit: int) -> list[tuple[int, tuple | None, tuple]]:
        looked = [(number, row) for number, row in zip(numbers, rows, strict=True) if number <= last_row]
        current = self.current_products(session, [row[SKU_AT] for _, row in looked], lock=False)
        compared = [index for index, name in enumerate(WRITABLE) if name in columns]
        changed = []
        for number, row in looked:
            stored = current.get(row[SKU_AT])
            values = None if stored is None else stored[2:]
            if values is None or any(values[index] != row[index] for index in compared):
                changed.append((number, values, row))
                if len(changed) >= limit:
                    break
        return changed

    def upsert(self, session: Session, batch: tuple[list[int], list[tuple]],
               columns: tuple[str, ...] = WRITABLE, *, staged: bool = False) -> tuple[int, int, int]:
        self.note_skus(session, batch)
        _, rows = batch
        # The column's own bind processor: the timestamp is stored as SQLAlchemy stores it.
        dialect = session.get_bind().dialect
        now = Product.__table__.c.date_updated.type.dialect_impl(dialect).bind_processor(dialect)(
            _batch_stamp(session))
        cursor = session.connection().connection.driver_connection.cursor()
        try:
            # A new row's id (the rowid) is above every id before it, and the transaction's
            # write lock keeps other writers out: the ids above this one are the created rows.
            last_id = cursor.execute("SELECT coalesce(max(id), 0) FROM products").fetchone()[0]
            # The change feed's rows of this batch in two statements, not one trigger run per row
            # (which halved the import's speed): the row triggers are dropped for the batch's upsert
            # and made again from their own SQL, inside this transaction. SQLite's DDL is
            # transactional and its writers are serialised: no other connection ever sees them gone,
            # and a failure anywhere rolls the drop back with everything else.
            triggers = cursor.execute(SQLITE_ROW_TRIGGERS).fetchall()
            for name, _sql in triggers:
                cursor.execute(f'DROP TRIGGER "{name}"')
            try:
                cursor.executemany(_sqlite_upsert(columns), [(*row, now, now) for row in rows])
                written = cursor.rowcount  # inserted + updated: an unchanged row is no change
                if triggers:
                    cursor.execute(SQLITE_RECORD_UPDATED, (now, last_id))
                    cursor.execute(SQLITE_RECORD_CREATED, (last_id,))
            finally:
                for _name, sql in triggers:
                    cursor.execute(sql)
            created = cursor.execute("SELECT count(*) FROM products WHERE id > ?", (last_id,)).fetchone()[0]
        finally:
            cursor.close()
        return created, written - created, len(rows) - written

    def finish_import(self, session: Session) -> None:
        session.execute(text("DROP TABLE IF EXISTS temp.import_skus"))

    def current_products(self, session: Session, skus: list[str], *, lock: bool) -> dict[str, tuple]:
        found: dict[str, tuple] = {}
        cursor = session.connection().connection.driver_connection.cursor()
        try:
            for start in range(0, len(skus), 500):  # well under SQLite's bound-parameter limit
                part = skus[start:start + 500]
                cursor.execute(CURRENT_PRODUCTS.format(marks=", ".join("?" * len(part))), part)
                # is_available comes back as 0 or 1, which compares equal to False or True.
                found.update({row[0]: row[1:] for row in cursor.fetchall()})
        finally:
            cursor.close()
        return found  # the request's BEGIN IMMEDIATE keeps every other writer out: no lock needed

    def prepare_seen(self, session: Session) -> None:
        session.execute(text("CREATE TEMP TABLE IF NOT EXISTS import_seen "
                             "(sku TEXT PRIMARY KEY, row_number INTEGER NOT NULL)"))
        session.execute(text("DELETE FROM temp.import_seen"))

    def seen_skus(self, session: Session, skus: list[str]) -> dict[str, int]:
        seen: dict[str, int] = {}
        cursor = session.connection().connection.driver_connection.cursor()
        try:
            for start in range(0, len(skus), 500):
                part = skus[start:start + 500]
                cursor.execute(f"SELECT sku, row_number FROM temp.import_seen WHERE sku IN "  # noqa: S608
                               f"({', '.join('?' * len(part))})", part)
                seen.update(cursor.fetchall())
        finally:
            cursor.close()
        return seen

    def note_seen(self, session: Session, pairs: list[tuple[str, int]]) -> None:
        cursor = session.connection().connection.driver_connection.cursor()
        try:
            cursor.executemany("INSERT INTO temp.import_seen (sku, row_number) VALUES (?, ?)", pairs)
        finally:
            cursor.close()

    def export_csv(self, session: Session, stmt: Select, cells: list, columns, chunk: int) -> Iterator[bytes]:
        # The query returns whole CSV lines, quoted as the csv module would.
        yield (DELIMITER.join(columns) + LINE_END).encode()
        yield from _lines(session, _csv_line_select(stmt, cells), chunk)


_LAST_BATCH_STAMP = "myapi.import_batch_stamp"  # in Session.info: the transaction's last batch's stamp


def _batch_stamp(session: Session) -> dt.datetime:
    """The time a SQLite import batch stamps its rows with: later than the transaction's last batch's.

    SQLITE_RECORD_UPDATED finds a batch's updated rows by that stamp; a clock
    that had not moved since the last batch (a coarse one, or one stepped
    back) would make it record the last batch's rows again.
    """
    now = utcnow()
    last = session.info.get(_LAST_BATCH_STAMP)
    if last is not None and now <= last:
        now = last + dt.timedelta(microseconds=1)
    session.info[_LAST_BATCH_STAMP] = now
    return now


def _csv_line_select(stmt: Select, cells: list) -> Select:
    def quoted(cell, text_column):
        # Tested on the stored text: the neutralising apostrophe never needs quoting,
        # and SQLite then evaluates the cell once, in whichever branch applies.
        return case((text_column.op("GLOB")(CSV_SPECIALS), QUOTE + func.replace(cell, QUOTE, QUOTE * 2) + QUOTE),
                    else_=cell)

    quoted_cells = [cell if text_column is None else quoted(cell, text_column) for cell, text_column in cells]
    line = quoted_cells[0]
    for cell in quoted_cells[1:]:
        line = line + DELIMITER + cell
    return stmt.with_only_columns(line + LINE_END)


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


# -- PostgreSQL -----------------------------------------------------------------------


def _staging_type(name: str) -> str:
    if KIND[name] == "text":
        return "text"
    return Product.__table__.c[name].type.compile(dialect=PGDialect())


# COPY the batch into a temporary table, then one INSERT ... SELECT ... ON
# CONFLICT upserts it (a statement per row was a third of the speed).
# xmax = 0 marks a row the INSERT created rather than updated.
STAGING_TABLE = f"""
CREATE TEMP TABLE IF NOT EXISTS import_batch (
    row_number integer,
    {", ".join(f"{name} {_staging_type(name)}" for name in WRITABLE)}
) ON COMMIT DROP
"""
# Every (sku, row number) of this import so far: appended, never looked up row by row.
SKUS_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS import_skus (sku text NOT NULL, row_number integer NOT NULL) ON COMMIT DROP
"""
NOTE_SKUS = "INSERT INTO import_skus (sku, row_number) SELECT sku, row_number FROM import_batch"
# One statement notes the batch's skus and upserts it; RETURNING lists the rows
# inserted or updated (an unchanged row is neither).
STAGED_UPSERT = f"""
WITH noted AS ({NOTE_SKUS}),
upserted AS (
    INSERT INTO products ({_WRITABLE}, version, date_created, date_updated)
    SELECT {_WRITABLE}, 1, :now, :now FROM import_batch
    {_on_conflict("IS DISTINCT FROM")}
    RETURNING xmax = 0 AS created
)
SELECT count(*) FILTER (WHERE created), count(*) FROM upserted
"""  # noqa: S608


@functools.lru_cache(maxsize=64)
def _changed_rows_query(present: tuple[str, ...]) -> str:
    """The staged rows that would change a product (new skus included), first rows first."""
    differs = " OR ".join(f"p.{name} IS DISTINCT FROM b.{name}" for name in present if name != "sku") or "false"
    return f"""
SELECT b.row_number, p.id, {", ".join(f"p.{name}" for name in WRITABLE)}, {", ".join(f"b.{name}" for name in WRITABLE)}
FROM import_batch b LEFT JOIN products p ON p.sku = b.sku
WHERE b.row_number <= :last AND (p.id IS NULL OR {differs})
ORDER BY b.row_number LIMIT :limit
"""  # noqa: S608


@functools.lru_cache(maxsize=64)
def _staged_upsert(present: tuple[str, ...]) -> str:
    """STAGED_UPSERT setting only the ``present`` columns of a stored product."""
    return STAGED_UPSERT if present == WRITABLE else STAGED_UPSERT.replace(
        _on_conflict("IS DISTINCT FROM"), _on_conflict("IS DISTINCT FROM", present))

_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(value) else value


def _copy_text_column(values: tuple[str, ...]):
    # One search over the whole column: most batches have nothing to escape.
    return values if _COPY_SPECIAL.search("".join(values)) is None else map(_copy_text, values)


def _copy_column(kind: str):
    """How COPY's text format writes a column of this kind (the validating thread runs it)."""
    if kind == "text":
        return _copy_text_column
    if kind == "boolean":
        return lambda values: ["t" if value else "f" for value in values]
    return lambda values: map(str, values)  # integers; money in integer cents


_COPY_COLUMNS = [_copy_column(KIND[name]) for name in WRITABLE]


class PostgreSQL(Backend):
    import_batch_size = 5_000  # COPY + one INSERT ... SELECT per batch: bigger batches, fewer statements
    read_ahead = True  # validating the next batch (Python) overlaps the database writing this one

    def horizon_expression(self):
        return literal_column("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")

    def estimate_rows(self, session: Session, stmt: Select) -> int | None:
        # The planner's row estimate for the list's query (EXPLAIN plans, it does not run it).
        plan = session.scalar(ExplainJSON(stmt))
        return max(int(plan[0]["Plan"]["Plan Rows"]), 0)

    def for_update(self, stmt: Select, *, of=None) -> Select:
        return stmt.with_for_update(of=of)

    def month(self, timestamp):
        return func.to_char(func.timezone("UTC", timestamp), "YYYY-MM")

    def iso_utc(self, timestamp):
        return func.to_char(func.timezone("UTC", timestamp), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')

    def lock_imports(self, session: Session) -> None:
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": IMPORT_LOCK_ID})

    def owner_lock(self, session: Session, number: int) -> OwnerLock:
        return AdvisoryXactLock(session, number)

    def prepare_import(self, session: Session) -> None:
        session.execute(text(STAGING_TABLE))
        session.execute(text(SKUS_TABLE))

    def import_batch(self, numbers: list[int], rows: list[tuple]) -> tuple[bytes, int]:
        """The row numbers and rows in COPY's text format, built column by column; and the row count."""
        columns = [map(str, numbers)]
        columns += [encode(values) for encode, values in zip(_COPY_COLUMNS, zip(*rows, strict=True), strict=True)]
        lines = "\n".join(map("\t".join, zip(*columns, strict=True)))
        return (lines + "\n").encode("utf-8"), len(rows)  # the connection's client_encoding (db.make_engine)

    def _stage(self, session: Session, payload: bytes) -> None:
        session.execute(text("TRUNCATE import_batch"))
        cursor = session.connection().connection.driver_connection.cursor()
        with cursor, cursor.copy(f"COPY import_batch (row_number, {_WRITABLE}) FROM STDIN") as copy:
            copy.write(payload)

    def changed_rows(self, session: Session, batch, rows: list[tuple], numbers: list[int],
                     columns: tuple[str, ...], last_row: int, limit: int) -> list[tuple[int, tuple | None, tuple]]:
        # Compared in the database: only the changing rows come back (one small answer, which matters
        # here: the validating thread holds the GIL whenever this one waits for the network).
        self._stage(session, batch[0])
        found = session.execute(text(_changed_rows_query(columns)), {"last": last_row, "limit": limit}).all()
        width = len(WRITABLE)
        return [(row[0], None if row[1] is None else tuple(row[2:2 + width]), tuple(row[2 + width:]))
                for row in found]

    def upsert(self, session: Session, batch: tuple[bytes, int],
               columns: tuple[str, ...] = WRITABLE, *, staged: bool = False) -> tuple[int, int, int]:
        payload, count = batch
        if not staged:
            self._stage(session, payload)
        created, written = session.execute(text(_staged_upsert(columns)), {"now": utcnow()}).one()
        return created, written - created, count - written

    def note_skus(self, session: Session, batch: tuple[bytes, int]) -> None:
        self._stage(session, batch[0])
        session.execute(text(NOTE_SKUS))

    def repeated_skus(self, session: Session) -> list[tuple[str, int]]:
        return [tuple(found) for found in session.execute(text(REPEATED_SKUS.format(table="import_skus")))]

    def finish_import(self, session: Session) -> None:
        pass  # the temporary tables go at commit (ON COMMIT DROP)

    def current_products(self, session: Session, skus: list[str], *, lock: bool) -> dict[str, tuple]:
        sql = f"SELECT sku, id, version, {_WRITABLE} FROM products WHERE sku = ANY(%s)"  # noqa: S608
        if lock:  # in id order, as orders lock their products
            sql += " ORDER BY id FOR UPDATE"
        with session.connection().connection.driver_connection.cursor() as cursor:
            cursor.execute(sql, (skus,))
            return {row[0]: tuple(row[1:]) for row in cursor.fetchall()}

    def prepare_seen(self, session: Session) -> None:
        session.execute(text("CREATE TEMP TABLE IF NOT EXISTS import_seen "
                             "(sku text PRIMARY KEY, row_number integer NOT NULL) ON COMMIT DROP"))

    def seen_skus(self, session: Session, skus: list[str]) -> dict[str, int]:
        with session.connection().connection.driver_connection.cursor() as cursor:
            cursor.execute("SELECT sku, row_number FROM import_seen WHERE sku = ANY(%s)", (skus,))
            return dict(cursor.fetchall())

    def note_seen(self, session: Session, pairs: list[tuple[str, int]]) -> None:
        cursor = session.connection().connection.driver_connection.cursor()
        with cursor, cursor.copy("COPY import_seen (sku, row_number) FROM STDIN") as copy:
            for pair in pairs:
                copy.write_row(pair)

    def export_csv(self, session: Session, stmt: Select, cells: list, columns, chunk: int) -> Iterator[bytes]:
        yield (DELIMITER.join(columns) + "\n").encode()  # as COPY ends its lines
        # NULLIF: COPY quotes an empty string (""); the csv module leaves it bare.
        query = stmt.with_only_columns(*(cell if text_column is None else func.nullif(cell, "")
                                         for cell, text_column in cells))
        yield from _copy_out(session, query, chunk)


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


BACKENDS: dict[str, Backend] = {"sqlite": SQLite(), "postgresql": PostgreSQL()}
