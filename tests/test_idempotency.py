"""Idempotency-Key on every POST that creates data."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from contextlib import contextmanager
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from myapi.db import get_db
from myapi.models import IdempotencyKey, Order, Product, User
from myapi.services import idempotency

API = "/api/v1"
ORDER = {"items": [{"product_id": 1, "quantity": 2}], "shipping_address": "1 High Street"}


@pytest.fixture
def product(app):
    with get_db(app).session() as session, session.begin():
        session.add(Product(sku="P-1", name="Pencil", category="stationery", price=Decimal("0.10"), stock=10))


def count(db_session, model) -> int:
    db_session.rollback()
    return db_session.scalar(select(func.count()).select_from(model))


def post_order(client, account, key, body=ORDER):
    return client.post(f"{API}/orders", json=body, headers={**account.headers, "Idempotency-Key": key})


def test_a_retry_replays_the_first_answer_and_creates_nothing(client, customer, product, db_session):
    first = post_order(client, customer, "order-1")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    retry = post_order(client, customer, "order-1")
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json() == first.get_json()
    assert retry.headers["Location"] == first.headers["Location"]
    assert retry.headers["ETag"] == first.headers["ETag"]
    assert retry.mimetype == "application/json"
    assert count(db_session, Order) == 1
    assert db_session.get(Product, 1).stock == 8


def test_same_key_with_another_body_is_422(client, customer, product, db_session):
    assert post_order(client, customer, "k").status_code == 201
    other = post_order(client, customer, "k", {**ORDER, "shipping_address": "Elsewhere"})
    assert other.status_code == 422
    assert other.mimetype == "application/problem+json"
    assert other.get_json()["type"] == "urn:myapi:problem:idempotency-key-reused"
    assert count(db_session, Order) == 1


def test_same_key_on_another_path_is_422(client, admin, product, db_session):
    body = {"sku": "X-1", "name": "X", "category": "misc", "price": "1.00"}
    assert client.post(f"{API}/products", json=body, headers={**admin.headers, "Idempotency-Key": "p"}
                       ).status_code == 201
    response = client.post(f"{API}/orders", json=ORDER, headers={**admin.headers, "Idempotency-Key": "p"})
    assert response.status_code == 422
    assert count(db_session, Order) == 0


def test_keys_are_scoped_per_user(client, make_account, product, db_session):
    alice, bob = make_account(), make_account()
    assert post_order(client, alice, "shared-key").status_code == 201
    response = post_order(client, bob, "shared-key")
    assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
    assert count(db_session, Order) == 2


def test_failures_are_not_stored(client, customer, product, db_session):
    too_many = {"items": [{"product_id": 1, "quantity": 50}], "shipping_address": "x"}
    assert post_order(client, customer, "retry-me", too_many).status_code == 409
    assert count(db_session, IdempotencyKey) == 0
    # The same key can be used once the request is fixed.
    assert post_order(client, customer, "retry-me").status_code == 201


def test_validation_errors_are_not_stored(client, customer, product, db_session):
    assert post_order(client, customer, "v", {"items": []}).status_code == 400
    assert count(db_session, IdempotencyKey) == 0


def test_signup_is_idempotent_for_anonymous_callers(client, db_session):
    body = {"username": "newbie", "email": "n@example.com", "password": "a-long-password"}
    first = client.post(f"{API}/users", json=body, headers={"Idempotency-Key": "signup-1"})
    retry = client.post(f"{API}/users", json=body, headers={"Idempotency-Key": "signup-1"})
    assert first.status_code == retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert count(db_session, User) == 1


def test_import_is_idempotent(client, admin, db_session):
    body = b"sku,name,category,price,stock\r\nA-1,A,misc,1.00,3\r\n"
    headers = {**admin.headers, "Idempotency-Key": "import-1", "Content-Type": "text/csv"}
    first = client.post(f"{API}/products/import", data=body, headers=headers)
    retry = client.post(f"{API}/products/import", data=body, headers=headers)
    assert first.status_code == retry.status_code == 200
    assert first.get_json() == retry.get_json()
    assert {name: first.get_json()[name] for name in ("created", "updated", "unchanged", "rows", "dry_run",
                                                      "import_id")} == {
        "created": 1, "updated": 0, "unchanged": 0, "rows": 1, "dry_run": False, "import_id": 1}
    assert retry.headers["Idempotent-Replayed"] == "true"
    db_session.rollback()
    assert db_session.scalars(select(Product.version)).one() == 1  # not imported twice


def order_digest(app, body: bytes) -> str:
    return hmac.new(app.config["SECRET_KEY"].encode(), b"POST\0/api/v1/orders\0\0application/json\0" + body,
                    hashlib.sha256).hexdigest()


def unfinished_claim(app, account, key: str, request_hash: str, *, created=None) -> None:
    """A claim row with no answer, as a request that is working (or died working) leaves it."""
    from myapi.models import utcnow

    created = created or utcnow()
    with get_db(app).session() as session, session.begin():
        session.add(IdempotencyKey(scope=f"user:{account.id}", key=key, method="POST", path="/api/v1/orders",
                                   request_hash=request_hash, date_created=created,
                                   expires_at=created + dt.timedelta(hours=24)))


@contextmanager
def live_owner(app, account, key: str):
    """Hold the key's owner lock, as the live request that claimed it does (services/owner_locks.py).

    On PostgreSQL the lock belongs to this session's transaction; on SQLite
    it is this process's record lock, which the app's requests (run in this
    process by the test client) see through the process's own set.
    """
    with get_db(app).session(write=True) as session:
        lock = idempotency.owner_lock(session, scope=f"user:{account.id}", key=key)
        assert lock.acquire()
        try:
            yield
        finally:
            lock.release()
            session.rollback()


def test_an_unfinished_claim_with_a_live_owner_is_a_409(client, customer, product, app, db_session):
    """A duplicate that arrives while the first request (same body) still runs."""
    body = json.dumps(ORDER).encode()
    unfinished_claim(app, customer, "busy", order_digest(app, body))
    with live_owner(app, customer, "busy"):
        response = client.post(f"{API}/orders", data=body, content_type="application/json",
                               headers={**customer.headers, "Idempotency-Key": "busy"})
        other = post_order(client, customer, "busy", {**ORDER, "shipping_address": "Elsewhere"})
    assert response.status_code == 409
    assert response.get_json()["type"] == "urn:myapi:problem:idempotency-key-in-progress"
    assert other.status_code == 422  # another request with a key in use is still a reuse
    assert count(db_session, Order) == 0
    # The owner gone (here: its lock given up) with no answer: the next retry takes the key over.
    assert post_order(client, customer, "busy").status_code == 201
    assert count(db_session, Order) == 1


def test_a_live_owner_that_is_still_claiming_is_a_409(client, customer, product, app, db_session):
    """The owner takes its lock before its claim row exists: no row yet is still "in progress"."""
    with live_owner(app, customer, "claiming"):
        response = post_order(client, customer, "claiming")
    assert response.status_code == 409
    assert count(db_session, IdempotencyKey) == 0 and count(db_session, Order) == 0


def test_a_finished_key_replays_even_while_a_duplicate_holds_the_lock(client, customer, product, app, db_session):
    first = post_order(client, customer, "done")
    with live_owner(app, customer, "done"):
        retry = post_order(client, customer, "done")
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json() == first.get_json()
    assert count(db_session, Order) == 1


def test_an_unfinished_claim_without_a_live_owner_is_taken_over_at_once(client, customer, product, app,
                                                                         db_session):
    """A claim whose owner died a moment ago (no lock held) does not block the key: no waiting period."""
    unfinished_claim(app, customer, "orphan", "x")  # another digest, even: its request never finished
    response = post_order(client, customer, "orphan")
    assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
    assert count(db_session, Order) == 1 and count(db_session, IdempotencyKey) == 1
    assert post_order(client, customer, "orphan").headers["Idempotent-Replayed"] == "true"


def test_expired_keys_can_be_used_again(client, customer, product, app, db_session):
    assert post_order(client, customer, "old").status_code == 201
    with get_db(app).session() as session, session.begin():
        session.execute(update(IdempotencyKey).values(expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)))
    again = post_order(client, customer, "old")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert count(db_session, Order) == 2


@pytest.mark.parametrize("key", ["", " padded ", "x" * 256, "tab\there", "caf\u00e9"])
def test_malformed_keys_are_400(client, customer, product, db_session, key):
    response = client.post(f"{API}/orders", json=ORDER,
                           headers={**customer.headers, "Idempotency-Key": key.encode("utf-8").decode("latin-1")})
    assert response.status_code == 400
    assert "Idempotency-Key" in response.get_json()["errors"]
    assert count(db_session, Order) == 0


def test_tokens_ignore_the_header(client, customer):
    body = {"username": customer.username, "password": customer.password}
    first = client.post(f"{API}/tokens", json=body, headers={"Idempotency-Key": "t"})
    second = client.post(f"{API}/tokens", json=body, headers={"Idempotency-Key": "t"})
    assert first.status_code == second.status_code == 201
    assert first.get_json()["token"] != second.get_json()["token"]
