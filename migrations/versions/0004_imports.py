"""The audit trail of bulk changes (DESIGN §12): one row per import, plan, dry run or PATCH /products.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

``detail`` is JSON text holding bounded lists (the first 100 changes of a
file, every change of a PATCH /products, at most 1000; the first 100 row
errors): a record never grows with the size of the file. ``mode`` is
import, dry_run, plan or plan+dry_run.
A record outlives a revoked API key (``api_key_id`` becomes NULL only if the
key row itself is ever deleted); users are never deleted.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("on_error", sa.String(length=16), nullable=True),
        sa.Column("max_price_change", sa.String(length=16), nullable=True),
        sa.Column("columns", sa.Text(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("date_created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_imports_user_id_users")),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], name=op.f("fk_imports_api_key_id_api_keys"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
    )
    op.create_index(op.f("ix_imports_user_id"), "imports", ["user_id"], unique=False)
    op.create_index(op.f("ix_imports_date_created"), "imports", ["date_created"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_imports_date_created"), table_name="imports")
    op.drop_index(op.f("ix_imports_user_id"), table_name="imports")
    op.drop_table("imports")
