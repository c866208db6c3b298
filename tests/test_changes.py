"""The change feeds (DESIGN §9) through HTTP: commit-ordered, gap-free, deletes included."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import time
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from myapi.db import get_db
from myapi.models import Change, ChangeHorizon, Product
from myapi.services import changes as changes_service

API = "/api/v1"


def new_product(client, admin, sku="TEA-1", **extra):
    body = {"sku": sku, "name": f"Tea {sku}", "category": "tea", "price": "4.50", "stock": 10, **extra}
    response = client.post(f"{API}/products", headers=admin.headers, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def settle(app) -> None:
    """Wait until every change written so far can be handed out.

    On PostgreSQL the feed hands out a change only when every transaction
    that started before it has ended, cluster-wide (services/changes.py): a
    transaction of another test run on the same server delays it a moment.
    """
    deadline = time.monotonic() + 30
    with get_db(app).session() as session:
        newest = session.scalar(select(func.max(Change.txid)))
        while newest and changes_service.watermark(session).txid <= newest and time.monotonic() < deadline:
            session.rollback()
            time.sleep(0.05)


def product_feed(client, since="0", **params):
    settle(client.application)
    response = client.get(f"{API}/products/changes", query_string={"since": since, **params})
    assert response.status_code == 200, response.get_json()
    return response


def test_creates_updates_and_deletes_come_in_order_with_the_item_as_it_is(client, admin):
    first = new_product(client, admin, "TEA-1")
    second = new_product(client, admin, "TEA-2")
    client.patch(f"{API}/products/{first['id']}", headers=admin.headers, json={"stock": 3})
    client.delete(f"{API}/products/{second['id']}", headers=admin.headers)

    response = product_feed(client)
    body = response.get_json()
    assert [(entry["id"], entry["op"]) for entry in body["data"]] == [
        (first["id"], "upsert"), (second["id"], "delete"), (first["id"], "upsert"), (second["id"], "delete")]
    assert body["data"][0]["item"]["stock"] == 3 and body["data"][0]["version"] == 2  # as it is now
    assert body["data"][1]["item"] is None
    assert body["next_since"] == response.headers["X-Next-Since"]
    # A short page is the end of the feed as read: next_since is its last entry's or beyond it.
    parse = changes_service.Watermark.parse
    assert parse(body["next_since"]) >= parse(body["data"][-1]["seq"])
    seqs = [entry["seq"] for entry in body["data"]]
    assert len(set(seqs)) == 4
    assert product_feed(client, body["next_since"]).get_json()["data"] == []  # nothing twice
    resumed = product_feed(client, seqs[1]).get_json()["data"]
    assert [entry["seq"] for entry in resumed] == seqs[2:]  # any entry's seq resumes after it


def test_retiring_a_product_is_an_upsert_with_is_available_false(client, admin):
    product = new_product(client, admin)
    since = product_feed(client).get_json()["next_since"]
    client.patch(f"{API}/products/{product['id']}", headers=admin.headers, json={"is_available": False})
    entries = product_feed(client, since).get_json()["data"]
    assert [(e["op"], e["item"]["is_available"]) for e in entries] == [("upsert", False)]


def test_limit_pages_and_fields_select_within_the_item(client, admin):
    for n in range(5):
        new_product(client, admin, f"TEA-{n}")
    page = product_feed(client, limit=2, fields="sku,stock").get_json()
    assert len(page["data"]) == 2
    assert page["data"][0] == {"seq": page["data"][0]["seq"], "op": "upsert", "id": page["data"][0]["id"],
                               "version": 1, "item": {"sku": "TEA-0", "stock": 10}}
    rest = product_feed(client, page["next_since"], limit=10).get_json()["data"]
    assert [e["item"]["sku"] for e in page["data"] + rest] == [f"TEA-{n}" for n in range(5)]
    wrong = client.get(f"{API}/products/changes?since=0&fields=seq")
    assert wrong.status_code == 400 and "choose from id, sku" in wrong.get_json()["errors"]["fields"]


def test_ndjson_and_csv(client, admin):
    new_product(client, admin, "TEA-1", description="=SUM(1)")
    lines = product_feed(client, format="ndjson").get_data(as_text=True).splitlines()
    assert [json.loads(line)["item"]["sku"] for line in lines] == ["TEA-1"]
    rows = list(csv.reader(io.StringIO(product_feed(client, format="csv", fields="sku,description")
                                       .get_data(as_text=True))))
    assert rows[0] == ["seq", "op", "id", "version", "item.sku", "item.description"]
    assert rows[1][1:] == ["upsert", "1", "1", "TEA-1", "'=SUM(1)"]


@pytest.mark.parametrize("query", ["", "since=", "since=abc", "since=1", "since=-1.2", "since=1.2.3",
                                   "since=0&limit=0", "since=0&limit=1001", "since=0&since=0"])
def test_bad_parameters_are_400(client, query):
    response = client.get(f"{API}/products/changes?{query}")
    assert response.status_code == 400, query
    assert response.mimetype == "application/problem+json"


def test_a_pruned_since_is_410_and_a_fresh_export_starts_again(client, admin, app):
    new_product(client, admin, "TEA-1")
    new_product(client, admin, "TEA-2")
    with app.app_context():
        from myapi.db import get_session

        session = get_session()
        assert changes_service.prune(session, dt.timedelta(seconds=-1)) == 1  # the newest is kept (its id)
        session.commit()
    gone = client.get(f"{API}/products/changes?since=0")
    assert gone.status_code == 410
    assert gone.get_json()["type"] == "urn:myapi:problem:changes-expired"
    export = client.get(f"{API}/products/export")
    assert [p["sku"] for p in export.get_json()] == ["TEA-1", "TEA-2"]
    assert product_feed(client, export.headers["X-Changes-Since"]).get_json()["data"] == []


def prune_all(app) -> int:
    settle(app)
    with app.app_context():
        from myapi.db import get_session

        session = get_session()
        pruned = changes_service.prune(session, dt.timedelta(seconds=-1))
        session.commit()
    return pruned


def test_writes_after_a_prune_are_in_the_feed(client, admin, app):
    """Change ids are never reused: a prune keeps the newest change, so SQLite's next id stays above it."""
    new_product(client, admin, "TEA-1")
    new_product(client, admin, "TEA-2")
    since = client.get(f"{API}/products/export").headers["X-Changes-Since"]
    assert prune_all(app) == 1  # all but the newest, whose id keeps SQLite's next ids above it
    new_product(client, admin, "TEA-3")
    entries = product_feed(client, since).get_json()["data"]
    assert [e["item"]["sku"] for e in entries] == ["TEA-3"]


def test_a_quiet_feed_moves_its_watermark_past_other_changes(client, admin, app, make_account):
    """A customer whose orders are few is not sent back to export by a prune of everybody else's changes."""
    product = new_product(client, admin, "TEA-1", stock=100)
    alice, bob = make_account(), make_account()
    order = {"items": [{"product_id": product["id"], "quantity": 1}], "shipping_address": "1 High St"}
    mine = client.post(f"{API}/orders", headers=alice.headers, json=order).get_json()

    def alices_feed(since):
        settle(app)
        response = client.get(f"{API}/orders/changes", query_string={"since": since}, headers=alice.headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    first = alices_feed("0")
    assert [e["id"] for e in first["data"]] == [mine["id"]]
    for _ in range(3):
        client.post(f"{API}/orders", headers=bob.headers, json=order)
    quiet = alices_feed(first["next_since"])
    assert quiet["data"] == []
    assert changes_service.Watermark.parse(quiet["next_since"]) > changes_service.Watermark.parse(first["next_since"])
    prune_all(app)  # everything so far, Bob's orders included
    assert alices_feed(quiet["next_since"])["data"] == []  # 200: nothing of hers was lost
    assert client.get(f"{API}/orders/changes", query_string={"since": first["next_since"]},
                      headers=alice.headers).status_code == 410


@pytest.mark.skipif(not os.environ.get("MYAPI_TEST_DATABASE_URL"),
                    reason="PostgreSQL: SQLite serialises writers, so no transaction can commit out of order")
def test_a_change_committed_out_of_order_is_handed_out_before_the_later_one(client, admin, app):
    """Transaction A writes first but commits last: the feed holds B back until A ends, then gives A, B."""
    since = client.get(f"{API}/products/export").headers["X-Changes-Since"]
    with get_db(app).session() as held:
        held.add(Product(sku="TEA-A", name="Tea A", description="", category="tea", price=Decimal("1.00"),
                         stock=1, is_available=True))
        held.flush()  # A has its transaction id and its change row, not yet committed
        new_product(client, admin, "TEA-B")  # B commits first
        response = client.get(f"{API}/products/changes", query_string={"since": since})
        assert response.status_code == 200
        assert response.get_json()["data"] == []  # B waits for A, which started before it
        polled = response.get_json()["next_since"]  # a follower that polled meanwhile
        held.commit()
    for start in (since, polled):
        entries = product_feed(client, start).get_json()["data"]
        assert [e["item"]["sku"] for e in entries] == ["TEA-A", "TEA-B"]


def test_an_export_and_its_watermark_make_a_copy_equal_to_the_table(client, admin):
    keep = new_product(client, admin, "TEA-1")
    gone = new_product(client, admin, "TEA-2")
    export = client.get(f"{API}/products/export")
    copy = {p["id"]: p for p in export.get_json()}
    since = export.headers["X-Changes-Since"]
    client.patch(f"{API}/products/{keep['id']}", headers=admin.headers, json={"price": "5.00"})
    client.delete(f"{API}/products/{gone['id']}", headers=admin.headers)
    new_product(client, admin, "TEA-3")
    apply(copy, product_feed(client, since).get_json()["data"])
    assert copy == {p["id"]: p for p in client.get(f"{API}/products/export").get_json()}


def apply(copy: dict, entries: list[dict]) -> None:
    for entry in entries:
        if entry["op"] == "delete":
            copy.pop(entry["id"], None)
        else:
            copy[entry["id"]] = entry["item"]


def test_an_import_is_in_the_feed(client, admin):
    response = client.post(f"{API}/products/import", headers={**admin.headers, "Content-Type": "text/csv"},
                           data="sku,name,category,price,stock\nA-1,A,tea,1.00,1\nA-2,B,tea,2.00,2\n")
    assert response.status_code == 200, response.get_json()
    body = product_feed(client).get_json()
    assert sorted(e["item"]["sku"] for e in body["data"]) == ["A-1", "A-2"]
    # Again, one row changed, one unchanged, one new: the feed has exactly the two that were written.
    again = client.post(f"{API}/products/import", headers={**admin.headers, "Content-Type": "text/csv"},
                        data="sku,name,category,price,stock\nA-1,A,tea,1.00,1\nA-2,B,tea,2.50,2\nA-3,C,tea,3.00,3\n")
    assert again.status_code == 200 and again.get_json()["unchanged"] == 1, again.get_json()
    later = product_feed(client, body["next_since"]).get_json()["data"]
    assert [(e["item"]["sku"], e["item"]["price"], e["version"]) for e in later] == [
        ("A-2", "2.50", 2), ("A-3", "3.00", 1)]
    with get_db(client.application).session() as session:
        kinds = session.execute(select(Change.entity_id, Change.kind).where(Change.entity == "product")
                                .order_by(Change.id)).all()
    assert [kind for _, kind in kinds] == ["created", "created", "updated", "created"]


def test_an_import_whose_batches_share_a_clock_reading_records_each_row_once(client, admin, monkeypatch):
    """SQLite records a batch's updated rows by their new date_updated: a clock that has not moved
    since the last batch (coarse, or stepped back) must not make it record that batch's rows again."""
    from myapi.services import backends

    monkeypatch.setattr(backends.SQLite, "import_batch_size", 2)
    monkeypatch.setattr(backends.PostgreSQL, "import_batch_size", 2)
    stopped = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    monkeypatch.setattr(backends, "utcnow", lambda: stopped)
    new_product(client, admin, "OLD-1")
    rows = "".join(f"NEW-{i},N{i},tea,1.00,1\n" for i in range(5))
    response = client.post(f"{API}/products/import", headers={**admin.headers, "Content-Type": "text/csv"},
                           data="sku,name,category,price,stock\nOLD-1,Renamed,tea,1.00,1\n" + rows)
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["created"], response.get_json()["updated"]) == (5, 1)
    with get_db(client.application).session() as session:
        recorded = session.execute(select(Change.entity_id, Change.kind).where(Change.entity == "product")
                                   .order_by(Change.id)).all()
        ids = dict(session.execute(select(Product.sku, Product.id)).all())
    assert sorted(recorded) == sorted([(ids["OLD-1"], "created"), (ids["OLD-1"], "updated")]
                                      + [(ids[f"NEW-{i}"], "created") for i in range(5)])


def test_order_feeds_are_per_owner_and_admin_sees_all(client, admin, make_account):
    product = new_product(client, admin, "TEA-1", stock=100)
    alice, bob = make_account(), make_account()
    order = {"items": [{"product_id": product["id"], "quantity": 1}], "shipping_address": "1 High St"}
    mine = client.post(f"{API}/orders", headers=alice.headers, json=order).get_json()
    theirs = client.post(f"{API}/orders", headers=bob.headers, json=order).get_json()
    client.patch(f"{API}/orders/{mine['id']}", headers=alice.headers, json={"status": "cancelled"})

    def order_feed(account):
        settle(client.application)
        response = client.get(f"{API}/orders/changes?since=0", headers=account.headers)
        assert response.status_code == 200, response.get_json()
        return [(e["id"], e["item"]["status"]) for e in response.get_json()["data"]]

    assert order_feed(alice) == [(mine["id"], "cancelled"), (mine["id"], "cancelled")]
    assert order_feed(bob) == [(theirs["id"], "pending")]
    assert {entry[0] for entry in order_feed(admin)} == {mine["id"], theirs["id"]}
    assert client.get(f"{API}/orders/changes?since=0").status_code == 401
    # The stock an order takes is a product change too.
    assert [e["item"]["stock"] for e in product_feed(client).get_json()["data"]][-1] == 99


def test_changes_are_written_with_the_transaction_or_not_at_all(client, admin, app):
    product = new_product(client, admin, "TEA-1", stock=1)
    refused = client.patch(f"{API}/products/{product['id']}", headers={**admin.headers, "If-Match": '"v9"'},
                           json={"stock": 5})
    assert refused.status_code == 412
    with get_db(app).session() as session:
        assert len(session.scalars(select(Change)).all()) == 1  # the creation only
        assert session.get(ChangeHorizon, 1).change_id == 0


def test_each_change_records_what_happened(client, admin, make_account, app):
    """The kind the events of DESIGN §11 are named by: created, updated, status_changed, deleted."""
    product = new_product(client, admin, "TEA-1", stock=10)
    client.patch(f"{API}/products/{product['id']}", headers=admin.headers, json={"price": "5.00"})
    buyer = make_account()
    order = client.post(f"{API}/orders", headers=buyer.headers, json={
        "items": [{"product_id": product["id"], "quantity": 1}], "shipping_address": "1 High St"}).get_json()
    client.patch(f"{API}/orders/{order['id']}", headers=buyer.headers, json={"status": "cancelled"})
    gone = new_product(client, admin, "TEA-2")
    client.delete(f"{API}/products/{gone['id']}", headers=admin.headers)
    with get_db(app).session() as session:
        recorded = session.execute(select(Change.entity, Change.entity_id, Change.kind)
                                   .order_by(Change.txid, Change.id)).all()
    assert [tuple(row) for row in recorded] == [
        ("product", product["id"], "created"), ("product", product["id"], "updated"),
        ("order", order["id"], "created"), ("product", product["id"], "updated"),  # the stock it took
        ("order", order["id"], "status_changed"), ("product", product["id"], "updated"),  # restocked
        ("product", gone["id"], "created"), ("product", gone["id"], "deleted")]


# -- keeping a local copy: Client.sync and `myapi remote sync` --------------------------------


def csv_table(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_client_sync_keeps_a_csv_equal_to_a_fresh_export(app, live_server, admin, tmp_path, customer):
    from myapi.client import Client

    api = Client(live_server, admin.token)
    for n in range(3):
        api.create_product(sku=f"TEA-{n}", name=f"Tea {n}", category="tea", price="4.50", stock=5,
                           description="=1+1" if n == 0 else "")
    copy = tmp_path / "catalogue.csv"
    first = api.sync_products(copy)
    assert first.exported and first.created == 3
    assert (tmp_path / "catalogue.csv.since").read_text().strip() == first.since

    api.update_product(1, {"price": "5.00", "name": 'Tea, "the" one'})
    api.delete_product(2)
    api.create_product(sku="TEA-9", name="New", category="tea", price="1.00", stock=1)
    Client(live_server, customer.token).place_order([(3, 2)], "1 High St")
    settle(app)
    second = api.sync_products(copy)
    assert (second.exported, second.created, second.updated, second.deleted) == (False, 1, 2, 1)
    fresh = tmp_path / "fresh.csv"
    api.export_products(fresh)
    assert csv_table(copy) == csv_table(fresh)
    assert api.sync_products(copy).created == 0  # nothing new: nothing changes
    assert csv_table(copy) == csv_table(fresh)


def test_orders_sync_keeps_one_row_per_line(app, live_server, admin, customer, tmp_path):
    from myapi.client import Client

    api = Client(live_server, admin.token)
    for n in range(2):
        api.create_product(sku=f"TEA-{n}", name=f"Tea {n}", category="tea", price="4.50", stock=50)
    shop = Client(live_server, customer.token)
    shop.place_order([(1, 1), (2, 2)], "1 High St")
    copy = tmp_path / "orders.csv"
    shop.sync_orders(copy)
    second = shop.place_order([(2, 1)], "2 High St")
    shop.cancel_order(second)
    settle(app)
    assert str(shop.sync_orders(copy)) == "1 created, 0 updated, 0 deleted"
    fresh = tmp_path / "fresh.csv"
    shop.export_orders(fresh)
    assert csv_table(copy) == csv_table(fresh) and len(csv_table(copy)) == 4  # header and three lines


def test_a_pruned_watermark_makes_sync_export_again(app, live_server, admin, tmp_path):
    from myapi.client import Client
    from myapi.db import get_session

    api = Client(live_server, admin.token)
    api.create_product(sku="TEA-1", name="Tea", category="tea", price="4.50", stock=5)
    copy = tmp_path / "catalogue.csv"
    api.sync_products(copy)
    api.create_product(sku="TEA-2", name="Tea", category="tea", price="4.50", stock=5)
    with app.app_context():
        session = get_session()
        changes_service.prune(session, dt.timedelta(seconds=-1))
        session.commit()
    again = api.sync_products(copy)
    assert again.exported and again.created == 2


def test_remote_sync_command(app, live_server, admin, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from myapi.cli import main
    from myapi.client import Client

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    env = {"MYAPI_URL": live_server, "MYAPI_TOKEN": admin.token}
    Client(live_server, admin.token).create_product(sku="TEA-1", name="Tea", category="tea", price="4.50", stock=5)
    copy = str(tmp_path / "catalogue.csv")
    first = CliRunner().invoke(main, ["remote", "sync", "products", copy, "--no-progress"], env=env)
    assert first.exit_code == 0, first.output
    assert "exported 1" in first.stderr
    Client(live_server, admin.token).update_product(1, {"stock": 7})
    settle(app)
    second = CliRunner().invoke(main, ["remote", "sync", "products", copy, "--no-progress"], env=env)
    assert second.exit_code == 0 and "0 created, 1 updated, 0 deleted" in second.stderr
    assert csv_table(copy)[1][6] == "7"
