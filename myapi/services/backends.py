"""What differs between SQLite and PostgreSQL, one object per database.

A service asks ``backend_for(session)`` and calls the backend rather than
comparing dialect names. A backend knows how to lock rows for an update,
format a UTC timestamp in SQL (a report's month, an export's ISO time),
serialise imports, bulk upsert a batch of products, and stream a query's
rows as CSV written by the database:

* SQLite: the request's ``BEGIN IMMEDIATE`` already serialises writers, so
  nothing more is locked; the import runs the driver's own ``executemany``;
  the CSV lines are built by the query itself.
* PostgreSQL: ``SELECT ... FOR UPDATE``; an advisory lock serialises
  imports; each batch is COPY'd into a temporary table and upserted from it
  with one ``INSERT ... SELECT ... ON CONFLICT``; the export is ``COPY (...)
  TO STDOUT``, relayed as it arrives.

The SQL is built from ``product_columns`` (the column list) and
``myapi.csvcells`` (the CSV rules).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from sqlalchemy import Select, String, case, func, select, text, type_coerce
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.orm import Session

from ..csvcells import DELIMITER, LINE_END, QUOTE, QUOTED_IF_CONTAINS
from ..models import Product, utcnow
from .product_columns import KIND, WRITABLE

IMPORT_LOCK_ID = 0x6D79617069  # "myapi": the advisory lock that serialises imports
SKU_AT = WRITABLE.index("sku")  # the upsert's key, in a row of WRITABLE values


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

    def prepare_import(self, session: Session) -> None:
        """Ready the transaction for ``upsert`` calls."""
        raise NotImplementedError

    def import_batch(self, rows: list[tuple]):
        """Rows of WRITABLE values (distinct skus, money in cents) in the form ``upsert`` takes."""
        raise NotImplementedError

    def upsert(self, session: Session, batch) -> tuple[int, int]:
        """Insert or update (by sku) one ``import_batch``; the counts (created, updated)."""
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
_ON_CONFLICT = f"""ON CONFLICT (sku) DO UPDATE SET
    {", ".join(f"{name} = excluded.{name}" for name in WRITABLE if name != "sku")},
    version = products.version + 1, date_updated = excluded.date_updated"""

# The driver's own executemany of one statement (SQLAlchemy's per-row
# parameter processing was two thirds of the import's time). The SQL texts
# here are built from the constant column names of product_columns alone.
SQLITE_UPSERT = f"""
INSERT INTO products ({_WRITABLE}, version, date_created, date_updated)
VALUES ({", ".join("?" for _ in WRITABLE)}, 1, ?, ?)
{_ON_CONFLICT}
"""  # noqa: S608

# GLOB: a cell the csv module would quote.
CSV_SPECIALS = "*[" + "".join(QUOTED_IF_CONTAINS) + "]*"


class SQLite(Backend):
    import_batch_size = 1000
    read_ahead = False  # SQLite writes in this process: a second thread would only contend for the GIL

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

    def prepare_import(self, session: Session) -> None:
        pass

    def import_batch(self, rows: list[tuple]) -> list[tuple]:
        return rows

    def upsert(self, session: Session, rows: list[tuple]) -> tuple[int, int]:
        skus = [row[SKU_AT] for row in rows]
        existing = 0
        for start in range(0, len(skus), 500):  # well under SQLite's bound-parameter limit
            existing += session.scalar(select(func.count()).where(Product.sku.in_(skus[start:start + 500])))
        # The column's own bind processor: the timestamp is stored as SQLAlchemy stores it.
        dialect = session.get_bind().dialect
        now = Product.__table__.c.date_updated.type.dialect_impl(dialect).bind_processor(dialect)(utcnow())
        cursor = session.connection().connection.driver_connection.cursor()
        try:
            cursor.executemany(SQLITE_UPSERT, [(*row, now, now) for row in rows])
        finally:
            cursor.close()
        return len(rows) - existing, existing

    def export_csv(self, session: Session, stmt: Select, cells: list, columns, chunk: int) -> Iterator[bytes]:
        # The query returns whole CSV lines, quoted as the csv module would.
        yield (DELIMITER.join(columns) + LINE_END).encode()
        yield from _lines(session, _csv_line_select(stmt, cells), chunk)


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
    {", ".join(f"{name} {_staging_type(name)}" for name in WRITABLE)}
) ON COMMIT DROP
"""
STAGED_UPSERT = f"""
WITH upserted AS (
    INSERT INTO products ({_WRITABLE}, version, date_created, date_updated)
    SELECT {_WRITABLE}, 1, :now, :now FROM import_batch
    {_ON_CONFLICT}
    RETURNING xmax = 0 AS created
)
SELECT count(*) FILTER (WHERE created), count(*) FROM upserted
"""  # noqa: S608

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

    def for_update(self, stmt: Select, *, of=None) -> Select:
        return stmt.with_for_update(of=of)

    def month(self, timestamp):
        return func.to_char(func.timezone("UTC", timestamp), "YYYY-MM")

    def iso_utc(self, timestamp):
        return func.to_char(func.timezone("UTC", timestamp), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')

    def lock_imports(self, session: Session) -> None:
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": IMPORT_LOCK_ID})

    def prepare_import(self, session: Session) -> None:
        session.execute(text(STAGING_TABLE))

    def import_batch(self, rows: list[tuple]) -> bytes:
        """The rows in COPY's text format, built column by column."""
        columns = [encode(values) for encode, values in zip(_COPY_COLUMNS, zip(*rows, strict=True), strict=True)]
        lines = "\n".join(map("\t".join, zip(*columns, strict=True)))
        return (lines + "\n").encode("utf-8")  # the connection's client_encoding (db.make_engine)

    def upsert(self, session: Session, payload: bytes) -> tuple[int, int]:
        session.execute(text("TRUNCATE import_batch"))
        cursor = session.connection().connection.driver_connection.cursor()
        with cursor, cursor.copy(f"COPY import_batch ({_WRITABLE}) FROM STDIN") as copy:
            copy.write(payload)
        created, total = session.execute(text(STAGED_UPSERT), {"now": utcnow()}).one()
        return created, total - created

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
