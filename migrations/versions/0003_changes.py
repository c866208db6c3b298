"""Change feeds (DESIGN §9): the changes table, its horizon, and the triggers that fill it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Every INSERT, UPDATE and DELETE of products and orders writes a change row in
the same transaction, by a trigger, so that no write path (ORM, the import's
bulk upsert or COPY, a Core UPDATE) can forget one and a change exists if
and only if its write committed. PostgreSQL: statement-level triggers with
transition tables (one INSERT ... SELECT per statement, so a 5,000-row import
batch costs one more statement), stamping each row with
``pg_current_xact_id()``. SQLite: row triggers (its writers are serialised,
so the id order is the commit order and ``txid`` stays 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, entity, owner column or None, status column or None)
TRACKED = (("products", "product", None, None), ("orders", "order", "user_id", "status"))
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("date_created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
    )
    # Two indexes only: every write pays for them (an import writes one change per row). The
    # owners' index leaves products out (their owner is NULL); prune scans by date, rarely.
    op.create_index("ix_changes_entity_txid_id", "changes", ["entity", "txid", "id"], unique=False)
    op.create_index("ix_changes_owner_id_entity_txid_id", "changes", ["owner_id", "entity", "txid", "id"],
                    unique=False, sqlite_where=sa.text("owner_id IS NOT NULL"),
                    postgresql_where=sa.text("owner_id IS NOT NULL"))
    op.create_table(
        "change_horizon",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("change_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_horizon")),
    )
    op.execute("INSERT INTO change_horizon (id, txid, change_id) VALUES (1, 0, 0)")
    if op.get_bind().dialect.name == "postgresql":
        for table, entity, owner, status in TRACKED:
            _postgresql_triggers(table, entity, owner, status)
    else:
        for table, entity, owner, status in TRACKED:
            _sqlite_triggers(table, entity, owner, status)


def _postgresql_triggers(table: str, entity: str, owner: str | None, status: str | None) -> None:
    owner_of = (lambda rows: f"{rows}.{owner}") if owner else (lambda rows: "NULL")
    # An update that moves the status column is a "status_changed" (an order.status_changed event, DESIGN §11).
    update_kind = (f"CASE WHEN old_rows.{status} IS DISTINCT FROM new_rows.{status} "
                   f"THEN 'status_changed' ELSE 'updated' END") if status else "'updated'"
    columns = "INSERT INTO changes (entity, entity_id, op, kind, version, owner_id, txid, date_created)"
    stamp = "pg_current_xact_id()::text::bigint, clock_timestamp()"
    op.execute(f"""
        CREATE FUNCTION record_{entity}_changes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                {columns}
                SELECT '{entity}', old_rows.id, 'delete', 'deleted', old_rows.version, {owner_of("old_rows")}, {stamp}
                FROM old_rows ORDER BY old_rows.id;
            ELSIF TG_OP = 'UPDATE' THEN
                {columns}
                SELECT '{entity}', new_rows.id, 'upsert', {update_kind}, new_rows.version,
                       {owner_of("new_rows")}, {stamp}
                FROM new_rows JOIN old_rows ON old_rows.id = new_rows.id ORDER BY new_rows.id;
            ELSE
                {columns}
                SELECT '{entity}', new_rows.id, 'upsert', 'created', new_rows.version, {owner_of("new_rows")}, {stamp}
                FROM new_rows ORDER BY new_rows.id;
            END IF;
            RETURN NULL;
        END $$
    """)  # noqa: S608
    for event, transition in (("INSERT", "NEW TABLE AS new_rows"),
                              ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                              ("DELETE", "OLD TABLE AS old_rows")):
        op.execute(f"CREATE TRIGGER {table}_changes_{event.lower()} AFTER {event} ON {table} "
                   f"REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION record_{entity}_changes()")


def _sqlite_triggers(table: str, entity: str, owner: str | None, status: str | None) -> None:
    update_kind = (f"CASE WHEN OLD.{status} IS NOT NEW.{status} THEN 'status_changed' ELSE 'updated' END"
                   if status else "'updated'")
    for event, row, op_name, kind in (("INSERT", "NEW", "upsert", "'created'"), ("UPDATE", "NEW", "upsert", update_kind),
                                      ("DELETE", "OLD", "delete", "'deleted'")):
        owner_value = f"{row}.{owner}" if owner else "NULL"
        op.execute(f"""
            CREATE TRIGGER {table}_changes_{event.lower()} AFTER {event} ON {table} BEGIN
                INSERT INTO changes (entity, entity_id, op, kind, version, owner_id, txid, date_created)
                VALUES ('{entity}', {row}.id, '{op_name}', {kind}, {row}.version, {owner_value}, 0, {SQLITE_NOW});
            END
        """)  # noqa: S608


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, entity, _owner, _status in TRACKED:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_changes_{event}" + (f" ON {table}" if postgresql else ""))
        if postgresql:
            op.execute(f"DROP FUNCTION IF EXISTS record_{entity}_changes()")
    op.drop_table("change_horizon")
    op.drop_index("ix_changes_owner_id_entity_txid_id", table_name="changes")
    op.drop_index("ix_changes_entity_txid_id", table_name="changes")
    op.drop_table("changes")
