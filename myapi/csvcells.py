"""The CSV cell rules, in one place: every CSV the project writes follows them.

* ``None`` is an empty cell; booleans are ``true`` / ``false``; anything
  else is ``str(value)`` (``plain_cell``);
* in a CSV meant for a spreadsheet, text that a spreadsheet would run as a
  formula (it begins with ``= + - @``, a tab or a carriage return) gets a
  leading apostrophe (``neutralise``; OWASP's advice for CSV injection);
* lines end with CR LF, and a cell holding a comma, a double quote or a line
  break is quoted (what ``csv.writer(..., lineterminator=LINE_END)`` does).

``flatten`` turns a record into CSV rows: nested objects become dotted
columns (``links.self``) and a list of objects (an order's ``items``) one
row per element.

Users: ``common.representations`` (responses and streamed exports), the
product export formatted in SQL (``services.catalog_export`` and
``services.backends`` build their SQL from these constants), and the
``myapi remote`` CLI's tables and CSV. No Flask, no SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
NEUTRALISER = "'"

DELIMITER = ","
QUOTE = '"'
LINE_END = "\r\n"
# What makes the csv module (QUOTE_MINIMAL, lineterminator LINE_END) quote a cell.
QUOTED_IF_CONTAINS = (DELIMITER, QUOTE, "\r", "\n")


def neutralise(cell: str) -> str:
    """Defuse a cell a spreadsheet would evaluate (=cmd|..., +1+1, @SUM...)."""
    return NEUTRALISER + cell if cell.startswith(FORMULA_PREFIXES) else cell


def plain_cell(value) -> str:
    """A value as cell text, not neutralised: None empty, booleans true / false, else ``str``."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def csv_cell(value) -> str:
    """A value as a cell of a CSV for spreadsheets: ``plain_cell``, text neutralised."""
    if isinstance(value, str):
        return neutralise(value)
    return plain_cell(value)


def flatten(record: Mapping, prefix: str = "") -> list[dict]:
    """One record to one or more flat rows (one per element of a nested list)."""
    flat: dict = {}
    exploded: list[dict] | None = None
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            nested = flatten(value, name + ".")
            flat.update(nested[0])
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            exploded = [row for item in value for row in flatten(item, name + ".")]
        elif isinstance(value, list):
            flat[name] = ";".join(str(v) for v in value)
        else:
            flat[name] = value
    if not exploded:
        return [flat]
    return [{**flat, **item} for item in exploded]
