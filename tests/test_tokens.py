"""Sign-in and sign-out: POST /tokens, DELETE /tokens/current."""

from __future__ import annotations

import datetime as dt

import pytest
from passlib.hash import bcrypt
from sqlalchemy import select

from myapi.common.auth import token_digest
from myapi.models import Token, User

API = "/api/v1"


def test_sign_in_with_json_gives_a_bearer_token(client, customer, db_session):
    response = client.post(f"{API}/tokens", json={"username": customer.username, "password": customer.password})
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"token", "token_type", "expires_at"}
    assert body["token_type"] == "Bearer"
    assert len(body["token"]) >= 43  # 32 random bytes, url-safe base64
    expires = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert dt.timedelta(hours=23) < expires - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(hours=24)
    # Only the hash is stored.
    stored = db_session.scalars(select(Token.token_hash)).all()
    assert token_digest(body["token"]) in stored
    assert body["token"] not in stored
    me = client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200


def test_sign_in_with_http_basic(client, customer):
    response = client.post(f"{API}/tokens", auth=(customer.username, customer.password))
    assert response.status_code == 201
    assert response.get_json()["token_type"] == "Bearer"


def test_sign_in_with_a_form_body(client, customer):
    response = client.post(f"{API}/tokens", data={"username": customer.username, "password": customer.password})
    assert response.status_code == 201


@pytest.mark.parametrize("username,password", [("alice", "wrong-password!"), ("nobody", "whatever-pass")])
def test_unknown_user_and_wrong_password_answer_alike(client, customer, username, password):
    response = client.post(f"{API}/tokens", json={"username": username, "password": password})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    problem = response.get_json()
    assert problem["detail"] == "Unknown username or wrong password."
    assert set(problem) == {"type", "title", "status", "detail", "request_id"}


def test_sign_in_without_credentials_is_401(client):
    response = client.post(f"{API}/tokens")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_sign_in_with_missing_password_is_400(client, customer):
    response = client.post(f"{API}/tokens", json={"username": customer.username})
    assert response.status_code == 400
    assert response.get_json()["errors"] == {"password": "This field is required."}


def test_revoking_the_current_token(client, customer, db_session):
    assert client.delete(f"{API}/tokens/current", headers=customer.headers).status_code == 204
    response = client.get(f"{API}/users/me", headers=customer.headers)
    assert response.status_code == 401
    token = db_session.scalars(select(Token).where(Token.token_hash == token_digest(customer.token))).one()
    assert token.revoked_at is not None


def test_expired_token_is_401(client, customer, app):
    from myapi.db import get_db

    with get_db(app).session() as session, session.begin():
        token = session.scalars(select(Token).where(Token.token_hash == token_digest(customer.token))).one()
        token.expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    response = client.get(f"{API}/users/me", headers=customer.headers)
    assert response.status_code == 401
    assert "expired" in response.get_json()["detail"]


@pytest.mark.parametrize("header", ["Bearer", "Bearer not-a-token", "Token abc", "Bearer " + "x" * 5000])
def test_bad_authorization_headers_are_401(client, header):
    response = client.get(f"{API}/users/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_bcrypt_hash_is_accepted_and_upgraded_to_argon2(client, make_account, app, db_session):
    from myapi.db import get_db

    account = make_account()
    with get_db(app).session() as session, session.begin():
        user = session.get(User, account.id)
        user.password_hash = bcrypt.using(rounds=4).hash(account.password)
    response = client.post(f"{API}/tokens", json={"username": account.username, "password": account.password})
    assert response.status_code == 201
    db_session.rollback()  # end the read snapshot, expire everything
    assert db_session.get(User, account.id).password_hash.startswith("$argon2")
