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

import difflib
import io
import re
from copy import deepcopy

import orjson
from flask import g, request
from flask_restful import reqparse
from werkzeug.datastructures import MultiDict

from . import inputs
from .errors import Problem, validation_problem

JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
BODY_TYPES = JSON_TYPES + FORM_TYPES
CSV_UPLOAD_TYPES = ("text/csv", "multipart/form-data")

# Query parameters every endpoint understands and no parser declares.
GLOBAL_QUERY_ARGS = frozenset({"format", "fields"})

REQUIRED = "This field is required."
UNKNOWN = "Unknown field."


def is_json_request() -> bool:
    mimetype = request.mimetype or ""
    return mimetype in JSON_TYPES or mimetype.endswith("+json")


_JSON_START = re.compile(rb"\s*[{\[]")
FORM_URLENCODED = "application/x-www-form-urlencoded"


def looks_like_json(raw: bytes) -> bool:
    """A body that opens like a JSON object or array (no form field name starts with ``{`` or ``[``)."""
    return _JSON_START.match(raw) is not None


def mislabelled_json(media_types: tuple[str, ...]) -> Problem | None:
    """The 415 for JSON sent as a form or without a Content-Type (``curl -d '{...}'``), else None.

    Werkzeug would read such a body as one form field named by the whole
    JSON text; the client meant JSON and forgot the header.
    """
    if request.mimetype not in ("", FORM_URLENCODED) or not looks_like_json(request.get_data(cache=True)):
        return None
    sent = f"as {request.mimetype}" if request.mimetype else "without a Content-Type"
    return Problem(415, f"The body looks like JSON but was sent {sent}: send Content-Type: application/json.",
                   headers={"Accept-Post": ", ".join(media_types)})


def request_body():
    """The request body as a dict (JSON) or MultiDict (forms), decoded once.

    An empty body is an empty mapping; the parser then reports the required
    fields. Raises 415 for other content types and 400 for malformed JSON or
    JSON that is not an object.
    """
    if "request_body" in g:
        return g.request_body
    if request.mimetype in FORM_TYPES:
        mislabelled = mislabelled_json(BODY_TYPES)
        if mislabelled is not None:
            raise mislabelled
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
            raise mislabelled_json(BODY_TYPES) or unsupported_media_type(BODY_TYPES)
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

    ``location`` is the default for every argument added to it;
    ``media_types`` the body media types it reads (JSON and forms by
    default): another Content-Type is a 415 naming them.
    """

    def __init__(self, argument_class=Argument, namespace_class=reqparse.Namespace, *,
                 location: str = "body", strict: bool = True, media_types: tuple[str, ...] = BODY_TYPES,
                 body_optional: bool = False):
        super().__init__(argument_class=argument_class, namespace_class=namespace_class,
                         bundle_errors=True, trim=False)
        self.location = location
        self.strict = strict
        self.media_types = tuple(media_types)
        # No body at all is fine (the credentials may come another way); a body must be whole.
        self.body_optional = body_optional

    def add_argument(self, *args, **kwargs):
        kwargs.setdefault("location", self.location)
        return super().add_argument(*args, **kwargs)

    def replace_argument(self, name, *args, **kwargs):
        kwargs.setdefault("location", self.location)
        return super().replace_argument(name, *args, **kwargs)

    def copy(self):
        clone = self.__class__(self.argument_class, self.namespace_class, location=self.location,
                               strict=self.strict, media_types=self.media_types, body_optional=self.body_optional)
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
        namespace, errors = self.collect(strict)
        if errors:
            raise validation_problem(errors)
        return namespace

    def collect(self, strict: bool | None = None) -> tuple[reqparse.Namespace, dict[str, str]]:
        """The parsed arguments and every error (missing, invalid, unknown), without raising."""
        strict = self.strict if strict is None else strict
        self._check_media_type()
        request.unparsed_arguments = {}
        namespace = self.namespace_class()
        errors: dict[str, str] = {}
        if self.body_optional and not request_body():
            return namespace, errors
        for arg in self.args:
            source = _source(arg.location)
            if arg.location == "args" and arg.action != "append" and len(source.getlist(arg.name)) > 1:
                errors[arg.name] = "Give this parameter once."
                continue
            value, found = arg.parse(request, bundle_errors=True)
            if isinstance(value, ValueError):
                message = found[arg.name]
                errors[arg.name] = REQUIRED if message.startswith("Missing required parameter") else message
                continue
            if found or arg.store_missing:
                namespace[arg.dest or arg.name] = value
        if strict:
            errors.update(self._unknown())
        return namespace, errors

    def _unknown(self) -> dict[str, str]:
        errors = {}
        for location in {arg.location for arg in self.args} - {"headers"}:
            known = [arg.name for arg in self.args if arg.location == location]
            if location == "args":
                known += sorted(GLOBAL_QUERY_ARGS - set(known))
            for key in _source(location):
                if key not in known:
                    errors[str(key)[:100]] = unknown_parameter(str(key), known) if location == "args" else UNKNOWN
        return errors

    def _check_media_type(self) -> None:
        """415 for a body in a media type this parser does not read (request_body() knows the default ones)."""
        if self.media_types == BODY_TYPES or not any(arg.location == "body" for arg in self.args):
            return
        if request.mimetype in self.media_types or (is_json_request() and JSON_TYPES[0] in self.media_types):
            return
        if JSON_TYPES[0] in self.media_types:
            mislabelled = mislabelled_json(self.media_types)
            if mislabelled is not None:
                raise mislabelled
        raise unsupported_media_type(self.media_types)


def unknown_parameter(name: str, known: list[str]) -> str:
    """The error of an unknown query parameter: the likely intended one, and every valid one."""
    message = "Unknown query parameter."
    guess = difflib.get_close_matches(name[:100].lower(), known, n=1, cutoff=0.6)
    if guess:
        message += f" Did you mean `{guess[0]}`?"
    return message + " Valid parameters: " + ", ".join(known) + "."


#: ``If-Match`` for conditional writes: ``args.if_match`` is an IfMatch, or None without the header.
conditional_parser = RequestParser(location="headers")
conditional_parser.add_argument("If-Match", dest="if_match", type=inputs.if_match)


def unsupported_media_type(media_types: tuple[str, ...]) -> Problem:
    """415 naming every media type the operation accepts, in the detail and in ``Accept-Post``."""
    listed = media_types[0] if len(media_types) == 1 else ", ".join(media_types[:-1]) + " or " + media_types[-1]
    sent = f"{request.mimetype[:100]} is" if request.mimetype else "A body without a Content-Type is"
    return Problem(415, f"{sent} not accepted here: send the body as {listed}.",
                   headers={"Accept-Post": ", ".join(media_types)})


def parse_all(parsers) -> reqparse.Namespace:
    """Every parser's arguments in one namespace; every parser's errors in one 400."""
    namespace = reqparse.Namespace()
    errors: dict[str, str] = {}
    for parser in parsers:
        parsed, failed = parser.collect()
        namespace.update(parsed)
        errors.update(failed)
    if errors:
        raise validation_problem(errors)
    return namespace


def parse_json_array(spec) -> list:
    """A JSON array body (common/contract.JsonArray): each object read by ``spec.item_parser``.

    The body must be JSON (415 otherwise) and an array of 1 to
    ``spec.max_items`` objects (400). Each item is parsed by the same
    strict parser code as any body, so its rules are the parser's; every
    error of every item comes back in one 400, as ``{"index", "field",
    "message"}`` (index from 0).
    """
    if not is_json_request():
        raise mislabelled_json(JSON_TYPES) or unsupported_media_type(JSON_TYPES)
    raw = request.get_data(cache=True)  # 413 past MAX_CONTENT_LENGTH
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise Problem(400, f"The body is not valid JSON: {error}.", title="Malformed JSON") from None
    if not isinstance(body, list):
        raise Problem(400, f"The JSON body must be an array of 1 to {spec.max_items} objects.",
                      title="Malformed JSON")
    if not 1 <= len(body) <= spec.max_items:
        raise validation_problem({"body": f"must hold 1 to {spec.max_items} items, not {len(body)}"})
    items: list = []
    errors: list[dict] = []
    try:
        for index, element in enumerate(body):
            if not isinstance(element, dict):
                errors.append({"index": index, "field": "*", "message": "must be an object"})
                continue
            given = [name for name in spec.one_of if name in element]
            if spec.one_of and len(given) != 1:
                errors.append({"index": index, "field": spec.one_of[0],
                               "message": f"give exactly one of {' or '.join(spec.one_of)}"})
            g.request_body = element  # what the parser's body arguments read
            parsed, failed = spec.item_parser.collect()
            errors += [{"index": index, "field": name, "message": message} for name, message in failed.items()]
            items.append(dict(parsed))
    finally:
        g.pop("request_body", None)
    if errors:
        raise validation_problem(errors, f"{len({error['index'] for error in errors})} item(s) are invalid; "
                                         "nothing was changed.")
    return items


def csv_upload() -> io.TextIOBase:
    """The uploaded CSV as a text stream: a text/csv body or a multipart ``file``."""
    if request.mimetype == "text/csv":
        raw = request.stream
    elif request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise validation_problem({"file": "Attach the CSV file as the form field 'file'."})
        raw = upload.stream
    else:
        raise unsupported_media_type(CSV_UPLOAD_TYPES)
    if isinstance(raw, io.RawIOBase):  # Werkzeug's LimitedStream
        raw = io.BufferedReader(raw)
    # utf-8-sig: a byte-order mark (Excel writes one) is dropped, not read as
    # part of the first column's name.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
