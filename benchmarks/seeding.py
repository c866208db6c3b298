"""Seed a benchmark database fast: SQLAlchemy Core bulk inserts after ``myapi.migrate.upgrade``.

Everything comes from one ``random.Random(seed)``, so the same seed gives the
same catalogue, users and orders on SQLite and PostgreSQL. Rows bypass the API
(and its argon2 hashing): one password hash is computed once and shared, and
bearer tokens are written straight into ``tokens`` as their SHA-256, exactly
as ``myapi.common.auth.issue_token`` stores them.

Layout of the data (the workloads rely on it):

* users: id 1 is the admin ``bench_admin``; ids 2.. are customers.
* products: ids 1..N, sku ``SEED-0000001``..., 20 categories, price 1.00-999.99,
  stock 500k-1M (POST /orders never runs out), ``is_available`` false only
  when ``id % 50 == 0`` (the order workload skips those ids).
* orders: 1-4 lines each, spread over the last year, ids 1..M.
* tokens: one for the admin and one per customer for the first
  ``token_customers`` customers; their secrets are returned.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass, field

from sqlalchemy import MetaData, Table, text

from myapi.db import make_engine
from myapi.migrate import upgrade

CATEGORIES = (
    "books", "garden-tools", "kitchen", "toys", "outdoor", "office-supplies", "electronics",
    "pet-care", "beauty", "sports", "home-decor", "music", "baby", "automotive", "crafts",
    "grocery", "health", "shoes", "jewellery", "lighting",
)
ADJECTIVES = ("small", "large", "red", "blue", "green", "classic", "modern", "compact",
              "deluxe", "eco", "portable", "vintage", "heavy-duty", "soft", "smart")
NOUNS = ("lamp", "chair", "mug", "notebook", "kettle", "ball", "brush", "speaker", "jacket",
         "pot", "drill", "blanket", "bottle", "watch", "backpack", "candle", "puzzle")
WORDS = ("durable", "handmade", "quality", "everyday", "gift", "stainless", "cotton", "wooden",
         "recycled", "lightweight", "waterproof", "warranty", "family", "easy", "clean")
STATUSES = ("pending", "paid", "paid", "shipped", "completed", "completed", "cancelled")
UNAVAILABLE_EVERY = 50  # product ids divisible by this are retired (is_available=false)
CHUNK = 5000


@dataclass
class SeedSize:
    products: int
    users: int
    orders: int
    token_customers: int = 200


@dataclass
class Seeded:
    url: str
    size: SeedSize
    admin_token: str
    customer_tokens: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _password_hash() -> str:
    from passlib.hash import argon2

    # Nobody signs in during the benchmark (tokens are written directly); the
    # hash only has to be a valid one. Cheap parameters keep seeding fast.
    return argon2.using(memory_cost=1024, time_cost=1, parallelism=1).hash("bench-password-not-used")


def _stamp(value: dt.datetime, sqlite: bool) -> dt.datetime:
    # The app stores naive UTC on SQLite and aware UTC on PostgreSQL (models.UTCDateTime).
    return value.replace(tzinfo=None) if sqlite else value


def _insert(conn, table: Table, rows: list[dict]) -> None:
    for start in range(0, len(rows), CHUNK):
        conn.execute(table.insert(), rows[start:start + CHUNK])


def token_secret(rng: random.Random) -> str:
    return rng.getrandbits(256).to_bytes(32, "big").hex()


def seed(url: str, size: SeedSize, seed_value: int = 20240501) -> Seeded:
    """Migrate ``url`` (an empty database) to head and fill it; returns the tokens."""
    import time

    started = time.perf_counter()
    upgrade(url)
    rng = random.Random(seed_value)
    engine = make_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    year_ago = now - dt.timedelta(days=365)

    def when() -> dt.datetime:
        return _stamp(year_ago + dt.timedelta(seconds=rng.randint(0, 365 * 86400)), sqlite)

    metadata = MetaData()
    tables = {name: Table(name, metadata, autoload_with=engine)
              for name in ("users", "tokens", "products", "orders", "order_items")}
    password_hash = _password_hash()

    users = [{
        "id": 1, "username": "bench_admin", "email": "bench_admin@example.com", "password_hash": password_hash,
        "user_priority": 1, "role": "admin", "is_active": True, "version": 1,
        "date_created": _stamp(year_ago, sqlite), "date_updated": _stamp(year_ago, sqlite),
    }]
    for user_id in range(2, size.users + 1):
        created = when()
        users.append({
            "id": user_id, "username": f"customer_{user_id:06d}", "email": f"customer_{user_id:06d}@example.com",
            "password_hash": password_hash, "user_priority": rng.randint(0, 4), "role": "customer",
            "is_active": True, "version": 1, "date_created": created, "date_updated": created,
        })

    products = []
    for product_id in range(1, size.products + 1):
        created = when()
        products.append({
            "id": product_id, "sku": f"SEED-{product_id:07d}",
            "name": f"{rng.choice(ADJECTIVES).capitalize()} {rng.choice(NOUNS)} {product_id}",
            "description": " ".join(rng.choices(WORDS, k=rng.randint(3, 12))).capitalize() + ".",
            "category": rng.choice(CATEGORIES), "price": rng.randint(100, 99_999),
            "stock": rng.randint(500_000, 1_000_000), "is_available": product_id % UNAVAILABLE_EVERY != 0,
            "version": 1, "date_created": created, "date_updated": created,
        })

    orders, items = [], []
    item_id = 0
    customers = range(2, size.users + 1)
    for order_id in range(1, size.orders + 1):
        created = when()
        total = 0
        for product_id in rng.sample(range(1, size.products + 1), rng.randint(1, 4)):
            item_id += 1
            quantity = rng.randint(1, 5)
            price = products[product_id - 1]["price"]
            total += price * quantity
            items.append({"id": item_id, "order_id": order_id, "product_id": product_id,
                          "product_name": products[product_id - 1]["name"], "quantity": quantity,
                          "unit_price": price})
        orders.append({"id": order_id, "user_id": rng.choice(customers), "status": rng.choice(STATUSES),
                       "shipping_address": f"{rng.randint(1, 999)} Bench Street, Testville",
                       "total_amount": total, "version": 1, "date_created": created, "date_updated": created})

    expires = _stamp(now + dt.timedelta(days=7), sqlite)
    admin_token = token_secret(rng)
    customer_tokens = [token_secret(rng) for _ in range(min(size.token_customers, size.users - 1))]
    tokens = [{"id": 1, "user_id": 1, "token_hash": hashlib.sha256(admin_token.encode()).hexdigest(),
               "date_created": _stamp(now, sqlite), "expires_at": expires, "revoked_at": None}]
    for index, secret in enumerate(customer_tokens):
        tokens.append({"id": index + 2, "user_id": index + 2,
                       "token_hash": hashlib.sha256(secret.encode()).hexdigest(),
                       "date_created": _stamp(now, sqlite), "expires_at": expires, "revoked_at": None})

    try:
        with engine.begin() as conn:
            for name, rows in (("users", users), ("tokens", tokens), ("products", products),
                               ("orders", orders), ("order_items", items)):
                _insert(conn, tables[name], rows)
            if not sqlite:
                # Explicit ids were inserted: move the sequences past them.
                for name in tables:
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "  # noqa: S608
                                      f"(SELECT max(id) FROM {name}))"))
        if sqlite:
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        else:
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    finally:
        engine.dispose()
    return Seeded(url=url, size=size, admin_token=admin_token, customer_tokens=customer_tokens,
                  seconds=time.perf_counter() - started)
