"""The document's shared components: the problem shape, pagination, headers, parameters, errors.

Constant text about the API's conventions; the problem types come from the
one catalogue (myapi/problems.py).
"""

from __future__ import annotations

import copy
from typing import Any

from ... import problems
from .. import inputs
from ..media import PROBLEM

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "An error, as RFC 9457 problem details (application/problem+json).",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {
            "type": "string",
            "format": "uri-reference",
            "description": "about:blank for plain HTTP errors, otherwise one of: " + "; ".join(
                f"`{kind.uri}` ({kind.status}: {kind.description})" for kind in problems.CATALOGUE.values()),
            "examples": [problems.VALIDATION.uri],
        },
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {
            "description": "Every invalid field with its message ({field: message}), or a list of "
                           "problems (rows of an import, short lines of an order).",
            "anyOf": [
                {"type": "object", "additionalProperties": {"type": "string"}},
                {"type": "array", "items": {"type": "object"}},
            ],
        },
        "request_id": {"type": "string", "description": "Quote it when you report a problem."},
    },
    "additionalProperties": True,
}

_PAGE_NUMBER = {"type": "integer", "minimum": 1, "description": "By page only: this page's number."}
_PER_PAGE = {"type": "integer", "minimum": 1, "maximum": 100}
_TOTAL_ITEMS = {"type": "integer", "minimum": 0,
                "description": "Every matching row (not with count=none); with count=estimated, the database's "
                               "estimate when total_is_estimate is true."}
_TOTAL_PAGES = {"type": "integer", "minimum": 0, "description": "By page only, when counted."}
_TOTAL_IS_ESTIMATE = {"type": "boolean",
                      "description": "Only with count=estimated: whether total_items is an estimate (false: the "
                                     "database had none, so the rows were counted)."}
_NEXT_CURSOR = {"anyOf": [{"type": "string", "pattern": inputs.cursor.schema["pattern"]}, {"type": "null"}],
                "description": "Send it as `cursor` (with the same filters and sort) for the rows after this page; "
                               "null when none follows."}


def _pagination_shape(title: str, members: dict, required: list[str]) -> dict:
    return {"title": title, "type": "object", "required": required, "properties": members,
            "additionalProperties": False}


# Exactly one shape per mode (by page or by cursor) and count (counted or count=none): the
# fuzzing gate validates every answer against it (common/pagination.py chooses the members).
PAGINATION_SCHEMA = {
    "description": "Where this page is. By page: page, per_page, total_items and total_pages (not with "
                   "count=none), total_is_estimate (only with count=estimated), next_cursor. By cursor: the "
                   "same without page and total_pages.",
    "oneOf": [
        _pagination_shape("by page, counted",
                          {"page": _PAGE_NUMBER, "per_page": _PER_PAGE, "total_items": _TOTAL_ITEMS,
                           "total_pages": _TOTAL_PAGES, "total_is_estimate": _TOTAL_IS_ESTIMATE,
                           "next_cursor": _NEXT_CURSOR},
                          ["page", "per_page", "total_items", "total_pages", "next_cursor"]),
        _pagination_shape("by page, count=none",
                          {"page": _PAGE_NUMBER, "per_page": _PER_PAGE, "next_cursor": _NEXT_CURSOR},
                          ["page", "per_page", "next_cursor"]),
        _pagination_shape("by cursor, counted",
                          {"per_page": _PER_PAGE, "total_items": _TOTAL_ITEMS,
                           "total_is_estimate": _TOTAL_IS_ESTIMATE, "next_cursor": _NEXT_CURSOR},
                          ["per_page", "total_items", "next_cursor"]),
        _pagination_shape("by cursor, count=none",
                          {"per_page": _PER_PAGE, "next_cursor": _NEXT_CURSOR},
                          ["per_page", "next_cursor"]),
    ],
}

HEADERS = {
    "ETag": {
        "description": 'The strong validator of this representation: "v<version>" for JSON, '
                       '"v<version>-csv" for CSV, with a suffix naming a `fields=` selection.',
        "schema": {"type": "string", "examples": ['"v3"']},
    },
    "Location": {"description": "The path of the created resource.",
                 "schema": {"type": "string", "format": "uri-reference"}},
    "Link": {"description": "RFC 8288 links. By page: first, prev and last by number (last only when counted), "
                            "next by cursor (the rows after this page). By cursor: first (a new walk) and next.",
             "schema": {"type": "string"}},
    "X-Total-Count": {"description": "The number of items on all pages (with count=estimated, maybe an "
                                      "estimate; not with count=none), or of an export: in the whole download, "
                                      "counted as it starts.",
                      "schema": {"type": "integer", "minimum": 0}},
    "Content-Disposition": {"description": 'attachment; filename="<name>-<date>.<json|ndjson|csv>"',
                            "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "true when this is the stored answer to an earlier request "
                                           "with the same Idempotency-Key.",
                            "schema": {"type": "string", "enum": ["true"]}},
    "Preference-Applied": {"description": "return=minimal when the answer honours Prefer: return=minimal "
                                          "(no body).",
                           "schema": {"type": "string", "enum": ["return=minimal"]}},
    "X-Changes-Since": {"description": "The change-feed watermark of this export: GET the feed with "
                                       "since=<it> to follow every change the file lacks. Also on the last "
                                       "page of a walk of products or orders (next_cursor null, reached by "
                                       "cursor or the first page itself): the watermark taken when the walk "
                                       "started.",
                        "schema": {"type": "string"}},
    "X-Next-Since": {"description": "The watermark to ask the feed from next (also next_since).",
                     "schema": {"type": "string"}},
    "X-Import-Id": {"description": "The id of this bulk change's audit record: GET /imports/<it> shows who, "
                                   "when, the options, the counts and the changes.",
                    "schema": {"type": "integer", "minimum": 1}},
    "WWW-Authenticate": {"description": "The scheme to authenticate with.", "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}},
    "Accept-Post": {"description": "The media types this operation accepts.", "schema": {"type": "string"}},
}

PARAMETERS = {
    "IfNoneMatch": {
        "name": "If-None-Match",
        "in": "header",
        "description": "304 Not Modified when the item's ETag is one of these.",
        "schema": {"type": "string", "maxLength": 1000},
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "Makes a retry of this POST safe: the same key and request replay the first answer "
                       "(Idempotent-Replayed: true), the same key with another request is 422. "
                       "Kept 24 hours per caller.",
        "schema": inputs.idempotency_key.schema,
    },
    "Prefer": {
        "name": "Prefer",
        "in": "header",
        "description": "return=minimal: the write happens, the answer has no body (201 or 204) but keeps "
                       "Location and ETag, and says Preference-Applied: return=minimal. "
                       "return=representation (the default) answers the item.",
        "schema": {"type": "string", "enum": ["return=representation", "return=minimal"]},
    },
}

ERROR_RESPONSES = {
    400: ("BadRequest", "The request is malformed or has invalid, missing or unknown fields (all listed in "
                        "`errors`)."),
    401: ("Unauthorized", "No valid credentials: sign in and send 'Authorization: Bearer <token>' (or an API "
                          "key); credentials that are sent must be valid everywhere (RFC 6750 invalid_token)."),
    403: ("Forbidden", "Signed in, but not allowed to do this (an API key: `errors.scope` names the missing "
                       "scope)."),
    404: ("NotFound", "No such resource (or not one the caller may see)."),
    406: ("NotAcceptable", "`format` or `Accept` names a media type this resource cannot produce."),
    409: ("Conflict", "The request conflicts with the current state: a duplicate, insufficient stock, an "
                      "illegal transition, a concurrent update or a duplicate request still running."),
    412: ("PreconditionFailed", "If-Match does not match the item's current ETag."),
    413: ("ContentTooLarge", "The body is larger than the limit."),
    415: ("UnsupportedMediaType", "The body's Content-Type is not one this operation accepts."),
    410: ("Gone", "The changes after this watermark were pruned: export again and follow the feed from the "
                  "export's X-Changes-Since."),
    422: ("UnprocessableContent", "The Idempotency-Key was used before with another request."),
    429: ("TooManyRequests", "Rate limit reached: retry after Retry-After seconds."),
    503: ("ServiceUnavailable", "The database is not answering: retry after Retry-After seconds."),
}
ERROR_STATUSES = tuple(ERROR_RESPONSES)
ERROR_HEADERS = {401: "WWW-Authenticate", 412: "ETag", 415: "Accept-Post", 429: "Retry-After",
                 503: "Retry-After"}

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "A token from POST /tokens: 'Authorization: Bearer <token>'."},
    "basicAuth": {"type": "http", "scheme": "basic", "description": "Username and password, to sign in."},
    "apiKey": {"type": "http", "scheme": "bearer",
               "description": "An API key from POST /api-keys ('Authorization: Bearer myapi_…'): it may call an "
                              "operation only when it holds the scope the operation lists (x-required-scope); "
                              "operations without one take sign-in tokens only."},
}


def error_response(status: int) -> dict:
    return {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}


def components() -> dict:
    responses = {}
    for status, (name, description) in ERROR_RESPONSES.items():
        response: dict[str, Any] = {
            "description": description,
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if status in ERROR_HEADERS:
            header = ERROR_HEADERS[status]
            response["headers"] = {header: {"$ref": f"#/components/headers/{header}"}}
        responses[name] = response
    return {
        "schemas": {"Problem": copy.deepcopy(PROBLEM_SCHEMA), "Pagination": copy.deepcopy(PAGINATION_SCHEMA)},
        "responses": responses,
        "parameters": copy.deepcopy(PARAMETERS),
        "headers": copy.deepcopy(HEADERS),
        "securitySchemes": copy.deepcopy(SECURITY_SCHEMES),
    }
