"""Products through HTTP: the catalogue list, one product, changes and their guards."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
import requests
from sqlalchemy import func, select

from myapi.db import get_db
from myapi.models import Order, OrderItem, Product

API = "/api/v1"


def product_body(**overrides) -> dict:
    body = {"sku": "TEA-001", "name": "Green tea", "description": "Loose leaf", "category": "tea",
            "price": "4.50", "stock": 10, "is_available": True}
    body.update(overrides)
    return body


def product_count(db_session) -> int:
    return db_session.scalar(select(func.count()).select_from(Product))


@pytest.fixture
def catalogue(app):
    """Twelve products across three categories, inserted straight into the database."""
    rows = [
        ("TEA-001", "Green tea", "tea", "4.50", 10),
        ("TEA-002", "Black tea", "tea", "3.90", 0),
        ("TEA-003", "Oolong", "tea", "12.00", 5),
        ("TEA-004", "Jasmine 100% pearls", "tea", "19.99", 2),
        ("COF-001", "Espresso beans", "coffee", "15.00", 30),
        ("COF-002", "Filter coffee", "coffee", "9.99", 0),
        ("COF-003", "Decaf", "coffee", "11.25", 7),
        ("MUG-001", "White mug", "mugs", "6.00", 100),
        ("MUG-002", "Blue mug", "mugs", "6.00", 50),
        ("MUG-003", "Travel mug", "mugs", "22.00", 8),
        ("MUG-004", "Espresso cup", "mugs", "5.00", 12),
        ("MUG-005", "Mug_with_underscore", "mugs", "7.00", 3),
    ]
    with get_db(app).session() as session, session.begin():
        for sku, name, category, price, stock in rows:
            session.add(Product(sku=sku, name=name, category=category, price=Decimal(price), stock=stock))
    return rows


def skus(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [p["sku"] for p in response.get_json()["data"]]


# -- creating -----------------------------------------------------------------


def test_admin_creates_a_product(client, admin, db_session):
    response = client.post(f"{API}/products", json=product_body(price=4.5), headers=admin.headers)
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"{API}/products/{body['id']}"
    assert response.headers["ETag"] == '"v1"'
    assert body["price"] == "4.50"
    assert body["links"] == {"self": f"{API}/products/{body['id']}"}
    product = db_session.get(Product, body["id"])
    assert product.price == Decimal("4.50") and product.stock == 10


def test_create_uses_defaults(client, admin):
    body = client.post(f"{API}/products", headers=admin.headers,
                       json={"sku": "X1", "name": "X", "category": "misc", "price": "1.00"}).get_json()
    assert body["stock"] == 0 and body["is_available"] is True and body["description"] == ""


def test_customers_and_strangers_cannot_create(client, customer, db_session):
    assert client.post(f"{API}/products", json=product_body(), headers=customer.headers).status_code == 403
    assert client.post(f"{API}/products", json=product_body()).status_code == 401
    assert product_count(db_session) == 0


def test_create_reports_every_bad_field(client, admin, db_session):
    response = client.post(f"{API}/products", headers=admin.headers, json={
        "sku": "bad sku!", "name": "", "category": "Not A Slug", "price": "1.999", "stock": -1,
        "is_available": "perhaps", "id": 7})
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) == {"sku", "name", "category", "price", "stock",
                                                  "is_available", "id"}
    assert product_count(db_session) == 0


@pytest.mark.parametrize("price", ["0", "-1.00", "NaN", "Infinity", "1e3", 0, -5, True, "abc"])
def test_bad_prices_are_rejected(client, admin, db_session, price):
    response = client.post(f"{API}/products", json=product_body(price=price), headers=admin.headers)
    assert response.status_code == 400
    assert "price" in response.get_json()["errors"]
    assert product_count(db_session) == 0


def test_duplicate_sku_is_409(client, admin, db_session):
    assert client.post(f"{API}/products", json=product_body(), headers=admin.headers).status_code == 201
    response = client.post(f"{API}/products", json=product_body(name="Other"), headers=admin.headers)
    assert response.status_code == 409
    assert response.get_json()["errors"] == {"sku": "This sku is taken."}
    assert product_count(db_session) == 1


# -- reading ------------------------------------------------------------------


def test_anyone_reads_a_product_with_etag_and_304(client, catalogue):
    response = client.get(f"{API}/products/1")
    assert response.status_code == 200
    assert response.get_json()["sku"] == "TEA-001"
    etag = response.headers["ETag"]
    again = client.get(f"{API}/products/1", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert client.get(f"{API}/products/1", headers={"If-None-Match": '"v99"'}).status_code == 200
    assert client.get(f"{API}/products/999").status_code == 404


def test_list_filters(client, catalogue):
    assert skus(client.get(f"{API}/products?category=coffee")) == ["COF-001", "COF-002", "COF-003"]
    assert skus(client.get(f"{API}/products?q=ESPRESSO")) == ["COF-001", "MUG-004"]
    assert skus(client.get(f"{API}/products?q=mug-00&category=mugs&max_price=6.00")) == [
        "MUG-001", "MUG-002", "MUG-004"]
    assert skus(client.get(f"{API}/products?min_price=12&max_price=20")) == ["TEA-003", "TEA-004", "COF-001"]
    assert skus(client.get(f"{API}/products?in_stock=false")) == ["TEA-002", "COF-002"]
    assert len(skus(client.get(f"{API}/products?in_stock=true&per_page=100"))) == 10


def test_like_wildcards_in_q_are_literal(client, catalogue):
    assert skus(client.get(f"{API}/products?q=100%25")) == ["TEA-004"]
    assert skus(client.get(f"{API}/products?q=_with_")) == ["MUG-005"]
    assert skus(client.get(f"{API}/products?q=%25%25%25")) == []


def test_updated_since_filter(client, catalogue, admin):
    before = client.get(f"{API}/products/3").get_json()["date_updated"]
    assert len(skus(client.get(f"{API}/products?updated_since={before}&per_page=100"))) == 12
    assert skus(client.get(f"{API}/products?updated_since=2999-01-01T00:00:00Z")) == []
    assert client.get(f"{API}/products?updated_since=yesterday").status_code == 400


@pytest.mark.parametrize("key", ["id", "sku", "name", "price", "stock", "date_created"])
def test_each_sort_key_both_ways(client, catalogue, key):
    ascending = client.get(f"{API}/products?sort={key}&per_page=100").get_json()["data"]
    descending = client.get(f"{API}/products?sort=-{key}&per_page=100").get_json()["data"]
    values = [p[key] for p in ascending]
    if key == "price":
        values = [Decimal(v) for v in values]
    assert values == sorted(values)
    reversed_values = [Decimal(p[key]) if key == "price" else p[key] for p in descending]
    assert reversed_values == sorted(reversed_values, reverse=True)


def test_multi_key_sort(client, catalogue):
    data = client.get(f"{API}/products?category=mugs&sort=-price,name").get_json()["data"]
    assert [p["sku"] for p in data] == ["MUG-003", "MUG-005", "MUG-002", "MUG-001", "MUG-004"]


def test_a_key_named_again_adds_nothing(client, catalogue):
    once = client.get(f"{API}/products?category=mugs&sort=-price,name").get_json()["data"]
    again = client.get(f"{API}/products?category=mugs&sort=-price,name,price,-name").get_json()["data"]
    assert again == once


@pytest.mark.parametrize("query", [
    "sort=price;DROP TABLE products", "sort=-", "sort=password", "sort=price,,name", "sort=(select 1)",
    "min_price=1 OR 1=1", "category=tea' OR '1'='1", "in_stock=maybe", "per_page=0", "per_page=101",
    "page=-1", "page=abc", "updated_since=2020-13-45",
])
def test_injection_and_nonsense_in_the_query_are_400(client, catalogue, query, db_session):
    response = client.get(f"{API}/products?{query}")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert product_count(db_session) == 12


def test_q_with_sql_is_just_text(client, catalogue):
    assert skus(client.get(f"{API}/products?q=' OR 1=1 --")) == []


def test_pagination_edges(client, catalogue):
    last = client.get(f"{API}/products?per_page=5&page=3")
    assert skus(last) == ["MUG-004", "MUG-005"]
    assert last.get_json()["pagination"] == {"page": 3, "per_page": 5, "total_items": 12, "total_pages": 3,
                                             "next_cursor": None}
    assert 'rel="next"' not in last.headers["Link"] and 'rel="prev"' in last.headers["Link"]
    beyond = client.get(f"{API}/products?per_page=5&page=9")
    assert skus(beyond) == []
    assert beyond.headers["X-Total-Count"] == "12"
    first = client.get(f"{API}/products?per_page=5")
    assert 'rel="prev"' not in first.headers["Link"] and "page=3" in first.headers["Link"]
    links = {link["rel"]: link["url"] for link in requests.utils.parse_header_links(first.headers["Link"])}
    next_link = links["next"]  # the rows after this page's last row: by cursor (DESIGN §9)
    assert "cursor=" in next_link and "&page=" not in next_link and "?page=" not in next_link
    assert skus(client.get(next_link)) == skus(client.get(f"{API}/products?per_page=5&page=2"))


def test_list_as_csv_has_the_same_headers(client, catalogue):
    response = client.get(f"{API}/products?category=tea", headers={"Accept": "text/csv"})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = response.data.decode().splitlines()
    assert lines[0] == ("id,sku,name,description,category,price,stock,is_available,date_created,"
                        "date_updated,links.self")
    assert len(lines) == 5
    assert response.headers["X-Total-Count"] == "4" and 'rel="first"' in response.headers["Link"]


def test_empty_list_as_csv_still_has_a_header(client):
    response = client.get(f"{API}/products?format=csv")
    assert response.data.decode().splitlines() == [
        "id,sku,name,description,category,price,stock,is_available,date_created,date_updated,links.self"]


def test_csv_neutralises_formulas(client, admin):
    client.post(f"{API}/products", headers=admin.headers,
                json=product_body(name="=HYPERLINK(\"http://evil\")", description="+1+1"))
    text = client.get(f"{API}/products/1?format=csv").data.decode()
    assert "'=HYPERLINK" in text and "'+1+1" in text


def test_list_statement_count_does_not_depend_on_per_page(client, catalogue, count_queries):
    counts = []
    for per_page in (1, 5, 100):
        with count_queries() as counter:
            assert client.get(f"{API}/products?per_page={per_page}").status_code == 200
        counts.append(counter.count)
    # The change feed's watermark (a walk starts here: services/changes.py), COUNT and the page;
    # tests/test_cursors.py counts each part.
    assert counts == [counts[0]] * 3


def test_reading_and_creating_take_the_fewest_statements(client, admin, catalogue, count_queries):
    """GET one: the row. POST: the token and the INSERT (a taken sku is the unique index's 409)."""
    with count_queries() as counter:
        assert client.get(f"{API}/products/1").status_code == 200
    assert counter.count == 1
    with count_queries() as counter:
        created = client.post(f"{API}/products", headers=admin.headers, json=product_body(sku="NEW-1"))
    assert created.status_code == 201 and counter.count == 2
    taken = client.post(f"{API}/products", headers=admin.headers, json=product_body(sku="NEW-1", name="Other"))
    assert taken.status_code == 409 and taken.get_json()["errors"] == {"sku": "This sku is taken."}
    assert client.get(f"{API}/products?q=Other").get_json()["data"] == []


# -- changing -----------------------------------------------------------------


def test_put_replaces_and_patch_changes_parts(client, admin, catalogue, db_session):
    response = client.put(f"{API}/products/1", headers=admin.headers,
                          json={"sku": "TEA-001", "name": "Sencha", "category": "tea", "price": "5.00", "stock": 3})
    assert response.status_code == 200
    body = response.get_json()
    assert body["name"] == "Sencha" and body["description"] == "" and body["stock"] == 3
    assert response.headers["ETag"] == '"v2"'
    response = client.patch(f"{API}/products/1", json={"price": "6.10"}, headers=admin.headers)
    assert response.get_json()["price"] == "6.10" and response.get_json()["name"] == "Sencha"
    db_session.rollback()  # end the read snapshot, expire everything
    assert db_session.get(Product, 1).price == Decimal("6.10")


def test_put_needs_every_field(client, admin, catalogue, db_session):
    response = client.put(f"{API}/products/1", json={"name": "Only a name"}, headers=admin.headers)
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) == {"sku", "category", "price", "stock"}
    assert db_session.get(Product, 1).name == "Green tea"


def test_patch_to_a_taken_sku_is_409(client, admin, catalogue, db_session):
    response = client.patch(f"{API}/products/1", json={"sku": "TEA-002"}, headers=admin.headers)
    assert response.status_code == 409
    assert db_session.get(Product, 1).sku == "TEA-001"


def test_customer_cannot_change_products(client, customer, catalogue, db_session):
    assert client.patch(f"{API}/products/1", json={"stock": 0}, headers=customer.headers).status_code == 403
    assert client.delete(f"{API}/products/1", headers=customer.headers).status_code == 403
    assert db_session.get(Product, 1).stock == 10


def test_stale_if_match_is_412_and_writes_nothing(client, admin, catalogue, db_session):
    etag = client.get(f"{API}/products/1").headers["ETag"]
    assert client.patch(f"{API}/products/1", json={"stock": 9},
                        headers={**admin.headers, "If-Match": etag}).status_code == 200
    for method in ("patch", "put", "delete"):
        response = getattr(client, method)(f"{API}/products/1", json=product_body(stock=1),
                                           headers={**admin.headers, "If-Match": etag})
        assert response.status_code == 412, method
    db_session.rollback()  # end the read snapshot, expire everything
    assert db_session.get(Product, 1).stock == 9


def test_concurrent_writers_never_lose_an_update(app, admin, catalogue, db_session):
    """Two sessions read version 1; the second writer is refused, not applied."""
    from sqlalchemy.orm.exc import StaleDataError

    database = get_db(app)
    first, second = database.session(), database.session()
    a, b = first.get(Product, 1), second.get(Product, 1)
    second.commit()  # b stays loaded (expire_on_commit=False) at version 1
    a.stock = 1
    first.commit()
    b.stock = 2
    with pytest.raises(StaleDataError):
        second.commit()
    first.close()
    second.close()
    db_session.rollback()  # end the read snapshot, expire everything
    assert db_session.get(Product, 1).stock == 1


def test_racing_patches_through_http_give_409_not_a_lost_update(live_server, admin, catalogue, db_session):
    import requests

    results = []
    barrier = threading.Barrier(8)

    def patch(i):
        barrier.wait()
        response = requests.patch(f"{live_server}{API}/products/1", json={"stock": i},
                                  headers={**admin.headers, "If-Match": '"v1"'}, timeout=30)
        results.append(response.status_code)

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(200) == 1
    assert all(code in (409, 412) for code in results if code != 200)
    db_session.rollback()  # end the read snapshot, expire everything
    assert db_session.get(Product, 1).version == 2


# -- deleting -----------------------------------------------------------------


def test_delete_a_never_ordered_product(client, admin, catalogue, db_session):
    assert client.delete(f"{API}/products/2", headers=admin.headers).status_code == 204
    assert db_session.get(Product, 2) is None
    assert client.get(f"{API}/products/2").status_code == 404


def test_delete_an_ordered_product_is_409(client, admin, customer, catalogue, app, db_session):
    with get_db(app).session() as session, session.begin():
        order = Order(user_id=customer.id, shipping_address="1 Road", total_amount=Decimal("4.50"))
        order.items.append(OrderItem(product_id=1, product_name="Green tea", quantity=1,
                                     unit_price=Decimal("4.50")))
        session.add(order)
    response = client.delete(f"{API}/products/1", headers=admin.headers)
    assert response.status_code == 409
    assert "is_available=false" in response.get_json()["detail"]
    assert db_session.get(Product, 1) is not None
    retire = client.patch(f"{API}/products/1", json={"is_available": False}, headers=admin.headers)
    assert retire.status_code == 200 and retire.get_json()["is_available"] is False
