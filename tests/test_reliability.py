"""Issue 17, through real ``myapi serve`` processes (gunicorn) on the test database.

1. A body over its limit is a 413 problem+json and writes nothing, whatever
   its framing (``Content-Length`` or ``Transfer-Encoding: chunked``) and
   whichever reader takes it: JSON, urlencoded and multipart forms, the
   Idempotency-Key digest, the CSV import (text/csv and multipart). A body
   of exactly the limit is accepted.
2. What gunicorn refuses itself (request line, headers, version, method,
   framing) is answered in problem+json, by the gthread and the sync worker,
   and every refusal stays a refusal (the smuggling probe included).
3. An Idempotency-Key whose owning worker was killed (SIGKILL) mid-request
   is free at once: the next retry places the order, exactly once; while the
   owner lives, a retry hears 409 and the Python client waits for the answer.
   Underneath, the key's owner lock on this database: one holder per key
   (two requests of one process exclude each other too), gone as soon as
   its holder's process is killed.

Item 3 needs a request that is reliably still running when its worker is
killed. The server is started through a few lines of test-only code (the
``entry`` of tools.servers.myapi_server) that wrap
``services.orders.place_order``: an order whose shipping address is
``pause-before:NAME`` or ``pause-after:NAME`` stops before or after the real
placement (which has then written the order, uncommitted) until the test
creates ``NAME.go``, after writing its worker's pid to ``NAME.paused``. Only
the first such order stops; its retries run straight through. Nothing in
myapi knows about it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import text

from myapi.client import Client
from myapi.common.auth import hash_password, issue_token
from myapi.db import get_db, make_engine
from myapi.services import idempotency
from myapi.services import users as users_service

API = "/api/v1"
PROBLEM = "application/problem+json"
IN_PROGRESS = "urn:myapi:problem:idempotency-key-in-progress"
TABLES = ("users", "products", "orders", "order_items", "idempotency_keys")
TIMEOUT = 30


@pytest.fixture
def db(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def row_counts(engine) -> dict[str, int]:
    return {table: scalar(engine, f"SELECT COUNT(*) FROM {table}") for table in TABLES}


def bearer(app, username: str, role: str = "customer") -> dict[str, str]:
    """A user made in the database, and the Authorization header of a fresh token."""
    with app.app_context(), get_db(app).session(write=True) as session:
        user = users_service.create_user(session, username=username, email=f"{username}@example.com",
                                         password_hash=hash_password("correct-horse-battery"), role=role)
        secret, _ = issue_token(session, user)
        session.commit()
    return {"Authorization": f"Bearer {secret}"}


def create_product(base: str, admin: dict, stock: int, sku: str = "REL-1") -> int:
    response = requests.post(f"{base}{API}/products", headers=admin, timeout=TIMEOUT, json={
        "sku": sku, "name": "Reliable widget", "category": "widgets", "price": "2.50", "stock": stock})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def assert_problem(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status and body["request_id"]
    return body


# -- 1. bodies over their limit ----------------------------------------------------

LIMIT = 1024 * 1024  # MAX_CONTENT_LENGTH's default
IMPORT_LIMIT = 1024 * 1024  # MYAPI_MAX_IMPORT_BYTES on these servers (256 MiB by default)
CSV_HEADER = b"sku,name,category,price,stock\r\n"


def padded_json(document: dict, size: int) -> bytes:
    """``document`` as JSON followed by spaces (valid JSON still), ``size`` bytes in all."""
    encoded = json.dumps(document).encode()
    return encoded + b" " * (size - len(encoded))


def padded_form(fields: dict, size: int) -> bytes:
    """A urlencoded form followed by ``&`` (empty pairs, ignored), ``size`` bytes in all."""
    encoded = urlencode(fields).encode()
    return encoded + b"&" * (size - len(encoded))


def multipart(fields: dict, file_part: bytes | None, boundary: str = "myapi-issue-17") -> tuple[bytes, str]:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    if file_part is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="products.csv"\r\n'
                     f"Content-Type: text/csv\r\n\r\n".encode() + file_part + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def catalogue_csv(size: int, prefix: str) -> bytes:
    """Valid product rows (tens of thousands: many import batches), then blank lines, ``size`` bytes in all."""
    rows = [CSV_HEADER]
    length = len(CSV_HEADER)
    number = 0
    while True:
        row = f"{prefix}-{number:06d},Widget {number},widgets,1.00,5\r\n".encode()
        if length + len(row) > size - 2:
            break
        rows.append(row)
        length += len(row)
        number += 1
    return b"".join(rows) + b"\n" * (size - length)  # blank lines are skipped


def chunked(body: bytes, size: int = 64 * 1024):
    """The body as a generator: requests sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def post(url: str, body: bytes, content_type: str, framing: str, headers: dict | None = None) -> requests.Response:
    data = chunked(body) if framing == "chunked" else body
    response = requests.post(url, data=data, timeout=TIMEOUT, headers={"Content-Type": content_type, **(headers or {})})
    sent_chunked = response.request.headers.get("Transfer-Encoding") == "chunked"
    assert sent_chunked == (framing == "chunked"), response.request.headers
    return response


def signup(name: str) -> dict:
    return {"username": name, "email": f"{name}@example.com", "password": "a-long-password"}


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_bodies_over_their_limit_are_413_and_write_nothing(start_server, app, db, framing):
    server = start_server(workers=2, env={"MYAPI_MAX_IMPORT_BYTES": str(IMPORT_LIMIT)})
    base = server.url + API
    admin = bearer(app, "boss", role="admin")
    customer = bearer(app, "buyer")
    product_id = create_product(server.url, admin, stock=10)
    order = {"items": [{"product_id": product_id, "quantity": 1}], "shipping_address": "1 Limit Lane"}
    csv_over = catalogue_csv(IMPORT_LIMIT + 1, "OVER")
    form_over, form_type = multipart(signup("multi"), b"x" * (LIMIT + 1))
    keyed = {**customer, "Idempotency-Key": f"too-big-{framing}"}
    too_big = {  # name: (path, body, content type, headers)
        "JSON sign-up, one byte over": ("/users", padded_json(signup("over1"), LIMIT + 1), "application/json", {}),
        "JSON sign-up + 2 MiB of spaces": ("/users", padded_json(signup("over2"), LIMIT + 2 * 1024 * 1024),
                                           "application/json", {}),
        "5 MB JSON": ("/users", b'{"username": "' + b"x" * 5_000_000 + b'"}', "application/json", {}),
        "urlencoded sign-up, one byte over": ("/users", padded_form(signup("form1"), LIMIT + 1),
                                              "application/x-www-form-urlencoded", {}),
        "multipart sign-up with a big part": ("/users", form_over, form_type, {}),
        "keyed order (the digest reads the body)": ("/orders", padded_json(order, LIMIT + 1), "application/json",
                                                    keyed),
        "CSV import, one byte over": ("/products/import", csv_over, "text/csv", admin),
        "multipart CSV import": ("/products/import", *multipart({}, csv_over), admin),
        "keyed CSV import": ("/products/import", csv_over, "text/csv",
                             {**admin, "Idempotency-Key": f"import-{framing}"}),
    }
    before = row_counts(db)
    for name, (path, body, content_type, headers) in too_big.items():
        response = post(base + path, body, content_type, framing, headers)
        problem = assert_problem(response, 413)
        assert str(IMPORT_LIMIT if path.endswith("import") else LIMIT) in problem["detail"], (name, problem)
        assert row_counts(db) == before, name

    # Exactly at the limit is not over it.
    exact = post(base + "/users", padded_json(signup("exact"), LIMIT), "application/json", framing)
    assert exact.status_code == 201, exact.text[:300]
    form = post(base + "/users", padded_form(signup("exactform"), LIMIT), "application/x-www-form-urlencoded",
                framing)
    assert form.status_code == 201, form.text[:300]  # one limit for every body (no 500,000-byte form limit)
    imported = post(base + "/products/import", catalogue_csv(IMPORT_LIMIT, "EXACT"), "text/csv", framing, admin)
    assert imported.status_code == 200, imported.text[:300]
    assert row_counts(db)["products"] == before["products"] + imported.json()["created"]


def test_a_body_the_server_cannot_deframe_is_400_not_500(start_server, db):
    """A malformed chunk size reaches the app as gunicorn's own exception: a 400 problem, nothing written."""
    server = start_server(workers=1)
    before = row_counts(db)
    body = json.dumps(signup("badchunk")).encode()
    status, headers, answer = raw_exchange(server.port, (
        b"POST /api/v1/users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(body):x}".encode() + b"\r\n" + body + b"\r\nzz\r\n\r\n"))
    assert status == 400 and headers["content-type"] == PROBLEM, answer
    assert "chunk" in json.loads(answer)["detail"]
    assert row_counts(db) == before


# -- 2. what gunicorn refuses itself -------------------------------------------------

HOST = b"Host: localhost\r\n"
PROBES = {  # name: (raw request, the status gunicorn refuses it with)
    "request line of 10 KB": (b"GET /api/v1/health?q=" + b"a" * 10_000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414),
    "header of 10 KB": (b"GET /api/v1/health HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 10_000 + b"\r\n\r\n", 431),
    "200 headers": (b"GET /api/v1/health HTTP/1.1\r\n" + HOST
                    + b"".join(b"X-H%d: a\r\n" % i for i in range(200)) + b"\r\n", 431),
    "garbage request line": (b"GARBAGE\r\n\r\n", 400),
    "invalid method": (b"G@T /api/v1/health HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "invalid header name": (b"GET /api/v1/health HTTP/1.1\r\n" + HOST + b"Bad Name: x\r\n\r\n", 400),
    "HTTP/2.0 request line": (b"GET /api/v1/health HTTP/2.0\r\n" + HOST + b"\r\n", 400),
    "HTTP/2 connection preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    "HTTP/0.9 request": (b"GET /api/v1/health\r\n\r\n", 400),
    "Content-Length: abc": (b"POST /api/v1/users HTTP/1.1\r\n" + HOST + b"Content-Length: abc\r\n\r\n", 400),
    "two Content-Lengths": (b"POST /api/v1/users HTTP/1.1\r\n" + HOST
                            + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
    "control character in a header": (b"GET /api/v1/health HTTP/1.1\r\n" + HOST + b"X-A: a\x01b\r\n\r\n", 400),
    "obsolete line folding": (b"GET /api/v1/health HTTP/1.1\r\n" + HOST + b"X-A: a\r\n b\r\n\r\n", 400),
    "Transfer-Encoding: gzip": (b"POST /api/v1/users HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    "Expect: 200-ok": (b"POST /api/v1/users HTTP/1.1\r\n" + HOST + b"Expect: 200-ok\r\nContent-Length: 0\r\n\r\n",
                       417),
}


def raw_exchange(port: int, request: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; the one answer's status, headers and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may refuse before reading it all
            sock.sendall(request)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), received[:300]
    assert received.count(b"HTTP/1.1 ") == 1 + body.count(b"HTTP/1.1 "), received[:500]
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    assert len(body) == length, ("a second answer or a truncated one", received[:500])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("threads", [2, 1], ids=["gthread", "sync"])
def test_protocol_errors_are_problem_json_and_stay_refused(start_server, db, threads):
    server = start_server(workers=1, threads=threads)
    failures = []
    for name, (request, status) in PROBES.items():
        try:
            got, headers, body = raw_exchange(server.port, request)  # reads until the server closes
            problem = json.loads(body)
            assert (got, headers["content-type"], problem["status"]) == (status, PROBLEM, status), body
            assert headers["connection"] == "close" and problem["request_id"] == headers["x-request-id"]
            assert problem["type"] == "about:blank" and problem["title"] and problem["detail"]
        except (AssertionError, KeyError, ValueError) as error:
            failures.append((name, repr(error)[:300]))
    assert failures == []
    assert requests.get(server.url + API + "/health", timeout=TIMEOUT).status_code == 200  # the worker serves on


@pytest.mark.parametrize("threads", [2, 1], ids=["gthread", "sync"])
def test_the_smuggling_probe_is_refused_whole(start_server, db, threads):
    """Content-Length with Transfer-Encoding: one 400 problem, and the request hidden behind it never runs."""
    server = start_server(workers=1, threads=threads)
    hidden_body = json.dumps(signup("smuggled")).encode()
    hidden = (b"POST /api/v1/users HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
              + f"Content-Length: {len(hidden_body)}\r\n\r\n".encode() + hidden_body)
    before = row_counts(db)
    for probe in (
        b"POST /api/v1/users HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n" + hidden,
        b"POST /api/v1/users HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"0\r\n\r\n" + hidden,
    ):
        status, headers, body = raw_exchange(server.port, probe)
        assert (status, headers["content-type"], headers["connection"]) == (400, PROBLEM, "close"), body
        assert json.loads(body)["status"] == 400
    assert row_counts(db) == before


# -- 3. an Idempotency-Key whose owner died ------------------------------------------

PAUSE_ORDERS = """
import os
import time
from pathlib import Path

from myapi.services import orders

signals = Path(os.environ["ISSUE17_PAUSE_DIR"])
real_place_order = orders.place_order


def place_order(session, user, lines, shipping_address):
    where, _, name = shipping_address.partition(":")
    if where not in ("pause-before", "pause-after"):
        return real_place_order(session, user, lines, shipping_address)
    order = real_place_order(session, user, lines, shipping_address) if where == "pause-after" else None
    try:
        marker = os.open(signals / f"{name}.paused", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # a retry of the paused order: straight through
        pass
    else:
        os.write(marker, str(os.getpid()).encode())
        os.close(marker)
        while not (signals / f"{name}.go").exists():
            time.sleep(0.005)
    return order if order is not None else real_place_order(session, user, lines, shipping_address)


orders.place_order = place_order

from myapi.cli import main

main()
"""


def pausing_server(start_server, signals: Path):
    return start_server(workers=2, env={"ISSUE17_PAUSE_DIR": str(signals)}, entry=["-c", PAUSE_ORDERS])


def paused_worker(signals: Path, name: str, timeout: float = 20) -> int:
    """The pid of the worker whose order ``name`` is paused, once it is."""
    marker = signals / f"{name}.paused"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists() and (pid := marker.read_text()):
            return int(pid)
        time.sleep(0.005)
    raise AssertionError(f"order {name} never reached its pause")


def kill_and_wait(pid: int) -> float:
    """SIGKILL ``pid`` and wait until it is gone (its sockets closed); the time of the kill."""
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    stat = Path(f"/proc/{pid}/stat")
    while time.monotonic() - killed_at < 5:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.001)
    return killed_at


def in_thread(call):
    """Run ``call`` on a thread; ``result()`` joins it and returns its value (or raises its error)."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to result()
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result(timeout: float = TIMEOUT):
        thread.join(timeout)
        assert not thread.is_alive(), "still running"
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    result.thread = thread
    return result


HOLD_A_LOCK = """
import sys
import time

from sqlalchemy.orm import Session

from myapi.db import make_engine
from myapi.services import idempotency

session = Session(make_engine(sys.argv[1]))
assert idempotency.owner_lock(session, scope="user:1", key="held").acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_an_owner_lock_belongs_to_one_request_and_dies_with_its_process(app, database_url):
    """The primitive under item 3, on this database: a lock per key, per request (not per process or
    connection), dropped by the database or the kernel the moment its holder is killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_A_LOCK, database_url], stdout=subprocess.PIPE)  # noqa: S603
    try:
        assert holder.stdout.readline() == b"held\n"
        database = get_db(app)
        with database.session(write=True) as first, database.session(write=True) as second:
            assert not idempotency.owner_lock(first, scope="user:1", key="held").acquire()  # another process's
            mine = idempotency.owner_lock(first, scope="user:1", key="mine")
            assert mine.acquire()  # another key is another lock
            assert not idempotency.owner_lock(second, scope="user:1", key="mine").acquire(wait=0.05)  # 2 requests
            mine.release()
            first.rollback()  # the request is over (PostgreSQL: the lock was its transaction's)
            assert idempotency.owner_lock(second, scope="user:1", key="mine").acquire()
            second.rollback()

            killed_at = kill_and_wait(holder.pid)
            assert idempotency.owner_lock(first, scope="user:1", key="held").acquire(wait=1.0)
            print(f"\nkill -9 of a lock's holder to the lock taken: {(time.monotonic() - killed_at) * 1000:.0f} ms")
            first.rollback()
    finally:
        holder.kill()
        holder.wait(10)


@pytest.mark.parametrize("pause", ["after", "before"], ids=["order-written-not-committed", "claimed-not-started"])
def test_a_worker_killed_holding_a_key_frees_it_at_once(start_server, app, db, tmp_path, pause):
    server = pausing_server(start_server, tmp_path)
    admin, customer = bearer(app, "boss", role="admin"), bearer(app, "buyer")
    product_id = create_product(server.url, admin, stock=5)
    body = {"items": [{"product_id": product_id, "quantity": 2}], "shipping_address": f"pause-{pause}:killed"}
    headers = {**customer, "Idempotency-Key": f"order-killed-{pause}"}
    url = f"{server.url}{API}/orders"

    first = in_thread(lambda: requests.post(url, json=body, headers=headers, timeout=TIMEOUT))
    pid = paused_worker(tmp_path, "killed")
    assert scalar(db, "SELECT COUNT(*) FROM idempotency_keys WHERE status_code IS NULL") == 1  # claimed
    killed_at = kill_and_wait(pid)
    retry = requests.post(url, json=body, headers=headers, timeout=TIMEOUT)
    elapsed = time.monotonic() - killed_at
    print(f"\nkill -9 of the owner ({pause}) to a placed order: {elapsed * 1000:.0f} ms")

    assert retry.status_code == 201, retry.text  # the very next retry: no 409, no waiting period
    assert "Idempotent-Replayed" not in retry.headers
    assert elapsed < 1.0
    with pytest.raises(requests.ConnectionError):
        first()  # the killed attempt never got an answer
    assert scalar(db, "SELECT COUNT(*) FROM orders") == 1
    assert scalar(db, "SELECT stock FROM products WHERE id = :id", id=product_id) == 3  # taken once
    assert scalar(db, "SELECT status_code FROM idempotency_keys") == 201
    again = requests.post(url, json=body, headers=headers, timeout=TIMEOUT)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == retry.content


def test_the_client_places_an_order_whose_worker_was_killed(start_server, app, db, tmp_path):
    """myapi.client's own retry of the dropped POST takes the key over: the script sees its order."""
    server = pausing_server(start_server, tmp_path)
    admin, customer = bearer(app, "boss", role="admin"), bearer(app, "buyer")
    product_id = create_product(server.url, admin, stock=5)
    client = Client(server.url, customer["Authorization"].split()[1], timeout=TIMEOUT)

    placed = in_thread(lambda: client.place_order([(product_id, 2)], "pause-after:client",
                                                  idempotency_key="client-killed-1"))
    killed_at = kill_and_wait(paused_worker(tmp_path, "client"))
    order = placed()
    elapsed = time.monotonic() - killed_at
    print(f"\nkill -9 of the owner to the client's placed order: {elapsed * 1000:.0f} ms")
    assert order["status"] == "pending" and order["items"][0]["quantity"] == 2
    assert elapsed < 1.0
    assert scalar(db, "SELECT COUNT(*) FROM orders") == 1
    assert scalar(db, "SELECT stock FROM products WHERE id = :id", id=product_id) == 3


def test_a_live_owner_keeps_its_key_and_the_client_waits_for_its_answer(start_server, app, db, tmp_path):
    server = pausing_server(start_server, tmp_path)
    admin, customer = bearer(app, "boss", role="admin"), bearer(app, "buyer")
    product_id = create_product(server.url, admin, stock=5)
    body = {"items": [{"product_id": product_id, "quantity": 2}], "shipping_address": "pause-before:live"}
    headers = {**customer, "Idempotency-Key": "live-owner-1"}
    url = f"{server.url}{API}/orders"

    first = in_thread(lambda: requests.post(url, json=body, headers=headers, timeout=TIMEOUT))
    paused_worker(tmp_path, "live")
    duplicate = requests.post(url, json=body, headers=headers, timeout=TIMEOUT)
    assert assert_problem(duplicate, 409)["type"] == IN_PROGRESS
    client = Client(server.url, customer["Authorization"].split()[1], timeout=TIMEOUT)
    waiting = in_thread(lambda: client.place_order([(product_id, 2)], "pause-before:live",
                                                   idempotency_key="live-owner-1"))
    time.sleep(1.0)
    assert waiting.thread.is_alive()  # the client heard 409 and is waiting, not failing
    (tmp_path / "live.go").touch()

    original = first()
    assert original.status_code == 201 and "Idempotent-Replayed" not in original.headers
    assert waiting()["id"] == original.json()["id"]  # the client got the owner's answer
    assert scalar(db, "SELECT COUNT(*) FROM orders") == 1
    assert scalar(db, "SELECT stock FROM products WHERE id = :id", id=product_id) == 3
