"""The same-run baselines, served by gunicorn with the app's settings.

* ``raw_app`` — the ceiling: a bare WSGI callable answering every request with
  one constant JSON body (the bytes of ``GET /api/v1/products/1`` from the real
  app, read from ``$BENCH_CONSTANT_BODY``). What gunicorn plus the client can
  do at all on this machine.
* ``core_app`` — the stack-free reference: a bare Flask app whose views run
  the same SQLAlchemy Core statements as the API (same engine settings, from
  ``myapi.db.make_engine`` and ``$MYAPI_DATABASE_URL``), build the response
  dict by hand and encode it with orjson. No flask-restful, no reqparse, no
  ORM, no marshalling, no hooks. It serves:

  - ``GET  /api/v1/products/<id>``: SELECT the product's columns by id;
  - ``GET  /api/v1/products?category=&sort=-price&per_page=``: a COUNT and the
    page (``ORDER BY price DESC, id``), as ``myapi.services.query.paginate``;
  - ``POST /api/v1/products`` (admin bearer token): one token lookup, one
    INSERT ... RETURNING, commit;
  - ``POST /api/v1/orders`` (bearer token): one token lookup, the products
    locked in id order (``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
    SQLite), stock decremented, the order and its lines inserted, commit.

  Validation is the minimum needed to run the statements; the reference is
  what the database work alone costs through Flask.

    gunicorn -w 4 -b 127.0.0.1:8001 benchmarks.baselines:raw_app
    MYAPI_DATABASE_URL=... gunicorn -w 4 -b 127.0.0.1:8002 'benchmarks.baselines:core_app'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os

import orjson
from flask import Flask, Response, request
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from myapi.db import make_engine

# -- the ceiling -------------------------------------------------------------


def _constant_body() -> bytes:
    path = os.environ.get("BENCH_CONSTANT_BODY")
    if path:
        with open(path, "rb") as fh:
            return fh.read()
    return orjson.dumps({"id": 1, "sku": "SEED-0000001", "name": "Small lamp 1", "description": "Durable.",
                         "category": "kitchen", "price": "19.99", "stock": 1000, "is_available": True,
                         "date_created": "2026-01-01T00:00:00Z", "date_updated": "2026-01-01T00:00:00Z",
                         "links": {"self": "/api/v1/products/1"}})


BODY = _constant_body()
RAW_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def raw_app(environ, start_response):
    start_response("200 OK", RAW_HEADERS)
    return [BODY]


# -- the stack-free reference ---------------------------------------------------

metadata = MetaData()
products = Table(
    "products", metadata,
    Column("id", Integer, primary_key=True), Column("sku", String), Column("name", String),
    Column("description", Text), Column("category", String), Column("price", BigInteger),
    Column("stock", Integer), Column("is_available", Boolean), Column("version", Integer),
    Column("date_created", DateTime(timezone=True)), Column("date_updated", DateTime(timezone=True)),
)
users = Table("users", metadata, Column("id", Integer, primary_key=True), Column("role", String),
              Column("is_active", Boolean))
tokens = Table("tokens", metadata, Column("id", Integer, primary_key=True), Column("user_id", Integer),
               Column("token_hash", String), Column("expires_at", DateTime(timezone=True)),
               Column("revoked_at", DateTime(timezone=True)))
orders = Table(
    "orders", metadata,
    Column("id", Integer, primary_key=True), Column("user_id", Integer), Column("status", String),
    Column("shipping_address", String), Column("total_amount", BigInteger), Column("version", Integer),
    Column("date_created", DateTime(timezone=True)), Column("date_updated", DateTime(timezone=True)),
)
order_items = Table(
    "order_items", metadata,
    Column("id", Integer, primary_key=True), Column("order_id", Integer), Column("product_id", Integer),
    Column("product_name", String), Column("quantity", Integer), Column("unit_price", BigInteger),
)
PRODUCT_COLUMNS = [products.c[name] for name in (
    "id", "sku", "name", "description", "category", "price", "stock", "is_available",
    "date_created", "date_updated")]
SORTS = {"price": products.c.price, "name": products.c.name, "id": products.c.id}
UTC = dt.timezone.utc


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _product(row) -> dict:
    return {
        "id": row.id, "sku": row.sku, "name": row.name, "description": row.description,
        "category": row.category, "price": _money(row.price), "stock": row.stock,
        "is_available": row.is_available, "date_created": _iso(row.date_created),
        "date_updated": _iso(row.date_updated), "links": {"self": f"/api/v1/products/{row.id}"},
    }


def _json(body, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def _now(sqlite: bool) -> dt.datetime:
    now = dt.datetime.now(UTC)
    return now.replace(tzinfo=None) if sqlite else now


def create_core_app() -> Flask:
    app = Flask(__name__)
    engine = make_engine(os.environ["MYAPI_DATABASE_URL"])
    sqlite = engine.dialect.name == "sqlite"
    # SQLite writers queue on BEGIN IMMEDIATE, as in the app (myapi.db).
    write_engine = engine.execution_options(sqlite_immediate=True) if sqlite else engine
    # Reads in autocommit on PostgreSQL (no BEGIN / ROLLBACK round trips), as in the app.
    read_engine = engine if sqlite else engine.execution_options(isolation_level="AUTOCOMMIT")

    def bearer_user(conn):
        header = request.headers.get("Authorization", "")
        digest = hashlib.sha256(header.removeprefix("Bearer ").encode()).hexdigest()
        return conn.execute(
            select(users.c.id, users.c.role).join(tokens, tokens.c.user_id == users.c.id)
            .where(tokens.c.token_hash == digest, tokens.c.revoked_at.is_(None),
                   tokens.c.expires_at > _now(sqlite), users.c.is_active.is_(True))
        ).first()

    @app.get("/api/v1/products/<int:product_id>")
    def get_product(product_id: int):
        with read_engine.connect() as conn:
            row = conn.execute(select(*PRODUCT_COLUMNS).where(products.c.id == product_id)).first()
        if row is None:
            return _json({"status": 404}, 404)
        return _json(_product(row))

    @app.get("/api/v1/products")
    def list_products():
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", 20))
        where = []
        if "category" in request.args:
            where.append(products.c.category == request.args["category"])
        order = []
        sort = request.args.get("sort", "")
        if sort:
            key = sort.lstrip("-")
            order.append(SORTS[key].desc() if sort.startswith("-") else SORTS[key].asc())
        order.append(products.c.id.asc())
        with read_engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(products).where(*where)).scalar_one()
            rows = conn.execute(select(*PRODUCT_COLUMNS).where(*where).order_by(*order)
                                .limit(per_page).offset((page - 1) * per_page)).all()
        return _json({"data": [_product(row) for row in rows],
                      "pagination": {"page": page, "per_page": per_page, "total_items": total,
                                     "total_pages": -(-total // per_page)}})

    @app.post("/api/v1/products")
    def create_product():
        body = orjson.loads(request.get_data())
        price = round(float(body["price"]) * 100)
        now = _now(sqlite)
        values = {"sku": body["sku"], "name": body["name"], "description": body.get("description", ""),
                  "category": body["category"], "price": price, "stock": int(body.get("stock", 0)),
                  "is_available": bool(body.get("is_available", True)), "version": 1,
                  "date_created": now, "date_updated": now}
        with write_engine.connect() as conn:
            user = bearer_user(conn)
            if user is None or user.role != "admin":
                return _json({"status": 403}, 403)
            try:
                product_id = conn.execute(insert(products).values(values).returning(products.c.id)).scalar_one()
                conn.commit()
            except IntegrityError:
                return _json({"status": 409}, 409)
        return _json(_product(_Row(id=product_id, **values)), 201)

    @app.post("/api/v1/orders")
    def place_order():
        body = orjson.loads(request.get_data())
        lines = {int(line["product_id"]): int(line["quantity"]) for line in body["items"]}
        now = _now(sqlite)
        with write_engine.connect() as conn:
            user = bearer_user(conn)
            if user is None:
                return _json({"status": 401}, 401)
            stmt = (select(products.c.id, products.c.name, products.c.price, products.c.stock,
                           products.c.is_available)
                    .where(products.c.id.in_(sorted(lines))).order_by(products.c.id))
            if not sqlite:
                stmt = stmt.with_for_update()
            found = {row.id: row for row in conn.execute(stmt)}
            if len(found) != len(lines) or not all(row.is_available and row.stock >= lines[row.id]
                                                   for row in found.values()):
                conn.rollback()
                return _json({"status": 409}, 409)
            for product_id, quantity in lines.items():
                conn.execute(update(products).where(products.c.id == product_id)
                             .values(stock=products.c.stock - quantity, version=products.c.version + 1))
            total = sum(found[pid].price * quantity for pid, quantity in lines.items())
            order_id = conn.execute(insert(orders).values(
                user_id=user.id, status="pending", shipping_address=body["shipping_address"],
                total_amount=total, version=1, date_created=now, date_updated=now,
            ).returning(orders.c.id)).scalar_one()
            conn.execute(insert(order_items), [
                {"order_id": order_id, "product_id": pid, "product_name": found[pid].name,
                 "quantity": quantity, "unit_price": found[pid].price} for pid, quantity in lines.items()])
            conn.commit()
        stamp = _iso(now)
        return _json({
            "id": order_id, "user_id": user.id, "status": "pending", "shipping_address": body["shipping_address"],
            "total_amount": _money(total),
            "items": [{"product_id": pid, "product_name": found[pid].name, "quantity": quantity,
                       "unit_price": _money(found[pid].price), "subtotal": _money(found[pid].price * quantity)}
                      for pid, quantity in lines.items()],
            "date_created": stamp, "date_updated": stamp,
            "links": {"self": f"/api/v1/orders/{order_id}", "user": f"/api/v1/users/{user.id}"},
        }, 201)

    return app


class _Row:
    def __init__(self, **values):
        self.__dict__.update(values)


def core_app(environ, start_response):
    """The Flask reference app, built on the first request in each worker (after the fork)."""
    global _core  # one app per worker process
    if _core is None:
        _core = create_core_app()
    return _core(environ, start_response)


_core: Flask | None = None
