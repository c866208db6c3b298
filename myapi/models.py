"""SQLAlchemy 2 typed models for every v1 table.

Money is stored as whole cents in a BIGINT (the ``Money`` type) so that sums,
CHECKs and comparisons are exact on SQLite and PostgreSQL alike; Python sees
``Decimal`` with two places. Times are stored as UTC and always come back
timezone-aware. ``users``, ``products`` and ``orders`` carry a ``version``
column that SQLAlchemy checks on every UPDATE (``version_id_col``): two writers
can never silently overwrite each other, and the version is the item's ETag.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

CENT = Decimal("0.01")

ROLES = ("customer", "admin")
ORDER_STATUSES = ("pending", "paid", "shipped", "completed", "cancelled")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always returned timezone-aware (UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.timezone.utc)
        # SQLite keeps no offset; store the naive UTC wall time there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class Money(TypeDecorator):
    """A Decimal amount with two places, stored exactly as integer cents."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        cents = (Decimal(value) / CENT).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return int(cents)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return (Decimal(int(value)) * CENT).quantize(CENT)


# Stable constraint names, so Alembic migrations name things the same way on
# every database and a later migration can drop or alter them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Timestamped:
    date_created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    date_updated: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class User(Timestamped, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    user_priority: Mapped[int] = mapped_column(SmallInteger, default=1)
    role: Mapped[str] = mapped_column(String(16), default="customer", index=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    version: Mapped[int] = mapped_column(Integer)

    tokens: Mapped[list[Token]] = relationship(back_populates="user", cascade="all, delete-orphan")

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        CheckConstraint("user_priority BETWEEN 0 AND 4", name="user_priority_range"),
        CheckConstraint("role IN ('customer', 'admin')", name="role_known"),
    )

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Token(Base):
    """A bearer token. Only the SHA-256 of the secret is stored."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    date_created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")


API_KEY_SCOPES = ("products:read", "products:write", "orders:read", "orders:write", "reports:read",
                  "users:read", "webhooks:manage")


class ApiKey(Base):
    """A long-lived, revocable credential for scripts, limited to its scopes. Only the SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # The first characters of the secret ("myapi_AbCd1234"): enough to tell keys apart, never enough to use one.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))  # space-separated, in API_KEY_SCOPES order
    date_created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)

    user: Mapped[User] = relationship()

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()


class Change(Base):
    """One committed change of a product or an order, for the change feeds (DESIGN §9).

    Written by database triggers (migration 0003) in the changing transaction
    itself, whatever wrote the row: an ORM flush, an import's bulk upsert, a
    stock UPDATE. ``txid`` is the writing transaction's id on PostgreSQL
    (``pg_current_xact_id()``), 0 on SQLite, whose writers are serialised.
    The feed's order is ``(txid, id)`` (services/changes.py says why).
    """

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    entity: Mapped[str] = mapped_column(String(16))  # "product" | "order" | "import" (a completed CSV import)
    entity_id: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(8))  # "upsert" | "delete"
    # What happened, for events (DESIGN §11): "created" | "updated" | "status_changed" | "deleted" | "completed"
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    owner_id: Mapped[int | None] = mapped_column(Integer)  # an order's customer
    txid: Mapped[int] = mapped_column(BigInteger, default=0)
    date_created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Two indexes only: an import writes one change per row, and each index costs every one of them.
    __table_args__ = (
        Index("ix_changes_entity_txid_id", "entity", "txid", "id"),
        Index("ix_changes_owner_id_entity_txid_id", "owner_id", "entity", "txid", "id",
              sqlite_where=text("owner_id IS NOT NULL"), postgresql_where=text("owner_id IS NOT NULL")),
    )


class ChangeHorizon(Base):
    """The newest change pruned so far (one row): a ``since`` before it has lost changes (410)."""

    __tablename__ = "change_horizon"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger, default=0)
    change_id: Mapped[int] = mapped_column(BigInteger, default=0)


class Product(Timestamped, Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(64), index=True)
    price: Mapped[Decimal] = mapped_column(Money, index=True)
    stock: Mapped[int] = mapped_column(Integer, default=0)
    is_available: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        Index("ix_products_date_updated", "date_updated"),
    )


class Order(Timestamped, Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    shipping_address: Mapped[str] = mapped_column(String(500))
    total_amount: Mapped[Decimal] = mapped_column(Money)
    version: Mapped[int] = mapped_column(Integer)

    user: Mapped[User] = relationship()
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderItem.id"
    )

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'paid', 'shipped', 'completed', 'cancelled')", name="status_known"
        ),
        CheckConstraint("total_amount >= 0", name="total_not_negative"),
        Index("ix_orders_user_id_date_created", "user_id", "date_created"),
        Index("ix_orders_date_created", "date_created"),
    )


class OrderItem(Base):
    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    # A snapshot: renaming or repricing a product never rewrites history.
    product_name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money)

    order: Mapped[Order] = relationship(back_populates="items")

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price > 0", name="unit_price_positive"),
    )

    @property
    def subtotal(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(CENT)


class ImportRecord(Base):
    """The audit record of one bulk change (DESIGN §12): a CSV import (or its plan, or a dry run)
    or a ``PATCH /products``.

    Who (the user, and the API key if one was used), when, the options, the
    counts, and the plan of what changed: ``detail`` holds the answer's
    lists, each bounded (the first 100 changes of a file, every change of a
    PATCH, at most 1000; the first 100 row errors and price-guardrail
    offences), so a record never grows with the file.
    ``myapi db prune`` deletes records older than MYAPI_IMPORTS_RETENTION days.
    """

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(16))  # "file" (POST /products/import) | "patch" (PATCH /products)
    mode: Mapped[str] = mapped_column(String(16))  # "import" | "dry_run" | "plan" | "plan+dry_run"
    on_error: Mapped[str | None] = mapped_column(String(16))
    max_price_change: Mapped[str | None] = mapped_column(String(16))  # the percent as given, e.g. "12.5"
    columns: Mapped[str] = mapped_column(Text, default="")  # the columns (fields) it set, comma-separated
    rows: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON: changes, errors, price_guardrail, refused...
    date_created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    user: Mapped[User] = relationship()

    @property
    def dry_run(self) -> bool:
        return "dry_run" in self.mode.split("+")

    @property
    def plan(self) -> bool:
        return "plan" in self.mode.split("+")

    @property
    def changes_truncated(self) -> bool:
        """Whether it changed more than ``changes`` lists (the list is the first CHANGES_LISTED)."""
        return len(self.details.get("changes") or []) < self.created + self.updated

    @property
    def column_list(self) -> list[str]:
        return [name for name in self.columns.split(",") if name]

    @functools.cached_property
    def details(self) -> dict:
        """``detail`` parsed: the lists of the answer (changes, errors, price_guardrail...)."""
        return json.loads(self.detail or "{}")


WEBHOOK_EVENT_TYPES = ("product.created", "product.updated", "product.deleted", "order.created",
                       "order.status_changed", "import.completed")
DELIVERY_STATUSES = ("pending", "delivering", "succeeded", "failed")


class Webhook(Timestamped, Base):
    """A subscription (DESIGN §11): events of ``events`` are POSTed to ``url``, signed with ``secret``.

    The secret is kept as it was given out (Standard Webhooks ``whsec_`` +
    base64): signing needs the secret itself, so unlike passwords, tokens
    and API keys it cannot be stored as a hash. It never leaves the
    database after the answer that created (or rotated) it. After a
    rotation the previous secret keeps signing too until
    ``previous_secret_expires_at`` (24 h): receivers switch at their pace.
    """

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[str] = mapped_column(String(400))  # space-separated, in WEBHOOK_EVENT_TYPES order
    description: Mapped[str] = mapped_column(String(500), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}

    @property
    def event_list(self) -> list[str]:
        return self.events.split()


class WebhookDelivery(Base):
    """One event for one subscription, and where its delivery is (DESIGN §11).

    ``status``: pending (waiting for ``next_attempt_at``), delivering (a
    worker holds it until ``lease_expires_at``), succeeded (a 2xx), failed
    (no 2xx for 24 h, or the subscription refused it for good).
    ``payload`` is the event JSON exactly as sent, so every retry is
    byte-identical and its signature verifies the same.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    change_id: Mapped[int] = mapped_column(BigInteger)  # the event's id (a changes row)
    event_type: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    leased_by: Mapped[str | None] = mapped_column(String(100))
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    date_created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("webhook_id", "change_id", name="uq_webhook_deliveries_webhook_id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook_id_entity_id", "webhook_id", "entity", "entity_id", "id"),
    )


class WebhookDispatch(Base):
    """How far events were turned into deliveries (one row): the change feed watermark of the fan-out."""

    __tablename__ = "webhook_dispatch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger, default=0)
    change_id: Mapped[int] = mapped_column(BigInteger, default=0)


class IdempotencyKey(Base):
    """A claimed ``Idempotency-Key`` and, once finished, the response it produced."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "user:<id>" or "anonymous": keys are scoped per caller.
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(500))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    response_headers: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[str | None] = mapped_column(Text)
    date_created: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)

    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_keys_scope_key"),)
