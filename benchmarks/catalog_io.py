"""CSV import and export of the catalogue, measured through the real server.

    .venv/bin/python benchmarks/catalog_io.py [--database sqlite|postgresql|both]
        [--rows 100000] [--workers 2] [--port PORT] [--seed 20240501]
        [--timeout SECONDS] [--threads N] [--pg-server-url URL]

For each database it makes a fresh one (SQLite: a file in a temporary folder;
PostgreSQL: ``myapi_bench``, dropped first if it exists), migrates it, creates
an admin, starts ``myapi serve`` with gunicorn as a subprocess and then, over
HTTP with ``requests``:

1. imports a generated CSV of ``--rows`` products (fixed seed; the body is the
   file streamed from disk, ``Content-Type: text/csv``) — every row is new;
2. imports the same file again — every row is unchanged (nothing is written);
3. imports it with every stock one higher — every row is an update;
4. plans the first file again (``plan=true``, JSON: counts and the first
   changes) — every row would change back; 5. the same plan with its whole
   diff streamed as NDJSON;
6. imports a file with every stock two higher and one row in a hundred bad
   with ``on_error=skip_rows`` — the valid rows written, the bad ones
   rejected (the reading path of issue 16);
7. exports ``?format=csv`` and 8. ``?format=ndjson`` with ``stream=True``.

Steps 1-3 are the default path (``on_error=reject_file``, no plan), which
writes without reading; 4-6 read each batch's stored products first.

While each operation runs, a thread reads VmRSS and VmHWM from
``/proc/<pid>/status`` of every gunicorn worker every ~20 ms; the worker whose
RSS grew most is taken as the one that handled the request. Results are
printed and written as markdown to ``benchmarks/out/catalog_io-<database>.md``.
The server is always stopped at the end, whatever happened. The exit status is
1 when any operation did not answer 200 with every row.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tools/ (run as a script: python benchmarks/catalog_io.py)
from tools.servers import ServerProcess, children, free_port  # noqa: E402

OUT_DIR = ROOT / "benchmarks" / "out"
MYAPI = ROOT / ".venv" / "bin" / "myapi"
API = "/api/v1"

PG_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "myapi_bench"
ADMIN = ("bench_admin", "bench-admin-password")
SECRET_KEY = "catalog-io-benchmark-secret-key-not-for-production"  # noqa: S105 - a throwaway local server

SAMPLE_EVERY = 0.02  # seconds between RSS samples
WORKER_REFRESH = 0.5  # seconds between re-listing the gunicorn workers
IMPORT_TIMEOUT = (10, 1800)  # requests (connect, read) timeouts, seconds
EXPORT_TIMEOUT = (10, 300)
CHUNK = 64 * 1024

# The same vocabulary as the seeded benchmark database (benchmarks/seeding.py).
from seeding import ADJECTIVES, CATEGORIES, NOUNS, WORDS  # noqa: E402

# -- the data -------------------------------------------------------------------


def generate_csv(path: Path, rows: int, seed: int, stock_offset: int = 0, bad_every: int = 0) -> None:
    """``rows`` valid products with sku SKU-0000001...; same seed, same bytes (every stock + ``stock_offset``).

    ``bad_every``: every such row has an invalid price (a row error).
    """
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(("sku", "name", "description", "category", "price", "stock", "is_available"))
        for i in range(1, rows + 1):
            name = f"{rng.choice(ADJECTIVES).capitalize()} {rng.choice(NOUNS)} {i}"
            roll = rng.random()
            if roll < 0.1:
                description = ""
            else:
                description = " ".join(rng.choices(WORDS, k=rng.randint(5, 25))).capitalize() + "."
                if roll > 0.95:  # a few cells that need CSV quoting
                    description += '\nSecond line, with a comma and "quotes".'
            price = f"{rng.randint(1, 99_999) / 100:.2f}"
            if bad_every and i % bad_every == 0:
                price = "free"
            writer.writerow((f"SKU-{i:07d}", name, description, rng.choice(CATEGORIES), price,
                             rng.randint(0, 5000) + stock_offset, "true" if rng.random() < 0.9 else "false"))


# -- databases ------------------------------------------------------------------


def fresh_database(kind: str, workdir: Path, pg_server: str) -> str:
    """A SQLAlchemy URL of a new, empty database."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(pg_server)
    libpq = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_BENCH_DB}"')
    return server.set(database=PG_BENCH_DB).render_as_string(hide_password=False)


def prepare(url: str) -> None:
    """Migrate to head and create the admin."""
    from myapi.app import create_app
    from myapi.common.auth import hash_password
    from myapi.db import get_db, get_session
    from myapi.migrate import upgrade
    from myapi.services.users import create_user

    upgrade(url)
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "LOG_LEVEL": "WARNING"})
    with app.app_context():
        session = get_session()
        create_user(session, username=ADMIN[0], email="bench@example.com",
                    password_hash=hash_password(ADMIN[1]), role="admin")
        session.commit()
    get_db(app).engine.dispose()


def count_products(url: str) -> int:
    from sqlalchemy import text

    from myapi.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM products")).scalar_one()
    finally:
        engine.dispose()


# -- the server -----------------------------------------------------------------


def server(url: str, port: int, workers: int, log_path: Path, timeout: int | None = None,
           threads: int | None = None) -> ServerProcess:
    """``myapi serve`` on ``url`` (tools/servers.py), not started yet; use it as a context manager."""
    env = {
        **os.environ,
        "MYAPI_DATABASE_URL": url,
        "MYAPI_SECRET_KEY": SECRET_KEY,
        "MYAPI_RATELIMIT_ENABLED": "false",
        "MYAPI_LOG_LEVEL": "WARNING",
    }
    command = [str(MYAPI), "serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    if timeout is not None:
        command += ["--timeout", str(timeout)]
    if threads is not None:
        command += ["--threads", str(threads)]
    return ServerProcess(command, port=port, env=env, log=log_path, workers=workers, name="myapi serve")


def worker_pids(master: int) -> list[int]:
    return children(master)


def memory_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of ``pid`` in KiB, None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            status = fh.read()
    except OSError:
        return None
    values = {}
    for line in status.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, number, _unit = line.split()
            values[key[:-1]] = int(number)
    if "VmRSS" not in values:
        return None
    return values["VmRSS"], values.get("VmHWM", 0)


@dataclass
class WorkerMemory:
    before: int  # VmRSS KiB at the first reading (a replacement worker: when it was first seen)
    peak: int
    hwm: int  # VmHWM KiB at the last reading
    new: bool = False  # started during the operation (a replacement)


class RssSampler:
    """VmRSS of every gunicorn worker every ~20 ms, in a background thread."""

    def __init__(self, master: int):
        self.master = master
        self.workers: dict[int, WorkerMemory] = {}
        self.samples = 0
        self.exited: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._add(worker_pids(self.master), new=False)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # one last reading after the operation
        alive = set(worker_pids(self.master))
        self._add(alive, new=True)
        self.exited = sorted(pid for pid in self.workers if pid not in alive)

    def _add(self, pids, *, new: bool) -> None:
        for pid in pids:
            if pid not in self.workers and (reading := memory_kib(pid)):
                self.workers[pid] = WorkerMemory(before=reading[0], peak=reading[0], hwm=reading[1], new=new)

    def _sample(self) -> None:
        self.samples += 1
        for pid, memory in self.workers.items():
            reading = memory_kib(pid)
            if reading:
                memory.peak = max(memory.peak, reading[0])
                memory.hwm = reading[1]

    def _run(self) -> None:
        listed = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - listed > WORKER_REFRESH:
                listed = time.monotonic()
                self._add(worker_pids(self.master), new=True)
            self._sample()
            self._stop.wait(SAMPLE_EVERY)

    def busiest(self) -> tuple[int, WorkerMemory]:
        """The worker whose RSS grew most: the one that served the request."""
        return max(self.workers.items(), key=lambda item: item[1].peak - item[1].before)


# -- the operations ---------------------------------------------------------------


@dataclass
class Result:
    operation: str
    status: int | None = None
    seconds: float = 0.0
    rows: int = 0
    bytes: int = 0
    ttfb_headers: float | None = None
    ttfb_body: float | None = None
    answer: str = ""
    worker: int | None = None
    rss_before: int = 0
    rss_peak: int = 0
    hwm: int = 0
    workers_seen: int = 0
    samples: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def growth(self) -> int:
        return self.rss_peak - self.rss_before


def measured(result: Result, sampler: RssSampler) -> None:
    pid, memory = sampler.busiest()
    result.worker, result.rss_before, result.rss_peak, result.hwm = pid, memory.before, memory.peak, memory.hwm
    result.workers_seen, result.samples = len(sampler.workers), sampler.samples
    replacements = [pid for pid, worker in sampler.workers.items() if worker.new]
    if sampler.exited or replacements:
        result.notes.append(f"worker(s) {sampler.exited} exited during the operation, {replacements} started"
                            " (see the server log)")


def import_csv(name: str, base: str, headers: dict, csv_path: Path, rows: int, master: int,
               params: dict | None = None, accept: str = "application/json") -> Result:
    result = Result(name)
    with RssSampler(master) as sampler, csv_path.open("rb") as body:
        started = time.perf_counter()
        try:
            response = requests.post(f"{base}/products/import", data=body, timeout=IMPORT_TIMEOUT, params=params,
                                     headers={**headers, "Content-Type": "text/csv", "Accept": accept},
                                     stream=True)
            lines = sum(1 for _ in response.iter_lines()) if accept != "application/json" else 0
            result.seconds = time.perf_counter() - started
            result.status = response.status_code
            if accept == "application/json":
                # The counts: an answer also lists its first changes, too long for a table cell.
                answer = response.json() if response.status_code == 200 else {}
                result.answer = one_line(json.dumps({key: answer[key] for key in ANSWER_KEYS if key in answer})
                                         if answer else response.text)
            else:
                result.answer = f"{lines:,} lines of {response.headers.get('Content-Type')} (X-Import-Id " \
                                f"{response.headers.get('X-Import-Id')})"
        except requests.RequestException as error:
            result.seconds = time.perf_counter() - started
            result.answer = one_line(f"{type(error).__name__}: {error}")
    result.bytes = csv_path.stat().st_size
    result.rows = rows if result.status == 200 else 0
    measured(result, sampler)
    return result


ANSWER_KEYS = ("import_id", "rows", "created", "updated", "unchanged", "rejected", "error_count", "dry_run", "plan",
               "on_error")


def export(fmt: str, base: str, headers: dict, workdir: Path, master: int) -> Result:
    result = Result(f"export {fmt}")
    target = workdir / f"export.{fmt}"
    with RssSampler(master) as sampler, target.open("wb") as out:
        started = time.perf_counter()
        try:
            with requests.get(f"{base}/products/export", params={"format": fmt}, headers=headers,
                              stream=True, timeout=EXPORT_TIMEOUT) as response:
                result.ttfb_headers = time.perf_counter() - started
                result.status = response.status_code
                for chunk in response.iter_content(CHUNK):
                    if result.ttfb_body is None:
                        result.ttfb_body = time.perf_counter() - started
                    out.write(chunk)
                    result.bytes += len(chunk)
            result.seconds = time.perf_counter() - started
        except requests.RequestException as error:
            result.seconds = time.perf_counter() - started
            result.answer = one_line(f"{type(error).__name__}: {error}")
    measured(result, sampler)
    if result.status == 200:
        result.rows = count_exported(target, fmt)
    else:
        result.answer = result.answer or one_line(target.read_text(errors="replace"))
    target.unlink()
    return result


def one_line(text: str, limit: int = 400) -> str:
    return " ".join(text.split())[:limit]


def count_exported(path: Path, fmt: str) -> int:
    """Rows in a downloaded export (parsed after the clock stopped)."""
    with path.open(encoding="utf-8", newline="") as fh:
        if fmt == "csv":
            return sum(1 for _ in csv.reader(fh)) - 1  # minus the header
        return sum(1 for line in fh if line.strip() and json.loads(line))


def sign_in(base: str) -> dict:
    response = requests.post(f"{base}/tokens", auth=ADMIN, timeout=30)
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['token']}"}


# -- one database ---------------------------------------------------------------


def run(kind: str, args: argparse.Namespace) -> tuple[list[Result], dict]:
    with tempfile.TemporaryDirectory(prefix=f"catalog-io-{kind}-") as tmp:
        workdir = Path(tmp)
        csv_path = workdir / "products.csv"
        generate_csv(csv_path, args.rows, args.seed)
        changed_path = workdir / "products-changed.csv"
        generate_csv(changed_path, args.rows, args.seed, stock_offset=1)
        flawed_path = workdir / "products-flawed.csv"
        generate_csv(flawed_path, args.rows, args.seed, stock_offset=2, bad_every=100)
        url = fresh_database(kind, workdir, args.pg_server_url)
        prepare(url)
        port = args.port or free_port()
        base = f"http://127.0.0.1:{port}{API}"
        log_path = workdir / "server.log"
        results: list[Result] = []
        info = {"csv_bytes": csv_path.stat().st_size, "url": url, "load_before": load_average()}
        try:
            with server(url, port, args.workers, log_path, args.timeout, args.threads).start() as running:
                running.wait(60)
                process = running.process
                headers = sign_in(base)
                for name, path in (("import (all new)", csv_path), ("re-import (same file)", csv_path),
                                   ("import (every stock changed)", changed_path)):
                    results.append(import_csv(name, base, headers, path, args.rows, process.pid))
                    report_progress(kind, results[-1])
                for name, path, params, accept in (
                        ("plan (every row changes; JSON)", csv_path, {"plan": "true"}, "application/json"),
                        ("plan, whole diff as NDJSON", csv_path, {"plan": "true"}, "application/x-ndjson"),
                        ("skip_rows import (1 % bad rows)", flawed_path, {"on_error": "skip_rows"},
                         "application/json")):
                    results.append(import_csv(name, base, headers, path, args.rows, process.pid, params, accept))
                    report_progress(kind, results[-1])
                for fmt in ("csv", "ndjson"):
                    results.append(export(fmt, base, headers, workdir, process.pid))
                    report_progress(kind, results[-1])
        finally:
            info["server_log"] = notable_log_lines(log_path)
            info["load_after"] = load_average()
        info["products_in_db"] = count_products(url)
        return results, info


def report_progress(kind: str, result: Result) -> None:
    print(f"[{kind}] {result.operation}: HTTP {result.status} in {result.seconds:.2f}s"
          f" ({result.rows_per_s:,.0f} rows/s)", file=sys.stderr, flush=True)


def notable_log_lines(log_path: Path, limit: int = 60) -> list[str]:
    """Server log lines worth a look: errors and timeouts, and the end of each traceback."""
    if not log_path.exists():
        return []
    keys = ("error", "critical", "timeout", "exception", "killed", "sigkill", "sigabrt")
    lines = log_path.read_text(errors="replace").splitlines()
    notable: list[str] = []
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if line.startswith("Traceback"):
            start = number
            while number < len(lines) and not lines[number].startswith("["):
                number += 1
            notable += ["Traceback (last frames):", *lines[max(start, number - 9):number]]
        elif "[INFO]" not in line and any(key in line.lower() for key in keys):
            notable.append(line)
    return [line[:300] for line in notable[:limit]]


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# -- the report -----------------------------------------------------------------


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def markdown(kind: str, args: argparse.Namespace, results: list[Result], info: dict, command: str) -> str:
    lines = [
        f"# Catalogue CSV import/export — {kind}, {args.rows:,} rows",
        "",
        f"- command: `{command}`",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M:%SZ')}",
        f"- commit: {git_commit()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}",
        f"- server: `myapi serve --workers {args.workers}"
        + (f" --timeout {args.timeout}" if args.timeout is not None else "")
        + (f" --threads {args.threads}" if args.threads is not None else "")
        + f"` (gunicorn {'gthread' if (args.threads or 1) > 1 else 'sync'} workers), rate limiting off,"
        " log level WARNING",
        f"- load average (1/5/15 min) before / after: {info['load_before']} / {info.get('load_after', '?')}",
        f"- database: `{redact(info['url'])}`",
        f"- CSV: {args.rows:,} rows, {info['csv_bytes'] / 1e6:.1f} MB, seed {args.seed}",
        f"- products in the database afterwards: {info.get('products_in_db', '?'):,}",
        "",
        "| operation | HTTP | time s | rows | rows/s | MB/s | first byte s (headers / body) "
        "| worker | RSS before MiB | RSS peak MiB | RSS growth MiB | VmHWM MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        ttfb = "" if r.ttfb_headers is None else f"{seconds(r.ttfb_headers)} / {seconds(r.ttfb_body) or '-'}"
        mbps = r.bytes / 1e6 / r.seconds if r.seconds else 0
        lines.append(
            f"| {r.operation} | {r.status} | {r.seconds:.2f} | {r.rows:,} | {r.rows_per_s:,.0f} | {mbps:.2f} "
            f"| {ttfb} | {r.worker} | {mib(r.rss_before)} | {mib(r.rss_peak)} | {mib(r.growth)} | {mib(r.hwm)} |"
        )
    lines += [
        "",
        "Import time is the whole POST (upload streamed from disk, parse, validate, upsert, commit);"
        " export time is until the last byte arrived. RSS is sampled every"
        f" {SAMPLE_EVERY * 1000:.0f} ms from /proc/<pid>/status of every worker; the worker shown is"
        " the one whose RSS grew most. VmHWM is that worker's lifetime peak after the operation.",
        "",
        "Server answers:",
        "",
    ]
    lines += [f"- {r.operation}: `{r.answer or '(streamed body)'}`" for r in results]
    notes = [f"- {r.operation}: {note}" for r in results for note in r.notes]
    if notes:
        lines += ["", "Notes:", "", *notes]
    if info.get("server_log"):
        lines += ["", "Server log (errors, timeouts):", "", "```", *info["server_log"], "```"]
    return "\n".join(lines) + "\n"


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def git_commit() -> str:
    """HEAD, and which files under myapi/ differ from it (others may be editing)."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    head = subprocess.run([git, "rev-parse", "--short", "HEAD"],  # noqa: S603 - fixed argv
                          capture_output=True, text=True, cwd=ROOT, check=False).stdout.strip()
    status = subprocess.run([git, "status", "--porcelain", "--", "myapi"],  # noqa: S603 - fixed argv
                            capture_output=True, text=True, cwd=ROOT, check=False).stdout.splitlines()
    if not status:
        return head or "unknown"
    diff = subprocess.run([git, "diff", "HEAD", "--", "myapi"],  # noqa: S603 - fixed argv
                          capture_output=True, cwd=ROOT, check=False).stdout
    changed = ", ".join(line[3:] for line in status)
    return f"{head} + uncommitted changes in myapi/ ({changed}; diff sha256 {hashlib.sha256(diff).hexdigest()[:12]})"


# -- main -----------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--timeout", type=int, default=None,
                        help="passed to `myapi serve --timeout` (gunicorn worker timeout; default: its own, 60 s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="passed to `myapi serve --threads` (more than 1: gunicorn gthread workers)")
    parser.add_argument("--pg-server-url", default=os.environ.get("PG_SERVER_URL", PG_SERVER_URL),
                        help=f"a PostgreSQL server to create {PG_BENCH_DB} on (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.workers < 1:
        parser.error("--rows and --workers must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "benchmarks/catalog_io.py", *argv])
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
        (OUT_DIR / f"catalog_io-{kind}.md").write_text(report, encoding="utf-8")
        print(report)
        failed |= any(r.status != 200 or (r.rows != args.rows) for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
