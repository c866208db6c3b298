"""The catalogue of problem types: every error answer's ``type``, status and title.

One list, read by everything that names an error: the services' domain
errors (services/errors.py), the HTTP layer (common/errors.py), the OpenAPI
document (the Problem schema lists the types) and the Python client, which
turns a ``type`` into its exception class. Plain Python, no dependencies, so
``myapi.client`` can import it without Flask.

Generic HTTP errors (404 for a missing item, 405, 406...) use ``about:blank``
as RFC 9457 advises; the types below are the ones a client may want to tell
apart.
"""

from __future__ import annotations

from dataclasses import dataclass

URN_PREFIX = "urn:myapi:problem:"
BLANK = "about:blank"


@dataclass(frozen=True)
class ProblemType:
    """One kind of error answer: its URN (or about:blank), HTTP status and title."""

    uri: str
    status: int
    title: str
    description: str = ""


def _type(slug: str, status: int, title: str, description: str) -> ProblemType:
    return ProblemType(URN_PREFIX + slug, status, title, description)


VALIDATION = _type("validation-error", 400, "Invalid request",
                   "A field, parameter or row is invalid; `errors` names each one.")
CONFLICT = _type("conflict", 409, "Conflict",
                 "The request conflicts with the data: a taken username, email or sku, an illegal "
                 "transition, a product that orders name.")
INSUFFICIENT_STOCK = _type("insufficient-stock", 409, "Conflict",
                           "Not enough stock for some order lines; `errors` has requested and available.")
CONCURRENT_UPDATE = _type("concurrent-update", 409, "Concurrent update",
                          "Another request changed the item while this one ran; read it and try again.")
PRECONDITION_FAILED = _type("precondition-failed", 412, "Precondition Failed",
                            "If-Match names another version of the item; the answer's ETag is the current one.")
IDEMPOTENCY_KEY_REUSED = _type("idempotency-key-reused", 422, "Unprocessable Content",
                               "The Idempotency-Key was used before with another request.")
IDEMPOTENCY_KEY_IN_PROGRESS = _type("idempotency-key-in-progress", 409, "Conflict",
                                    "A request with this Idempotency-Key is still running; retry shortly.")
INVALID_TOKEN = _type("invalid-token", 401, "Unauthorized",
                      "The Authorization header names no valid credential: an unknown, expired or revoked token "
                      "or API key, or a deactivated account (RFC 6750 invalid_token).")
INSUFFICIENT_SCOPE = _type("insufficient-scope", 403, "Forbidden",
                           "The API key lacks the scope this operation needs; `errors.scope` names it.")
CHANGES_EXPIRED = _type("changes-expired", 410, "Gone",
                        "Changes after this watermark were pruned (MYAPI_CHANGES_RETENTION): export again and "
                        "follow the feed from the export's X-Changes-Since.")
PRICE_CHANGE_REFUSED = _type("price-change-refused", 409, "Price change over the limit",
                             "A price would move more than max_price_change percent: the whole import or "
                             "PATCH was refused; `errors` lists each product with before and after.")
UNAVAILABLE = _type("service-unavailable", 503, "Service Unavailable",
                    "The database is not answering; retry after Retry-After seconds.")
WRITE_CONFLICT = _type("write-conflict", 503, "Write conflicted with a concurrent one",
                       "The database stopped this write because it conflicted with a concurrent one (a deadlock "
                       "or a serialization failure, e.g. an import and orders on the same products). Nothing "
                       "was written: the request is safe to retry after Retry-After seconds.")

# The generic ones, for domain errors that are plain HTTP statuses.
BAD_REQUEST = ProblemType(BLANK, 400, "Bad Request")
FORBIDDEN = ProblemType(BLANK, 403, "Forbidden")
NOT_FOUND = ProblemType(BLANK, 404, "Not Found")

#: Every typed problem (about:blank excluded), by URI.
CATALOGUE: dict[str, ProblemType] = {
    kind.uri: kind
    for kind in (VALIDATION, CONFLICT, INSUFFICIENT_STOCK, CONCURRENT_UPDATE, PRECONDITION_FAILED,
                 IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_PROGRESS, INVALID_TOKEN, INSUFFICIENT_SCOPE,
                 CHANGES_EXPIRED, PRICE_CHANGE_REFUSED, UNAVAILABLE, WRITE_CONFLICT)
}
