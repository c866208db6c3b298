"""The declare-once pipeline (DESIGN §8): field selection, Prefer: return=minimal, one contract per method.

Every test goes through HTTP and, for writes, checks the database after the
request.
"""

from __future__ import annotations

import ast
import csv
import inspect
import io
import json
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from myapi.common.contract import contract_of
from myapi.common.openapi import api_routes
from myapi.db import get_db
from myapi.models import Order, Product

API = "/api/v1"
RESOURCES = Path(__file__).resolve().parent.parent / "myapi" / "resources"


@pytest.fixture
def lamp(app) -> int:
    with get_db(app).session() as session, session.begin():
        product = Product(sku="LAMP-1", name="Lamp", category="home", price=Decimal("19.99"), stock=5,
                          description="=HYPERLINK(1)")
        session.add(product)
        session.flush()
        return product.id


@pytest.fixture
def catalogue(app, lamp) -> list[int]:
    ids = [lamp]
    with get_db(app).session() as session, session.begin():
        for n in range(2, 6):
            product = Product(sku=f"MUG-{n}", name=f"Mug {n}", category="mugs", price=Decimal(n), stock=n)
            session.add(product)
            session.flush()
            ids.append(product.id)
    return ids


def product_count(db_session) -> int:
    return db_session.scalar(select(func.count()).select_from(Product))


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


# -- fields= -----------------------------------------------------------------------------


def test_item_fields_in_the_field_dicts_order(client, lamp):
    response = client.get(f"{API}/products/{lamp}?fields=stock,sku,id")
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["id", "sku", "stock"]  # the field dict's order, not the query's
    assert body == {"id": lamp, "sku": "LAMP-1", "stock": 5}


def test_nested_group_and_dotted_member(client, lamp):
    group = client.get(f"{API}/products/{lamp}?fields=id,links").get_json()
    assert group == {"id": lamp, "links": {"self": f"{API}/products/{lamp}"}}
    member = client.get(f"{API}/products/{lamp}?fields=links.self").get_json()
    assert member == {"links": {"self": f"{API}/products/{lamp}"}}


def test_list_fields_keep_the_envelope_and_headers(client, catalogue):
    response = client.get(f"{API}/products?fields=sku,price&per_page=2&sort=id")
    assert response.status_code == 200
    body = response.get_json()
    assert body["data"] == [{"sku": "LAMP-1", "price": "19.99"}, {"sku": "MUG-2", "price": "2.00"}]
    assert body["pagination"] == {"page": 1, "per_page": 2, "total_items": 5, "total_pages": 3,
                                  "next_cursor": body["pagination"]["next_cursor"]}
    assert response.headers["X-Total-Count"] == "5"
    assert 'rel="next"' in response.headers["Link"]


def test_csv_columns_follow_the_selection(client, catalogue, lamp):
    listing = client.get(f"{API}/products?fields=id,sku,links.self&sort=id&format=csv")
    rows = csv_rows(listing)
    assert rows[0] == ["id", "sku", "links.self"]
    assert rows[1] == [str(lamp), "LAMP-1", f"{API}/products/{lamp}"]
    assert len(rows) == 6
    item = client.get(f"{API}/products/{lamp}?fields=description,name", headers={"Accept": "text/csv"})
    assert csv_rows(item) == [["name", "description"], ["Lamp", "'=HYPERLINK(1)"]]  # still neutralised


def test_export_fields_in_every_representation(client, catalogue, lamp):
    ndjson = client.get(f"{API}/products/export?fields=sku,stock&format=ndjson&sort=id")
    lines = [json.loads(line) for line in ndjson.get_data(as_text=True).splitlines()]
    assert lines[0] == {"sku": "LAMP-1", "stock": 5} and len(lines) == 5
    assert all(list(line) == ["sku", "stock"] for line in lines)
    # CSV is formatted by the database: the same selection, the same cells.
    exported = csv_rows(client.get(f"{API}/products/export?fields=sku,description,links.self&format=csv&sort=id"))
    assert exported[0] == ["sku", "description", "links.self"]
    assert exported[1] == ["LAMP-1", "'=HYPERLINK(1)", f"{API}/products/{lamp}"]
    array = client.get(f"{API}/products/export?fields=id&sort=-id").get_json()
    assert array == [{"id": product_id} for product_id in sorted(catalogue, reverse=True)]


def test_order_fields_nested_list_members(client, customer, lamp):
    placed = client.post(f"{API}/orders", headers=customer.headers,
                         json={"items": [{"product_id": lamp, "quantity": 2}], "shipping_address": "1 High St"})
    order_id = placed.get_json()["id"]
    body = client.get(f"{API}/orders/{order_id}?fields=id,items.quantity,items.subtotal",
                      headers=customer.headers).get_json()
    assert body == {"id": order_id, "items": [{"quantity": 2, "subtotal": "39.98"}]}
    rows = csv_rows(client.get(f"{API}/orders/export?fields=id,items.quantity&format=csv", headers=customer.headers))
    assert rows == [["id", "items.quantity"], [str(order_id), "2"]]


def test_report_fields(client, admin):
    response = client.get(f"{API}/reports/monthly-revenue?year=2026&fields=month,revenue", headers=admin.headers)
    assert response.status_code == 200
    rows = response.get_json()["data"]
    assert len(rows) == 12 and all(list(row) == ["month", "revenue"] for row in rows)


def test_write_answers_honour_fields(client, admin, db_session):
    response = client.post(f"{API}/products?fields=id,sku", headers=admin.headers,
                           json={"sku": "NEW-1", "name": "New", "category": "home", "price": "1.00"})
    assert response.status_code == 201
    assert response.get_json() == {"id": response.get_json()["id"], "sku": "NEW-1"}
    assert product_count(db_session) == 1


@pytest.mark.parametrize("spec", ["password", "id,password_hash", "links.nope", "", "id,,sku", "items.quantity"])
def test_unknown_field_names_are_400_naming_the_valid_ones(client, lamp, spec):
    response = client.get(f"{API}/products/{lamp}", query_string={"fields": spec})
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    message = response.get_json()["errors"]["fields"]
    assert "choose from" in message and "id, sku, name" in message and "links.self" in message


def test_a_bad_selection_writes_nothing(client, admin, db_session):
    response = client.post(f"{API}/products?fields=secret", headers=admin.headers,
                           json={"sku": "NEW-1", "name": "New", "category": "home", "price": "1.00"})
    assert response.status_code == 400 and "fields" in response.get_json()["errors"]
    assert product_count(db_session) == 0


def test_fields_given_twice_is_400(client, lamp):
    response = client.get(f"{API}/products/{lamp}?fields=id&fields=sku")
    assert response.status_code == 400
    assert response.get_json()["errors"] == {"fields": "Give this parameter once."}


def test_etags_differ_per_selection_and_304_per_selection(client, lamp, admin):
    whole = client.get(f"{API}/products/{lamp}").headers["ETag"]
    some = client.get(f"{API}/products/{lamp}?fields=id,sku").headers["ETag"]
    same = client.get(f"{API}/products/{lamp}?fields=sku,id").headers["ETag"]  # same selection, other order
    other = client.get(f"{API}/products/{lamp}?fields=id,stock").headers["ETag"]
    csv_some = client.get(f"{API}/products/{lamp}?fields=id,sku&format=csv").headers["ETag"]
    assert len({whole, some, other, csv_some}) == 4 and some == same
    assert client.get(f"{API}/products/{lamp}?fields=id,sku", headers={"If-None-Match": some}).status_code == 304
    assert client.get(f"{API}/products/{lamp}", headers={"If-None-Match": some}).status_code == 200
    # Every tag of one version names the same stored state: any of them is a valid If-Match.
    patched = client.patch(f"{API}/products/{lamp}", json={"stock": 6},
                           headers={**admin.headers, "If-Match": some})
    assert patched.status_code == 200 and patched.get_json()["stock"] == 6
    stale = client.patch(f"{API}/products/{lamp}", json={"stock": 7}, headers={**admin.headers, "If-Match": some})
    assert stale.status_code == 412


# -- Prefer: return=minimal ----------------------------------------------------------------

MINIMAL = {"Prefer": "return=minimal"}


def test_minimal_post_is_201_without_a_body(client, admin, db_session):
    response = client.post(f"{API}/products", headers={**admin.headers, **MINIMAL},
                           json={"sku": "NEW-1", "name": "New", "category": "home", "price": "1.00"})
    assert response.status_code == 201
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers
    assert response.headers["Preference-Applied"] == "return=minimal"
    product = db_session.scalars(select(Product)).one()
    assert response.headers["Location"] == f"{API}/products/{product.id}"
    assert response.headers["ETag"] == f'"v{product.version}"'


@pytest.mark.parametrize("method", ["put", "patch"])
def test_minimal_put_and_patch_are_204_with_the_new_etag(client, admin, lamp, db_session, method):
    body = {"sku": "LAMP-1", "name": "Lamp", "category": "home", "price": "25.00", "stock": 5}
    if method == "patch":
        body = {"price": "25.00"}
    response = getattr(client, method)(f"{API}/products/{lamp}", json=body, headers={**admin.headers, **MINIMAL})
    assert response.status_code == 204
    assert response.get_data() == b""
    assert response.headers["Preference-Applied"] == "return=minimal"
    product = db_session.get(Product, lamp)
    assert product.price == Decimal("25.00")
    assert response.headers["ETag"] == f'"v{product.version}"'
    again = client.get(f"{API}/products/{lamp}", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_minimal_order_status_change(client, customer, lamp, db_session):
    order_id = client.post(f"{API}/orders", headers=customer.headers,
                           json={"items": [{"product_id": lamp, "quantity": 1}],
                                 "shipping_address": "1 High St"}).get_json()["id"]
    response = client.patch(f"{API}/orders/{order_id}", json={"status": "cancelled"},
                            headers={**customer.headers, "Prefer": "return=minimal; foo=bar, respond-async"})
    assert response.status_code == 204 and response.get_data() == b""
    assert db_session.get(Order, order_id).status == "cancelled"
    assert db_session.get(Product, lamp).stock == 5


def test_minimal_replay_has_the_same_shape(client, admin, db_session):
    headers = {**admin.headers, **MINIMAL, "Idempotency-Key": "create-new-1"}
    body = {"sku": "NEW-1", "name": "New", "category": "home", "price": "1.00"}
    first = client.post(f"{API}/products", headers=headers, json=body)
    replay = client.post(f"{API}/products", headers=headers, json=body)
    assert first.status_code == replay.status_code == 201
    assert replay.get_data() == b"" and "Content-Type" not in replay.headers
    assert replay.headers["Idempotent-Replayed"] == "true"
    for name in ("Location", "ETag", "Preference-Applied"):
        assert replay.headers[name] == first.headers[name]
    assert product_count(db_session) == 1


def test_representation_is_the_default_and_reads_ignore_prefer(client, admin, lamp):
    full = client.patch(f"{API}/products/{lamp}", json={"stock": 9},
                        headers={**admin.headers, "Prefer": "return=representation"})
    assert full.status_code == 200 and full.get_json()["stock"] == 9
    assert "Preference-Applied" not in full.headers
    read = client.get(f"{API}/products/{lamp}", headers=MINIMAL)
    assert read.status_code == 200 and read.get_json()["id"] == lamp


def test_sign_in_ignores_return_minimal(client, customer):
    response = client.post(f"{API}/tokens", auth=(customer.username, customer.password), headers=MINIMAL)
    assert response.status_code == 201
    assert response.get_json()["token"]  # the secret is the point: never dropped
    assert "Preference-Applied" not in response.headers


def test_minimal_errors_still_have_a_body(client, admin, lamp, db_session):
    response = client.patch(f"{API}/products/{lamp}", json={"price": "-1"}, headers={**admin.headers, **MINIMAL})
    assert response.status_code == 400 and response.get_json()["errors"]["price"]
    assert db_session.get(Product, lamp).price == Decimal("19.99")


# -- one contract per method ------------------------------------------------------------------


def test_every_method_with_a_body_declares_marshal_with(app):
    for route in api_routes(app):
        for method in route.methods:
            contract = contract_of(route.resource, method)
            assert contract is not None, f"{method.upper()} {route.rule}"
            if contract.hidden or contract.produces is not None:
                continue  # the docs page and its assets: HTML and files, not field dicts
            if contract.status != 204:
                assert contract.output is not None, f"{method.upper()} {route.rule} answers a body"


def _called_names(function) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            target = node.func
            names.add(target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", ""))
    return names


def test_no_resource_method_marshals_or_parses_itself(app):
    forbidden = {"marshal", "parse_args", "page_response", "item", "not_modified", "check_if_match"}
    for route in api_routes(app):
        for method in route.methods:
            for klass in route.resource.__mro__:
                function = klass.__dict__.get(method)
                if function is not None:
                    called = _called_names(function) & forbidden
                    assert not called, f"{klass.__name__}.{method} calls {called}"


def test_resources_import_no_commit_or_rollback():
    for path in RESOURCES.glob("*.py"):
        text = path.read_text()
        assert ".commit(" not in text and ".rollback(" not in text, path.name
