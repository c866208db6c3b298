"""The OpenAPI document: valid 3.1, complete, generated from the real parsers and field dicts."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import jsonschema
import pytest
from flask_restful import fields
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from myapi import app as app_module
from myapi.common import inputs
from myapi.common.contract import contract_of as declaration
from myapi.common.contract import requires
from myapi.common.fields import DateTime, Link, Money, Template, order_fields
from myapi.common.openapi import (
    ERROR_STATUSES,
    api_routes,
    argument_schema,
    build_document,
    fields_schema,
    openapi_document,
    undeclared_operations,
)
from myapi.common.openapi.components import ERROR_RESPONSES
from myapi.common.parsing import RequestParser, conditional_parser
from myapi.resources import orders, products, reports, tokens, users
from myapi.resources.docs import DocsAsset

API = "/api/v1"
ADD_RESOURCE = re.compile(r'api\.add_resource\((\w+),\s*"([^"]+)"\)')


@pytest.fixture
def document(app):
    return openapi_document(app)


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def deref(document, node):
    """``node`` with its ``$ref`` (if any) followed inside ``document``."""
    while isinstance(node, dict) and "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def parameter(document, operation, name, location):
    for candidate in operation.get("parameters", []):
        candidate = deref(document, candidate)
        if candidate["name"] == name and candidate["in"] == location:
            return candidate
    return None


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def route_table() -> list[tuple[str, str]]:
    """``(resource class name, rule)`` of every line of app.py's route table, read from its source."""
    return ADD_RESOURCE.findall(inspect.getsource(app_module.register_routes))


# -- the document -----------------------------------------------------------------


def test_document_is_valid_openapi_31(document):
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)


def test_served_at_openapi_json_and_cached_per_app(app, client, document):
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == document
    assert openapi_document(app) is document  # built once per app
    assert build_document(app) == document  # and the same as a fresh build


def test_docs_routes_are_in_the_route_table():
    table = dict((rule, name) for name, rule in route_table())
    assert table.get("/openapi.json") == "OpenApiDocument", "add api.add_resource(OpenApiDocument, ...) to app.py"
    assert table.get("/docs") == "Docs"


def test_every_route_of_app_py_appears_with_every_method(app, document):
    table = route_table()
    assert len(table) >= 18
    resources = {route.resource.__name__: route.resource for route in api_routes(app)}
    for name, rule in table:
        resource = resources[name]
        if declaration(resource, "get") is not None and declaration(resource, "get").hidden:
            continue  # the Swagger UI assets
        path = openapi_path(rule)
        assert path in document["paths"], f"{rule} is missing"
        methods = {m.lower() for m in resource.methods}
        assert set(document["paths"][path]) == methods, rule


def test_every_routed_method_is_declared(app):
    assert undeclared_operations(app) == []


def test_only_the_assets_are_hidden(app, document):
    hidden = [route.rule.rule for route in api_routes(app)
              if any(declaration(route.resource, m) and declaration(route.resource, m).hidden for m in route.methods)]
    assert hidden == [f"{API}/docs/<filename>"]
    assert declaration(DocsAsset, "get").hidden


def test_declarations_name_the_objects_the_methods_use():
    assert declaration(users.UserList, "post").parsers == (users.signup_parser,)
    assert declaration(users.User, "put").parsers == (users.put_parser, conditional_parser)
    assert declaration(users.User, "patch").parsers == (users.patch_parser, conditional_parser)
    assert declaration(users.CurrentUser, "patch") is declaration(users.User, "patch")  # inherited
    assert declaration(products.Product, "put").output.fields is products.product_fields
    assert declaration(products.ProductImport, "post").csv_upload is products.put_parser
    assert declaration(orders.OrderList, "get").parsers == (orders.list_parser,)
    assert declaration(reports.TopCustomers, "get").output.fields is reports.top_customer_fields
    assert declaration(tokens.TokenList, "post").parsers == (tokens.credentials_parser,)
    assert declaration(users.UserList, "get").auth == "admin"
    assert declaration(orders.Order, "patch").auth == "user"


# -- parameters and bodies -----------------------------------------------------------


def test_every_parser_argument_appears_in_its_place(app, document):
    checked = 0
    for route in api_routes(app):
        path = openapi_path(route.rule.rule.removeprefix(API))
        for method in route.methods:
            op = declaration(route.resource, method)
            if op.hidden:
                continue
            operation = document["paths"][path][method]
            for parser in op.parsers:
                for argument in parser.args:
                    checked += 1
                    where = f"{method.upper()} {path} {argument.name}"
                    if argument.location == "args":
                        found = parameter(document, operation, argument.name, "query")
                        assert found is not None, where
                        assert found.get("required", False) == bool(argument.required), where
                    elif argument.location == "headers":
                        assert parameter(document, operation, argument.name, "header") is not None, where
                    else:  # body and files
                        content = operation["requestBody"]["content"]
                        assert content, where
                        for media_type, media in content.items():
                            schema = deref(document, media["schema"])
                            assert argument.name in schema["properties"], f"{where} ({media_type})"
                            assert (argument.name in schema.get("required", [])) == bool(argument.required), where
                            assert schema["additionalProperties"] is False, where  # strict parsers
    assert checked > 60


def test_path_ids_come_from_the_url_converter(document):
    user_id = parameter(document, document["paths"]["/users/{user_id}"]["get"], "user_id", "path")
    assert user_id["required"] is True
    assert user_id["schema"]["type"] == "integer"
    assert user_id["schema"]["minimum"] == 1
    assert user_id["schema"]["maximum"] == 2**31 - 1


def test_input_types_map_to_their_schemas(document):
    schemas = document["components"]["schemas"]
    create = schemas["ProductsCreate"]["properties"]
    assert create["price"]["type"] == "string" and create["price"]["pattern"]
    assert re.search(create["price"]["pattern"], "19.99") and not re.search(create["price"]["pattern"], "1e3")
    assert create["stock"] == {"type": "integer", "minimum": 0, "maximum": 1_000_000_000, "default": 0}
    assert create["is_available"] == {"type": "boolean", "default": True}
    signup = schemas["UsersSignup"]
    assert signup["properties"]["email"]["format"] == "email"
    assert signup["properties"]["password"]["minLength"] == inputs.PASSWORD_MIN_LENGTH
    assert signup["properties"]["user_priority"]["default"] == 1
    assert set(signup["required"]) == {"username", "email", "password"}
    assert schemas["UsersPatch"].get("required") is None  # PATCH: nothing required

    product_list = document["paths"]["/products"]["get"]
    per_page = parameter(document, product_list, "per_page", "query")["schema"]
    assert per_page == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
    sort = parameter(document, product_list, "sort", "query")["schema"]
    assert sort["type"] == "string"
    assert re.fullmatch(sort["pattern"].strip("^$"), "-price,name")
    assert not re.fullmatch(sort["pattern"].strip("^$"), "password")
    status = parameter(document, document["paths"]["/orders"]["get"], "status", "query")["schema"]
    assert status["enum"] == ["pending", "paid", "shipped", "completed", "cancelled"]
    assert schemas["TokensCredentials"]["properties"]["username"] == {"type": "string"}  # type=str


def test_choices_default_and_append_arguments():
    parser = RequestParser(location="args")
    parser.add_argument("tag", type=str, choices=("a", "b"), action="append")
    parser.add_argument("limit", type=inputs.int_range(1, 5), default=3)
    tag, limit = parser.args
    assert argument_schema(tag) == {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}
    assert argument_schema(limit) == {"type": "integer", "minimum": 1, "maximum": 5, "default": 3}


def test_optional_query_parameters_carry_no_example_to_prefill(document):
    """Swagger UI's "Try it out" fills every input with its example, and a filled-in filter filters
    (issue 18: GET /products executed as-is sent min_price=max_price=19.99). Optional query parameters
    give their example in words; only defaults, which change nothing, may be pre-filled."""
    checked = 0
    for path, method, operation in operations(document):
        for candidate in operation.get("parameters", []):
            found = deref(document, candidate)
            if found["in"] != "query" or found.get("required"):
                continue
            schema = found["schema"]
            keys = set(found) | set(schema) | set(schema.get("items", {}))
            assert not keys & {"example", "examples"}, f"{method.upper()} {path} ?{found['name']}"
            checked += 1
    assert checked > 50
    product_list = document["paths"]["/products"]["get"]
    for name, example in (("min_price", "19.99"), ("updated_since", "2026-01-02T03:04:05Z"), ("sort", "-date_created")):
        assert f"For example `{example}`." in parameter(document, product_list, name, "query")["description"]
    assert parameter(document, product_list, "per_page", "query")["schema"]["default"] == 20
    # A body still shows its example (that is the point of the request-body editor).
    assert document["components"]["schemas"]["ProductsCreate"]["properties"]["price"]["example"] == "19.99"


def test_the_api_reference_in_docs_lists_every_operation(document):
    """docs/api.md is the README's API reference (there is no DESIGN.md in the repository): its table
    has a row for every path of the document, with every method."""
    reference = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    rows = {}
    for line in reference.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 2:
            rows[cells[0].strip("`")] = {method.strip().lower() for method in cells[1].split(",")}
    assert {path: set(item) for path, item in document["paths"].items()} == rows


def test_csv_upload_and_json_only_bodies(document):
    upload = document["paths"]["/products/import"]["post"]["requestBody"]
    assert set(upload["content"]) == {"text/csv", "multipart/form-data"}
    for column in ("sku", "name", "category", "price", "stock", "description", "is_available"):
        assert column in upload["description"]
    assert set(document["paths"]["/orders"]["post"]["requestBody"]["content"]) == {"application/json"}
    signup = document["paths"]["/users"]["post"]["requestBody"]
    assert set(signup["content"]) == {"application/json", "application/x-www-form-urlencoded", "multipart/form-data"}
    assert document["paths"]["/tokens"]["post"]["requestBody"]["required"] is False  # Basic instead


# -- responses ------------------------------------------------------------------------


def test_field_dicts_map_to_response_schemas():
    schema = fields_schema({
        "n": fields.Integer,
        "ok": fields.Boolean(),
        "s": fields.String,
        "price": Money,
        "at": DateTime,
        "greeting": Template("Hi {s}"),
        "self": Link("/x/{n}"),
        "url": fields.Url("x"),
        "fmt": fields.FormattedString("{s}"),
        "tags": fields.List(fields.String),
        "child": fields.Nested({"m": fields.Integer}),
    })
    props = schema["properties"]
    assert schema["additionalProperties"] is False and "required" not in schema  # fields= may select some
    assert props["n"] == {"type": "integer"} and props["ok"] == {"type": "boolean"}
    assert props["price"]["type"] == "string" and props["price"]["pattern"] == Money.schema["pattern"]
    assert props["at"] == {"type": "string", "format": "date-time"}
    assert props["greeting"] == {"type": "string"} and props["fmt"] == {"type": "string"}
    assert props["self"]["format"] == "uri-reference" and props["url"]["format"] == "uri-reference"
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["child"]["properties"] == {"m": {"type": "integer"}}


def test_entity_schemas_follow_the_field_dicts(document):
    schemas = document["components"]["schemas"]
    assert set(schemas["Order"]["properties"]) == set(order_fields)
    assert schemas["Order"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/OrderItem"}
    assert schemas["Order"]["properties"]["links"]["properties"]["user"]["format"] == "uri-reference"
    assert "password" not in schemas["User"]["properties"]


def test_lists_reports_and_exports(document):
    users_list = document["paths"]["/users"]["get"]["responses"]["200"]
    body = users_list["content"]["application/json"]["schema"]
    assert body["required"] == ["data", "pagination"]
    assert body["properties"]["data"]["items"] == {"$ref": "#/components/schemas/User"}
    assert body["properties"]["pagination"] == {"$ref": "#/components/schemas/Pagination"}
    assert {"X-Total-Count", "Link"} <= set(users_list["headers"])
    assert "text/csv" in users_list["content"]

    report = document["paths"]["/reports/top-customers"]["get"]["responses"]["200"]["content"]
    assert report["application/json"]["schema"]["required"] == ["data"]

    export = document["paths"]["/products/export"]["get"]["responses"]["200"]
    assert set(export["content"]) == {"application/json", "text/csv", "application/x-ndjson"}
    assert export["content"]["application/json"]["schema"]["type"] == "array"
    assert "Content-Disposition" in export["headers"]
    fmt = parameter(document, document["paths"]["/products/export"]["get"], "format", "query")
    assert fmt["schema"]["enum"] == ["json", "csv", "ndjson"]
    assert "text/csv" not in document["paths"]["/health"]["get"]["responses"]["200"]["content"]


def test_components(document):
    components = document["components"]
    problem = components["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "errors", "request_id"} <= set(problem["properties"])
    for status in ERROR_STATUSES:
        assert ERROR_RESPONSES[status][0] in components["responses"]
    for response in components["responses"].values():
        assert response["content"] == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert components["securitySchemes"]["bearerAuth"] == {**components["securitySchemes"]["bearerAuth"],
                                                           "type": "http", "scheme": "bearer"}
    assert components["securitySchemes"]["basicAuth"]["scheme"] == "basic"
    assert {"ETag", "Link", "X-Total-Count", "Location", "Retry-After"} <= set(components["headers"])
    assert {p["name"] for p in components["parameters"].values()} == {"If-None-Match", "Idempotency-Key", "Prefer"}


def test_errors_and_headers_each_operation_can_give(document):
    paths = document["paths"]

    def statuses(path, method):
        return set(paths[path][method]["responses"])

    for _path, _method, operation in operations(document):
        assert {"406", "503"} <= set(operation["responses"])
    assert {"401", "403"} <= statuses("/users", "get")  # admin only
    assert "401" in statuses("/products", "get")  # anyone, but credentials that are sent must be valid
    assert {"304", "404"} <= statuses("/products/{product_id}", "get")
    put = paths["/products/{product_id}"]["put"]
    assert {"400", "412", "409", "413", "415"} <= set(put["responses"])
    assert parameter(document, put, "If-Match", "header") is not None
    assert parameter(document, paths["/products/{product_id}"]["get"], "If-None-Match", "header") is not None
    post = paths["/orders"]["post"]
    assert {"201", "409", "422"} <= set(post["responses"])
    assert {"Location", "ETag"} <= set(post["responses"]["201"]["headers"])
    assert parameter(document, post, "Idempotency-Key", "header") is not None
    assert parameter(document, paths["/tokens"]["post"], "Idempotency-Key", "header") is None  # opted out
    assert "429" not in statuses("/health", "get")  # exempt from rate limits
    assert "429" in statuses("/tokens", "post")
    assert paths["/users/{user_id}"]["delete"]["responses"]["204"].get("content") is None
    assert paths["/orders"]["get"]["security"] == [{"bearerAuth": []}, {"apiKey": ["orders:read"]}]
    assert paths["/orders"]["get"]["x-required-scope"] == "orders:read"
    assert paths["/tokens"]["post"]["security"] == [{"basicAuth": []}, {}]
    assert paths["/products"]["get"]["security"] == [{}, {"bearerAuth": []}, {"apiKey": ["products:read"]}]
    assert paths["/api-keys"]["post"]["security"] == [{"bearerAuth": []}]  # sign-in tokens only
    assert "security" not in paths["/health"]["get"]


def test_requires_refuses_unknown_words():
    with pytest.raises(ValueError):
        requires("root")


# -- real answers match the document ------------------------------------------------------


def assert_matches(document, body, path, method, status="200", media_type="application/json"):
    schema = document["paths"][path][method]["responses"][status]
    schema = deref(document, schema)["content"][media_type]["schema"]
    jsonschema.validate(body, {**schema, "components": document["components"]},
                        cls=jsonschema.Draft202012Validator)


def test_real_answers_match_the_document(client, document, admin, customer):
    product = client.post(f"{API}/products", headers=admin.headers,
                          json={"sku": "A-1", "name": "Lamp", "category": "home", "price": "19.99", "stock": 5})
    assert product.status_code == 201
    assert_matches(document, product.get_json(), "/products", "post", "201")
    order = client.post(f"{API}/orders", headers=customer.headers,
                        json={"items": [{"product_id": product.get_json()["id"], "quantity": 2}],
                              "shipping_address": "1 High Street"})
    assert order.status_code == 201
    assert_matches(document, order.get_json(), "/orders/{order_id}", "get")
    assert_matches(document, client.get(f"{API}/orders", headers=customer.headers).get_json(), "/orders", "get")
    assert_matches(document, client.get(f"{API}/users/me", headers=admin.headers).get_json(), "/users/me", "get")
    assert_matches(document, client.get(f"{API}/users", headers=admin.headers).get_json(), "/users", "get")
    assert_matches(document, client.get(f"{API}/products/export").get_json(), "/products/export", "get")
    assert_matches(document, client.get(f"{API}/health").get_json(), "/health", "get")
    for report in ("top-customers", "revenue-by-category", "monthly-revenue"):
        body = client.get(f"{API}/reports/{report}", headers=admin.headers).get_json()
        assert_matches(document, body, f"/reports/{report}", "get")
    problem = client.get(f"{API}/products/999")
    assert problem.mimetype == "application/problem+json"
    assert_matches(document, problem.get_json(), "/products/{product_id}", "get", "404", "application/problem+json")
    token = client.post(f"{API}/tokens", auth=(admin.username, admin.password))
    assert_matches(document, token.get_json(), "/tokens", "post", "201")


# -- the docs page ------------------------------------------------------------------------------


def test_docs_page_is_swagger_ui_served_by_the_app(client):
    page = client.get(f"{API}/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "SwaggerUIBundle" in html and '"openapi.json"' in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html  # offline: no CDN
    assets = re.findall(r'(?:src|href)="(docs/[^"]+)"', html)
    assert "docs/swagger-ui-bundle.js" in assets and "docs/swagger-ui.css" in assets
    for asset in assets:
        response = client.get(f"{API}/{asset}")
        assert response.status_code == 200, asset
        response.close()
    assert client.get(f"{API}/docs/swagger-ui-bundle.js").mimetype in ("text/javascript", "application/javascript")


def test_docs_assets_stay_inside_the_bundle(client):
    for name in ("nothing-here.js", "..%2F__init__.py", "%2e%2e"):
        response = client.get(f"{API}/docs/{name}")
        assert response.status_code == 404, name
        assert response.mimetype == "application/problem+json"


def test_docs_page_negotiates(client):
    assert client.get(f"{API}/docs", headers={"Accept": "application/json"}).status_code == 406
    assert client.get(f"{API}/docs", headers={"Accept": "text/html,*/*;q=0.8"}).status_code == 200


# -- data valid by the document is valid for the API -------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_csv_file_the_document_admits_is_imported(app, admin, data):
    """The import's documented file pattern is one form the import always accepts (dry run: nothing kept)."""
    client = app.test_client()
    document = openapi_document(app)
    content = document["paths"]["/products/import"]["post"]["requestBody"]["content"]
    pattern = content["text/csv"]["schema"]["pattern"]
    assert content["multipart/form-data"]["schema"]["properties"]["file"]["pattern"] == pattern
    body = data.draw(st.from_regex(re.compile(pattern), fullmatch=True))
    response = client.post(f"{API}/products/import?dry_run=true", data=body.encode(),
                           headers={**admin.headers, "Content-Type": "text/csv"})
    assert response.status_code == 200, (body, response.get_json())
    assert response.get_json()["dry_run"] is True


def test_every_pattern_is_one_schemathesis_can_enforce(document):
    """A pattern the fuzzer's validator cannot compile is dropped, and the gate would test less than documented."""
    from schemathesis.core.jsonschema.patterns import enforced_pattern

    def patterns(node):
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                yield node["pattern"]
            for value in node.values():
                yield from patterns(value)
        elif isinstance(node, list):
            for value in node:
                yield from patterns(value)

    found = set(patterns(document))
    assert len(found) > 10
    assert [pattern for pattern in found if enforced_pattern(pattern) is None] == []
