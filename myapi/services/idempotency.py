"""Idempotency keys: a retried POST returns the first answer and creates nothing.

The protocol, per (caller, key):

1. The request takes the key's **owner lock** (``owner_lock``;
   services/owner_locks.py), trying, never waiting. It holds it until the
   request is over, and the database (PostgreSQL) or the kernel (SQLite)
   drops it the moment the request's process dies, so whether a key's owner
   is alive is known at once. A request that cannot take it knows a live
   request holds the key (``busy``): it replays the key's finished answer if
   there is one (422 for another request), and otherwise hears 409.
2. Holding the lock, it **claims** the key in a short transaction of its own
   (``claim``): insert a row with the request's digest and no response yet.
   The row is committed before any work starts, so every worker and host
   sees it; the unique constraint on (scope, key) keeps one row per key. A
   row already there is finished (replayed, or 422 for another digest),
   expired, or unfinished. Nobody holds an unfinished row's lock, so its
   owner died mid-request (its work was rolled back with it) or failed to
   release it: the row is replaced by a new one. (On PostgreSQL a failed
   owner's lock ends with its rollback, just before it releases its claim;
   the replacement's new id, which a sequence never hands out twice, keeps
   that late ``release`` from deleting it. On SQLite the owner gives its
   lock up only after releasing.)
3. The owner does the work in the request's transaction and, in that same
   transaction, **records** the final response on the claimed row
   (``record``), so the work and its stored answer commit together or not at
   all.
4. If the work fails (an exception or a 4xx/5xx answer) the claim is
   **released** (``release``): failures are not stored, and the client may
   retry with the same key.

The owner lock is taken before the row exists and given up only after the
work committed (PostgreSQL: the lock is the work transaction's, so it ends
with that commit; SQLite: after it) or the claim was released, so nobody
ever sees an unfinished row whose owner lives without also finding its lock
taken: a takeover is never of a live request. Keys live for 24 hours.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import problems
from ..models import IdempotencyKey, utcnow
from .backends import backend_for
from .errors import Conflict, DomainError
from .owner_locks import OwnerLock, lock_id

TTL = dt.timedelta(hours=24)
PRUNE_CHANCE = 0.01  # prune expired keys on about one claim in a hundred


class KeyReused(DomainError):
    problem = problems.IDEMPOTENCY_KEY_REUSED


class KeyInProgress(Conflict):
    problem = problems.IDEMPOTENCY_KEY_IN_PROGRESS


@dataclass
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Claim:
    id: int | None = None
    replay: StoredResponse | None = None


def owner_lock(session: Session, *, scope: str, key: str) -> OwnerLock:
    """The key's owner lock; on PostgreSQL it belongs to ``session``'s transaction (the work's)."""
    return backend_for(session).owner_lock(session, lock_id(scope, key))


def claim(session: Session, *, scope: str, key: str, method: str, path: str, digest: str) -> Claim:
    """Claim ``key`` for this request, or find the answer it already has.

    The caller holds the key's owner lock, so no live request owns the key.
    ``session`` must be fresh: this commits (the claim must be visible to
    other workers before the work starts).
    """
    now = utcnow()
    if random.random() < PRUNE_CHANCE:  # noqa: S311 (not security relevant)
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now))
    existing = _find(session, scope, key)
    if existing is not None and existing.expires_at > now and existing.status_code is not None:
        session.commit()
        return _answered(existing, digest)
    if existing is not None:
        # Expired, or unfinished with nobody holding its lock: its owner died
        # mid-request (or could not release it). Ours replaces it.
        session.delete(existing)
        session.flush()
    row = IdempotencyKey(scope=scope, key=key, method=method, path=path, request_hash=digest,
                         date_created=now, expires_at=now + TTL)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        # Only a request that holds the lock inserts; one that does not is
        # a version without owner locks (a rolling upgrade): it runs.
        session.rollback()
        raise _in_progress() from None
    return Claim(id=row.id)


def busy(session: Session, *, scope: str, key: str, digest: str) -> Claim:
    """The answer when another, live request holds the key's owner lock (reads only).

    Its finished answer is replayed (422 for another request); a key still
    being worked on, or being claimed, is 409: the client retries shortly.
    """
    existing = _find(session, scope, key)
    if existing is None or existing.expires_at <= utcnow():
        raise _in_progress()  # being claimed (or taken over) right now
    if existing.request_hash != digest or existing.status_code is not None:
        return _answered(existing, digest)
    raise _in_progress()


def _find(session: Session, scope: str, key: str) -> IdempotencyKey | None:
    return session.scalars(
        select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
    ).first()


def _answered(existing: IdempotencyKey, digest: str) -> Claim:
    """The stored answer of ``existing`` for this request, or 422 if it was another request."""
    if existing.request_hash != digest:
        raise KeyReused(
            "This Idempotency-Key was used with a different request; use a new key for a new request.",
            {"Idempotency-Key": "Already used with another method, path or body."},
        )
    return Claim(replay=StoredResponse(
        status=existing.status_code,
        headers=json.loads(existing.response_headers or "{}"),
        body=existing.response_body or "",
    ))


def _in_progress() -> KeyInProgress:
    return KeyInProgress("A request with this Idempotency-Key is still being processed; retry shortly.")


def record(session: Session, claim_id: int, response: StoredResponse) -> None:
    """Store the final answer on the claim, in the caller's (the work's) transaction."""
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claim_id)
        .values(status_code=response.status, response_headers=json.dumps(response.headers),
                response_body=response.body)
    )


def release(session: Session, claim_id: int) -> None:
    """Forget an unfinished claim so the client can retry (commits)."""
    session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.id == claim_id, IdempotencyKey.status_code.is_(None))
    )
    session.commit()
