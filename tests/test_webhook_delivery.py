"""Webhook delivery (DESIGN §11) to a real receiver on 127.0.0.1: every event arrives, signed so that
``standardwebhooks`` verifies it; failures are retried with backoff, then failed; per-entity order;
two workers never send the same attempt; a worker killed mid-burst loses nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import standardwebhooks
from sqlalchemy import select, update

from myapi import worker
from myapi.db import get_db
from myapi.models import Change, WebhookDelivery
from myapi.services import webhook_delivery as delivery
from tests.test_changes import new_product, settle
from tools.servers import myapi_env

API = "/api/v1"
FAST = worker.WorkerOptions(lease=dt.timedelta(seconds=30), poll=0.05, retry=delivery.Retry(base=0.0, cap=0.0),
                              allow_private=True)


class Receiver:
    """An HTTP server recording every POST; ``answer(n, body)`` picks the status of the n-th request."""

    def __init__(self, answer=lambda n, body: 204, delay: float = 0.0):
        self.requests: list[tuple[dict, str]] = []
        self.answer, self.delay = answer, delay
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}
        self.overlaps = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                msg = self.headers.get("webhook-id")
                with receiver.lock:
                    receiver.in_flight[msg] = receiver.in_flight.get(msg, 0) + 1
                    receiver.overlaps += receiver.in_flight[msg] > 1
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    n = len(receiver.requests)
                time.sleep(receiver.delay)
                status = receiver.answer(n, json.loads(body))
                with receiver.lock:
                    receiver.in_flight[msg] -= 1
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _headers, body in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture(autouse=True)
def allow_private(app):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = True


def subscribe(client, admin, url, events=("product.created", "product.updated", "product.deleted")):
    response = client.post(f"{API}/webhooks", headers=admin.headers, json={"url": url, "events": list(events)})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def drain(app, name="w1", options=FAST, http=None, rounds=200) -> None:
    """Run a worker's steps in this thread until nothing is left to do now."""
    settle(app)
    http = http or delivery.http_session(options.allow_private)
    sessions = lambda: get_db(app).session(write=True)  # noqa: E731
    idle = 0
    for _ in range(rounds):
        idle = 0 if worker.work_once(sessions, name, options, http) else idle + 1
        if idle >= 2:
            return
    raise AssertionError("the worker never ran out of work")


def statuses(app) -> list[tuple[str, int]]:
    with get_db(app).session() as session:
        return [(row.status, row.attempts) for row in session.scalars(select(WebhookDelivery)
                                                                      .order_by(WebhookDelivery.id))]


def test_every_event_arrives_signed_and_verifiable(client, admin, app, receiver):
    target = receiver()
    hook = subscribe(client, admin, target.url)
    tea = new_product(client, admin, "TEA-1")
    drain(app)
    client.patch(f"{API}/products/{tea['id']}", headers=admin.headers, json={"stock": 3})
    client.delete(f"{API}/products/{tea['id']}", headers=admin.headers)
    drain(app)

    assert [body["type"] for body in target.bodies()] == ["product.created", "product.updated", "product.deleted"]
    verifier = standardwebhooks.Webhook(hook["secret"])
    for headers, body in target.requests:
        assert verifier.verify(body, headers)["id"] == headers["webhook-id"]
        assert set(json.loads(body)) == {"id", "type", "created", "data"}
    # The item as it was when the event was fanned out: gone by then, only its id.
    assert target.bodies()[0]["data"]["sku"] == "TEA-1" and target.bodies()[1]["data"] == {"id": tea["id"]}
    assert statuses(app) == [("succeeded", 1)] * 3

    log = client.get(f"{API}/webhooks/{hook['id']}/deliveries", headers=admin.headers).get_json()["data"]
    assert [(entry["status"], entry["last_status_code"], entry["event_type"]) for entry in log] == [
        ("succeeded", 204, "product.created"), ("succeeded", 204, "product.updated"),
        ("succeeded", 204, "product.deleted")]


def test_only_subscribed_types_and_active_subscriptions(client, admin, app, receiver):
    orders_only, paused = receiver(), receiver()
    subscribe(client, admin, orders_only.url, events=["order.created"])
    quiet = subscribe(client, admin, paused.url)
    client.patch(f"{API}/webhooks/{quiet['id']}", headers=admin.headers, json={"is_active": False})
    new_product(client, admin, "TEA-1")
    drain(app)
    assert orders_only.requests == [] and paused.requests == []


def test_failures_are_retried_then_succeed_and_redirects_are_not_followed(client, admin, app, receiver):
    target = receiver(answer=lambda n, body: {1: 500, 2: 302}.get(n, 200))
    subscribe(client, admin, target.url)
    new_product(client, admin, "TEA-1")
    drain(app)
    assert len(target.requests) == 3  # 500, then a 302 (not followed: no request to /elsewhere), then 200
    assert len({headers["webhook-id"] for headers, _body in target.requests}) == 1
    assert len({body for _headers, body in target.requests}) == 1  # byte-identical retries
    assert statuses(app) == [("succeeded", 3)]


def test_after_24_hours_of_failures_a_delivery_fails_and_can_be_retried(client, admin, app, receiver):
    target = receiver(answer=lambda n, body: 503)
    hook = subscribe(client, admin, target.url)
    new_product(client, admin, "TEA-1")
    drain(app, options=worker.WorkerOptions(**{**FAST.__dict__, "max_age": dt.timedelta(seconds=0)}))
    assert statuses(app) == [("failed", 1)]
    log = client.get(f"{API}/webhooks/{hook['id']}/deliveries?status=failed", headers=admin.headers).get_json()
    assert log["data"][0]["last_status_code"] == 503 and log["data"][0]["next_attempt_at"] is None

    target.answer = lambda n, body: 200
    retried = client.post(f"{API}/webhooks/{hook['id']}/deliveries/{log['data'][0]['id']}/retry",
                          headers=admin.headers)
    assert retried.status_code == 200, retried.get_json()
    assert retried.get_json()["status"] == "pending"
    drain(app)
    assert statuses(app) == [("succeeded", 2)]


def test_backoff_grows_with_jitter():
    retry = delivery.Retry(base=5, cap=3600)
    for attempts, ceiling in ((1, 5), (2, 10), (5, 80), (20, 3600)):
        waits = [retry.delay(attempts).total_seconds() for _ in range(50)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits) and len(set(waits)) > 1


def test_a_later_event_of_an_entity_waits_for_the_earlier_ones_delivery(client, admin, app, receiver):
    failing = {"on": True}
    target = receiver(answer=lambda n, body: 500 if failing["on"] and body["type"] == "product.created"
                      and body["data"]["id"] == 1 else 200)
    subscribe(client, admin, target.url)
    first = new_product(client, admin, "TEA-1")
    second = new_product(client, admin, "TEA-2")
    client.patch(f"{API}/products/{first['id']}", headers=admin.headers, json={"stock": 3})
    client.patch(f"{API}/products/{second['id']}", headers=admin.headers, json={"stock": 3})
    slow = worker.WorkerOptions(**{**FAST.__dict__, "retry": delivery.Retry(base=3600, cap=3600)})
    drain(app, options=slow)
    # TEA-1's update waits behind its failing creation; TEA-2 is not held up by it.
    assert [(body["type"], body["data"]["id"]) for body in target.bodies()] == [
        ("product.created", 1), ("product.created", 2), ("product.updated", 2)]
    failing["on"] = False
    with get_db(app).session() as session:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.status == "pending")
                        .values(next_attempt_at=dt.datetime.now(dt.timezone.utc)))
        session.commit()
    drain(app, options=slow)
    assert [(body["type"], body["data"]["id"]) for body in target.bodies()][3:] == [
        ("product.created", 1), ("product.updated", 1)]


def test_rotation_signs_with_both_secrets(client, admin, app, receiver):
    target = receiver()
    hook = subscribe(client, admin, target.url)
    rotated = client.post(f"{API}/webhooks/{hook['id']}/rotate-secret", headers=admin.headers).get_json()
    new_product(client, admin, "TEA-1")
    drain(app)
    headers, body = target.requests[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (hook["secret"], rotated["secret"]):
        standardwebhooks.Webhook(secret).verify(body, headers)


def test_private_targets_are_refused_at_send_time_too(client, admin, app, receiver):
    target = receiver()
    subscribe(client, admin, target.url)  # allowed when made
    new_product(client, admin, "TEA-1")
    drain(app, options=worker.WorkerOptions(**{**FAST.__dict__, "allow_private": False,
                                                  "retry": delivery.Retry(base=3600, cap=3600)}))
    assert target.requests == []
    with get_db(app).session() as session:
        row = session.scalars(select(WebhookDelivery)).one()
        assert row.status == "pending" and row.attempts == 1 and "refused" in row.last_error


def test_two_workers_never_send_the_same_attempt_and_each_event_once(client, admin, app, receiver):
    target = receiver(delay=0.02)
    subscribe(client, admin, target.url)
    for n in range(30):
        new_product(client, admin, f"TEA-{n}")
    settle(app)
    threads = [threading.Thread(target=drain, args=(app, f"w{n}")) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert target.overlaps == 0
    ids = [headers["webhook-id"] for headers, _body in target.requests]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert statuses(app) == [("succeeded", 1)] * 30


def _worker_process(database_url, tmp_path, lease=15):
    env = myapi_env(database_url, tmp_path, MYAPI_WEBHOOK_ALLOW_PRIVATE="true", MYAPI_LOG_LEVEL="INFO")
    log = open(tmp_path / f"worker-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "myapi.cli", "worker", "--poll", "0.1", "--lease", str(lease)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log


def _wait(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_worker_killed_mid_post_loses_nothing_and_two_workers_finish_without_overlap(
        client, admin, app, receiver, database_url, tmp_path):
    target = receiver(delay=0.5)
    hook = subscribe(client, admin, target.url)
    for n in range(12):
        new_product(client, admin, f"TEA-{n}")
    settle(app)
    first, first_log = _worker_process(database_url, tmp_path)
    try:
        assert _wait(lambda: len(target.requests) >= 3 and any(target.in_flight.values()), 30), \
            "the first worker was never seen mid-POST"
        os.kill(first.pid, signal.SIGKILL)  # mid-POST: that delivery's outcome is never recorded
        first.wait(10)
    finally:
        first_log.close()
    assert "delivering" in {status for status, _n in statuses(app)}  # its lease holds it for now
    others = [_worker_process(database_url, tmp_path) for _ in range(2)]
    try:
        assert _wait(lambda: all(status == "succeeded" for status, _n in statuses(app)), 60), statuses(app)
        for process, _log in others:
            process.send_signal(signal.SIGTERM)
        assert [process.wait(20) for process, _log in others] == [0, 0]
    finally:
        for process, log in others:
            if process.poll() is None:
                process.kill()
            log.close()
    ids = [headers["webhook-id"] for headers, _body in target.requests]
    assert len(set(ids)) == 12  # every event arrived
    assert len(ids) == 13  # once each, and the one cut off mid-POST twice (at least once)
    assert target.overlaps == 0  # never two sends of one delivery at once
    for _process, log in others:
        lines = [json.loads(line) for line in Path(log.name).read_text().splitlines() if line.startswith("{")]
        assert lines[-1]["message"] == "worker stopped" and lines[-1]["released"] == 0
    assert client.get(f"{API}/webhooks/{hook['id']}/deliveries?status=pending",
                      headers=admin.headers).get_json()["data"] == []


def test_health_reports_the_oldest_undelivered_events_age(client, admin, app, receiver):
    assert client.get(f"{API}/health").get_json()["webhooks_oldest_undelivered_seconds"] is None
    target = receiver(answer=lambda n, body: 500)
    subscribe(client, admin, target.url)
    new_product(client, admin, "TEA-1")
    # No worker has run: the event is owed all the same (a fleet of dead workers shows here).
    with get_db(app).session() as session:
        session.execute(update(Change).values(date_created=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=2)))
        session.commit()
    waited = client.get(f"{API}/health").get_json()["webhooks_oldest_undelivered_seconds"]
    assert 119 <= waited <= 130
    with get_db(app).session() as session:  # back to now: an event older than the subscription is not its
        session.execute(update(Change).values(date_created=dt.datetime.now(dt.timezone.utc)))
        session.commit()
    drain(app, options=worker.WorkerOptions(**{**FAST.__dict__, "retry": delivery.Retry(base=3600, cap=3600)}))
    with get_db(app).session() as session:
        session.execute(update(WebhookDelivery).values(
            date_created=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)))
        session.commit()
    age = client.get(f"{API}/health").get_json()["webhooks_oldest_undelivered_seconds"]
    assert 299 <= age <= 310


def test_the_example_receiver_verifies_and_prints_each_event_once(client, admin, app, tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = subscribe(client, admin, f"http://127.0.0.1:{port}/hook")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MYAPI_")}, "WEBHOOK_SECRET": hook["secret"]}
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "webhook_receiver.py")
    process = subprocess.Popen([sys.executable, example, "--port", str(port)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert "listening" in process.stderr.readline()
        new_product(client, admin, "TEA-1")
        drain(app)
        assert statuses(app) == [("succeeded", 1)]
        # Sent again (a worker that died after the POST): acknowledged, not printed twice.
        with get_db(app).session() as session:
            session.execute(update(WebhookDelivery).values(status="pending",
                                                           next_attempt_at=dt.datetime.now(dt.timezone.utc)))
            session.commit()
        drain(app)
        assert statuses(app) == [("succeeded", 2)]
        forged = delivery.send(delivery.http_session(True), f"http://127.0.0.1:{port}/hook",
                               {"webhook-id": "evt_1", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"}, "{}")
        assert forged.status_code == 400
    finally:
        process.terminate()
        out, _err = process.communicate(timeout=10)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["type"] for line in lines] == ["product.created"] and lines[0]["data"]["sku"] == "TEA-1"


def test_retry_is_409_while_sending_and_404_for_another_webhooks_delivery(client, admin, app, receiver):
    target = receiver()
    hook = subscribe(client, admin, target.url)
    other = subscribe(client, admin, target.url, events=["order.created"])
    new_product(client, admin, "TEA-1")
    settle(app)
    with get_db(app).session(write=True) as session:
        delivery.fan_out(session, lambda event: {"id": event.id})
        claimed = delivery.claim(session, "w1", lease=dt.timedelta(seconds=30))
        session.commit()
        delivery_id = claimed[0].id
    path = f"{API}/webhooks/{hook['id']}/deliveries/{delivery_id}/retry"
    assert client.post(path, headers=admin.headers).status_code == 409
    assert client.post(f"{API}/webhooks/{other['id']}/deliveries/{delivery_id}/retry",
                       headers=admin.headers).status_code == 404
    assert client.get(f"{API}/webhooks/999/deliveries", headers=admin.headers).status_code == 404
    with get_db(app).session(write=True) as session:
        assert delivery.release(session, "w1") == 1
        session.commit()
    assert statuses(app) == [("pending", 0)]


def test_a_receiver_that_answers_a_byte_at_a_time_is_cut_off_at_the_timeout():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def dribble():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)  # each byte well within the read timeout

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    started = time.monotonic()
    outcome = delivery.send(delivery.http_session(True), f"http://127.0.0.1:{listener.getsockname()[1]}/",
                            {"webhook-id": "evt_1"}, "{}", timeout=1.5)
    stop.set()
    listener.close()
    assert time.monotonic() - started < 4
    assert outcome.status_code is None and "no answer within 1.5 s" in outcome.error
