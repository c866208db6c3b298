"""PostgreSQL chores for the Makefile: is a server there, and a fresh test database.

    python tools/pgdb.py check SERVER_URL          exit 0 when the server answers
    python tools/pgdb.py recreate SERVER_URL NAME  drop NAME if it exists, create it empty
    python tools/pgdb.py url SERVER_URL NAME       print SERVER_URL with NAME as its database
"""

from __future__ import annotations

import sys

import psycopg
from sqlalchemy.engine import make_url


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def main(argv: list[str]) -> int:
    command, server = argv[0], argv[1]
    if command == "check":
        try:
            psycopg.connect(libpq(server), connect_timeout=3).close()
        except psycopg.Error:
            return 1
        return 0
    name = argv[2]
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"unsafe database name {name!r}")
    if command == "url":
        print(with_database(server, name))
        return 0
    if command == "recreate":
        with psycopg.connect(libpq(server), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        print(f"created empty database {name}", file=sys.stderr)
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
