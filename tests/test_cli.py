"""The ``myapi`` command: db upgrade / seed / prune, users create-admin, serve.

Each test points ``MYAPI_DATABASE_URL`` at a fresh SQLite file of its own, as a
user of the command would, and checks the database (and the API on top of it)
afterwards. Most run the click command in-process with ``CliRunner``; a few
run the installed ``myapi`` script as a real subprocess.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
import requests
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import func, inspect, select, update

import myapi
from myapi import seed
from myapi.app import create_app
from myapi.cli import main
from myapi.common.auth import hash_password, token_digest
from myapi.db import get_db, get_session, make_engine
from myapi.migrate import alembic_config, current_revision
from myapi.models import ApiKey, Change, IdempotencyKey, ImportRecord, Order, Product, Token, User, utcnow
from myapi.seed import DEMO_ADMIN, DEMO_CUSTOMER_PASSWORD, DEMO_CUSTOMERS
from myapi.services import users as users_service
from tools.servers import ServerProcess, free_port

API = "/api/v1"
ADMIN_PASSWORD = "cli-admin-password"


def myapi_script() -> str:
    """The installed console script, next to this interpreter (the venv's)."""
    beside = Path(sys.executable).parent / "myapi"
    if beside.exists():
        return str(beside)
    found = shutil.which("myapi")
    if found is None:
        pytest.skip("the myapi console script is not installed")
    return found


def head_revision(url: str) -> str:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


@pytest.fixture
def db_url(tmp_path, monkeypatch) -> str:
    """A fresh (empty, unmigrated) SQLite file, named in the environment."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("MYAPI_DATABASE_URL", url)
    monkeypatch.setenv("MYAPI_SECRET_KEY", "cli-test-secret")
    monkeypatch.setenv("MYAPI_ARGON2_MEMORY_COST", "1024")
    monkeypatch.setenv("MYAPI_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("MYAPI_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("MYAPI_RATELIMIT_ENABLED", "false")
    return url


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def migrated(db_url, runner) -> str:
    result = runner.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    return db_url


@pytest.fixture
def api_app(migrated):
    """An app on the same database the command wrote to."""
    app = create_app({
        "TESTING": True,
        "DATABASE_URL": migrated,
        "SECRET_KEY": "cli-test-secret",
        "ARGON2_MEMORY_COST": 1024,
        "ARGON2_TIME_COST": 1,
        "RATELIMIT_ENABLED": False,
        "LOG_LEVEL": "WARNING",
    })
    yield app
    get_db(app).engine.dispose()


def count(app, model, *where) -> int:
    with get_db(app).session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def sign_in(app, username: str, password: str):
    return app.test_client().post(f"{API}/tokens", auth=(username, password))


# -- db upgrade ---------------------------------------------------------------


def test_db_upgrade_creates_the_schema_at_head(db_url, runner):
    assert current_revision(db_url) is None
    result = runner.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "head" in result.output
    assert current_revision(db_url) == head_revision(db_url)
    engine = make_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"users", "tokens", "products", "orders", "order_items", "idempotency_keys"} <= tables

    again = runner.invoke(main, ["db", "upgrade"])  # already at head: a no-op
    assert again.exit_code == 0, again.output
    assert current_revision(db_url) == head_revision(db_url)


# -- db seed ----------------------------------------------------------------


def test_db_seed_demo_loads_users_and_products_once(migrated, runner, api_app):
    result = runner.invoke(main, ["db", "seed", "--demo"])
    assert result.exit_code == 0, result.output
    users = 1 + len(DEMO_CUSTOMERS) + getattr(seed, "EXTRA_CUSTOMERS", 0)
    assert f"{users} users" in result.output and "300 products" in result.output

    assert count(api_app, User) == users
    assert count(api_app, User, User.role == "admin") == 1
    assert count(api_app, User, User.role == "customer") == users - 1
    assert count(api_app, Product) == 300
    orders = count(api_app, Order)
    with get_db(api_app).session() as session:
        usernames = set(session.scalars(select(User.username)))
        skus = session.scalars(select(Product.sku)).all()
    assert {DEMO_ADMIN[0], *(name for name, _ in DEMO_CUSTOMERS)} <= usernames
    assert len(set(skus)) == 300

    again = runner.invoke(main, ["db", "seed", "--demo"])
    assert again.exit_code == 0, again.output
    assert "nothing to do" in again.output
    assert count(api_app, User) == users
    assert count(api_app, Product) == 300
    assert count(api_app, Order) == orders

    # The README's demo accounts work through the API.
    assert sign_in(api_app, DEMO_ADMIN[0], DEMO_ADMIN[2]).status_code == 201
    assert sign_in(api_app, DEMO_CUSTOMERS[0][0], DEMO_CUSTOMER_PASSWORD).status_code == 201
    products = api_app.test_client().get(f"{API}/products?per_page=2")
    assert products.status_code == 200
    assert products.get_json()["pagination"]["total_items"] == 300


def test_db_seed_demo_after_create_admin_does_not_crash(migrated, runner, api_app):
    """``users create-admin`` before the first ``make run``: the seed must still work.

    The users part is skipped (the table is not empty); the demo orders then
    have no customers to belong to and are skipped too, instead of crashing
    the whole seed (and with it ``make run``).
    """
    created = runner.invoke(main, ["users", "create-admin", "boss", "--email", "boss@example.com",
                                   "--password", ADMIN_PASSWORD])
    assert created.exit_code == 0, created.output
    result = runner.invoke(main, ["db", "seed", "--demo"])
    assert result.exit_code == 0, result.output
    assert "300 products" in result.output
    assert count(api_app, User) == 1
    assert count(api_app, Product) == 300
    assert count(api_app, Order) == 0
    assert runner.invoke(main, ["db", "seed", "--demo"]).exit_code == 0


def test_db_seed_without_demo_is_a_usage_error(migrated, runner, api_app):
    result = runner.invoke(main, ["db", "seed"])
    assert result.exit_code == 2
    assert "--demo" in result.output
    assert count(api_app, User) == 0
    assert count(api_app, Product) == 0


# -- keys create ------------------------------------------------------------------


def test_keys_create_prints_a_working_secret_once(migrated, runner, api_app):
    assert runner.invoke(main, ["users", "create-admin", "boss", "--email", "boss@example.com",
                                "--password", ADMIN_PASSWORD]).exit_code == 0
    result = runner.invoke(main, ["keys", "create", "boss", "--name", "nightly", "--scope", "orders:read",
                                  "--scope", "reports:read"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("myapi_") and "not shown again" in result.stderr
    client = api_app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get(f"{API}/reports/top-customers", headers=headers).status_code == 200
    assert client.get(f"{API}/users", headers=headers).status_code == 403  # no users:read


@pytest.mark.parametrize(("args", "message"), [
    (["nobody", "--name", "x", "--scope", "orders:read"], "no active user"),
    (["boss", "--name", "x", "--scope", "orders:delete"], "unknown scope"),
    (["boss", "--name", "", "--scope", "orders:read"], "must not be empty"),
    (["boss", "--name", "x", "--scope", "orders:read", "--expires-at", "2001-01-01"], "already"),
])
def test_keys_create_refuses_clearly(migrated, runner, api_app, args, message):
    runner.invoke(main, ["users", "create-admin", "boss", "--email", "boss@example.com", "--password", ADMIN_PASSWORD])
    result = runner.invoke(main, ["keys", "create", *args])
    assert result.exit_code != 0 and message in result.output
    with get_db(api_app).session() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 0


# -- users create-admin -------------------------------------------------------


def test_create_admin_can_then_sign_in(migrated, runner, api_app):
    result = runner.invoke(main, ["users", "create-admin", "boss", "--email", "Boss@Example.COM",
                                  "--password", ADMIN_PASSWORD])
    assert result.exit_code == 0, result.output
    assert "boss" in result.output
    assert ADMIN_PASSWORD not in result.output

    response = sign_in(api_app, "boss", ADMIN_PASSWORD)
    assert response.status_code == 201, response.get_json()
    token = response.get_json()["token"]
    me = api_app.test_client().get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    body = me.get_json()
    assert body["username"] == "boss"
    assert body["role"] == "admin"
    assert body["is_active"] is True
    assert body["email"] == "boss@example.com"  # stored lower-cased, as the API does
    # An admin in every sense: the admin-only list answers.
    users = api_app.test_client().get(f"{API}/users", headers={"Authorization": f"Bearer {token}"})
    assert users.status_code == 200
    # Only a hash is stored.
    with get_db(api_app).session() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "boss"))
    assert stored.startswith("$argon2") and ADMIN_PASSWORD not in stored


@pytest.mark.parametrize("username,email,field", [
    ("boss", "other@example.com", "username"),
    ("other", "boss@example.com", "email"),
])
def test_create_admin_duplicate_fails_with_a_message(migrated, runner, api_app, username, email, field):
    first = runner.invoke(main, ["users", "create-admin", "boss", "--email", "boss@example.com",
                                 "--password", ADMIN_PASSWORD])
    assert first.exit_code == 0, first.output

    result = runner.invoke(main, ["users", "create-admin", username, "--email", email,
                                  "--password", "another-password"])
    assert result.exit_code != 0
    assert field in result.output
    assert "exists" in result.output or "taken" in result.output
    assert "Traceback" not in result.output
    assert count(api_app, User) == 1


@pytest.mark.parametrize("username,email,password,field", [
    ("Boss", "boss@example.com", ADMIN_PASSWORD, "username"),
    ("bo", "boss@example.com", ADMIN_PASSWORD, "username"),
    ("boss", "not-an-email", ADMIN_PASSWORD, "email"),
    ("boss", "boss@example.com", "tiny-pw", "password"),
])
def test_create_admin_rejects_bad_fields_naming_the_field(migrated, runner, api_app, username, email,
                                                          password, field):
    result = runner.invoke(main, ["users", "create-admin", username, "--email", email, "--password", password])
    assert result.exit_code != 0
    assert result.exit_code == 2  # a usage error, like click's own
    assert field in result.output
    assert password not in result.output  # never echoed
    assert count(api_app, User) == 0


def test_create_admin_prompts_for_the_password(migrated, runner, api_app):
    result = runner.invoke(main, ["users", "create-admin", "boss", "--email", "boss@example.com"],
                           input=f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Password" in result.output
    assert ADMIN_PASSWORD not in result.output  # hidden input is not echoed
    assert sign_in(api_app, "boss", ADMIN_PASSWORD).status_code == 201


def test_create_admin_prompt_asks_again_when_the_confirmation_differs(migrated, runner, api_app):
    result = runner.invoke(main, ["users", "create-admin", "boss", "--email", "boss@example.com"],
                           input=f"{ADMIN_PASSWORD}\nsomething-else-entirely\n{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert sign_in(api_app, "boss", ADMIN_PASSWORD).status_code == 201
    assert sign_in(api_app, "boss", "something-else-entirely").status_code == 401


def test_create_admin_prompted_password_is_validated(migrated, runner, api_app):
    result = runner.invoke(main, ["users", "create-admin", "boss", "--email", "boss@example.com"],
                           input="tiny-pw\ntiny-pw\n")
    assert result.exit_code == 2
    assert "password" in result.output
    assert count(api_app, User) == 0


# -- db prune -----------------------------------------------------------------


def test_db_prune_deletes_expired_and_revoked_tokens(migrated, runner, api_app):
    now = utcnow()
    hour = dt.timedelta(hours=1)
    tokens = {
        "live": (now + hour, None),
        "expired": (now - hour, None),
        "revoked": (now + hour, now - hour),
        "expired_and_revoked": (now - hour, now - hour),
    }
    with api_app.app_context():
        session = get_session()
        user = users_service.create_user(session, username="someone", email="someone@example.com",
                                         password_hash=hash_password(ADMIN_PASSWORD))
        for name, (expires_at, revoked_at) in tokens.items():
            session.add(Token(user=user, token_hash=token_digest(name), expires_at=expires_at,
                              revoked_at=revoked_at))
        for name, expires_at in (("fresh-key", now + hour), ("stale-key", now - hour)):
            session.add(IdempotencyKey(scope=f"user:{user.id}", key=name, method="POST", path="/api/v1/orders",
                                       request_hash="0" * 64, expires_at=expires_at))
        session.commit()

    result = runner.invoke(main, ["db", "prune"])
    assert result.exit_code == 0, result.output
    assert "3 tokens deleted" in result.output
    assert "1 idempotency keys deleted" in result.output

    with get_db(api_app).session() as session:
        assert session.scalars(select(Token.token_hash)).all() == [token_digest("live")]
        assert session.scalars(select(IdempotencyKey.key)).all() == ["fresh-key"]
        assert session.scalar(select(func.count()).select_from(User)) == 1  # users are kept

    again = runner.invoke(main, ["db", "prune"])
    assert again.exit_code == 0, again.output
    assert "0 tokens deleted" in again.output
    assert count(api_app, Token) == 1


def test_db_prune_deletes_feed_changes_and_import_records_past_their_retentions(migrated, runner, api_app,
                                                                                  monkeypatch):
    monkeypatch.setenv("MYAPI_CHANGES_RETENTION", "2")
    monkeypatch.setenv("MYAPI_IMPORTS_RETENTION", "10")
    now = utcnow()
    with api_app.app_context():
        session = get_session()
        user = users_service.create_user(session, username="someone", email="someone@example.com",
                                         password_hash=hash_password(ADMIN_PASSWORD))
        for sku in ("OLD-1", "NEW-1"):
            session.add(Product(sku=sku, name=sku, description="", category="tea", price="1.00", stock=1,
                                is_available=True))
        for days in (11, 9):
            session.add(ImportRecord(user=user, source="file", mode="import", columns="sku", detail="{}",
                                     date_created=now - dt.timedelta(days=days)))
        session.flush()
        session.execute(update(Change).where(Change.entity == "product", Change.entity_id == session.scalar(
            select(Product.id).where(Product.sku == "OLD-1"))).values(date_created=now - dt.timedelta(days=3)))
        session.commit()

    result = runner.invoke(main, ["db", "prune"])
    assert result.exit_code == 0, result.output
    assert "1 feed changes deleted" in result.output and "1 import records deleted" in result.output
    with get_db(api_app).session() as session:
        kept = session.scalars(select(Change.entity_id).where(Change.entity == "product")).all()
        assert kept == [session.scalar(select(Product.id).where(Product.sku == "NEW-1"))]
        assert session.scalar(select(func.count()).select_from(ImportRecord)) == 1
        assert session.scalar(select(Product.sku).where(Product.sku == "OLD-1")) == "OLD-1"  # rows stay

    monkeypatch.setenv("MYAPI_CHANGES_RETENTION", "0")
    refused = runner.invoke(main, ["db", "prune"])
    assert refused.exit_code != 0  # a retention under one day is a configuration error


# -- the installed script, as a real process ----------------------------------


def run_script(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([myapi_script(), *args], capture_output=True, text=True, timeout=timeout,
                          env=os.environ.copy(), check=False)


def test_script_upgrade_seed_and_usage_errors_as_a_subprocess(db_url):
    helped = run_script("--help")
    assert helped.returncode == 0
    for command in ("serve", "db", "users"):
        assert command in helped.stdout

    upgraded = run_script("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert current_revision(db_url) == head_revision(db_url)

    seeded = run_script("db", "seed", "--demo")
    assert seeded.returncode == 0, seeded.stderr
    assert "users" in seeded.stderr and "300 products" in seeded.stderr
    assert "nothing to do" in run_script("db", "seed", "--demo").stderr

    usage = run_script("db", "seed")
    assert usage.returncode == 2
    assert "--demo" in usage.stderr

    duplicate = run_script("users", "create-admin", "admin", "--email", "new@example.com",
                           "--password", ADMIN_PASSWORD)
    assert duplicate.returncode == 1
    assert "username" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr


def test_serve_answers_health_and_stops_on_sigterm(migrated, tmp_path_factory):
    port = free_port()
    env = os.environ.copy()
    # gunicorn >= 25.1 opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl
    # (else ~/.gunicorn/gunicorn.ctl); keep ours away from any other server's.
    env["XDG_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("ctl"))
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    server = ServerProcess([myapi_script(), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
                           port=port, env=env, log=log, workers=1).start()
    base = f"{server.url}{API}"
    try:
        server.wait(20)
        response = requests.get(f"{base}/health", timeout=2)
        assert response.status_code == 200, log.read_text()
        assert response.json() == {"status": "ok", "database": "ok", "version": response.json()["version"],
                                   "webhooks_oldest_undelivered_seconds": None}
        assert response.headers["X-Request-ID"]
        assert requests.get(f"{base}/products", timeout=5).json()["pagination"]["total_items"] == 0
    finally:
        server.stop()
    assert server.process.returncode == 0, log.read_text()  # a clean shutdown on SIGTERM
    assert f"127.0.0.1:{port}" in log.read_text()
    with socket.socket() as sock:  # nothing is left listening
        assert sock.connect_ex(("127.0.0.1", port)) != 0


# -- help, version and `make run` (issue 18) ---------------------------------------


def every_command(group: click.Group, path: tuple[str, ...] = ()):
    """(the words that run it, the command) for ``group`` and every command below it."""
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from every_command(command, (*path, name))
        else:
            yield (*path, name), command


def test_version(runner):
    for flag in ("--version", "-V"):
        result = runner.invoke(main, [flag])
        assert result.exit_code == 0 and result.output == f"myapi, version {myapi.__version__}\n"
    assert run_script("--version").stdout == f"myapi, version {myapi.__version__}\n"


def test_help_is_whole_sentences_in_plain_text(runner):
    """Group listings cut summaries mid-sentence ("Upload a CSV...") and docstrings showed reST (``-``)."""
    seen = 0
    for path, _command in every_command(main):
        for width in (80, 120):
            shown = runner.invoke(main, [*path, "--help"], terminal_width=width)
            assert shown.exit_code == 0, (path, shown.output)
            assert "``" not in shown.output and ":mod:" not in shown.output, (path, shown.output)
            cut = [line for line in shown.output.splitlines()
                   if line.rstrip().endswith("...") and not line.startswith("Usage:")]  # [ARGS]...
            assert cut == [], (path, cut)
        seen += 1
    assert seen > 20
    listing = runner.invoke(main, ["remote", "products", "--help"], terminal_width=80).output
    assert "nothing." in listing  # "Upload a CSV (...); all or nothing." in full


def test_serve_help_speaks_to_users(runner):
    shown = runner.invoke(main, ["serve", "--help"], terminal_width=100).output
    for internal in ("benchmarks/", "SWEEP", "p99", "gthread worker keeps beating"):
        assert internal not in shown
    assert "--bind" in shown and "--threads" in shown


def test_make_run_takes_host_and_port():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parent.parent

    def serve_line(*args: str, env: dict | None = None) -> str:
        done = subprocess.run([make, "-n", "run", *args], cwd=root, capture_output=True, text=True, timeout=60,
                              env={**os.environ, **(env or {})}, check=True)
        return [line for line in done.stdout.splitlines() if " serve " in line][-1]

    assert serve_line().endswith("myapi serve --bind 127.0.0.1:5000")
    assert serve_line("PORT=8000").endswith("myapi serve --bind 127.0.0.1:8000")
    assert serve_line("HOST=0.0.0.0", "PORT=8000").endswith("myapi serve --bind 0.0.0.0:8000")
    # A HOST or PORT that the shell exports (tcsh sets HOST to the machine's name) is not taken.
    assert serve_line(env={"HOST": "somewhere", "PORT": "1"}).endswith("myapi serve --bind 127.0.0.1:5000")
