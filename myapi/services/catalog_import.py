"""CSV import of the catalogue (DESIGN §5, §12).

Import reads the upload as a stream of CSV records, validates each with the
same input types as ``PUT /products/<id>`` (given to it as ``rules``), and
upserts valid rows by sku in batches inside one transaction. Memory holds a
few batches, not the file. Imports run one at a time (an advisory lock on
PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), so two overlapping uploads
neither deadlock nor interleave. A plan (and a dry run on the reading path),
which writes nothing but its audit record, does not take the lock: on
PostgreSQL it runs alongside an import (it reads the committed catalogue).

**The columns.** A file names ``sku`` and any of the other WRITABLE columns
(``product_columns``), in any order. A stored product changes in the
columns the file has and keeps the others; a new product needs every
required column (a file without one, a *partial* file, may only change
stored products: a new sku in it is a row error naming the missing
columns). The other columns an export writes (``CSV_COLUMNS``) and the
``error`` column of a rejected-rows file are accepted and ignored, so an
exported or rejected file can be edited and imported again as it is. An
optional ``version`` column makes each row conditional: a row made from
another version of its product is a row error, never an overwrite.

**Two ways through.** The default import (``on_error=reject_file``, no plan,
no ``version`` column, no guardrail, every required column) writes without
reading first: each batch goes to the database's bulk upsert, and any bad
row makes the whole import a no-op (the transaction is rolled back; the
first 100 row errors are listed). It checks a batch with nothing wrong in
it column by column (each input type's column form, common/inputs.py), and
any other batch row by row, which reports each error. For the answer and
the audit record it lists the changes among its first LISTING_ROWS rows
(one read, whatever the file's size). Every other import *reads before it writes*
(:func:`_planned_import`): a batch's stored products are read (and locked
when it writes), each row is classed as created, updated with each changed
column's before and after, unchanged, or rejected (bad cells, a repeated
sku, a stale version, a new sku in a partial file), the price guardrail is
checked, and only the created and updated rows are written. That is how
``plan=true`` (nothing written, the plan answered), ``on_error=skip_rows``
(the valid rows written, the rejected ones answered), ``version`` rows and
``max_price_change`` work.

**What an answer can stream.** A plan's full diff (one entry per row) and an
import's rejected rows (as uploaded, with their errors) can be any size:
they are written to a :class:`Spool` (a temporary file, in memory up to
1 MiB) while the file is read, and the answer streams them from it
(common/import_answers.py). Nothing holds the file.

A sku named twice in one file is a row error naming both rows: the default
path finds a batch's repeats as it is built, and repeats across batches by
the database, which notes every batch's skus in a temporary table (one
``GROUP BY`` at the end); the reading path looks each batch's skus up in an
indexed temporary table before it writes them.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
from sqlalchemy.orm import Session

from .backends import SKU_AT, Backend, backend_for
from .errors import Invalid
from .import_audit import Actor, record_import
from .product_columns import CSV_COLUMNS, KIND, WRITABLE
from .product_diff import (
    DIFF_COLUMNS,
    LargestMoves,
    PriceChangeRefused,
    PriceGuardrail,
    created_diff,
    shown,
    stale_message,
)
from .read_ahead import read_ahead

MAX_REPORTED_ERRORS = 100
#: How many changes (created and updated products, in file order) an answer and its audit record list.
CHANGES_LISTED = 100
#: The default path, which writes without reading, lists the changes among this many first rows only:
#: reading them costs one query, whatever the size of the file.
LISTING_ROWS = 1000
#: A spool stays in memory up to this size, then moves to a temporary file.
SPOOL_MEMORY = 1024 * 1024
VERSION = "version"  # the optional column that makes a row conditional
ERROR = "error"  # the column a rejected-rows file adds: ignored on the way back in
ON_ERROR = ("reject_file", "skip_rows")
_MAX_VERSION = 2**31 - 1


@dataclass
class Rule:
    """How to read one column: the input type, and what an empty cell means."""

    convert: Callable
    required: bool
    default: object = None


@dataclass
class ImportOptions:
    """What the caller asked for (query parameters), and what the answer will stream.

    ``spool``: ``"diff"`` (a plan answered as NDJSON or CSV: every row's
    entry) or ``"rejected"`` (an import answered as CSV or NDJSON: the
    rejected rows as uploaded), else None (a JSON answer lists the first
    entries only).
    """

    dry_run: bool = False
    plan: bool = False
    on_error: str = "reject_file"
    max_price_change: Decimal | None = None
    spool: str | None = None

    @property
    def writes(self) -> bool:
        return not (self.dry_run or self.plan)


@dataclass(frozen=True)
class Layout:
    """The header row: what each cell of a record is."""

    header: tuple[str, ...]  # as uploaded
    columns: tuple[str, ...]  # normalised (stripped, lower case)
    present: tuple[str, ...]  # the WRITABLE columns the file has, in WRITABLE order
    missing: tuple[str, ...]  # the required columns it lacks: a partial file
    version_at: int | None
    error_at: int | None

    @property
    def partial(self) -> bool:
        return bool(self.missing)


class Spool:
    """JSON lines in a temporary file (in memory up to SPOOL_MEMORY): what an answer streams."""

    def __init__(self, kind: str):
        self.kind = kind  # "diff" | "rejected"
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115 (closed by close())

    def add(self, record: dict) -> None:
        self._file.write(orjson.dumps(record) + b"\n")

    def __iter__(self) -> Iterator[dict]:
        self._file.seek(0)
        for line in self._file:
            yield orjson.loads(line)

    def close(self) -> None:
        self._file.close()


@dataclass
class ImportResult:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0  # rows equal to the stored product: nothing written
    rejected: int = 0  # rows refused (skip_rows: not written; a plan: would be)
    error_count: int = 0
    dry_run: bool = False
    plan: bool = False
    on_error: str = "reject_file"
    max_price_change: Decimal | None = None
    columns: tuple[str, ...] = ()  # the columns the file sets (and version, when it has it)
    changes: list[dict] = field(default_factory=list)  # the first CHANGES_LISTED, in file order
    price_guardrail: list[dict] = field(default_factory=list)  # the first offences of max_price_change
    largest_price_changes: list[dict] | None = None  # a plan's: the largest price moves in the file
    refused: str | None = None  # a plan's: why the import would write nothing
    import_id: int | None = None
    layout: Layout | None = field(default=None, repr=False)
    spool: Spool | None = field(default=None, repr=False)
    unreadable: bool = False  # the file stopped being CSV (or UTF-8) part way
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

    def list_change(self, entry: dict) -> None:
        if len(self.changes) < CHANGES_LISTED:
            self.changes.append(entry)

    @property
    def changes_truncated(self) -> bool:
        """Whether more rows changed (or would) than ``changes`` lists."""
        return len(self.changes) < self.created + self.updated

    @property
    def listing(self) -> bool:
        """Whether more changes are still to be listed."""
        return len(self.changes) < CHANGES_LISTED


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


# -- the header ---------------------------------------------------------------------------

#: Columns read: the product's own and ``version``; ignored: the rest of an export's, and ``error``.
ACCEPTED = (*CSV_COLUMNS, VERSION, ERROR)


def _check_header(header: list[str] | None, rules: dict[str, Rule]) -> Layout:
    if not header:
        raise ImportRejected("The file is empty: it needs a header row and at least one product.")
    columns = tuple(name.strip().lower() for name in header)
    unknown = [name for name in columns if name not in ACCEPTED]
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    errors = {}
    if "sku" not in columns:
        errors["sku"] = "Missing column."
    for name in unknown:
        errors[name[:64] or "(blank)"] = "Unknown column."
    for name in duplicated:
        errors[name[:64]] = "Column appears more than once."
    if errors:
        required = [name for name in WRITABLE if rules[name].required]
        optional = [name for name in WRITABLE if not rules[name].required]
        raise ImportRejected(
            "The header row must name sku and the columns to set, from " + ", ".join(WRITABLE[1:])
            + f" (a new product needs {', '.join(required)}; {' and '.join(optional)} are optional)"
            + f", and may have {VERSION} to make each row conditional.",
            errors,
        )
    return Layout(
        header=tuple(header),
        columns=columns,
        present=tuple(name for name in WRITABLE if name in columns),
        missing=tuple(name for name in WRITABLE if rules[name].required and name not in columns),
        version_at=columns.index(VERSION) if VERSION in columns else None,
        error_at=columns.index(ERROR) if ERROR in columns else None,
    )


def _validator(layout: Layout, rules: dict[str, Rule]):
    """A function checking one CSV record against ``rules``, built once per import.

    It returns the upsert row (a tuple in WRITABLE order, money in integer
    cents; a column the file lacks holds its default, None when it has
    none) or None after reporting the record's errors to ``report(row,
    column, message)``.
    """
    width = len(layout.columns)
    # (name, the cell's index or None when the column is absent, rule)
    plan = [(name, layout.columns.index(name) if name in layout.columns else None, rules[name])
            for name in WRITABLE]
    money_at = [index for index, name in enumerate(WRITABLE) if KIND[name] == "money"]

    def validated(record: list[str], row_number: int, report: Callable[[int, str, str], None]) -> tuple | None:
        if len(record) != width:
            report(row_number, "*", f"Expected {width} cells, found {len(record)}.")
            return None
        values, ok = [], True
        for name, index, rule in plan:
            if index is None:
                values.append(rule.default)
                continue
            cell = record[index]
            if cell == "":
                if rule.required:
                    report(row_number, name, "This field is required.")
                    ok = False
                values.append(rule.default)
                continue
            try:
                values.append(rule.convert(cell))
            except ValueError as error:
                report(row_number, name, str(error))
                ok = False
                values.append(None)
        if not ok:
            return None
        for index in money_at:
            if values[index] is not None:
                values[index] = int(values[index] * 100)  # a validated Decimal with two places: exact
        return tuple(values)

    return validated


def _version_of(record: list[str], layout: Layout) -> int | None:
    """The row's ``version`` cell: None when empty; ValueError when not a version number."""
    cell = record[layout.version_at].strip()
    if not cell:
        return None
    if not cell.isdigit() or len(cell) > 10 or not 1 <= int(cell) <= _MAX_VERSION:
        raise ValueError("must be the product's version, a whole number from 1 (or empty: no condition)")
    return int(cell)


def repeated_sku(report: Callable[[int, str, str], None], sku: str, first: int, row: int) -> None:
    report(row, "sku", f"{sku} is on rows {first} and {row}: a file may name a sku once.")


# -- the default path: write without reading ---------------------------------------------


def _column_form(convert: Callable, attribute: str, then: Callable) -> Callable[[list[str]], list]:
    """An input type's column form (common/inputs.py: ``many``, or ``many_cents`` for money), or
    ``then(convert(cell))`` for each cell when it has none; either raises ValueError for a refused cell."""
    many = getattr(convert, attribute, None)
    return many if many is not None else (lambda cells: [then(convert(cell)) for cell in cells])


def _column_validator(layout: Layout, rules: dict[str, Rule]):
    """A function checking a batch of records column by column, built once per import.

    The default path's fast way through a batch with nothing wrong in it:
    each column's cells go through their input type's column form
    (:func:`_column_form`: one pass over the column, no per-row Python
    loop; money straight to integer cents) and the rows are zipped back
    together. It answers the same upsert rows as :func:`_validator` would,
    row by row, or None when any record is refused or a sku repeats: the
    caller then checks that batch row by row, which finds and reports every
    error exactly as before.
    """
    width = len(layout.columns)
    plan = []  # (the cell's index or None, column form, required, the value of an empty cell)
    for name in WRITABLE:
        rule = rules[name]
        default = rule.default
        if KIND[name] == "money":
            many = _column_form(rule.convert, "many_cents", lambda value: int(value * 100))
            default = None if default is None else int(default * 100)
        else:
            many = _column_form(rule.convert, "many", lambda value: value)
        plan.append((layout.columns.index(name) if name in layout.columns else None, many, rule.required, default))

    def validated_columns(records: tuple[list[str], ...]) -> list[tuple] | None:
        if any(len(record) != width for record in records):
            return None
        cells_of = list(zip(*records, strict=True))  # one tuple of cells per column of the file
        columns = []
        try:
            for index, many, required, default in plan:
                if index is None:
                    columns.append(itertools.repeat(default))
                    continue
                cells = cells_of[index]
                if "" not in cells:
                    columns.append(many(cells))
                elif required:
                    return None
                else:
                    given = iter(many([cell for cell in cells if cell != ""]))
                    columns.append([default if cell == "" else next(given) for cell in cells])
        except ValueError:
            return None
        rows = list(zip(*columns, strict=False))  # the repeated defaults (absent columns) end with the cells
        skus = [row[SKU_AT] for row in rows]
        if len(set(skus)) != len(skus):
            return None
        return rows

    return validated_columns


def _validated_batches(reader, layout: Layout, rules: dict[str, Rule], result: ImportResult,
                       batch_size: int) -> Iterator[tuple[list[int], list[tuple]]]:
    """Validate every record; yield the good ones, up to ``batch_size`` at a time, as (row numbers, upsert rows).

    A batch with nothing wrong in it is checked column by column
    (:func:`_column_validator`); any other is checked row by row, which
    reports each error. A sku repeated inside a batch is reported here; one
    repeated across batches, by the backend's ``repeated_skus`` at the end.
    Valid rows are yielded even after a bad one, so that every repeat is
    found (nothing is written then).
    """
    validated = _validator(layout, rules)
    validated_columns = _column_validator(layout, rules)
    report = result.add_error
    for numbered in _record_batches(reader, result, batch_size):
        numbers, records = zip(*numbered, strict=True)
        rows = validated_columns(records)
        if rows is not None:
            yield list(numbers), rows
            continue
        batch: dict[str, tuple[int, tuple]] = {}  # sku -> (row number, row)
        for row_number, record in numbered:
            row = validated(record, row_number, report)
            if row is None:
                continue
            earlier = batch.get(row[SKU_AT])
            if earlier is not None:
                repeated_sku(report, row[SKU_AT], earlier[0], row_number)
                continue
            batch[row[SKU_AT]] = (row_number, row)
        if batch:
            yield _unzipped(batch)


def _numbered_records(reader, result: ImportResult) -> Iterator[tuple[int, list[str]]]:
    """The file's non-blank records with their row numbers (the header is row 1), each counted in
    ``result.rows``; a file that stops being CSV or UTF-8 ends here with a row error (``unreadable``)."""
    row_number = 1
    try:
        for record in reader:
            row_number += 1
            if not "".join(record).strip():
                continue  # blank lines are not products
            result.rows += 1
            yield row_number, record
    except csv.Error as error:
        result.add_error(row_number + 1, "*", f"Not valid CSV: {error}.")
        result.unreadable = True
    except UnicodeDecodeError:
        result.add_error(row_number + 1, "*", "The file is not UTF-8 text.")
        result.unreadable = True


def _repeats_across_batches(found: list[tuple[str, int]], result: ImportResult) -> None:
    """Report each later row of a sku that several batches named (the rows by sku, then row number)."""
    first: dict[str, int] = {}
    for sku, row in found:
        if sku in first:
            repeated_sku(result.add_error, sku, first[sku], row)
        else:
            first[sku] = row


def _unzipped(batch: dict[str, tuple[int, tuple]]) -> tuple[list[int], list[tuple]]:
    numbers, rows = zip(*batch.values(), strict=True)
    return list(numbers), list(rows)


def _list_changes(session: Session, backend: Backend, layout: Layout, numbers: list[int], rows: list[tuple],
                  batch, last_row: int, result: ImportResult) -> None:
    """List the batch's changes up to row ``last_row`` (for the answer and the audit record)."""
    compared = [(index, name) for index, name in enumerate(WRITABLE) if name in DIFF_COLUMNS
                and name in layout.present]
    want = CHANGES_LISTED - len(result.changes)
    for number, values, row in backend.changed_rows(session, batch, rows, numbers, layout.present, last_row, want):
        if values is None:
            result.list_change(_entry(number, row[SKU_AT], "created", created_diff(dict(zip(WRITABLE, row,
                                                                                           strict=True)))))
        else:
            result.list_change(_entry(number, row[SKU_AT], "updated", {
                name: {"before": shown(name, values[index]), "after": shown(name, row[index])}
                for index, name in compared if values[index] != row[index]}))


def _default_import(session: Session, reader, layout: Layout, rules: dict[str, Rule], result: ImportResult,
                    backend: Backend) -> None:
    """Validate and upsert every row, writing without reading (see the module doc)."""
    backend.prepare_import(session)
    batches = ((numbers, rows, backend.import_batch(numbers, rows))
               for numbers, rows in _validated_batches(reader, layout, rules, result, backend.import_batch_size))
    if backend.read_ahead:  # a thread validates (and encodes) the next batch while this one is written
        batches = read_ahead(batches, name="import-validate")
    # closing(): when a write fails, the validating thread stops now, not
    # whenever the traceback holding the generator is collected.
    with closing(batches):
        for numbers, rows, batch in batches:
            if result.error_count:
                backend.note_skus(session, batch)  # only to find the repeats: nothing will be kept
                continue
            staged = result.listing and numbers[0] <= LISTING_ROWS + 1  # row 1 is the header
            if staged:
                _list_changes(session, backend, layout, numbers, rows, batch, LISTING_ROWS + 1, result)
            created, updated, unchanged = backend.upsert(session, batch, layout.present, staged=staged)
            result.created += created
            result.updated += updated
            result.unchanged += unchanged
    _repeats_across_batches(backend.repeated_skus(session), result)
    if result.error_count:
        raise InvalidRows(result)
    if result.rows == 0:
        raise ImportRejected("The file has a header but no product rows.")
    backend.finish_import(session)


# -- the reading path: plans, skip_rows, version rows, guardrails, partial files ---------


def _entry(row: int, sku: str | None, action: str, changes: dict | None = None) -> dict:
    entry = {"row": row, "sku": sku, "action": action}
    if changes is not None:
        entry["changes"] = changes
    return entry


def _record_batches(reader, result: ImportResult, size: int) -> Iterator[list[tuple[int, list[str]]]]:
    """The file's non-blank records with their row numbers, ``size`` at a time."""
    numbered = _numbered_records(reader, result)
    while batch := list(itertools.islice(numbered, size)):
        yield batch


class _Outcomes:
    """One batch's outcome per row, handed on in row order (spool, listed changes, errors)."""

    def __init__(self, result: ImportResult, layout: Layout):
        self.result = result
        self.sku_at = layout.columns.index("sku")
        self.diff = result.spool is not None and result.spool.kind == "diff"
        self.rejected_rows = result.spool is not None and result.spool.kind == "rejected"
        self.errors: dict[int, list[dict]] = {}
        self.records: dict[int, list[str]] = {}
        self.entries: dict[int, dict] = {}

    def report(self, row: int, column: str, message: str) -> None:
        self.errors.setdefault(row, []).append({"field": column, "message": message})

    def reject(self, row: int, record: list[str], column: str | None = None, message: str | None = None) -> None:
        if column is not None:
            self.report(row, column, message)
        self.records[row] = record

    def wants_diff(self) -> bool:
        return self.diff or self.result.listing

    def add(self, row: int, entry: dict) -> None:
        self.entries[row] = entry

    def sku_of(self, record: list[str]) -> str | None:
        return record[self.sku_at].strip() or None if len(record) > self.sku_at else None

    def flush(self) -> None:
        """Count and hand on the batch's outcomes, in row order."""
        result = self.result
        for row in sorted(self.records):
            result.rejected += 1
            for error in self.errors[row]:
                result.add_error(row, error["field"], error["message"])
            if self.rejected_rows:
                result.spool.add({"row": row, "errors": self.errors[row], "record": self.records[row]})
            elif self.diff:
                self.entries[row] = {**_entry(row, self.sku_of(self.records[row]), "rejected"),
                                     "errors": self.errors[row]}
        for row in sorted(self.entries):
            entry = self.entries[row]
            if entry["action"] in ("created", "updated"):
                result.list_change(entry)
            if self.diff:
                result.spool.add(entry)
        self.errors, self.records, self.entries = {}, {}, {}


class _Planner:
    """The reading path, one batch at a time: check, find repeats, read the stored products, class, write."""

    def __init__(self, session: Session, layout: Layout, rules: dict[str, Rule], result: ImportResult,
                 options: ImportOptions, backend: Backend):
        self.session, self.layout, self.result, self.options, self.backend = session, layout, result, options, backend
        self.validated = _validator(layout, rules)
        self.compared = [(index, name) for index, name in enumerate(WRITABLE)
                         if name in DIFF_COLUMNS and name in layout.present]
        self.price_at = WRITABLE.index("price") if "price" in layout.present else None
        self.guardrail = PriceGuardrail(options.max_price_change)
        self.largest = LargestMoves() if options.plan else None
        self.outcomes = _Outcomes(result, layout)
        if options.writes:
            backend.prepare_import(session)
        backend.prepare_seen(session)

    def batch(self, batch: list[tuple[int, list[str]]]) -> None:
        fresh = self._fresh(self._checked(batch))
        stored = self.backend.current_products(self.session, [row[SKU_AT] for _, _, row, _ in fresh],
                                               lock=self.options.writes) if fresh else {}
        numbers, writes = [], []
        for row_number, record, row, version in fresh:
            write = self._classed(row_number, record, row, version, stored.get(row[SKU_AT]))
            if write is not None:
                numbers.append(row_number)
                writes.append(write)
        self.outcomes.flush()
        refusing = self.guardrail.count or (self.options.on_error == "reject_file" and self.result.error_count)
        if self.options.writes and writes and not refusing:
            self.backend.upsert(self.session, self.backend.import_batch(numbers, writes), self.layout.present)

    def _checked(self, batch: list[tuple[int, list[str]]]) -> list[tuple[int, list[str], tuple, int | None]]:
        """The records whose cells (and version) are valid, as (row number, record, row, version)."""
        checked = []
        for row_number, record in batch:
            row = self.validated(record, row_number, self.outcomes.report)
            version = None
            if self.layout.version_at is not None and len(record) == len(self.layout.columns):
                try:
                    version = _version_of(record, self.layout)
                except ValueError as error:
                    self.outcomes.report(row_number, VERSION, str(error))
                    row = None
            if row is None:
                self.outcomes.reject(row_number, record)
                continue
            checked.append((row_number, record, row, version))
        return checked

    def _fresh(self, checked: list) -> list:
        """``checked`` without the skus an earlier row named (the database knows the earlier batches')."""
        skus = list({row[SKU_AT] for _, _, row, _ in checked})
        earlier = self.backend.seen_skus(self.session, skus) if skus else {}
        first_here: dict[str, int] = {}
        fresh = []
        for row_number, record, row, version in checked:
            sku = row[SKU_AT]
            first = earlier.get(sku) or first_here.get(sku)
            if first is not None:
                repeated_sku(self.outcomes.report, sku, first, row_number)
                self.outcomes.reject(row_number, record)
                continue
            first_here[sku] = row_number
            fresh.append((row_number, record, row, version))
        if first_here:
            self.backend.note_seen(self.session, list(first_here.items()))
        return fresh

    def _classed(self, row_number: int, record: list[str], row: tuple, version: int | None,
                 stored: tuple | None) -> tuple | None:
        """Class one row (created, updated, unchanged or rejected); the row to write, if any."""
        sku, outcomes, result = row[SKU_AT], self.outcomes, self.result
        if stored is None:
            if self.layout.partial:
                outcomes.reject(row_number, record, "sku", f"No product has the sku {sku}: a new product needs the "
                                f"column(s) {', '.join(self.layout.missing)}, which the file lacks.")
            elif version is not None:
                outcomes.reject(row_number, record, VERSION, f"No product has the sku {sku}, so version {version} "
                                "cannot match: leave the cell empty to create it.")
            else:
                result.created += 1
                if outcomes.wants_diff():
                    outcomes.add(row_number, _entry(row_number, sku, "created",
                                                    created_diff(dict(zip(WRITABLE, row, strict=True)))))
                return row
            return None
        stored_version, values = stored[1], stored[2:]
        if version is not None and version != stored_version:
            outcomes.reject(row_number, record, VERSION, stale_message(sku, stored_version, version))
            return None
        changed = [(index, name) for index, name in self.compared if values[index] != row[index]]
        if not changed:
            result.unchanged += 1
            if outcomes.diff:
                outcomes.add(row_number, _entry(row_number, sku, "unchanged"))
            return None
        result.updated += 1
        price_at = self.price_at
        if price_at is not None and values[price_at] != row[price_at]:
            self.guardrail.check({"row": row_number}, sku, values[price_at], row[price_at])
            if self.largest is not None:
                self.largest.add({"row": row_number}, sku, values[price_at], row[price_at])
        if outcomes.wants_diff():
            outcomes.add(row_number, _entry(row_number, sku, "updated", {
                name: {"before": shown(name, values[index]), "after": shown(name, row[index])}
                for index, name in changed}))
        # The columns the file lacks keep their stored values (the upsert sets only the file's).
        return tuple(row[index] if name in self.layout.present else values[index]
                     for index, name in enumerate(WRITABLE))

    def finish(self) -> None:
        """Answer a plan, or refuse the import as its options say (the request then rolls back)."""
        result, options, guardrail = self.result, self.options, self.guardrail
        result.price_guardrail = guardrail.offences
        if self.largest is not None:
            result.largest_price_changes = self.largest.listed()
        if result.unreadable:
            raise InvalidRows(result)
        if result.rows == 0:
            raise ImportRejected("The file has a header but no product rows.")
        row_errors = options.on_error == "reject_file" and result.error_count
        if options.plan:
            reasons = [f"{result.rejected} row(s) have errors: with on_error=reject_file nothing would be written."
                       ] if row_errors else []
            if guardrail.count:
                reasons.append(guardrail.refused)
            result.refused = " ".join(reasons) or None
        elif row_errors:
            raise InvalidRows(result)
        elif guardrail.count:
            raise PriceChangeRefused(guardrail, "nothing was imported")


def _planned_import(session: Session, reader, layout: Layout, rules: dict[str, Rule], result: ImportResult,
                    options: ImportOptions, backend: Backend) -> None:
    """Read each batch's stored products, class every row, check the guardrail, write the changes."""
    planner = _Planner(session, layout, rules, result, options, backend)
    for batch in _record_batches(reader, result, backend.import_batch_size):
        planner.batch(batch)
    planner.finish()


# -- the import ----------------------------------------------------------------------------


def import_products(session: Session, lines: Iterable[str], rules: dict[str, Rule], *,
                    options: ImportOptions | None = None, actor: Actor | None = None,
                    dry_run: bool = False) -> ImportResult:
    """Validate and upsert every row of a CSV stream, in the caller's transaction; record it.

    Any refusal raises (the request then rolls back: nothing was written):
    ImportRejected for the file, InvalidRows for rows (``reject_file``),
    PriceChangeRefused for the guardrail. A dry run on the default path
    does the whole import inside a savepoint and rolls the savepoint back;
    a plan or a dry run on the reading path writes nothing. The audit
    record (``actor``'s) is added to the caller's transaction: the answer's
    ``import_id``.
    """
    options = options or ImportOptions(dry_run=dry_run)
    reader = csv.reader(lines)
    try:
        layout = _check_header(next(reader, None), rules)
    except csv.Error as error:
        raise ImportRejected(f"The header row is not valid CSV: {error}.") from None
    except UnicodeDecodeError:
        raise ImportRejected("The file is not UTF-8 text.") from None
    backend = backend_for(session)
    reads_first = (options.plan or options.on_error != "reject_file" or options.max_price_change is not None
                   or layout.partial or layout.version_at is not None)
    if options.writes or not reads_first:
        # Only an import that writes takes the lock (a dry run on the default path writes too, in a
        # savepoint). A plan, or a dry run on the reading path, only reads: it never waits for a
        # running import, nor makes one wait, however long its file.
        backend.lock_imports(session)
    result = ImportResult(dry_run=options.dry_run, plan=options.plan, on_error=options.on_error,
                          max_price_change=options.max_price_change, layout=layout,
                          columns=tuple([*layout.present, *([VERSION] if layout.version_at is not None else [])]))
    with backend.bulk_writes(session):
        if reads_first:
            if options.spool is not None:
                result.spool = Spool(options.spool)
            try:
                _planned_import(session, reader, layout, rules, result, options, backend)
            except BaseException:
                if result.spool is not None:
                    result.spool.close()
                raise
        elif options.dry_run:
            savepoint = session.begin_nested()
            try:
                _default_import(session, reader, layout, rules, result, backend)
            finally:
                savepoint.rollback()
        else:
            _default_import(session, reader, layout, rules, result, backend)
    if actor is not None:
        result.import_id = record_import(session, actor, result)
    return result
