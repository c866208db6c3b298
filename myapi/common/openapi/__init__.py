"""OpenAPI 3.1 generated from the code that does the work.

Every Resource method declares its contract once (common/contract.py:
``marshal_with``, ``parses``, ``requires``, ``documented``); the pipeline
runs those declarations and this package reads the very same objects:

* routes.py — the app's URL rules served by Resources (app.py's route table)
  and their path parameters;
* schemas.py — reqparse Arguments → parameters and body schemas (each input
  type's own ``.schema``), field dicts → answer schemas;
* components.py — the shared problem, pagination, header and parameter
  definitions;
* builder.py — one operation per routed method, and the document.

Change a parser, a field dict or a decorator and the document follows. It is
built once per app and cached (:func:`openapi_document`).
"""

from __future__ import annotations

from flask import Flask

from .builder import Builder
from .components import ERROR_STATUSES
from .routes import api_routes, path_parameters, undeclared_operations
from .schemas import argument_schema, field_schema, fields_schema

EXTENSION = "myapi.openapi"


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


__all__ = ["ERROR_STATUSES", "api_routes", "argument_schema", "build_document", "field_schema", "fields_schema",
           "openapi_document", "path_parameters", "undeclared_operations"]
