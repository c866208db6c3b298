"""Settings from ``MYAPI_*`` environment variables, with defaults (DESIGN §2).

Every setting has one name, used three ways: ``MYAPI_<NAME>`` in the environment,
``<NAME>`` in ``app.config``, and ``<NAME>`` in the dict given to ``create_app``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _int(value: str) -> int:
    return int(value.strip())


def _days(value: str) -> int:
    """A retention in whole days, at least 1: a follower needs time to read what it is owed."""
    days = _int(value)
    if days < 1:
        raise ValueError(f"a retention is at least 1 day: {value!r}")
    return days


def _str(value: str) -> str:
    return value


# name -> (parser for the environment string, default). A default of None is
# filled in by load_config (it depends on the instance folder).
SETTINGS: dict[str, tuple] = {
    "DATABASE_URL": (_str, None),
    "SECRET_KEY": (_str, None),
    "TOKEN_TTL": (_int, 86400),
    "RATELIMIT_STORAGE_URI": (_str, "memory://"),
    "RATELIMIT_ENABLED": (_bool, True),
    "RATELIMIT_SIGNIN": (_str, "10/minute"),
    "RATELIMIT_SIGNUP": (_str, "10/hour"),
    "RATELIMIT_DEFAULT": (_str, "600/minute"),
    # Namespaces the counters in shared storage (one Redis, several deployments).
    "RATELIMIT_KEY_PREFIX": (_str, "myapi"),
    "CORS_ORIGINS": (_str, ""),
    # How many reverse proxies / load balancers in front of the app set
    # X-Forwarded-For/-Proto/-Host. 0: trust none (direct exposure). Behind
    # one balancer set 1, or every client shares one rate-limit address.
    "PROXY_HOPS": (_int, 0),
    "LOG_LEVEL": (_str, "INFO"),
    # `myapi serve` without options: gunicorn workers (None: two per CPU), and threads per worker
    # (1: sync workers). Chosen by the worker sweep of `make bench` (docs/deploy.md §5).
    "WORKERS": (_int, None),
    "THREADS": (_int, 1),
    # Answers compressed as Accept-Encoding asks (common/compression.py); off behind a compressing proxy.
    "COMPRESSION": (_bool, True),
    "MAX_CONTENT_LENGTH": (_int, 1024 * 1024),
    "MAX_IMPORT_BYTES": (_int, 256 * 1024 * 1024),
    # PATCH /products: up to 1000 items, each up to a 5000-character description.
    "MAX_BULK_BYTES": (_int, 8 * 1024 * 1024),
    # Days the change feeds keep their rows at least (`myapi db prune` deletes older ones;
    # a follower further behind gets 410 and exports again).
    "CHANGES_RETENTION": (_days, 30),
    # Days the audit records of imports and PATCH /products are kept (`myapi db prune` deletes older ones).
    "IMPORTS_RETENTION": (_days, 365),
    # Webhooks may target private, loopback and link-local addresses (tests, local set-ups only: DESIGN §11).
    "WEBHOOK_ALLOW_PRIVATE": (_bool, False),
    # argon2 cost. The defaults follow the OWASP minimum (19 MiB, 2 passes);
    # the test suite lowers them so hundreds of sign-ups stay fast.
    "ARGON2_MEMORY_COST": (_int, 19 * 1024),
    "ARGON2_TIME_COST": (_int, 2),
}


def from_environment(name: str):
    """The setting ``name`` as ``MYAPI_<NAME>`` says, else its default (None: load_config fills it in)."""
    parse, default = SETTINGS[name]
    raw = os.environ.get(f"MYAPI_{name}")
    return parse(raw) if raw is not None else default


def load_config(instance_path: str | os.PathLike, overrides: dict | None = None) -> dict:
    """Return the settings: defaults < environment < ``overrides``."""
    instance = Path(instance_path)
    config: dict = {name: from_environment(name) for name in SETTINGS}
    config.update(overrides or {})

    if not config["WORKERS"]:
        config["WORKERS"] = default_workers()
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = f"sqlite:///{instance / 'myapi.db'}"
    if not config["SECRET_KEY"]:
        config["SECRET_KEY"] = _instance_secret(instance)
    return config


def default_workers() -> int:
    """Two sync workers per CPU (docs/deploy.md §5): the requests are CPU-bound, and a second worker
    per CPU keeps answering while one waits on the database or streams a long export to a slow client."""
    return 2 * (os.cpu_count() or 1)


def _instance_secret(instance: Path) -> str:
    """A development secret made once and kept in the instance folder.

    Production sets MYAPI_SECRET_KEY; this only keeps a laptop's secret stable
    across restarts and gunicorn workers without anyone having to think of one.
    """
    path = instance / "secret_key"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    instance.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    # Write a private temporary file, then link it into place: link fails if
    # another worker got there first, and nobody ever reads a half-written key.
    tmp = instance / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret)
    try:
        os.link(tmp, path)
    except FileExistsError:
        secret = path.read_text(encoding="utf-8").strip()
    finally:
        tmp.unlink()
    return secret
