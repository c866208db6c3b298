"""SQLite's writers: a write transaction waiting for the lock asks again in short steps (myapi/db.py).

SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries and is never
woken when the lock is freed; a write transaction here asks again at most
every millisecond for PROMPT_WAIT, then leaves the waiting to SQLite (its
busy_timeout, and its error: a 503). Another connection holds the lock with a
raw ``BEGIN IMMEDIATE``, as any other writer (a worker process, the CLI) would.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from conftest import PG_URL
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from myapi import db as db_module
from myapi.db import get_db
from myapi.models import Product

pytestmark = pytest.mark.skipif(bool(PG_URL), reason="SQLite's write lock")

PRODUCT = {"sku": "LOCK-1", "name": "Lock", "category": "tea", "price": "1.50"}


@pytest.fixture
def lock_holder(app):
    """A connection of its own that takes SQLite's write lock (``hold()``) and frees it (``release()``)."""
    path = make_url(get_db(app).engine.url).database
    connection = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)

    class Holder:
        def hold(self):
            connection.execute("BEGIN IMMEDIATE")

        def release(self):
            if connection.in_transaction:
                connection.execute("ROLLBACK")

    holder = Holder()
    yield holder
    holder.release()
    connection.close()


@pytest.fixture
def pauses(monkeypatch):
    """Every pause the prompt wait takes between its tries, in seconds."""
    taken: list[float] = []

    def sleep(seconds: float) -> None:
        taken.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(db_module, "sleep", sleep)
    return taken


def busy_timeout(app) -> int:
    with get_db(app).engine.connect() as connection:
        return connection.exec_driver_sql("PRAGMA busy_timeout").scalar()


def test_a_queued_write_asks_again_every_millisecond_at_most_and_writes(app, client, admin, db_session,
                                                                        lock_holder, pauses):
    lock_holder.hold()
    answers = []
    writer = threading.Thread(target=lambda: answers.append(client.post("/api/v1/products", json=PRODUCT,
                                                                        headers=admin.headers)))
    writer.start()
    deadline = time.monotonic() + 10
    while len(pauses) < 5 and time.monotonic() < deadline:  # the writer is queued, asking again
        time.sleep(0.001)
    lock_holder.release()
    writer.join(timeout=30)
    assert answers and answers[0].status_code == 201, answers and answers[0].get_json()
    assert db_session.scalar(select(func.count()).select_from(Product).where(Product.sku == "LOCK-1")) == 1
    assert len(pauses) >= 5 and max(pauses) <= db_module._LONGEST_PAUSE
    assert busy_timeout(app) == db_module.BUSY_TIMEOUT_MS  # the connection's own timeout is back


def test_a_lock_held_past_the_prompt_wait_is_sqlites_to_wait_for_then_a_503(app, client, admin, db_session,
                                                                            lock_holder, pauses, monkeypatch):
    monkeypatch.setattr(db_module, "PROMPT_WAIT", 0.05)
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 200)  # SQLite's own wait, after the prompt one
    lock_holder.hold()
    response = client.post("/api/v1/products", json=PRODUCT, headers=admin.headers)
    lock_holder.release()
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert pauses and max(pauses) <= db_module._LONGEST_PAUSE
    assert db_session.scalar(select(func.count()).select_from(Product)) == 0
    assert busy_timeout(app) == 200


def test_an_error_other_than_a_taken_lock_is_not_waited_on(app, monkeypatch, pauses):
    """Only "database is locked" is asked again: any other error goes to SQLite's BEGIN and is raised from there."""
    engine = get_db(app).write_engine
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        driver.execute("BEGIN")  # a transaction already open: BEGIN IMMEDIATE fails at once, not locked
        assert db_module._begin_immediate_promptly(driver) is False
        assert pauses == []
        driver.execute("ROLLBACK")
