"""Webhooks and events (DESIGN §11) from myapi.client and ``myapi remote webhooks``, against the live server:
the client's methods, the CLI's commands, their output and what they leave in the database."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from myapi import worker
from myapi.cli import main
from myapi.client import Client, Conflict, Forbidden, Item, NotFound, PreconditionFailed, ValidationFailed
from myapi.db import get_db
from myapi.models import Webhook, WebhookDelivery
from myapi.services import webhooks as webhooks_service
from tests.test_changes import settle
from tests.test_webhook_delivery import FAST, Receiver, drain

HOOK = "http://127.0.0.1:9/hooks"
FAILING_FAST = worker.WorkerOptions(**{**FAST.__dict__, "max_age": dt.timedelta(seconds=0)})


@pytest.fixture(autouse=True)
def allow_private(app):
    """The receivers of these tests listen on 127.0.0.1 (MYAPI_WEBHOOK_ALLOW_PRIVATE)."""
    app.config["WEBHOOK_ALLOW_PRIVATE"] = True


@pytest.fixture
def api(live_server, admin):
    with Client(live_server, admin.token) as client:
        yield client


@pytest.fixture
def receiver():
    made: list[Receiver] = []
    yield lambda **kwargs: made.append(Receiver(**kwargs)) or made[-1]
    for item in made:
        item.close()


@pytest.fixture
def cli(live_server, admin, tmp_path, monkeypatch):
    """``myapi remote ...`` as the admin: MYAPI_URL and MYAPI_TOKEN, and a config dir of the test's own."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("MYAPI_API_KEY", raising=False)
    monkeypatch.setenv("MYAPI_URL", live_server)
    monkeypatch.setenv("MYAPI_TOKEN", admin.token)

    def run(*args):
        return CliRunner().invoke(main, ["remote", *args], catch_exceptions=False)

    return run


def stored(app, webhook_id: int) -> Webhook | None:
    with get_db(app).session() as session:
        webhook = session.get(Webhook, webhook_id)
        if webhook is not None:
            session.expunge(webhook)
        return webhook


def deliveries_in_db(app) -> list[tuple[int, str, int]]:
    with get_db(app).session() as session:
        return [(row.webhook_id, row.status, row.attempts)
                for row in session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))]


def new_product(api: Client, sku: str) -> Item:
    return api.create_product(sku=sku, name=f"Tea {sku}", category="tea", price="4.50", stock=10)


# -- the client ---------------------------------------------------------------------------------------


def test_client_creates_reads_changes_rotates_and_deletes(app, api, admin):
    created = api.create_webhook(HOOK, ["order.status_changed", "order.created"], description="warehouse")
    assert isinstance(created, Item) and created["secret"].startswith("whsec_")
    assert created["events"] == ["order.created", "order.status_changed"]
    assert created["description"] == "warehouse" and created["is_active"] is True and created["url"] == HOOK
    row = stored(app, created["id"])
    assert row.secret == created["secret"] and row.user_id == admin.id and row.events == "order.created " \
        "order.status_changed"

    listed = api.webhooks()
    assert [hook["id"] for hook in listed] == [created["id"]] and "secret" not in listed[0]
    assert [hook["id"] for hook in api.iter_webhooks(is_active=True)] == [created["id"]]
    assert api.list_webhooks().total_items == 1
    read = api.webhook(created["id"])
    assert read.etag and "secret" not in read and read["version"] == created["version"]

    changed = api.update_webhook(read, events=("product.updated",), is_active=False)  # If-Match: read.etag
    assert changed["events"] == ["product.updated"] and changed["is_active"] is False
    assert stored(app, created["id"]).is_active is False
    with pytest.raises(PreconditionFailed):
        api.update_webhook(read, description="stale")  # the ETag read before the change
    assert api.webhooks(is_active=True) == []
    assert api.update_webhook(created["id"], description="renamed")["description"] == "renamed"

    rotated = api.rotate_webhook_secret(created["id"])
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert rotated["previous_secret_expires_at"]
    row = stored(app, created["id"])
    assert webhooks_service.signing_secrets(row) == [rotated["secret"], created["secret"]]

    api.delete_webhook(api.webhook(created["id"]))  # with its If-Match
    assert stored(app, created["id"]) is None
    with pytest.raises(NotFound):
        api.webhook(created["id"])
    with pytest.raises(NotFound):
        api.delete_webhook(created["id"])


def test_client_errors_are_typed(app, live_server, api, customer):
    with pytest.raises(ValidationFailed) as bad:
        api.create_webhook(HOOK, ["order.shipped"])
    assert "events" in bad.value.errors
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    with pytest.raises(ValidationFailed) as private:
        api.create_webhook(HOOK, ["order.created"])
    assert "url" in private.value.errors
    with pytest.raises(Forbidden):
        Client(live_server, customer.token).webhooks()
    with pytest.raises(NotFound):
        api.deliveries(999)
    with get_db(app).session() as session:
        assert session.scalar(select(Webhook.id)) is None

    # A key with webhooks:manage may manage them, and see the events.
    key = api.create_api_key("hooks", ["webhooks:manage"])
    with Client(live_server, api_key=key["secret"]) as scripted:
        assert scripted.webhooks() == [] and scripted.events("0")["data"] == []


def test_client_reads_the_event_feed(app, api):
    tea = new_product(api, "TEA-1")
    mug = new_product(api, "TEA-2")
    api.update_product(tea["id"], {"stock": 30})
    settle(app)

    page = api.events("0")
    assert [(event["type"], event["data"]["id"]) for event in page["data"]] == [
        ("product.created", tea["id"]), ("product.created", mug["id"]), ("product.updated", tea["id"])]
    assert page["data"][0]["id"].startswith("evt_") and page["data"][0]["data"]["stock"] == 30
    assert api.events(page["next_since"])["data"] == []

    walked = list(api.iter_events("0", limit=1))  # three pages of one, then an empty one
    assert [event["id"] for event in walked] == [event["id"] for event in page["data"]]
    updates = api.events("0", types=["product.updated"])["data"]
    assert [event["type"] for event in updates] == ["product.updated"]
    assert [event["type"] for event in api.iter_events("0", "product.created,product.deleted")] == [
        "product.created", "product.created"]
    with pytest.raises(ValidationFailed):
        api.events("0", types=["nothing.happened"])


def test_client_reads_deliveries_and_retries_one(app, api, receiver):
    target = receiver(answer=lambda n, body: 503)
    hook = api.create_webhook(target.url, ["product.created"])
    other = api.create_webhook(target.url, ["order.created"])
    new_product(api, "TEA-1")
    drain(app, options=FAILING_FAST)  # one attempt, then failed (no 24 h to wait)
    assert deliveries_in_db(app) == [(hook["id"], "failed", 1)]

    [failed] = api.deliveries(hook["id"])
    assert failed["status"] == "failed" and failed["last_status_code"] == 503 and failed["next_attempt_at"] is None
    assert failed["event_type"] == "product.created" and failed["event_id"].startswith("evt_")
    assert api.deliveries(hook["id"], status="succeeded") == [] and api.deliveries(other["id"]) == []
    assert [item["id"] for item in api.iter_deliveries(hook["id"], status="failed")] == [failed["id"]]
    assert api.list_deliveries(hook["id"]).total_items == 1

    with pytest.raises(NotFound):
        api.retry_delivery(other["id"], failed["id"])  # not that webhook's
    retried = api.retry_delivery(hook["id"], failed["id"])
    assert retried["status"] == "pending" and deliveries_in_db(app) == [(hook["id"], "pending", 1)]
    target.answer = lambda n, body: 204
    drain(app)
    assert deliveries_in_db(app) == [(hook["id"], "succeeded", 2)]
    assert [body["type"] for body in target.bodies()] == ["product.created", "product.created"]

    with get_db(app).session(write=True) as session:  # a worker sending it right now
        session.get(WebhookDelivery, failed["id"]).status = "delivering"
        session.commit()
    with pytest.raises(Conflict):
        api.retry_delivery(hook["id"], failed["id"])


# -- the command line ---------------------------------------------------------------------------------


def test_cli_create_prints_the_secret_once_and_list_never(app, cli):
    created = cli("webhooks", "create", HOOK, "--event", "order.created", "--event", "product.deleted",
                  "--description", "warehouse")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("whsec_") and "\n" not in secret  # stdout: the secret alone, ready to pipe
    assert "shown once" in created.stderr and secret not in created.stderr
    with get_db(app).session() as session:
        [row] = session.scalars(select(Webhook)).all()
        assert (row.secret, row.url, row.events, row.description) == (
            secret, HOOK, "product.deleted order.created", "warehouse")

    listed = cli("webhooks", "list", "--format", "csv")
    assert listed.exit_code == 0, listed.output
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert list(rows[0])[:6] == ["id", "url", "events", "is_active", "description", "date_created"]
    assert (rows[0]["id"], rows[0]["url"], rows[0]["events"]) == (str(row.id), HOOK, "product.deleted order.created")
    assert secret not in listed.stdout
    table = cli("webhooks", "list", "--format", "table").stdout.splitlines()
    assert table[0].split()[:3] == ["id", "url", "events"] and HOOK in table[2]
    assert json.loads(cli("webhooks", "list", "--format", "json", "--paused").stdout) == []

    refused = cli("webhooks", "create", HOOK, "--event", "order.shipped")
    assert refused.exit_code == 2 and "order.shipped" in refused.stderr  # click knows the types
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    private = cli("webhooks", "create", "http://10.0.0.1/hook", "--event", "order.created")
    assert private.exit_code == 1 and private.stdout == ""
    assert private.stderr.startswith("error: ") and "  url: " in private.stderr


def test_cli_rotates_deletes_lists_deliveries_and_retries(app, api, cli, receiver):
    target = receiver(answer=lambda n, body: 503)
    hook = api.create_webhook(target.url, ["product.created"])
    new_product(api, "TEA-1")
    drain(app, options=FAILING_FAST)
    [delivery] = api.deliveries(hook["id"])

    log = cli("webhooks", "deliveries", str(hook["id"]), "--format", "csv")
    assert log.exit_code == 0, log.output
    [row] = csv.DictReader(io.StringIO(log.stdout))
    assert (row["id"], row["event_type"], row["status"], row["attempts"], row["last_status_code"]) == (
        str(delivery["id"]), "product.created", "failed", "1", "503")
    assert cli("webhooks", "deliveries", str(hook["id"]), "--status", "pending", "--format", "json").stdout \
        .strip() == "[]"
    missing = cli("webhooks", "deliveries", "999")
    assert missing.exit_code == 1 and "error: Not Found" in missing.stderr

    retried = cli("webhooks", "retry", str(hook["id"]), str(delivery["id"]))
    assert retried.exit_code == 0, retried.output
    assert "is pending" in retried.stderr and deliveries_in_db(app) == [(hook["id"], "pending", 1)]

    rotated = cli("webhooks", "rotate-secret", str(hook["id"]))
    assert rotated.exit_code == 0, rotated.output
    secret = rotated.stdout.strip()
    assert secret.startswith("whsec_") and secret != hook["secret"] and "shown once" in rotated.stderr
    assert webhooks_service.signing_secrets(stored(app, hook["id"])) == [secret, hook["secret"]]

    deleted = cli("webhooks", "delete", str(hook["id"]))
    assert deleted.exit_code == 0 and f"webhook {hook['id']} deleted" in deleted.stderr
    assert stored(app, hook["id"]) is None and deliveries_in_db(app) == []
    assert cli("webhooks", "delete", str(hook["id"])).exit_code == 1
