"""reqparse, fixed once for Werkzeug 3 and made strict.

flask-restful 0.3.10's default argument location reads ``request.json``, which
Werkzeug 3 answers with 415 for form bodies and even for GET query strings.
Here every parser names where its arguments live:

* ``"body"``: the request body, JSON (an object) or form-encoded/multipart,
  decoded once per request by :func:`request_body`; any other content type is
  415 and malformed JSON is 400;
* ``"args"``: the query string; ``"headers"``; ``"files"``.

Parsing collects *every* error of the request (missing, invalid and unknown
fields) into one 400 problem, so a client fixes its request in one go. Unknown
fields are errors by default: nobody sets ``role``, ``id`` or ``stock`` by
slipping an extra field into a body.
"""

from __future__ import annotations

from copy import deepcopy

import orjson
from flask import g, request
from flask_restful import reqparse
from werkzeug.datastructures import MultiDict

from .errors import Problem, validation_problem

JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# Query parameters every endpoint understands and no parser declares.
GLOBAL_QUERY_ARGS = frozenset({"format"})

REQUIRED = "This field is required."
UNKNOWN = "Unknown field."


def is_json_request() -> bool:
    mimetype = request.mimetype or ""
    return mimetype in JSON_TYPES or mimetype.endswith("+json")


def request_body():
    """The request body as a dict (JSON) or MultiDict (forms), decoded once.

    An empty body is an empty mapping; the parser then reports the required
    fields. Raises 415 for other content types and 400 for malformed JSON or
    JSON that is not an object.
    """
    if "request_body" in g:
        return g.request_body
    if request.mimetype in FORM_TYPES:
        body = MultiDict(request.form)
    else:
        raw = request.get_data(cache=True)  # 413 past MAX_CONTENT_LENGTH
        if not raw:
            body = MultiDict()
        elif is_json_request():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as error:
                raise Problem(400, f"The body is not valid JSON: {error}.", title="Malformed JSON") from None
            if not isinstance(body, dict):
                raise Problem(400, "The JSON body must be an object.", title="Malformed JSON")
        else:
            raise Problem(
                415,
                "Send the body as application/json or application/x-www-form-urlencoded.",
                headers={"Accept-Post": "application/json, application/x-www-form-urlencoded"},
            )
    g.request_body = body
    return body


def _source(location: str):
    if location == "body":
        return request_body()
    if location == "args":
        return request.args
    if location == "headers":
        return request.headers
    if location == "files":
        return request.files
    raise ValueError(f"unknown argument location {location!r}")


class Argument(reqparse.Argument):
    """An argument that is never null and reads one named location."""

    def __init__(self, name, *, location="body", nullable=False, **kwargs):
        if not isinstance(location, str):
            raise TypeError("give each argument exactly one location")
        super().__init__(name, location=location, nullable=nullable, **kwargs)

    def source(self, req):
        return _source(self.location)


class RequestParser(reqparse.RequestParser):
    """A strict parser that reports all errors at once as problem+json.

    ``location`` is the default for every argument added to it.
    """

    def __init__(self, argument_class=Argument, namespace_class=reqparse.Namespace, *,
                 location: str = "body", strict: bool = True):
        super().__init__(argument_class=argument_class, namespace_class=namespace_class,
                         bundle_errors=True, trim=False)
        self.location = location
        self.strict = strict

    def add_argument(self, *args, **kwargs):
        kwargs.setdefault("location", self.location)
        return super().add_argument(*args, **kwargs)

    def replace_argument(self, name, *args, **kwargs):
        kwargs.setdefault("location", self.location)
        return super().replace_argument(name, *args, **kwargs)

    def copy(self):
        clone = self.__class__(self.argument_class, self.namespace_class,
                               location=self.location, strict=self.strict)
        clone.args = deepcopy(self.args)
        return clone

    def partial(self):
        """A copy for PATCH: every argument optional, only the given ones stored."""
        clone = self.copy()
        for argument in clone.args:
            argument.required = False
            argument.store_missing = False
            argument.default = None
        return clone

    def parse_args(self, req=None, strict=None, http_error_code=400):
        req = req if req is not None else request
        strict = self.strict if strict is None else strict
        req.unparsed_arguments = {}
        namespace = self.namespace_class()
        errors: dict[str, str] = {}

        for arg in self.args:
            source = _source(arg.location)
            if arg.location == "args" and arg.action != "append" and len(source.getlist(arg.name)) > 1:
                errors[arg.name] = "Give this parameter once."
                continue
            value, found = arg.parse(req, bundle_errors=True)
            if isinstance(value, ValueError):
                message = found[arg.name]
                errors[arg.name] = REQUIRED if message.startswith("Missing required parameter") else message
                continue
            if found or arg.store_missing:
                namespace[arg.dest or arg.name] = value

        if strict:
            for location in {arg.location for arg in self.args} - {"headers"}:
                known = {arg.name for arg in self.args if arg.location == location}
                if location == "args":
                    known |= GLOBAL_QUERY_ARGS
                for key in _source(location):
                    if key not in known:
                        errors[str(key)[:100]] = UNKNOWN

        if errors:
            raise validation_problem(errors)
        return namespace
