"""The factory, errors as problem+json, negotiation, headers, health, logs."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess

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
    for path in ("/api/v1/nope", "/favicon.ico"):
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
    # Issue 18: the answer names the limit and the setting that sets it.
    assert response.get_json()["detail"] == (
        "The request body is larger than 1 MiB (1048576 bytes), the limit set by MYAPI_MAX_CONTENT_LENGTH.")
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
    # The change feed's watermark (a walk starts here), COUNT and the page: reads only.
    assert {verb for verb, _ in reads if verb != "BEGIN"} == {"SELECT"} and len(reads) >= 2
    if engine.dialect.name == "postgresql":
        assert all(autocommit is True for _, autocommit in reads)
        assert writes and all(autocommit is False for _, autocommit in writes)


# -- the first hour of a new user (issue 18) -----------------------------------------


INDEX_LINKS = {"docs": f"{API}/docs", "openapi": f"{API}/openapi.json", "health": f"{API}/health"}


@pytest.mark.parametrize("path", ["/", API, f"{API}/"])
def test_the_root_and_the_prefix_answer_an_index_of_links(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert body["links"] == INDEX_LINKS and body["name"] == "myapi" and body["version"]
    for link in body["links"].values():
        assert client.get(link).status_code == 200


@pytest.mark.parametrize(("method", "path", "meant"), [
    ("get", "/products", f"{API}/products"),
    ("post", "/products", f"{API}/products"),
    ("get", "/products/7", f"{API}/products/7"),
    ("get", f"{API}/products/", f"{API}/products"),
    ("get", "/products/", f"{API}/products"),
    ("delete", f"{API}/orders/3/", f"{API}/orders/3"),
    ("get", f"{API}/docs/", f"{API}/docs"),
    ("get", "/health", f"{API}/health"),
])
def test_a_url_without_the_prefix_or_with_a_trailing_slash_says_what_was_meant(client, method, path, meant):
    response = getattr(client, method)(path)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == (
        f"No such URL: {path}. Did you mean {meant}? Every URL of the API is listed at {API}/docs.")
    assert response.headers["Link"] == f'<{API}/docs>; rel="service-doc", <{API}/openapi.json>; rel="service-desc"'


@pytest.mark.parametrize("path", ["/nothing", f"{API}/nothing", f"{API}/products/0", "/favicon.ico"])
def test_any_other_unknown_url_points_at_the_docs(client, path):
    response = client.get(path)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == (
        f"No such URL: {path}. The API is under {API}/ (an index of links); every URL is listed at {API}/docs, "
        f"and described in {API}/openapi.json.")
    assert "service-doc" in response.headers["Link"]


def test_a_missing_item_keeps_its_own_404(client):
    response = client.get(f"{API}/products/99")
    assert response.status_code == 404 and response.get_json()["detail"] == "No product 99."
    assert "Link" not in response.headers


SIGNUP = {"username": "zoe", "email": "zoe@example.com", "password": "a-long-password"}
LOOKS_LIKE_JSON = ("The body looks like JSON but was sent as application/x-www-form-urlencoded: "
                   "send Content-Type: application/json.")
EVERY_BODY_TYPE = "application/json, application/x-www-form-urlencoded, multipart/form-data"


def test_json_sent_as_a_form_says_to_send_content_type_json(client, db_session):
    """curl -d '{...}' sends application/x-www-form-urlencoded: it used to be a 400 listing every required
    field plus the whole JSON text as one unknown field."""
    response = client.post(f"{API}/users", data=json.dumps(SIGNUP), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == LOOKS_LIKE_JSON
    assert response.headers["Accept-Post"] == EVERY_BODY_TYPE
    assert db_session.scalar(select(func.count()).select_from(User)) == 0

    unlabelled = client.post(f"{API}/users", data="  \n" + json.dumps(SIGNUP), content_type="")
    assert unlabelled.status_code == 415
    assert unlabelled.get_json()["detail"] == ("The body looks like JSON but was sent without a Content-Type: "
                                               "send Content-Type: application/json.")
    # A real form still works, and the same JSON labelled as JSON.
    form = "username=zoe&email=zoe%40example.com&password=a-long-password"
    assert client.post(f"{API}/users", data=form, content_type="application/x-www-form-urlencoded").status_code == 201


def test_json_sent_as_a_form_to_a_json_only_operation(client, customer):
    body = json.dumps({"items": [{"product_id": 1, "quantity": 1}], "shipping_address": "1 High Street"})
    response = client.post(f"{API}/orders", data=body, content_type="application/x-www-form-urlencoded",
                           headers=customer.headers)
    assert response.status_code == 415 and response.get_json()["detail"] == LOOKS_LIKE_JSON


def test_a_415_names_every_type_the_operation_accepts(client, admin):
    response = client.post(f"{API}/users", data="username=x", content_type="text/plain")
    assert response.get_json()["detail"] == ("text/plain is not accepted here: send the body as application/json, "
                                             "application/x-www-form-urlencoded or multipart/form-data.")
    assert response.headers["Accept-Post"] == EVERY_BODY_TYPE
    imported = client.post(f"{API}/products/import", data="sku\n", content_type="application/json",
                           headers=admin.headers)
    assert imported.get_json()["detail"] == ("application/json is not accepted here: send the body as text/csv or "
                                             "multipart/form-data.")


def test_curl_d_with_json_as_a_new_user_types_it(live_server, db_session):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    done = subprocess.run([curl, "-s", "-d", json.dumps(SIGNUP), "-w", "\n%{http_code} %{content_type}",
                           f"{live_server}{API}/users"], capture_output=True, text=True, timeout=30, check=True)
    body, _, status = done.stdout.rpartition("\n")
    assert status == "415 application/problem+json"
    assert json.loads(body)["detail"] == LOOKS_LIKE_JSON


VALID_PRODUCT_LIST_PARAMETERS = ("Valid parameters: category, q, min_price, max_price, in_stock, is_available, "
                                 "updated_since, sort, page, per_page, cursor, count, fields, format.")


@pytest.mark.parametrize(("query", "message"), [
    ("catgory=tea", "Unknown query parameter. Did you mean `category`? " + VALID_PRODUCT_LIST_PARAMETERS),
    ("Category=tea", "Unknown query parameter. Did you mean `category`? " + VALID_PRODUCT_LIST_PARAMETERS),
    ("perpage=5", "Unknown query parameter. Did you mean `per_page`? " + VALID_PRODUCT_LIST_PARAMETERS),
    ("colour=red", "Unknown query parameter. " + VALID_PRODUCT_LIST_PARAMETERS),
])
def test_an_unknown_query_parameter_suggests_the_valid_ones(client, query, message):
    response = client.get(f"{API}/products?{query}")
    assert response.status_code == 400
    assert response.get_json()["errors"] == {query.split("=")[0]: message}
