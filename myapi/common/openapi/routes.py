"""The routes the document describes: every URL rule served by a flask-restful Resource.

That is every line of app.py's route table; each routed method's contract
(common/contract.py) says the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import flask_restful
from flask import Flask
from werkzeug.routing import IntegerConverter, PathConverter, Rule, UUIDConverter
from werkzeug.routing.converters import NumberConverter

from ..contract import contract_of
from ..fields import API_PREFIX

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass
class Route:
    rule: Rule
    endpoint: str
    resource: type
    methods: list[str]


def api_routes(app: Flask) -> list[Route]:
    """Every URL rule of the app served by a flask-restful Resource (the Api's table).

    Rules outside ``/api/v1/`` are left out: the index's aliases ``/`` and
    ``/api/v1`` (app.py) answer what ``/api/v1/`` does.
    """
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX + "/"):
            continue
        view = app.view_functions.get(rule.endpoint)
        resource = getattr(view, "view_class", None)
        if not (isinstance(resource, type) and issubclass(resource, flask_restful.Resource)):
            continue
        methods = [m for m in HTTP_METHODS if m.upper() in (rule.methods or ())]
        routes.append(Route(rule, rule.endpoint, resource, methods))
    routes.sort(key=lambda route: route.rule.rule)
    return routes


def undeclared_operations(app: Flask) -> list[str]:
    """``"GET /api/v1/x"`` for every routed method that declares nothing (no contract at all)."""
    return [
        f"{method.upper()} {route.rule.rule}"
        for route in api_routes(app)
        for method in route.methods
        if contract_of(route.resource, method) is None
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
