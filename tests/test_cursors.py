"""Cursors and counts on every list (DESIGN §9), through HTTP, on SQLite and PostgreSQL.

A walk follows ``pagination.next_cursor`` from a first request without
one. It must see every row that exists, unchanged in its sort key, for the
whole walk exactly once, whatever is inserted, changed or deleted meanwhile;
cost the same statements on every page; refuse a cursor it did not make or
one sent with other filters, another sort or ``page``; and end with the
change feed's watermark (``X-Changes-Since``).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import itertools
import random
import threading
import time
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import PG_URL
from sqlalchemy import delete, event, inspect, select, text, update

from myapi.app import create_app
from myapi.client import Client
from myapi.common import cursors
from myapi.db import get_db
from myapi.models import ApiKey, Order, Product, User
from myapi.services import api_keys as api_keys_service
from myapi.services import changes
from myapi.services import orders as orders_service
from myapi.services import products as products_service
from myapi.services import users as users_service

API = "/api/v1"
UTC = dt.timezone.utc
BASE_TIME = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
# Names that sort differently by collation and need escaping: ties, quotes, commas, non-ASCII, wildcards.
NAMES = ["Tea", 'Tea "quoted", comma', "Ünïcödé 茶 🍵", "back\\slash %_", "zebra", "Zebra", "a.b/c?d=e&f"]
PRICES = ["1.00", "2.50", "2.50", "19.99", "100.00"]


# -- helpers ----------------------------------------------------------------------------


def links_of(response) -> dict[str, str]:
    return {link["rel"]: link["url"] for link in requests.utils.parse_header_links(response.headers.get("Link", ""))}


def ok(response):
    assert response.status_code == 200, response.get_json()
    return response


def walk(client, path: str, params: dict, headers: dict | None = None, between=None) -> tuple[list[dict], list]:
    """Every item of a walk (the first request without a cursor, then next_cursor), and the answers."""
    answers = [ok(client.get(path, query_string=params, headers=headers))]
    items = list(answers[0].get_json()["data"])
    while (cursor := answers[-1].get_json()["pagination"]["next_cursor"]) is not None:
        if between is not None:
            between(len(answers))
        answers.append(ok(client.get(path, query_string={**params, "cursor": cursor}, headers=headers)))
        items += answers[-1].get_json()["data"]
    return items, answers


def listed(client, path: str, params: dict, headers: dict | None = None) -> list[dict]:
    """The whole list in one page by number (what a walk must reproduce when nothing changes)."""
    return ok(client.get(path, query_string={**params, "per_page": 100}, headers=headers)).get_json()["data"]


def assert_problem(response, *names: str) -> dict:
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    for name in names:
        assert name in body["errors"], body
    return body


def add_products(session, count: int, start: int = 1, prefix: str = "SKU") -> list[int]:
    """``count`` products with many ties in price, name, stock and time (microseconds apart)."""
    products = []
    for n in range(start, start + count):
        moment = BASE_TIME + dt.timedelta(microseconds=n % 3)
        products.append(Product(sku=f"{prefix}-{n:04d}", name=NAMES[n % len(NAMES)], category=("tea", "mugs")[n % 2],
                                price=Decimal(PRICES[n % len(PRICES)]), stock=n % 4, date_created=moment,
                                date_updated=moment + dt.timedelta(seconds=n % 2)))
    session.add_all(products)
    session.commit()
    return [p.id for p in products]


@pytest.fixture
def shelf(db_session) -> list[int]:
    return add_products(db_session, 45)


def statements_of(app, count_queries, work) -> int:
    with app.app_context(), count_queries() as counter:
        session = get_db(app).read_session()
        try:
            work(session)
        finally:
            session.close()
    return counter.count


# -- walks ------------------------------------------------------------------------------


PRODUCT_SORTS = ["", "-price,name", "price,-stock", "stock", "-date_created", "name,-price,sku", "-id",
                 "sku", "date_updated,-stock", "-stock,-date_updated,name"]


@pytest.mark.parametrize("sort", PRODUCT_SORTS)
def test_a_walk_is_the_list_in_order_for_every_sort(client, shelf, sort):
    params = {"sort": sort} if sort else {}
    items, answers = walk(client, f"{API}/products", {**params, "per_page": 4})
    assert [p["id"] for p in items] == [p["id"] for p in listed(client, f"{API}/products", params)]
    assert len(items) == 45 and len(answers) == 12
    last = answers[-1].get_json()["pagination"]
    assert last["next_cursor"] is None and 'rel="next"' not in answers[-1].headers["Link"]


def test_a_walk_keeps_its_filters(client, shelf):
    params = {"category": "tea", "min_price": "2.5", "sort": "-price,name", "per_page": 3}
    items, _ = walk(client, f"{API}/products", params)
    expected = listed(client, f"{API}/products", {k: v for k, v in params.items() if k != "per_page"})
    assert [p["id"] for p in items] == [p["id"] for p in expected] and items
    assert all(p["category"] == "tea" and Decimal(p["price"]) >= Decimal("2.50") for p in items)


def test_the_page_size_may_change_during_a_walk(client, shelf):
    first = ok(client.get(f"{API}/products?per_page=5&sort=name")).get_json()
    rest = ok(client.get(f"{API}/products", query_string={"per_page": 40, "sort": "name",
                                                          "cursor": first["pagination"]["next_cursor"]})).get_json()
    assert [p["id"] for p in first["data"] + rest["data"]] == [p["id"] for p in listed(client, f"{API}/products",
                                                                                         {"sort": "name"})]


@pytest.mark.parametrize("sort", ["", "-total_amount", "status,-date_created", "total_amount,-id"])
def test_orders_walk(client, admin, db_session, sort):
    user = db_session.get(User, admin.id)
    for n in range(23):
        db_session.add(Order(user_id=user.id, status=("pending", "paid", "shipped")[n % 3], shipping_address="x",
                             total_amount=Decimal(("5.00", "12.50", "99.99")[n % 3 if n % 4 else 0]),
                             date_created=BASE_TIME + dt.timedelta(microseconds=n % 5)))
    db_session.commit()
    params = {"sort": sort} if sort else {}
    items, answers = walk(client, f"{API}/orders", {**params, "per_page": 5}, admin.headers)
    assert [o["id"] for o in items] == [o["id"] for o in listed(client, f"{API}/orders", params, admin.headers)]
    assert len(items) == 23 and len(answers) == 5


@pytest.mark.parametrize("sort", ["-user_priority,username", "email", "-date_created,-user_priority"])
def test_users_walk(client, admin, make_account, db_session, sort):
    for _ in range(9):
        make_account()
    db_session.execute(update(User).values(user_priority=User.id % 3))
    db_session.commit()
    items, _ = walk(client, f"{API}/users", {"sort": sort, "per_page": 2}, admin.headers)
    assert [u["id"] for u in items] == [u["id"] for u in listed(client, f"{API}/users", {"sort": sort},
                                                                   admin.headers)]
    assert len(items) == 10


@pytest.mark.parametrize("sort", ["last_used_at", "-last_used_at,name", "name,last_used_at", "-last_used_at,-id"])
def test_api_keys_walk_over_nulls(client, admin, db_session, sort):
    """last_used_at is the one nullable sort key: NULL sorts after every time, on both databases."""
    for n in range(11):
        used = None if n % 3 == 0 else BASE_TIME + dt.timedelta(minutes=n % 2)
        db_session.add(ApiKey(user_id=admin.id, name=f"key {n % 4}", prefix=f"myapi_{n:08d}", key_hash=f"{n:064x}",
                              scopes="products:read", last_used_at=used))
    db_session.commit()
    items, _ = walk(client, f"{API}/api-keys", {"sort": sort, "per_page": 2}, admin.headers)
    assert [k["id"] for k in items] == [k["id"] for k in listed(client, f"{API}/api-keys", {"sort": sort},
                                                                   admin.headers)]
    assert len(items) == 11
    if sort == "last_used_at":
        assert [k["last_used_at"] is None for k in items] == [False] * 7 + [True] * 4
    if sort.startswith("-last_used_at"):
        assert [k["last_used_at"] is None for k in items] == [True] * 4 + [False] * 7


def test_every_sort_key_is_not_null_but_api_keys_last_used_at():
    """A nullable sort key needs NULL placement in both ORDER BY and the keyset (services/query.py)."""
    nullable = {f"{service.__name__.rsplit('.', 1)[1]}.{name}"
                for service in (products_service, orders_service, users_service, api_keys_service)
                for name, column in service.SORT_KEYS.items() if column.expression.nullable}
    assert nullable == {"api_keys.last_used_at"}


def test_the_migrated_schema_agrees_on_null_sort_keys(app):
    columns = {}
    for model, service in ((Product, products_service), (Order, orders_service), (User, users_service),
                           (ApiKey, api_keys_service)):
        found = {c["name"]: c["nullable"] for c in inspect(get_db(app).engine).get_columns(model.__tablename__)}
        for column in service.SORT_KEYS.values():
            columns[f"{model.__tablename__}.{column.key}"] = found[column.expression.name]
    assert {name for name, nullable in columns.items() if nullable} == {"api_keys.last_used_at"}


# -- changes during a walk --------------------------------------------------------------


def test_every_unchanged_row_exactly_once_while_rows_come_and_go(client, db_session, shelf):
    rng = random.Random(7)
    doomed = set(rng.sample(shelf, 8))  # deleted during the walk
    moved = set(rng.sample(sorted(set(shelf) - doomed), 8))  # their price (a sort key) changes
    touched = set(rng.sample(sorted(set(shelf) - doomed - moved), 10))  # other columns change
    new_skus = itertools.count(1000)

    def meanwhile(page_number: int) -> None:
        for _ in range(2):  # new rows, some tying with the cursor's keys
            n = next(new_skus)
            db_session.add(Product(sku=f"NEW-{n}", name=NAMES[n % len(NAMES)], category="tea",
                                   price=Decimal(PRICES[n % len(PRICES)]), stock=1))
        if doomed:
            db_session.execute(delete(Product).where(Product.id == doomed.pop()))
        if moved:
            victim = moved.pop()
            db_session.execute(update(Product).where(Product.id == victim).values(price=Decimal("50.00") + page_number))
            changed_key.add(victim)
        if touched:
            db_session.execute(update(Product).where(Product.id == touched.pop())
                               .values(description="changed", stock=Product.stock + 7))
        db_session.commit()

    changed_key: set[int] = set()
    deleted_before = set(doomed)
    items, answers = walk(client, f"{API}/products", {"sort": "-price,name", "per_page": 4}, between=meanwhile)
    assert not doomed and not moved and len(answers) > 8
    seen = [p["id"] for p in items]
    untouched = set(shelf) - deleted_before - changed_key
    assert sorted(i for i in seen if i in untouched) == sorted(untouched)  # each exactly once
    assert len(seen) == len(set(seen))  # and nothing twice (a moved row may repeat; none did here)
    assert all(p["description"] in ("", "changed") for p in items)


def test_a_walk_started_before_changes_then_the_feed_is_the_table(client, db_session, shelf):
    """The walk's last page says X-Changes-Since: the feed from there brings a copy up to date."""
    copy: dict[int, tuple] = {}
    rng = random.Random(3)

    def meanwhile(page_number: int) -> None:
        victim = rng.choice(shelf)
        db_session.execute(update(Product).where(Product.id == victim).values(price=Decimal(page_number + 200)))
        db_session.add(Product(sku=f"LATE-{page_number}", name="Late", category="tea", price=Decimal("3.00")))
        db_session.commit()

    items, answers = walk(client, f"{API}/products", {"per_page": 10}, between=meanwhile)
    for p in items:
        copy[p["id"]] = (p["sku"], p["price"])
    since = answers[-1].headers["X-Changes-Since"]
    assert all("X-Changes-Since" not in answer.headers for answer in answers[:-1])
    while True:
        page = changes.feed(db_session, "product", changes.Watermark.parse(since), limit=7)
        for entry in page.entries:
            if entry.op == "delete":
                copy.pop(entry.id, None)
            else:
                copy[entry.id] = (entry.item.sku, f"{entry.item.price:.2f}")
        if not page.entries:
            break
        since = str(page.next_since)
    table = {p.id: (p.sku, f"{p.price:.2f}") for p in db_session.scalars(select(Product))}
    assert copy == table


def test_the_client_walks_while_other_threads_write(app, live_server, db_session, shelf):
    rng = random.Random(11)
    doomed = set(rng.sample(shelf, 6))
    volatile = set(rng.sample(sorted(set(shelf) - doomed), 6))  # their name (the sort key) changes
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        session = get_db(app).session(write=True)
        own = random.Random(number)
        try:
            for n in itertools.count():
                if stop.is_set():
                    break
                session.add(Product(sku=f"W{number}-{n}", name=NAMES[n % len(NAMES)], category="mugs",
                                    price=Decimal("2.50")))
                if n % 3 == 0 and doomed:
                    session.execute(delete(Product).where(Product.id == doomed.pop()))
                if n % 3 == 1 and volatile:
                    session.execute(update(Product).where(Product.id == volatile.pop()).values(name=f"Renamed {n}"))
                session.execute(update(Product).where(Product.id == own.choice(shelf)).values(stock=n % 9))
                session.commit()
                time.sleep(0.002)
        except BaseException as error:  # pragma: no cover (reported below)
            errors.append(error)
        finally:
            session.close()

    all_doomed, all_volatile = set(doomed), set(volatile)
    threads = [threading.Thread(target=writer, args=(number,), daemon=True) for number in range(3)]
    for thread in threads:
        thread.start()
    seen = []
    try:
        for product in Client(live_server).iter_products(sort="name,-price", per_page=3):
            seen.append(product["id"])
            if len(seen) % 3 == 0:
                time.sleep(0.01)  # let the writer in between pages
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not errors
    untouched = set(shelf) - all_doomed - all_volatile
    assert sorted(i for i in seen if i in untouched) == sorted(untouched)


# -- cursors that are refused ----------------------------------------------------------


def a_cursor(client, query: str = "per_page=2") -> str:
    cursor = ok(client.get(f"{API}/products?{query}")).get_json()["pagination"]["next_cursor"]
    assert cursor
    return cursor


def test_forged_edited_and_truncated_cursors_are_400(app, client, shelf):
    cursor = a_cursor(client)
    payload, tag = cursor.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    edited = raw.replace(b'"k":[', b'"k":[9')  # a later row, with the tag of the real one
    edited_payload = base64.urlsafe_b64encode(edited).rstrip(b"=").decode()
    flipped_tag = tag[:-1] + ("A" if tag[-1] != "A" else "Q")
    same_bytes_tag = tag[:-1] + chr(ord(tag[-1]) + 1)  # the 22nd character's 4 unused bits: canonical only
    for forged in ("abc.defghijklmnopqrstuvw", "eyJ2IjoxfQ.AAAAAAAAAAAAAAAAAAAAAA", f"{edited_payload}.{tag}",
                   f"{payload}.{flipped_tag}", cursor[:-1], cursor[:12], cursor.split(".")[0], cursor + "A",
                   "%%%", "x" * 5000, cursor.replace(".", ".."), f"{payload}.{same_bytes_tag}"):
        body = assert_problem(client.get(f"{API}/products", query_string={"per_page": 2, "cursor": forged}), "cursor")
        assert "cursor" in body["errors"] and len(body["errors"]) == 1


def test_a_cursor_of_another_secret_is_400(app_config, client, shelf):
    other = create_app({**app_config, "SECRET_KEY": "another-secret"})
    try:
        theirs = a_cursor(other.test_client())
        assert ok(other.test_client().get(f"{API}/products?per_page=2&cursor={theirs}"))
        assert_problem(client.get(f"{API}/products?per_page=2&cursor={theirs}"), "cursor")
    finally:
        get_db(other).engine.dispose()


def test_page_and_cursor_together_are_400(client, shelf):
    cursor = a_cursor(client)
    for page in ("1", "2"):
        body = assert_problem(client.get(f"{API}/products", query_string={"cursor": cursor, "page": page}),
                              "cursor", "page")
        assert "not both" in body["errors"]["cursor"]


def test_a_cursor_remembers_its_filters_and_sort(client, admin, shelf):
    cursor = a_cursor(client, "per_page=2&category=tea&min_price=2.5&sort=-price,name")
    same = {"category": "tea", "min_price": "2.50", "sort": "-price, name", "per_page": 9, "count": "none"}
    assert ok(client.get(f"{API}/products", query_string={**same, "cursor": cursor}))  # same values, other spelling
    for changed in ({"category": "mugs"}, {"category": None}, {"min_price": "2.51"}, {"q": "tea"},
                    {"in_stock": "true"}, {"sort": "-price"}, {"sort": "price,name"}, {"sort": None}):
        params = {k: v for k, v in {**same, **changed, "cursor": cursor}.items() if v is not None}
        body = assert_problem(client.get(f"{API}/products", query_string=params), "cursor")
        if "sort" in changed:
            assert "sort=-price,name" in body["errors"]["cursor"]
    # Another list is another walk.
    assert_problem(client.get(f"{API}/orders", query_string={"cursor": a_cursor(client)}, headers=admin.headers),
                   "cursor")


def test_equivalent_sorts_share_cursors(client, shelf):
    cursor = a_cursor(client, "per_page=2")
    for sort in ("id", "id,name", "id,-price"):
        assert ok(client.get(f"{API}/products", query_string={"sort": sort, "cursor": cursor}))
    assert_problem(client.get(f"{API}/products", query_string={"sort": "-id", "cursor": cursor}), "cursor")


def test_cursor_values_round_trip_exactly(app):
    keys = (Decimal("19.99"), Decimal("0.10"), dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), None, 2**40,
            'a "quoted", comma\\ % _ 茶 🍵 \u2029', "", -1)
    with app.test_request_context():
        token = cursors.encode(cursors.Cursor((("price", True),), "digest", keys, "12.0"))
        back = cursors.decode(token)
    assert back.keys == keys and [type(k) for k in back.keys] == [type(k) for k in keys]
    assert back.keys[2].tzinfo is not None and back.keys[2].microsecond == 6
    assert back.sort == (("price", True),) and back.watermark == "12.0"


def test_the_longest_cursor_fits_its_documented_length(client, admin, db_session):
    for n in range(3):
        db_session.add(Product(sku=f"{n}" + "S" * 63, name="𝄞" * 199 + str(n), category="tea",
                               price=Decimal("99999999.99"), stock=10**9, description=""))
    db_session.commit()
    sort = "name,sku,-price,-stock,date_created"
    cursor = a_cursor(client, f"per_page=1&sort={sort}&q={'𝄞' * 100}&category=tea")
    assert len(cursor) <= cursors.MAX_LENGTH
    items, _ = walk(client, f"{API}/products", {"per_page": 1, "sort": sort})
    assert len(items) == 3


# -- counts ----------------------------------------------------------------------------


def test_count_modes_by_page(client, shelf):
    exact = ok(client.get(f"{API}/products?per_page=10&page=2"))
    assert list(exact.get_json()["pagination"]) == ["page", "per_page", "total_items", "total_pages", "next_cursor"]
    assert exact.headers["X-Total-Count"] == "45" and set(links_of(exact)) == {"first", "prev", "next", "last"}
    assert exact.get_json()["pagination"]["total_pages"] == 5

    uncounted = ok(client.get(f"{API}/products?per_page=10&page=2&count=none"))
    assert list(uncounted.get_json()["pagination"]) == ["page", "per_page", "next_cursor"]
    assert "X-Total-Count" not in uncounted.headers and set(links_of(uncounted)) == {"first", "prev", "next"}
    assert uncounted.get_json()["data"] == exact.get_json()["data"]
    last = ok(client.get(f"{API}/products?per_page=10&page=5&count=none"))
    assert last.get_json()["pagination"]["next_cursor"] is None and set(links_of(last)) == {"first", "prev"}

    estimated = ok(client.get(f"{API}/products?per_page=10&count=estimated"))
    pagination = estimated.get_json()["pagination"]
    assert list(pagination) == ["page", "per_page", "total_items", "total_pages", "total_is_estimate", "next_cursor"]
    assert "X-Total-Count" in estimated.headers and "last" in links_of(estimated)


def test_count_modes_by_cursor(client, shelf):
    cursor = a_cursor(client, "per_page=10")
    by_mode = {mode: ok(client.get(f"{API}/products", query_string={"per_page": 10, "cursor": cursor,
                                                                     "count": mode})) for mode in cursors_modes()}
    assert list(by_mode["exact"].get_json()["pagination"]) == ["per_page", "total_items", "next_cursor"]
    assert list(by_mode["estimated"].get_json()["pagination"]) == ["per_page", "total_items", "total_is_estimate",
                                                                   "next_cursor"]
    assert list(by_mode["none"].get_json()["pagination"]) == ["per_page", "next_cursor"]
    assert by_mode["exact"].headers["X-Total-Count"] == "45" and "X-Total-Count" not in by_mode["none"].headers
    for answer in by_mode.values():
        assert set(links_of(answer)) == {"first", "next"}
        first = parse_qs(urlsplit(links_of(answer)["first"]).query)
        assert "cursor" not in first and "page" not in first and first["per_page"] == ["10"]
        assert answer.get_json()["data"] == by_mode["exact"].get_json()["data"]


def cursors_modes() -> tuple[str, ...]:
    return ("exact", "estimated", "none")


@pytest.mark.skipif(bool(PG_URL), reason="SQLite's sqlite_stat1")
def test_sqlite_estimates_from_analyze_statistics_when_unfiltered(client, db_session, shelf):
    def estimate(query: str = "") -> dict:
        return ok(client.get(f"{API}/products?count=estimated{query}")).get_json()["pagination"]

    never_analyzed = estimate()
    assert (never_analyzed["total_items"], never_analyzed["total_is_estimate"]) == (45, False)  # counted
    db_session.execute(text("ANALYZE"))
    db_session.commit()
    add_products(db_session, 5, start=100)
    assert estimate()["total_items"] == 45 and estimate()["total_is_estimate"] is True  # the statistics' 45
    assert estimate("&category=tea")["total_is_estimate"] is False  # a filter: counted
    assert estimate("&category=tea")["total_items"] == 25
    assert ok(client.get(f"{API}/products?count=exact")).get_json()["pagination"]["total_items"] == 50


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL's planner")
def test_postgresql_estimates_from_the_planner(client, db_session, shelf):
    db_session.execute(text("ANALYZE products"))
    db_session.commit()
    unfiltered = ok(client.get(f"{API}/products?count=estimated")).get_json()["pagination"]
    assert unfiltered["total_is_estimate"] is True and 35 <= unfiltered["total_items"] <= 55
    filtered = ok(client.get(f"{API}/products?count=estimated&category=tea")).get_json()["pagination"]
    assert filtered["total_is_estimate"] is True and 0 <= filtered["total_items"] <= 45


# -- what a page costs -----------------------------------------------------------------


def test_statements_per_page(app, client, admin, shelf, count_queries):
    """Constant in page size and depth; by cursor without a count, one statement fewer than with one."""
    watermark = statements_of(app, count_queries, changes.watermark)
    assert watermark == 1  # the horizon (or newest change) and the pruned-through mark in one statement

    def cost(url: str, headers=None) -> int:
        with count_queries() as counter:
            ok(client.get(url, headers=headers))
        return counter.count

    deep = ok(client.get(f"{API}/products?per_page=5&page=8")).get_json()["pagination"]["next_cursor"]
    first = a_cursor(client, "per_page=5")
    assert [cost(f"{API}/products?per_page={n}") for n in (1, 5, 40)] == [watermark + 2] * 3  # + COUNT + page
    assert cost(f"{API}/products?per_page=5&page=8") == watermark + 2
    assert [cost(f"{API}/products?per_page=5&cursor={c}") for c in (first, deep)] == [2, 2]  # COUNT + page
    assert [cost(f"{API}/products?per_page=5&cursor={c}&count=none") for c in (first, deep)] == [1, 1]  # the page
    assert cost(f"{API}/products?per_page=5&count=none") == watermark + 1

    # users (no change feed): token, COUNT, page; orders: token, watermark, COUNT, page, the items' IN query.
    assert cost(f"{API}/users?per_page=5", admin.headers) == 3
    assert cost(f"{API}/users?per_page=5&count=none", admin.headers) == 2
    for product_id in (shelf[0], shelf[1], shelf[2], shelf[4]):  # in stock
        placed = client.post(f"{API}/orders", headers=admin.headers,
                             json={"items": [{"product_id": product_id, "quantity": 1}], "shipping_address": "x"})
        assert placed.status_code == 201, placed.get_json()
    order_cursor = ok(client.get(f"{API}/orders?per_page=2", headers=admin.headers)).get_json()["pagination"]
    assert [cost(f"{API}/orders?per_page={n}", admin.headers) for n in (1, 3)] == [1 + watermark + 3] * 2
    assert cost(f"{API}/orders?per_page=2&cursor={order_cursor['next_cursor']}", admin.headers) == 4
    assert cost(f"{API}/orders?per_page=2&count=none&cursor={order_cursor['next_cursor']}", admin.headers) == 3


def page_statement(app, client, url: str) -> tuple[str, tuple]:
    """The SELECT of the page (the last statement of the request) and its parameters."""
    seen: list = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(get_db(app).engine, "before_cursor_execute", record)
    try:
        ok(client.get(url))
    finally:
        event.remove(get_db(app).engine, "before_cursor_execute", record)
    return seen[-1]


@pytest.mark.parametrize("sort, index", [("id", "pk_products"), ("price", "ix_products_price"),
                                         ("-price", "ix_products_price"), ("name,-price", "ix_products_name")])
def test_a_cursor_page_is_an_index_range_not_an_offset(app, client, shelf, sort, index):
    query = f"per_page=5&count=none&sort={sort}"
    deep = ok(client.get(f"{API}/products?{query}&page=7")).get_json()["pagination"]["next_cursor"]
    statement, parameters = page_statement(app, client, f"{API}/products?{query}&cursor={deep}")
    by_page, by_page_parameters = page_statement(app, client, f"{API}/products?{query}&page=7")
    if PG_URL:
        assert "OFFSET" not in statement.upper() and "OFFSET" in by_page.upper()
    else:  # SQLAlchemy always writes "LIMIT ? OFFSET ?" for SQLite: the offset is 0
        assert parameters[-2:] == (6, 0) and by_page_parameters[-2:] == (6, 30)
    with get_db(app).engine.connect() as conn:  # rolled back at the end
        if PG_URL:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a 45-row table would be scanned otherwise
            plan = str(conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar())
            assert index in plan and "Index Cond" in plan
        else:
            plan = " ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
            expected = "INTEGER PRIMARY KEY" if index == "pk_products" else index
            assert "SEARCH products USING" in plan and expected in plan, plan


# -- the end of a walk, and other representations -------------------------------------


def test_x_changes_since_on_the_last_page_of_a_walk(app, client, admin, db_session, shelf):
    first = ok(client.get(f"{API}/products?per_page=20"))
    with app.test_request_context():
        started = cursors.decode(first.get_json()["pagination"]["next_cursor"]).watermark
    assert started and "X-Changes-Since" not in first.headers
    add_products(db_session, 3, start=500)  # changes after the walk started
    _, answers = walk(client, f"{API}/products", {"per_page": 20})
    assert answers[-1].headers["X-Changes-Since"] != started  # a new walk, a new watermark
    middle = ok(client.get(f"{API}/products", query_string={"per_page": 20,
                                                            "cursor": first.get_json()["pagination"]["next_cursor"]}))
    last = ok(client.get(f"{API}/products", query_string={"per_page": 20,
                                                          "cursor": middle.get_json()["pagination"]["next_cursor"]}))
    assert "X-Changes-Since" not in middle.headers
    assert last.get_json()["pagination"]["next_cursor"] is None and last.headers["X-Changes-Since"] == started
    # A walk that fits its first page ends there; a page by number past the first is no walk.
    assert "X-Changes-Since" in ok(client.get(f"{API}/products?per_page=100")).headers
    assert "X-Changes-Since" not in ok(client.get(f"{API}/products?per_page=20&page=3")).headers
    # Nor a walk that starts at a page past the first (the rows before it were never read), at its end.
    second = ok(client.get(f"{API}/products?per_page=20&page=2"))
    end = ok(client.get(f"{API}/products", query_string={"per_page": 20,
                                                         "cursor": second.get_json()["pagination"]["next_cursor"]}))
    assert end.get_json()["pagination"]["next_cursor"] is None and "X-Changes-Since" not in end.headers
    # Lists no change feed continues have none.
    assert "X-Changes-Since" not in ok(client.get(f"{API}/users?per_page=100", headers=admin.headers)).headers
    _, order_walk = walk(client, f"{API}/orders", {"per_page": 1}, admin.headers)
    assert "X-Changes-Since" in order_walk[-1].headers


def test_a_walk_in_csv_follows_the_link_header(client, shelf):
    url = f"{API}/products?per_page=7&sort=-price,name&format=csv&fields=id,name,price"
    rows = []
    pages = 0
    while url:
        response = ok(client.get(url))
        assert response.mimetype == "text/csv"
        lines = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
        assert lines[0] == ["id", "name", "price"]
        rows += lines[1:]
        url = links_of(response).get("next")
        pages += 1
        assert response.headers["X-Total-Count"] == "45"
    assert pages == 7 and "X-Changes-Since" in response.headers
    expected = listed(client, f"{API}/products", {"sort": "-price,name"})
    assert [[str(p["id"]), p["name"], p["price"]] for p in expected] == rows


def test_the_cursor_and_count_are_in_the_openapi_document(client):
    document = ok(client.get(f"{API}/openapi.json")).get_json()
    for path in ("/products", "/orders", "/users", "/api-keys"):
        parameters = {p["name"]: p for p in document["paths"][path]["get"]["parameters"] if "name" in p}
        assert parameters["cursor"]["schema"]["pattern"] == cursors.PATTERN
        assert parameters["count"]["schema"]["enum"] == ["exact", "estimated", "none"]
        assert parameters["count"]["schema"]["default"] == "exact"
    shapes = document["components"]["schemas"]["Pagination"]["oneOf"]
    assert [sorted(shape["required"]) for shape in shapes] == [
        ["next_cursor", "page", "per_page", "total_items", "total_pages"], ["next_cursor", "page", "per_page"],
        ["next_cursor", "per_page", "total_items"], ["next_cursor", "per_page"]]
