"""One error shape for every route: ``application/problem+json`` (RFC 9457).

Everything that can go wrong in a request ends in :func:`problem_from_exception`:
our own :class:`Problem` raises, Werkzeug's HTTP errors (404 for unknown routes,
405, 413, 415...), flask-restful's ``abort``, database races and outages, and
unexpected exceptions. ``MyApi.handle_error`` (app.py) and the app's own error
handlers both call it, so tests (where flask-restful would re-raise) and
production behave alike. A 500 is logged with its traceback and request_id;
the client only ever sees a generic message.
"""

from __future__ import annotations

import logging
import uuid

import orjson
from flask import Response, current_app, g, got_request_exception, has_request_context, request
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import RequestRedirect

from .. import problems
from ..problems import ProblemType
from ..services.errors import DomainError, PreconditionFailed
from .etags import entity_tag
from .fields import API_PREFIX
from .media import PROBLEM as PROBLEM_MEDIA_TYPE

log = logging.getLogger("myapi.errors")

#: SQLSTATEs of a transaction the database rolled back for a concurrent one: a deadlock
#: (40P01) or a serialization failure (40001). Nothing was written; a retry is safe.
CONFLICTED_WRITES = frozenset({"40P01", "40001"})

DOCS = f"{API_PREFIX}/docs"
OPENAPI = f"{API_PREFIX}/openapi.json"
#: RFC 8631: where a person (service-doc) and a program (service-desc) learn the API.
SERVICE_LINKS = f'<{DOCS}>; rel="service-doc", <{OPENAPI}>; rel="service-desc"'


class Problem(HTTPException):
    """An error answer. Raise it anywhere in a request; it becomes problem+json.

    ``type`` is a kind from the catalogue (myapi/problems.py), which also
    gives the title; generic HTTP errors leave it at about:blank.
    """

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: ProblemType | None = None,
        errors: dict | list | None = None,
        headers: dict | None = None,
        extra: dict | None = None,
    ):
        super().__init__(description=detail)
        self.code = status
        self.detail = detail
        self.title = title or (type.title if type else HTTP_STATUS_CODES.get(status, "Error"))
        self.type = type.uri if type else problems.BLANK
        self.errors = errors
        self.extra_headers = dict(headers or {})
        self.extra = dict(extra or {})

    @classmethod
    def of(cls, kind: ProblemType, detail: str, **options) -> Problem:
        """A problem of a catalogued kind, with that kind's status."""
        return cls(kind.status, detail, type=kind, **options)

    def get_response(self, environ=None, scope=None) -> Response:  # werkzeug hook
        return problem_response(self)


def validation_problem(errors: dict | list, detail: str = "The request has invalid fields.") -> Problem:
    return Problem.of(problems.VALIDATION, detail, errors=errors)


def request_id() -> str:
    """The request's id: the caller's sane ``X-Request-ID`` or a fresh one."""
    if not has_request_context():
        return ""
    if "request_id" not in g:
        g.request_id = uuid.uuid4().hex
    return g.request_id


def problem_response(problem: Problem) -> Response:
    body = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.code,
        "detail": problem.detail or problem.title,
    }
    if problem.errors:
        body["errors"] = problem.errors
    body.update(problem.extra)
    body["request_id"] = request_id()
    response = Response(orjson.dumps(body), status=problem.code, mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in problem.extra_headers.items():
        response.headers[name] = value
    return response


def problem_from_exception(error: BaseException) -> Problem:
    """Translate any exception raised during a request into a Problem."""
    if isinstance(error, Problem):
        return error
    if isinstance(error, HTTPException):
        return _from_http_exception(error)
    if isinstance(error, DomainError):
        headers = {"ETag": entity_tag(error.version)} if isinstance(error, PreconditionFailed) else None
        return Problem.of(error.problem, error.detail, title=error.title, errors=error.errors, extra=error.extra,
                          headers=headers)
    if isinstance(error, StaleDataError):
        return Problem.of(problems.CONCURRENT_UPDATE,
                          "The resource was changed by another request while this one ran; fetch it and try again.")
    if isinstance(error, sa_exc.DataError):
        # A value the database refuses (the input types should have caught
        # it: this is the safety net). The database's message is not echoed.
        log.warning("data error request_id=%s: %s", request_id(), error.orig)
        return Problem.of(problems.VALIDATION, "The request holds a value the database cannot store.")
    if isinstance(error, sa_exc.IntegrityError):
        # Resources translate the races they expect (duplicate username...)
        # into precise messages; this is the safety net. Never echo the
        # database's message: it can contain values and schema details.
        log.warning("integrity error request_id=%s: %s", request_id(), error.orig)
        return Problem.of(problems.CONFLICT, "The request conflicts with the current state of the data.")
    if isinstance(error, sa_exc.DBAPIError) and getattr(error.orig, "sqlstate", None) in CONFLICTED_WRITES:
        # psycopg's DeadlockDetected and SerializationFailure (OperationalErrors, so before the next
        # case): not an outage, a write that met a concurrent one. The transaction was rolled back.
        log.warning("write conflict request_id=%s: %s", request_id(), error.orig)
        return Problem.of(problems.WRITE_CONFLICT, "This write conflicted with a concurrent one and the database "
                          "rolled it back: nothing was written. Retry it.", headers={"Retry-After": "1"})
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)) or (
        isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated
    ):
        log.error("database unavailable request_id=%s: %s", request_id(), error)
        return Problem.of(problems.UNAVAILABLE, "The database is not answering; try again shortly.",
                          headers={"Retry-After": "5"})
    log.error("unhandled exception request_id=%s", request_id(), exc_info=error)
    return Problem(500, "An unexpected error occurred. Quote the request_id when you report it.")


def _from_http_exception(error: HTTPException) -> Problem:
    status = error.code or 500
    detail = error.description
    data = getattr(error, "data", None)  # flask_restful.abort(..., message=...)
    errors = None
    if isinstance(data, dict) and "message" in data:
        message = data["message"]
        if isinstance(message, dict):
            errors, detail = message, "The request has invalid fields."
        else:
            detail = str(message)
    if status == 429:
        detail = f"Too many requests (limit: {error.description}); retry after Retry-After seconds."
    headers = {}
    if error.response is None:
        for name, value in error.get_headers():
            if name.lower() not in {"content-type", "content-length"}:
                headers[name] = value
    if isinstance(error, NotFound) and has_request_context() and request.url_rule is None:
        detail = unknown_url_detail(request.path)  # no route: a mistyped or unprefixed URL
        headers["Link"] = SERVICE_LINKS
    return Problem(
        status,
        detail,
        title=error.name if status in HTTP_STATUS_CODES else None,
        errors=errors,
        headers=headers,
        type=problems.VALIDATION if errors else None,
    )


def body_too_large_detail(limit: int) -> str:
    """The 413's detail: the limit in words and bytes, and the setting that sets it.

    The limit is ``MYAPI_MAX_CONTENT_LENGTH``, or the resource's own
    (``Resource.max_body_setting``: ``MYAPI_MAX_IMPORT_BYTES`` for the CSV import,
    ``MYAPI_MAX_BULK_BYTES`` for ``PATCH /products``).
    """
    setting = "MAX_CONTENT_LENGTH"
    if has_request_context():
        view = current_app.view_functions.get(request.endpoint or "")
        setting = body_setting(getattr(view, "view_class", None), request.method.lower()) or setting
    amount = f"{limit} bytes"
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size:
            amount = f"{limit / size:.3g} {unit} ({limit} bytes)"
            break
    return f"The request body is larger than {amount}, the limit set by MYAPI_{setting}."


def body_setting(view_class, method: str) -> str | None:
    """The config key of ``view_class``'s own body limit for ``method`` (``Resource.max_body_setting``), if any."""
    setting = getattr(view_class, "max_body_setting", None)
    return setting.get(method) if isinstance(setting, dict) else setting


def unknown_url_detail(path: str) -> str:
    """A 404 for a URL no route matches: the URL that was probably meant, and where every URL is listed.

    The candidates are the path without its trailing slash, and with the
    ``/api/v1`` prefix it lacks (``/products`` → ``/api/v1/products``).
    """
    shown = path if len(path) <= 200 else path[:199] + "…"
    candidates = [path.rstrip("/")] if len(path) > 1 and path.endswith("/") else []
    if not path.startswith(API_PREFIX + "/"):
        candidates += [API_PREFIX + candidate for candidate in (path, *candidates) if candidate != "/"]
    adapter = current_app.url_map.bind("localhost")
    for candidate in candidates:
        try:
            adapter.match(candidate, method=request.method)
        except (RequestRedirect, MethodNotAllowed):
            pass  # a route of that URL (with a slash, or for other methods): still the right hint
        except HTTPException:
            continue
        return f"No such URL: {shown}. Did you mean {candidate}? Every URL of the API is listed at {DOCS}."
    return (f"No such URL: {shown}. The API is under {API_PREFIX}/ (an index of links); every URL is listed "
            f"at {DOCS}, and described in {OPENAPI}.")


def handle_exception(error: BaseException) -> Response:
    """The one error path: every route's errors are answered here."""
    try:
        problem = problem_from_exception(error)
        if problem.code >= 500:
            got_request_exception.send(current_app._get_current_object(), exception=error)
        return problem_response(problem)
    except Exception:  # the error path itself must never fail into an HTML page
        log.exception("error while handling an error")
        body = {"type": "about:blank", "title": "Internal Server Error", "status": 500}
        return Response(orjson.dumps(body), status=500, mimetype=PROBLEM_MEDIA_TYPE)
