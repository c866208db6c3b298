"""Engine and session factory, made per app; one session per request on ``g``.

Nothing here is created at import time: ``init_app`` builds the engine from the
app's ``DATABASE_URL`` and keeps it in ``app.extensions["myapi.db"]``.

SQLite gets WAL, foreign keys and a busy timeout on every connection, and we
issue ``BEGIN`` ourselves (pysqlite's own transaction handling is off) so that
a request that writes can start with ``BEGIN IMMEDIATE``: writers queue on the
database lock up front instead of failing half-way with "database is locked"
when a read transaction tries to upgrade to a write. PostgreSQL gets
``pool_pre_ping`` so connections killed by a restart are replaced, not reported.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

EXTENSION = "myapi.db"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Database:
    engine: Engine
    # Same pool; on SQLite its transactions begin IMMEDIATE (see module doc).
    write_engine: Engine
    sessions: sessionmaker[Session]

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def session(self, *, write: bool = False) -> Session:
        return self.sessions(bind=self.write_engine if write else self.engine)


def make_engine(url: str, **kwargs) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            # Convenience for the default instance/ file; an unusable path
            # shows up as a 503 from the first query, not as a crash here.
            with suppress(OSError):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # Hand transaction control to SQLAlchemy's "begin" event below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        if connection.get_execution_options().get("sqlite_immediate"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def init_app(app: Flask) -> Database:
    engine = make_engine(app.config["DATABASE_URL"])
    write_engine = engine.execution_options(sqlite_immediate=True) if engine.dialect.name == "sqlite" else engine
    database = Database(
        engine=engine,
        write_engine=write_engine,
        sessions=sessionmaker(expire_on_commit=False),
    )
    app.extensions[EXTENSION] = database
    app.teardown_appcontext(close_session)
    return database


def get_db(app: Flask | None = None) -> Database:
    return (app or current_app).extensions[EXTENSION]


def get_session() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        write = has_request_context() and request.method not in SAFE_METHODS
        g.db_session = get_db().session(write=write)
    return g.db_session


def commit_session() -> None:
    """Commit the request's session, if the request opened one."""
    session = g.get("db_session")
    if session is not None:
        session.commit()


def stream_session() -> Session:
    """A session owned by a streamed response body, not by the request.

    Flask tears the request's app context down (closing ``g.db_session``)
    when the view returns, before a streamed body is read. The view opens
    this session (it needs the app) and the body's generator closes it when
    it ends or the client goes away: ``with session: yield ...``. Until its
    first query it holds no connection.
    """
    return get_db().session()


def close_session(exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()
