"""Webhook subscriptions (DESIGN §11) through HTTP: create, list, read, change, delete, rotate the secret,
and the targets refused (SSRF)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress

import pytest

from myapi.db import get_db
from myapi.models import Webhook
from myapi.services import webhooks as webhooks_service
from myapi.services.webhook_targets import TargetRefused, allowed_addresses, is_public

API = "/api/v1"
LOCAL = "http://127.0.0.1:9/hooks"


@pytest.fixture
def allow_private(app):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = True


def create(client, admin, url=LOCAL, events=("order.created",), **extra):
    return client.post(f"{API}/webhooks", headers=admin.headers, json={"url": url, "events": list(events), **extra})


def secret_bytes(secret: str) -> bytes:
    assert secret.startswith("whsec_")
    return base64.b64decode(secret.removeprefix("whsec_"), validate=True)


def test_create_shows_the_secret_once(client, admin, allow_private):
    response = create(client, admin, events=["order.status_changed", "order.created"], description="warehouse")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert len(secret_bytes(body["secret"])) == 32
    assert body["events"] == ["order.created", "order.status_changed"]  # the types' own order
    assert body["is_active"] is True and body["description"] == "warehouse" and body["url"] == LOCAL
    assert response.headers["Location"] == f"{API}/webhooks/{body['id']}"
    shown = client.get(f"{API}/webhooks/{body['id']}", headers=admin.headers)
    assert shown.status_code == 200 and "secret" not in shown.get_json() and shown.headers["ETag"]
    listed = client.get(f"{API}/webhooks", headers=admin.headers).get_json()
    assert [item["id"] for item in listed["data"]] == [body["id"]] and "secret" not in listed["data"][0]


def test_patch_delete_and_if_match(client, admin, allow_private):
    webhook = create(client, admin).get_json()
    path = f"{API}/webhooks/{webhook['id']}"
    changed = client.patch(path, headers=admin.headers, json={"events": ["product.updated"], "is_active": False})
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["events"] == ["product.updated"] and changed.get_json()["is_active"] is False
    stale = client.patch(path, headers={**admin.headers, "If-Match": '"1"'}, json={"description": "x"})
    assert stale.status_code == 412
    assert client.get(f"{API}/webhooks?is_active=true", headers=admin.headers).get_json()["data"] == []
    assert client.delete(path, headers=admin.headers).status_code == 204
    assert client.get(path, headers=admin.headers).status_code == 404


def test_rotation_keeps_the_previous_secret_for_24_hours(client, admin, app, allow_private):
    webhook = create(client, admin).get_json()
    rotated = client.post(f"{API}/webhooks/{webhook['id']}/rotate-secret", headers=admin.headers)
    assert rotated.status_code == 200, rotated.get_json()
    body = rotated.get_json()
    assert body["secret"] != webhook["secret"] and len(secret_bytes(body["secret"])) == 32
    expires = dt.datetime.fromisoformat(body["previous_secret_expires_at"].replace("Z", "+00:00"))
    assert dt.timedelta(hours=23, minutes=59) < expires - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(hours=24)
    with get_db(app).session() as session:
        stored = session.get(Webhook, webhook["id"])
        assert webhooks_service.signing_secrets(stored) == [body["secret"], webhook["secret"]]
        assert webhooks_service.signing_secrets(stored, expires + dt.timedelta(seconds=1)) == [body["secret"]]


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://localhost:8080/", "http://[::1]/", "http://10.1.2.3/",
                                 "http://192.168.0.5/", "http://169.254.169.254/latest/meta-data/",
                                 "http://metadata.google.internal/", "http://100.100.100.200/", "http://0.0.0.0/",
                                 "http://[::ffff:127.0.0.1]/", "http://[fd00:ec2::254]/", "http://2130706433/"])
def test_private_targets_are_refused_without_the_setting(client, admin, url):
    response = create(client, admin, url=url)
    assert response.status_code == 400, response.get_json()
    assert "url" in str(response.get_json())


@pytest.mark.parametrize("url", ["ftp://8.8.8.8/", "file:///etc/passwd", "javascript:alert(1)", "http:///nohost",
                                 "https://user:pw@8.8.8.8/", "http://8.8.8.8:99999/", "no url"])
def test_malformed_targets_are_refused_even_with_the_setting(client, admin, url, allow_private):
    response = create(client, admin, url=url)
    assert response.status_code == 400
    assert list(response.get_json()["errors"]) == ["url"]
    assert client.get(f"{API}/webhooks", headers=admin.headers).get_json()["data"] == []


def test_a_public_address_is_accepted_and_patch_checks_the_new_url(client, admin):
    response = create(client, admin, url="https://8.8.8.8/hooks")
    assert response.status_code == 201, response.get_json()
    moved = client.patch(f"{API}/webhooks/{response.get_json()['id']}", headers=admin.headers,
                         json={"url": "http://169.254.169.254/"})
    assert moved.status_code == 400


def test_address_rules():
    assert is_public(ipaddress.ip_address("8.8.8.8"))
    assert not is_public(ipaddress.ip_address("203.0.113.10"))  # documentation range
    assert allowed_addresses("http://127.0.0.1/", allow_private=True)
    with pytest.raises(TargetRefused):
        allowed_addresses("http://127.0.0.1/", allow_private=False)


@pytest.mark.parametrize("body", [{"url": LOCAL}, {"url": LOCAL, "events": []},
                                  {"url": LOCAL, "events": ["order.updated"]}, {"events": ["order.created"]},
                                  {"url": LOCAL, "events": "order.created,nope"}])
def test_bad_bodies_are_400(client, admin, body, allow_private):
    assert client.post(f"{API}/webhooks", headers=admin.headers, json=body).status_code == 400


def test_admins_and_webhooks_manage_only(client, admin, customer, allow_private):
    assert create(client, customer).status_code == 403
    assert client.get(f"{API}/webhooks").status_code == 401
    key = client.post(f"{API}/api-keys", headers=admin.headers,
                      json={"name": "hooks", "scopes": ["webhooks:manage"]}).get_json()["secret"]
    other = client.post(f"{API}/api-keys", headers=admin.headers,
                        json={"name": "reader", "scopes": ["products:read"]}).get_json()["secret"]
    assert client.post(f"{API}/webhooks", headers={"Authorization": f"Bearer {key}"},
                       json={"url": LOCAL, "events": ["order.created"]}).status_code == 201
    assert client.get(f"{API}/webhooks", headers={"Authorization": f"Bearer {other}"}).status_code == 403
