"""The benchmark's four workloads in one process, through Flask's test client: ms per request, app vs baseline.

    .venv/bin/python benchmarks/inprocess.py [--database sqlite|postgresql] [--profile WORKLOAD]

No server, no sockets, no load generator: the time is the WSGI application's
own (routing, parsing, auth, SQL, marshalling, JSON), so a change to the
request path shows here in seconds, with far less noise than wrk on a shared
machine. The same seeded data as benchmarks/run.py (quick size); the app and
the bare Flask + Core baseline (benchmarks/baselines.py) alternate rounds.
``--profile`` prints cProfile's top functions of the app for one workload.
It is a tool for finding where time goes; `make bench` is the measurement.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import seeding  # noqa: E402

PG_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DB = "myapi_bench_inprocess"
SIZE = seeding.SeedSize(products=10_000, users=1_000, orders=5_000)


def database_url(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'inprocess.db'}"
    from tools.pgdb import main as pgdb
    from tools.pgdb import with_database

    pgdb(["recreate", PG_SERVER_URL, PG_DB])
    return with_database(PG_SERVER_URL, PG_DB)


def workloads(seeded: seeding.Seeded, rng: random.Random):
    admin = {"Authorization": f"Bearer {seeded.admin_token}"}
    counter = itertools.count()

    def available() -> int:
        while True:
            product_id = rng.randint(1, SIZE.products)
            if product_id % seeding.UNAVAILABLE_EVERY:
                return product_id

    def get_one(client):
        return client.get(f"/api/v1/products/{rng.randint(1, SIZE.products)}")

    def list_50(client):
        category = rng.choice(seeding.CATEGORIES)
        return client.get(f"/api/v1/products?category={category}&sort=-price&per_page=50")

    def post_product(client):
        n = next(counter)
        body = {"sku": f"IP{os.getpid()}-{n}", "name": f"Bench product {n}", "description": "Created by the benchmark.",
                "category": rng.choice(seeding.CATEGORIES), "price": f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}",
                "stock": 100}
        return client.post("/api/v1/products", json=body, headers=admin)

    def post_order(client):
        lines = {available(): rng.randint(1, 3) for _ in range(rng.randint(1, 3))}
        body = {"items": [{"product_id": pid, "quantity": q} for pid, q in lines.items()],
                "shipping_address": "1 Bench Street, Testville"}
        token = rng.choice(seeded.customer_tokens)
        return client.post("/api/v1/orders", json=body, headers={"Authorization": f"Bearer {token}"})

    return {"get_one": get_one, "list_50": list_50, "post_product": post_product, "post_order": post_order}


def timed(client, request, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        response = request(client)
        if response.status_code >= 400:
            raise SystemExit(f"{response.status_code}: {response.get_data(as_text=True)[:500]}")
        response.close()
    return (time.perf_counter() - started) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=200, help="requests per round and workload")
    parser.add_argument("--profile", choices=("get_one", "list_50", "post_product", "post_order"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="myapi-inprocess-"))
    url = database_url(args.database, workdir)
    seeded = seeding.seed(url, SIZE)
    os.environ.update({"MYAPI_DATABASE_URL": url, "MYAPI_RATELIMIT_ENABLED": "false", "MYAPI_LOG_LEVEL": "WARNING",
                       "MYAPI_SECRET_KEY": "inprocess"})
    from baselines import create_core_app

    from myapi.app import create_app

    apps = {"myapi": create_app().test_client(), "flask+core": create_core_app().test_client()}
    rng = random.Random(1)
    work = workloads(seeded, rng)
    if args.profile:
        request = work[args.profile]
        timed(apps["myapi"], request, 50)
        profiler = cProfile.Profile()
        profiler.enable()
        timed(apps["myapi"], request, args.count * 2)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
        stats.print_stats(35)
        stats.sort_stats("cumulative").print_stats(60)
        print(out.getvalue())
        return
    results: dict[tuple[str, str], list[float]] = {}
    for name, request in work.items():
        for client in apps.values():
            timed(client, request, 20)  # warm-up
        for _ in range(args.rounds):
            for label, client in apps.items():
                results.setdefault((name, label), []).append(timed(client, request, args.count))
    print(f"{args.database}: ms per request, median of {args.rounds} rounds of {args.count} (ratio = baseline / app)")
    for name in work:
        app_ms = statistics.median(results[(name, "myapi")])
        core_ms = statistics.median(results[(name, "flask+core")])
        print(f"  {name:<13} myapi {app_ms:6.2f}   flask+core {core_ms:6.2f}   ratio {core_ms / app_ms:4.2f}x")


if __name__ == "__main__":
    main()
