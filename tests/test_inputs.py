"""Unit tests for myapi.common.inputs: pure functions, no app or database."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from flask_restful import reqparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from myapi.common import inputs

UTC = timezone.utc


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# Every type the module provides, including factory products, by a readable id.
SORT = inputs.sort_spec(["price", "name", "date_created"])
TEXT = inputs.text(200, 1)
MULTILINE = inputs.text(50, multiline=True)
CHOICE = inputs.choice("customer", "admin")
ALL_TYPES = {
    "email": inputs.email,
    "username": inputs.username,
    "password": inputs.password,
    "money": inputs.money,
    "quantity": inputs.quantity,
    "sku": inputs.sku,
    "category": inputs.category,
    "boolean": inputs.boolean,
    "positive_int": inputs.positive_int,
    "user_priority": inputs.user_priority,
    "page": inputs.page,
    "per_page": inputs.per_page,
    "int_range": inputs.int_range(-5, 5),
    "text": TEXT,
    "text_multiline": MULTILINE,
    "choice": CHOICE,
    "iso8601_datetime": inputs.iso8601_datetime,
    "iso8601_interval": inputs.iso8601_interval,
    "sort_spec": SORT,
    "idempotency_key": inputs.idempotency_key,
    "percent": inputs.percent,
}

# (type, valid input, expected output)
VALID = [
    # percentages (max_price_change)
    ("percent", "10", Decimal("10")),
    ("percent", " 12.5 ", Decimal("12.5")),
    ("percent", "0", Decimal("0")),
    ("percent", "999999.99", Decimal("999999.99")),
    ("percent", 15, Decimal("15")),
    # email
    ("email", "alice@example.com", "alice@example.com"),
    ("email", "  Alice.Smith+tag@Example.CO.uk \n", "alice.smith+tag@example.co.uk"),
    ("email", "a@b.io", "a@b.io"),
    ("email", "x" * 240 + "@example.com", "x" * 240 + "@example.com"),
    # username
    ("username", "bob", "bob"),
    ("username", "alice_99", "alice_99"),
    ("username", "_" * 32, "_" * 32),
    ("username", "007", "007"),
    # password: returned exactly as given, spaces included
    ("password", "correct-horse-battery", "correct-horse-battery"),
    ("password", "  ten chars ", "  ten chars "),
    ("password", "x" * 10, "x" * 10),
    ("password", "é" * 256, "é" * 256),
    # money
    ("money", "19.99", Decimal("19.99")),
    ("money", " 19.9 ", Decimal("19.90")),
    ("money", "5", Decimal("5.00")),
    ("money", "0.01", Decimal("0.01")),
    ("money", ".5", Decimal("0.50")),
    ("money", "19.990", Decimal("19.99")),
    ("money", "9999999.99", Decimal("9999999.99")),
    ("money", 19.99, Decimal("19.99")),
    ("money", 0.1, Decimal("0.10")),
    ("money", 5, Decimal("5.00")),
    ("money", 5.0, Decimal("5.00")),
    # integers
    ("quantity", 1, 1),
    ("quantity", 10000, 10000),
    ("quantity", "5", 5),
    ("quantity", " 42 ", 42),
    ("quantity", "+7", 7),
    # A JSON number with no fraction is an integer (JSON Schema's "integer"): 2.0 is 2.
    ("quantity", 2.0, 2),
    ("positive_int", 518.0, 518),
    ("quantity", "007", 7),
    ("positive_int", 2**31 - 1, 2**31 - 1),
    ("user_priority", 0, 0),
    ("user_priority", "4", 4),
    ("page", 1, 1),
    ("page", "1000000", 1000000),
    ("per_page", "100", 100),
    ("int_range", "-5", -5),
    ("int_range", 0, 0),
    # sku
    ("sku", "ABC-123", "ABC-123"),
    ("sku", " abc.def_1 ", "abc.def_1"),
    ("sku", "9", "9"),
    ("sku", "A" * 64, "A" * 64),
    # category
    ("category", "garden-tools", "garden-tools"),
    ("category", "books", "books"),
    ("category", "4k-tv", "4k-tv"),
    ("category", " toys ", "toys"),
    ("category", "a" * 64, "a" * 64),
    # boolean
    ("boolean", True, True),
    ("boolean", False, False),
    ("boolean", 1, True),
    ("boolean", 0, False),
    ("boolean", "true", True),
    ("boolean", "TRUE", True),
    ("boolean", " Yes ", True),
    ("boolean", "on", True),
    ("boolean", "1", True),
    ("boolean", "False", False),
    ("boolean", "no", False),
    ("boolean", "OFF", False),
    ("boolean", "0", False),
    # text
    ("text", "  Garden hose  ", "Garden hose"),
    ("text", "Garden hose\r\n", "Garden hose"),
    ("text", "tab\tinside", "tab\tinside"),
    ("text", "ünïcødé ✓", "ünïcødé ✓"),
    ("text", "x" * 200, "x" * 200),
    ("text_multiline", "line one\nline two\r\n", "line one\nline two"),
    ("text_multiline", "", ""),
    ("text_multiline", "   ", ""),
    # choice
    ("choice", "admin", "admin"),
    ("choice", "customer", "customer"),
    # datetimes
    ("iso8601_datetime", "2026-01-02T03:04:05Z", utc(2026, 1, 2, 3, 4, 5)),
    ("iso8601_datetime", "2026-01-02t03:04:05z", utc(2026, 1, 2, 3, 4, 5)),
    ("iso8601_datetime", "2026-01-02T03:04:05+02:00", utc(2026, 1, 2, 1, 4, 5)),
    ("iso8601_datetime", "2026-01-02T03:04:05-0530", utc(2026, 1, 2, 8, 34, 5)),
    ("iso8601_datetime", "2026-01-02T03:04+01", utc(2026, 1, 2, 2, 4)),
    ("iso8601_datetime", "2026-01-02T03:04:05.5Z", utc(2026, 1, 2, 3, 4, 5, 500000)),
    ("iso8601_datetime", "2026-01-02T03:04:05.123456789Z", utc(2026, 1, 2, 3, 4, 5, 123456)),
    ("iso8601_datetime", "2026-01-02T03:04:05,25Z", utc(2026, 1, 2, 3, 4, 5, 250000)),
    ("iso8601_datetime", "2026-01-02", utc(2026, 1, 2)),
    ("iso8601_datetime", "2026-01-02T03:04:05", utc(2026, 1, 2, 3, 4, 5)),
    ("iso8601_datetime", "2026-01-02 03:04", utc(2026, 1, 2, 3, 4)),
    # an unencoded "+" in a query string arrives as a space
    ("iso8601_datetime", "2026-01-02T03:04:05 02:00", utc(2026, 1, 2, 1, 4, 5)),
    ("iso8601_datetime", "1970-01-01T00:00:00Z", utc(1970, 1, 1)),
    ("iso8601_datetime", "9999-12-31T23:59:59Z", utc(9999, 12, 31, 23, 59, 59)),
    # intervals: start inclusive, end exclusive
    ("iso8601_interval", "2026-01-01/2026-01-31", (utc(2026, 1, 1), utc(2026, 2, 1))),
    ("iso8601_interval", "2026-03-05", (utc(2026, 3, 5), utc(2026, 3, 6))),
    ("iso8601_interval", "2026-03", (utc(2026, 3, 1), utc(2026, 4, 1))),
    ("iso8601_interval", "2026-12", (utc(2026, 12, 1), utc(2027, 1, 1))),
    ("iso8601_interval", "2026", (utc(2026, 1, 1), utc(2027, 1, 1))),
    ("iso8601_interval", "2026-01/2026-03", (utc(2026, 1, 1), utc(2026, 4, 1))),
    ("iso8601_interval", "2026-01-01T10:00Z/2026-01-01T12:00Z", (utc(2026, 1, 1, 10), utc(2026, 1, 1, 12))),
    ("iso8601_interval", "2026-01-01T10:00+02:00/2026-01-02", (utc(2026, 1, 1, 8), utc(2026, 1, 3))),
    ("iso8601_interval", "2026-01-01/P7D", (utc(2026, 1, 1), utc(2026, 1, 8))),
    ("iso8601_interval", "2026-01-01/P2W", (utc(2026, 1, 1), utc(2026, 1, 15))),
    ("iso8601_interval", "2026-01-01T00:00Z/PT12H", (utc(2026, 1, 1), utc(2026, 1, 1, 12))),
    ("iso8601_interval", "2026-01-01T00:00Z/PT90M", (utc(2026, 1, 1), utc(2026, 1, 1, 1, 30))),
    ("iso8601_interval", "2026-01-01T00:00Z/P1DT1H1M1S", (utc(2026, 1, 1), utc(2026, 1, 2, 1, 1, 1))),
    ("iso8601_interval", "P1D/2026-01-31", (utc(2026, 1, 31), utc(2026, 2, 1))),
    ("iso8601_interval", "PT1H/2026-01-31T12:00Z", (utc(2026, 1, 31, 11), utc(2026, 1, 31, 12))),
    ("iso8601_interval", " 2026-01-01 / 2026-01-01 ", (utc(2026, 1, 1), utc(2026, 1, 2))),
    # sort specs
    ("sort_spec", "price", [("price", False)]),
    ("sort_spec", "-price,name", [("price", True), ("name", False)]),
    ("sort_spec", "name,-date_created", [("name", False), ("date_created", True)]),
    ("sort_spec", " price", [("price", False)]),  # "?sort=+price" decoded
    # A key named again adds nothing to the order: its first mention counts (a pattern cannot forbid repeats).
    ("sort_spec", "price,-price", [("price", False)]),
    ("sort_spec", "name,price,name", [("name", False), ("price", False)]),
    # idempotency keys
    ("idempotency_key", "3f2b1c9e-0d1a-4c8e-9a53-5d3b9b0c7e21", "3f2b1c9e-0d1a-4c8e-9a53-5d3b9b0c7e21"),
    ("idempotency_key", "a", "a"),
    ("idempotency_key", "order 42 try 1", "order 42 try 1"),
    ("idempotency_key", "~" * 255, "~" * 255),
]

# (type, invalid input, fragment of the message)
INVALID = [
    # email
    ("email", "", "valid email"),
    ("email", "alice", "valid email"),
    ("email", "alice@", "valid email"),
    ("email", "@example.com", "valid email"),
    ("email", "alice@example", "valid email"),
    ("email", "alice@@example.com", "valid email"),
    ("email", "al ice@example.com", "valid email"),
    ("email", "alice@exa mple.com", "valid email"),
    ("email", "alice@example..com", "valid email"),
    ("email", "alice@.example.com", "valid email"),
    ("email", "alice@example.com.", "valid email"),
    ("email", "a@b.com, c@d.com", "valid email"),
    ("email", "Alice <alice@example.com>", "valid email"),
    ("email", "alice@example.com\x00", "NUL"),
    ("email", "alice@example.com\r\nBcc: x@y.z", "control"),
    ("email", "x" * 250 + "@example.com", "at most 254"),
    ("email", 42, "must be a string"),
    ("email", ["alice@example.com"], "must be a string"),
    # username
    ("username", "ab", "3 to 32"),
    ("username", "a" * 33, "3 to 32"),
    ("username", "Bob", "a-z, 0-9 and _"),
    ("username", "bob smith", "a-z"),
    ("username", " bob", "a-z"),
    ("username", "bob-smith", "a-z"),
    ("username", "bób", "a-z"),
    ("username", "bob\n", "a-z"),
    ("username", "", "3 to 32"),
    ("username", 12345, "3 to 32"),
    # password
    ("password", "short", "at least 10"),
    ("password", "", "at least 10"),
    ("password", "x" * 257, "at most 256"),
    ("password", "0123456789\x00", "NUL"),
    ("password", 1234567890, "must be a string"),
    ("password", None, "must be a string"),
    # money
    ("money", "0", "greater than 0"),
    ("money", "0.00", "greater than 0"),
    ("money", 0, "greater than 0"),
    ("money", "-1", "greater than 0"),
    ("money", -19.99, "greater than 0"),
    ("money", "1.999", "at most 2 decimal places"),
    ("money", 1.999, "at most 2 decimal places"),
    ("money", "0.001", "at most 2 decimal places"),
    ("money", "10000000", "at most 9999999.99"),
    ("money", "9999999.991", "at most 9999999.99"),
    ("money", "9999999.981", "at most 2 decimal places"),
    ("money", 1e16, "at most 9999999.99"),
    ("money", 10**30, "at most 9999999.99"),
    ("money", "1e3", "amount like 19.99"),
    ("money", "1E3", "amount like 19.99"),
    ("money", "NaN", "amount like 19.99"),
    ("money", "Infinity", "amount like 19.99"),
    ("money", "-inf", "amount like 19.99"),
    ("money", float("nan"), "amount like 19.99"),
    ("money", float("inf"), "amount like 19.99"),
    ("money", "1,50", "amount like 19.99"),
    ("money", "$5", "amount like 19.99"),
    ("money", "+5", "amount like 19.99"),
    ("money", "", "amount like 19.99"),
    ("money", ".", "amount like 19.99"),
    ("money", "٥", "amount like 19.99"),  # non-ASCII digit
    ("money", "1" * 40, "amount like 19.99"),
    ("money", True, "amount like 19.99"),
    ("money", False, "amount like 19.99"),
    ("money", None, "amount like 19.99"),
    ("money", {"amount": 5}, "amount like 19.99"),
    # integers
    ("quantity", 0, "whole number from 1 to 10000"),
    ("quantity", 10001, "from 1 to 10000"),
    ("quantity", -1, "whole number"),
    ("quantity", "0", "whole number"),
    ("quantity", True, "whole number"),
    ("quantity", False, "whole number"),
    ("quantity", 2.5, "whole number"),
    ("quantity", 10001.0, "from 1 to 10000"),
    ("quantity", float("inf"), "whole number"),
    ("quantity", float("nan"), "whole number"),
    ("quantity", 1e300, "whole number"),
    ("quantity", "2.0", "whole number"),
    ("quantity", "2.5", "whole number"),
    ("quantity", "1e3", "whole number"),
    ("quantity", "five", "whole number"),
    ("quantity", "", "whole number"),
    ("quantity", "٥", "whole number"),  # non-ASCII digit
    ("quantity", "5 5", "whole number"),
    ("quantity", "9" * 5000, "whole number"),
    ("quantity", None, "whole number"),
    ("quantity", [5], "whole number"),
    ("positive_int", 0, "from 1 to 2147483647"),
    ("positive_int", 2**31, "from 1 to 2147483647"),
    ("user_priority", 5, "from 0 to 4"),
    ("user_priority", -1, "from 0 to 4"),
    ("user_priority", True, "from 0 to 4"),
    ("page", 0, "from 1 to 1000000"),
    ("per_page", 101, "from 1 to 100"),
    ("per_page", "0", "from 1 to 100"),
    ("int_range", 6, "from -5 to 5"),
    ("int_range", "-6", "from -5 to 5"),
    # sku
    ("sku", "", "1 to 64"),
    ("sku", "   ", "1 to 64"),
    ("sku", "-ABC", "starting with a letter or digit"),
    ("sku", ".abc", "starting with a letter or digit"),
    ("sku", "AB C", "1 to 64"),
    ("sku", "AB/C", "1 to 64"),
    ("sku", "ÄBC", "1 to 64"),
    ("sku", "A" * 65, "1 to 64"),
    ("sku", "AB\x00C", "NUL"),
    ("sku", 12345, "must be a string"),
    # category
    ("category", "", "lowercase words"),
    ("category", "Garden", "lowercase words"),
    ("category", "garden tools", "lowercase words"),
    ("category", "garden_tools", "lowercase words"),
    ("category", "garden--tools", "single hyphens"),
    ("category", "-garden", "lowercase words"),
    ("category", "garden-", "lowercase words"),
    ("category", "a" * 65, "1 to 64"),
    ("category", 7, "must be a string"),
    # boolean
    ("boolean", "", "true or false"),
    ("boolean", "maybe", "true or false"),
    ("boolean", "t", "true or false"),
    ("boolean", 2, "true or false"),
    ("boolean", -1, "true or false"),
    ("boolean", 1.0, "true or false"),
    ("boolean", None, "true or false"),
    ("boolean", [True], "true or false"),
    # text
    ("text", "", "must not be empty"),
    ("text", "   ", "must not be empty"),
    ("text", "x" * 201, "at most 200"),
    ("text", "two\nlines", "control"),
    ("text", "\n\x1b[2J\n", "control"),
    ("text", "bell\x07", "control"),
    ("text", "del\x7f", "control"),
    ("text", "c1\x85inside", "control"),
    ("text", "sep\u2028inside", "control"),
    ("text", "nul\x00", "NUL"),
    ("text", "lone \ud800 surrogate", "Unicode"),
    ("text", 5, "must be a string"),
    ("text", None, "must be a string"),
    ("text_multiline", "x" * 51, "at most 50"),
    ("text_multiline", "nul\x00", "NUL"),
    ("text_multiline", "escape\x1b[31m", "control"),
    # choice
    ("choice", "root", "one of: customer, admin"),
    ("choice", "Admin", "one of"),
    ("choice", " admin", "one of"),
    ("choice", "", "one of"),
    ("choice", 1, "one of"),
    # datetimes
    ("iso8601_datetime", "", "ISO 8601"),
    ("iso8601_datetime", "yesterday", "ISO 8601"),
    ("iso8601_datetime", "2026-1-2", "ISO 8601"),
    ("iso8601_datetime", "20260102", "ISO 8601"),
    ("iso8601_datetime", "2026-W01", "ISO 8601"),
    ("iso8601_datetime", "2026-01-02T", "ISO 8601"),
    ("iso8601_datetime", "2026-01-02T03", "ISO 8601"),
    ("iso8601_datetime", "2026-01-02Z", "ISO 8601"),
    ("iso8601_datetime", "2026-01-02T03:04:05ZZ", "ISO 8601"),
    ("iso8601_datetime", "2026-01-02T03:04:05.1234567890Z", "ISO 8601"),
    ("iso8601_datetime", "2026-13-01", "not a valid date-time"),
    ("iso8601_datetime", "2026-02-30", "not a valid date-time"),
    ("iso8601_datetime", "2026-01-02T24:00:00Z", "not a valid date-time"),
    ("iso8601_datetime", "2026-01-02T03:60Z", "not a valid date-time"),
    ("iso8601_datetime", "2026-01-02T03:04:05+24:00", "invalid UTC offset"),
    ("iso8601_datetime", "2026-01-02T03:04:05+02:60", "invalid UTC offset"),
    ("iso8601_datetime", "1969-12-31T23:59:59Z", "1970 and 9999"),
    ("iso8601_datetime", "1970-01-01T00:30+01:00", "1970 and 9999"),
    ("iso8601_datetime", "0001-01-01", "1970 and 9999"),
    ("iso8601_datetime", "0000-01-01", "not a valid date-time"),
    ("iso8601_datetime", "9999-12-31T23:00-05:00", "1970 and 9999"),
    ("iso8601_datetime", "2026-01-02T03:04:05." + "0" * 60 + "Z", "ISO 8601"),
    ("iso8601_datetime", "2026-01-02\x00", "NUL"),
    ("iso8601_datetime", 1767225600, "must be a string"),
    # intervals
    ("iso8601_interval", "", "ISO 8601 interval"),
    ("iso8601_interval", "2026-01-01/", "ISO 8601 interval"),
    ("iso8601_interval", "/2026-01-01", "ISO 8601 interval"),
    ("iso8601_interval", "2026-01-01/2026-02-01/2026-03-01", "ISO 8601 interval"),
    ("iso8601_interval", "2026-01-01--2026-01-31", "ISO 8601 interval"),
    ("iso8601_interval", "P1D/P2D", "ISO 8601 interval"),
    ("iso8601_interval", "2026-01-01/P", "ISO 8601 interval"),
    ("iso8601_interval", "2026-01-01/PT", "ISO 8601 interval"),
    ("iso8601_interval", "2026-01-01/P1Y", "ISO 8601 interval"),
    ("iso8601_interval", "2026-01-01/P1M", "ISO 8601 interval"),
    ("iso8601_interval", "2026-01-01/2026-01-01T00:00Z", "end after it starts"),
    ("iso8601_interval", "2026-02-01/2026-01-01", "end after it starts"),
    ("iso8601_interval", "2026-01-01/P0D", "end after it starts"),
    ("iso8601_interval", "2026-01-01T00:00Z", "not a single instant"),
    ("iso8601_interval", "2026-13", "not a valid interval"),
    ("iso8601_interval", "2026-00", "not a valid interval"),
    ("iso8601_interval", "2026-02-30/2026-03-01", "not a valid interval"),
    ("iso8601_interval", "1969", "1970 and 9999"),
    ("iso8601_interval", "1969-12-31/2026-01-01", "1970 and 9999"),
    ("iso8601_interval", "P2D/1970-01-01", "1970 and 9999"),
    ("iso8601_interval", "9999", "1970 and 9999"),
    ("iso8601_interval", "9999-12-31", "1970 and 9999"),
    ("iso8601_interval", "9999-12-01/P9999999W", "1970 and 9999"),
    ("iso8601_interval", "2026-01-01T00:00Z/PT999999999999S", "1970 and 9999"),
    ("iso8601_interval", "2026-01-01T00:00+25:00/2027", "invalid UTC offset"),
    ("iso8601_interval", "2026" * 50, "ISO 8601 interval"),
    ("iso8601_interval", 2026, "must be a string"),
    # sort specs
    ("sort_spec", "", "at least one key"),
    ("sort_spec", "   ", "at least one key"),
    ("sort_spec", "stock", "only these keys: date_created, name, price"),
    ("sort_spec", "price,", "empty keys"),
    ("sort_spec", ",price", "empty keys"),
    ("sort_spec", "-", "empty keys"),
    ("sort_spec", "price,,name", "empty keys"),
    ("sort_spec", "--price", "optional leading '-'"),
    ("sort_spec", "Price", "optional leading '-'"),
    ("sort_spec", "price desc", "optional leading '-'"),
    ("sort_spec", "price;name", "optional leading '-'"),
    ("sort_spec", "pri2ce", "optional leading '-'"),
    ("sort_spec", "price,name,date_created,price,name,price", "at most 5"),
    ("sort_spec", ["price"], "must be a string"),
    # idempotency keys
    ("idempotency_key", "", "1 to 255"),
    ("idempotency_key", " key", "printable ASCII"),
    ("idempotency_key", "key ", "printable ASCII"),
    ("idempotency_key", "k" * 256, "1 to 255"),
    ("idempotency_key", "clé", "printable ASCII"),
    ("idempotency_key", "tab\tkey", "printable ASCII"),
    ("idempotency_key", "new\nline", "printable ASCII"),
    ("idempotency_key", "nul\x00", "printable ASCII"),
    ("idempotency_key", 12345, "printable ASCII"),
]

INVALID += [
    ("percent", "-1", "percentage"),
    ("percent", "1.005", "percentage"),
    ("percent", "1e3", "percentage"),
    ("percent", "1000000", "percentage"),
    ("percent", "010", "percentage"),
    ("percent", True, "percentage"),
    ("percent", 1.5, "percentage"),
]

WEIRD = [[], {}, None, True, False, 1.5, float("nan"), float("inf"), -0.0, 0, -1, 2**100, "", " ", "\x00",
         "x" * 10000, "\ud800", "🙂", b"bytes", Decimal("1.5"), object(), ("tuple",), {"a": 1}, ["a", "b"]]


def _ids(rows):
    return [f"{name}-{value!r:.40}" for name, value, _ in rows]


@pytest.mark.parametrize(("name", "value", "expected"), VALID, ids=_ids(VALID))
def test_valid(name, value, expected):
    result = ALL_TYPES[name](value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(("name", "value", "fragment"), INVALID, ids=_ids(INVALID))
def test_invalid(name, value, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        ALL_TYPES[name](value)


@pytest.mark.parametrize(("name", "value", "expected"), VALID, ids=_ids(VALID))
def test_extra_arguments_are_ignored(name, value, expected):
    # flask-restful calls type(value, name, op) first.
    assert ALL_TYPES[name](value, "field", "=") == expected


@pytest.mark.parametrize("value", WEIRD, ids=repr)
@pytest.mark.parametrize("name", ALL_TYPES)
def test_weird_values_return_or_raise_value_error(name, value):
    try:
        ALL_TYPES[name](value)
    except ValueError as error:
        message = str(error)
        assert message, "the message must not be empty"
        assert len(message) < 300, "messages are short"
        assert "\x00" not in message and "x" * 100 not in message, "messages do not echo the value"


@pytest.mark.parametrize("name", ALL_TYPES)
def test_schema_is_a_json_schema_fragment(name):
    schema = ALL_TYPES[name].schema
    assert isinstance(schema, dict)
    assert schema["type"] in {"string", "integer", "boolean"}
    json.dumps(schema)  # serializable as is


# money's pattern documents the canonical form ("19.99"); the input also takes ".5", "19.990" and numbers.
@pytest.mark.parametrize("name", [n for n in ALL_TYPES if "pattern" in ALL_TYPES[n].schema and n != "money"])
def test_schema_pattern_matches_valid_values(name):
    # The patterns use the subset of regex syntax ECMA-262 and Python share.
    pattern = re.compile(ALL_TYPES[name].schema["pattern"])
    for row_name, value, _ in VALID:
        if row_name == name and isinstance(value, str) and value == value.strip():
            assert pattern.search(value), value


@pytest.mark.parametrize(
    ("factory", "schema"),
    [
        (inputs.quantity, {"type": "integer", "minimum": 1, "maximum": 10000}),
        (inputs.user_priority, {"type": "integer", "minimum": 0, "maximum": 4}),
        (inputs.per_page, {"type": "integer", "minimum": 1, "maximum": 100}),
        (inputs.positive_int, {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}),
        (inputs.text(200, 1), {"type": "string", "maxLength": 200, "minLength": 1,
                               "pattern": inputs._text_pattern(False, non_blank=True)}),
        (inputs.text(100), {"type": "string", "maxLength": 100, "pattern": inputs._text_pattern(False, False)}),
        (CHOICE, {"type": "string", "enum": ["customer", "admin"]}),
        (inputs.boolean, {"type": "boolean"}),
    ],
)
def test_schema_values(factory, schema):
    assert factory.schema == schema


def test_email_and_password_schemas():
    assert {key: inputs.email.schema[key] for key in ("type", "format", "maxLength")} == {
        "type": "string", "format": "email", "maxLength": 254}
    assert inputs.password.schema["minLength"] == 10
    assert inputs.password.schema["writeOnly"] is True


def test_sort_spec_accepts_a_mapping_and_lists_keys_in_its_messages():
    sort = inputs.sort_spec({"id": object(), "username": object()})
    assert sort("-username,id") == [("username", True), ("id", False)]
    with pytest.raises(ValueError, match="id, username"):
        sort("email")
    assert "id" in sort.schema["pattern"] and "username" in sort.schema["pattern"]


def test_sort_spec_allows_five_keys():
    sort = inputs.sort_spec(["a", "b", "c", "d", "e", "f"])
    assert len(sort("a,b,c,d,-e")) == 5
    with pytest.raises(ValueError, match="at most 5"):
        sort("a,b,c,d,e,f")


@pytest.mark.parametrize("value", ["short", "x" * 257, "secret-\x00-password"])
def test_password_messages_do_not_echo_the_password(value):
    with pytest.raises(ValueError) as caught:
        inputs.password(value)
    assert value not in str(caught.value)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("value", ["19.99", 19.99, 5, "0.1", 0.30000000000000004 - 0.00000000000000004])
def test_money_is_quantized_to_cents(value):
    assert inputs.money(value).as_tuple().exponent == -2


@pytest.mark.parametrize("value", ["2026-01-02T03:04:05+05:30", "2026-01-02", "2026-01-02T03:04"])
def test_datetimes_are_aware_utc(value):
    result = inputs.iso8601_datetime(value)
    assert result.utcoffset() == timedelta(0)
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    "value", ["2026", "2026-01-01/2026-01-31", "2026-01-01T05:00+05:00/P1D", "P1W/2026-03"]
)
def test_intervals_are_aware_utc_and_ordered(value):
    start, end = inputs.iso8601_interval(value)
    assert start.tzinfo is UTC and end.tzinfo is UTC
    assert start < end


def test_interval_end_date_covers_the_whole_last_day():
    start, end = inputs.iso8601_interval("2026-01-01/2026-01-31")
    assert start <= utc(2026, 1, 31, 23, 59, 59, 999999) < end


@pytest.mark.parametrize(
    ("factory", "args"),
    [
        (inputs.int_range, (5, 1)),
        (inputs.int_range, (1.5, 2)),
        (inputs.int_range, (True, 2)),
        (inputs.text, (10, 20)),
        (inputs.text, (10, -1)),
        (inputs.choice, ()),
        (inputs.choice, (1, 2)),
        (inputs.sort_spec, ("price",)),
        (inputs.sort_spec, ([],)),
        (inputs.sort_spec, (["Price"],)),
    ],
)
def test_factories_refuse_bad_configuration(factory, args):
    with pytest.raises((TypeError, ValueError)):
        factory(*args)


@pytest.mark.parametrize(
    ("input_type", "value", "expected"),
    [
        (inputs.quantity, "3", 3),
        (inputs.money, "19.99", Decimal("19.99")),
        (inputs.boolean, "yes", True),
        (SORT, "-price", [("price", True)]),
    ],
)
def test_reqparse_argument_converts_with_our_types(input_type, value, expected):
    argument = reqparse.Argument("field", type=input_type)
    assert argument.convert(value, "=") == expected


def test_reqparse_argument_propagates_value_error():
    argument = reqparse.Argument("field", type=inputs.quantity)
    with pytest.raises(ValueError, match="whole number"):
        argument.convert(True, "=")


def test_exports():
    for name in inputs.__all__:
        assert callable(getattr(inputs, name))
    assert set(inputs.__all__) >= {
        "email", "username", "password", "money", "quantity", "sku", "category", "boolean", "int_range",
        "positive_int", "user_priority", "page", "per_page", "text", "choice", "iso8601_datetime",
        "iso8601_interval", "sort_spec", "idempotency_key",
    }


# -- the document admits only what the API accepts ---------------------------------------------

PATTERN_TYPES = {name: kind for name, kind in ALL_TYPES.items() if "pattern" in kind.schema}


@pytest.mark.parametrize("name", sorted(PATTERN_TYPES))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_string_the_schema_admits_is_accepted(name, data):
    """What the OpenAPI document calls valid (pattern and lengths) the input type accepts: no mismatch."""
    kind = PATTERN_TYPES[name]
    schema = kind.schema
    strategy = st.from_regex(re.compile(schema["pattern"]), fullmatch=True)
    low, high = schema.get("minLength", 0), schema.get("maxLength", 10_000)
    value = data.draw(strategy.filter(lambda text: low <= len(text) <= high))
    kind(value)  # raises ValueError on a mismatch


# -- column forms: a CSV import's faster way to the same values --------------------------------

STOCK = inputs.int_range(0, 1_000_000_000)
COLUMN_TYPES = {
    "sku": (inputs.sku, inputs.sku.many),
    "category": (inputs.category, inputs.category.many),
    "boolean": (inputs.boolean, inputs.boolean.many),
    "text": (TEXT, TEXT.many),
    "multiline": (MULTILINE, MULTILINE.many),
    "stock": (STOCK, STOCK.many),
    "positive_int": (inputs.positive_int, inputs.positive_int.many),
    "money_cents": (lambda cell: int(inputs.money(cell) * 100), inputs.money.many_cents),
}
# Cells each type accepts in their plain form, in odd forms, and some it refuses.
CELL_SAMPLES = [
    "SKU-1", "a.b_c-d", " SKU-2 ", "-bad", "x" * 64, "x" * 65, "tea", "garden-tools", " tea ", "Tea", "a--b",
    "c" * 64 + "", "c" * 65, "true", "false", "TRUE", " yes ", "0", "1", "no", "maybe", "Product 1", "Tab\there",
    "line\nbreak", "cr\r\nlf", "nul\x00", "bell\x07", "\u2028", "  ", "", "5", "+5", " 5 ", "-1", "007", "2147483647",
    "2147483648", "1000000000", "1000000001", "19.99", "0.01", "0.00", "0", "1.", ".5", "01.50", "1.500", "1.555",
    "9999999.99", "10000000", "1e3", "NaN", "٣", "1_000", "12.5", "0.10", "0.1",
]


def cell_by_cell(convert, cells):
    try:
        return [convert(cell) for cell in cells]
    except ValueError:
        return ValueError


@pytest.mark.parametrize("name", sorted(COLUMN_TYPES))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(cells=st.lists(st.one_of(st.sampled_from(CELL_SAMPLES), st.text(max_size=12),
                                st.text(alphabet="0123456789.+- \t", max_size=12)), max_size=12))
def test_a_column_form_answers_what_its_type_answers_cell_by_cell(name, cells):
    """``many(cells)`` is the list of each cell's value, or ValueError when the type refuses any cell.

    An empty column is an empty list (an import's optional column left empty in a whole batch).
    """
    convert, many = COLUMN_TYPES[name]
    expected = cell_by_cell(convert, cells)
    if expected is ValueError:
        with pytest.raises(ValueError):
            many(cells)
    else:
        assert many(cells) == expected


@pytest.mark.parametrize("name", sorted(COLUMN_TYPES))
def test_a_column_of_plain_cells_answers_what_its_type_answers(name):
    convert, many = COLUMN_TYPES[name]
    accepted = [cell for cell in CELL_SAMPLES if cell_by_cell(convert, [cell]) is not ValueError]
    assert accepted and many(accepted) == [convert(cell) for cell in accepted]
    for refused in (cell for cell in CELL_SAMPLES if cell_by_cell(convert, [cell]) is ValueError):
        with pytest.raises(ValueError):
            many([*accepted, refused])


def test_plain_amounts_are_read_to_the_exact_cent():
    """money_cents reads plainly written amounts through a float: exact for every amount up to 9999999.99."""
    import random

    rng = random.Random(12)
    cents = [*range(1, 2000), *range(999_999_000, 999_999_999 + 1),
             *(rng.randint(1, 999_999_999) for _ in range(100_000))]
    written = [f"{value // 100}.{value % 100:02d}" for value in cents]
    assert inputs.money.many_cents(written) == cents
    short = [text.rstrip("0").rstrip(".") for text in written]  # 12.50 -> 12.5, 12.00 -> 12
    assert inputs.money.many_cents(short) == cents
