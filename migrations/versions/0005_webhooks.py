"""Events and webhooks (DESIGN §11): subscriptions, their deliveries, and how far events were fanned out.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Events are the change feed's rows (``changes``, migration 0003; ``kind``
says created / updated / status_changed / deleted): an event exists if and
only if its change committed, because the same trigger wrote both in the
writing transaction. A completed CSV import (``imports`` row with mode
"import" from a file) writes a change of entity "import", kind "completed",
by the trigger below (owner NULL: it stays out of the owners' index).

``webhook_dispatch`` (one row) is the watermark up to which workers have
turned events into ``webhook_deliveries`` rows (one per event and matching
subscription). A delivery is claimed by a worker with a lease
(``lease_expires_at``): a worker killed mid-send loses nothing, another takes
the delivery when the lease ends.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("events", sa.String(length=400), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("date_created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("date_updated", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_webhooks_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("change_id", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leased_by", sa.String(length=100), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("date_created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhooks.id"], name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("webhook_id", "change_id", name=op.f("uq_webhook_deliveries_webhook_id")),
    )
    op.create_index("ix_webhook_deliveries_status_next_attempt_at", "webhook_deliveries",
                    ["status", "next_attempt_at"], unique=False)
    op.create_index("ix_webhook_deliveries_webhook_id_entity_id", "webhook_deliveries",
                    ["webhook_id", "entity", "entity_id", "id"], unique=False)
    op.create_table(
        "webhook_dispatch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("change_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_dispatch")),
    )
    op.execute("INSERT INTO webhook_dispatch (id, txid, change_id) VALUES (1, 0, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION record_import_completed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO changes (entity, entity_id, op, kind, version, owner_id, txid, date_created)
                SELECT 'import', new_rows.id, 'upsert', 'completed', 1, NULL,
                       pg_current_xact_id()::text::bigint, clock_timestamp()
                FROM new_rows WHERE new_rows.mode = 'import' AND new_rows.source = 'file' ORDER BY new_rows.id;
                RETURN NULL;
            END $$
        """)
        op.execute("CREATE TRIGGER imports_changes_insert AFTER INSERT ON imports REFERENCING NEW TABLE AS new_rows "
                   "FOR EACH STATEMENT EXECUTE FUNCTION record_import_completed()")
    else:
        op.execute(f"""
            CREATE TRIGGER imports_changes_insert AFTER INSERT ON imports
            WHEN NEW.mode = 'import' AND NEW.source = 'file' BEGIN
                INSERT INTO changes (entity, entity_id, op, kind, version, owner_id, txid, date_created)
                VALUES ('import', NEW.id, 'upsert', 'completed', 1, NULL, 0, {SQLITE_NOW});
            END
        """)  # noqa: S608


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute("DROP TRIGGER IF EXISTS imports_changes_insert" + (" ON imports" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS record_import_completed()")
    op.drop_table("webhook_dispatch")
    op.drop_index("ix_webhook_deliveries_webhook_id_entity_id", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_status_next_attempt_at", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
