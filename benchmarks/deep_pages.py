"""Page 1 against a deep page of a list, by offset (``page=``) and by cursor, through the real server.

    .venv/bin/python benchmarks/deep_pages.py [--database sqlite|postgresql|both]
        [--rows 100000] [--per-page 100] [--depth 1000] [--repeat 9] [--workers 2]
        [--sort "" --sort "-price,name"] [--port PORT] [--seed 20240501] [--pg-server-url URL]

For each database it makes a fresh one (SQLite: a file in a temporary folder;
PostgreSQL: ``myapi_bench_pages``, dropped first if it exists), migrates it,
creates an admin, starts ``myapi serve`` with gunicorn as a subprocess,
imports ``--rows`` generated products over HTTP (the catalogue import, the
same file as benchmarks/catalog_io.py), runs ``ANALYZE``, and then times, with
``requests`` on one keep-alive session, ``GET /products?per_page=N`` for each
``--sort`` (the default order, and a composite one with ties and a
descending key):

* by offset: ``page=1`` and ``page=--depth``;
* by cursor: the first page reached by a cursor (the cursor of page 1) and
  the ``--depth``-th page (the cursor of page ``--depth - 1``, taken from
  that page's ``next_cursor``: the same rows a walk would reach);

each with ``count=none`` (the page alone) and ``count=exact`` (plus the
COUNT of every matching row), every request ``--repeat`` times after one
warm-up; the median is reported, with the slowest. Every answer is checked
(200, ``per_page`` rows, the same rows by offset and by cursor). Results are
printed and written as markdown to ``benchmarks/out/deep_pages-<database>.md``.
The server is always stopped at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tools/ (run as a script: python benchmarks/deep_pages.py)
# The catalogue's generator, database set-up and server come from the import/export benchmark.
from catalog_io import (  # noqa: E402
    PG_SERVER_URL,
    generate_csv,
    git_commit,
    load_average,
    notable_log_lines,
    prepare,
    redact,
    server,
    sign_in,
)

from tools.servers import free_port  # noqa: E402

OUT_DIR = ROOT / "benchmarks" / "out"
API = "/api/v1"
PG_BENCH_DB = "myapi_bench_pages"
TIMEOUT = (10, 600)


def fresh_database(kind: str, workdir: Path, pg_server: str) -> str:
    """A SQLAlchemy URL of a new, empty database."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(pg_server)
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_BENCH_DB}"')
    return url.set(database=PG_BENCH_DB).render_as_string(hide_password=False)


def analyze(url: str) -> None:
    """Fresh statistics, as a production database has."""
    from myapi.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    finally:
        engine.dispose()


@dataclass
class Timing:
    sort: str
    mode: str  # "offset" | "cursor"
    count: str
    page: int
    seconds: list[float] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.seconds) * 1000


def timed(session: requests.Session, url: str, params: dict, per_page: int, repeat: int) -> tuple[list[float], dict]:
    """``repeat`` timings of one GET (after a warm-up), and its answer."""
    body: dict = {}
    seconds = []
    for attempt in range(repeat + 1):
        started = time.perf_counter()
        response = session.get(url, params=params, timeout=TIMEOUT)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET {response.url}: HTTP {response.status_code} {response.text[:300]}")
        body = response.json()
        if len(body["data"]) != per_page:
            raise RuntimeError(f"GET {response.url}: {len(body['data'])} rows, not {per_page}")
        if attempt:
            seconds.append(elapsed)
    return seconds, body


def measure(base: str, headers: dict, sort: str, args: argparse.Namespace) -> list[Timing]:
    url = f"{base}/products"
    common = {"per_page": args.per_page, **({"sort": sort} if sort else {})}
    results: list[Timing] = []
    with requests.Session() as session:
        session.headers.update(headers)
        # The cursors of the 2nd and the depth-th pages: the next_cursor of the page before each.
        first = session.get(url, params={**common, "count": "none"}, timeout=TIMEOUT).json()
        before_deep = session.get(url, params={**common, "count": "none", "page": args.depth - 1},
                                  timeout=TIMEOUT).json()
        cursor_of = {2: first["pagination"]["next_cursor"], args.depth: before_deep["pagination"]["next_cursor"]}
        for count in ("none", "exact"):
            for page in (1, 2, args.depth):
                if page != 2:
                    seconds, body = timed(session, url, {**common, "count": count, "page": page}, args.per_page,
                                          args.repeat)
                    results.append(Timing(sort, "offset", count, page, seconds, [p["id"] for p in body["data"]]))
                if page != 1:
                    seconds, body = timed(session, url, {**common, "count": count, "cursor": cursor_of[page]},
                                          args.per_page, args.repeat)
                    results.append(Timing(sort, "cursor", count, page, seconds, [p["id"] for p in body["data"]]))
                print(f"  sort={sort or 'id'} count={count} page {page}: "
                      + ", ".join(f"{t.mode} {t.median_ms:.1f} ms" for t in results if (t.count, t.page) ==
                                  (count, page)), file=sys.stderr, flush=True)
    by_offset = {(t.count, t.page): t.ids for t in results if t.mode == "offset"}
    for t in results:
        if t.mode == "cursor" and (t.count, t.page) in by_offset and by_offset[(t.count, t.page)] != t.ids:
            raise RuntimeError(f"sort={sort} page {t.page}: the cursor's rows differ from the offset's")
    return results


def run(kind: str, args: argparse.Namespace) -> tuple[list[Timing], dict]:
    with tempfile.TemporaryDirectory(prefix=f"deep-pages-{kind}-") as tmp:
        workdir = Path(tmp)
        csv_path = workdir / "products.csv"
        generate_csv(csv_path, args.rows, args.seed)
        url = fresh_database(kind, workdir, args.pg_server_url)
        prepare(url)
        port = args.port or free_port()
        base = f"http://127.0.0.1:{port}{API}"
        log_path = workdir / "server.log"
        info = {"url": url, "load_before": load_average()}
        results: list[Timing] = []
        try:
            with server(url, port, args.workers, log_path).start() as running:
                running.wait(60)
                headers = sign_in(base)
                with csv_path.open("rb") as body:
                    imported = requests.post(f"{base}/products/import", data=body, timeout=(10, 1800),
                                             headers={**headers, "Content-Type": "text/csv"})
                if imported.status_code != 200:
                    raise RuntimeError(f"import: HTTP {imported.status_code} {imported.text[:300]}")
                analyze(url)
                for sort in args.sort:
                    print(f"[{kind}] sort={sort or 'id'}", file=sys.stderr, flush=True)
                    results += measure(base, headers, sort, args)
        finally:
            info["server_log"] = notable_log_lines(log_path)
            info["load_after"] = load_average()
        return results, info


def markdown(kind: str, args: argparse.Namespace, results: list[Timing], info: dict, command: str) -> str:
    depth = args.depth
    lines = [
        f"# Page 1 against page {depth:,} — {kind}, {args.rows:,} products, {args.per_page} per page",
        "",
        f"- command: `{command}`",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M:%SZ')}",
        f"- commit: {git_commit()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}",
        f"- server: `myapi serve --workers {args.workers}`, rate limiting off, log level WARNING",
        f"- load average (1/5/15 min) before / after: {info['load_before']} / {info.get('load_after', '?')}",
        f"- database: `{redact(info['url'])}`, ANALYZEd after the import",
        f"- each figure: the median (and the slowest) of {args.repeat} requests after a warm-up, timed by the "
        "client on one keep-alive connection (the whole request: HTTP, the statements, JSON)",
        "",
        f"| sort | count | by | near page ms (max) | page {depth:,} ms (max) | deep / near |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for sort in args.sort:
        for count in ("none", "exact"):
            for mode, near in (("offset", 1), ("cursor", 2)):
                first = next(t for t in results if (t.sort, t.count, t.mode, t.page) == (sort, count, mode, near))
                deep = next(t for t in results if (t.sort, t.count, t.mode, t.page) == (sort, count, mode, depth))
                label = "offset (`page=`), near = page 1" if mode == "offset" else "cursor, near = page 2"
                lines.append(f"| `{sort or 'id'}` | {count} | {label} | {first.median_ms:.1f} ({first.max_ms:.1f}) "
                             f"| {deep.median_ms:.1f} ({deep.max_ms:.1f}) | {deep.median_ms / first.median_ms:.2f} |")
    lines += [
        "",
        "By cursor, the nearest page a cursor reaches is page 2 (page 1 is the request without one: the same "
        "statement as `page=1`). A cursor's page is `WHERE (keys) > (the last row's keys) ORDER BY keys LIMIT "
        f"n + 1`, an index range; `page={depth}` is `OFFSET {(depth - 1) * args.per_page:,}`, which reads and "
        "drops every row before the page. count=exact adds a COUNT of every matching row to each page, whatever "
        "its depth. A request without a cursor (the offset rows) also reads the change feed's watermark, which a "
        "walk's later pages carry in their cursor (two small statements).",
    ]
    if info.get("server_log"):
        lines += ["", "Server log (errors, timeouts):", "", "```", *info["server_log"], "```"]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--depth", type=int, default=1000, help="the deep page's number (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sort", action="append", default=None,
                        help='a sort= to measure, repeatable (default: "" (by id) and "-price,name")')
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--pg-server-url", default=os.environ.get("PG_SERVER_URL", PG_SERVER_URL),
                        help=f"a PostgreSQL server to create {PG_BENCH_DB} on (default: %(default)s)")
    args = parser.parse_args(argv)
    args.sort = args.sort if args.sort is not None else ["", "-price,name"]
    if not 1 <= args.per_page <= 100 or args.depth < 3 or args.repeat < 1:
        parser.error("--per-page must be 1 to 100, --depth at least 3, --repeat at least 1")
    if args.depth * args.per_page > args.rows:
        parser.error("--depth pages of --per-page rows must fit in --rows")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "benchmarks/deep_pages.py", *argv])
    kinds = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    failed = False
    for kind in kinds:
        try:
            results, info = run(kind, args)
        except Exception as error:  # e.g. no PostgreSQL server: still run the other database
            print(f"[{kind}] FAILED: {type(error).__name__}: {error}", file=sys.stderr)
            failed = True
            continue
        report = markdown(kind, args, results, info, command)
        (OUT_DIR / f"deep_pages-{kind}.md").write_text(report, encoding="utf-8")
        print(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
