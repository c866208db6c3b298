"""Engine and session factory, made per app; one session per request on ``g``.

Nothing here is created at import time: ``init_app`` builds the engine from the
app's ``DATABASE_URL`` and keeps it in ``app.extensions["myapi.db"]``.

SQLite gets WAL, foreign keys and a busy timeout on every connection, and we
issue ``BEGIN`` ourselves (pysqlite's own transaction handling is off) so that
a request that writes can start with ``BEGIN IMMEDIATE``: writers queue on the
database lock up front instead of failing half-way with "database is locked"
when a read transaction tries to upgrade to a write.
A queued writer asks for the lock again at most every millisecond for its
first second (SQLite's own handler sleeps longer and longer and is never
woken when the lock is freed), then waits as SQLite does.

PostgreSQL round trips are the largest cost of a small request there, so:

* GET/HEAD/OPTIONS sessions run in autocommit: no BEGIN and no ROLLBACK
  around their statements (a list's COUNT and its page may then see two
  snapshots; each statement is consistent on its own). Writes, and streamed
  exports (server-side cursors need a transaction), keep a transaction.
* Instead of ``pool_pre_ping`` (a round trip on every checkout) a pooled
  connection is checked on checkout without one: an idle connection has
  nothing to say, so a readable socket means the server closed it or sent
  an error (pg_terminate_backend, a restart, a cut proxy) and the pool
  replaces it before the request sees it.
"""

from __future__ import annotations

import select
import sqlite3
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from time import monotonic, sleep

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

EXTENSION = "myapi.db"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Database:
    engine: Engine
    # Same pool; on SQLite its transactions begin IMMEDIATE (see module doc).
    write_engine: Engine
    # Same pool; autocommit on PostgreSQL, for the requests that only read.
    read_engine: Engine
    sessions: sessionmaker[Session]

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def session(self, *, write: bool = False) -> Session:
        return self.sessions(bind=self.write_engine if write else self.engine)

    def read_session(self) -> Session:
        """A session for a request that only reads (autocommit on PostgreSQL)."""
        return self.sessions(bind=self.read_engine)


def make_engine(url: str, **kwargs) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            # Convenience for the default instance/ file; an unusable path
            # shows up as a 503 from the first query, not as a crash here.
            with suppress(OSError):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _configure_sqlite(engine)
        return engine
    # UTF-8 on the wire whatever the database's encoding: the CSV import and
    # export pass COPY's bytes through as UTF-8.
    engine = create_engine(url, pool_size=5, max_overflow=10, connect_args={"client_encoding": "utf8"}, **kwargs)
    event.listen(engine, "checkout", _discard_if_closed_by_server)
    return engine


def _discard_if_closed_by_server(dbapi_connection, _record, _proxy) -> None:
    """Replace a pooled connection the server has closed, without a round trip.

    A connection resting in the pool is idle: the server sends it nothing. If
    its socket is readable, what is waiting is an error (FATAL: terminating
    connection) or the end of the stream, so SQLAlchemy is told to discard
    it and check out another (DisconnectionError; it retries the checkout).
    """
    poller = select.poll()
    try:
        poller.register(dbapi_connection.pgconn.socket, select.POLLIN)
    except Exception as error:  # the socket is gone already
        raise DisconnectionError() from error
    if poller.poll(0):
        raise DisconnectionError()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # Hand transaction control to SQLAlchemy's "begin" event below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        if connection.get_execution_options().get("sqlite_immediate"):
            if not _begin_immediate_promptly(connection.connection.driver_connection):
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite's own wait (busy_timeout), then its error
        else:
            connection.exec_driver_sql("BEGIN")


#: How long a writer asks again for SQLite's write lock in short steps of its own, before it
#: leaves the waiting to SQLite (``busy_timeout``, whose error is then a 503 as before).
PROMPT_WAIT = 1.0
_FIRST_PAUSE, _LONGEST_PAUSE = 0.0001, 0.001
BUSY_TIMEOUT_MS = 30_000


def _begin_immediate_promptly(driver) -> bool:
    """``BEGIN IMMEDIATE``, asking again every millisecond at most while another writer holds the lock.

    SQLite's busy handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between its
    tries, and nothing wakes it when the lock is freed: with writers
    holding the lock for a millisecond or two, a queued one slept on while
    the lock stood free, and writes per second fell well below one over
    the time a write holds the lock (benchmarks/ANALYSIS.md, POST product).
    Here the tries are at most a millisecond apart. False when the lock is
    still taken after PROMPT_WAIT (a long import, say): the caller then
    waits as SQLite does.
    """
    driver.execute("PRAGMA busy_timeout=0")
    try:
        deadline = monotonic() + PROMPT_WAIT
        pause = _FIRST_PAUSE
        while True:
            try:
                driver.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as error:
                if "database is locked" not in str(error) or monotonic() >= deadline:
                    return False
            sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)
    finally:
        driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def init_app(app: Flask) -> Database:
    engine = make_engine(app.config["DATABASE_URL"])
    sqlite = engine.dialect.name == "sqlite"
    write_engine = engine.execution_options(sqlite_immediate=True) if sqlite else engine
    read_engine = engine if sqlite else engine.execution_options(isolation_level="AUTOCOMMIT")
    database = Database(
        engine=engine,
        write_engine=write_engine,
        read_engine=read_engine,
        sessions=sessionmaker(expire_on_commit=False),
    )
    app.extensions[EXTENSION] = database
    app.teardown_appcontext(close_session)
    return database


def get_db(app: Flask | None = None) -> Database:
    return (app or current_app).extensions[EXTENSION]


def open_session(*, write: bool) -> Session:
    """Open the request's session; the Resource's dispatch says whether the request writes.

    A write session's transactions begin IMMEDIATE on SQLite; a read
    session runs in autocommit on PostgreSQL (see the module doc).
    """
    discard_session()
    database = get_db()
    g.db_session = database.session(write=True) if write else database.read_session()
    return g.db_session


def get_session() -> Session:
    """The request's (or app context's) session, opened on first use and closed at teardown.

    Outside a Resource's dispatch (the CLI, a test's app context) it is a
    plain session on the engine.
    """
    if "db_session" not in g:
        g.db_session = get_db().session()
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


def discard_session() -> None:
    """Close the request's session now; the next get_session() opens a new one."""
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def close_session(exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()
