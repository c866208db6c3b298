"""``myapi worker`` (DESIGN §11): deliver events to webhooks until told to stop.

Each step fans out new events (services/webhook_delivery.fan_out), claims
one due delivery, commits the claim, POSTs it, and commits the outcome; the
steps are services/webhook_delivery.py's, the transactions are this loop's.
Any number of workers may run, on any hosts (PostgreSQL; SQLite: one). A
stop (SIGTERM, SIGINT) lets the POST under way finish and be recorded and
releases anything still claimed. JSON log lines on stderr (logger
``myapi.worker``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from sqlalchemy.orm import Session

from .common.event_fields import delivery_body
from .services import webhook_delivery as delivery

log = logging.getLogger("myapi.worker")


@dataclass
class WorkerOptions:
    lease: dt.timedelta = dt.timedelta(seconds=60)  # > the 10 s timeout: one POST per claim
    poll: float = 1.0  # seconds to wait when there is nothing to do
    fan_out_limit: int = 500
    timeout: float = delivery.TIMEOUT
    retry: delivery.Retry = field(default_factory=delivery.Retry)
    max_age: dt.timedelta = delivery.MAX_AGE
    allow_private: bool = False


def work_once(sessions: Callable[[], Session], worker: str, options: WorkerOptions, http: requests.Session) -> bool:
    """Fan out, then claim and send one delivery; whether there was anything to do.

    ``sessions()`` opens a write session (BEGIN IMMEDIATE on SQLite).
    """
    with sessions() as session:
        fanned = delivery.fan_out(session, delivery_body, limit=options.fan_out_limit)
        session.commit()
    if fanned:
        log.info("fanned out", extra={"fields": {"worker": worker, "deliveries": fanned}})
    with sessions() as session:
        claimed = delivery.claim(session, worker, lease=options.lease)
        jobs = [(item.id, item.webhook_id, item.attempts, *delivery.target_of(session, item)) for item in claimed]
        session.commit()  # the claim is visible to every other worker before the POST
    for delivery_id, webhook_id, attempt, url, headers, body in jobs:
        outcome = delivery.send(http, url, headers, body, timeout=options.timeout)
        with sessions() as session:
            status = delivery.record(session, delivery_id, worker, outcome, retry=options.retry,
                                     max_age=options.max_age)
            session.commit()
        log.info("delivery attempt", extra={"fields": {
            "worker": worker, "delivery": delivery_id, "webhook": webhook_id, "attempt": attempt,
            "status_code": outcome.status_code, "error": outcome.error, "ms": outcome.elapsed_ms,
            "outcome": status or "lease lost"}})
    return bool(fanned or jobs)


def run(sessions: Callable[[], Session], worker: str, options: WorkerOptions, stopping: threading.Event) -> None:
    """Work until ``stopping`` is set; then nothing stays claimed by this worker."""
    http = delivery.http_session(options.allow_private)
    log.info("worker started", extra={"fields": {"worker": worker}})
    released = 0
    try:
        while not stopping.is_set():
            try:
                busy = work_once(sessions, worker, options, http)
            except Exception:  # a database restart, a lost connection: log, wait, go on
                log.exception("worker step failed", extra={"fields": {"worker": worker}})
                busy = False
            if not busy:
                stopping.wait(options.poll)
    finally:
        with sessions() as session:
            released = delivery.release(session, worker)
            session.commit()
        http.close()
        log.info("worker stopped", extra={"fields": {"worker": worker, "released": released}})
