"""A follower of the change feeds ends with exactly the tables while 4 gunicorn workers commit out of order."""

from __future__ import annotations

import random
import threading
import time

import requests
from test_changes import settle

API = "/api/v1"
TIMEOUT = 30


def follow(base: str, path: str, headers: dict, copy: dict, since: str, stop: threading.Event) -> str:
    """Apply the feed to ``copy`` until ``stop`` is set and the feed is drained; the last watermark."""
    while True:
        stopping = stop.is_set()
        response = requests.get(f"{base}{API}/{path}/changes", params={"since": since, "limit": 50},
                                headers=headers, timeout=TIMEOUT)
        response.raise_for_status()
        body = response.json()
        for entry in body["data"]:
            if entry["op"] == "delete":
                copy.pop(entry["id"], None)
            else:
                copy[entry["id"]] = entry["item"]
        since = body["next_since"]
        if not body["data"]:
            if stopping:
                return since
            time.sleep(0.02)


def writer(base: str, admin: dict, customers: list[dict], product_ids: list[int], seed: int, errors: list) -> None:
    rng = random.Random(seed)
    session = requests.Session()
    try:
        for step in range(40):
            action = rng.random()
            if action < 0.2:
                created = session.post(f"{base}{API}/products", headers=admin, timeout=TIMEOUT, json={
                    "sku": f"W{seed}-{step}", "name": "New", "category": "tea", "price": "3.00", "stock": 50})
                if created.status_code == 201:
                    product_ids.append(created.json()["id"])
            elif action < 0.35 and product_ids:
                session.delete(f"{base}{API}/products/{rng.choice(product_ids)}", headers=admin, timeout=TIMEOUT)
            elif action < 0.7 and product_ids:
                session.patch(f"{base}{API}/products/{rng.choice(product_ids)}", headers=admin, timeout=TIMEOUT,
                              json={"price": f"{rng.randint(100, 900) / 100:.2f}",
                                    "is_available": rng.random() > 0.2})
            elif product_ids:
                session.post(f"{base}{API}/orders", headers=rng.choice(customers), timeout=TIMEOUT, json={
                    "items": [{"product_id": rng.choice(product_ids), "quantity": 1}],
                    "shipping_address": "1 High St"})
    except Exception as error:  # noqa: BLE001 - reported by the test
        errors.append(error)


def test_followers_end_with_exactly_the_tables(start_server, make_account, app):
    base = start_server(workers=4).url
    admin = make_account("admin").headers
    customers = [make_account().headers for _ in range(3)]
    product_ids = []
    for n in range(30):
        response = requests.post(f"{base}{API}/products", headers=admin, timeout=TIMEOUT, json={
            "sku": f"P-{n}", "name": f"Product {n}", "category": "tea", "price": "5.00", "stock": 100})
        product_ids.append(response.json()["id"])

    stop, errors = threading.Event(), []
    copies, since, followers = {}, {}, []

    def start_following(when: str) -> None:
        """Export both tables now and follow their feeds from the exports' watermarks."""
        for path in ("products", "orders"):
            export = requests.get(f"{base}{API}/{path}/export", headers=admin, timeout=TIMEOUT)
            key = (when, path)
            copies[key] = {item["id"]: item for item in export.json()}
            since[key] = export.headers["X-Changes-Since"]
            follower = threading.Thread(target=lambda k=key, p=path: since.__setitem__(
                k, follow(base, p, admin, copies[k], since[k], stop)))
            follower.start()
            followers.append(follower)

    start_following("before the writes")
    writers = [threading.Thread(target=writer, args=(base, admin, customers, product_ids, seed, errors))
               for seed in range(4)]
    for thread in writers:
        thread.start()
    deadline = time.monotonic() + 30
    while len(product_ids) < 35 and time.monotonic() < deadline:
        time.sleep(0.01)
    start_following("amid the writes")  # exports taken while 4 workers commit
    for thread in writers:
        thread.join()
    settle(app)  # every write committed; let the feed's horizon pass them
    stop.set()
    for thread in followers:
        thread.join(120)
    assert errors == []
    assert len(copies) == 4

    products = {item["id"]: item for item in requests.get(f"{base}{API}/products/export", timeout=TIMEOUT).json()}
    orders = {item["id"]: item for item in
              requests.get(f"{base}{API}/orders/export", headers=admin, timeout=TIMEOUT).json()}
    assert len(products) > 20 and len(orders) > 10
    for when in ("before the writes", "amid the writes"):
        assert set(copies[when, "products"]) == set(products), when
        assert copies[when, "products"] == products, when  # every field: prices, stock, is_available...
        assert copies[when, "orders"] == orders, when
