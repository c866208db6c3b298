"""Scoped API keys (DESIGN §10) through HTTP: the secret once, scopes, the role ceiling, revocation, limits."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from decimal import Decimal

import pytest
from conftest import make_test_config
from sqlalchemy import func, select

from myapi.app import create_app
from myapi.db import get_db
from myapi.models import ApiKey, Order, Product, utcnow

API = "/api/v1"
ALL_READS = ["products:read", "orders:read", "users:read"]


@pytest.fixture
def tea(app) -> int:
    with get_db(app).session() as session, session.begin():
        product = Product(sku="TEA-1", name="Tea", category="tea", price=Decimal("4.50"), stock=10)
        session.add(product)
        session.flush()
        return product.id


def create_key(client, account, scopes, name="script", **extra):
    return client.post(f"{API}/api-keys", headers=account.headers, json={"name": name, "scopes": scopes, **extra})


def key_headers(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def make_key(client, account, scopes, **extra) -> str:
    response = create_key(client, account, scopes, **extra)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["secret"]


def count(db_session, model) -> int:
    return db_session.scalar(select(func.count()).select_from(model))


# -- creating and reading: the secret once --------------------------------------------------


def test_create_shows_the_secret_once_and_stores_only_its_hash(client, customer, db_session, caplog):
    caplog.set_level(logging.DEBUG, logger="myapi")
    response = create_key(client, customer, ["orders:read", "products:read"], name="nightly export")
    assert response.status_code == 201
    body = response.get_json()
    secret = body["secret"]
    assert secret.startswith("myapi_") and len(secret) >= len("myapi_") + 43  # 32 random bytes, base64url
    assert body["scopes"] == ["products:read", "orders:read"]  # the catalogue's order
    assert body["name"] == "nightly export" and body["user_id"] == customer.id
    assert body["prefix"] == secret[:14] and body["last_used_at"] is None and body["revoked_at"] is None
    assert response.headers["Location"] == f"{API}/api-keys/{body['id']}"

    stored = db_session.get(ApiKey, body["id"])
    assert stored.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in " ".join(str(getattr(stored, column.key)) for column in ApiKey.__table__.columns)

    answers = [client.get(f"{API}/api-keys", headers=customer.headers),
               client.get(f"{API}/api-keys?format=csv", headers=customer.headers),
               client.get(f"{API}/api-keys/{body['id']}", headers=customer.headers),
               client.get(f"{API}/api-keys/{body['id']}?format=csv", headers=customer.headers)]
    for answer in answers:
        assert answer.status_code == 200
        text = answer.get_data(as_text=True)
        assert secret not in text and secret[14:30] not in text and "secret" not in text
    assert client.get(f"{API}/api-keys", headers=customer.headers).get_json()["data"][0]["prefix"] == secret[:14]
    assert client.get(f"{API}/orders", headers=key_headers(secret)).status_code == 200
    assert not any(secret in record.getMessage() or secret in str(getattr(record, "fields", ""))
                   for record in caplog.records)


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "x", "scopes": []}, "scopes"),
    ({"name": "x", "scopes": ["orders:read", "orders:read"]}, "scopes"),
    ({"name": "x", "scopes": ["orders:delete"]}, "scopes"),
    ({"name": "x", "scopes": "orders:read"}, None),  # a JSON string is one scope: accepted
    ({"name": "", "scopes": ["orders:read"]}, "name"),
    ({"scopes": ["orders:read"]}, "name"),
    ({"name": "x", "scopes": ["orders:read"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"name": "x", "scopes": ["orders:read"], "expires_at": "soon"}, "expires_at"),
    ({"name": "x", "scopes": ["orders:read"], "user_id": 1}, "user_id"),  # strict: no minting for others
])
def test_invalid_key_requests_are_400_and_create_nothing(client, customer, db_session, body, field):
    response = client.post(f"{API}/api-keys", headers=customer.headers, json=body)
    if field is None:
        assert response.status_code == 201
        return
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["errors"]
    assert count(db_session, ApiKey) == 0


def test_a_key_never_exceeds_its_owners_role(client, customer, admin, db_session):
    refused = create_key(client, customer, ["orders:read", "reports:read"])
    assert refused.status_code == 403
    assert "reports:read" in refused.get_json()["errors"]["scopes"]
    assert count(db_session, ApiKey) == 0
    for scope in ("products:write", "webhooks:manage"):
        assert create_key(client, customer, [scope]).status_code == 403
    assert create_key(client, admin, ["reports:read", "products:write", "webhooks:manage"]).status_code == 201


# -- using a key: scopes and object rules ------------------------------------------------


def test_a_request_outside_the_scopes_is_403_naming_the_scope_and_writes_nothing(client, customer, tea,
                                                                                  db_session):
    secret = make_key(client, customer, ["products:read", "orders:read"])
    response = client.post(f"{API}/orders", headers=key_headers(secret),
                           json={"items": [{"product_id": tea, "quantity": 1}], "shipping_address": "1 High St"})
    assert response.status_code == 403
    problem = response.get_json()
    assert problem["type"] == "urn:myapi:problem:insufficient-scope"
    assert problem["errors"] == {"scope": "orders:write"}
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert count(db_session, Order) == 0 and db_session.get(Product, tea).stock == 10
    assert client.get(f"{API}/products/{tea}", headers=key_headers(secret)).status_code == 200


def test_public_reads_need_the_scope_when_a_key_is_sent(client, customer, tea):
    secret = make_key(client, customer, ["orders:read"])
    assert client.get(f"{API}/products").status_code == 200  # anonymous: fine
    refused = client.get(f"{API}/products", headers=key_headers(secret))
    assert refused.status_code == 403 and refused.get_json()["errors"] == {"scope": "products:read"}


def test_an_admin_key_without_products_write_cannot_write_products(client, admin, tea, db_session):
    secret = make_key(client, admin, ["products:read", "reports:read"])
    for method, url, body in (("post", f"{API}/products", {"sku": "NEW-1", "name": "New", "category": "tea",
                                                          "price": "1.00"}),
                              ("patch", f"{API}/products/{tea}", {"stock": 0}),
                              ("delete", f"{API}/products/{tea}", None)):
        response = getattr(client, method)(url, headers=key_headers(secret), json=body)
        assert response.status_code == 403, (method, response.get_json())
        assert response.get_json()["errors"] == {"scope": "products:write"}
    assert count(db_session, Product) == 1 and db_session.get(Product, tea).stock == 10
    assert client.get(f"{API}/reports/top-customers", headers=key_headers(secret)).status_code == 200
    assert client.get(f"{API}/users", headers=key_headers(secret)).status_code == 403  # no users:read


def test_object_rules_stay_a_customers_key_sees_only_their_orders(client, make_account, tea):
    alice, bob = make_account(), make_account()
    theirs = client.post(f"{API}/orders", headers=bob.headers, json={
        "items": [{"product_id": tea, "quantity": 1}], "shipping_address": "2 Low St"}).get_json()["id"]
    secret = make_key(client, alice, ["orders:read", "orders:write"])
    mine = client.post(f"{API}/orders", headers=key_headers(secret), json={
        "items": [{"product_id": tea, "quantity": 1}], "shipping_address": "1 High St"})
    assert mine.status_code == 201 and mine.get_json()["user_id"] == alice.id
    listed = client.get(f"{API}/orders", headers=key_headers(secret)).get_json()["data"]
    assert [order["id"] for order in listed] == [mine.get_json()["id"]]
    assert client.get(f"{API}/orders/{theirs}", headers=key_headers(secret)).status_code == 404


def test_keys_cannot_manage_keys_or_users_or_sign_out(client, customer, db_session):
    secret = make_key(client, customer, ["orders:read", "orders:write", "users:read", "products:read"])
    for method, url in (("post", f"{API}/api-keys"), ("get", f"{API}/api-keys"), ("delete", f"{API}/api-keys/1"),
                        ("patch", f"{API}/users/me"), ("delete", f"{API}/tokens/current")):
        response = getattr(client, method)(url, headers=key_headers(secret), json={"name": "x",
                                                                                 "scopes": ["orders:read"]})
        assert response.status_code == 403, (method, url, response.get_json())
        assert response.get_json()["errors"] == {"scope": "Sign-in tokens only."}
    assert count(db_session, ApiKey) == 1
    me = client.get(f"{API}/users/me", headers=key_headers(secret))
    assert me.status_code == 200 and me.get_json()["id"] == customer.id


def test_sign_in_tokens_keep_full_rights(client, admin, tea):
    assert client.patch(f"{API}/products/{tea}", headers=admin.headers, json={"stock": 3}).status_code == 200
    assert client.get(f"{API}/api-keys", headers=admin.headers).status_code == 200


# -- revocation, expiry, deactivation --------------------------------------------------------


def test_revoked_expired_and_deactivated_keys_are_401(client, app, customer, admin, db_session):
    revoked = make_key(client, customer, ["orders:read"])
    revoked_id = db_session.scalars(select(ApiKey.id)).one()
    assert client.delete(f"{API}/api-keys/{revoked_id}", headers=customer.headers).status_code == 204
    expiring = make_key(client, customer, ["orders:read"], expires_at="2999-01-01T00:00:00Z")
    with get_db(app).session() as session, session.begin():
        key = session.scalars(select(ApiKey).where(ApiKey.prefix == expiring[:14])).one()
        key.expires_at = utcnow() - dt.timedelta(seconds=1)
    for secret, detail in ((revoked, "The API key is not valid."), (expiring, "The API key has expired."),
                           ("myapi_" + "x" * 43, "The API key is not valid.")):
        response = client.get(f"{API}/orders", headers=key_headers(secret))
        assert response.status_code == 401
        assert response.get_json()["type"] == "urn:myapi:problem:invalid-token"
        assert response.get_json()["detail"] == detail
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]

    live = make_key(client, customer, ["orders:read"])
    assert client.get(f"{API}/orders", headers=key_headers(live)).status_code == 200
    assert client.delete(f"{API}/users/{customer.id}", headers=admin.headers).status_code == 204
    assert client.get(f"{API}/orders", headers=key_headers(live)).status_code == 401
    db_session.rollback()  # a fresh snapshot
    keys = db_session.scalars(select(ApiKey)).all()
    assert len(keys) == 3 and all(key.revoked_at is not None for key in keys)


def test_an_unknown_and_a_revoked_key_cost_the_same(client, customer, count_queries):
    revoked = make_key(client, customer, ["orders:read"])
    client.delete(f"{API}/api-keys/1", headers=customer.headers)
    answers = {}
    for label, secret in (("unknown", "myapi_" + "y" * 43), ("revoked", revoked)):
        with count_queries() as queries:
            response = client.get(f"{API}/orders", headers=key_headers(secret))
        answers[label] = (response.status_code, response.get_json()["detail"], queries.count)
    assert answers["unknown"] == answers["revoked"] == (401, "The API key is not valid.", 1)


def test_others_cannot_see_or_revoke_a_key_but_an_admin_can(client, make_account, admin, db_session):
    owner, other = make_account(), make_account()
    secret = make_key(client, owner, ["orders:read"])
    key_id = db_session.scalars(select(ApiKey.id)).one()
    assert client.get(f"{API}/api-keys/{key_id}", headers=other.headers).status_code == 404
    assert client.delete(f"{API}/api-keys/{key_id}", headers=other.headers).status_code == 404
    assert client.get(f"{API}/api-keys", headers=other.headers).get_json()["data"] == []
    assert client.get(f"{API}/api-keys?user_id={owner.id}", headers=other.headers).status_code == 403
    assert client.get(f"{API}/orders", headers=key_headers(secret)).status_code == 200
    listed = client.get(f"{API}/api-keys?user_id={owner.id}", headers=admin.headers).get_json()["data"]
    assert [key["id"] for key in listed] == [key_id]
    assert client.delete(f"{API}/api-keys/{key_id}", headers=admin.headers).status_code == 204
    assert client.get(f"{API}/orders", headers=key_headers(secret)).status_code == 401
    assert client.get(f"{API}/api-keys?revoked=true", headers=owner.headers).get_json()["data"][0]["id"] == key_id


def test_last_used_is_written_at_most_once_a_minute(client, customer, db_session, count_queries):
    secret = make_key(client, customer, ["orders:read", "orders:write"])
    with count_queries() as queries:
        for _ in range(3):
            assert client.get(f"{API}/orders", headers=key_headers(secret)).status_code == 200
    updates = [s for s in queries.statements if s.lstrip().upper().startswith("UPDATE API_KEYS")]
    assert len(updates) == 1
    first = db_session.scalars(select(ApiKey.last_used_at)).one()
    assert first is not None and utcnow() - first < dt.timedelta(seconds=30)


# -- a bad credential anywhere is a 401 (RFC 6750) ---------------------------------------------


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Bearer myapi_nope", "Basic dXNlcjpwYXNz", "Bearer "])
def test_a_bad_credential_on_a_public_route_is_401(client, header):
    response = client.get(f"{API}/products", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert client.get(f"{API}/products").status_code == 200  # no credentials: anyone


# -- rate limits count per key -------------------------------------------------------------------


def test_rate_limits_count_per_key_across_addresses(database_url, customer):
    app = create_app(make_test_config(database_url, RATELIMIT_ENABLED=True, RATELIMIT_DEFAULT="3/minute",
                                      RATELIMIT_STORAGE_URI="memory://", PROXY_HOPS=1))
    client = app.test_client()
    try:
        secret = make_key(client, customer, ["products:read"])
        statuses = [client.get(f"{API}/products", headers={**key_headers(secret), "X-Forwarded-For": f"10.0.0.{n}"})
                    .status_code for n in range(1, 6)]
        assert statuses[:2] == [200, 200] and 429 in statuses  # the key's budget, whatever the address
        other = client.get(f"{API}/products", headers={"X-Forwarded-For": "10.0.0.9"})
        assert other.status_code == 200  # a fresh address without the key has its own budget
    finally:
        get_db(app).engine.dispose()
