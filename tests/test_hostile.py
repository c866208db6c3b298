"""Hostile input: nothing here may produce a 500 or write anything.

Runs on SQLite and, in the PostgreSQL run, on PostgreSQL, which is stricter
(NUL in text, string lengths, integer ranges are errors there).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from myapi.app import create_app
from myapi.db import get_db
from myapi.models import IdempotencyKey, Order, Product, User

API = "/api/v1"
TABLES = (User, Product, Order, IdempotencyKey)


@pytest.fixture
def product(app):
    with get_db(app).session() as session, session.begin():
        session.add(Product(sku="P-1", name="Pen", category="stationery", price=Decimal("1.00"), stock=5))


@pytest.fixture
def snapshot(db_session):
    """Row counts before the hostile request, to compare after it."""

    def counts():
        db_session.rollback()
        return {model.__tablename__: db_session.scalar(select(func.count()).select_from(model)) for model in TABLES}

    return counts


def assert_problem(response, *statuses):
    assert response.status_code in statuses, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == response.status_code and body["request_id"]


SIGNUP = {"username": "hostile", "email": "h@example.com", "password": "a-long-password"}
PRODUCT = {"sku": "H-1", "name": "Hostile", "category": "misc", "price": "1.00", "stock": 1}


@pytest.mark.parametrize("field,value", [
    ("username", "nul\x00byte"), ("email", "a\x00@example.com"), ("password", "pass\x00word-long"),
    ("username", "x" * 100_000), ("email", "a" * 300 + "@example.com"), ("password", "p" * 5000),
    ("username", ["a", "list"]), ("email", {"an": "object"}), ("user_priority", 2**64),
    ("user_priority", -(2**63) - 1), ("user_priority", 1e308), ("user_priority", "1e3"),
    ("username", "bad\u2028line"),
])
def test_hostile_signups(client, snapshot, field, value):
    before = snapshot()
    response = client.post(f"{API}/users", json={**SIGNUP, field: value})
    assert_problem(response, 400)
    assert field in response.get_json()["errors"]
    assert snapshot() == before


@pytest.mark.parametrize("field,value", [
    ("name", "x" * 201), ("sku", "s" * 65), ("category", "c" * 65), ("description", "d" * 5001),
    ("name", "nul\x00"), ("description", "nul\x00in text"), ("stock", 2**31), ("stock", 10**30),
    ("price", "1E3"), ("price", "Infinity"), ("price", "-0"), ("price", 10**20),
    ("price", "19.999"), ("price", [1]), ("is_available", "yes please"), ("sku", ""),
])
def test_hostile_products(client, admin, snapshot, field, value):
    before = snapshot()
    response = client.post(f"{API}/products", json={**PRODUCT, field: value}, headers=admin.headers)
    assert_problem(response, 400)
    assert field in response.get_json()["errors"]
    assert snapshot() == before


@pytest.mark.parametrize("raw", [
    b'{"price": NaN}', b'{"price": Infinity}', b'{"a": 1,}', b"\xff\xfe{}", b'{"name": "\xc3\x28"}',
    b'{"name": "\\ud800"}', b"[]", b"", b"{" * 5000,
])
def test_broken_json_bodies(client, admin, snapshot, raw):
    before = snapshot()
    response = client.post(f"{API}/products", data=raw, content_type="application/json", headers=admin.headers)
    assert_problem(response, 400)
    assert snapshot() == before


def test_invalid_utf8_in_a_form_body_is_not_a_500(client, snapshot):
    before = snapshot()
    response = client.post(f"{API}/users", data=b"username=\xff\xfe&email=x%40y.z&password=aaaaaaaaaaaa",
                           content_type="application/x-www-form-urlencoded")
    assert_problem(response, 400)
    assert snapshot() == before


@pytest.mark.parametrize("query", [
    "page=0", "page=-1", "page=99999999999999999999", "per_page=0", "per_page=1000", "page=1&page=2",
    "sort=name&sort=price", "q=nul%00", "q=" + "x" * 200, "min_price=1e2", "min_price=nan",
    "category=%ff%fe", "sort=" + ",".join(["name"] * 50), "updated_since=99999-01-01",
])
def test_hostile_queries(client, product, query):
    assert_problem(client.get(f"{API}/products?{query}"), 400)


@pytest.mark.parametrize("path", [
    "/products/0", "/products/-1", "/products/99999999999999999999", "/products/2147483648", "/products/1.5",
    "/users/9223372036854775808", "/orders/abc",
])
def test_ids_out_of_range_are_404(client, product, path):
    assert_problem(client.get(f"{API}{path}"), 404)


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer " + "x" * 8000},
    {"Authorization": "Basic !!!not-base64!!!"},
    {"Authorization": "Negotiate abc"},
    {"Authorization": "Bearer \x01\x02"},
])
def test_hostile_authorization_headers(client, headers):
    assert_problem(client.get(f"{API}/users/me", headers=headers), 401)


def test_hostile_basic_credentials_on_sign_in(client, snapshot):
    before = snapshot()
    for auth in (("x" * 10_000, "y"), ("\x00", "\x00"), ("", "")):
        assert_problem(client.post(f"{API}/tokens", auth=auth), 401)
    assert_problem(client.post(f"{API}/tokens", headers={"Authorization": "Basic !!!"}), 401)
    assert snapshot()["users"] == before["users"]


@pytest.mark.parametrize("if_match", ['"' + "v" * 5000 + '"', "garbage", 'W/"v1", "v2"' * 200, '""', "*,*"])
def test_hostile_if_match_never_writes_or_500s(client, admin, product, db_session, if_match):
    response = client.patch(f"{API}/products/1", json={"stock": 0}, headers={**admin.headers, "If-Match": if_match})
    assert response.status_code in (200, 412)
    if response.status_code == 412:
        db_session.rollback()
        assert db_session.get(Product, 1).stock == 5


def test_hostile_if_none_match(client, product):
    response = client.get(f"{API}/products/1", headers={"If-None-Match": "x" * 5000})
    assert response.status_code == 200


@pytest.mark.parametrize("accept", ["x" * 5000, "text/csv;q=abc", "*/*;q=-1", ";;;,,,", "application/json;q=0"])
def test_hostile_accept_headers(client, accept):
    response = client.get(f"{API}/health", headers={"Accept": accept})
    assert response.status_code in (200, 406)
    if response.status_code == 406:
        assert_problem(response, 406)


@pytest.mark.parametrize("key", ["k" * 10_000, "\x00", "tab\tkey", "\x7f"])
def test_hostile_idempotency_keys(client, customer, product, snapshot, key):
    before = snapshot()
    response = client.post(f"{API}/orders", json={"items": [{"product_id": 1, "quantity": 1}],
                                                  "shipping_address": "x"},
                           headers={**customer.headers, "Idempotency-Key": key.encode().decode("latin-1")})
    assert_problem(response, 400)
    assert snapshot() == before


def test_huge_header_of_unknown_name_is_harmless(client):
    assert client.get(f"{API}/health", headers={"X-Anything": "z" * 60_000}).status_code == 200


# -- database outage ----------------------------------------------------------------


class CuttableProxy:
    """A TCP proxy between the app and PostgreSQL that the test can cut and restore."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()

    def cut(self):
        self.open = False
        with self.lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                    connection.close()
                except OSError:
                    pass
            self.connections.clear()

    def restore(self):
        self.open = True

    def close(self):
        self.cut()
        self.listener.close()


@pytest.mark.skipif(not os.environ.get("MYAPI_TEST_DATABASE_URL"),
                    reason="the outage test needs PostgreSQL (MYAPI_TEST_DATABASE_URL)")
def test_database_outage_is_503_and_recovery_is_immediate(app_config, product):
    from sqlalchemy.engine import make_url

    url = make_url(app_config["DATABASE_URL"])
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        app = create_app({**app_config, "DATABASE_URL": proxied})
        client = app.test_client()
        assert client.get(f"{API}/products/1").status_code == 200  # a pooled connection now exists

        proxy.cut()  # the database goes away mid-run
        for path in ("/products/1", "/products", "/health"):
            assert_problem(client.get(f"{API}{path}"), 503)
        response = client.post(f"{API}/users", json=SIGNUP)
        assert_problem(response, 503)
        assert response.headers["Retry-After"]
        assert "psycopg" not in response.get_data(as_text=True)

        proxy.restore()  # back: the very next requests succeed, no stale-connection 500s
        assert client.get(f"{API}/products/1").status_code == 200
        assert client.get(f"{API}/health").status_code == 200
        assert client.post(f"{API}/users", json=SIGNUP).status_code == 201
        get_db(app).engine.dispose()
    finally:
        proxy.close()


TERMINATED_APP = "myapi-terminate-test"


def _terminated_after_one_read(app_config):
    """An app (its client) that has read once, whose pooled connections the server then ended.

    The app's connections carry an application_name, so only they are ended:
    other jobs may share the database.
    """
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from myapi.db import make_engine

    if not app_config["DATABASE_URL"].startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    named = make_url(app_config["DATABASE_URL"]).update_query_dict({"application_name": TERMINATED_APP})
    app = create_app({**app_config, "DATABASE_URL": named.render_as_string(hide_password=False)})
    client = app.test_client()
    assert client.get(f"{API}/products/1").status_code == 200
    admin_engine = make_engine(app_config["DATABASE_URL"])
    with admin_engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND application_name = :name"),
                     {"name": TERMINATED_APP})
    admin_engine.dispose()
    return app, client


def test_terminated_connections_are_replaced_not_reported(app_config, product):
    """pg_terminate_backend on the app's connections (PostgreSQL): the next request still works."""
    app, client = _terminated_after_one_read(app_config)
    assert client.get(f"{API}/products/1").status_code == 200
    get_db(app).engine.dispose()


def test_a_read_on_a_connection_ended_under_it_runs_again(app_config, product, monkeypatch):
    """The race the checkout check cannot see: the server ends the connection just after checkout.

    With the check switched off, every pooled connection is dead when handed
    out; a GET still answers 200 (run again once on a fresh connection).
    """
    import myapi.db

    monkeypatch.setattr(myapi.db, "_discard_if_closed_by_server", lambda *args: None)
    app, client = _terminated_after_one_read(app_config)
    assert client.get(f"{API}/products/1").status_code == 200
    get_db(app).engine.dispose()
