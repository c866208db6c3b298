"""The Alembic migrations build exactly the schema the models describe.

Self-contained: no conftest fixtures. The PostgreSQL test runs when
``MYAPI_TEST_DATABASE_URL`` is set; it only uses that URL to find the server
and works in a throwaway database of its own.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import uuid

import psycopg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import CheckConstraint, inspect, text
from sqlalchemy.engine import make_url

from myapi.db import make_engine
from myapi.migrate import (
    MIGRATIONS,
    alembic_config,
    current_revision,
    downgrade,
    schema_drift,
    upgrade,
)
from myapi.models import Base

PG_URL = os.environ.get("MYAPI_TEST_DATABASE_URL")
MODEL_TABLES = set(Base.metadata.tables)


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def check_constraint_names(url: str) -> dict[str, set[str]]:
    """Alembic's compare_metadata ignores CHECK constraints, so compare their names here."""
    engine = make_engine(url)
    try:
        inspector = inspect(engine)
        return {
            table: {ck["name"] for ck in inspector.get_check_constraints(table)} for table in MODEL_TABLES
        }
    finally:
        engine.dispose()


def model_check_constraint_names() -> dict[str, set[str]]:
    return {
        name: {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
        for name, table in Base.metadata.tables.items()
    }


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


HEAD = head_revision()


def assert_at_head_without_drift(url: str) -> None:
    assert current_revision(url) == HEAD
    assert schema_drift(url) == []
    assert table_names(url) == MODEL_TABLES | {"alembic_version"}
    assert check_constraint_names(url) == model_check_constraint_names()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'migrations.db'}"


def test_sqlite_upgrade_matches_models(sqlite_url):
    assert current_revision(sqlite_url) is None
    upgrade(sqlite_url)
    assert_at_head_without_drift(sqlite_url)

    upgrade(sqlite_url)  # already at head: nothing to do
    assert_at_head_without_drift(sqlite_url)


def test_sqlite_connections_keep_app_pragmas(sqlite_url):
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_sqlite_downgrade_to_base_leaves_no_tables(sqlite_url):
    upgrade(sqlite_url)
    downgrade(sqlite_url, "base")
    assert current_revision(sqlite_url) is None
    assert table_names(sqlite_url) <= {"alembic_version"}
    assert not table_names(sqlite_url) & MODEL_TABLES

    upgrade(sqlite_url)  # and back up again
    assert_at_head_without_drift(sqlite_url)


BATCH_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    # Forces SQLite's copy-and-replace of the parent table "users".
    with op.batch_alter_table("users", recreate="always") as batch_op:
        batch_op.add_column(sa.Column("nickname", sa.String(32), nullable=True))


def downgrade():
    with op.batch_alter_table("users", recreate="always") as batch_op:
        batch_op.drop_column("nickname")
"""


def test_sqlite_batch_migration_keeps_child_rows(sqlite_url, tmp_path):
    """A later batch migration that recreates a parent table must not cascade-delete children."""
    extra = tmp_path / "extra_versions"
    extra.mkdir()
    (extra / "9001_batch_users.py").write_text(BATCH_REVISION.replace("{head}", HEAD))
    config = alembic_config(sqlite_url)
    config.set_main_option("version_locations", os.pathsep.join([str(MIGRATIONS / "versions"), str(extra)]))

    upgrade(sqlite_url, HEAD, config=config)
    engine = make_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            users, tokens = Base.metadata.tables["users"], Base.metadata.tables["tokens"]
            now = dt.datetime.now(dt.timezone.utc)
            conn.execute(
                users.insert(),
                {
                    "id": 1, "username": "u", "email": "u@example.com", "password_hash": "x",
                    "user_priority": 1, "role": "customer", "is_active": True, "version": 1,
                    "date_created": now, "date_updated": now,
                },
            )  # fmt: skip
            conn.execute(
                tokens.insert(),
                {
                    "user_id": 1,
                    "token_hash": "h",
                    "date_created": now,
                    "expires_at": now + dt.timedelta(days=1),
                },
            )

        upgrade(sqlite_url, "9001", config=config)
        assert current_revision(sqlite_url) == "9001"
        downgrade(sqlite_url, HEAD, config=config)

        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 1
            assert conn.execute(text("SELECT count(*) FROM tokens")).scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    finally:
        engine.dispose()
    assert_at_head_without_drift(sqlite_url)


@pytest.mark.parametrize("url", ["sqlite:///offline.db", "postgresql+psycopg://nobody@localhost/offline"])
def test_offline_mode_renders_sql(url, tmp_path):
    config = alembic_config(url)
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    assert "CREATE TABLE order_items" in sql
    assert "CONSTRAINT fk_tokens_user_id_users" in sql
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001')" in sql
    assert f"version_num='{HEAD}'" in sql.replace(" = ", "=")  # and on to the head
    assert not (tmp_path / "offline.db").exists()


@pytest.fixture
def pg_database_url():
    if not PG_URL:
        pytest.skip("MYAPI_TEST_DATABASE_URL is not set: no PostgreSQL server to migrate")
    server = make_url(PG_URL)
    admin_dsn = server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    name = f"myapi_migrations_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_postgresql_upgrade_matches_models(pg_database_url):
    assert current_revision(pg_database_url) is None
    upgrade(pg_database_url)
    assert_at_head_without_drift(pg_database_url)

    upgrade(pg_database_url)
    assert_at_head_without_drift(pg_database_url)

    downgrade(pg_database_url, "base")
    assert not table_names(pg_database_url) & MODEL_TABLES
