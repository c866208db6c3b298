"""Alembic environment for myapi, configured programmatically (no alembic.ini).

Use ``myapi.migrate`` (or ``myapi db upgrade``): it builds the Config, opens the
connection with ``myapi.db.make_engine`` and hands it over as
``config.attributes["connection"]``. Without a connection, the URL comes from
the ``sqlalchemy.url`` main option. On SQLite, migrations run in batch mode so
later revisions can ALTER tables (SQLite recreates the table instead).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.types import TypeDecorator

from myapi.models import Base

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def render_item(type_, obj, autogen_context):
    """Render our TypeDecorators as their plain SQLAlchemy type.

    Migrations then never import ``myapi.models`` (``Money`` becomes
    ``sa.BigInteger()``, ``UTCDateTime`` becomes ``sa.DateTime(timezone=True)``),
    so an old revision keeps working whatever later happens to the models.
    """
    if type_ == "type" and isinstance(obj, TypeDecorator):
        impl = obj.impl_instance
        if type(impl).__module__.startswith("sqlalchemy."):
            return f"sa.{impl!r}"
    return False


def configure_options(dialect_name: str) -> dict:
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        "render_item": render_item,
        "render_as_batch": dialect_name == "sqlite",
        # SQLite DDL is transactional once we issue BEGIN ourselves (myapi.db),
        # so let one transaction cover the whole run there too.
        "transactional_ddl": True if dialect_name == "sqlite" else None,
    }


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade --sql``)."""
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **configure_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, **configure_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return

    from myapi.migrate import migration_connection

    with migration_connection(config.get_main_option("sqlalchemy.url")) as connection:
        run_on(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
