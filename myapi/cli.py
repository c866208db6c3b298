"""The ``myapi`` command: serve, database chores and user administration."""

from __future__ import annotations

import os
import sys

import click

from . import __version__
from .app import create_app
from .clihelp import HelpGroup
from .db import get_db
from .remote import remote


@click.group(cls=HelpGroup)
@click.version_option(__version__, "--version", "-V", prog_name="myapi")
def main() -> None:
    """myapi: a store back end on Flask-RESTful."""


main.add_command(remote)  # `myapi remote ...`: drive a running server through myapi.client


def migrated_app():
    """The app, after checking its database has the schema (a clear error, not a traceback)."""
    from .migrate import current_revision

    app = create_app()
    if current_revision(app.config["DATABASE_URL"]) is None:
        raise click.ClickException("the database has no schema yet: run `myapi db upgrade` first")
    return app


# -- serve ------------------------------------------------------------------


@main.command()
@click.option("--bind", "-b", default="127.0.0.1:5000", show_default=True, help="host:port to listen on.")
@click.option("--workers", "-w", type=int, default=None,
              help="gunicorn worker processes (default: MYAPI_WORKERS or 2 per CPU).")
@click.option("--threads", type=int, default=None,
              help="threads per worker (default: MYAPI_THREADS or 1, sync workers; more than 1: gthread).")
@click.option("--timeout", type=int, default=60, show_default=True, help="worker timeout in seconds.")
def serve(bind: str, workers: int | None, threads: int | None, timeout: int) -> None:
    """Serve the API with gunicorn (the database is MYAPI_DATABASE_URL).

    Sync workers, two per CPU, by default: the fastest and steadiest in the
    worker sweep of `make bench` (docs/deploy.md §5). A long export or import
    keeps its worker's heartbeat going (common/heartbeat.py), so --timeout
    never kills one that is moving.
    """
    # gthread was the default until the sweep: its workers keep each
    # keep-alive connection, and with a few client connections one worker
    # could hold them all while the other idled (half the throughput in
    # some runs, benchmarks/RESULTS.md). Sync workers take one request per
    # accept, so the load spreads evenly.
    from gunicorn.app.base import BaseApplication

    app = create_app()
    threads = threads or app.config["THREADS"]
    options = {
        "bind": bind,
        "workers": workers or app.config["WORKERS"],
        "threads": threads,
        # gunicorn's own workers, whose refusals of malformed requests
        # (414, 431, 400...) are problem+json instead of an HTML page.
        "worker_class": "myapi.serving.ThreadProblemWorker" if threads > 1 else "myapi.serving.SyncProblemWorker",
        "timeout": timeout,
        "keepalive": 5,
        # A list URL with filters, sort and fields= (percent-encoded non-ASCII
        # triples each character) can pass gunicorn's 4 KiB default; 8190 is
        # its maximum.
        "limit_request_line": 8190,
        "accesslog": None,  # the app logs one JSON line per request itself
        "errorlog": "-",
    }

    class Server(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)
            # gunicorn 24+ opens a control socket at one fixed path per user,
            # which a second `myapi serve` on the machine would take over.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self):
            # Each worker builds its own app, engine and pool after the fork.
            return create_app()

    get_db(app).engine.dispose()
    click.echo(f"myapi serving on http://{bind} with {options['workers']} workers", err=True)
    Server().run()


# -- db ---------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema and data."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Apply the Alembic migrations to MYAPI_DATABASE_URL."""
    from .migrate import upgrade as run_upgrade

    app = create_app()
    run_upgrade(app.config["DATABASE_URL"], revision)
    click.echo(f"database at revision {revision}", err=True)


@db.command()
@click.option("--demo", is_flag=True, help="Load the demo data set (idempotent).")
def seed(demo: bool) -> None:
    """Load data into the database."""
    if not demo:
        raise click.UsageError("say what to load: --demo")
    from .seed import seed_demo

    app = migrated_app()
    with app.app_context():
        summary = seed_demo()
    if summary:
        click.echo("demo data loaded: " + ", ".join(f"{v} {k}" for k, v in summary.items()), err=True)
    else:
        click.echo("demo data already present; nothing to do", err=True)


@db.command()
def prune() -> None:
    """Delete expired tokens and idempotency keys, change-feed rows past MYAPI_CHANGES_RETENTION days and
    import records past MYAPI_IMPORTS_RETENTION days."""
    import datetime as dt

    from .db import get_session
    from .services.maintenance import prune_expired

    app = migrated_app()
    with app.app_context():
        session = get_session()
        counts = prune_expired(session, changes_retention=dt.timedelta(days=app.config["CHANGES_RETENTION"]),
                               imports_retention=dt.timedelta(days=app.config["IMPORTS_RETENTION"]))
        session.commit()
    click.echo(", ".join(f"{v} {k} deleted" for k, v in counts.items()), err=True)


# -- worker -----------------------------------------------------------------


@main.command()
@click.option("--poll", type=float, default=1.0, show_default=True, help="seconds to wait when idle.")
@click.option("--lease", type=int, default=60, show_default=True,
              help="seconds a claimed delivery stays this worker's (a killed worker's is retried after it).")
def worker(poll: float, lease: int) -> None:
    """Deliver events to webhooks (DESIGN §11) until SIGTERM or SIGINT; JSON log lines on stderr.

    Run any number, on any hosts, on PostgreSQL (one on SQLite). A stop
    finishes the POST under way and records it; nothing stays claimed.
    """
    import datetime as dt
    import signal
    import socket
    import threading
    import uuid

    from .worker import WorkerOptions, run

    app = migrated_app()
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    name = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    options = WorkerOptions(lease=dt.timedelta(seconds=max(lease, 15)), poll=poll,
                            allow_private=app.config["WEBHOOK_ALLOW_PRIVATE"])
    database = get_db(app)
    with app.app_context():
        run(lambda: database.session(write=True), name, options, stopping)


# -- users ------------------------------------------------------------------


@main.group()
def users() -> None:
    """User administration."""


@users.command("create-admin")
@click.argument("username")
@click.option("--email", required=True)
@click.option("--password", default=None, help="Prompted for when not given.")
def create_admin(username: str, email: str, password: str | None) -> None:
    """Create an admin user."""
    from .common import inputs
    from .common.auth import hash_password
    from .db import get_session
    from .services import users as users_service
    from .services.errors import Conflict

    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    values = {}
    for name, check, value in (("username", inputs.username, username), ("email", inputs.email, email),
                               ("password", inputs.password, password)):
        try:
            values[name] = check(value)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint=name) from None

    app = migrated_app()
    with app.app_context():
        session = get_session()
        try:
            user = users_service.create_user(
                session, username=values["username"], email=values["email"],
                password_hash=hash_password(values["password"]), role="admin",
            )
        except Conflict as error:
            reasons = "; ".join(f"{field}: {message}" for field, message in (error.errors or {}).items())
            click.echo(f"error: {error.detail} ({reasons})", err=True)
            sys.exit(1)
        session.commit()
        click.echo(f"admin {user.username} created (id {user.id})", err=True)


# -- API keys -------------------------------------------------------------------


@main.group()
def keys() -> None:
    """API keys, made locally (to bootstrap a script before anyone can sign in)."""


@keys.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What the key is for, e.g. 'nightly accounting export'.")
@click.option("--scope", "scopes", multiple=True, required=True, help="A scope; repeat for several.")
@click.option("--expires-at", default=None, help="ISO 8601 date-time; default: never.")
def create_key(username: str, name: str, scopes: tuple[str, ...], expires_at: str | None) -> None:
    """Create an API key for USERNAME and print its secret (shown this once)."""
    from .common import inputs
    from .db import get_session
    from .resources.api_keys import scope_list
    from .services import api_keys
    from .services import users as users_service
    from .services.errors import DomainError

    values = {}
    for field, check, value in (("name", inputs.text(100, 1), name), ("scope", scope_list, list(scopes)),
                                ("expires-at", inputs.iso8601_datetime, expires_at)):
        try:
            values[field] = check(value) if value is not None else None
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint=field) from None
    app = migrated_app()
    with app.app_context():
        session = get_session()
        user = users_service.find_by_username(session, username)
        if user is None or not user.is_active:
            raise click.ClickException(f"no active user {username!r}")
        try:
            issued = api_keys.create_key(session, user, name=values["name"], scopes=values["scope"],
                                         expires_at=values["expires-at"])
        except DomainError as error:
            raise click.ClickException(error.detail) from None
        session.commit()
        click.echo(f"API key {issued.id} for {username} ({issued.scopes}); keep this secret, it is not shown again:",
                   err=True)
        click.echo(issued.secret)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("MYAPI_LOG_LEVEL", "INFO")
    main()
