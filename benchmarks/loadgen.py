"""Load generators: wrk (closed loop, peak throughput) and a Python one.

``wrk`` comes from the OS packages (Debian/Ubuntu: ``apt-get install -y wrk``).
When it is missing, peak throughput is measured by the *Python generator*
instead (threads + ``http.client``, closed loop); every result says which
generator produced it, since the Python one is slower and shares the CPU.

Latency at a fixed rate always comes from the Python generator in open-loop
mode: request *i* is due at ``start + i / rate`` whatever happened before, and
its latency is counted from that due time, so a stalled server shows up in
p99 instead of silently lowering the rate (coordinated omission). wrk 4 cannot
send at a fixed rate (that is wrk2, not packaged).

Each workload exists twice, as a wrk Lua script (``benchmarks/wrk/``) and as a
Python request factory below; both draw the same kinds of requests.
"""

from __future__ import annotations

import http.client
import itertools
import json
import random
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRK_DIR = ROOT / "benchmarks" / "wrk"
WRK_INSTALL_HINT = "wrk is not installed: `sudo apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`"

CATEGORIES = (
    "books", "garden-tools", "kitchen", "toys", "outdoor", "office-supplies", "electronics",
    "pet-care", "beauty", "sports", "home-decor", "music", "baby", "automotive", "crafts",
    "grocery", "health", "shoes", "jewellery", "lighting",
)

Request = tuple[str, str, bytes | None, dict[str, str]]  # method, path, body, headers


def wrk_path() -> str | None:
    return shutil.which("wrk")


@dataclass
class LoadResult:
    generator: str  # "wrk" or "python (closed loop)" / "python (fixed rate)"
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0  # non-2xx/3xx answers plus socket errors and timeouts
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    target_rate: float | None = None
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok_rps(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


# -- workloads ---------------------------------------------------------------------


@dataclass
class Workload:
    """One kind of request: how wrk makes it and how Python makes it."""

    name: str
    script: str  # file in benchmarks/wrk/
    args: list[str]  # "{run}" is replaced by a fresh token for every run (unique skus)
    factory: Callable[[random.Random, int, str], Request]  # (rng, sequence number, run token) -> request


def get_product(products: int) -> Workload:
    def make(rng: random.Random, _n: int, _run: str) -> Request:
        return "GET", f"/api/v1/products/{rng.randint(1, products)}", None, {}

    return Workload("GET one product", "get_product.lua", [str(products)], make)


def list_products() -> Workload:
    def make(rng: random.Random, _n: int, _run: str) -> Request:
        return "GET", f"/api/v1/products?category={rng.choice(CATEGORIES)}&sort=-price&per_page=50", None, {}

    return Workload("GET list of 50 (filter+sort)", "list_products.lua", [], make)


def post_product(admin_token: str) -> Workload:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {admin_token}"}

    def make(rng: random.Random, n: int, run: str) -> Request:
        body = {"sku": f"P{run}-{n}", "name": f"Bench product {n}",
                "description": "Created by the benchmark.", "category": rng.choice(CATEGORIES),
                "price": f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}", "stock": 100}
        return "POST", "/api/v1/products", json.dumps(body).encode(), headers

    return Workload("POST product", "post_product.lua", ["{run}", admin_token], make)


def post_order(products: int, token_file: Path) -> Workload:
    tokens = [line for line in token_file.read_text().splitlines() if line]

    def make(rng: random.Random, _n: int, _run: str) -> Request:
        lines: dict[int, int] = {}
        for _ in range(rng.randint(1, 3)):
            product_id = rng.randint(1, products)
            while product_id % 50 == 0:  # retired by the seed
                product_id = rng.randint(1, products)
            lines.setdefault(product_id, rng.randint(1, 3))
        body = {"items": [{"product_id": pid, "quantity": q} for pid, q in lines.items()],
                "shipping_address": "1 Bench Street, Testville"}
        return "POST", "/api/v1/orders", json.dumps(body).encode(), {
            "Content-Type": "application/json", "Authorization": f"Bearer {rng.choice(tokens)}"}

    return Workload("POST order", "post_order.lua", [str(products), str(token_file)], make)


# -- wrk ---------------------------------------------------------------------------


def run_wrk(base_url: str, workload: Workload, *, connections: int, seconds: float, threads: int = 2,
            timeout_s: int = 5) -> LoadResult:
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError(WRK_INSTALL_HINT)
    run = uuid.uuid4().hex[:10]
    args = [arg.replace("{run}", run) for arg in workload.args]
    command = [wrk, "-t", str(min(threads, connections)), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
               "--timeout", f"{timeout_s}s", "-s", str(WRK_DIR / workload.script), base_url, "--", *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,  # noqa: S603 - fixed argv
                          timeout=seconds + 60, check=False)
    line = next((line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]} {done.stdout[-2000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = data["connect"] + data["read"] + data["write"] + data["status"] + data["timeout"]
    return LoadResult(generator="wrk", requests=data["requests"], seconds=data["duration_us"] / 1e6,
                      errors=errors, p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000)


# -- the Python generator ------------------------------------------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


class _Client:
    """One keep-alive-if-possible HTTP/1.1 connection (http.client reconnects after ``Connection: close``)."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def send(self, request: Request) -> int:
        method, path, body, headers = request
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            response.read()
            if response.will_close:
                self.conn.close()
            return response.status
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            return 0


def run_python(base_url: str, workload: Workload, *, seconds: float, connections: int = 8,
               rate: float | None = None, seed: int = 1, timeout_s: float = 10) -> LoadResult:
    """Closed loop with ``connections`` threads, or open loop at ``rate`` requests/s when given."""
    host_port = base_url.split("://", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    threads = connections if rate is None else max(connections, min(128, int(rate * 0.05) + 16))
    sequence = itertools.count()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    run = uuid.uuid4().hex[:10]
    start = time.perf_counter() + 0.05
    end = start + seconds

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        client = _Client(host, int(port), timeout_s)
        mine: list[float] = []
        codes: dict[int, int] = {}
        while True:
            n = next(sequence)
            if rate is None:
                due = time.perf_counter()
                if due >= end:
                    break
            else:
                due = start + n / rate
                if due >= end:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            status = client.send(workload.factory(rng, n, run))
            mine.append(time.perf_counter() - due)
            codes[status] = codes.get(status, 0) + 1
        with lock:
            latencies.extend(mine)
            for code, count in codes.items():
                statuses[code] = statuses.get(code, 0) + count

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(seconds + timeout_s + 30)
    elapsed = max(time.perf_counter() - start, 1e-9) if rate is None else seconds
    latencies.sort()
    errors = sum(count for code, count in statuses.items() if not 200 <= code < 400)
    label = "python (closed loop)" if rate is None else "python (fixed rate, open loop)"
    return LoadResult(generator=label, requests=len(latencies), seconds=elapsed, errors=errors,
                      p50_ms=_percentile(latencies, 50) * 1000, p99_ms=_percentile(latencies, 99) * 1000,
                      target_rate=rate, statuses=statuses)
