"""The API's own documentation: GET / (an index of links), GET /openapi.json and GET /docs (Swagger UI).

The document is generated from the parsers and field dicts of the resources
(common/openapi.py) and cached per app. The Swagger UI page and its assets
come from the ``swagger-ui-bundle`` package and are served by the app itself:
no CDN, so the page works offline.
"""

from __future__ import annotations

import html
import re

import flask_restful
from flask import Response, current_app, send_from_directory
from flask_restful import fields
from swagger_ui_bundle import swagger_ui_path

from .. import __version__
from ..common.contract import documented, marshal_with
from ..common.fields import links
from ..common.media import HTML, JSON
from ..common.openapi import openapi_document
from ..common.resource import Resource

ASSETS = str(swagger_ui_path)
_VERSION = re.search(r"(\d+)\.(\d+)\.(\d+)", swagger_ui_path.name)
#: Swagger UI renders OpenAPI 3.1 from version 5 on; older bundles are shown
#: the same document labelled 3.0.3 (it uses nothing that 3.0 readers misread).
UI_READS_31 = _VERSION is None or int(_VERSION[1]) >= 5

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="docs/favicon-16x16.png" sizes="16x16">
  <style>body {{ margin: 0; }}</style>
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script>
    window.onload = function () {{
      var options = {{
        dom_id: "#swagger-ui",
        deepLinking: true,
        validatorUrl: null,
        presets: [SwaggerUIBundle.presets.apis],
        layout: "BaseLayout"
      }};
      if ({reads_31}) {{
        options.url = "openapi.json";
        window.ui = SwaggerUIBundle(options);
        return;
      }}
      fetch("openapi.json").then(function (response) {{ return response.json(); }}).then(function (spec) {{
        spec.openapi = "3.0.3";
        options.spec = spec;
        window.ui = SwaggerUIBundle(options);
      }});
    }};
  </script>
</body>
</html>
"""


#: The document's top-level members; each is any JSON (fields.Raw), as OpenAPI 3.1 defines it.
document_fields = {
    "openapi": fields.String,
    "info": fields.Raw,
    "servers": fields.Raw,
    "tags": fields.Raw,
    "paths": fields.Raw,
    "components": fields.Raw,
}


#: Where to start: the documentation for people and for programs, and the health check.
index_fields = {
    "name": fields.String,
    "version": fields.String,
    "description": fields.String,
    "links": links(docs="/docs", openapi="/openapi.json", health="/health"),
}


class ApiIndex(Resource):
    """``/api/v1/``, and ``/`` (the one URL outside the prefix): a first request finds the documentation."""

    media_types = (JSON,)

    @documented(summary="Where to start: links to the documentation, the OpenAPI document and the health check")
    @marshal_with(index_fields)
    def get(self):
        return {"name": "myapi", "version": __version__,
                "description": "A store back end: users and sign-in, a product catalogue, orders, sales reports."}


class OpenApiDocument(Resource):
    media_types = (JSON,)

    @documented(summary="This OpenAPI 3.1 document, generated from the code")
    @marshal_with(document_fields)
    def get(self):
        return openapi_document(current_app)


class Docs(Resource):
    media_types = (HTML,)

    @documented(summary="The API documentation as a web page (Swagger UI)",
                produces={HTML: {"schema": {"type": "string"}}})
    def get(self):
        page = PAGE.format(title=html.escape("myapi — API documentation"),
                           reads_31="true" if UI_READS_31 else "false")
        return Response(page, mimetype=HTML)


class DocsAsset(flask_restful.Resource):
    """The Swagger UI files the page loads (docs/<filename>), from the installed package."""

    @documented(hidden=True)
    def get(self, filename: str):
        return send_from_directory(ASSETS, filename, max_age=24 * 3600)
