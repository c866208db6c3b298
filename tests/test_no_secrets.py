"""No response ever carries a password or a password hash (DESIGN §3, §6).

One long walk through every route that touches users or credentials, on the
happy path and on the error paths (duplicates, invalid fields, wrong or
malformed passwords, malformed bodies). Every response is recorded, and its
body and every header value are searched for each plaintext password used, for
every hash the database ever held for these users, for hash prefixes
(``$argon2``, ``$2b$``) and for the column name ``password_hash``. The log
records of the same requests get the same check.
"""

from __future__ import annotations

import hashlib
import logging

import pytest
from passlib.hash import bcrypt
from sqlalchemy import select

from myapi.db import get_db
from myapi.models import IdempotencyKey, User

API = "/api/v1"

HASH_MARKERS = ("$argon2", "$2b$", "$2a$", "$2y$", "password_hash")


class Recorder:
    """The test client, keeping every response it gets."""

    def __init__(self, client):
        self.client = client
        self.responses: list[tuple[str, object]] = []

    def __call__(self, method: str, url: str, expect: int | None = None, **kwargs):
        response = self.client.open(url, method=method, **kwargs)
        self.responses.append((f"{method} {url} -> {response.status_code}", response))
        if expect is not None:
            assert response.status_code == expect, (method, url, response.get_data(as_text=True))
        return response


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def response_text(response) -> str:
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    return headers + "\n\n" + response.get_data().decode("utf-8", errors="replace")


def hash_fragments(stored: str) -> set[str]:
    """A stored hash, and its salt and digest parts on their own."""
    fragments = {stored}
    fragments.update(part for part in stored.split("$") if len(part) >= 16)
    return fragments


def keys_of(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in keys_of(item)}
    if isinstance(value, list):
        return {key for item in value for key in keys_of(item)}
    return set()


@pytest.fixture
def stored_hashes(app):
    """``collect()`` adds every password hash now in the database to ``seen``."""

    class Hashes:
        def __init__(self):
            self.seen: set[str] = set()

        def collect(self) -> None:
            with get_db(app).session() as session:
                self.seen.update(session.scalars(select(User.password_hash)))

    return Hashes()


def test_no_response_contains_a_password_or_a_hash(app, client, admin, stored_hashes, caplog):
    caplog.set_level(logging.DEBUG, logger="myapi")
    call = Recorder(client)
    passwords = {admin.password}

    def secret(value: str) -> str:
        passwords.add(value)
        return value

    zoe_password = secret("zoe-first-password")
    yan_password = secret("yan-form-password")
    max_password = secret("max-multipart-password")

    # -- sign-up: JSON, form, multipart ---------------------------------------------
    zoe = call("POST", f"{API}/users", 201, json={"username": "zoe", "email": "zoe@example.com",
                                                  "password": zoe_password})
    zoe_id = zoe.get_json()["id"]
    yan = call("POST", f"{API}/users", 201, data={"username": "yan", "email": "yan@example.com",
                                                  "password": yan_password})
    yan_id = yan.get_json()["id"]
    call("POST", f"{API}/users", 201, data={"username": "max", "email": "max@example.com",
                                            "password": max_password}, content_type="multipart/form-data")
    call("POST", f"{API}/users?format=csv", 201, json={"username": "csv_user", "email": "csv@example.com",
                                                       "password": secret("csv-user-password")})
    # An Idempotency-Key sign-up, and its replay (a stored response).
    keyed = {"username": "kim", "email": "kim@example.com", "password": secret("kim-keyed-password")}
    first = call("POST", f"{API}/users", 201, json=keyed, headers={"Idempotency-Key": "signup-kim"})
    replayed = call("POST", f"{API}/users", 201, json=keyed, headers={"Idempotency-Key": "signup-kim"})
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    assert replayed.get_json() == first.get_json()
    call("POST", f"{API}/users", 422, headers={"Idempotency-Key": "signup-kim"},
         json={**keyed, "password": secret("kim-other-password")})
    stored_hashes.collect()

    # -- sign-up errors ----------------------------------------------------------------
    call("POST", f"{API}/users", 409, json={"username": "zoe", "email": "zoe@example.com",
                                            "password": secret("duplicate-signup-password")})
    call("POST", f"{API}/users", 409, data={"username": "zoe", "email": "other@example.com",
                                            "password": secret("duplicate-form-password")})
    for bad in ("Sh0rt!pw", "long-secret-" * 30, "nul-secret-\x00-password"):
        response = call("POST", f"{API}/users", 400, json={"username": "newbie", "email": "newbie@example.com",
                                                           "password": bad})
        assert "password" in response.get_json()["errors"]
        passwords.update(part for part in bad.split("\x00") if len(part) >= 6)
    call("POST", f"{API}/users", 400, json={"username": "newbie", "email": "newbie@example.com",
                                            "password": ["list-secret-password"]})
    passwords.add("list-secret-password")
    call("POST", f"{API}/users", 400, json={"username": "Bad Name", "email": "not-an-email",
                                            "password": secret("bad-fields-password"), "role": "admin"})
    call("POST", f"{API}/users", 400, data={"username": "newbie", "email": "newbie@example.com",
                                            "password": secret("form-short")[:5]})
    call("POST", f"{API}/users", 400, data=b'{"username": "newbie", "password": "' +
         secret("malformed-json-password").encode() + b'"', content_type="application/json")
    call("POST", f"{API}/users", 400, data=b'{"username": "newbie", "password": "' +
         secret("bad-escape-password").encode() + b'\\x"}', content_type="application/json")
    call("POST", f"{API}/users", 415, data="password=" + secret("plain-text-password"),
         content_type="text/plain")

    # -- sign-in: JSON and Basic, right and wrong --------------------------------------
    zoe_token = call("POST", f"{API}/tokens", 201, json={"username": "zoe", "password": zoe_password}
                     ).get_json()["token"]
    yan_token = call("POST", f"{API}/tokens", 201, auth=("yan", yan_password)).get_json()["token"]
    call("POST", f"{API}/tokens", 201, data={"username": "max", "password": max_password})
    call("POST", f"{API}/tokens", 401, json={"username": "zoe", "password": secret("wrong-json-password")})
    call("POST", f"{API}/tokens", 401, auth=("zoe", secret("wrong-basic-password")))
    call("POST", f"{API}/tokens", 401, auth=("nobody", secret("unknown-user-password")))
    call("POST", f"{API}/tokens", 400, json={"username": "zoe", "password": zoe_password, "extra": "x"})
    # Not a string: refused (400) or simply a wrong password (401), never echoed.
    assert call("POST", f"{API}/tokens", json={"username": "zoe", "password": 12345678901234}
                ).status_code in (400, 401)
    passwords.add("12345678901234")
    call("POST", f"{API}/tokens", 400, data=b'{"username": "zoe", "password": "' +
         secret("broken-signin-json").encode() + b'",}', content_type="application/json")

    # -- bcrypt hashes are accepted and upgraded on sign-in -------------------------------
    legacy_password = secret("legacy-bcrypt-password")
    with get_db(app).session() as session, session.begin():
        session.add(User(username="legacy", email="legacy@example.com", role="customer", is_active=True,
                         password_hash=bcrypt.using(rounds=4).hash(legacy_password)))
    stored_hashes.collect()
    call("POST", f"{API}/tokens", 201, auth=("legacy", legacy_password))
    call("POST", f"{API}/tokens", 401, auth=("legacy", secret("legacy-wrong-password")))
    stored_hashes.collect()
    assert any(value.startswith("$2b$") for value in stored_hashes.seen)

    # -- the user reading and changing itself ----------------------------------------------
    me = call("GET", f"{API}/users/me", 200, headers=bearer(zoe_token))
    call("GET", f"{API}/users/me?format=csv", 200, headers=bearer(zoe_token))
    call("GET", f"{API}/users/me", 200, headers={**bearer(zoe_token), "Accept": "text/csv"})
    call("GET", f"{API}/users/me", 304, headers={**bearer(zoe_token), "If-None-Match": me.headers["ETag"]})
    call("GET", f"{API}/users/{zoe_id}", 200, headers=bearer(zoe_token))
    call("GET", f"{API}/users/{yan_id}", 404, headers=bearer(zoe_token))
    call("GET", f"{API}/users", 403, headers=bearer(zoe_token))
    zoe_password = secret("zoe-second-password")
    call("PATCH", f"{API}/users/me", 200, headers={**bearer(zoe_token), "If-Match": me.headers["ETag"]},
         json={"password": zoe_password})
    stored_hashes.collect()
    call("PATCH", f"{API}/users/me", 412, headers={**bearer(zoe_token), "If-Match": me.headers["ETag"]},
         json={"password": secret("stale-etag-password")})
    call("PATCH", f"{API}/users/me", 400, headers=bearer(zoe_token), json={"password": secret("tiny")[:4]})
    call("PATCH", f"{API}/users/me", 403, headers=bearer(zoe_token),
         json={"password": secret("forbidden-role-password"), "role": "admin"})
    call("PATCH", f"{API}/users/me?format=csv", 200, headers=bearer(zoe_token), json={"user_priority": 2})
    zoe_password = secret("zoe-third-password")
    call("PUT", f"{API}/users/me", 200, headers=bearer(zoe_token),
         json={"username": "zoe", "email": "zoe@example.com", "user_priority": 3, "password": zoe_password})
    stored_hashes.collect()
    call("PUT", f"{API}/users/me", 409, headers=bearer(zoe_token),
         json={"username": "yan", "email": "zoe@example.com", "user_priority": 3,
               "password": secret("put-conflict-password")})
    call("PUT", f"{API}/users/me", 400, headers=bearer(zoe_token),
         json={"username": "zoe", "password": secret("put-missing-fields-password")})
    zoe_token = call("POST", f"{API}/tokens", 201, auth=("zoe", zoe_password)).get_json()["token"]

    # -- the admin on someone else's record, and on the list ----------------------------------
    admin_headers = bearer(admin.token)
    call("GET", f"{API}/users/me", 200, headers=admin_headers)
    yan_read = call("GET", f"{API}/users/{yan_id}", 200, headers=admin_headers)
    call("GET", f"{API}/users/{yan_id}?format=csv", 200, headers=admin_headers)
    yan_password = secret("yan-reset-by-admin")
    call("PATCH", f"{API}/users/{yan_id}", 200, headers={**admin_headers, "If-Match": yan_read.headers["ETag"]},
         json={"password": yan_password, "role": "customer"})
    stored_hashes.collect()
    yan_password = secret("yan-put-by-admin")
    call("PUT", f"{API}/users/{yan_id}", 200, headers=admin_headers,
         data={"username": "yan", "email": "yan@example.com", "user_priority": "4", "password": yan_password})
    stored_hashes.collect()
    call("PATCH", f"{API}/users/{yan_id}", 400, headers=admin_headers,
         json={"password": secret("admin-bad-field-password"), "user_priority": 9})
    call("GET", f"{API}/users", 200, headers=admin_headers)
    call("GET", f"{API}/users?format=csv", 200, headers=admin_headers)
    call("GET", f"{API}/users?per_page=2&page=2&sort=-username", 200, headers={**admin_headers, "Accept": "text/csv"})
    call("GET", f"{API}/users?q=zoe&role=customer&is_active=true", 200, headers=admin_headers)
    call("GET", f"{API}/users?sort=password", 400, headers=admin_headers)
    call("GET", f"{API}/users/{yan_id}", 200, headers={**admin_headers, "Accept": "application/xml, text/csv"})
    call("GET", f"{API}/users/{yan_id}", 406, headers={**admin_headers, "Accept": "application/xml"})
    call("POST", f"{API}/tokens", 201, auth=("yan", yan_password))

    # -- signing out and deactivation ---------------------------------------------------------
    call("DELETE", f"{API}/tokens/current", 204, headers=bearer(yan_token))
    call("GET", f"{API}/users/me", 401, headers=bearer(yan_token))
    call("DELETE", f"{API}/users/{zoe_id}", 204, headers=admin_headers)
    call("GET", f"{API}/users/me", 401, headers=bearer(zoe_token))
    call("POST", f"{API}/tokens", 401, auth=("zoe", zoe_password))
    call("GET", f"{API}/users/{zoe_id}", 200, headers=admin_headers)
    call("DELETE", f"{API}/tokens/current", 204, headers=admin_headers)
    call("GET", f"{API}/users", 401, headers=admin_headers)
    stored_hashes.collect()

    # -- the check ------------------------------------------------------------------------------
    assert len(stored_hashes.seen) >= 10  # every user, before and after each password change
    forbidden = set(passwords) | set(HASH_MARKERS)
    for stored in stored_hashes.seen:
        forbidden |= hash_fragments(stored)
    leaks = []
    for label, response in call.responses:
        text = response_text(response)
        leaks.extend(f"{label}: {value!r}" for value in forbidden if value in text)
        if response.status_code < 400 and response.is_json:
            fields = keys_of(response.get_json())
            assert not {name for name in fields if "password" in name}, (label, fields)
        if response.mimetype == "text/csv":
            assert "password" not in response.get_data(as_text=True).splitlines()[0], label
    assert not leaks, "\n".join(leaks)

    for record in caplog.records:
        logged = record.getMessage() + repr(getattr(record, "fields", "")) + repr(record.args)
        assert not [value for value in forbidden - {"password_hash"} if value in logged], logged

    assert len(call.responses) > 60


def test_password_hash_cannot_be_set_or_read_through_the_api(client, db_session, admin, customer):
    """Sending ``password_hash`` is an unknown field, not a way to set a hash."""
    before = db_session.scalar(select(User.password_hash).where(User.id == customer.id))
    planted = "$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHQ$planted"
    for headers, url in ((customer.headers, f"{API}/users/me"), (admin.headers, f"{API}/users/{customer.id}")):
        for method in ("PATCH", "PUT"):
            response = client.open(url, method=method, headers=headers,
                                   json={"username": customer.username, "email": customer.email,
                                         "user_priority": 1, "password_hash": planted})
            assert response.status_code == 400
            assert response.get_json()["errors"] == {"password_hash": "Unknown field."}
            assert planted not in response.get_data(as_text=True)
            assert before not in response.get_data(as_text=True)
    response = client.post(f"{API}/users", json={"username": "planter", "email": "planter@example.com",
                                                 "password": "planter-password", "password_hash": planted})
    assert response.status_code == 400
    assert planted not in response.get_data(as_text=True)
    db_session.rollback()
    assert db_session.scalar(select(User.password_hash).where(User.id == customer.id)) == before
    assert db_session.scalar(select(User).where(User.username == "planter")) is None


def test_idempotency_digest_of_a_sign_up_is_not_a_plain_hash_of_the_password(client, db_session):
    body = b'{"username": "kim", "email": "kim@example.com", "password": "guessable-password"}'
    response = client.post(f"{API}/users", data=body, content_type="application/json",
                           headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 201
    stored = db_session.scalar(select(IdempotencyKey.request_hash))

    def plain_digest(password: bytes) -> str:
        digest = hashlib.sha256()
        for part in ("POST", f"{API}/users", "", "application/json"):
            digest.update(part.encode() + b"\0")
        digest.update(body.replace(b"guessable-password", password))
        return digest.hexdigest()

    assert plain_digest(b"a-wrong-guess!") != stored  # the attacker's check works...
    assert plain_digest(b"guessable-password") != stored  # ...and must not confirm the right guess
