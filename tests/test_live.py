"""End to end over real HTTP, the way an integration script drives the API.

The live server (werkzeug, threaded, on a free port) serves the real app;
everything goes through ``requests``: sign up, sign in with Basic auth, read
and change yourself with If-Match, read the catalogue as CSV, create a product
as admin, conditional GET, sign out. Every step checks its status, its
Content-Type and its X-Request-ID.
"""

from __future__ import annotations

import csv
import io
import re

API = "/api/v1"

JSON = "application/json"
CSV = "text/csv"
PROBLEM = "application/problem+json"
PASSWORD = "an-integration-password"


def check(response, status: int, media_type: str | None = JSON):
    """Status, media type and request id of one step; returns the response."""
    assert response.status_code == status, (response.request.method, response.url, response.text)
    if media_type is None:
        assert not response.content
    else:
        assert response.headers["Content-Type"].split(";")[0].strip() == media_type, response.headers
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", response.headers["X-Request-ID"])
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    return response


def test_an_integration_script_end_to_end(live_server, http, admin):
    base = live_server + API

    # Sign up (and our own request id is echoed back).
    signup = check(http.post(f"{base}/users", json={"username": "zoe", "email": "Zoe@Example.com",
                                                    "password": PASSWORD},
                             headers={"X-Request-ID": "script-step-1"}), 201)
    assert signup.headers["X-Request-ID"] == "script-step-1"
    user = signup.json()
    assert user["username"] == "zoe"
    assert user["email"] == "zoe@example.com"
    assert user["role"] == "customer"
    assert signup.headers["Location"] == f"{API}/users/{user['id']}" == user["links"]["self"]
    assert signup.headers["ETag"] == '"v1"'

    # Sign in with HTTP Basic.
    signin = check(http.post(f"{base}/tokens", auth=("zoe", PASSWORD)), 201)
    token = signin.json()
    assert token["token_type"] == "Bearer"
    assert set(token) == {"token", "token_type", "expires_at"}
    assert token["expires_at"].endswith("Z")
    assert signin.headers["Location"] == f"{API}/tokens/current"
    auth = {"Authorization": f"Bearer {token['token']}"}

    # Who am I?
    me = check(http.get(f"{base}/users/me", headers=auth), 200)
    assert me.json()["id"] == user["id"]
    assert me.json()["custom_greeting"] == "Hey there zoe!"
    assert me.headers["Cache-Control"] == "no-store"
    etag = me.headers["ETag"]
    assert etag == '"v1"'

    # Change myself, guarded by the ETag I read.
    patched = check(http.patch(f"{base}/users/me", json={"user_priority": 3},
                               headers={**auth, "If-Match": etag}), 200)
    assert patched.json()["user_priority"] == 3
    assert patched.headers["ETag"] != etag
    # The same stale ETag now fails, and nothing changes.
    stale = check(http.patch(f"{base}/users/me", json={"user_priority": 0},
                             headers={**auth, "If-Match": etag}), 412, PROBLEM)
    assert stale.json()["status"] == 412
    assert stale.json()["request_id"] == stale.headers["X-Request-ID"]
    assert http.get(f"{base}/users/me", headers=auth).json()["user_priority"] == 3

    # The admin stocks the catalogue...
    admin_auth = {"Authorization": f"Bearer {admin.token}"}
    for sku, name, price in (("TEA-0001", "Sencha", "12.50"), ("TEA-0002", "=Assam", "7.00")):
        check(http.post(f"{base}/products", json={"sku": sku, "name": name, "category": "tea",
                                                  "price": price, "stock": 5}, headers=admin_auth), 201)

    # ...and anyone reads it as CSV.
    listed = check(http.get(f"{base}/products", params={"format": "csv", "sort": "sku"}), 200, CSV)
    assert listed.headers["X-Total-Count"] == "2"
    assert 'rel="first"' in listed.headers["Link"]
    assert listed.encoding.lower() in ("utf-8", "utf8")
    rows = list(csv.DictReader(io.StringIO(listed.text)))
    assert [row["sku"] for row in rows] == ["TEA-0001", "TEA-0002"]
    first, second = rows
    assert first["name"] == "Sencha"
    assert first["price"] == "12.50"
    assert first["stock"] == "5"
    assert first["is_available"] == "true"
    assert first["links.self"] == f"{API}/products/{first['id']}"
    assert second["name"] == "'=Assam"  # formula neutralised
    assert "password" not in listed.text

    # Create one more as admin, read it back, then conditionally.
    created = check(http.post(f"{base}/products", json={"sku": "MUG-0001", "name": "Blue mug",
                                                        "category": "mugs", "price": "9.90", "stock": 12},
                              headers=admin_auth), 201)
    product = created.json()
    location = created.headers["Location"]
    assert location == f"{API}/products/{product['id']}" == product["links"]["self"]
    fetched = check(http.get(live_server + location), 200)
    assert fetched.json() == product
    product_etag = fetched.headers["ETag"]
    assert product_etag == created.headers["ETag"]
    unchanged = http.get(live_server + location, headers={"If-None-Match": product_etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == product_etag
    assert unchanged.headers["X-Request-ID"]
    as_csv = check(http.get(live_server + location, params={"format": "csv"}), 200, CSV)
    assert as_csv.headers["ETag"] != product_etag  # one ETag per representation
    assert list(csv.DictReader(io.StringIO(as_csv.text)))[0]["sku"] == "MUG-0001"

    # Sign out: the token stops working at once.
    check(http.delete(f"{base}/tokens/current", headers=auth), 204, None)
    refused = check(http.get(f"{base}/users/me", headers=auth), 401, PROBLEM)
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert 'realm="myapi"' in refused.headers["WWW-Authenticate"]
    problem = refused.json()
    assert problem["status"] == 401
    assert problem["request_id"] == refused.headers["X-Request-ID"]
    assert set(problem) >= {"type", "title", "status", "detail", "request_id"}

    # Signing in again works (the account is fine; only that token is gone).
    check(http.post(f"{base}/tokens", json={"username": "zoe", "password": PASSWORD}), 201)


def test_errors_over_http_are_problem_json_never_html(live_server, http):
    base = live_server + API
    for response, status in (
        (http.get(f"{base}/nowhere"), 404),
        (http.get(f"{live_server}/not-the-api"), 404),
        (http.delete(f"{base}/products"), 405),
        (http.get(f"{base}/products", params={"per_page": "500"}), 400),
        (http.get(f"{base}/products", headers={"Accept": "application/xml"}), 406),
        (http.post(f"{base}/users", data="x", headers={"Content-Type": "text/plain"}), 415),
        (http.post(f"{base}/tokens", auth=("nobody", "not-the-password")), 401),
    ):
        check(response, status, PROBLEM)
        body = response.json()
        assert body["status"] == status
        assert "<html" not in response.text.lower()
