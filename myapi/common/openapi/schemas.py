"""JSON Schemas from the code's own objects: reqparse Arguments in, field dicts out.

Nothing here is a second copy of a rule: an input type carries its own
``.schema`` (common/inputs.py), an output field its own (common/fields.py).
"""

from __future__ import annotations

import copy
import decimal
import sys
from collections.abc import Iterable
from typing import Any

from flask_restful import fields as rfields
from flask_restful import reqparse

PYTHON_TYPES: dict[Any, dict] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    decimal.Decimal: {"type": "string", "format": "decimal"},
}


# -- input ---------------------------------------------------------------------------


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


# -- output --------------------------------------------------------------------------


def field_instance(value):
    return value() if isinstance(value, type) else value


def field_schema(value, names: SchemaNames | None = None) -> dict:
    """The JSON Schema of one flask-restful output field."""
    value = field_instance(value)
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
    return _plain_field_schema(value)


def _plain_field_schema(value) -> dict:
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
    """An object with the keys of ``field_dict`` and no others.

    Every key is present unless the request's ``fields=`` selected some
    (DESIGN §8.1), so none is ``required``: the document cannot make that
    depend on a query parameter.
    """
    if names is not None:
        name = names.name_of(field_dict)
        if name is not None:
            return names.ref(name, field_dict)
    return {
        "type": "object",
        "description": "Every field is present unless `fields=` selects some.",
        "properties": {key: field_schema(value, names) for key, value in field_dict.items()},
        "minProperties": 1,
        "additionalProperties": False,
    }


def _camel(snake: str) -> str:
    return "".join(word.capitalize() for word in snake.split("_") if word)


class SchemaNames:
    """Component names for field dicts and body parsers: the module-level name they are bound to.

    ``user_fields`` in common/fields.py becomes ``#/components/schemas/User``,
    ``top_customer_fields`` in resources/reports.py ``TopCustomer``,
    ``put_parser`` in resources/users.py ``UsersPut``.
    """

    def __init__(self, modules: Iterable[str]):
        self.by_id: dict[int, str] = {}
        self.schemas: dict[str, dict] = {}
        for module_name in modules:
            module = sys.modules.get(module_name)
            for variable, value in vars(module).items() if module else ():
                if id(value) not in self.by_id:
                    name = self._name(module_name, variable, value)
                    if name is not None:
                        self.by_id[id(value)] = name

    @staticmethod
    def _name(module_name: str, variable: str, value) -> str | None:
        if isinstance(value, dict) and variable.endswith("_fields"):
            return _camel(variable[: -len("_fields")])
        if isinstance(value, reqparse.RequestParser) and variable.endswith("_parser"):
            return _camel(module_name.rsplit(".", 1)[-1] + "_" + variable[: -len("_parser")])
        return None

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
