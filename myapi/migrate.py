"""Alembic, programmatically: upgrade a database, read its revision, check drift.

The migration environment lives in the top-level ``migrations/`` folder (the
package is installed editable). Connections come from ``myapi.db.make_engine``
so SQLite gets the app's pragmas (WAL, busy timeout) and its explicit ``BEGIN``
handling; each upgrade runs in one transaction, on SQLite too.

On SQLite, foreign-key enforcement is switched off for the duration of a
migration, as SQLite's documented ALTER TABLE procedure requires: batch mode
recreates a table and drops the old one, and with ``foreign_keys=ON`` that
DROP would first delete every row (cascading into, or failing on, the tables
that reference it). ``PRAGMA foreign_key_check`` runs before the commit, so a
migration can never leave dangling references behind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from .db import make_engine
from .models import Base

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    # ConfigParser interpolation: a %-escaped password must survive.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@contextmanager
def migration_connection(url: str) -> Iterator[Connection]:
    """A connection inside one transaction, committed when the block succeeds."""
    engine = make_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            if sqlite:
                # Must happen outside a transaction (a no-op inside one), so go
                # straight to the driver before SQLAlchemy emits BEGIN.
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    yield conn
                    if sqlite:
                        problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if problems:
                            raise RuntimeError(f"migration left broken foreign keys: {problems[:10]}")
            finally:
                if sqlite:
                    with suppress(sqlite3.Error):  # never hide the migration's own error
                        conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
    finally:
        engine.dispose()


def _run(url: str, action, revision: str, config: Config | None) -> None:
    config = config or alembic_config(url)
    with migration_connection(url) as conn:
        config.attributes["connection"] = conn
        try:
            action(config, revision)
        finally:
            config.attributes.pop("connection", None)


def upgrade(url: str, revision: str = "head", *, config: Config | None = None) -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    _run(url, command.upgrade, revision, config)


def downgrade(url: str, revision: str, *, config: Config | None = None) -> None:
    """Migrate the database at ``url`` down to ``revision`` ("base" drops everything)."""
    _run(url, command.downgrade, revision, config)


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def schema_drift(url: str) -> list:
    """Differences between the database and the models; ``[]`` means none."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
