"""CSV import of the catalogue.

Import reads the upload as a stream of CSV records, validates each with the
same input types as ``PUT /products/<id>`` (given to it as ``rules``), and
upserts valid rows by sku in batches inside one transaction, as the
database's backend does it (``backends``: on PostgreSQL each batch is COPY'd
into a temporary table and upserted from it while a second thread validates
the next batch; on SQLite the driver's ``executemany`` runs one upsert per
row). Memory holds a few batches, not the file. Any bad row makes the whole
import a no-op (the transaction is rolled back) and every bad row is
reported, the first 100 in full. A sku named twice in one file is a row
error naming both rows: a batch's repeats are found as it is built, and
repeats across batches by the database, which notes every batch's skus in
a temporary table (memory never holds the file's skus). A row equal to the
stored product (every column the import
writes) is written not at all: its version and date_updated stay, and it
counts as ``unchanged``. Imports run one at a time (an advisory lock on
PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), so two overlapping uploads
neither deadlock nor interleave.

The columns are ``product_columns.WRITABLE``; the other columns an export
writes (``CSV_COLUMNS``) are accepted and ignored, so an exported file can be
edited and imported again as it is.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from .backends import SKU_AT, backend_for
from .errors import Invalid
from .product_columns import CSV_COLUMNS, KIND, WRITABLE

MAX_REPORTED_ERRORS = 100


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
    unchanged: int = 0  # rows equal to the stored product: nothing written
    error_count: int = 0
    dry_run: bool = False
    # The MAX_REPORTED_ERRORS errors of the lowest rows, as (-row, order, error): with read-ahead,
    # two threads report errors, not always in row order.
    _kept: list = field(default_factory=list, repr=False)
    _order: itertools.count = field(default_factory=itertools.count, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_error(self, row: int, column: str, message: str) -> None:
        entry = (-row, -next(self._order), {"row": row, "field": column, "message": message})
        with self._lock:
            self.error_count += 1
            if len(self._kept) < MAX_REPORTED_ERRORS:
                heapq.heappush(self._kept, entry)
            else:
                heapq.heappushpop(self._kept, entry)  # drops the highest row

    @property
    def errors(self) -> list[dict]:
        """The first MAX_REPORTED_ERRORS errors, by row (a row's own in the order found)."""
        return [error for _, _, error in sorted(self._kept, key=lambda entry: (-entry[0], -entry[1]))]


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


def _check_header(header: list[str] | None, rules: dict[str, Rule]) -> list[str]:
    if not header:
        raise ImportRejected("The file is empty: it needs a header row and at least one product.")
    columns = [name.strip().lower() for name in header]
    missing = [name for name in WRITABLE if rules[name].required and name not in columns]
    unknown = [name for name in columns if name not in CSV_COLUMNS]
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    errors = {}
    for name in missing:
        errors[name] = "Missing column."
    for name in unknown:
        errors[name[:64] or "(blank)"] = "Unknown column."
    for name in duplicated:
        errors[name[:64]] = "Column appears more than once."
    if errors:
        optional = [name for name in WRITABLE if not rules[name].required]
        raise ImportRejected(
            "The header row must name the columns " + ", ".join(WRITABLE)
            + f" ({' and '.join(optional)} are optional).",
            errors,
        )
    return columns


def _validator(columns: list[str], rules: dict[str, Rule]):
    """A function checking one CSV record against ``rules``, built once per import.

    It returns the upsert row (a tuple in WRITABLE order, money in integer
    cents) or None after recording the record's errors in ``result``.
    """
    width = len(columns)
    # (name, the cell's index or None when the column is absent, rule)
    plan = [(name, columns.index(name) if name in columns else None, rules[name]) for name in WRITABLE]
    money_at = [index for index, name in enumerate(WRITABLE) if KIND[name] == "money"]

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
        for index in money_at:
            values[index] = int(values[index] * 100)  # a validated Decimal with two places: exact
        return tuple(values)

    return validated


def repeated_sku(result: ImportResult, sku: str, first: int, row: int) -> None:
    result.add_error(row, "sku", f"{sku} is on rows {first} and {row}: a file may name a sku once.")


def _validated_batches(reader, columns: list[str], rules: dict[str, Rule], result: ImportResult,
                       batch_size: int) -> Iterator[tuple[list[int], list[tuple]]]:
    """Validate every record; yield the good ones, ``batch_size`` at a time, as (row numbers, upsert rows).

    A sku repeated inside a batch is reported here; one repeated across
    batches, by the backend's ``repeated_skus`` at the end. Valid rows are
    yielded even after a bad one, so that every repeat is found (nothing is
    written then).
    """
    validated = _validator(columns, rules)
    batch: dict[str, tuple[int, tuple]] = {}  # sku -> (row number, row)
    row_number = 1
    try:
        for record in reader:
            row_number += 1
            if not "".join(record).strip():
                continue  # blank lines are not products
            result.rows += 1
            row = validated(record, row_number, result)
            if row is None:
                continue
            earlier = batch.get(row[SKU_AT])
            if earlier is not None:
                repeated_sku(result, row[SKU_AT], earlier[0], row_number)
                continue
            batch[row[SKU_AT]] = (row_number, row)
            if len(batch) >= batch_size:
                yield _unzipped(batch)
                batch = {}
    except csv.Error as error:
        result.add_error(row_number + 1, "*", f"Not valid CSV: {error}.")
    except UnicodeDecodeError:
        result.add_error(row_number + 1, "*", "The file is not UTF-8 text.")
    if batch:
        yield _unzipped(batch)


def _repeats_across_batches(found: list[tuple[str, int]], result: ImportResult) -> None:
    """Report each later row of a sku that several batches named (the rows by sku, then row number)."""
    first: dict[str, int] = {}
    for sku, row in found:
        if sku in first:
            repeated_sku(result, sku, first[sku], row)
        else:
            first[sku] = row


def _unzipped(batch: dict[str, tuple[int, tuple]]) -> tuple[list[int], list[tuple]]:
    numbers, rows = zip(*batch.values(), strict=True)
    return list(numbers), list(rows)


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
        columns = _check_header(next(reader, None), rules)
    except csv.Error as error:
        raise ImportRejected(f"The header row is not valid CSV: {error}.") from None
    except UnicodeDecodeError:
        raise ImportRejected("The file is not UTF-8 text.") from None
    backend = backend_for(session)
    backend.lock_imports(session)
    result = ImportResult()
    backend.prepare_import(session)
    batches = (backend.import_batch(numbers, rows)
               for numbers, rows in _validated_batches(reader, columns, rules, result, backend.import_batch_size))
    if backend.read_ahead:  # a thread validates (and encodes) the next batch while this one is written
        batches = _read_ahead(batches)
    # closing(): when a write fails, the validating thread stops now, not
    # whenever the traceback holding the generator is collected.
    with closing(batches):
        for batch in batches:
            if result.error_count:
                backend.note_skus(session, batch)  # only to find the repeats: nothing will be kept
                continue
            created, updated, unchanged = backend.upsert(session, batch)
            result.created += created
            result.updated += updated
            result.unchanged += unchanged
    _repeats_across_batches(backend.repeated_skus(session), result)
    if result.error_count:
        raise InvalidRows(result)
    if result.rows == 0:
        raise ImportRejected("The file has a header but no product rows.")
    backend.finish_import(session)
    return result
