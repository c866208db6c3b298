"""The streamed answers of ``POST /products/import`` (DESIGN §12): what ``Accept`` asks of an import.

JSON (the default) is the field dict ``import_result_fields``: counts, the
first changes and errors. The other representations stream what the import
spooled while it read the file (services/catalog_import.Spool), from a
temporary file, in constant memory:

* an import (not a plan) as **CSV**: the rejected rows exactly as uploaded,
  after an ``error`` column saying what is wrong with each (``row 5:
  price: must be greater than 0``), under the uploaded header: fix the
  cells, upload the file again (the import ignores the ``error`` column).
  The ``error`` column comes first so that a row with too many or too few
  cells keeps every cell as it came. A column ``error`` of the upload
  itself (an earlier rejected file sent back) is replaced, not repeated.
  The cells are not neutralised against formulas: they are the uploader's
  own, and must come back unchanged.
* an import as **NDJSON**: one ``{"row", "errors", "record"}`` per rejected row;
* a **plan** (``plan=true``) as **NDJSON**: the full diff, one entry per row
  of the file, ``{"row", "sku", "action": "created"|"updated", "changes":
  {column: {"before", "after"}}}``, ``{"row", "sku", "action":
  "unchanged"}`` or ``{"row", "sku", "action": "rejected", "errors"}``;
* a plan as **CSV**: the same diff, one line per changed column (``row,
  sku, action, field, before, after, message``): a created or updated
  product has a line per column it sets, an unchanged one a single line,
  a rejected row a line per error. These cells are neutralised like every
  CSV this API writes (it is a report, not a file to upload).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from flask import g

from ..csvcells import LINE_END, csv_cell
from ..services.catalog_import import ERROR, ImportResult
from .contract import Alternate
from .media import CSV, JSON, NDJSON
from .representations import dumps_json

DIFF_COLUMNS = ("row", "sku", "action", "field", "before", "after", "message")
#: The header naming an import's (or a PATCH /products') audit record, on every representation.
IMPORT_ID = "X-Import-Id"


def spool_for(plan: bool) -> str | None:
    """What the negotiated answer needs the import to spool: a plan's diff, the rejected rows, or nothing."""
    if g.get("media_type", JSON) == JSON:
        return None
    return "diff" if plan else "rejected"


def _csv_lines(rows: Iterable[list]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=LINE_END)
    for row in rows:
        writer.writerow(row)
        if buffer.tell() >= 64 * 1024:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _spooled(result: ImportResult) -> Iterator[dict]:
    """The spool's records, the spool closed at the end (or when the client goes away)."""
    if result.spool is None:
        return
    try:
        yield from result.spool
    finally:
        result.spool.close()


def _error_text(row: int, errors: list[dict]) -> str:
    return f"row {row}: " + "; ".join(f"{error['field']}: {error['message']}" for error in errors)


def _rejected_rows(result: ImportResult) -> Iterator[list]:
    layout = result.layout
    dropped = layout.error_at if layout is not None else None
    header = list(layout.header) if layout is not None else []
    yield [ERROR, *(cell for index, cell in enumerate(header) if index != dropped)]
    for entry in _spooled(result):
        record = entry["record"]
        yield [_error_text(entry["row"], entry["errors"]),
               *(cell for index, cell in enumerate(record) if index != dropped)]


def _diff_rows(result: ImportResult) -> Iterator[list]:
    yield list(DIFF_COLUMNS)
    for entry in _spooled(result):
        head = [entry["row"], csv_cell(entry["sku"]), entry["action"]]
        if entry["action"] == "rejected":
            for error in entry["errors"]:
                yield [*head, error["field"], "", "", csv_cell(error["message"])]
        elif entry["action"] == "unchanged":
            yield [*head, "", "", "", ""]
        else:
            for name, change in entry["changes"].items():
                yield [*head, name, csv_cell(change["before"]), csv_cell(change["after"]), ""]


def csv_answer(result: ImportResult) -> Iterator[bytes]:
    rows = _diff_rows(result) if result.plan else _rejected_rows(result)
    return _csv_lines(rows)


def ndjson_answer(result: ImportResult) -> Iterator[bytes]:
    for entry in _spooled(result):
        yield dumps_json(entry) + b"\n"


IMPORT_STREAMS = {
    CSV: Alternate(
        "CSV: for an import, the rejected rows exactly as uploaded after an `error` column (fix them and "
        "upload the file again: the `error` column is ignored); for a plan (`plan=true`), the full diff, one "
        f"line per changed column: {', '.join(DIFF_COLUMNS)}.",
        csv_answer),
    NDJSON: Alternate(
        'NDJSON: for an import, one {"row", "errors", "record"} per rejected row; for a plan, the full diff, '
        'one entry per row of the file: {"row", "sku", "action": created|updated|unchanged|rejected, '
        '"changes": {column: {"before", "after"}}} (or "errors").',
        ndjson_answer),
}
