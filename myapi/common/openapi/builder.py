"""The OpenAPI document, built from the routes and each method's contract.

For each routed method the contract (common/contract.py) gives the parsers
(query, header and body parameters), the output (field dict, envelope, page,
export, status, ETag, Location), who may call it (``requires``) and the rest
(``documented``); the Resource class gives the media types it negotiates.
What those imply is added here once for all: the ``format`` and ``fields``
parameters, ``Prefer`` on writes, pagination headers, conditional headers,
Idempotency-Key, security, and the problem+json answers an operation can give.
"""

from __future__ import annotations

import copy
import re

try:  # the regex parser, for the width of a pattern's matches
    from re import _parser as sre_parse
except ImportError:  # Python 3.10
    import sre_parse
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask_restful import fields as rfields
from werkzeug.http import HTTP_STATUS_CODES

from .. import inputs
from ..contract import Contract, contract_of
from ..fields import API_PREFIX, field_names, max_selection_length, selectable_names
from ..media import CSV, FORMATS, JSON, NDJSON
from ..parsing import GLOBAL_QUERY_ARGS
from .components import components, error_response
from .routes import Route, api_routes, path_parameters
from .schemas import SchemaNames, argument_schema, body_schema, field_instance, fields_schema, parser_arguments

WRITES = ("post", "put", "patch")
def security_of(contract: Contract) -> list[dict] | None:
    """Who may call: anonymous (``{}``), a sign-in token, an API key holding the route's scope, HTTP Basic."""
    if contract.auth == "password":
        return [{"basicAuth": []}, {}]
    requirements = [{}] if contract.auth == "none" else []
    if contract.auth != "none" or contract.scope is not None:
        requirements.append({"bearerAuth": []})
    if contract.scope is not None:
        # OpenAPI 3.1 lets a non-OAuth requirement list the roles it needs: the key's scope.
        requirements.append({"apiKey": [contract.scope]})
    return requirements if requirements != [{}] else None  # anyone: no requirement to state


@dataclass
class Operation:
    """One routed method, with what the document needs to know about it."""

    route: Route
    method: str
    contract: Contract
    path_params: list[dict]

    @property
    def resource(self) -> type:
        return self.route.resource

    @property
    def media_types(self) -> tuple[str, ...]:
        return tuple(getattr(self.resource, "media_types", (JSON,)))

    @property
    def output(self):
        return self.contract.output

    @property
    def collection(self) -> str | None:
        output = self.output
        if output is None:
            return None
        if output.paged:
            return "page"
        if output.export:
            return "stream"
        if output.feed:
            return "feed"
        return output.envelope

    @property
    def idempotent(self) -> bool:
        return self.method == "post" and getattr(self.resource, "idempotent_post", False)

    @property
    def etag(self) -> bool:
        return self.output is not None and self.output.etag

    @property
    def conditional(self) -> bool:
        """The method reads If-Match (its parsers have the header)."""
        return any(argument.type is inputs.if_match for argument in parser_arguments(self.contract.parsers,
                                                                                        "headers"))

    @property
    def minimal(self) -> bool:
        """``Prefer: return=minimal`` applies: a write with an answer body."""
        return self.method in WRITES and self.output is not None and self.output.minimal


def summary_of(op: Operation) -> str:
    if op.contract.summary:
        return op.contract.summary
    doc = (getattr(op.resource, op.method).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else f"{op.method.upper()} {op.resource.__name__}"


# -- parameters ---------------------------------------------------------------------------


def format_parameter(media_types: tuple[str, ...]) -> dict | None:
    names = [ext for ext, media in FORMATS.items() if media in media_types]
    if not names:
        return None
    return {
        "name": "format",
        "in": "query",
        "description": "The representation, overriding Accept (the first is the default).",
        "schema": {"type": "string", "enum": sorted(names, key=lambda n: media_types.index(FORMATS[n]))},
    }


def fields_parameter(field_dict: dict) -> dict:
    """``fields=``: a comma-separated list of the output's selectable names (DESIGN §8.1)."""
    names = selectable_names(field_dict)
    one = "(?:" + "|".join(re.escape(name) for name in names) + ")"
    return {
        "name": "fields",
        "in": "query",
        "description": "Only these output fields, in every representation: comma-separated names of "
                       "fields, of nested groups (`links`) or of their members (`links.self`). Choose from: "
                       + ", ".join(names) + ".",
        "schema": {"type": "string", "pattern": f"^{one}(?:,{one})*$", "maxLength": max_selection_length(field_dict)},
        "style": "form",
        "explode": False,
    }


EXAMPLE_KEYS = ("example", "examples")


def _argument_parameter(argument, where: str) -> dict:
    parameter = {"name": argument.name, "in": where, "schema": argument_schema(argument)}
    if argument.required:
        parameter["required"] = True
    else:
        _example_in_words(parameter)
    if where == "query" and argument.action == "append":
        parameter.update(style="form", explode=True)
    return parameter


def _example_in_words(parameter: dict) -> None:
    """An optional parameter's example moves from its schema to its description.

    Swagger UI's "Try it out" fills every input with its schema's example,
    and an optional filter filled in filters: GET /products executed as-is
    asked for min_price=max_price=19.99 and listed two products. A
    ``default`` stays: it is what the server does without the parameter.
    """
    schema = parameter["schema"]
    examples = []
    for node in (schema, schema.get("items", {})):
        for key in EXAMPLE_KEYS:
            value = node.pop(key, None)
            if value is not None:
                examples += value if key == "examples" else [value]
    if examples:
        words = schema.get("description", "").strip()
        parameter["description"] = (words + " " if words else "") + f"For example `{examples[0]}`."


def parameters_of(op: Operation) -> list[dict]:
    parameters: list[dict] = list(copy.deepcopy(op.path_params))
    parameters += [_argument_parameter(a, "query") for a in parser_arguments(op.contract.parsers, "args")]
    declared = {p["name"] for p in parameters if p["in"] == "query"}
    if op.contract.produces is None and "format" not in declared and "format" in GLOBAL_QUERY_ARGS:
        fmt = format_parameter(op.media_types)
        if fmt is not None:
            parameters.append(fmt)
    if op.output is not None and "fields" not in declared:
        within = op.output.select_within
        parameters.append(fields_parameter(op.output.fields[within].nested if within else op.output.fields))
    parameters += [_argument_parameter(a, "header") for a in parser_arguments(op.contract.parsers, "headers")]
    if op.etag and op.method == "get":
        parameters.append({"$ref": "#/components/parameters/IfNoneMatch"})
    if op.minimal:
        parameters.append({"$ref": "#/components/parameters/Prefer"})
    if op.idempotent:
        parameters.append({"$ref": "#/components/parameters/IdempotencyKey"})
    return parameters


# -- the request body ----------------------------------------------------------------------


# A text cell in the one plain form the file pattern admits: no comma, quote or line break to escape.
PLAIN_TEXT_CELL = "[A-Za-z0-9](?:[A-Za-z0-9 ._-]{0,38}[A-Za-z0-9])?"


def csv_cell_pattern(argument) -> str:
    """A regex for one CSV cell that the argument's input type accepts."""
    schema = argument_schema(argument)
    if schema.get("type") == "integer":
        digits = len(str(schema.get("maximum", 10**9))) - 1
        return f"[0-9]{{1,{max(digits, 1)}}}"
    if schema.get("type") == "boolean":
        return "(?:true|false)"
    pattern = schema.get("pattern", "")
    if pattern and "\\u0000" not in pattern:  # a closed alphabet (sku, category, money): no CSV escaping
        return bounded(pattern.removeprefix("^").removesuffix("$"), schema.get("maxLength"))
    return PLAIN_TEXT_CELL


def bounded(pattern: str, max_length: int | None) -> str:
    """``pattern`` with its ``*`` and ``+`` capped so that no match is longer than ``max_length``."""
    if max_length is None:
        return f"(?:{pattern})"
    for cap in range(max_length, 0, -1):
        capped = re.sub(r"(?<!\\)\*", f"{{0,{cap}}}", pattern)
        capped = re.sub(r"(?<!\\)\+", f"{{1,{cap}}}", capped)
        if sre_parse.parse(capped).getwidth()[1] <= max_length:
            return f"(?:{capped})"
    raise ValueError(f"no capped form of {pattern!r} fits {max_length} characters")


def csv_file_pattern(columns_parser) -> str:
    """A CSV file of the required columns that the import accepts: one safe form among the many it takes."""
    required = [a for a in columns_parser.args if a.required]
    header = ",".join(a.name for a in required)
    row = ",".join(csv_cell_pattern(a) for a in required)
    # One row: a pattern cannot say "no sku twice", and a repeated sku is a row error.
    return f"^{header}\\r?\\n{row}\\r?\\n$"


def csv_upload_body(columns_parser) -> dict:
    columns = columns_parser.args
    required = [a.name for a in columns if a.required]
    optional = [a.name for a in columns if not a.required]
    description = (
        "A CSV file with a header row, as the body (text/csv) or as the multipart field `file`. "
        f"Required columns: {', '.join(required)}; optional: {', '.join(optional)}. Each row is "
        "checked with the rules of the matching field of PUT /products/{product_id}; a sku may appear "
        "once per file. The schema's pattern is one plain form that is always accepted (a header and "
        "one row); any CSV that keeps those rules is."
    )
    upload = {"type": "string", "contentMediaType": CSV, "pattern": csv_file_pattern(columns_parser)}
    return {
        "required": True,
        "description": description,
        "content": {
            CSV: {"schema": upload},
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": upload}}},
        },
    }


def json_array_body(spec, names: SchemaNames) -> dict:
    """A JSON array of objects, each the item parser's body (and naming exactly one of ``spec.one_of``)."""
    item = body_schema(spec.item_parser.args, getattr(spec.item_parser, "strict", False))
    if spec.one_of:
        item["oneOf"] = [{"required": [name]} for name in spec.one_of]
        item["description"] = f"Names its target by exactly one of {' or '.join(spec.one_of)}."
    name = names.name_of(spec.item_parser)
    if name is not None:
        item = names.add(name, item)
    schema = {"type": "array", "minItems": 1, "maxItems": spec.max_items, "items": item}
    return {"required": True, "content": {JSON: {"schema": schema}}}


def request_body(contract: Contract, names: SchemaNames) -> dict | None:
    if contract.csv_upload is not None:
        return csv_upload_body(contract.csv_upload)
    if contract.json_array is not None:
        return json_array_body(contract.json_array, names)
    arguments = parser_arguments(contract.parsers, "body")
    files = parser_arguments(contract.parsers, "files")
    if not arguments and not files:
        return None
    body_parsers = [p for p in contract.parsers if any(a.location in ("body", "files") for a in p.args)]
    strict = all(getattr(parser, "strict", False) for parser in body_parsers)
    schema = body_schema(arguments, strict, files=files)
    name = names.name_of(body_parsers[0]) if len(body_parsers) == 1 else None
    if name is not None:
        schema = names.add(name, schema)
    media_types = ("multipart/form-data",) if files else body_parsers[0].media_types
    required = any(a.required for a in arguments + files) and not any(p.body_optional for p in body_parsers)
    return {"required": required, "content": {media: {"schema": copy.deepcopy(schema)} for media in media_types}}


# -- answers -------------------------------------------------------------------------------


def json_schema_of(op: Operation, names: SchemaNames) -> dict:
    item = fields_schema(op.output.fields, names)
    collection = op.collection
    if collection == "page":
        return {
            "type": "object",
            "required": ["data", "pagination"],
            "properties": {"data": {"type": "array", "items": item},
                           "pagination": {"$ref": "#/components/schemas/Pagination"}},
            "additionalProperties": False,
        }
    if collection == "stream":
        return {"type": "array", "items": item}
    if collection == "feed":
        return {"type": "object", "required": ["data", "next_since"],
                "properties": {"data": {"type": "array", "items": item},
                               "next_since": {"type": "string", "description": "Where to ask from next."}},
                "additionalProperties": False}
    if collection is not None:  # a list in an envelope (reports)
        return {"type": "object", "required": [collection],
                "properties": {collection: {"type": "array", "items": item}}, "additionalProperties": False}
    return item


def success_content(op: Operation, names: SchemaNames) -> dict:
    if op.contract.produces is not None:
        return copy.deepcopy(op.contract.produces)
    content = {}
    for media_type in op.media_types:
        if media_type == JSON:
            content[JSON] = {"schema": json_schema_of(op, names)}
        elif media_type in (CSV, NDJSON):
            # Text, not JSON: validators have nothing to parse (the columns are in the description).
            content[media_type] = {"schema": {"type": "string"}}
            alternate = (op.output.alternates or {}).get(media_type) if op.output is not None else None
            if alternate is not None:
                content[media_type]["schema"]["description"] = alternate.description
        else:
            content[media_type] = {}
    return content


def success_description(op: Operation) -> str:
    parts = [HTTP_STATUS_CODES.get(op.contract.status, "Success") + "."]
    output = op.output
    if output is not None and output.alternates:
        parts += [alternate.description for alternate in output.alternates.values()]
    elif output is not None and CSV in op.media_types:
        rows = "one row per order line" if any(
            isinstance(field_instance(f), rfields.List) for f in output.fields.values()) else "one row per item"
        parts.append(f"CSV ({rows}) columns: {', '.join(field_names(output.fields))}.")
    if op.collection == "stream" and NDJSON in op.media_types:
        parts.append("NDJSON: one JSON object per line.")
    if op.minimal and op.contract.status == 201:
        parts.append("With Prefer: return=minimal, no body.")
    return " ".join(parts)


def success_headers(op: Operation) -> dict:
    names = []
    if op.etag:
        names.append("ETag")
    if op.output is not None and op.output.location is not None:
        names.append("Location")
    followed = getattr(op.resource, "change_feed", None) is not None  # a list or export a feed continues
    if op.collection == "page":
        names += ["X-Total-Count", "Link"] + (["X-Changes-Since"] if followed else [])
    if op.collection == "stream":
        names += ["Content-Disposition", "X-Total-Count"] + (["X-Changes-Since"] if followed else [])
    if op.collection == "feed":
        names.append("X-Next-Since")
    if op.minimal:
        names.append("Preference-Applied")
    if op.idempotent:
        names.append("Idempotent-Replayed")
    names += op.contract.headers
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def error_statuses(app: Flask, op: Operation, has_body: bool) -> list[int]:
    contract = op.contract
    errors = set(contract.errors) | {406, 503}
    if contract.parsers or has_body or op.idempotent or op.output is not None:
        errors.add(400)  # fields= is checked on every answer with fields
    errors.add(401)  # credentials that are sent must be valid, on every route
    if contract.auth == "admin" or contract.scope is not None or contract.auth == "user":
        errors.add(403)  # not an admin; an API key without the scope (or a key where only tokens may go)
    if op.path_params:
        errors.add(404)
    if op.conditional:
        errors |= {409, 412}
    if op.idempotent:
        errors |= {409, 422}
    if has_body:
        errors |= {413, 415}
    if rate_limited(app, op.route.endpoint):
        errors.add(429)
    return sorted(errors)


def responses_of(app: Flask, op: Operation, names: SchemaNames, has_body: bool) -> dict:
    status = op.contract.status
    success: dict[str, Any] = {"description": success_description(op)}
    if status != 204:
        success["content"] = success_content(op, names)
    headers = success_headers(op)
    if headers:
        success["headers"] = headers
    responses: dict[str, Any] = {str(status): success}
    if op.minimal and status == 200:
        responses["204"] = {"description": "No Content: the change was made (Prefer: return=minimal).",
                            "headers": {name: headers[name] for name in ("ETag", "Preference-Applied",
                                                                         *op.contract.headers)
                                        if name in headers}}
    if op.etag and op.method == "get":
        responses["304"] = {"description": "Not Modified: If-None-Match names the current ETag.",
                            "headers": {"ETag": {"$ref": "#/components/headers/ETag"}}}
    for error in error_statuses(app, op, has_body):
        responses[str(error)] = error_response(error)
    return responses


def rate_limited(app: Flask, endpoint: str) -> bool:
    """Whether the route counts against the default rate limit (not ``limiter.exempt``)."""
    from flask_limiter import ExemptionScope

    from ..ratelimit import EXTENSION as LIMITER

    limiter = app.extensions.get(LIMITER)
    try:
        scope = limiter.limit_manager.exemption_scope(app, endpoint, None)
    except Exception:  # another flask-limiter: document the limit
        return True
    return not (scope & ExemptionScope.DEFAULT)


# -- the document -------------------------------------------------------------------------


class Builder:
    def __init__(self, app: Flask):
        self.app = app
        modules = ["myapi.common.fields"] + sorted({r.resource.__module__ for r in api_routes(app)})
        self.names = SchemaNames(modules)

    def operation(self, op: Operation) -> dict | None:
        if op.contract.hidden:
            return None
        operation: dict[str, Any] = {
            "operationId": op.method + op.resource.__name__,
            "summary": summary_of(op),
            "tags": [op.resource.__module__.rsplit(".", 1)[-1]],
        }
        if op.contract.description:
            operation["description"] = op.contract.description
        parameters = parameters_of(op)
        if parameters:
            operation["parameters"] = parameters
        body = request_body(op.contract, self.names)
        if body is not None:
            operation["requestBody"] = body
        security = security_of(op.contract)
        if security is not None:
            operation["security"] = security
        if op.contract.scope is not None:
            operation["x-required-scope"] = op.contract.scope
        operation["responses"] = responses_of(self.app, op, self.names, body is not None)
        return operation

    def paths(self) -> dict[str, dict]:
        paths: dict[str, dict] = {}
        for route in api_routes(self.app):
            if not route.rule.rule.startswith(API_PREFIX):
                continue
            path, path_params = path_parameters(route.rule)
            for method in route.methods:
                contract = contract_of(route.resource, method) or Contract(
                    summary=f"{method.upper()} {route.resource.__name__} (undocumented)")
                operation = self.operation(Operation(route, method, contract, path_params))
                if operation is not None:
                    paths.setdefault(path, {})[method] = operation
        return paths

    def document(self) -> dict:
        from ... import __version__

        paths = self.paths()
        comps = components()
        comps["schemas"].update(self.names.schemas)
        tags = sorted({op["tags"][0] for item in paths.values() for op in item.values()})
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "myapi",
                "version": __version__,
                "summary": "A store back end: users and sign-in, a product catalogue, orders, sales reports.",
                "description": DESCRIPTION,
            },
            "servers": [{"url": API_PREFIX}],
            "tags": [{"name": tag} for tag in tags],
            "paths": paths,
            "components": comps,
        }


DESCRIPTION = (
    "Every error is application/problem+json. Lists take page or cursor, per_page, sort and "
    "count=exact|estimated|none, and answer {data, pagination} with X-Total-Count and Link headers; "
    "follow pagination.next_cursor (or Link rel=next) to walk a list that changes meanwhile, each "
    "unchanged row exactly once. Every resource answers JSON or "
    "CSV (Accept, or ?format=); exports also NDJSON. `fields=` selects output fields everywhere; "
    "`Prefer: return=minimal` makes a write answer without a body. Items carry an ETag "
    "(If-None-Match on reads, If-Match on writes). Send Idempotency-Key on a POST to make a retry "
    "safe. Unknown body fields and unknown query parameters are 400."
)
