"""The base Resource: one pipeline for every method, and one unit of work per request.

A request runs, in this order whatever the order of the method's
decorators (common/contract.py):

1. negotiate the representation (406 first, before any work);
2. open the request's session: autocommit reads for GET/HEAD/OPTIONS,
   a write transaction otherwise (db.open_session);
3. authorise (``requires``), check ``fields=`` against the output fields;
4. parse (``parses``): the arguments are the method's first argument; a
   list's page, per_page, cursor and count become ``args.window`` (a
   services.query.Window; common/pagination.py checks the cursor);
5. call the method: one service call, returning a model object, a Page or
   an Export;
6. marshal it (``marshal_with``, common/output.py);
7. commit, if the answer is a success. Only here: services flush and raise
   domain errors, never commit or roll back; an error answer or an
   exception leaves the transaction to be rolled back when the session
   closes. POSTs honour ``Idempotency-Key`` (common/idempotency.py), which
   keeps its claim in a short transaction of its own.
"""

from __future__ import annotations

import flask_restful
from flask import Response, current_app, g, request
from sqlalchemy.exc import DBAPIError

from ..db import SAFE_METHODS, commit_session, discard_session, open_session
from .auth import authorise
from .contract import Contract, contract_of
from .errors import body_setting
from .idempotency import HEADER as IDEMPOTENCY_HEADER
from .idempotency import run_idempotent
from .media import CSV, JSON
from .output import requested_selection, respond
from .pagination import window_of
from .parsing import csv_upload, parse_all, parse_json_array
from .representations import negotiate


class Resource(flask_restful.Resource):
    """A resource whose methods declare their contract and whose writes are one unit of work."""

    #: What this resource can produce; the first is the default.
    media_types: tuple[str, ...] = (JSON, CSV)
    #: Whether POST honours the Idempotency-Key header.
    idempotent_post: bool = True
    #: The config key of a larger body limit than MAX_CONTENT_LENGTH, if any; or such keys by
    #: method name (``{"patch": "MAX_BULK_BYTES"}``).
    max_body_setting: str | dict[str, str] | None = None

    def dispatch_request(self, *args, **kwargs):
        name = request.method.lower()
        if name == "head" and not hasattr(self, "head"):
            name = "get"
        method = getattr(self, name)
        contract = contract_of(type(self), name) or Contract()
        g.media_type = negotiate(self.media_types)
        setting = body_setting(type(self), name)
        if setting:
            request.max_content_length = current_app.config[setting]

        def run() -> Response:
            self.admit(contract)
            return self.run(method, contract, args, kwargs)

        if request.method in SAFE_METHODS:
            return self.read(run)
        open_session(write=True)
        if request.method == "POST" and self.idempotent_post and IDEMPOTENCY_HEADER in request.headers:
            # Who may call comes first: a caller who may not POST here never claims a key.
            self.admit(contract)
            return run_idempotent(lambda: self.run(method, contract, args, kwargs))
        response = run()
        if response.status_code < 400:
            commit_session()
        return response

    @staticmethod
    def admit(contract: Contract) -> None:
        """Authorise (``requires``) and check ``fields=``: before any body is read or key claimed."""
        authorise(contract.auth, contract.scope)
        requested_selection(contract.output)

    @staticmethod
    def run(method, contract: Contract, args: tuple, kwargs: dict) -> Response:
        if contract.parsers or contract.csv_upload is not None or contract.json_array is not None:
            parsed = parse_all(contract.parsers)
            if contract.output is not None and contract.output.paged:
                # page/per_page/cursor/count become one Window (a cursor checked against the rest)
                parsed["window"] = window_of(parsed)
            if contract.csv_upload is not None:
                parsed["upload"] = csv_upload()
            if contract.json_array is not None:
                parsed["entries"] = parse_json_array(contract.json_array)
            args = (parsed, *args)
        return respond(contract.output, method(*args, **kwargs))

    @staticmethod
    def read(run) -> Response:
        open_session(write=False)
        try:
            return run()
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            # The pool handed out a connection the server ended a moment
            # before (a restart, pg_terminate_backend) and SQLAlchemy has
            # invalidated the pool: a read runs again, once, on a fresh one.
            discard_session()
            open_session(write=False)
            return run()
