"""Users through HTTP: sign-up, reading, changing, deactivating, listing."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from myapi.models import Token, User

API = "/api/v1"


def signup(client, **overrides):
    body = {"username": "newbie", "email": "newbie@example.com", "password": "a-long-password"}
    body.update(overrides)
    return client.post(f"{API}/users", json=body)


def user_count(db_session) -> int:
    return db_session.scalar(select(func.count()).select_from(User))


# -- sign-up ------------------------------------------------------------------


def test_signup_creates_a_customer(client, db_session):
    response = signup(client, email="NewBie@Example.com ")
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"{API}/users/{body['id']}"
    assert response.headers["ETag"] == '"v1"'
    assert body["username"] == "newbie"
    assert body["email"] == "newbie@example.com"
    assert body["role"] == "customer"
    assert body["user_priority"] == 1
    assert body["is_active"] is True
    assert body["custom_greeting"] == "Hey there newbie!"
    assert body["links"] == {"self": f"{API}/users/{body['id']}", "orders": f"{API}/orders?user_id={body['id']}"}
    assert body["date_created"].endswith("Z")
    assert "password" not in body and "password_hash" not in body
    user = db_session.get(User, body["id"])
    assert user.password_hash.startswith("$argon2")
    assert user.password_hash != "a-long-password"


def test_signup_accepts_form_bodies(client, db_session):
    response = client.post(f"{API}/users", data={"username": "formuser", "email": "f@example.com",
                                                 "password": "a-long-password", "user_priority": "3"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["user_priority"] == 3
    assert user_count(db_session) == 1


def test_signup_reports_every_invalid_field_at_once(client, db_session):
    response = client.post(f"{API}/users", json={"username": "No Spaces!", "email": "not-an-email",
                                                 "password": "short", "user_priority": 9})
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 400
    assert set(problem["errors"]) == {"username", "email", "password", "user_priority"}
    assert problem["request_id"] == response.headers["X-Request-ID"]
    assert "short" not in problem["errors"]["password"]  # the password is never echoed
    assert user_count(db_session) == 0


def test_signup_reports_missing_fields(client, db_session):
    response = client.post(f"{API}/users", json={})
    assert response.status_code == 400
    assert response.get_json()["errors"] == {
        "username": "This field is required.",
        "email": "This field is required.",
        "password": "This field is required.",
    }
    assert user_count(db_session) == 0


@pytest.mark.parametrize("field,value", [("role", "admin"), ("id", 99), ("is_active", False), ("stock", 5)])
def test_signup_rejects_unknown_fields_so_nobody_can_mass_assign(client, db_session, field, value):
    response = signup(client, **{field: value})
    assert response.status_code == 400
    assert response.get_json()["errors"] == {field: "Unknown field."}
    assert user_count(db_session) == 0


@pytest.mark.parametrize("value", [None, ["x"], {"a": 1}, 12345])
def test_signup_rejects_wrong_json_types(client, db_session, value):
    response = signup(client, username=value)
    assert response.status_code == 400
    assert "username" in response.get_json()["errors"]
    assert user_count(db_session) == 0


def test_duplicate_username_and_email_conflict(client, db_session):
    assert signup(client).status_code == 201
    response = signup(client, email="other@example.com")
    assert response.status_code == 409
    assert response.get_json()["errors"] == {"username": "This username is taken."}
    response = signup(client, username="other")
    assert response.status_code == 409
    assert response.get_json()["errors"] == {"email": "An account with this email exists."}
    assert user_count(db_session) == 1


def test_racing_signups_give_one_user_and_conflicts(live_server, db_session):
    import requests

    results: list[int] = []
    barrier = threading.Barrier(6)

    def attempt(i: int) -> None:
        barrier.wait()
        response = requests.post(f"{live_server}{API}/users", timeout=30, json={
            "username": "racer", "email": f"racer{i}@example.com", "password": "a-long-password"})
        results.append(response.status_code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [201] + [409] * 5
    assert user_count(db_session) == 1


# -- reading ------------------------------------------------------------------


def test_me_and_own_record(client, customer):
    me = client.get(f"{API}/users/me", headers=customer.headers)
    assert me.status_code == 200
    assert me.get_json()["username"] == customer.username
    assert me.headers["Cache-Control"] == "no-store"
    own = client.get(f"{API}/users/{customer.id}", headers=customer.headers)
    assert own.get_json() == me.get_json()
    assert own.headers["ETag"] == me.headers["ETag"]


def test_if_none_match_gives_304(client, customer):
    first = client.get(f"{API}/users/me", headers=customer.headers)
    again = client.get(f"{API}/users/me", headers={**customer.headers, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == first.headers["ETag"]


def test_customer_cannot_see_another_user(client, make_account):
    alice, bob = make_account(), make_account()
    response = client.get(f"{API}/users/{bob.id}", headers=alice.headers)
    assert response.status_code == 404
    assert client.get(f"{API}/users/999999", headers=alice.headers).status_code == 404
    assert client.patch(f"{API}/users/{bob.id}", json={"user_priority": 0},
                        headers=alice.headers).status_code == 404


def test_admin_reads_anyone(client, admin, customer):
    response = client.get(f"{API}/users/{customer.id}", headers=admin.headers)
    assert response.status_code == 200
    assert response.get_json()["username"] == customer.username


def test_reading_users_needs_a_token(client, customer):
    response = client.get(f"{API}/users/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.mimetype == "application/problem+json"


# -- changing -----------------------------------------------------------------


def test_patch_changes_only_given_fields(client, customer, db_session):
    response = client.patch(f"{API}/users/me", json={"user_priority": 4}, headers=customer.headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["user_priority"] == 4
    assert body["email"] == customer.email
    assert response.headers["ETag"] == '"v2"'
    assert db_session.get(User, customer.id).user_priority == 4


def test_patch_password_lets_the_user_sign_in_with_it(client, customer):
    response = client.patch(f"{API}/users/me", json={"password": "a-brand-new-secret"}, headers=customer.headers)
    assert response.status_code == 200
    assert client.post(f"{API}/tokens", json={"username": customer.username,
                                              "password": "a-brand-new-secret"}).status_code == 201
    assert client.post(f"{API}/tokens", json={"username": customer.username,
                                              "password": customer.password}).status_code == 401


def test_put_requires_every_editable_field(client, customer, db_session):
    response = client.put(f"{API}/users/me", json={"username": "renamed"}, headers=customer.headers)
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) == {"email", "user_priority"}
    response = client.put(f"{API}/users/me", headers=customer.headers,
                          json={"username": "renamed", "email": "r@example.com", "user_priority": 2})
    assert response.status_code == 200
    assert db_session.get(User, customer.id).username == "renamed"


def test_customer_cannot_make_themselves_admin(client, customer, db_session):
    response = client.patch(f"{API}/users/me", json={"role": "admin"}, headers=customer.headers)
    assert response.status_code == 403
    assert response.get_json()["errors"] == {"role": "Only an admin may change this field."}
    assert db_session.get(User, customer.id).role == "customer"


def test_admin_changes_role(client, admin, customer, db_session):
    response = client.patch(f"{API}/users/{customer.id}", json={"role": "admin"}, headers=admin.headers)
    assert response.status_code == 200
    assert db_session.get(User, customer.id).role == "admin"


def test_patch_rejects_unknown_fields_and_writes_nothing(client, customer, db_session):
    response = client.patch(f"{API}/users/me", json={"user_priority": 3, "password_hash": "x"},
                            headers=customer.headers)
    assert response.status_code == 400
    assert response.get_json()["errors"] == {"password_hash": "Unknown field."}
    assert db_session.get(User, customer.id).user_priority == 1


def test_patch_to_a_taken_username_conflicts(client, make_account, db_session):
    alice, bob = make_account(), make_account()
    response = client.patch(f"{API}/users/me", json={"username": bob.username}, headers=alice.headers)
    assert response.status_code == 409
    assert db_session.get(User, alice.id).username == alice.username


def test_stale_if_match_is_412_and_changes_nothing(client, customer, db_session):
    etag = client.get(f"{API}/users/me", headers=customer.headers).headers["ETag"]
    assert client.patch(f"{API}/users/me", json={"user_priority": 2},
                        headers={**customer.headers, "If-Match": etag}).status_code == 200
    response = client.patch(f"{API}/users/me", json={"user_priority": 3},
                            headers={**customer.headers, "If-Match": etag})
    assert response.status_code == 412
    assert response.headers["ETag"] == '"v2"'
    assert db_session.get(User, customer.id).user_priority == 2


# -- deactivating -------------------------------------------------------------


def test_admin_deactivates_a_user_and_their_tokens_stop_working(client, admin, customer, db_session):
    response = client.delete(f"{API}/users/{customer.id}", headers=admin.headers)
    assert response.status_code == 204
    user = db_session.get(User, customer.id)
    assert user is not None and user.is_active is False
    assert db_session.scalar(select(func.count()).select_from(Token)
                             .where(Token.user_id == customer.id, Token.revoked_at.is_(None))) == 0
    assert client.get(f"{API}/users/me", headers=customer.headers).status_code == 401
    signin = client.post(f"{API}/tokens", json={"username": customer.username, "password": customer.password})
    assert signin.status_code == 401


def test_customer_cannot_delete_users(client, customer, make_account, db_session):
    other = make_account()
    assert client.delete(f"{API}/users/me", headers=customer.headers).status_code == 403
    assert client.delete(f"{API}/users/{other.id}", headers=customer.headers).status_code == 403
    assert db_session.get(User, other.id).is_active is True


# -- listing ------------------------------------------------------------------


def test_list_is_admin_only(client, customer):
    assert client.get(f"{API}/users", headers=customer.headers).status_code == 403
    assert client.get(f"{API}/users").status_code == 401


def test_list_filters_sorts_and_pages(client, admin, make_account):
    for _ in range(5):
        make_account()
    response = client.get(f"{API}/users?role=customer&sort=-username&per_page=2&page=2", headers=admin.headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["pagination"] == {"page": 2, "per_page": 2, "total_items": 5, "total_pages": 3,
                                  "next_cursor": body["pagination"]["next_cursor"]}
    assert body["pagination"]["next_cursor"]
    assert [u["username"] for u in body["data"]] == ["customer3", "customer2"]
    assert response.headers["X-Total-Count"] == "5"
    link = response.headers["Link"]
    for rel in ("first", "prev", "next", "last"):
        assert f'rel="{rel}"' in link
    assert "page=3" in link and "role=customer" in link

    searched = client.get(f"{API}/users?q=ROO", headers=admin.headers).get_json()
    assert [u["username"] for u in searched["data"]] == ["root"]


def test_list_rejects_bad_query_arguments(client, admin):
    response = client.get(f"{API}/users?per_page=500&page=0&sort=password_hash&role=god&colour=red",
                          headers=admin.headers)
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) == {"per_page", "page", "sort", "role", "colour"}


def test_list_statement_count_does_not_grow_with_page_size(client, admin, make_account, count_queries):
    for _ in range(12):
        make_account()
    counts = []
    for per_page in (2, 12):
        with count_queries() as counter:
            response = client.get(f"{API}/users?per_page={per_page}", headers=admin.headers)
        assert response.status_code == 200
        counts.append(counter.count)
    assert counts[0] == counts[1] == 3  # token lookup, COUNT, page


def test_user_list_as_csv(client, admin, customer):
    response = client.get(f"{API}/users", headers={**admin.headers, "Accept": "text/csv"})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    lines = response.data.decode().splitlines()
    assert lines[0].startswith("id,username,email,user_priority,role,is_active,custom_greeting")
    assert "links.self" in lines[0] and "links.orders" in lines[0]
    assert len(lines) == 3
    assert response.headers["X-Total-Count"] == "2"


def test_single_user_as_csv(client, customer):
    response = client.get(f"{API}/users/me?format=csv", headers=customer.headers)
    assert response.status_code == 200
    rows = response.data.decode().splitlines()
    assert rows[0].split(",")[:3] == ["id", "username", "email"]
    assert rows[1].split(",")[1] == customer.username
    assert response.headers["ETag"] == '"v1-csv"'


def test_admin_cannot_deactivate_themselves(client, admin, db_session):
    for path in (f"{API}/users/me", f"{API}/users/{admin.id}"):
        response = client.delete(path, headers=admin.headers)
        assert response.status_code == 409
    db_session.rollback()
    assert db_session.get(User, admin.id).is_active is True
    assert client.get(f"{API}/users/me", headers=admin.headers).status_code == 200
