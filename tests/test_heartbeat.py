"""Long requests keep a sync worker alive (common/heartbeat.py): ``--timeout`` kills hung requests only."""

from __future__ import annotations

import time

import pytest
import requests
from test_reliability import bearer

from myapi.common import heartbeat

API = "/api/v1"


def test_a_slow_upload_outlives_the_worker_timeout(start_server, app, db_session):
    """A 2 s timeout, a sync worker, an import whose body takes ~6.5 s to arrive: it completes.

    Each part is larger than one read of the body (8 KiB), so every read
    returns as its part arrives, as with any client uploading faster than a
    few KiB a second.
    """
    server = start_server(workers=1, threads=1, timeout=2)
    admin = bearer(app, "boss", role="admin")
    parts, rows_per_part = 16, 300

    def body():
        yield b"sku,name,category,price,stock\n"
        for part in range(parts):
            time.sleep(0.4)
            yield "".join(f"SLOW-{part}-{n:04d},Slow product {n},slow,1.00,1\n"
                          for n in range(rows_per_part)).encode()

    started = time.monotonic()
    response = requests.post(f"{server.url}{API}/products/import", data=body(), timeout=30,
                             headers={**admin, "Content-Type": "text/csv"})
    assert time.monotonic() - started > 6  # three times the worker timeout
    assert response.status_code == 200, response.text
    assert response.json()["created"] == parts * rows_per_part
    assert requests.get(f"{server.url}{API}/products?category=slow", timeout=10).json()["pagination"][
        "total_items"] == parts * rows_per_part
    assert "WORKER TIMEOUT" not in server.tail(100_000)


def test_a_streamed_download_beats_as_it_goes(client, admin, monkeypatch):
    beats = []
    monkeypatch.setattr(heartbeat, "_notify", lambda: beats.append(1))
    monkeypatch.setattr(heartbeat, "EVERY", 0.0)
    for n in range(3):
        assert client.post(f"{API}/products", headers=admin.headers, json={
            "sku": f"B-{n}", "name": "Beat", "category": "beats", "price": "1.00", "stock": 1}).status_code == 201
    beats.clear()
    response = client.get(f"{API}/products/export?format=csv")
    assert response.status_code == 200 and response.get_data().count(b"\n") == 4
    assert beats  # at least one beat per chunk sent


@pytest.mark.parametrize("threads", [1])
def test_serve_defaults_to_sync_workers_two_per_cpu(threads, monkeypatch):
    from myapi.serving import serve_defaults

    monkeypatch.delenv("MYAPI_WORKERS", raising=False)
    monkeypatch.delenv("MYAPI_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    assert serve_defaults() == (6, threads)
    monkeypatch.setenv("MYAPI_WORKERS", "5")
    monkeypatch.setenv("MYAPI_THREADS", "2")
    assert serve_defaults() == (5, 2)
