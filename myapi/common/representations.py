"""Content negotiation and the JSON / CSV representations.

A resource declares the media types it can produce (``Resource.media_types``).
:func:`negotiate` picks one before the resource runs: ``?format=`` wins over
``Accept``; no Accept, ``*/*`` or ``application/*`` mean JSON; an Accept we
cannot satisfy is a 406 problem (flask-restful would silently answer JSON).
Errors are always problem+json and never pass through here.

CSV: a header row, nested objects flattened with dotted names (``links.self``),
a list of objects (an order's ``items``) exploded to one row per element, and
each cell written by the rules of :mod:`myapi.csvcells` (formula cells
neutralised with a leading apostrophe, booleans as true/false, None empty).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from decimal import Decimal

import orjson
from flask import Response, g, request

from ..csvcells import LINE_END, csv_cell, flatten
from .errors import Problem
from .heartbeat import beating
from .media import CSV, FORMATS, JSON, NDJSON

EXTENSIONS = {media: ext for ext, media in FORMATS.items()}


def negotiate(media_types: tuple[str, ...]) -> str:
    """Choose the response media type among ``media_types`` (first is default)."""
    requested = request.args.get("format")
    if requested is not None:
        media_type = FORMATS.get(requested.lower())
        if media_type in media_types:
            return media_type
        raise Problem(
            406,
            f"format={requested[:40]!r} is not available here; choose one of "
            + ", ".join(ext for ext, media in FORMATS.items() if media in media_types)
            + ".",
        )
    accept = request.accept_mimetypes
    if not accept or accept.best == "*/*":
        return media_types[0]
    best = accept.best_match(media_types)
    if best is None:
        raise Problem(406, "This resource can be represented as " + ", ".join(media_types) + ".")
    # Werkzeug ranks equally-weighted wildcards by our order, so "*/*" alone
    # still gets the default while "text/csv, */*;q=0.1" gets CSV.
    return best


class Collection(dict):
    """A response body that knows its CSV columns even when it has no rows."""

    def __init__(self, *args, columns: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.columns = columns


def _json_default(value):
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps_json(data) -> bytes:
    return orjson.dumps(data, default=_json_default)


def output_json(data, code, headers=None) -> Response:
    response = Response(dumps_json(data), status=code, mimetype=JSON)
    response.headers.extend(headers or {})
    return response


# -- CSV (cells as myapi.csvcells says) ---------------------------------------


def csv_records(data) -> tuple[list[Mapping], list[str] | None]:
    """The records a body holds, and its declared columns if it has them."""
    columns = getattr(data, "columns", None)
    if isinstance(data, Mapping) and isinstance(data.get("data"), list):
        return data["data"], columns
    if isinstance(data, list):
        return data, columns
    return [data], columns


def csv_columns(rows: Iterable[Mapping]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def write_csv(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=LINE_END)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(column)) for column in columns])
    return buffer.getvalue()


def output_csv(data, code, headers=None) -> Response:
    records, columns = csv_records(data)
    rows = [row for record in records for row in flatten(record)]
    if columns is None or any(key not in columns for row in rows for key in row):
        columns = csv_columns(rows) if rows else (columns or [])
    response = Response(write_csv(rows, columns).encode("utf-8"), status=code,
                        mimetype=CSV)
    response.headers["Content-Type"] = "text/csv; charset=utf-8; header=present"
    response.headers.extend(headers or {})
    return response


def output_ndjson(data, code, headers=None) -> Response:
    """One JSON object per line: the records of a list body (a feed's changes), or the one item."""
    records, _columns = csv_records(data)
    response = Response(b"".join(dumps_json(record) + b"\n" for record in records), status=code, mimetype=NDJSON)
    response.headers.extend(headers or {})
    return response


REPRESENTATIONS = {JSON: output_json, CSV: output_csv, NDJSON: output_ndjson}


def render(data, code: int, headers=None) -> Response:
    """Render ``data`` in the media type chosen for this request (JSON if none)."""
    media_type = g.get("media_type", JSON)
    renderer = REPRESENTATIONS.get(media_type, output_json)
    return renderer(data, code, headers)


# -- streams (exports) -------------------------------------------------------


def _batched(chunks: Iterable[str | bytes], size: int = 64 * 1024) -> Iterable[bytes]:
    """Join small pieces into ~64 KiB writes (one per row would be slow)."""
    buffer: list[bytes] = []
    length = 0
    for chunk in chunks:
        data = chunk.encode("utf-8") if isinstance(chunk, str) else chunk
        buffer.append(data)
        length += len(data)
        if length >= size:
            yield b"".join(buffer)
            buffer, length = [], 0
    if buffer:
        yield b"".join(buffer)


def csv_stream(records: Iterable[Mapping], columns: list[str]) -> Iterable[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=LINE_END)
    writer.writerow(columns)
    yield buffer.getvalue()  # the header goes out before the first row is read
    for record in records:
        buffer.seek(0)
        buffer.truncate()
        for row in flatten(record):
            writer.writerow([csv_cell(row.get(column)) for column in columns])
        yield buffer.getvalue()


def ndjson_stream(records: Iterable[Mapping]) -> Iterable[bytes]:
    for record in records:
        yield dumps_json(record) + b"\n"


def json_array_stream(records: Iterable[Mapping]) -> Iterable[bytes]:
    yield b"["
    separator = b""
    for record in records:
        yield separator + dumps_json(record)
        separator = b","
    yield b"]"


def marshalled(session, rows, to_dict) -> Iterable[dict]:
    """``rows(session)`` marshalled by ``to_dict`` as the client downloads; closes ``session`` at the end.

    ``session`` is a stream session (db.stream_session): the request's own is
    already closed by the time a streamed body is read. ``rows`` is called
    only when the body is first read, so an unread body holds no cursor.
    """
    with session:
        for row in rows(session):
            yield to_dict(row)


def streamed(records: Iterable[Mapping], columns: list[str], filename: str) -> Response:
    """A streamed download of ``records`` in the negotiated media type."""
    media_type = g.get("media_type", JSON)
    if media_type == CSV:
        chunks = csv_stream(records, columns)
    elif media_type == NDJSON:
        chunks = ndjson_stream(records)
    else:
        chunks = json_array_stream(records)
    return download(_batched(chunks), filename)


def stream_answer(chunks: Iterable[bytes], status: int, headers: dict) -> Response:
    """A streamed answer (not a download) in the negotiated media type: ``chunks`` joined ~64 KiB at a time."""
    media_type = g.get("media_type", JSON)
    response = Response(beating(_batched(chunks)), status=status, mimetype=media_type)
    if media_type == CSV:
        response.headers["Content-Type"] = "text/csv; charset=utf-8; header=present"
    response.headers.extend(headers)
    return response


def download(chunks: Iterable[bytes], filename: str) -> Response:
    """A streamed attachment of ready-made ``chunks`` in the negotiated media type."""
    media_type = g.get("media_type", JSON)
    response = Response(beating(chunks), mimetype=media_type)  # a long download keeps the worker alive
    if media_type == CSV:
        response.headers["Content-Type"] = "text/csv; charset=utf-8; header=present"
    extension = EXTENSIONS[media_type]
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}.{extension}"'
    return response
