"""Domain errors raised by services; common/errors.py turns them into problems."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    title = "Bad Request"
    type = "about:blank"

    def __init__(self, detail: str, errors: dict | list | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class NotFound(ServiceError):
    status = 404
    title = "Not Found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"
    type = "urn:myapi:problem:conflict"


class PermissionDenied(ServiceError):
    status = 403
    title = "Forbidden"
