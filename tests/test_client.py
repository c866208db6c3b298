"""myapi.client against the live server: every method, pages, typed errors, retries, streams.

Retries are tested with a small WSGI middleware in front of the real app
(``Flaky``) that can answer 503 once, or run the request to the end and then
drop the connection without a byte of answer, as a dying proxy would. The
429 handling is tested against the real rate limiter when the app has one,
and always against a tiny stub server (the client's own handling).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from sqlalchemy import func, insert, select, update
from werkzeug.serving import make_server
from werkzeug.wsgi import get_input_stream

from myapi import __version__, problems
from myapi.app import create_app
from myapi.client import (
    ApiError,
    Client,
    Conflict,
    Forbidden,
    InsufficientStock,
    Item,
    NotFound,
    Page,
    PreconditionFailed,
    RateLimited,
    Unauthorized,
    UnprocessableEntity,
    ValidationFailed,
)
from myapi.db import get_db
from myapi.models import Order, Product


@pytest.fixture
def api(live_server, admin):
    with Client(live_server, admin.token) as client:
        yield client


@pytest.fixture
def shop(live_server, customer):
    with Client(live_server, customer.token) as client:
        yield client


def product(n: int, **fields) -> dict:
    return {"sku": f"SKU-{n:05d}", "name": f"Product {n}", "category": "tea", "price": "2.50", "stock": 100,
            **fields}


def count(app, model) -> int:
    with get_db(app).engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def requests_seen(client: Client) -> list[requests.PreparedRequest]:
    """Every request the client's session completes from now on (after its retries)."""
    seen: list[requests.PreparedRequest] = []
    client.session.hooks["response"].append(lambda response, *args, **kwargs: seen.append(response.request))
    return seen


# -- every method ---------------------------------------------------------------------


def test_health_login_and_logout(live_server, admin):
    anonymous = Client(live_server + "/api/v1/")  # the prefix and a slash are fine too
    assert anonymous.base_url == live_server + "/api/v1"
    assert anonymous.health() == {"status": "ok", "database": "ok", "version": __version__,
                                  "webhooks_oldest_undelivered_seconds": None}  # nothing owed to a webhook
    assert anonymous.session.headers["User-Agent"] == f"myapi-client/{__version__}"

    api = Client.login(live_server, "root", admin.password)
    assert api.token and api.me()["username"] == "root"
    token = api.token
    api.logout()
    assert api.token is None
    with pytest.raises(Unauthorized):
        Client(live_server, token).me()  # revoked at once


def test_sign_up_read_and_change_users(live_server, api):
    created = Client(live_server).create_user("zoe", "Zoe@example.com", "a-long-password", user_priority=2)
    assert isinstance(created, Item) and created.etag == '"v1"'
    assert created["email"] == "zoe@example.com" and created["user_priority"] == 2

    zoe = Client.login(live_server, "zoe", "a-long-password")
    me = zoe.me()
    assert me["custom_greeting"] == "Hey there zoe!"
    changed = zoe.update_user(me, {"user_priority": 3})  # the Item's ETag goes as If-Match
    assert changed["user_priority"] == 3 and changed.etag == '"v2"'
    with pytest.raises(PreconditionFailed):
        zoe.update_user("me", {"user_priority": 0}, if_match=me.etag)
    replaced = zoe.update_user(created["id"], {"username": "zoe", "email": "zoe@example.org", "user_priority": 4},
                               replace=True)
    assert replaced["email"] == "zoe@example.org" and replaced["user_priority"] == 4
    assert zoe.get_user(created["id"])["id"] == created["id"]

    page = api.list_users(role="customer")
    assert isinstance(page, Page) and [user["username"] for user in page] == ["zoe"]
    assert {user["username"] for user in api.iter_users(per_page=1)} == {"root", "zoe"}
    api.deactivate_user(api.get_user(created["id"]))
    assert api.get_user(created["id"])["is_active"] is False
    with pytest.raises(Unauthorized):
        Client.login(live_server, "zoe", "a-long-password")


def test_products_crud_with_etags(live_server, api):
    tea = api.create_product(product(1, description="Green"))
    assert tea["sku"] == "SKU-00001" and tea.etag == '"v1"'
    assert api.create_product(sku="SKU-00002", name="Mug", category="mugs", price="9.00")["stock"] == 0

    read = api.get_product(tea["id"])
    assert read == tea and read.etag == '"v1"'
    patched = api.update_product(read, {"price": "3.00"})  # If-Match: "v1"
    assert patched["price"] == "3.00" and patched.etag == '"v2"'
    with pytest.raises(PreconditionFailed) as stale:
        api.update_product(tea["id"], {"price": "4.00"}, if_match=read.etag)
    assert stale.value.status == 412 and stale.value.type == "urn:myapi:problem:precondition-failed"
    assert api.get_product(tea["id"])["price"] == "3.00"  # the stale write changed nothing

    replaced = api.update_product(tea["id"], product(1, name="Sencha", stock=5), replace=True,
                                  if_match=patched.etag)
    assert replaced["name"] == "Sencha" and replaced["description"] == ""  # PUT resets what it omits

    api.delete_product(replaced)
    with pytest.raises(NotFound):
        api.get_product(tea["id"])
    assert [p["sku"] for p in Client(live_server).iter_products()] == ["SKU-00002"]


def test_iterators_walk_by_cursor_across_pages(app, live_server, api, shop):
    result = api.import_products(io.BytesIO(csv_file(range(1, 48))))
    assert (result["created"], result["rows"]) == (47, 47)

    seen = requests_seen(api)
    products = list(api.iter_products(per_page=20, category="tea", sort="-price,id"))
    assert len(products) == 47 and len({p["id"] for p in products}) == 47
    assert [p["price"] for p in products] == sorted((p["price"] for p in products), key=Decimal, reverse=True)
    queries = [r.url.split("?")[1] for r in seen]
    assert queries[0] == "per_page=20&count=none&category=tea&sort=-price%2Cid"  # a walk is not counted
    assert len(queries) == 3 and all(q.startswith(queries[0] + "&cursor=") for q in queries[1:])
    assert list(api.iter_products(q="no such thing")) == []
    page = api.list_products(per_page=20, page=3)
    assert (len(page), page.page, page.total_items, page.total_pages) == (7, 3, 47, 3)
    assert page.next_cursor is None and api.list_products(per_page=20).next_cursor
    by_cursor = api.list_products(per_page=20, cursor=api.list_products(per_page=20, page=2).next_cursor)
    assert (len(by_cursor), by_cursor.page, by_cursor.total_items, by_cursor.total_pages) == (7, None, 47, None)

    for n in range(1, 6):
        shop.place_order([(n, 1)], f"{n} High Street")
    assert [o["shipping_address"] for o in shop.iter_orders(per_page=2)] == [f"{n} High Street" for n in range(1, 6)]
    assert len(list(api.iter_orders(per_page=2, status="pending"))) == 5


def test_orders_place_read_move_and_cancel(live_server, api, shop, customer):
    mug = api.create_product(product(1, price="4.25", stock=10))
    order = shop.place_order([{"product_id": mug["id"], "quantity": 3}], "1 High Street")
    assert isinstance(order, Item) and order.etag == '"v1"'
    assert order["status"] == "pending" and order["total_amount"] == "12.75"
    assert order["items"] == [{"product_id": mug["id"], "product_name": "Product 1", "quantity": 3,
                               "unit_price": "4.25", "subtotal": "12.75"}]
    assert shop.get_order(order["id"]) == order
    assert api.get_product(mug["id"])["stock"] == 7

    with pytest.raises(Forbidden):
        shop.set_order_status(order, "paid")
    paid = api.set_order_status(order["id"], "paid", if_match=order.etag)
    assert paid["status"] == "paid"
    with pytest.raises(PreconditionFailed):
        shop.cancel_order(order)  # read before it was paid
    assert shop.cancel_order(shop.get_order(order["id"]))["status"] == "cancelled"
    assert api.get_product(mug["id"])["stock"] == 10

    other = shop.place_order({mug["id"]: 2}, "2 High Street")
    assert [o["id"] for o in shop.list_orders(status="pending")] == [other["id"]]
    assert [o["id"] for o in api.iter_orders(user_id=customer.id, sort="-id")] == [other["id"], order["id"]]


def test_reports(live_server, api, shop):
    tea = api.create_product(product(1, price="10.00"))
    order = shop.place_order([(tea["id"], 2)], "1 High Street")
    api.set_order_status(order["id"], "paid")
    assert api.top_customers(limit=5) == [
        {"username": "alice", "email": "alice@example.com", "order_count": 1, "total_spent": "20.00"}]
    assert api.revenue_by_category() == [{"category": "tea", "revenue": "20.00", "units_sold": 2}]
    assert api.revenue_by_category(interval="2000-01/2000-02") == []
    months = api.monthly_revenue(year=dt.datetime.now(dt.timezone.utc).year)
    assert len(months) == 12 and months[-1]["running_total"] == "20.00"
    with pytest.raises(Forbidden):
        shop.top_customers()


# -- typed errors ---------------------------------------------------------------------


def test_errors_are_typed_from_problem_json(live_server, api, shop):
    with pytest.raises(ValidationFailed) as invalid:
        api.create_product(sku="bad sku!", name="", category="tea")
    error = invalid.value
    assert (error.status, error.title, error.type) == (400, "Invalid request", "urn:myapi:problem:validation-error")
    assert set(error.errors) == {"sku", "name", "price"} and error.request_id
    assert "price: This field is required." in error.error_lines()

    with pytest.raises(Unauthorized) as unauthorized:
        Client.login(live_server, "root", "wrong-password")
    assert unauthorized.value.status == 401 and unauthorized.value.detail == "Unknown username or wrong password."

    with pytest.raises(Forbidden):
        shop.create_product(product(1))
    with pytest.raises(NotFound) as missing:
        api.get_product(999)
    assert missing.value.detail == "No product 999."

    api.create_product(product(1))
    with pytest.raises(Conflict) as duplicate:
        api.create_product(product(1))
    assert duplicate.value.status == 409 and "sku" in duplicate.value.errors

    read = api.get_product(1)
    api.update_product(1, {"stock": 1})
    with pytest.raises(PreconditionFailed):
        api.update_product(read, {"stock": 2})

    first = shop.place_order([(1, 1)], "1 High Street", idempotency_key="order-001")
    assert shop.place_order([(1, 1)], "1 High Street", idempotency_key="order-001") == first  # replayed
    with pytest.raises(UnprocessableEntity) as reused:
        shop.place_order([(1, 2)], "1 High Street", idempotency_key="order-001")
    assert reused.value.status == 422 and "Idempotency-Key" in reused.value.errors
    assert reused.value.problem is problems.IDEMPOTENCY_KEY_REUSED

    # A problem type of the server's catalogue picks a more precise exception than its status.
    with pytest.raises(InsufficientStock) as short:
        shop.place_order([(1, 50)], "1 High Street")
    assert isinstance(short.value, Conflict) and short.value.problem is problems.INSUFFICIENT_STOCK
    assert short.value.errors[0]["requested"] == 50

    assert all(issubclass(cls, ApiError) for cls in (ValidationFailed, RateLimited, Conflict))


def test_rate_limited_by_the_real_limiter(app_config):
    app = create_app({**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_SIGNIN": "2/minute"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        for _ in range(2):
            with pytest.raises(Unauthorized):
                Client.login(url, "nobody", "wrong-password", retries=0)
        with pytest.raises(RateLimited) as limited:
            Client.login(url, "nobody", "wrong-password", retries=0)
        assert limited.value.status == 429 and limited.value.retry_after is not None
    finally:
        server.shutdown()
        thread.join(5)
        get_db(app).engine.dispose()


class Stub:
    """A tiny HTTP server answering from a script of (status, headers, body); it records every request."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[tuple[str, str, dict, bytes]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.requests.append((self.command, self.path, dict(self.headers), body))
                status, headers, payload = stub.answers.pop(0) if len(stub.answers) > 1 else stub.answers[0]
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Length": str(len(data)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


TOO_MANY = (429, {"Content-Type": "application/problem+json", "Retry-After": "0"},
            {"type": "about:blank", "title": "Too Many Requests", "status": 429,
             "detail": "10 per 1 minute", "request_id": "stub-1"})
CREATED = (201, {"Content-Type": "application/json", "ETag": '"v1"'}, {"id": 7})
IN_PROGRESS = (409, {"Content-Type": "application/problem+json"},
               {"type": "urn:myapi:problem:idempotency-key-in-progress", "title": "Conflict", "status": 409,
                "detail": "still running"})


def test_rate_limited_by_a_stub_retries_then_raises():
    # Two 429s then a success: retried (Retry-After: 0), with one Idempotency-Key throughout.
    with Stub([TOO_MANY, TOO_MANY, CREATED]) as stub:
        order = Client(stub.url, "t0k3n", backoff_factor=0.01).place_order([(1, 1)], "1 High Street")
    assert order == {"id": 7} and order.etag == '"v1"'
    keys = {headers["Idempotency-Key"] for _, _, headers, _ in stub.requests}
    assert len(stub.requests) == 3 and len(keys) == 1
    method, path, headers, body = stub.requests[0]
    assert (method, path) == ("POST", "/api/v1/orders")
    assert headers["User-Agent"] == f"myapi-client/{__version__}" and headers["Authorization"] == "Bearer t0k3n"
    assert json.loads(body) == {"items": [{"product_id": 1, "quantity": 1}], "shipping_address": "1 High Street"}

    # Always 429: after the retries, a RateLimited with the problem's fields.
    with Stub([TOO_MANY]) as stub, pytest.raises(RateLimited) as limited:
        Client(stub.url, retries=2, backoff_factor=0.01).list_products()
    error = limited.value
    assert (error.status, error.title, error.detail, error.request_id, error.retry_after) == (
        429, "Too Many Requests", "10 per 1 minute", "stub-1", 0.0)
    assert len(stub.requests) == 3

    # Retry-After is honoured (the first retry has no backoff of its own), up to retry_after_max.
    slow_down = (429, {**TOO_MANY[1], "Retry-After": "30"}, TOO_MANY[2])
    with Stub([slow_down, CREATED]) as stub:
        started = time.monotonic()
        assert Client(stub.url, retry_after_max=0.3).create_product(product(1)) == {"id": 7}
        assert 0.3 <= time.monotonic() - started < 5

    # A retry that finds the first attempt still running waits for it, with the same key.
    with Stub([IN_PROGRESS, CREATED]) as stub:
        assert Client(stub.url, backoff_factor=0.01).create_product(product(1)) == {"id": 7}
    assert len({headers["Idempotency-Key"] for _, _, headers, _ in stub.requests}) == 1 == len(stub.requests) - 1


# -- retry safety ---------------------------------------------------------------------


class Flaky:
    """WSGI middleware: misbehave on the first ``times`` requests matching (method, path), then pass through.

    ``drop``: run the request to the end (its transaction commits), then close
    the connection without sending a byte of the answer. ``unavailable``: read
    the body and answer 503 with Retry-After: 0, doing nothing. ``cut``: send
    the start of the answer, then drop the connection.
    """

    def __init__(self, app, method: str, path: str, action: str, times: int = 1):
        self.app, self.method, self.path, self.action, self.left = app, method, path, action, times
        self.seen = 0

    def __call__(self, environ, start_response):
        if (environ["REQUEST_METHOD"], environ["PATH_INFO"]) != (self.method, self.path):
            return self.app(environ, start_response)
        self.seen += 1
        if self.left <= 0:
            return self.app(environ, start_response)
        self.left -= 1
        if self.action == "unavailable":
            get_input_stream(environ).read()
            start_response("503 Service Unavailable", [("Content-Type", "application/problem+json"),
                                                       ("Retry-After", "0")])
            return [b'{"type":"about:blank","title":"Service Unavailable","status":503}']
        if self.action == "cut":
            return self.cut(self.app(environ, start_response), environ)
        answer = self.app(environ, lambda *args, **kwargs: (lambda data: None))
        try:
            b"".join(answer)  # the whole answer is produced: the work is committed
        finally:
            getattr(answer, "close", lambda: None)()
        environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
        raise ConnectionAbortedError("dropped by the test")


    @staticmethod
    def cut(answer, environ):
        """Send the status, the headers and 100 bytes of the body, then drop the connection."""
        try:
            yield b"".join(answer)[:100]
        finally:
            getattr(answer, "close", lambda: None)()
        environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
        raise ConnectionAbortedError("cut by the test")


@pytest.fixture
def flaky_server(app):
    servers = []

    def serve(*args, **kwargs) -> tuple[str, Flaky]:
        middleware = Flaky(app, *args, **kwargs)
        server = make_server("127.0.0.1", 0, middleware, threaded=True)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}", middleware

    yield serve
    for server in servers:
        server.shutdown()


def test_a_dropped_order_is_retried_and_placed_once(app, flaky_server, api, customer):
    tea = api.create_product(product(1, stock=10))
    url, flaky = flaky_server("POST", "/api/v1/orders", "drop")
    client = Client(url, customer.token)
    seen = requests_seen(client)

    order = client.place_order([(tea["id"], 3)], "1 High Street")

    assert flaky.seen == 2  # the first attempt (committed, answer lost) and the retry
    assert len(seen) == 1  # one call: the retry happened inside it
    assert order["status"] == "pending" and order.etag == '"v1"'
    assert count(app, Order) == 1
    assert api.get_product(tea["id"])["stock"] == 7  # sold once
    assert client.get_order(order["id"]) == order


def test_a_sign_in_that_may_have_reached_the_server_is_not_resent(flaky_server, admin):
    url, flaky = flaky_server("POST", "/api/v1/tokens", "drop")
    with pytest.raises(requests.ConnectionError):
        Client.login(url, "root", admin.password)
    assert flaky.seen == 1  # no Idempotency-Key on /tokens: never retried once sent


def test_503_is_retried_for_reads_writes_and_uploads(flaky_server, api, admin):
    api.create_product(product(1))
    url, flaky = flaky_server("GET", "/api/v1/products/1", "unavailable", times=2)
    client = Client(url, admin.token, backoff_factor=0.01)
    assert client.get_product(1)["sku"] == "SKU-00001" and flaky.seen == 3

    url, flaky = flaky_server("PATCH", "/api/v1/products/1", "unavailable")
    assert Client(url, admin.token, backoff_factor=0.01).update_product(1, {"stock": 5})["stock"] == 5
    assert flaky.seen == 2

    url, flaky = flaky_server("POST", "/api/v1/products/import", "unavailable")
    result = Client(url, admin.token, backoff_factor=0.01).import_products(io.BytesIO(csv_file(range(2, 5))))
    assert result["created"] == 3 and flaky.seen == 2  # the file was rewound for the retry


def test_a_broken_download_raises_and_leaves_no_file(tmp_path, flaky_server, api):
    api.import_products(io.BytesIO(csv_file(range(1, 31))))
    url, flaky = flaky_server("GET", "/api/v1/products/export", "cut")
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "products.csv"
    with pytest.raises(requests.RequestException):
        Client(url).export_products(target)
    assert list(target.parent.iterdir()) == []  # neither products.csv nor products.csv.part
    assert Client(url).export_products(target) == target.stat().st_size > 1000  # the next attempt is whole


# -- streams --------------------------------------------------------------------------


def csv_file(numbers, bad: dict | None = None) -> bytes:
    lines = ["sku,name,category,price,stock,description"]
    for n in numbers:
        lines.append(f"SKU-{n:05d},Product {n},tea,{1 + n % 50}.25,{n % 7},\"Line {n}, with a comma\"")
    for row, line in (bad or {}).items():
        lines[row - 1] = line
    return ("\r\n".join(lines) + "\r\n").encode()


def test_exports_write_the_file_as_they_download(tmp_path, api, shop, capsys):
    api.import_products(io.BytesIO(csv_file(range(1, 31))))
    path = tmp_path / "products.csv"
    size = api.export_products(path, category="tea", max_price="10.00", sort="-price,id", progress=True)
    assert size == path.stat().st_size
    rows = list(csv.DictReader(path.open(newline="")))
    assert [row["sku"] for row in rows] == [f"SKU-{n:05d}" for n in range(8, 0, -1)]  # 2.25 ... 9.25
    assert rows[0]["description"].startswith("Line ") and "download" in capsys.readouterr().err

    api.export_products(tmp_path / "products.ndjson", format="ndjson", q="SKU-0000")
    lines = (tmp_path / "products.ndjson").read_text().splitlines()
    assert [json.loads(line)["sku"] for line in lines] == [f"SKU-{n:05d}" for n in range(1, 10)]
    buffer = io.BytesIO()
    api.export_products(buffer, format="json", in_stock=False)
    assert {p["stock"] for p in json.loads(buffer.getvalue())} == {0}

    shop.place_order([(2, 2), (3, 1)], "1 High Street")  # stock: n % 7
    shop.place_order([(4, 1)], "2 High Street")
    today = dt.datetime.now(dt.timezone.utc).date()
    shop.export_orders(tmp_path / "orders.csv", created=today.isoformat())
    rows = list(csv.DictReader((tmp_path / "orders.csv").open(newline="")))
    assert [(row["id"], row["items.product_id"]) for row in rows] == [("1", "2"), ("1", "3"), ("2", "4")]
    shop.export_orders(tmp_path / "none.csv", created=(today - dt.timedelta(days=1)).isoformat())
    assert (tmp_path / "none.csv").read_text().count("\n") == 1  # the header alone


def counts(answer: dict) -> dict:
    """An import's counts (its answer also lists the changes: tests/test_bulk.py)."""
    return {name: answer[name] for name in ("created", "updated", "unchanged", "rows", "dry_run")}


def test_import_dry_run_errors_and_progress(app, tmp_path, api, capsys):
    path = tmp_path / "catalogue.csv"
    path.write_bytes(csv_file(range(1, 6)))
    assert counts(api.import_products(path, dry_run=True)) == {"created": 5, "updated": 0, "unchanged": 0,
                                                               "rows": 5, "dry_run": True}
    assert count(app, Product) == 0
    assert api.import_products(path, progress=True)["created"] == 5
    assert "upload" in capsys.readouterr().err
    assert counts(api.import_products(path)) == {"created": 0, "updated": 0, "unchanged": 5, "rows": 5,
                                                 "dry_run": False}

    path.write_bytes(csv_file(range(10, 14), bad={3: "SKU-X,Name,tea,free,1,", 5: "SKU-Y,,tea,1.00,1,"}))
    with pytest.raises(ValidationFailed) as invalid:
        api.import_products(path, dry_run=True)
    assert invalid.value.title == "Invalid rows"
    assert invalid.value.error_lines() == ["row 3, price: must be an amount like 19.99",
                                           "row 5, name: This field is required."]
    assert count(app, Product) == 5


def test_import_uploads_a_stream_not_bytes(app, tmp_path, api):
    path = tmp_path / "big.csv"
    path.write_bytes(csv_file(range(1, 3_001)))
    seen = requests_seen(api)
    assert api.import_products(path)["created"] == 3_000
    request = seen[-1]
    assert hasattr(request.body, "read") and not isinstance(request.body, (bytes, str))  # a file object
    assert request.headers["Content-Length"] == str(path.stat().st_size)
    assert request.headers["Content-Type"] == "text/csv" and "Transfer-Encoding" not in request.headers
    assert count(app, Product) == 3_000


MEMORY_PROBE = textwrap.dedent("""
    import sys, tracemalloc
    from myapi.client import Client
    url, token, action, path = sys.argv[1:]
    api = Client(url, token)
    api.health()  # warm: imports and the connection
    tracemalloc.start()
    if action == "export":
        size = api.export_products(path, format="csv")
    else:
        size = api.import_products(path, dry_run=True)["rows"]
    print(size, tracemalloc.get_traced_memory()[1])
""")


def probe(live_server, token, action, path) -> tuple[int, int]:
    """Run the client in a process of its own (the server's memory is in this one) and read its peak."""
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, live_server, token, action, str(path)],
                          capture_output=True, text=True, timeout=120, check=True)
    size, peak = map(int, done.stdout.split())
    return size, peak


def test_export_of_50k_products_keeps_the_client_flat(app, tmp_path, live_server, admin):
    now = dt.datetime.now(dt.timezone.utc)
    rows = [{"sku": f"BULK-{n:06d}", "name": f"Bulk product {n}", "description": "x" * 40, "category": "bulk",
             "price": Decimal("1.99"), "stock": n % 100, "is_available": True, "version": 1,
             "date_created": now, "date_updated": now} for n in range(50_000)]
    with get_db(app).engine.begin() as conn:
        conn.execute(insert(Product.__table__), rows)
    del rows

    path = tmp_path / "export.csv"
    size, peak = probe(live_server, admin.token, "export", path)
    assert size == path.stat().st_size > 5_000_000
    with path.open(newline="") as fh:
        assert sum(1 for _ in fh) == 50_001
    assert peak < 1_000_000, f"the client held {peak} bytes while downloading {size}"

    # The upload streams too: the client never holds the file (~1.1 MB, past
    # MAX_CONTENT_LENGTH: imports have their own, larger limit).
    upload = tmp_path / "upload.csv"
    upload.write_bytes(csv_file(range(1, 20_001)))
    rows_checked, peak = probe(live_server, admin.token, "import", upload)
    assert rows_checked == 20_000
    assert peak < 1_000_000 < 1024 * 1024 < upload.stat().st_size, f"the client held {peak} bytes while uploading"


def test_update_with_the_database_changed_underneath(app, api):
    """If-Match guards against changes made anywhere, not just through this client."""
    tea = api.create_product(product(1))
    with get_db(app).engine.begin() as conn:
        conn.execute(update(Product.__table__).values(version=Product.__table__.c.version + 1))
    with pytest.raises(PreconditionFailed):
        api.update_product(tea, {"stock": 1})


def test_the_readme_api_key_script(live_server, admin, tmp_path, monkeypatch):
    """README "API keys for scripts": a read-only key from the environment, three lines."""
    secret = Client(live_server, admin.token).create_api_key("accounting", ["orders:read"])["secret"]
    monkeypatch.setenv("MYAPI_API_KEY", secret)
    monkeypatch.chdir(tmp_path)
    api = Client(live_server)
    api.export_orders("orders.csv", created="2026-11-20")
    assert (tmp_path / "orders.csv").read_text().startswith("id,")
    with pytest.raises(Forbidden) as refused:
        api.create_product(product(1))
    assert refused.value.errors == {"scope": "products:write"}


def test_export_progress_is_rows_out_of_the_servers_count(tmp_path, api, shop, capsys):
    """Issue 18: the bar was a bare byte counter; it counts products (CSV, NDJSON) out of X-Total-Count."""
    api.import_products(io.BytesIO(csv_file(range(1, 31))))  # each description is quoted, with a comma
    api.export_products(tmp_path / "tea.csv", category="tea", max_price="10.00", progress=True)
    assert "8/8" in capsys.readouterr().err
    api.export_products(tmp_path / "all.ndjson", format="ndjson", progress=True)
    assert "30/30" in capsys.readouterr().err
    shop.place_order([(2, 2), (3, 1)], "1 High Street")
    shop.export_orders(tmp_path / "orders.csv", progress=True)  # one row per order line: no total to show
    shown = capsys.readouterr().err
    assert " 2 rows" in shown and "/" not in shown.split("download:")[-1].split("[")[0]


def test_row_counter_counts_csv_records_across_any_chunking():
    from myapi.client import _RowCounter

    data = b'id,name,description\r\n1,a,"Two\nlines, ""quoted"""\r\n2,b,\r\n3,c,"A\r\n\n""b"""\r\n'
    for size in range(1, len(data) + 1):
        counter = _RowCounter(csv=True)
        assert sum(counter(data[i:i + size]) for i in range(0, len(data), size)) == 3, size
    assert _RowCounter(csv=False)(b'{"a": "x\\ny"}\n{"a": 2}\n') == 2  # NDJSON escapes line breaks
