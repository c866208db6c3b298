"""Delivering events to webhooks (DESIGN §11): fan-out, claims, signed POSTs, retries. No Flask.

The database is the queue (docs/decisions.md says why): events are the
``changes`` rows their writes committed with (the outbox), and

1. **Fan-out** (``fan_out``) turns the events past the ``webhook_dispatch``
   watermark into ``webhook_deliveries`` rows, one per event and matching
   active subscription, and moves the watermark, in one transaction, reading
   through ``changes.read_changes`` (the feed's order and running horizon:
   no event is skipped whatever the commit order). One worker fans out at a
   time (the watermark row is locked; on PostgreSQL ``SKIP LOCKED``: the
   others go on delivering). A delivery's body is fixed then (the item as it
   is at fan-out), so every retry is byte-identical.
2. **Claim** (``claim``): a due delivery (``pending`` and
   ``next_attempt_at`` passed, or ``delivering`` with its lease expired: its
   worker died) whose subscription is active and whose entity has no
   earlier delivery still open for that subscription (per-entity order) is
   taken with ``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite's
   ``BEGIN IMMEDIATE`` serialises the claim) and marked ``delivering`` until
   ``lease_expires_at``, attempts + 1, and committed before the POST.
3. **Send** (``send``) outside any transaction: signed with
   ``standardwebhooks`` (every valid secret: two during a rotation), 10 s
   timeout, no redirects, no proxies from the environment, at most
   ``MAX_RESPONSE_BYTES`` of the answer read, the target's addresses checked
   again at connect time (services/webhook_targets.py).
4. **Record** (``record``): a 2xx ends it (``succeeded``); anything else is
   retried after an exponential backoff with jitter until ``MAX_AGE`` (24 h)
   after the event, then ``failed``. Recorded only if this worker still
   holds the lease (a worker that outlived its lease changes nothing).

At least once: a worker killed between the POST and ``record`` leaves a
``delivering`` row whose lease expires and another worker sends it again
(the same ``webhook-id``: receivers deduplicate on it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import requests
import standardwebhooks
from requests.adapters import HTTPAdapter
from sqlalchemy import and_, exists, func, or_, select, tuple_, update
from sqlalchemy.orm import Session, aliased
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util import connection as urllib3_connection

from ..models import Change, Webhook, WebhookDelivery, WebhookDispatch, utcnow
from . import changes, events
from .changes import ChangesExpired, Watermark
from .errors import Conflict, NotFound
from .query import FIRST_PAGE, Page, Window, apply_sort, paginate, sort_keys
from .webhook_targets import TargetRefused, allowed_addresses
from .webhooks import signing_secrets

log = logging.getLogger("myapi.worker")

TIMEOUT = 10.0  # seconds, connect and each read
MAX_RESPONSE_BYTES = 64 * 1024  # of a receiver's answer: read (for the log), never more
MAX_AGE = dt.timedelta(hours=24)  # retried until then after the event, then failed
OPEN = ("pending", "delivering")
USER_AGENT = "myapi-webhooks/1"


@dataclass(frozen=True)
class Retry:
    """Exponential backoff with "equal jitter": the n-th retry waits between half and all of
    ``min(cap, base * 2**(n-1))``, so receivers that failed together are not hit together again."""

    base: float = 5.0
    cap: float = 3600.0

    def delay(self, attempts: int, rng: random.Random = random._inst) -> dt.timedelta:  # noqa: SLF001
        ceiling = min(self.cap, self.base * 2 ** max(attempts - 1, 0))
        return dt.timedelta(seconds=ceiling / 2 + rng.uniform(0, ceiling / 2))  # noqa: S311 (not a secret)


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def db_now(session: Session) -> dt.datetime:
    """The time leases and retries are reckoned in: the database's clock on PostgreSQL, so that
    workers on hosts whose clocks differ agree on when a lease ends (SQLite: one host)."""
    if _postgresql(session):
        return session.scalar(select(func.clock_timestamp()))
    return utcnow()


# -- 1. fan-out ------------------------------------------------------------------------


def fan_out(session: Session, render: Callable[[events.Event], dict], *, limit: int = 500) -> int:
    """Turn up to ``limit`` events past the dispatch watermark into deliveries; how many deliveries.

    ``render`` makes an event's body (common/event_fields.delivery_body: the
    API's own representation of the item). The caller commits. 0 (and
    nothing changed) when another worker holds the watermark (PostgreSQL) or
    nothing is new.
    """
    stmt = select(WebhookDispatch).where(WebhookDispatch.id == 1)
    if _postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    dispatch = session.scalars(stmt).first()
    if dispatch is None:
        return 0
    since = Watermark(dispatch.txid, dispatch.change_id)
    try:
        rows, next_since = changes.read_changes(session, since, limit, events.types_filter())
    except ChangesExpired:
        # The dispatch fell further behind than MYAPI_CHANGES_RETENTION (no worker ran for that long):
        # the pruned events are lost to webhooks. Say so loudly and go on from what is kept.
        horizon = changes.watermark(session)
        log.error("webhook fan-out fell behind the change retention: events were pruned undelivered",
                  extra={"fields": {"since": str(since), "resumed_at": str(horizon)}})
        dispatch.txid, dispatch.change_id = horizon.txid, horizon.change_id
        return 0
    webhooks = session.scalars(select(Webhook).where(Webhook.is_active.is_(True)).order_by(Webhook.id)).all()
    count = 0
    now = db_now(session)
    if rows and webhooks:
        for event in events.to_events(session, rows):
            # A subscription gets the events from its creation on (those before it were not its events).
            wanting = [webhook for webhook in webhooks
                       if event.type in webhook.event_list and event.created >= webhook.date_created]
            if not wanting:
                continue
            payload = orjson.dumps(render(event)).decode()
            change_id = event.seq.change_id
            for webhook in wanting:
                session.add(WebhookDelivery(webhook_id=webhook.id, change_id=change_id, event_type=event.type,
                                            entity=event.entity, entity_id=event.entity_id, payload=payload,
                                            status="pending", attempts=0, next_attempt_at=now,
                                            date_created=now))
                count += 1
    dispatch.txid, dispatch.change_id = next_since.txid, next_since.change_id
    session.flush()
    return count


# -- 2. claim ----------------------------------------------------------------------------


def claim(session: Session, worker: str, *, lease: dt.timedelta, limit: int = 1,
          now: dt.datetime | None = None) -> list[WebhookDelivery]:
    """Take up to ``limit`` due deliveries for ``worker`` until ``now + lease``; the caller commits
    (at once: the claim must be visible before the POST)."""
    now = now or db_now(session)
    delivery = WebhookDelivery
    earlier = aliased(WebhookDelivery)
    blocked = exists().where(earlier.webhook_id == delivery.webhook_id, earlier.entity == delivery.entity,
                             earlier.entity_id == delivery.entity_id, earlier.id < delivery.id,
                             earlier.status.in_(OPEN))
    active = exists().where(Webhook.id == delivery.webhook_id, Webhook.is_active.is_(True))
    due = or_(and_(delivery.status == "pending", delivery.next_attempt_at <= now),
              and_(delivery.status == "delivering", delivery.lease_expires_at <= now))
    stmt = select(delivery).where(due, active, ~blocked).order_by(delivery.next_attempt_at, delivery.id).limit(limit)
    if _postgresql(session):
        stmt = stmt.with_for_update(of=delivery, skip_locked=True)
    claimed = session.scalars(stmt).all()
    for item in claimed:
        item.status = "delivering"
        item.leased_by = worker
        item.lease_expires_at = now + lease
        item.attempts += 1
        item.last_attempt_at = now
    session.flush()
    return list(claimed)


# -- 3. send -----------------------------------------------------------------------------


@dataclass
class Outcome:
    status_code: int | None = None
    error: str | None = None
    elapsed_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def sign(secrets_: list[str], msg_id: str, timestamp: dt.datetime, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,…`` per secret, space-separated (Standard Webhooks)."""
    return " ".join(standardwebhooks.Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets_)


def target_of(session: Session, delivery: WebhookDelivery) -> tuple[str, dict[str, str], str]:
    """Where and what to POST for a claimed delivery: the url, the signed headers, the body."""
    webhook = session.get(Webhook, delivery.webhook_id)
    return webhook.url, headers_for(delivery, webhook), delivery.payload


def headers_for(delivery: WebhookDelivery, webhook: Webhook, now: dt.datetime | None = None) -> dict[str, str]:
    now = (now or utcnow()).replace(microsecond=0)
    msg_id = events.event_id(delivery.change_id)
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": sign(signing_secrets(webhook, now), msg_id, now, delivery.payload)}


class _Deadline:
    """The sockets one ``send`` opened, shut down when its time is up (from a timer thread): a
    receiver that answers a byte at a time cannot hold a POST past ``timeout`` and its lease."""

    local = threading.local()

    def __init__(self, seconds: float):
        self.sockets: list[socket.socket] = []
        self.expired = False
        self.timer = threading.Timer(seconds, self.expire)
        self.timer.daemon = True

    def __enter__(self) -> _Deadline:
        _Deadline.local.current = self
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()
        _Deadline.local.current = None

    def expire(self) -> None:
        self.expired = True
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @classmethod
    def watch(cls, sock: socket.socket) -> socket.socket:
        current = getattr(cls.local, "current", None)
        if current is not None:
            current.sockets.append(sock)
            if current.expired:
                current.expire()
        return sock


def _guarded(base: type, allow_private: bool) -> type:
    """A urllib3 connection class that connects only to addresses the target rules allow, checked at
    connect time (a name cannot resolve to a public address when subscribed and a private one now)."""

    class Guarded(base):
        def _new_conn(self) -> socket.socket:
            try:
                addresses = allowed_addresses(f"http://{self._dns_host}:{self.port}/", allow_private=allow_private)
            except TargetRefused as error:
                raise NewConnectionError(self, f"webhook target refused: {error}") from None
            failure: OSError | None = None
            for address in addresses:
                try:
                    return _Deadline.watch(urllib3_connection.create_connection(
                        (str(address), self.port), self.timeout, source_address=self.source_address,
                        socket_options=self.socket_options))
                except OSError as error:
                    failure = error
            raise NewConnectionError(self, f"Failed to establish a new connection: {failure}")

    return Guarded


class GuardedAdapter(HTTPAdapter):
    def __init__(self, allow_private: bool):
        self.allow_private = allow_private
        super().__init__(pool_connections=4, pool_maxsize=4, max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        allow = self.allow_private
        http_pool = type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": _guarded(HTTPConnection, allow)})
        https_pool = type("GuardedHTTPSPool", (HTTPSConnectionPool,),
                          {"ConnectionCls": _guarded(HTTPSConnection, allow)})
        self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}


def http_session(allow_private: bool) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: it would connect to places unchecked
    adapter = GuardedAdapter(allow_private)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def send(http: requests.Session, url: str, headers: dict[str, str], body: str, *,
         timeout: float = TIMEOUT) -> Outcome:
    """POST once, all of it within ``timeout`` seconds; never raises. A redirect is an answer like
    any other (not 2xx: retried). The connection is not kept: each POST opens its own, checked."""
    started = time.monotonic()
    outcome = Outcome()
    try:
        with _Deadline(timeout) as deadline, http.post(
                url, data=body.encode("utf-8"), headers={**headers, "Connection": "close"}, timeout=timeout,
                allow_redirects=False, stream=True) as response:
            outcome.status_code = response.status_code
            read = 0
            for chunk in response.iter_content(8192):  # bounded: the answer is only logged
                read += len(chunk)
                if read >= MAX_RESPONSE_BYTES or deadline.expired:
                    break
        if deadline.expired and outcome.status_code is None:
            outcome.error = f"no answer within {timeout:g} s"
    except requests.RequestException as error:  # an answer whose body broke off still counts as that answer
        if outcome.status_code is None:
            outcome.error = (f"no answer within {timeout:g} s" if deadline.expired
                             else f"{type(error).__name__}: {error}")[:500]
    outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
    return outcome


# -- 4. record ---------------------------------------------------------------------------


def record(session: Session, delivery_id: int, worker: str, outcome: Outcome, *, retry: Retry = Retry(),
           max_age: dt.timedelta = MAX_AGE, now: dt.datetime | None = None) -> str | None:
    """Write an attempt's outcome if ``worker`` still holds the delivery; its new status (None: lost the
    lease, nothing written). The caller commits."""
    now = now or db_now(session)
    delivery = session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.status == "delivering",
        WebhookDelivery.leased_by == worker)).first()
    if delivery is None:
        return None
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    delivery.lease_expires_at = None
    delivery.leased_by = None
    if outcome.ok:
        delivery.status, delivery.next_attempt_at = "succeeded", None
    else:
        next_at = now + retry.delay(delivery.attempts)
        if next_at - delivery.date_created > max_age:
            delivery.status, delivery.next_attempt_at = "failed", None
        else:
            delivery.status, delivery.next_attempt_at = "pending", next_at
    session.flush()
    return delivery.status


def release(session: Session, worker: str) -> int:
    """Hand back every delivery ``worker`` holds (a clean stop): due again at once, the attempt uncounted."""
    return session.execute(update(WebhookDelivery).where(
        WebhookDelivery.status == "delivering", WebhookDelivery.leased_by == worker).values(
        status="pending", leased_by=None, lease_expires_at=None, next_attempt_at=db_now(session),
        attempts=WebhookDelivery.attempts - 1)).rowcount


# -- the delivery log (GET /webhooks/<id>/deliveries, POST …/retry) ---------------------------


DELIVERY_SORT_KEYS = {"id": WebhookDelivery.id, "next_attempt_at": WebhookDelivery.next_attempt_at}


def list_deliveries(session: Session, webhook_id: int, *, status: str | None = None, sort=None,
                    window: Window = FIRST_PAGE) -> Page:
    """A subscription's deliveries (oldest first unless sorted otherwise), optionally of one status."""
    if session.get(Webhook, webhook_id) is None:
        raise NotFound(f"No webhook {webhook_id}.")
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    return paginate(session, apply_sort(stmt, sort, DELIVERY_SORT_KEYS, WebhookDelivery.id.asc()), window,
                    sort_keys(sort, DELIVERY_SORT_KEYS, WebhookDelivery.id))


def retry_now(session: Session, webhook_id: int, delivery_id: int) -> WebhookDelivery:
    """Make a delivery due at once; Conflict while it is being sent.

    A delivery past its 24 h (a failed one) gets one more attempt: failing
    again, it is failed again. A succeeded one is sent again (a receiver
    that lost it); the ``webhook-id`` is the same.
    """
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.webhook_id != webhook_id:
        raise NotFound(f"No delivery {delivery_id} of webhook {webhook_id}.")
    if delivery.status == "delivering":
        raise Conflict("This delivery is being sent now.")
    delivery.status, delivery.next_attempt_at = "pending", db_now(session)
    session.flush()
    return delivery


def oldest_undelivered_age(session: Session, now: dt.datetime | None = None) -> float | None:
    """Seconds the oldest event still owed to a subscription has waited (None: nothing waits), for GET /health.

    Owed: an open delivery, or — while any subscription is active — an event
    not yet fanned out (past the dispatch watermark). The second is what
    shows when no worker runs at all: then no delivery is ever made.
    """
    times = [session.scalar(select(func.min(WebhookDelivery.date_created))
                            .where(WebhookDelivery.status.in_(OPEN)))]
    dispatch = session.get(WebhookDispatch, 1)
    if dispatch is not None and session.scalar(select(exists().where(Webhook.is_active.is_(True)))):
        times.append(session.scalar(select(func.min(Change.date_created)).where(
            tuple_(Change.txid, Change.id) > tuple_(dispatch.txid, dispatch.change_id),
            events.types_filter())))
    waiting = [moment for moment in times if moment is not None]
    if not waiting:
        return None
    return max(0.0, ((now or db_now(session)) - min(waiting)).total_seconds())
