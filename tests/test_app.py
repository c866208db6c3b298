"""The factory, errors as problem+json, negotiation, headers, health, logs."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import func, select

from myapi.app import create_app
from myapi.models import User

API = "/api/v1"


def test_factory_builds_independent_apps(app_config):
    first, second = create_app(app_config), create_app({**app_config, "TOKEN_TTL": 60})
    assert first is not second
    assert first.config["TOKEN_TTL"] == 86400 and second.config["TOKEN_TTL"] == 60
    assert first.extensions["myapi.db"].engine is not second.extensions["myapi.db"].engine


def test_config_reads_the_environment(monkeypatch, app_config):
    monkeypatch.setenv("MYAPI_TOKEN_TTL", "120")
    monkeypatch.setenv("MYAPI_RATELIMIT_ENABLED", "false")
    app = create_app({"DATABASE_URL": app_config["DATABASE_URL"], "SECRET_KEY": "x"})
    assert app.config["TOKEN_TTL"] == 120
    assert app.config["RATELIMIT_ENABLED"] is False


def test_dev_secret_is_made_once_and_kept(tmp_path):
    from myapi.config import load_config

    first = load_config(tmp_path, {"DATABASE_URL": "sqlite://"})["SECRET_KEY"]
    second = load_config(tmp_path, {"DATABASE_URL": "sqlite://"})["SECRET_KEY"]
    assert first == second and len(first) == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_health(client):
    response = client.get(f"{API}/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["version"]


def test_health_is_503_when_the_database_is_gone(app_config):
    app = create_app({**app_config, "DATABASE_URL": "sqlite:////proc/no/such/dir/db.sqlite"})
    response = app.test_client().get(f"{API}/health")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"]
    assert response.get_json()["database"] == "unavailable"


def test_unknown_route_is_problem_json(client):
    for path in ("/api/v1/nope", "/", "/favicon.ico"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["status"] == 404


def test_wrong_method_is_405_with_allow(client):
    response = client.delete(f"{API}/health")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert "GET" in response.headers["Allow"]


def test_malformed_json_is_400_and_writes_nothing(client, db_session):
    response = client.post(f"{API}/users", data='{"username": "x",', content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["title"] == "Malformed JSON"
    assert db_session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "42", "null"])
def test_json_that_is_not_an_object_is_400(client, body):
    response = client.post(f"{API}/users", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_deeply_nested_json_is_400(client):
    body = "[" * 100_000 + "]" * 100_000
    response = client.post(f"{API}/users", data=body, content_type="application/json")
    assert response.status_code in (400, 413)
    assert response.mimetype == "application/problem+json"


def test_other_content_types_are_415(client, db_session):
    response = client.post(f"{API}/users", data="username=x", content_type="text/plain")
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"
    assert db_session.scalar(select(func.count()).select_from(User)) == 0


def test_oversized_body_is_413(client, db_session):
    big = "x" * (1024 * 1024 + 10)
    response = client.post(f"{API}/users", data=json.dumps({"username": big}), content_type="application/json")
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert db_session.scalar(select(func.count()).select_from(User)) == 0


def test_query_strings_parse_without_a_json_content_type(client, admin):
    # flask-restful 0.3.10 on Werkzeug 3 would answer 415 here.
    response = client.get(f"{API}/users?per_page=1", headers=admin.headers)
    assert response.status_code == 200


@pytest.mark.parametrize("accept", ["application/xml", "text/html", "image/png"])
def test_unproducible_accept_is_406(client, accept):
    response = client.get(f"{API}/health", headers={"Accept": accept})
    assert response.status_code == 406
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/*", "text/html, */*;q=0.8"])
def test_json_is_the_default(client, accept):
    headers = {"Accept": accept} if accept else {}
    response = client.get(f"{API}/health", headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "application/json"


def test_format_parameter_overrides_accept(client, customer):
    response = client.get(f"{API}/users/me?format=csv", headers={**customer.headers, "Accept": "application/json"})
    assert response.mimetype == "text/csv"
    response = client.get(f"{API}/users/me?format=xml", headers=customer.headers)
    assert response.status_code == 406


def test_security_headers(client, customer):
    response = client.get(f"{API}/health")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Cache-Control" not in response.headers
    assert client.get(f"{API}/users/me", headers=customer.headers).headers["Cache-Control"] == "no-store"


def test_request_id_is_honoured_or_generated(client):
    response = client.get(f"{API}/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    generated = client.get(f"{API}/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert generated.headers["X-Request-ID"] != "bad id\twith spaces"
    assert len(generated.headers["X-Request-ID"]) == 32


def test_unexpected_errors_are_500_problem_without_a_trace(app, caplog, monkeypatch):
    from myapi.resources import health

    def explode(self):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(health.Health, "get", explode)
    with caplog.at_level(logging.ERROR, logger="myapi"):
        response = app.test_client().get(f"{API}/health", headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    body = response.get_data(as_text=True)
    assert "secret internals" not in body and "Traceback" not in body
    assert response.get_json()["request_id"] == "trace-me"
    assert any("trace-me" in r.getMessage() and r.exc_info for r in caplog.records)


def test_one_json_log_line_per_request(client, customer, caplog):
    with caplog.at_level(logging.INFO, logger="myapi.access"):
        client.get(f"{API}/users/me", headers={**customer.headers, "X-Request-ID": "log-me"})
    records = [r for r in caplog.records if r.name == "myapi.access"]
    assert len(records) == 1
    fields = records[0].fields
    assert fields["method"] == "GET" and fields["path"] == "/api/v1/users/me" and fields["status"] == 200
    assert fields["request_id"] == "log-me" and fields["user_id"] == customer.id
    assert isinstance(fields["ms"], float)
    from myapi.app import JsonFormatter

    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == "log-me"


def test_reads_run_without_a_transaction_on_postgresql_and_writes_in_one(app, client, admin):
    """GET costs one round trip per statement on PostgreSQL: no BEGIN, no ROLLBACK (autocommit)."""
    from sqlalchemy import event

    from myapi.db import get_db

    seen: list[tuple[str, bool]] = []

    def record(conn, cursor, statement, *args):
        driver = conn.connection.driver_connection
        seen.append((statement.split()[0].upper(), getattr(driver, "autocommit", None)))

    engine = get_db(app).engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.get(f"{API}/products?per_page=5").status_code == 200
        reads = list(seen)
        seen.clear()
        created = client.post(f"{API}/products", json={"sku": "TX-1", "name": "Tx", "category": "tea",
                                                      "price": "1.00"}, headers=admin.headers)
        assert created.status_code == 201
        writes = list(seen)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert [verb for verb, _ in reads if verb != "BEGIN"] == ["SELECT", "SELECT"]  # COUNT and the page
    if engine.dialect.name == "postgresql":
        assert all(autocommit is True for _, autocommit in reads)
        assert writes and all(autocommit is False for _, autocommit in writes)
