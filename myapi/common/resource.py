"""The base Resource: content negotiation first, and ETag / If-Match helpers.

Every single item carries a strong ETag made from its row version (plus the
representation, since JSON and CSV bodies differ). ``If-None-Match`` on GET
answers 304; a stale ``If-Match`` on PUT/PATCH/DELETE answers 412 before
anything changes. Without If-Match the version column still guards the write:
a concurrent change makes the UPDATE match no row and the request answers 409.
"""

from __future__ import annotations

import flask_restful
from flask import Response, current_app, g, request
from flask_restful.utils import unpack
from sqlalchemy.exc import DBAPIError
from werkzeug.wrappers import Response as ResponseBase

from ..db import SAFE_METHODS, commit_session, discard_session
from .errors import PRECONDITION_FAILED, Problem
from .idempotency import HEADER as IDEMPOTENCY_HEADER
from .idempotency import run_idempotent
from .representations import CSV, JSON, negotiate, render


class Resource(flask_restful.Resource):
    """A resource whose writes are one unit of work.

    The media type is negotiated before the method runs (406 first). Methods
    never commit: a write that returns a success is committed here, after
    the body has been built; an exception or an error answer rolls it back.
    POSTs honour ``Idempotency-Key`` unless ``idempotent_post`` is False.
    """

    #: What this resource can produce; the first is the default.
    media_types: tuple[str, ...] = (JSON, CSV)
    #: Whether POST honours the Idempotency-Key header.
    idempotent_post: bool = True
    #: The config key of a larger body limit than MAX_CONTENT_LENGTH, if any.
    max_body_setting: str | None = None

    def dispatch_request(self, *args, **kwargs):
        g.media_type = negotiate(self.media_types)
        if self.max_body_setting:
            request.max_content_length = current_app.config[self.max_body_setting]
        if request.method in SAFE_METHODS:
            try:
                return super().dispatch_request(*args, **kwargs)
            except DBAPIError as error:
                if not error.connection_invalidated:
                    raise
                # The pool handed out a connection the server ended a moment
                # before (a restart, pg_terminate_backend) and SQLAlchemy has
                # invalidated the pool: a read runs again, once, on a fresh one.
                discard_session()
                return super().dispatch_request(*args, **kwargs)

        def produce() -> Response:
            result = super(Resource, self).dispatch_request(*args, **kwargs)
            return result if isinstance(result, ResponseBase) else render(*unpack(result))

        if request.method == "POST" and self.idempotent_post and IDEMPOTENCY_HEADER in request.headers:
            return run_idempotent(produce)
        response = produce()
        if response.status_code < 400:
            commit_session()
        return response


def etag(version: int) -> str:
    suffix = "-csv" if g.get("media_type") == CSV else ""
    return f'"v{version}{suffix}"'


def _tag_version(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    return tag.strip('"').split("-", 1)[0]


def check_if_match(version: int) -> None:
    """412 when the client's ``If-Match`` names another version of the item."""
    header = request.headers.get("If-Match")
    if header is None:
        return
    if header.strip() == "*":
        return
    if len(header) > 1000 or f"v{version}" not in {_tag_version(tag) for tag in header.split(",")}:
        raise Problem(
            412,
            "The item has changed since you read it (If-Match does not match its ETag); fetch it again.",
            type=PRECONDITION_FAILED,
            headers={"ETag": etag(version)},
        )


def not_modified(version: int) -> Response | None:
    """A 304 when ``If-None-Match`` already names this version."""
    header = request.headers.get("If-None-Match")
    if header is None or len(header) > 1000:
        return None
    current = etag(version)
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    if current in tags or "*" in tags:
        response = Response(status=304)
        response.headers["ETag"] = current
        return response
    return None


def item(body, version: int, status: int = 200, headers: dict | None = None):
    """A single-item answer with its ETag."""
    return body, status, {**(headers or {}), "ETag": etag(version)}


def no_content() -> Response:
    return Response(status=204)
