"""Cursors (DESIGN §9): where a walk of a list is, opaque to clients and tamper-evident.

A cursor is ``<payload>.<tag>``, both base64url without padding. The
payload is compact JSON::

    {"v": 1, "s": [["price", true], ["name", false]], "f": "<filters digest>",
     "k": [{"d": "19.99"}, "Sencha", 42], "w": "0.1234"}

``s`` the sort it was made for (normalised: :func:`normal_sort`), ``f``
a digest of the list's path and parsed filter values (:func:`filters_digest`),
``k`` the sort-key values and id of the last row the page showed, and
``w`` the change feed's watermark taken when the walk started (None for a
list no feed continues). The tag is the first 16 bytes of the payload's
HMAC-SHA256 under a key derived from the app's ``SECRET_KEY``: a cursor
that was forged, edited, cut short or made by a server with another
secret is refused (400 naming ``cursor``) before its payload is even read.

Values keep their exact type and value: a ``Decimal`` is ``{"d": "19.99"}``,
a timezone-aware datetime ``{"t": "<ISO 8601 with microseconds and
offset>"}``, strings, integers and ``null`` are JSON's own.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from flask import current_app

VERSION = 1
TAG_BYTES = 16
#: The longest payload part a cursor may have: the longest sort-key values of any list fit well within
#: it (tests/test_cursors.py makes the longest), and a URL carrying it stays under gunicorn's 8190 bytes.
MAX_PAYLOAD = 4000
PATTERN = f"^[A-Za-z0-9_-]{{2,{MAX_PAYLOAD}}}\\.[A-Za-z0-9_-]{{22}}$"
MAX_LENGTH = MAX_PAYLOAD + 1 + 22
_KEY_PURPOSE = b"myapi/cursor/v1"


class CursorError(ValueError):
    """Not a cursor this server made (forged, edited, truncated, another server's secret)."""


@dataclass(frozen=True)
class Cursor:
    sort: tuple[tuple[str, bool], ...]
    filters: str
    keys: tuple
    watermark: str | None = None


def normal_sort(spec: Sequence[tuple[str, bool]] | None) -> tuple[tuple[str, bool], ...]:
    """The order a ``sort=`` spec means: keys after ``id`` dropped, a last ascending ``id`` implied.

    ``sort=`` absent, ``sort=id`` and ``sort=id,name`` are one order (the id
    is unique and always the last key); ``sort=-id`` is another.
    """
    keys: list[tuple[str, bool]] = []
    for name, descending in spec or ():
        keys.append((name, bool(descending)))
        if name == "id":
            break
    if keys and keys[-1] == ("id", False):
        keys.pop()
    return tuple(keys)


def filters_digest(path: str, filters: Mapping[str, Any]) -> str:
    """A digest of a list's path and its parsed filter values (not of the query string).

    ``?min_price=4.5`` and ``?min_price=4.50`` are the same filter, and so
    are two spellings of one instant.
    """
    canonical = orjson.dumps({"path": path, "filters": {name: _normal(value) for name, value in filters.items()}},
                             option=orjson.OPT_SORT_KEYS)
    return _b64(hashlib.sha256(canonical).digest()[:16])


def encode(cursor: Cursor) -> str:
    payload = orjson.dumps({"v": VERSION, "s": [list(key) for key in cursor.sort], "f": cursor.filters,
                            "k": [_encode_value(value) for value in cursor.keys], "w": cursor.watermark})
    return f"{_b64(payload)}.{_b64(_tag(payload))}"


def decode(token: str) -> Cursor:
    """The cursor ``token`` holds; CursorError unless this server made it."""
    try:
        payload_part, tag_part = token.split(".")
        payload, tag = _unb64(payload_part), _unb64(tag_part)
    except (ValueError, binascii.Error):
        raise CursorError("malformed") from None
    if not hmac.compare_digest(tag, _tag(payload)):
        raise CursorError("bad tag")
    try:
        data = orjson.loads(payload)
        if data["v"] != VERSION:
            raise CursorError("another version")
        sort = tuple((str(name), bool(descending)) for name, descending in data["s"])
        return Cursor(sort=sort, filters=str(data["f"]), keys=tuple(_decode_value(v) for v in data["k"]),
                      watermark=data["w"] if data["w"] is None else str(data["w"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidOperation) as error:
        raise CursorError("unreadable") from error


# -- values -------------------------------------------------------------------------


def _encode_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return {"d": str(value)}
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise TypeError("a cursor keeps timezone-aware datetimes only")
        return {"t": value.isoformat(timespec="microseconds")}
    raise TypeError(f"a cursor cannot keep a {type(value).__name__}")


def _decode_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, dict) and len(value) == 1:
        if "d" in value:
            return Decimal(value["d"])
        if "t" in value:
            moment = dt.datetime.fromisoformat(value["t"])
            if moment.tzinfo is None:
                raise ValueError("naive datetime")
            return moment
    raise ValueError("not a cursor value")


def _normal(value: Any) -> Any:
    """A filter value in one canonical JSON form (for :func:`filters_digest`)."""
    if isinstance(value, Decimal):
        return {"d": format(value.normalize(), "f")}
    if isinstance(value, dt.datetime):
        moment = value.astimezone(dt.timezone.utc) if value.tzinfo else value
        return {"t": moment.isoformat(timespec="microseconds")}
    if isinstance(value, (list, tuple)):
        return [_normal(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _normal(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


# -- the seal -----------------------------------------------------------------------


def _tag(payload: bytes) -> bytes:
    secret = current_app.config["SECRET_KEY"]
    secret = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    key = hmac.new(secret, _KEY_PURPOSE, hashlib.sha256).digest()  # a key for cursors only
    return hmac.new(key, payload, hashlib.sha256).digest()[:TAG_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:  # another spelling of the same bytes (unused low bits set): an edited cursor too
        raise ValueError("not canonical base64url")
    return raw
