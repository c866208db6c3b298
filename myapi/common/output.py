"""From what a method returns to the answer: the ``marshal_with`` half of the pipeline.

:func:`respond` turns the method's object (or ``(obj, status, headers)``)
into a response as its :class:`~.contract.Output` says: one item (ETag,
304, Location), a ``Page`` (the list envelope and its headers), a list in an
envelope (reports), or an ``Export`` (a streamed download). Two request
options apply to all of them, here and nowhere else:

* ``fields=`` (DESIGN §8.1): only the named output fields, in the field
  dict's order, in every representation; the ETag names the selection;
* ``Prefer: return=minimal`` (§8.2) on POST/PUT/PATCH: the write happens,
  the answer has no body (201, or 204), keeps Location and ETag and says
  ``Preference-Applied: return=minimal``.
"""

from __future__ import annotations

from flask import Response, g, request
from werkzeug.wrappers import Response as ResponseBase

from ..db import get_session, stream_session
from ..services import changes
from ..services.query import Export
from .contract import Output
from .errors import validation_problem
from .etags import entity_tag, matches_if_none_match
from .fields import Selection, field_names, marshal, select_fields
from .media import CSV
from .pagination import page_body, page_headers
from .representations import Collection, download, marshalled, render, stream_answer, streamed

PREFERENCE_APPLIED = "Preference-Applied"
NEXT_SINCE = "X-Next-Since"
CHANGES_SINCE = "X-Changes-Since"
MINIMAL = "return=minimal"
WRITES = frozenset({"POST", "PUT", "PATCH"})


def requested_selection(output: Output | None) -> Selection | None:
    """The request's ``fields=`` as a Selection of ``output``'s fields (400 if invalid)."""
    raw = request.args.getlist("fields")
    if not raw or output is None:
        return None
    if len(raw) > 1:
        raise validation_problem({"fields": "Give this parameter once."})
    try:
        if output.select_within is None:
            selection = select_fields(output.fields, raw[0])
        else:
            selection = _select_within(output.fields, output.select_within, raw[0])
    except ValueError as error:
        raise validation_problem({"fields": str(error)}) from None
    g.field_selection = selection  # the ETag names it (etags.entity_tag)
    return selection


def _select_within(field_dict: dict, group: str, spec: str) -> Selection:
    """``fields=`` naming fields of the nested ``group`` (a feed's item); the other members are kept."""
    inner = select_fields(field_dict[group].nested, spec)  # checks the names against the item's fields
    others = [name for name in field_dict if name != group]
    return select_fields(field_dict, ",".join([*others, *(f"{group}.{name}" for name in inner.names)]))


def wants_minimal() -> bool:
    """``Prefer: return=minimal`` on a write (RFC 7240; other preferences are ignored)."""
    if request.method not in WRITES:
        return False
    for header in request.headers.getlist("Prefer"):
        for preference in header.split(","):
            if preference.split(";", 1)[0].strip().lower().replace(" ", "") == MINIMAL:
                return True
    return False


def _unpack(result) -> tuple[object, int | None, dict]:
    if isinstance(result, tuple):
        obj, status, headers = (*result, None, None)[:3]
        return obj, status, dict(headers or {})
    return result, None, {}


def _bodiless(status: int, headers: dict) -> Response:
    response = Response(status=status)
    response.headers.extend(headers)
    del response.headers["Content-Type"]
    return response


def respond(output: Output | None, result) -> Response:
    """The answer for ``result``, the return value of a method with this output."""
    if isinstance(result, ResponseBase):
        return result
    obj, status, headers = _unpack(result)
    if output is None:  # a method without a body (DELETE): 204
        return _bodiless(status or 204, headers) if obj is None else render(obj, status or 200, headers)
    status = status or output.status
    selection = g.get("field_selection")
    to_dict = selection.marshal if selection is not None else (lambda item: marshal(item, output.fields))
    columns = selection.columns if selection is not None else field_names(output.fields)
    if output.export:
        return _export(obj, to_dict, columns)
    if output.feed:
        body = Collection({"data": [to_dict(entry) for entry in obj.entries], "next_since": str(obj.next_since)},
                          columns=columns)
        return render(body, status, {**headers, NEXT_SINCE: str(obj.next_since)})
    if output.paged:
        return render(page_body(obj, to_dict, columns), status, {**headers, **page_headers(obj)})
    if output.etag:
        headers["ETag"] = entity_tag(obj.version)
        if request.method in ("GET", "HEAD") and matches_if_none_match(headers["ETag"],
                                                                       request.headers.get("If-None-Match")):
            return _bodiless(304, {"ETag": headers["ETag"]})
    if output.location is not None:
        headers["Location"] = output.location(obj)
    if output.minimal and wants_minimal():
        return _bodiless(201 if status == 201 else 204, {**headers, PREFERENCE_APPLIED: MINIMAL})
    alternate = (output.alternates or {}).get(g.get("media_type"))
    if alternate is not None:  # a stream of the object's own (an import's rejected rows, a plan's diff)
        return stream_answer(alternate.render(obj), status, headers)
    body = to_dict(obj)
    if output.envelope is not None:
        body = Collection({output.envelope: body}, columns=columns)
    return render(body, status, headers)


def _export(export: Export, to_dict, columns: list[str]) -> Response:
    """A streamed download; the rows are read from a session the body owns.

    ``X-Total-Count`` is the number of items when the download starts (for a
    progress bar; the rows are read by another statement, which may see a
    write that committed in between).
    """
    total = export.count(get_session()) if export.count is not None else None
    # Taken before the rows are read: following the feed from it misses nothing the file lacks.
    since = changes.watermark(get_session()) if export.feed is not None else None
    session = stream_session()
    if g.get("media_type") == CSV and export.csv is not None:  # formatted by the database
        response = download(export.csv(session, columns), export.name)
    else:
        response = streamed(marshalled(session, export.rows, to_dict), columns, export.name)
    if total is not None:
        response.headers["X-Total-Count"] = str(total)
    if since is not None:
        response.headers[CHANGES_SINCE] = str(since)
    return response

