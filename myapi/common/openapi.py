"""OpenAPI 3.1 generated from the code that does the work.

Each Resource method declares what it reads and writes with
:func:`documented`, next to the method and naming the very objects the method
uses: its RequestParser(s), its output field dict, its success status. This
module walks the app's URL map (every route whose view is a flask-restful
Resource, i.e. every line of app.py's route table) and turns those objects
into an OpenAPI document:

* reqparse Arguments become parameters (``args`` → query, ``headers`` →
  header, path converters → path) or the request body (``body`` → JSON and
  form media types, ``files`` → multipart), with ``required``, ``default``,
  ``choices`` → ``enum``, ``action="append"`` → array, and each input type's
  own ``.schema`` (common/inputs.py); strict parsers give
  ``additionalProperties: false``;
* field dicts become response schemas (Nested, List, Url, FormattedString,
  and the ``.schema`` of Money, DateTime, Template and Link);
* what the route table, the Resource class and the declaration imply adds
  the rest: the media types the resource negotiates (JSON, CSV, NDJSON), the
  ``format`` query parameter, pagination envelopes and headers, ETag and the
  conditional headers, Idempotency-Key, security, and the problem+json error
  responses the operation can give.

Nothing here is a second copy of a schema: change a parser or a field dict and
the document follows. The document is built once per app and cached
(:func:`openapi_document`).
"""

from __future__ import annotations

import copy
import decimal
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import flask_restful
from flask import Flask
from flask_restful import fields as rfields
from flask_restful import reqparse
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import IntegerConverter, PathConverter, Rule, UUIDConverter
from werkzeug.routing.converters import NumberConverter

from . import inputs
from .errors import PROBLEM_MEDIA_TYPE
from .fields import API_PREFIX, field_names
from .parsing import FORM_TYPES, GLOBAL_QUERY_ARGS, JSON_TYPES
from .representations import CSV, FORMATS, JSON, NDJSON

OPENAPI_VERSION = "3.1.0"
EXTENSION = "myapi.openapi"
ATTRIBUTE = "__openapi__"

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
AUTH_LEVELS = ("none", "optional", "user", "admin", "basic")
COLLECTIONS = (None, "page", "data", "stream")
ERROR_STATUSES = (400, 401, 403, 404, 406, 409, 412, 413, 415, 422, 429, 503)

HTML = "text/html"


# -- the declaration ----------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """What one Resource method reads and answers; see :func:`documented`."""

    parsers: tuple = ()
    fields: dict | None = None
    status: int = 200
    summary: str | None = None
    description: str | None = None
    collection: str | None = None
    auth: str = "none"
    errors: tuple[int, ...] = ()
    etag: bool = False
    body_media_types: tuple[str, ...] = JSON_TYPES + FORM_TYPES
    body_required: bool | None = None
    csv_upload: Any = None
    produces: dict | None = None
    hidden: bool = False


def documented(
    *,
    parser=None,
    parsers: Iterable = (),
    fields: dict | None = None,
    status: int = 200,
    summary: str | None = None,
    description: str | None = None,
    collection: str | None = None,
    auth: str = "none",
    errors: Iterable[int] = (),
    etag: bool = False,
    body_media_types: Iterable[str] | None = None,
    body_required: bool | None = None,
    csv_upload=None,
    produces: dict | None = None,
    hidden: bool = False,
) -> Callable:
    """Declare a Resource method for the OpenAPI document.

    * ``parser`` / ``parsers``: the RequestParser(s) the method parses with;
    * ``fields``: the field dict it marshals its answer with; ``status``: its
      success status (204: no body);
    * ``collection``: ``"page"`` (``{"data": [...], "pagination": {...}}`` with
      X-Total-Count and Link), ``"data"`` (``{"data": [...]}``) or ``"stream"``
      (an export: a JSON array, NDJSON or CSV download);
    * ``auth``: ``"none"``, ``"optional"`` (a bearer token is read when sent),
      ``"user"`` (bearer required), ``"admin"`` (bearer of an admin: 403 for
      others) or ``"basic"`` (HTTP Basic credentials, or the body);
    * ``errors``: error statuses the method raises itself beyond those this
      module infers (400 for parsers, 404 for path ids, 412/409 for ETag'd
      writes, 409/422 for idempotent POSTs, 401/403 from ``auth``...);
    * ``etag``: the answer carries an ETag; GET honours If-None-Match (304),
      PUT/PATCH/DELETE honour If-Match (412);
    * ``body_media_types``: the body's media types (JSON and forms by default);
      ``body_required``: whether a body must be sent (default: when the body
      parser has a required argument);
    * ``csv_upload``: the parser whose arguments are the CSV columns of an
      upload (text/csv or a multipart ``file``);
    * ``produces``: ``{media type: schema}`` for answers that are not a field
      dict (the document itself, the docs page);
    * ``hidden``: leave the route out of the document (static assets).
    """
    if auth not in AUTH_LEVELS:
        raise ValueError(f"auth must be one of {AUTH_LEVELS}")
    if collection not in COLLECTIONS:
        raise ValueError(f"collection must be one of {COLLECTIONS}")
    declaration = Operation(
        parsers=((parser,) if parser is not None else ()) + tuple(parsers),
        fields=fields,
        status=status,
        summary=summary,
        description=description,
        collection=collection,
        auth=auth,
        errors=tuple(errors),
        etag=etag,
        body_media_types=tuple(body_media_types) if body_media_types is not None else JSON_TYPES + FORM_TYPES,
        body_required=body_required,
        csv_upload=csv_upload,
        produces=produces,
        hidden=hidden,
    )

    def decorate(method):
        setattr(method, ATTRIBUTE, declaration)
        return method

    return decorate


def declaration(resource: type, method: str) -> Operation | None:
    """The declaration of ``resource.method``, inherited along the MRO.

    A subclass that overrides a method only to call its parent's (``/users/me``
    over ``/users/<id>``) shares the parent's declaration.
    """
    for klass in resource.__mro__:
        function = klass.__dict__.get(method)
        if function is not None and hasattr(function, ATTRIBUTE):
            return getattr(function, ATTRIBUTE)
    return None


# -- the routes -------------------------------------------------------------------


@dataclass
class Route:
    rule: Rule
    endpoint: str
    resource: type
    methods: list[str]


def api_routes(app: Flask) -> list[Route]:
    """Every URL rule of the app served by a flask-restful Resource (the Api's table)."""
    routes = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        resource = getattr(view, "view_class", None)
        if not (isinstance(resource, type) and issubclass(resource, flask_restful.Resource)):
            continue
        methods = [m for m in HTTP_METHODS if m.upper() in (rule.methods or ())]
        routes.append(Route(rule, rule.endpoint, resource, methods))
    routes.sort(key=lambda route: route.rule.rule)
    return routes


def undeclared_operations(app: Flask) -> list[str]:
    """``"GET /api/v1/x"`` for every routed method without a :func:`documented`."""
    return [
        f"{method.upper()} {route.rule.rule}"
        for route in api_routes(app)
        for method in route.methods
        if declaration(route.resource, method) is None
    ]


_RULE_VARIABLE = re.compile(
    r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\((?P<args>.*?)\))?:)?(?P<name>[a-zA-Z_]\w*)>"
)


def converter_schema(converter, converter_name: str) -> dict:
    """The JSON Schema of a URL converter: its kind and, for numbers, its bounds."""
    if isinstance(converter, NumberConverter) or converter_name in ("int", "float"):
        integer = isinstance(converter, IntegerConverter) or converter_name == "int"
        schema: dict[str, Any] = {"type": "integer" if integer else "number"}
        low = getattr(converter, "min", None)
        high = getattr(converter, "max", None)
        if low is None and not getattr(converter, "signed", False):
            low = 0
        if low is not None:
            schema["minimum"] = low
        if high is not None:
            schema["maximum"] = high
        return schema
    if isinstance(converter, UUIDConverter):
        return {"type": "string", "format": "uuid"}
    schema = {"type": "string", "minLength": 1}
    if not isinstance(converter, PathConverter):
        schema["pattern"] = "^[^/]+$"
    return schema


def path_parameters(rule: Rule) -> tuple[str, list[dict]]:
    """The OpenAPI path (``{name}``, API prefix removed) and its path parameters."""
    path = rule.rule
    if path.startswith(API_PREFIX):
        path = path[len(API_PREFIX):] or "/"
    converters = getattr(rule, "_converters", {})  # name -> converter instance, once bound to the map
    parameters = []
    for match in _RULE_VARIABLE.finditer(path):
        schema = converter_schema(converters.get(match["name"]), match["converter"] or "default")
        parameters.append({"name": match["name"], "in": "path", "required": True, "schema": schema})
    return _RULE_VARIABLE.sub(lambda m: "{" + m["name"] + "}", path), parameters


# -- input schemas ------------------------------------------------------------------

PYTHON_TYPES: dict[Any, dict] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    decimal.Decimal: {"type": "string", "format": "decimal"},
}


def _jsonable(value):
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def type_schema(kind) -> dict | None:
    """The JSON Schema of a reqparse ``type``: its ``.schema``, or a Python type's."""
    schema = getattr(kind, "schema", None)
    if isinstance(schema, dict):
        return copy.deepcopy(schema)
    if kind in PYTHON_TYPES:
        return dict(PYTHON_TYPES[kind])
    return None


def argument_schema(argument) -> dict:
    """The JSON Schema of one reqparse Argument."""
    schema = type_schema(argument.type)
    if schema is None:
        schema = {"type": "string"}
    if argument.choices:
        schema["enum"] = [_jsonable(choice) for choice in argument.choices]
    default = argument.default
    if default is not None and not callable(default) and not argument.required:
        schema["default"] = _jsonable(default)
    if argument.help:
        schema.setdefault("description", str(argument.help))
    if argument.action == "append":
        schema = {"type": "array", "items": schema}
    return schema


def parser_arguments(parsers: Iterable, location: str) -> list:
    return [argument for parser in parsers for argument in parser.args if argument.location == location]


def body_schema(arguments: list, strict: bool, *, files: list | None = None) -> dict:
    properties = {argument.name: argument_schema(argument) for argument in arguments}
    for argument in files or ():
        properties[argument.name] = {"type": "string", "contentMediaType": "application/octet-stream"}
    required = [a.name for a in list(arguments) + list(files or ()) if a.required]
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if strict:
        schema["additionalProperties"] = False
    return schema


# -- output schemas -----------------------------------------------------------------


def _field_instance(value):
    return value() if isinstance(value, type) else value


def field_schema(value, names: SchemaNames | None = None) -> dict:
    """The JSON Schema of one flask-restful output field."""
    value = _field_instance(value)
    schema = getattr(value, "schema", None)
    if isinstance(schema, dict):  # Money, DateTime, Template, Link
        return copy.deepcopy(schema)
    if isinstance(value, rfields.Nested):
        nested = fields_schema(value.nested, names)
        if getattr(value, "allow_null", False):
            return {"anyOf": [nested, {"type": "null"}]}
        return nested
    if isinstance(value, rfields.List):
        return {"type": "array", "items": field_schema(value.container, names)}
    if isinstance(value, rfields.Url):
        return {"type": "string", "format": "uri-reference"}
    if isinstance(value, (rfields.FormattedString, rfields.String)):
        return {"type": "string"}
    if isinstance(value, rfields.Boolean):
        return {"type": "boolean"}
    if isinstance(value, rfields.Integer):
        return {"type": "integer"}
    if isinstance(value, rfields.Float):
        return {"type": "number"}
    if isinstance(value, (rfields.Arbitrary, rfields.Fixed)):
        return {"type": "string", "format": "decimal"}
    if isinstance(value, rfields.DateTime):
        return {"type": "string"}
    return {}


def fields_schema(field_dict: dict, names: SchemaNames | None = None) -> dict:
    """An object with every key of ``field_dict`` (marshal always writes them all)."""
    if names is not None:
        name = names.name_of(field_dict)
        if name is not None:
            return names.ref(name, field_dict)
    return {
        "type": "object",
        "properties": {key: field_schema(value, names) for key, value in field_dict.items()},
        "required": list(field_dict),
        "additionalProperties": False,
    }


def _camel(snake: str) -> str:
    return "".join(word.capitalize() for word in snake.split("_") if word)


class SchemaNames:
    """Component names for field dicts: the module-level name they are bound to.

    ``user_fields`` in common/fields.py becomes ``#/components/schemas/User``,
    ``top_customer_fields`` in resources/reports.py ``TopCustomer``.
    """

    def __init__(self, modules: Iterable[str]):
        self.by_id: dict[int, str] = {}
        self.schemas: dict[str, dict] = {}
        for module_name in modules:
            module = sys.modules.get(module_name)
            for variable, value in vars(module).items() if module else ():
                if id(value) in self.by_id:
                    continue
                if isinstance(value, dict) and variable.endswith("_fields"):
                    self.by_id[id(value)] = _camel(variable[: -len("_fields")])
                elif isinstance(value, reqparse.RequestParser) and variable.endswith("_parser"):
                    # users.put_parser -> UsersPut: a request body's schema.
                    self.by_id[id(value)] = _camel(module_name.rsplit(".", 1)[-1] + "_" + variable[: -len("_parser")])

    def name_of(self, obj) -> str | None:
        return self.by_id.get(id(obj))

    def add(self, name: str, schema: dict) -> dict:
        self.schemas.setdefault(name, schema)
        return {"$ref": f"#/components/schemas/{name}"}

    def ref(self, name: str, field_dict: dict) -> dict:
        if name not in self.schemas:
            self.schemas[name] = {}  # reserved first: a dict may nest itself
            schema = fields_schema(field_dict, None)
            schema["properties"] = {key: field_schema(value, self) for key, value in field_dict.items()}
            self.schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}


# -- components ---------------------------------------------------------------------

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "An error, as RFC 9457 problem details (application/problem+json).",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference", "examples": ["urn:myapi:problem:validation-error"]},
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

PAGINATION_SCHEMA = {
    "type": "object",
    "required": ["page", "per_page", "total_items", "total_pages"],
    "properties": {
        "page": {"type": "integer", "minimum": 1},
        "per_page": {"type": "integer", "minimum": 1, "maximum": 100},
        "total_items": {"type": "integer", "minimum": 0},
        "total_pages": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}

HEADERS = {
    "ETag": {
        "description": 'The strong validator of this representation: "v<version>" for JSON, '
                       '"v<version>-csv" for CSV.',
        "schema": {"type": "string", "examples": ['"v3"']},
    },
    "Location": {"description": "The path of the created resource.",
                 "schema": {"type": "string", "format": "uri-reference"}},
    "Link": {"description": "RFC 8288 links to the first, prev, next and last pages.",
             "schema": {"type": "string"}},
    "X-Total-Count": {"description": "The number of items on all pages.",
                      "schema": {"type": "integer", "minimum": 0}},
    "Content-Disposition": {"description": 'attachment; filename="<name>-<date>.<json|ndjson|csv>"',
                            "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "true when this is the stored answer to an earlier request "
                                           "with the same Idempotency-Key.",
                            "schema": {"type": "string", "enum": ["true"]}},
    "WWW-Authenticate": {"description": "The scheme to authenticate with.", "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}},
    "Accept-Post": {"description": "The media types this operation accepts.", "schema": {"type": "string"}},
}

PARAMETERS = {
    "IfMatch": {
        "name": "If-Match",
        "in": "header",
        "description": "Only change the item if its ETag is one of these (412 otherwise); '*' matches any.",
        "schema": {"type": "string"},
    },
    "IfNoneMatch": {
        "name": "If-None-Match",
        "in": "header",
        "description": "304 Not Modified when the item's ETag is one of these.",
        "schema": {"type": "string"},
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "Makes a retry of this POST safe: the same key and request replay the first answer "
                       "(Idempotent-Replayed: true), the same key with another request is 422. "
                       "Kept 24 hours per caller.",
        "schema": inputs.idempotency_key.schema,
    },
}

ERROR_RESPONSES = {
    400: ("BadRequest", "The request is malformed or has invalid, missing or unknown fields (all listed in "
                        "`errors`)."),
    401: ("Unauthorized", "No valid credentials: sign in and send 'Authorization: Bearer <token>'."),
    403: ("Forbidden", "Signed in, but not allowed to do this."),
    404: ("NotFound", "No such resource (or not one the caller may see)."),
    406: ("NotAcceptable", "`format` or `Accept` names a media type this resource cannot produce."),
    409: ("Conflict", "The request conflicts with the current state: a duplicate, insufficient stock, an "
                      "illegal transition, a concurrent update or a duplicate request still running."),
    412: ("PreconditionFailed", "If-Match does not match the item's current ETag."),
    413: ("ContentTooLarge", "The body is larger than the limit."),
    415: ("UnsupportedMediaType", "The body's Content-Type is not one this operation accepts."),
    422: ("UnprocessableContent", "The Idempotency-Key was used before with another request."),
    429: ("TooManyRequests", "Rate limit reached: retry after Retry-After seconds."),
    503: ("ServiceUnavailable", "The database is not answering: retry after Retry-After seconds."),
}
ERROR_HEADERS = {401: "WWW-Authenticate", 412: "ETag", 415: "Accept-Post", 429: "Retry-After",
                 503: "Retry-After"}

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "A token from POST /tokens: 'Authorization: Bearer <token>'."},
    "basicAuth": {"type": "http", "scheme": "basic", "description": "Username and password, to sign in."},
}


def components() -> dict:
    responses = {}
    for status, (name, description) in ERROR_RESPONSES.items():
        response: dict[str, Any] = {
            "description": description,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
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


# -- operations ---------------------------------------------------------------------


def _summary(resource: type, method: str, op: Operation) -> str:
    if op.summary:
        return op.summary
    function = getattr(resource, method)
    doc = (function.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else f"{method.upper()} {resource.__name__}"


def _format_parameter(media_types: tuple[str, ...]) -> dict | None:
    names = [ext for ext, media in FORMATS.items() if media in media_types]
    if not names:
        return None
    return {
        "name": "format",
        "in": "query",
        "description": "The representation, overriding Accept (the first is the default).",
        "schema": {"type": "string", "enum": sorted(names, key=lambda n: media_types.index(FORMATS[n]))},
    }


def _rate_limited(app: Flask, endpoint: str) -> bool:
    """Whether the route counts against the default rate limit (not ``limiter.exempt``)."""
    from flask_limiter import ExemptionScope

    from .ratelimit import EXTENSION as LIMITER

    limiter = app.extensions.get(LIMITER)
    try:
        scope = limiter.limit_manager.exemption_scope(app, endpoint, None)
    except Exception:  # another flask-limiter: document the limit
        return True
    return not (scope & ExemptionScope.DEFAULT)


class Builder:
    def __init__(self, app: Flask):
        self.app = app
        modules = ["myapi.common.fields"] + sorted({r.resource.__module__ for r in api_routes(app)})
        self.names = SchemaNames(modules)

    # success answers

    def success_content(self, resource: type, op: Operation) -> dict:
        if op.produces is not None:
            return copy.deepcopy(op.produces)
        media_types = tuple(getattr(resource, "media_types", (JSON,)))
        item = fields_schema(op.fields, self.names) if op.fields is not None else {}
        if op.collection == "page":
            json_schema = {
                "type": "object",
                "required": ["data", "pagination"],
                "properties": {"data": {"type": "array", "items": item},
                               "pagination": {"$ref": "#/components/schemas/Pagination"}},
                "additionalProperties": False,
            }
        elif op.collection == "data":
            json_schema = {"type": "object", "required": ["data"],
                           "properties": {"data": {"type": "array", "items": item}},
                           "additionalProperties": False}
        elif op.collection == "stream":
            json_schema = {"type": "array", "items": item}
        else:
            json_schema = item
        content = {}
        for media_type in media_types:
            if media_type == JSON:
                content[JSON] = {"schema": json_schema}
            elif media_type in (CSV, NDJSON):
                # Text, not JSON: validators have nothing to parse (the columns are in the description).
                content[media_type] = {"schema": {"type": "string"}}
            else:
                content[media_type] = {}
        return content

    def success_description(self, resource: type, op: Operation) -> str:
        media_types = tuple(getattr(resource, "media_types", (JSON,)))
        parts = [HTTP_STATUS_CODES.get(op.status, "Success") + "."]
        if op.fields is not None and CSV in media_types and op.produces is None:
            rows = "one row per order line" if any(
                isinstance(_field_instance(f), rfields.List) for f in op.fields.values()) else "one row per item"
            parts.append(f"CSV ({rows}) columns: {', '.join(field_names(op.fields))}.")
        if op.collection == "stream" and NDJSON in media_types:
            parts.append("NDJSON: one JSON object per line.")
        return " ".join(parts)

    def success_headers(self, method: str, op: Operation, idempotent: bool) -> dict:
        names = []
        if op.etag and method != "delete":
            names.append("ETag")
        if op.status == 201:
            names.append("Location")
        if op.collection == "page":
            names += ["X-Total-Count", "Link"]
        if op.collection == "stream":
            names.append("Content-Disposition")
        if idempotent:
            names.append("Idempotent-Replayed")
        return {name: {"$ref": f"#/components/headers/{name}"} for name in names}

    # the operation

    def operation(self, route: Route, method: str, path_params: list[dict]) -> dict | None:
        resource = route.resource
        op = declaration(resource, method) or Operation(summary=f"{method.upper()} {resource.__name__} "
                                                                "(undocumented)")
        if op.hidden:
            return None
        media_types = tuple(getattr(resource, "media_types", (JSON,)))
        idempotent = method == "post" and getattr(resource, "idempotent_post", False)
        writes = method in ("put", "patch", "delete")

        parameters: list[dict] = list(copy.deepcopy(path_params))
        for argument in parser_arguments(op.parsers, "args"):
            parameter = {"name": argument.name, "in": "query", "schema": argument_schema(argument)}
            if argument.required:
                parameter["required"] = True
            if argument.action == "append":
                parameter.update(style="form", explode=True)
            parameters.append(parameter)
        declared = {p["name"] for p in parameters if p["in"] == "query"}
        fmt = _format_parameter(media_types) if op.produces is None else None
        if fmt is not None and "format" not in declared and "format" in GLOBAL_QUERY_ARGS:
            parameters.append(fmt)
        for argument in parser_arguments(op.parsers, "headers"):
            parameter = {"name": argument.name, "in": "header", "schema": argument_schema(argument)}
            if argument.required:
                parameter["required"] = True
            parameters.append(parameter)
        if op.etag and method == "get":
            parameters.append({"$ref": "#/components/parameters/IfNoneMatch"})
        if op.etag and writes:
            parameters.append({"$ref": "#/components/parameters/IfMatch"})
        if idempotent:
            parameters.append({"$ref": "#/components/parameters/IdempotencyKey"})

        operation: dict[str, Any] = {
            "operationId": method + resource.__name__,
            "summary": _summary(resource, method, op),
            "tags": [resource.__module__.rsplit(".", 1)[-1]],
        }
        if op.description:
            operation["description"] = op.description
        if parameters:
            operation["parameters"] = parameters

        body = self.request_body(op)
        if body is not None:
            operation["requestBody"] = body

        security = {
            "none": None,
            "optional": [{}, {"bearerAuth": []}],
            "user": [{"bearerAuth": []}],
            "admin": [{"bearerAuth": []}],
            "basic": [{"basicAuth": []}, {}],
        }[op.auth]
        if security is not None:
            operation["security"] = security

        responses: dict[str, Any] = {}
        success: dict[str, Any] = {"description": self.success_description(resource, op)}
        if op.status != 204:
            success["content"] = self.success_content(resource, op)
        headers = self.success_headers(method, op, idempotent)
        if headers:
            success["headers"] = headers
        responses[str(op.status)] = success
        if op.etag and method == "get":
            responses["304"] = {"description": "Not Modified: If-None-Match names the current ETag.",
                                "headers": {"ETag": {"$ref": "#/components/headers/ETag"}}}

        errors = set(op.errors) | {406, 503}
        if op.parsers or body is not None or idempotent:
            errors.add(400)
        if op.auth != "none":
            errors.add(401)
        if op.auth == "admin":
            errors.add(403)
        if any(p["in"] == "path" for p in path_params):
            errors.add(404)
        if op.etag and writes:
            errors |= {409, 412}
        if idempotent:
            errors |= {409, 422}
        if body is not None:
            errors |= {413, 415}
        if _rate_limited(self.app, route.endpoint):
            errors.add(429)
        for status in sorted(errors):
            responses[str(status)] = {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}
        operation["responses"] = responses
        return operation

    def request_body(self, op: Operation) -> dict | None:
        if op.csv_upload is not None:
            columns = op.csv_upload.args
            required = [a.name for a in columns if a.required]
            optional = [a.name for a in columns if not a.required]
            description = (
                "A CSV file with a header row, as the body (text/csv) or as the multipart field `file`. "
                f"Required columns: {', '.join(required)}; optional: {', '.join(optional)}. Each row is "
                "checked with the rules of the matching field of PUT /products/{product_id}."
            )
            upload = {"type": "string", "contentMediaType": CSV}
            return {
                "required": True,
                "description": description,
                "content": {
                    CSV: {"schema": upload},
                    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                                       "properties": {"file": upload}}},
                },
            }
        arguments = parser_arguments(op.parsers, "body")
        files = parser_arguments(op.parsers, "files")
        if not arguments and not files:
            return None
        body_parsers = [parser for parser in op.parsers if any(a.location in ("body", "files") for a in parser.args)]
        strict = all(getattr(parser, "strict", False) for parser in body_parsers)
        schema = body_schema(arguments, strict, files=files)
        name = self.names.name_of(body_parsers[0]) if len(body_parsers) == 1 else None
        if name is not None:
            schema = self.names.add(name, schema)
        media_types = ("multipart/form-data",) if files else op.body_media_types
        required = op.body_required
        if required is None:
            required = any(a.required for a in arguments + files)
        return {"required": required, "content": {media: {"schema": copy.deepcopy(schema)} for media in media_types}}

    def document(self) -> dict:
        from .. import __version__

        paths: dict[str, dict] = {}
        for route in api_routes(self.app):
            if not route.rule.rule.startswith(API_PREFIX):
                continue
            path, path_params = path_parameters(route.rule)
            for method in route.methods:
                operation = self.operation(route, method, path_params)
                if operation is not None:
                    paths.setdefault(path, {})[method] = operation
        comps = components()
        comps["schemas"].update(self.names.schemas)
        tags = sorted({op["tags"][0] for item in paths.values() for op in item.values()})
        return {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": "myapi",
                "version": __version__,
                "summary": "A store back end: users and sign-in, a product catalogue, orders, sales reports.",
                "description": (
                    "Every error is application/problem+json. Lists take page, per_page and sort and answer "
                    "{data, pagination} with X-Total-Count and Link headers. Every resource answers JSON or "
                    "CSV (Accept, or ?format=); exports also NDJSON. Items carry an ETag (If-None-Match on "
                    "reads, If-Match on writes). Send Idempotency-Key on a POST to make a retry safe. "
                    "Unknown body fields and unknown query parameters are 400."
                ),
            },
            "servers": [{"url": API_PREFIX}],
            "tags": [{"name": tag} for tag in tags],
            "paths": paths,
            "components": comps,
        }


def _with_single_examples(node):
    """Give each schema with ``examples`` (3.1) an ``example`` too, which 3.0 readers show."""
    if isinstance(node, dict):
        examples = node.get("examples")
        if isinstance(examples, list) and examples and "example" not in node and "type" in node:
            node["example"] = examples[0]
        for value in node.values():
            _with_single_examples(value)
    elif isinstance(node, list):
        for value in node:
            _with_single_examples(value)
    return node


def build_document(app: Flask) -> dict:
    """A fresh OpenAPI document for ``app`` (see :func:`openapi_document`)."""
    return _with_single_examples(Builder(app).document())


def openapi_document(app: Flask) -> dict:
    """The app's OpenAPI document, built on first use and kept for the app's life."""
    document = app.extensions.get(EXTENSION)
    if document is None:
        document = app.extensions[EXTENSION] = build_document(app)
    return document


__all__ = ["ERROR_STATUSES", "HTML", "Operation", "api_routes", "argument_schema", "build_document", "declaration",
           "documented", "field_schema", "fields_schema", "openapi_document", "path_parameters",
           "undeclared_operations"]
