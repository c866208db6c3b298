"""Fixtures: an app per test on its own database, clients, a live server, users.

The database is migrated once per run with Alembic (the real schema, not
``create_all``). On SQLite each test gets a copy of that migrated file; on
PostgreSQL (``MYAPI_TEST_DATABASE_URL`` set) each test starts from emptied
tables in the migrated database.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import event, text
from werkzeug.serving import make_server

from myapi.app import create_app
from myapi.common.auth import hash_password
from myapi.db import get_db, get_session
from myapi.migrate import upgrade
from myapi.services import users as users_service
from tools.servers import ServerProcess, myapi_env, start_myapi

PG_URL = os.environ.get("MYAPI_TEST_DATABASE_URL")
# Children first; the change feed last (emptying products and orders writes its delete rows).
TABLES = ("webhook_deliveries", "webhooks", "imports", "api_keys", "idempotency_keys", "order_items", "orders",
          "tokens", "products", "users", "changes")

PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory):
    """A database at the head revision: a template file, or the PG database."""
    if PG_URL:
        upgrade(PG_URL)
        return PG_URL
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(migrated_database, tmp_path):
    if PG_URL:
        from myapi.db import make_engine

        engine = make_engine(PG_URL)
        with engine.begin() as conn:
            # A test that left a connection open (an unclosed stream) must not
            # hang every later test on a lock: end such sessions.
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            conn.execute(text("SET LOCAL lock_timeout = '20s'"))
            # DELETE and sequence restarts: on tables this small, far faster
            # than TRUNCATE, which makes new files for every table.
            for table in TABLES:
                conn.execute(text(f"DELETE FROM {table}"))
                conn.execute(text(f"ALTER SEQUENCE {table}_id_seq RESTART"))
            conn.execute(text("UPDATE change_horizon SET txid = 0, change_id = 0"))
            conn.execute(text("UPDATE webhook_dispatch SET txid = 0, change_id = 0"))
        engine.dispose()
        return PG_URL
    path = tmp_path / "test.db"
    shutil.copyfile(migrated_database, path)
    return f"sqlite:///{path}"


def make_test_config(database_url: str, **overrides) -> dict:
    return {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret",
        # Cheap argon2 so hundreds of sign-ups stay fast; the scheme is the same.
        "ARGON2_MEMORY_COST": 1024,
        "ARGON2_TIME_COST": 1,
        "RATELIMIT_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        **overrides,
    }


@pytest.fixture
def app_config(database_url):
    return make_test_config(database_url)


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    yield app
    get_db(app).engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db_session(app):
    """A session for asserting database state, outside any request.

    No app context is pushed here: the test client would reuse it, and with
    it ``g``, across requests.
    """
    session = get_db(app).session()
    yield session
    session.close()


@pytest.fixture
def live_server(app):
    """The real app served over HTTP on a free port, for ``requests``."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # A 50 ms poll interval: shutdown() waits for it (the default is 500 ms).
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()
    thread.join(5)


@dataclass
class Account:
    id: int
    username: str
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_account(app, client):
    """Create a user straight in the database and sign it in through the API."""
    counter = iter(range(1, 10_000))

    def make(role: str = "customer", username: str | None = None, password: str = PASSWORD) -> Account:
        username = username or f"{role}{next(counter)}"
        email = f"{username}@example.com"
        with app.app_context():
            session = get_session()
            user = users_service.create_user(session, username=username, email=email,
                                             password_hash=hash_password(password), role=role)
            session.commit()
            user_id = user.id
        response = client.post("/api/v1/tokens", json={"username": username, "password": password})
        assert response.status_code == 201, response.get_json()
        return Account(user_id, username, email, password, response.get_json()["token"])

    return make


@pytest.fixture
def admin(make_account) -> Account:
    return make_account("admin", "root")


@pytest.fixture
def customer(make_account) -> Account:
    return make_account("customer", "alice")


@pytest.fixture
def count_queries(app):
    """``with count_queries() as q: ...`` then ``q.count`` statements were run."""

    class Counter:
        def __init__(self):
            self.count = 0
            self.statements: list[str] = []

        def __call__(self, conn, cursor, statement, *args):
            if statement.strip().upper() not in {"BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"}:
                self.count += 1
                self.statements.append(statement)

        def __enter__(self):
            event.listen(get_db(app).engine, "before_cursor_execute", self)
            return self

        def __exit__(self, *exc):
            event.remove(get_db(app).engine, "before_cursor_execute", self)

    return Counter


@pytest.fixture
def http():
    """A requests session for live-server tests."""
    with requests.Session() as session:
        yield session


# -- real servers ---------------------------------------------------------------


@pytest.fixture
def start_server(database_url, tmp_path_factory):
    """A factory: each call starts another ``myapi serve`` on the test's database; all stop at teardown."""
    servers: list[ServerProcess] = []

    def start(workers: int = 4, env: dict | None = None, **options) -> ServerProcess:
        """``options``: ``threads``, ``timeout``, ``entry`` (tools.servers.myapi_server)."""
        workdir = tmp_path_factory.mktemp("gunicorn")
        try:
            server = start_myapi(myapi_env(database_url, workdir, **(env or {})), workdir / "server.log",
                                 workers=workers, **options)
        except RuntimeError as error:
            pytest.fail(str(error))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def gunicorn_server(start_server) -> str:
    """The base URL of a running ``myapi serve --workers 4`` on the test's database."""
    return start_server(workers=4).url
