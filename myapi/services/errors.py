"""Domain errors raised by services; common/errors.py answers them as problem+json.

Each names its kind from the one catalogue (myapi/problems.py): the status,
type and title come from there, the detail and field errors from the raise.
Services raise and never end the transaction: the request's Resource rolls
it back when an error leaves the method.
"""

from __future__ import annotations

from .. import problems
from ..problems import ProblemType


class DomainError(Exception):
    """A refusal the caller can act on: ``detail`` for people, ``errors`` per field or row."""

    problem: ProblemType = problems.BAD_REQUEST
    #: A more precise title than the kind's own, if any.
    title: str | None = None

    def __init__(self, detail: str, errors: dict | list | None = None, *, extra: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = dict(extra or {})


class Invalid(DomainError):
    """Values that pass the input types but not the data (unknown product ids, bad CSV rows)."""

    problem = problems.VALIDATION


class NotFound(DomainError):
    problem = problems.NOT_FOUND


class PermissionDenied(DomainError):
    problem = problems.FORBIDDEN


class Conflict(DomainError):
    problem = problems.CONFLICT


class InsufficientStock(Conflict):
    problem = problems.INSUFFICIENT_STOCK


class PreconditionFailed(DomainError):
    """If-Match named another version; ``version`` is the current one (the answer's ETag)."""

    problem = problems.PRECONDITION_FAILED

    def __init__(self, version: int):
        super().__init__("The item has changed since you read it (If-Match does not match its ETag); "
                         "fetch it again.")
        self.version = version
