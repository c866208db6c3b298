"""Input types for reqparse arguments.

Every type here is a callable that takes the raw value of one field and returns
it converted (a stripped string, an ``int``, a ``Decimal``, an aware UTC
``datetime``…). The contract, relied upon by :mod:`myapi.common.parsing`:

* A bad value raises ``ValueError`` with a short message a user understands,
  written to follow the field name: ``"must be a whole number from 1 to 100"``.
  Nothing else is ever raised, whatever the value: bodies may be JSON, so a
  type can receive ``int``, ``float``, ``bool``, ``None``, lists and dicts as
  well as strings (query strings and form bodies are always strings).
  Messages never echo the value (a password must not end up in a response or
  a log).
* The callables accept and ignore extra positional arguments: flask-restful
  calls ``type(value, name, op)`` first and retries with fewer arguments on
  ``TypeError``, which would hide real bugs and run a conversion twice.
* Each type has a ``schema`` attribute, the JSON Schema fragment (a dict) the
  OpenAPI document shows for the field.

Strings are validated here rather than by the database: SQLite ignores
``VARCHAR`` lengths and PostgreSQL refuses NUL characters, so both would
otherwise behave differently on the same input. Lengths are counted in
characters (code points), as PostgreSQL counts them.

Conventions: ``bool`` is never an integer (``True`` is an ``int`` in Python,
not in JSON); a JSON number with no fraction is an integer (``2.0`` is 2,
as JSON Schema's ``integer`` says, so the OpenAPI document and the API
agree), one with a fraction never is; numeric strings such as ``"5"`` are
accepted for numbers (``"2.0"`` is not).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import MAXYEAR, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from ..services.query import COUNT_MODES, IfMatch
from . import cursors
from .etags import CONTENT_CODINGS, strip_coding

__all__ = [
    "boolean",
    "category",
    "choice",
    "count_mode",
    "cursor",
    "email",
    "idempotency_key",
    "int_range",
    "iso8601_datetime",
    "iso8601_interval",
    "money",
    "order_items",
    "page",
    "password",
    "per_page",
    "percent",
    "positive_int",
    "quantity",
    "sku",
    "sort_spec",
    "text",
    "user_priority",
    "username",
]

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Characters refused in every string: NUL (PostgreSQL rejects it in text) and
# lone surrogates (they cannot be encoded to UTF-8 for the database).
_NUL = "\x00"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _input_type(schema: dict[str, Any], name: str | None = None) -> Callable[[Callable], Callable]:
    """Attach ``schema`` (and optionally a readable name) to an input type."""

    def decorate(function: Callable) -> Callable:
        function.schema = schema  # type: ignore[attr-defined]
        if name is not None:
            function.__name__ = function.__qualname__ = name
        return function

    return decorate


# --- column forms ----------------------------------------------------------------
# A CSV import (services/catalog_import.py) checks a batch column by column:
# ``convert.many(cells)`` is ``[convert(cell) for cell in cells]`` when every
# cell is accepted, and raises ValueError (naming no cell) when any is
# refused; the import then checks that batch cell by cell with ``convert``
# itself, whose messages say what is wrong.
# The column forms are only faster ways to the same values: one regular
# expression over the joined column, C-level conversions, and ``convert`` for
# the cells they are unsure of. ``money.many_cents`` answers integer cents.
# tests/test_inputs.py compares each column form with its type, cell by cell.


class _Every:
    """Whether ``pattern`` matches every cell of a column whole, in one scan of the cells joined by line feeds.

    ``pattern`` must not match a line feed; a cell holding one (which it
    then refuses) is found by counting them.
    """

    def __init__(self, pattern: str):
        self._joined = re.compile(f"(?:{pattern})(?:\n(?:{pattern}))*")

    def __call__(self, cells: list[str]) -> bool:
        text = "\n".join(cells)
        return text.count("\n") == len(cells) - 1 and self._joined.fullmatch(text) is not None


def _with_many(convert: Callable, many: Callable[[list[str]], list]) -> Callable:
    convert.many = many  # type: ignore[attr-defined]
    return convert


# Everything a string may not hold, in one class so that a clean value (the
# usual case) costs one scan; which message applies is worked out on a hit.
# Single-line: NUL, surrogates, C0 controls except tab, DEL, C1, and the
# Unicode line and paragraph separators. Multi-line text also allows line
# feed and carriage return (and the Unicode separators).
# The classes are written as \\u escapes so the OpenAPI patterns can name them;
# lone surrogates are refused too, but stay out of the patterns (no JSON
# Schema regex engine takes them, and no UTF-8 text holds them).
_SURROGATES = "\\ud800-\\udfff"
_SINGLE_LINE_CLASS = "\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f\\u2028\\u2029"
_MULTI_LINE_CLASS = "\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f"
_SINGLE_LINE_REFUSED = re.compile(f"[{_SINGLE_LINE_CLASS}{_SURROGATES}]")
_MULTI_LINE_REFUSED = re.compile(f"[{_MULTI_LINE_CLASS}{_SURROGATES}]")


def _text_pattern(multiline: bool, non_blank: bool) -> str:
    """The JSON Schema pattern of text the refusal class lets through (and, if asked, not only spaces).

    The same character class as the check, so the OpenAPI document admits
    exactly the characters the API accepts.
    """
    allowed = f"[^{_MULTI_LINE_CLASS if multiline else _SINGLE_LINE_CLASS}]"
    if not non_blank:
        return f"^{allowed}*$"
    visible = f"[^\\s{_MULTI_LINE_CLASS if multiline else _SINGLE_LINE_CLASS}]"
    return f"^{allowed}*{visible}{allowed}*$"


def _string(value: Any, *, multiline: bool = False) -> str:
    """``value`` as a clean, stripped string, or ValueError."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    # Strip first: a stray line break around a one-line value is harmless
    # (NUL and surrogates are not whitespace: stripping never hides them).
    value = value.strip()
    if (_MULTI_LINE_REFUSED if multiline else _SINGLE_LINE_REFUSED).search(value):
        if _NUL in value:
            raise ValueError("must not contain NUL characters")
        if _SURROGATE.search(value):
            raise ValueError("must be valid Unicode text")
        raise ValueError("must not contain control characters")
    return value


# --- identities ----------------------------------------------------------------

EMAIL_MAX_LENGTH = 254
# Deliberately simple: one @, no whitespace, a dot inside the domain, and none
# of the characters that only make sense in quoted or display-name forms.
_EMAIL = re.compile(r'[^@\s<>()\[\],;:"\\]+@[^@\s<>()\[\],;:"\\.]+(?:\.[^@\s<>()\[\],;:"\\.]+)+')


_EMAIL_CHAR = '[^@\\s<>()\\[\\],;:"\\\\' + _SINGLE_LINE_CLASS + "]"
_EMAIL_DOMAIN_CHAR = _EMAIL_CHAR[:-1] + ".]"


@_input_type({
    "type": "string",
    "format": "email",
    # The check below, as a pattern (lower case: the address is stored lower-cased anyway).
    "pattern": f"^{_EMAIL_CHAR}+@{_EMAIL_DOMAIN_CHAR}+(?:\\.{_EMAIL_DOMAIN_CHAR}+)+$",
    "maxLength": EMAIL_MAX_LENGTH,
})
def email(value: Any, *_: Any) -> str:
    """An email address, stripped and lowercased."""
    address = _string(value).lower()
    if len(address) > EMAIL_MAX_LENGTH:
        raise ValueError(f"must be at most {EMAIL_MAX_LENGTH} characters")
    if not _EMAIL.fullmatch(address):
        raise ValueError("must be a valid email address like name@example.com")
    return address


_USERNAME = re.compile(r"[a-z0-9_]{3,32}")
USERNAME_MESSAGE = "must be 3 to 32 characters of a-z, 0-9 and _"


@_input_type({"type": "string", "pattern": "^[a-z0-9_]{3,32}$", "minLength": 3, "maxLength": 32})
def username(value: Any, *_: Any) -> str:
    """A username, exactly as given: neither stripped nor lowercased."""
    if not isinstance(value, str) or not _USERNAME.fullmatch(value):
        raise ValueError(USERNAME_MESSAGE)
    return value


PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 256


@_input_type({
    "type": "string",
    "format": "password",
    "pattern": "^[^\\u0000]*$",
    "minLength": PASSWORD_MIN_LENGTH,
    "maxLength": PASSWORD_MAX_LENGTH,
    "writeOnly": True,
})
def password(value: Any, *_: Any) -> str:
    """A password, returned as given (spaces are part of it). Messages never echo it."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if _NUL in value:
        raise ValueError("must not contain NUL characters")
    if _SURROGATE.search(value):
        raise ValueError("must be valid Unicode text")
    if len(value) < PASSWORD_MIN_LENGTH:
        raise ValueError(f"must be at least {PASSWORD_MIN_LENGTH} characters")
    if len(value) > PASSWORD_MAX_LENGTH:
        raise ValueError(f"must be at most {PASSWORD_MAX_LENGTH} characters")
    return value


# --- numbers -------------------------------------------------------------------

MONEY_MAX = Decimal("9999999.99")
_CENT = Decimal("0.01")
# Plain decimal notation only: no exponent, no "NaN"/"Infinity", ASCII digits.
_MONEY_TEXT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
MONEY_MESSAGE = "must be an amount like 19.99"


@_input_type({
    "type": "string",
    "format": "decimal",
    # Greater than 0 (0.00 is refused), at most 9999999.99, at most two places.
    "pattern": r"^(?:[1-9][0-9]{0,6}(?:\.[0-9]{1,2})?|0\.(?:[1-9][0-9]?|0[1-9]))$",
    "description": "An amount greater than 0 with at most 2 decimal places; a JSON number is accepted too.",
    "example": "19.99",
})
def money(value: Any, *_: Any) -> Decimal:
    """An amount > 0 with at most two decimal places, as a Decimal quantized to cents."""
    if isinstance(value, bool):
        raise ValueError(MONEY_MESSAGE)
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(MONEY_MESSAGE)
        # repr() is the shortest string that round-trips: 19.99 stays 19.99
        # instead of becoming 19.989999999999998436805981327779591083526611328125.
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        raw = value.strip()
        if len(raw) > 32 or not _MONEY_TEXT.fullmatch(raw):
            raise ValueError(MONEY_MESSAGE)
        amount = Decimal(raw)
    else:
        raise ValueError(MONEY_MESSAGE)
    if amount <= 0:
        raise ValueError("must be greater than 0")
    if amount > MONEY_MAX:
        raise ValueError(f"must be at most {MONEY_MAX}")
    try:
        cents = amount.quantize(_CENT)
    except InvalidOperation:  # pragma: no cover - amount is bounded above, so quantize cannot overflow
        raise ValueError(MONEY_MESSAGE)
    if cents != amount:
        raise ValueError("must have at most 2 decimal places")
    return cents


# The amounts written plainly (what an export writes): greater than 0, at most
# 9999999.99, at most two places; the money pattern of the OpenAPI document.
_PLAIN_AMOUNTS = _Every(r"[1-9][0-9]{0,6}(?:\.[0-9]{1,2})?|0\.(?:[1-9][0-9]?|0[1-9])")


def money_cents(cells: list[str]) -> list[int]:
    """``int(money(cell) * 100)`` for each cell: amounts in integer cents (ValueError when any is refused).

    A plainly written amount has at most nine significant digits, so the
    nearest double to it times 100 is within far less than half a cent of
    the exact cents: ``round`` gives them exactly.
    """
    if _PLAIN_AMOUNTS(cells):
        return [round(float(cell) * 100) for cell in cells]
    return [int(money(cell) * 100) for cell in cells]


money.many_cents = money_cents

_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_PLAIN_INTEGERS = _Every(r"[0-9]{1,18}")  # int() of each is exact and cheap; signs and spaces: convert


def int_range(lo: int, hi: int) -> Callable[..., int]:
    """A type for whole numbers from ``lo`` to ``hi`` inclusive.

    Accepts ints, floats with no fraction (2.0: a JSON integer) and numeric
    strings ("5", " 5 ", "+5"); refuses bools, fractions, "2.0" and anything else.
    """
    if isinstance(lo, bool) or isinstance(hi, bool) or not isinstance(lo, int) or not isinstance(hi, int):
        raise TypeError("int_range bounds must be integers")
    if lo > hi:
        raise ValueError("int_range needs lo <= hi")
    message = f"must be a whole number from {lo} to {hi}"

    @_input_type({"type": "integer", "minimum": lo, "maximum": hi}, name=f"int_range({lo}, {hi})")
    def convert(value: Any, *_: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(message)
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            number = int(value)
        elif isinstance(value, str):
            raw = value.strip()
            # The length cap keeps int() away from its digit limit; any number
            # that long is out of range anyway.
            if len(raw) > 40 or not _INTEGER_TEXT.fullmatch(raw):
                raise ValueError(message)
            number = int(raw)
        else:
            raise ValueError(message)
        if not lo <= number <= hi:
            raise ValueError(message)
        return number

    def many(cells: list[str]) -> list[int]:
        if not _PLAIN_INTEGERS(cells):
            return list(map(convert, cells))
        numbers = list(map(int, cells))
        if min(numbers) < lo or max(numbers) > hi:
            raise ValueError(message)
        return numbers

    return _with_many(convert, many)


positive_int = int_range(1, 2**31 - 1)
user_priority = int_range(0, 4)
QUANTITY_MAX = 10_000
quantity = int_range(1, QUANTITY_MAX)
page = int_range(1, 10**6)
per_page = int_range(1, 100)


@_input_type({"type": "string", "pattern": cursors.PATTERN, "maxLength": cursors.MAX_LENGTH,
              "description": "Opaque: a list's `pagination.next_cursor` (or its `Link: rel=\"next\"`), sent with "
                             "the same filters and sort. Not with `page`."},
             name="cursor")
def cursor(value: Any, *_: Any) -> str:
    """A cursor's shape (its seal and its fit to the request are checked by common/pagination.py)."""
    if not isinstance(value, str) or len(value) > cursors.MAX_LENGTH or not _CURSOR.fullmatch(value):
        raise ValueError("must be a next_cursor this API gave you, unchanged")
    return value


_CURSOR = re.compile(cursors.PATTERN.removeprefix("^").removesuffix("$"))


_PERCENT = re.compile(r"(?:0|[1-9][0-9]{0,5})(?:\.[0-9]{1,2})?")
PERCENT_MESSAGE = "must be a percentage like 10 or 12.5 (0 to 999999.99, at most 2 decimal places)"


@_input_type({
    "type": "string",
    "format": "decimal",
    "pattern": r"^(?:0|[1-9][0-9]{0,5})(?:\.[0-9]{1,2})?$",
    "description": "A percentage from 0 to 999999.99, at most 2 decimal places.",
    "example": "10",
}, name="percent")
def percent(value: Any, *_: Any) -> Decimal:
    """A percentage from 0 to 999999.99 with at most two places, as a Decimal."""
    if isinstance(value, bool):
        raise ValueError(PERCENT_MESSAGE)
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not _PERCENT.fullmatch(raw := value.strip()):
        raise ValueError(PERCENT_MESSAGE)
    return Decimal(raw)


# --- catalogue -----------------------------------------------------------------

_SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@_input_type({"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$", "minLength": 1, "maxLength": 64})
def sku(value: Any, *_: Any) -> str:
    """A stock-keeping unit, stripped, case kept."""
    if isinstance(value, str) and _SKU.fullmatch(code := value.strip()):
        return code  # the pattern admits no control character: no other scan needed
    code = _string(value)  # a clearer message for NUL, surrogates, controls
    if not _SKU.fullmatch(code):
        raise ValueError(
            "must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        )
    return code


_SKUS = _Every(_SKU.pattern)
# A column of skus as written (the pattern admits no space: nothing to strip).
sku.many = lambda cells: list(cells) if _SKUS(cells) else list(map(sku, cells))

_CATEGORY = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


@_input_type({"type": "string", "pattern": "^[a-z0-9]+(?:-[a-z0-9]+)*$", "minLength": 1, "maxLength": 64})
def category(value: Any, *_: Any) -> str:
    """A category slug such as ``garden-tools``, stripped."""
    if isinstance(value, str) and len(slug := value.strip()) <= 64 and _CATEGORY.fullmatch(slug):
        return slug
    slug = _string(value)
    if len(slug) > 64 or not _CATEGORY.fullmatch(slug):
        raise ValueError("must be 1 to 64 characters of lowercase words (a-z, 0-9) joined by single hyphens")
    return slug


_CATEGORIES = _Every(_CATEGORY.pattern)
category.many = lambda cells: (list(cells) if _CATEGORIES(cells) and max(map(len, cells)) <= 64
                               else list(map(category, cells)))


# --- generic -------------------------------------------------------------------

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@_input_type({"type": "boolean"})
def boolean(value: Any, *_: Any) -> bool:
    """true/false, also 1/0, yes/no, on/off (any case) and the integers 1 and 0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError("must be true or false")


_WORDS = frozenset({"true", "false"})
boolean.many = lambda cells: ([cell == "true" for cell in cells] if _WORDS.issuperset(cells)
                              else list(map(boolean, cells)))


def text(max_length: int, min_length: int = 0, multiline: bool = False) -> Callable[..., str]:
    """A type for free text, stripped, of ``min_length`` to ``max_length`` characters.

    Single-line text refuses control characters except tab; multi-line text
    also allows line breaks. NUL is always refused.
    """
    if not 0 <= min_length <= max_length:
        raise ValueError("text needs 0 <= min_length <= max_length")
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length,
                              "pattern": _text_pattern(multiline, non_blank=min_length > 0)}
    if min_length:
        schema["minLength"] = min_length

    @_input_type(schema, name=f"text({max_length}, {min_length}, multiline={multiline})")
    def convert(value: Any, *_: Any) -> str:
        result = _string(value, multiline=multiline)
        if len(result) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        if len(result) < min_length:
            if min_length == 1:
                raise ValueError("must not be empty")
            raise ValueError(f"must be at least {min_length} characters")
        return result

    refused = _MULTI_LINE_REFUSED if multiline else _SINGLE_LINE_REFUSED

    def many(cells: list[str]) -> list[str]:
        if not cells:
            return []
        values = [cell.strip() for cell in cells]
        # A tab is allowed in both kinds of text: joined by tabs, one scan finds any refused character.
        lengths = list(map(len, values))
        if refused.search("\t".join(values)) or max(lengths) > max_length or min(lengths) < min_length:
            raise ValueError("a cell is refused")
        return values

    return _with_many(convert, many)


WEB_URL_MAX_LENGTH = 2000
_WEB_URL = re.compile(r"https?://[^\s/?#]+\S*", re.IGNORECASE)


@_input_type({"type": "string", "format": "uri", "maxLength": WEB_URL_MAX_LENGTH,
              "pattern": f"^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/?#{_SINGLE_LINE_CLASS}]+[^\\s{_SINGLE_LINE_CLASS}]*$"})
def web_url(value: Any, *_: Any) -> str:
    """An absolute http(s) URL, stripped (where it may point is the service's rule: webhook_targets)."""
    url = _string(value)
    if len(url) > WEB_URL_MAX_LENGTH:
        raise ValueError(f"must be at most {WEB_URL_MAX_LENGTH} characters")
    if not _WEB_URL.fullmatch(url):
        raise ValueError("must be an http:// or https:// URL")
    return url


def choice(*values: str) -> Callable[..., str]:
    """A type for one of the given strings, matched exactly."""
    if not values or not all(isinstance(v, str) for v in values):
        raise TypeError("choice needs one or more strings")
    allowed = frozenset(values)
    message = "must be one of: " + ", ".join(values)

    @_input_type({"type": "string", "enum": list(values)}, name=f"choice{values!r}")
    def convert(value: Any, *_: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(message)
        return value

    return convert


#: ``count=`` of a list: exact (a COUNT), estimated (the database's statistics), none (no count).
count_mode = choice(*COUNT_MODES)


_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?")


@_input_type({
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$",
})
def idempotency_key(value: Any, *_: Any) -> str:
    """1 to 255 printable ASCII characters (spaces only inside), returned as-is."""
    if not isinstance(value, str) or not _IDEMPOTENCY_KEY.fullmatch(value):
        raise ValueError("must be 1 to 255 printable ASCII characters")
    return value


# --- sorting -------------------------------------------------------------------

_SORT_KEY = re.compile(r"[a-z_]+")
SORT_MAX_KEYS = 5


def sort_spec(allowed: Iterable[str]) -> Callable[..., list[tuple[str, bool]]]:
    """A type for sort specifications such as ``-price,name``.

    Returns ``[(key, descending), …]``: ``[("price", True), ("name", False)]``.
    Keys come from ``allowed`` (any iterable of names, a dict's keys for
    instance); at most five, each at most once.
    """
    if isinstance(allowed, str):
        raise TypeError("sort_spec needs an iterable of key names, not a string")
    keys = sorted(set(allowed))
    if not keys or not all(isinstance(k, str) and _SORT_KEY.fullmatch(k) for k in keys):
        raise ValueError("sort_spec keys must be non-empty names of a-z and _")
    known = frozenset(keys)
    listed = ", ".join(keys)
    alternatives = "(?:" + "|".join(keys) + ")"

    @_input_type({
        "type": "string",
        "pattern": f"^-?{alternatives}(?:,-?{alternatives}){{0,{SORT_MAX_KEYS - 1}}}$",
        "description": f"Comma-separated keys, '-' first for descending order (a key named again is "
                       f"ignored). Keys: {listed}.",
        "example": f"-{keys[0]}",
    }, name=f"sort_spec({listed})")
    def convert(value: Any, *_: Any) -> list[tuple[str, bool]]:
        spec = _string(value)
        if not spec:
            raise ValueError(f"must name at least one key of: {listed}")
        # Items are stripped: "+" in a query string decodes to a space, so
        # "?sort=+price" arrives as " price" and means ascending.
        items = [item.strip() for item in spec.split(",")]
        if len(items) > SORT_MAX_KEYS:
            raise ValueError(f"must have at most {SORT_MAX_KEYS} keys")
        result: list[tuple[str, bool]] = []
        seen: set[str] = set()
        for item in items:
            descending = item.startswith("-")
            key = item[1:] if descending else item
            if not key:
                raise ValueError("must not have empty keys")
            if not _SORT_KEY.fullmatch(key):
                raise ValueError(f"must be comma-separated keys, each with an optional leading '-': {listed}")
            if key not in known:
                raise ValueError(f"must use only these keys: {listed}")
            if key not in seen:  # named again, a key adds nothing to the order: the first mention counts
                seen.add(key)
                result.append((key, descending))
        return result

    return convert


# --- dates and times -----------------------------------------------------------

DATETIME_MESSAGE = "must be an ISO 8601 date-time like 2026-01-02T03:04:05Z or a date like 2026-01-02"
INTERVAL_MESSAGE = (
    "must be an ISO 8601 interval like 2026-01-01/2026-01-31, 2026-01-01T00:00Z/P7D, "
    "or a single year, month or day like 2026, 2026-03 or 2026-03-05"
)
RANGE_MESSAGE = "must be between the years 1970 and 9999"

# A calendar date with an optional time of day and UTC offset. A space may
# replace the "T", and also the "+" of an offset: in a query string an
# unencoded "+02:00" arrives as " 02:00".
_DATETIME = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[Tt ](?P<hm>[0-9]{2}:[0-9]{2})(?::(?P<s>[0-9]{2})(?:[.,](?P<frac>[0-9]{1,9}))?)?"
    r"(?P<tz>[Zz]|[+\- ][0-9]{2}(?::?[0-9]{2})?)?)?"
)
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_YEAR = re.compile(r"[0-9]{4}")
_DURATION = re.compile(
    r"P(?:(?P<weeks>[0-9]{1,7})W"
    r"|(?:(?P<days>[0-9]{1,7})D)?"
    r"(?:T(?=[0-9])(?:(?P<hours>[0-9]{1,8})H)?(?:(?P<minutes>[0-9]{1,10})M)?(?:(?P<seconds>[0-9]{1,12})S)?)?)",
    re.IGNORECASE,
)


def _parse_datetime(raw: str) -> tuple[datetime, bool]:
    """A date or date-time string as an aware UTC datetime, and whether it was a bare date.

    Raises ValueError (with a user message) or OverflowError (near year 9999).
    """
    match = _DATETIME.fullmatch(raw)
    if not match:
        raise ValueError(DATETIME_MESSAGE)
    if match["hm"] is None:
        moment = datetime.combine(date.fromisoformat(match["date"]), datetime.min.time())
        return moment.replace(tzinfo=UTC), True
    # Normalize to what datetime.fromisoformat reads on every supported Python:
    # seconds present, six fraction digits, "+HH:MM" offsets.
    iso = f"{match['date']}T{match['hm']}:{match['s'] or '00'}"
    if match["frac"]:
        iso += "." + match["frac"][:6].ljust(6, "0")
    tz = match["tz"]
    if tz:
        if tz in ("Z", "z"):
            iso += "+00:00"
        else:
            sign = "-" if tz[0] == "-" else "+"
            digits = tz[1:].replace(":", "")
            hours, minutes = digits[:2], digits[2:] or "00"
            if int(hours) > 23 or int(minutes) > 59:
                raise ValueError("has an invalid UTC offset")
            iso += f"{sign}{hours}:{minutes}"
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC), False  # a naive time is taken as UTC
    return moment.astimezone(UTC), False


def _check_range(*moments: datetime) -> None:
    if any(moment < EPOCH for moment in moments):
        raise ValueError(RANGE_MESSAGE)


@_input_type({
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601; a missing offset means UTC and a bare date means midnight UTC.",
    "example": "2026-01-02T03:04:05Z",
})
def iso8601_datetime(value: Any, *_: Any) -> datetime:
    """A date-time (or a date, meaning midnight) as an aware datetime in UTC."""
    raw = _string(value)
    if len(raw) > 64:
        raise ValueError(DATETIME_MESSAGE)
    try:
        moment, _is_date = _parse_datetime(raw)
    except OverflowError:
        raise ValueError(RANGE_MESSAGE)
    except ValueError as error:
        # fromisoformat's own messages ("month must be in 1..12") are terse
        # but not wrong; keep ours for shapes and wrap theirs.
        if str(error).startswith(("must ", "has ")):
            raise
        raise ValueError(f"is not a valid date-time ({error})")
    _check_range(moment)
    return moment


def _next_month(year: int, month: int) -> datetime:
    if not 1 <= month <= 12:
        raise ValueError("month must be in 1..12")
    if year + month // 12 > MAXYEAR:
        raise OverflowError  # the period ends after 9999
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


def _period(raw: str) -> tuple[datetime, datetime | None]:
    """The start of a year, month, date or date-time, and the exclusive end of the
    period it names (None for a date-time, which names an instant)."""
    if _YEAR.fullmatch(raw):
        year = int(raw)
        return datetime(year, 1, 1, tzinfo=UTC), _next_month(year, 12)
    month_match = _MONTH.fullmatch(raw)
    if month_match:
        year, month = int(month_match[1]), int(month_match[2])
        return datetime(year, month, 1, tzinfo=UTC), _next_month(year, month)
    start, is_date = _parse_datetime(raw)
    return start, (start + timedelta(days=1) if is_date else None)


def _duration(raw: str) -> timedelta | None:
    """An ISO 8601 duration in weeks, days, hours, minutes and seconds, or None if ``raw`` is none."""
    match = _DURATION.fullmatch(raw)
    if not match or not any(match.groupdict().values()):
        return None
    parts = {name: int(number) for name, number in match.groupdict().items() if number}
    return timedelta(**parts)


@_input_type({
    "type": "string",
    "description": (
        "An ISO 8601 interval, start inclusive and end exclusive: start/end (date-times or dates; "
        "an end date includes that whole day), start/duration or duration/end (durations in W, D, "
        "H, M, S such as P7D or PT12H), or a single year, month or day (2026, 2026-03, 2026-03-05)."
    ),
    "example": "2026-01-01/2026-01-31",
})
def iso8601_interval(value: Any, *_: Any) -> tuple[datetime, datetime]:
    """An interval as ``(start, end)``: aware UTC datetimes, start inclusive, end exclusive."""
    raw = _string(value)
    if not raw or len(raw) > 140 or raw.count("/") > 1:
        raise ValueError(INTERVAL_MESSAGE)
    try:
        if "/" not in raw:
            start, end = _period(raw)
            if end is None:
                raise ValueError("must be a period, not a single instant: give start/end or a date")
        else:
            first, second = (part.strip() for part in raw.split("/"))
            if not first or not second:
                raise ValueError(INTERVAL_MESSAGE)
            first_duration, second_duration = _duration(first), _duration(second)
            if first_duration is not None and second_duration is not None:
                raise ValueError(INTERVAL_MESSAGE)
            if second_duration is not None:  # start/duration
                start = _period(first)[0]
                end = start + second_duration
            elif first_duration is not None:  # duration/end
                end_start, end_end = _period(second)
                end = end_end or end_start
                start = end - first_duration
            else:  # start/end; an end date, month or year includes all of it
                start = _period(first)[0]
                end_start, end_end = _period(second)
                end = end_end or end_start
    except OverflowError:
        raise ValueError(RANGE_MESSAGE)
    except ValueError as error:
        message = str(error)
        if message == DATETIME_MESSAGE:
            raise ValueError(INTERVAL_MESSAGE)
        if message.startswith(("must ", "has ")):
            raise
        raise ValueError(f"is not a valid interval ({message})")
    _check_range(start, end)
    if end <= start:
        raise ValueError("must end after it starts")
    return start, end


# --- orders ----------------------------------------------------------------------

ORDER_MAX_LINES = 50
ORDER_ITEM_KEYS = frozenset({"product_id", "quantity"})


@_input_type(
    {
        "type": "array",
        "minItems": 1,
        "maxItems": ORDER_MAX_LINES,
        "items": {
            "type": "object",
            "required": ["product_id", "quantity"],
            "additionalProperties": False,
            "properties": {"product_id": positive_int.schema, "quantity": quantity.schema},
        },
    },
    name="order_items",
)
def order_items(value: Any, *_: Any) -> list[tuple[int, int]]:
    """An order's lines as ``[(product_id, quantity), ...]``, one per product.

    The same product given twice is merged into one line (its quantities
    added), so a basket that lists an item twice still orders what it says;
    the merged quantity must still be at most 10000. Lines keep the order of
    each product's first appearance.
    """
    if not isinstance(value, list):
        raise ValueError("must be a list of {product_id, quantity} objects")
    if not 1 <= len(value) <= ORDER_MAX_LINES:
        raise ValueError(f"must have 1 to {ORDER_MAX_LINES} items")
    merged: dict[int, int] = {}
    for index, line in enumerate(value):
        if not isinstance(line, dict):
            raise ValueError(f"item {index}: must be an object with product_id and quantity")
        missing = sorted(ORDER_ITEM_KEYS - line.keys())
        unknown = sorted(str(key)[:40] for key in line.keys() - ORDER_ITEM_KEYS)
        if missing:
            raise ValueError(f"item {index}: {', '.join(missing)} is required")
        if unknown:
            raise ValueError(f"item {index}: unknown field {', '.join(unknown)}")
        try:
            product_id = positive_int(line["product_id"])
        except ValueError as error:
            raise ValueError(f"item {index}: product_id {error}") from None
        try:
            amount = quantity(line["quantity"])
        except ValueError as error:
            raise ValueError(f"item {index}: quantity {error}") from None
        merged[product_id] = merged.get(product_id, 0) + amount
        if merged[product_id] > QUANTITY_MAX:
            raise ValueError(f"item {index}: product {product_id} is ordered more than {QUANTITY_MAX} times in all")
    return list(merged.items())


# --- conditional requests ----------------------------------------------------------

_ENTITY_TAG = re.compile(r'^(?:W/)?"?v(\d{1,10})(?:-[^",]*)?"?$')
IF_MATCH_MAX_LENGTH = 1000


_ETAG_PATTERN = r'(?:W/)?"v[0-9]{1,9}(?:-[0-9a-z]{1,16}){0,2}(?::(?:' + "|".join(CONTENT_CODINGS) + r'))?"'


@_input_type({
    "type": "string",
    "pattern": rf"^(?:\*|{_ETAG_PATTERN}(?:, ?{_ETAG_PATTERN}){{0,9}})$",
    "maxLength": IF_MATCH_MAX_LENGTH,
    "description": 'The ETag of the version you read, e.g. "v3" (a list, or * for any version).',
})
def if_match(value: Any, *_: Any) -> IfMatch:
    """An ``If-Match`` header as the versions it accepts; it never fails to parse.

    Every ETag of an item is ``"v<version>"`` plus a suffix naming the
    representation and field selection, so the version is what a write
    compares. A tag that is not one of ours, or an over-long header, names
    no version: the write answers 412, as for any stale tag.
    """
    if not isinstance(value, str) or len(value) > IF_MATCH_MAX_LENGTH:
        return IfMatch()
    if value.strip() == "*":
        return IfMatch(any=True)
    # A compressed answer's tag names its coding ("v3:gzip"): the same version.
    versions = {int(match[1]) for tag in value.split(",")
                if (match := _ENTITY_TAG.match(strip_coding(tag.strip())))}
    return IfMatch(frozenset(versions))


# --- API keys ----------------------------------------------------------------------


def name_list(noun: str, allowed: Sequence[str], *, query: bool = False) -> Callable[..., list[str]]:
    """A type for a non-empty list of names from ``allowed`` (scopes, event types).

    A body sends a JSON array (a form: one comma-separated value), each name
    once; a query string sends one comma-separated parameter, where a
    repeated name is harmless and kept once. The schema says which: an array
    of the names, or the comma-separated pattern.
    """
    allowed = tuple(allowed)
    choices = ", ".join(allowed)
    if query:
        one = "(?:" + "|".join(re.escape(name) for name in allowed) + ")"
        schema: dict[str, Any] = {"type": "string", "pattern": f"^{one}(?:,{one})*$",
                                  "description": f"Comma-separated {noun}s: {choices}."}
    else:
        schema = {"type": "array", "minItems": 1, "maxItems": len(allowed), "uniqueItems": True,
                  "items": {"type": "string", "enum": list(allowed)},
                  "description": f"{noun.capitalize()}s: {choices}; a form may send them comma-separated."}

    @_input_type(schema, name=f"name_list({noun})")
    def convert(value: Any, *_: Any) -> list[str]:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
            raise ValueError(f"must be a non-empty list of {noun}s: {choices}")
        unknown = [item[:40] for item in value if item not in allowed]
        if unknown:
            raise ValueError(f"unknown {noun} {unknown[0]!r}; choose from {choices}")
        if len(set(value)) != len(value):
            if not query:
                raise ValueError(f"must not name a {noun} twice")
            value = list(dict.fromkeys(value))
        return list(value)

    return convert


# --- change feeds --------------------------------------------------------------------


@_input_type({"type": "string", "pattern": r"^(?:0|(?:0|[1-9][0-9]{0,17})\.(?:0|[1-9][0-9]{0,17}))$", "maxLength": 37,
              "description": 'A watermark this API gave you (an export\'s X-Changes-Since, a page\'s '
                             'next_since, an entry\'s seq), or "0" for the beginning.'},
             name="watermark")
def watermark(value: Any, *_: Any):
    """A change-feed watermark (services/changes.Watermark)."""
    from ..services.changes import Watermark

    if not isinstance(value, str):
        raise ValueError("must be a string")
    return Watermark.parse(value.strip())
