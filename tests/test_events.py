"""Events (DESIGN §11) through HTTP: GET /events is the change feed of every type, in commit order."""

from __future__ import annotations

import json

import pytest

from tests.test_changes import new_product, settle

API = "/api/v1"
CSV_FILE = "sku,name,category,price,stock\nIMP-1,Imported,tea,3.00,5\nIMP-2,Imported too,tea,4.00,6\n"


def events(client, account, since="0", **params):
    settle(client.application)
    response = client.get(f"{API}/events", query_string={"since": since, **params}, headers=account.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def place_order(client, account, product_id, quantity=1):
    return client.post(f"{API}/orders", headers=account.headers,
                       json={"items": [{"product_id": product_id, "quantity": quantity}], "shipping_address": "1 Road"})


def test_each_change_is_its_event_in_commit_order_with_the_item_as_it_is(client, admin, customer):
    tea = new_product(client, admin, "TEA-1")
    gone = new_product(client, admin, "TEA-2")
    client.patch(f"{API}/products/{tea['id']}", headers=admin.headers, json={"stock": 30})
    order = place_order(client, customer, tea["id"]).get_json()
    assert client.patch(f"{API}/orders/{order['id']}", headers=admin.headers,
                        json={"status": "paid"}).status_code == 200
    client.delete(f"{API}/products/{gone['id']}", headers=admin.headers)

    body = events(client, admin)
    types = [(event["type"], event["data"]["id"]) for event in body["data"]]
    # Placing the order changes the product's stock (an update), and an order's own updates are no events.
    assert types == [("product.created", tea["id"]), ("product.created", gone["id"]), ("product.updated", tea["id"]),
                     ("order.created", order["id"]), ("product.updated", tea["id"]),
                     ("order.status_changed", order["id"]), ("product.deleted", gone["id"])]
    first = body["data"][0]
    assert set(first) == {"id", "type", "created", "data", "seq"}
    assert first["id"].startswith("evt_") and first["created"].endswith("Z")
    assert first["data"]["stock"] == 29  # the item as it is now, not as it was then
    assert body["data"][5]["data"]["status"] == "paid" and body["data"][3]["data"]["status"] == "paid"
    assert body["data"][-1]["data"] == {"id": gone["id"]}
    assert len({event["id"] for event in body["data"]}) == len(body["data"])

    # Following next_since brings nothing twice; a page of one continues where it stopped.
    assert events(client, admin, body["next_since"])["data"] == []
    walked, since = [], "0"
    for _ in range(20):
        page = events(client, admin, since, limit=1)
        walked += page["data"]
        since = page["next_since"]
        if not page["data"]:
            break
    assert [event["id"] for event in walked] == [event["id"] for event in body["data"]]


def test_types_filter_ndjson_and_import_completed(client, admin):
    new_product(client, admin, "TEA-1")
    imported = client.post(f"{API}/products/import", data=CSV_FILE, content_type="text/csv", headers=admin.headers)
    assert imported.status_code == 200, imported.get_json()
    # A dry run and a refused file write nothing, and so no event.
    assert client.post(f"{API}/products/import?dry_run=true", data=CSV_FILE, content_type="text/csv",
                       headers=admin.headers).status_code == 200

    body = events(client, admin, types="import.completed")
    assert [event["type"] for event in body["data"]] == ["import.completed"]
    data = body["data"][0]["data"]
    assert data["id"] == int(imported.headers["X-Import-Id"]) and data["created"] == 2 and data["source"] == "file"

    created = events(client, admin, types="product.created,import.completed")
    assert [event["type"] for event in created["data"]] == ["product.created"] * 3 + ["import.completed"]

    settle(client.application)
    response = client.get(f"{API}/events?since=0", headers={**admin.headers, "Accept": "application/x-ndjson"})
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [line["type"] for line in lines] == ["product.created"] * 3 + ["import.completed"]
    assert response.headers["X-Next-Since"]


def test_a_rolled_back_change_has_no_event(client, admin, customer):
    tea = new_product(client, admin, "TEA-1", stock=1)
    assert place_order(client, customer, tea["id"], quantity=5).status_code in (409, 422)
    bad = "sku,name,category,price,stock\nIMP-1,Imported,tea,3.00,5\nIMP-2,,tea,-1,6\n"
    assert client.post(f"{API}/products/import", data=bad, content_type="text/csv",
                       headers=admin.headers).status_code in (400, 422)
    assert [event["type"] for event in events(client, admin)["data"]] == ["product.created"]


@pytest.mark.parametrize("query", ["", "since=x", "since=0&types=order.updated", "since=0&limit=0",
                                   "since=0&types=order.created,,", "since=0&types=", "since=0&limit=1001"])
def test_bad_parameters_are_400(client, admin, query):
    response = client.get(f"{API}/events?{query}", headers=admin.headers)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json" and response.get_json()["errors"]


def test_a_type_named_twice_in_the_filter_counts_once(client, admin):
    new_product(client, admin, "TEA-1")
    body = events(client, admin, types="product.created,product.created")
    assert [event["type"] for event in body["data"]] == ["product.created"]


def test_admins_only_and_keys_need_webhooks_manage(client, admin, customer):
    assert client.get(f"{API}/events?since=0").status_code == 401
    assert client.get(f"{API}/events?since=0", headers=customer.headers).status_code == 403
    keys = {}
    for scopes in (["webhooks:manage"], ["products:read"]):
        response = client.post(f"{API}/api-keys", headers=admin.headers, json={"name": scopes[0], "scopes": scopes})
        assert response.status_code == 201, response.get_json()
        keys[scopes[0]] = {"Authorization": f"Bearer {response.get_json()['secret']}"}
    assert client.get(f"{API}/events?since=0", headers=keys["webhooks:manage"]).status_code == 200
    assert client.get(f"{API}/events?since=0", headers=keys["products:read"]).status_code == 403
