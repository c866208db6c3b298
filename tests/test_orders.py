"""Orders through HTTP: placement, reading, transitions, export."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from myapi.db import get_db
from myapi.models import Order, OrderItem, Product

API = "/api/v1"


@pytest.fixture
def products(app):
    """Four products: ids 1-4."""
    rows = [("P-1", "Pencil", "stationery", "0.10", 100, True),
            ("P-2", "Notebook", "stationery", "3.35", 5, True),
            ("P-3", "Lamp", "home", "24.99", 2, True),
            ("P-4", "Retired", "home", "9.00", 50, False)]
    with get_db(app).session() as session, session.begin():
        for sku, name, category, price, stock, available in rows:
            session.add(Product(sku=sku, name=name, category=category, price=Decimal(price), stock=stock,
                                is_available=available))
    return rows


def order(client, account, items, address="1 High Street", **headers):
    return client.post(f"{API}/orders", json={"items": items, "shipping_address": address},
                       headers={**account.headers, **headers})


def stock(db_session, product_id: int) -> int:
    db_session.rollback()  # end the read snapshot, expire everything
    return db_session.get(Product, product_id).stock


def order_count(db_session) -> int:
    return db_session.scalar(select(func.count()).select_from(Order))


# -- placement ------------------------------------------------------------------


def test_place_an_order(client, customer, products, db_session):
    response = order(client, customer, [{"product_id": 1, "quantity": 3}, {"product_id": 2, "quantity": 2}])
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"{API}/orders/{body['id']}"
    assert response.headers["ETag"] == '"v1"'
    assert body["status"] == "pending" and body["user_id"] == customer.id
    assert body["total_amount"] == "7.00"  # 0.10 × 3 + 3.35 × 2, exactly
    assert body["items"] == [
        {"product_id": 1, "product_name": "Pencil", "quantity": 3, "unit_price": "0.10", "subtotal": "0.30"},
        {"product_id": 2, "product_name": "Notebook", "quantity": 2, "unit_price": "3.35", "subtotal": "6.70"},
    ]
    assert body["links"] == {"self": f"{API}/orders/{body['id']}", "user": f"{API}/users/{customer.id}"}
    assert stock(db_session, 1) == 97 and stock(db_session, 2) == 3
    saved = db_session.get(Order, body["id"])
    assert saved.total_amount == Decimal("7.00") and len(saved.items) == 2


def test_the_same_product_twice_is_merged(client, customer, products, db_session):
    response = order(client, customer, [{"product_id": 1, "quantity": 2}, {"product_id": 1, "quantity": 5}])
    assert response.status_code == 201
    assert [(i["product_id"], i["quantity"]) for i in response.get_json()["items"]] == [(1, 7)]
    assert stock(db_session, 1) == 93


def test_prices_are_snapshotted(client, customer, admin, products, db_session):
    placed = order(client, customer, [{"product_id": 2, "quantity": 1}]).get_json()
    client.patch(f"{API}/products/2", json={"price": "99.00", "name": "Renamed"}, headers=admin.headers)
    again = client.get(f"{API}/orders/{placed['id']}", headers=customer.headers).get_json()
    assert again["items"][0]["unit_price"] == "3.35" and again["items"][0]["product_name"] == "Notebook"
    assert again["total_amount"] == "3.35"


def test_insufficient_stock_names_every_short_line_and_writes_nothing(client, customer, products, db_session):
    response = order(client, customer, [{"product_id": 1, "quantity": 1}, {"product_id": 2, "quantity": 6},
                                        {"product_id": 3, "quantity": 3}])
    assert response.status_code == 409
    problem = response.get_json()
    assert problem["type"] == "urn:myapi:problem:insufficient-stock"
    assert [(e["product_id"], e["requested"], e["available"]) for e in problem["errors"]] == [(2, 6, 5), (3, 3, 2)]
    assert order_count(db_session) == 0
    assert (stock(db_session, 1), stock(db_session, 2), stock(db_session, 3)) == (100, 5, 2)


def test_buying_the_last_units_then_one_more(client, customer, products, db_session):
    assert order(client, customer, [{"product_id": 3, "quantity": 2}]).status_code == 201
    assert order(client, customer, [{"product_id": 3, "quantity": 1}]).status_code == 409
    assert stock(db_session, 3) == 0


def test_short_lines_say_how_many_are_left_or_out_of_stock(client, customer, products):
    """Issue 18: "Only 0 in stock." reads "Out of stock."."""
    assert order(client, customer, [{"product_id": 3, "quantity": 2}]).status_code == 201
    response = order(client, customer, [{"product_id": 3, "quantity": 1}, {"product_id": 2, "quantity": 6}])
    assert [(e["product_id"], e["available"], e["message"]) for e in response.get_json()["errors"]] == [
        (3, 0, "Out of stock."), (2, 5, "Only 5 in stock.")]


def test_unavailable_product_is_409(client, customer, products, db_session):
    response = order(client, customer, [{"product_id": 4, "quantity": 1}])
    assert response.status_code == 409
    assert response.get_json()["errors"][0]["product_id"] == 4
    assert order_count(db_session) == 0 and stock(db_session, 4) == 50


def test_unknown_product_is_400(client, customer, products, db_session):
    response = order(client, customer, [{"product_id": 1, "quantity": 1}, {"product_id": 999, "quantity": 1}])
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"product_id": 999, "field": "product_id",
                                             "message": "No such product."}]
    assert order_count(db_session) == 0 and stock(db_session, 1) == 100


@pytest.mark.parametrize("body,fields", [
    ({}, {"items", "shipping_address"}),
    ({"items": [], "shipping_address": "x"}, {"items"}),
    ({"items": "lots", "shipping_address": "x"}, {"items"}),
    ({"items": [{"product_id": 1}], "shipping_address": "x"}, {"items"}),
    ({"items": [{"product_id": 1, "quantity": 0}], "shipping_address": "x"}, {"items"}),
    ({"items": [{"product_id": 1, "quantity": 10001}], "shipping_address": "x"}, {"items"}),
    ({"items": [{"product_id": 1, "quantity": 1.5}], "shipping_address": "x"}, {"items"}),
    ({"items": [{"product_id": "1; DROP TABLE orders", "quantity": 1}], "shipping_address": "x"}, {"items"}),
    ({"items": [{"product_id": 1, "quantity": 1, "unit_price": "0.01"}], "shipping_address": "x"}, {"items"}),
    ({"items": [{"product_id": 1, "quantity": 1}] * 51, "shipping_address": "x"}, {"items"}),
    ({"items": [{"product_id": 1, "quantity": 1}], "shipping_address": ""}, {"shipping_address"}),
    ({"items": [{"product_id": 1, "quantity": 1}], "shipping_address": "x" * 501}, {"shipping_address"}),
    ({"items": [{"product_id": 1, "quantity": 1}], "shipping_address": "x", "total_amount": "0.01"},
     {"total_amount"}),
    ({"items": [{"product_id": 1, "quantity": 1}], "shipping_address": "x", "status": "paid"}, {"status"}),
])
def test_invalid_bodies_are_400_and_write_nothing(client, customer, products, db_session, body, fields):
    response = client.post(f"{API}/orders", json=body, headers=customer.headers)
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) == fields
    assert order_count(db_session) == 0 and stock(db_session, 1) == 100


def test_form_bodies_are_415(client, customer, products, db_session):
    response = client.post(f"{API}/orders", data={"shipping_address": "x"}, headers=customer.headers)
    assert response.status_code == 415
    assert order_count(db_session) == 0


def test_ordering_needs_a_token(client, products):
    response = client.post(f"{API}/orders", json={"items": [{"product_id": 1, "quantity": 1}],
                                                  "shipping_address": "x"})
    assert response.status_code == 401


# -- reading --------------------------------------------------------------------


@pytest.fixture
def two_customers_orders(client, make_account, products):
    alice, bob = make_account(), make_account()
    for account, quantities in ((alice, (1, 2, 3)), (bob, (4,))):
        for quantity in quantities:
            assert order(client, account, [{"product_id": 1, "quantity": quantity}]).status_code == 201
    return alice, bob


def test_customers_see_only_their_own_orders(client, two_customers_orders):
    alice, bob = two_customers_orders
    body = client.get(f"{API}/orders", headers=alice.headers).get_json()
    assert body["pagination"]["total_items"] == 3
    assert {o["user_id"] for o in body["data"]} == {alice.id}
    bobs = client.get(f"{API}/orders", headers=bob.headers).get_json()["data"]
    assert client.get(f"{API}/orders/{bobs[0]['id']}", headers=alice.headers).status_code == 404
    assert client.patch(f"{API}/orders/{bobs[0]['id']}", json={"status": "cancelled"},
                        headers=alice.headers).status_code == 404
    response = client.get(f"{API}/orders?user_id={bob.id}", headers=alice.headers)
    assert response.status_code == 403


def test_admin_sees_all_and_filters(client, admin, two_customers_orders):
    alice, bob = two_customers_orders
    assert client.get(f"{API}/orders", headers=admin.headers).get_json()["pagination"]["total_items"] == 4
    only_bob = client.get(f"{API}/orders?user_id={bob.id}", headers=admin.headers).get_json()["data"]
    assert [o["user_id"] for o in only_bob] == [bob.id]
    client.patch(f"{API}/orders/1", json={"status": "paid"}, headers=admin.headers)
    paid = client.get(f"{API}/orders?status=paid", headers=admin.headers).get_json()["data"]
    assert [o["id"] for o in paid] == [1]
    by_total = client.get(f"{API}/orders?sort=-total_amount", headers=admin.headers).get_json()["data"]
    assert [o["total_amount"] for o in by_total] == ["0.40", "0.30", "0.20", "0.10"]


def test_created_interval_filter(client, admin, two_customers_orders):
    today = client.get(f"{API}/orders/1", headers=admin.headers).get_json()["date_created"][:10]
    assert client.get(f"{API}/orders?created={today}", headers=admin.headers).get_json()[
        "pagination"]["total_items"] == 4
    assert client.get(f"{API}/orders?created=2001-01-01/2001-02-01", headers=admin.headers).get_json()[
        "pagination"]["total_items"] == 0
    assert client.get(f"{API}/orders?created=last-week", headers=admin.headers).status_code == 400


def test_order_etag_and_304(client, customer, products):
    placed = order(client, customer, [{"product_id": 1, "quantity": 1}])
    again = client.get(placed.headers["Location"], headers={**customer.headers, "If-None-Match": '"v1"'})
    assert again.status_code == 304


def test_listing_fifty_orders_takes_a_fixed_number_of_statements(client, admin, customer, products,
                                                                 count_queries):
    for _ in range(50):
        order(client, customer, [{"product_id": 1, "quantity": 1}, {"product_id": 2, "quantity": 0 + 1}]
              if _ < 5 else [{"product_id": 1, "quantity": 1}])
    counts = []
    for per_page in (5, 50):
        with count_queries() as counter:
            response = client.get(f"{API}/orders?per_page={per_page}", headers=admin.headers)
        assert len(response.get_json()["data"]) == per_page
        counts.append(counter.count)
    # token, the change feed's watermark (a walk starts here), COUNT, page, items (one IN query);
    # tests/test_cursors.py counts each part.
    assert counts[0] == counts[1]


def test_placing_an_order_takes_the_same_statements_for_one_line_or_three(client, customer, products, db_session,
                                                                          count_queries):
    """token, lock the products, INSERT the order, UPDATE the stock (one executemany), INSERT the lines (one)."""
    counts = []
    three = [{"product_id": 1, "quantity": 1}, {"product_id": 2, "quantity": 2}, {"product_id": 3, "quantity": 1}]
    for items in ([{"product_id": 1, "quantity": 2}], three):
        with count_queries() as counter:
            response = order(client, customer, items)
        assert response.status_code == 201, response.get_json()
        counts.append(counter.count)
    assert counts == [5, 5]
    body = response.get_json()
    assert [(i["product_id"], i["quantity"], i["unit_price"], i["subtotal"]) for i in body["items"]] == [
        (1, 1, "0.10", "0.10"), (2, 2, "3.35", "6.70"), (3, 1, "24.99", "24.99")]
    assert body["total_amount"] == "31.79" and response.headers["ETag"] == '"v1"'
    # What was written is what the answer says, and every product's version moved on.
    stored = client.get(response.headers["Location"], headers=customer.headers).get_json()
    assert {k: v for k, v in stored.items()} == body
    db_session.rollback()
    assert [(p.stock, p.version) for p in (db_session.get(Product, i) for i in (1, 2, 3))] == [
        (97, 3), (3, 2), (1, 2)]


# -- transitions ----------------------------------------------------------------

LEGAL = [("pending", "paid"), ("paid", "shipped"), ("shipped", "completed"),
         ("pending", "cancelled"), ("paid", "cancelled")]
PATHS = {"pending": [], "paid": ["paid"], "shipped": ["paid", "shipped"],
         "completed": ["paid", "shipped", "completed"], "cancelled": ["cancelled"]}
STATUSES = ["pending", "paid", "shipped", "completed", "cancelled"]


def bring_to(client, admin, order_id, status):
    for step in PATHS[status]:
        assert client.patch(f"{API}/orders/{order_id}", json={"status": step},
                            headers=admin.headers).status_code == 200


@pytest.mark.parametrize("start", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_every_transition_pair_as_admin(client, admin, customer, products, db_session, start, target):
    order_id = order(client, customer, [{"product_id": 2, "quantity": 2}]).get_json()["id"]
    bring_to(client, admin, order_id, start)
    stock_before = stock(db_session, 2)
    response = client.patch(f"{API}/orders/{order_id}", json={"status": target}, headers=admin.headers)
    if (start, target) in LEGAL:
        assert response.status_code == 200
        assert response.get_json()["status"] == target
        assert stock(db_session, 2) == stock_before + (2 if target == "cancelled" else 0)
    else:
        assert response.status_code == 409
        db_session.rollback()  # end the read snapshot, expire everything
        assert db_session.get(Order, order_id).status == start
        assert stock(db_session, 2) == stock_before


def test_owner_cancels_and_stock_comes_back(client, customer, products, db_session):
    order_id = order(client, customer, [{"product_id": 3, "quantity": 2}]).get_json()["id"]
    assert stock(db_session, 3) == 0
    response = client.patch(f"{API}/orders/{order_id}", json={"status": "cancelled"}, headers=customer.headers)
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert stock(db_session, 3) == 2
    again = client.patch(f"{API}/orders/{order_id}", json={"status": "cancelled"}, headers=customer.headers)
    assert again.status_code == 409
    assert stock(db_session, 3) == 2


@pytest.mark.parametrize("target", ["paid", "shipped", "completed"])
def test_customer_cannot_move_their_order_forward(client, customer, products, db_session, target):
    order_id = order(client, customer, [{"product_id": 1, "quantity": 1}]).get_json()["id"]
    response = client.patch(f"{API}/orders/{order_id}", json={"status": target}, headers=customer.headers)
    assert response.status_code == 403
    db_session.rollback()  # end the read snapshot, expire everything
    assert db_session.get(Order, order_id).status == "pending"


def test_transition_with_stale_if_match_is_412(client, admin, customer, products, db_session):
    placed = order(client, customer, [{"product_id": 1, "quantity": 1}])
    order_id, etag = placed.get_json()["id"], placed.headers["ETag"]
    assert client.patch(f"{API}/orders/{order_id}", json={"status": "paid"},
                        headers={**admin.headers, "If-Match": etag}).status_code == 200
    response = client.patch(f"{API}/orders/{order_id}", json={"status": "cancelled"},
                            headers={**admin.headers, "If-Match": etag})
    assert response.status_code == 412
    db_session.rollback()  # end the read snapshot, expire everything
    assert db_session.get(Order, order_id).status == "paid" and stock(db_session, 1) == 99


def test_bad_status_values_are_400(client, customer, products):
    order_id = order(client, customer, [{"product_id": 1, "quantity": 1}]).get_json()["id"]
    for body in ({"status": "refunded"}, {}, {"status": "cancelled", "shipping_address": "x"}):
        assert client.patch(f"{API}/orders/{order_id}", json=body, headers=customer.headers).status_code == 400


# -- export ---------------------------------------------------------------------


def test_export_csv_has_one_row_per_line(live_server, http, customer, products, client, make_account):
    other = make_account()
    order(client, customer, [{"product_id": 1, "quantity": 2}, {"product_id": 2, "quantity": 1}])
    order(client, customer, [{"product_id": 3, "quantity": 1}], address="=cmd|' /C calc'!A0")
    order(client, other, [{"product_id": 1, "quantity": 1}])
    response = http.get(f"{live_server}{API}/orders/export?format=csv", headers=customer.headers, stream=True)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["id"], r["items.product_id"], r["items.quantity"]) for r in rows] == [
        ("1", "1", "2"), ("1", "2", "1"), ("2", "3", "1")]
    assert rows[0]["total_amount"] == rows[1]["total_amount"] == "3.55"
    assert rows[2]["shipping_address"].startswith("'=")


def test_export_ndjson_one_order_per_line_and_admin_sees_all(live_server, http, admin, customer, products,
                                                             client, make_account):
    order(client, customer, [{"product_id": 1, "quantity": 2}, {"product_id": 2, "quantity": 1}])
    order(client, make_account(), [{"product_id": 1, "quantity": 1}])
    response = http.get(f"{live_server}{API}/orders/export", headers={**admin.headers,
                                                                      "Accept": "application/x-ndjson"})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [len(o["items"]) for o in lines] == [2, 1]
    mine = http.get(f"{live_server}{API}/orders/export?format=json&status=pending", headers=customer.headers)
    assert [o["user_id"] for o in mine.json()] == [customer.id]


def test_export_needs_a_token(client):
    assert client.get(f"{API}/orders/export").status_code == 401


def test_order_lines_are_exactly_what_was_sold(client, make_account, products, db_session):
    for _ in range(3):
        account = make_account()
        order(client, account, [{"product_id": 2, "quantity": 1}])
    sold = db_session.scalar(select(func.sum(OrderItem.quantity)).where(OrderItem.product_id == 2))
    assert sold == 3 and stock(db_session, 2) == 2
