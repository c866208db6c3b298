"""Rate limits, CORS and the security headers that go with them."""

from __future__ import annotations

import uuid

import pytest
import redis
import requests
from sqlalchemy import func, select

from myapi.app import create_app
from myapi.models import User

API = "/api/v1"


@pytest.fixture
def limited_app(app_config):
    return create_app({**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_SIGNIN": "3/minute",
                       "RATELIMIT_SIGNUP": "2/minute", "RATELIMIT_DEFAULT": "5/minute"})


def sign_in(client, username, address="10.0.0.1"):
    return client.post(f"{API}/tokens", json={"username": username, "password": "wrong-password!"},
                       environ_base={"REMOTE_ADDR": address})


def test_sign_in_is_limited_per_address(limited_app):
    client = limited_app.test_client()
    codes = [sign_in(client, f"user{i}").status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]
    response = sign_in(client, "someone-else")
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    assert "3 per 1 minute" in response.get_json()["detail"]
    assert sign_in(client, "fresh", address="10.0.0.2").status_code == 401  # another address


def test_sign_in_is_limited_per_username_across_addresses(limited_app):
    client = limited_app.test_client()
    codes = [sign_in(client, "victim", address=f"10.1.0.{i}").status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]
    basic = client.post(f"{API}/tokens", auth=("VICTIM", "x"), environ_base={"REMOTE_ADDR": "10.1.0.9"})
    assert basic.status_code == 429  # the same account, whatever the case or the scheme


def test_sign_up_is_limited_and_the_limited_request_writes_nothing(limited_app, db_session):
    client = limited_app.test_client()
    codes = [client.post(f"{API}/users", json={"username": f"new{i}", "email": f"n{i}@example.com",
                                               "password": "a-long-password"}).status_code for i in range(3)]
    assert codes == [201, 201, 429]
    assert db_session.scalar(select(func.count()).select_from(User)) == 2


def test_default_limit_applies_elsewhere_but_not_to_health(limited_app):
    client = limited_app.test_client()
    codes = [client.get(f"{API}/products").status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    assert all(client.get(f"{API}/health").status_code == 200 for _ in range(10))


def test_retry_after_only_on_429(limited_app):
    response = limited_app.test_client().get(f"{API}/products")
    assert response.status_code == 200
    assert "Retry-After" not in response.headers
    assert response.headers["X-RateLimit-Limit"] == "5"


def test_limits_off_by_config(client):
    assert all(sign_in(client, "x").status_code == 401 for _ in range(15))


def redis_available() -> bool:
    try:
        return redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=1).ping()
    except redis.RedisError:
        return False


@pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")
def test_two_server_processes_share_the_limits_through_redis(start_server):
    """Two gunicorn instances on one Redis: the fourth sign-in is refused wherever it lands."""
    prefix = f"myapi-test-{uuid.uuid4().hex[:8]}"
    env = {"MYAPI_RATELIMIT_ENABLED": "true", "MYAPI_RATELIMIT_SIGNIN": "3/minute",
           "MYAPI_RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"}
    # The key prefix keeps this run's counters apart from any other run's.
    first = start_server(workers=2, env={**env, "MYAPI_RATELIMIT_KEY_PREFIX": prefix})
    second = start_server(workers=2, env={**env, "MYAPI_RATELIMIT_KEY_PREFIX": prefix})
    try:
        codes = []
        for url in (first.url, second.url, first.url, second.url, first.url):
            response = requests.post(f"{url}{API}/tokens", json={"username": "shared", "password": "wrong-pass!"},
                                     timeout=10)
            codes.append(response.status_code)
        assert codes == [401, 401, 401, 429, 429]
    finally:
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


# -- CORS -------------------------------------------------------------------------


def test_cors_only_for_configured_origins(app_config):
    app = create_app({**app_config, "CORS_ORIGINS": "https://shop.example, https://admin.example"})
    client = app.test_client()
    allowed = client.get(f"{API}/products", headers={"Origin": "https://shop.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "X-Total-Count" in allowed.headers["Access-Control-Expose-Headers"]
    preflight = client.options(f"{API}/orders", headers={"Origin": "https://admin.example",
                                                         "Access-Control-Request-Method": "POST",
                                                         "Access-Control-Request-Headers": "Idempotency-Key"})
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://admin.example"
    assert "idempotency-key" in preflight.headers["Access-Control-Allow-Headers"].lower()
    denied = client.get(f"{API}/products", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in denied.headers


def test_no_cors_headers_by_default(client):
    response = client.get(f"{API}/products", headers={"Origin": "https://shop.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_behind_one_proxy_each_forwarded_client_has_its_own_budget(app_config):
    app = create_app({**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_SIGNIN": "2/minute",
                      "PROXY_HOPS": 1})
    client = app.test_client()

    def attempt(forwarded_for: str) -> int:
        return client.post(f"{API}/tokens", json={"username": f"u-{forwarded_for}", "password": "wrong-pass!"},
                           headers={"X-Forwarded-For": forwarded_for},
                           environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code  # the balancer

    assert [attempt("203.0.113.1") for _ in range(3)] == [401, 401, 429]
    assert attempt("203.0.113.2") == 401  # another client behind the same balancer


def test_without_proxy_hops_forwarded_headers_are_not_trusted(limited_app):
    client = limited_app.test_client()
    codes = [client.post(f"{API}/tokens", json={"username": f"x{i}", "password": "wrong-pass!"},
                         headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]  # spoofed X-Forwarded-For does not buy a fresh budget
