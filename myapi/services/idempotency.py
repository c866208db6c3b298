"""Idempotency keys: a retried POST returns the first answer and creates nothing.

The protocol, per (caller, key):

1. **Claim** the key in a short transaction of its own (``claim``): insert a
   row with the request's digest and no response yet. The unique constraint
   on (scope, key) makes exactly one concurrent request the owner, across
   workers and hosts, because the row is committed before any work starts.
2. The owner does the work in the request's transaction and, in that same
   transaction, **records** the final response on the claimed row
   (``record``), so the work and its stored answer commit together or not at
   all.
3. If the work fails (an exception or a 4xx/5xx answer) the claim is
   **released** (``release``): failures are not stored, and the client may
   retry with the same key.

A second request with the key finds the row: a finished one with the same
digest is replayed, with another digest is a mismatch (422), and an
unfinished one is in progress (409). An unfinished claim older than
``ABANDONED_AFTER`` belonged to a process that died mid-request; its work was
rolled back with it, so the claim is taken over. Keys live for 24 hours.
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
from .errors import Conflict, DomainError

TTL = dt.timedelta(hours=24)
ABANDONED_AFTER = dt.timedelta(minutes=10)
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


def claim(session: Session, *, scope: str, key: str, method: str, path: str, digest: str) -> Claim:
    """Claim ``key`` for this request, or find the answer it already has.

    ``session`` must be fresh: this commits (the claim must be visible to
    other workers before the work starts).
    """
    now = utcnow()
    if random.random() < PRUNE_CHANCE:  # noqa: S311 (not security relevant)
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now))
    row = IdempotencyKey(scope=scope, key=key, method=method, path=path, request_hash=digest,
                         date_created=now, expires_at=now + TTL)
    session.add(row)
    try:
        session.commit()
        return Claim(id=row.id)
    except IntegrityError:
        session.rollback()

    existing = session.scalars(
        select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
    ).first()
    if existing is None:  # released or pruned between our insert and this read
        return claim(session, scope=scope, key=key, method=method, path=path, digest=digest)
    if existing.expires_at <= now or (
        existing.status_code is None and existing.date_created <= now - ABANDONED_AFTER
    ):
        # Expired, or abandoned by a process that died: take it over, but only
        # if nobody else did in the meantime (compare-and-set on the row).
        taken = session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == existing.id, IdempotencyKey.date_created == existing.date_created)
            .values(method=method, path=path, request_hash=digest, status_code=None, response_headers=None,
                    response_body=None, date_created=now, expires_at=now + TTL)
        ).rowcount
        session.commit()
        if taken:
            return Claim(id=existing.id)
        return claim(session, scope=scope, key=key, method=method, path=path, digest=digest)
    session.commit()
    if existing.request_hash != digest:
        raise KeyReused(
            "This Idempotency-Key was used with a different request; use a new key for a new request.",
            {"Idempotency-Key": "Already used with another method, path or body."},
        )
    if existing.status_code is None:
        raise KeyInProgress(
            "A request with this Idempotency-Key is still being processed; retry shortly.",
        )
    return Claim(replay=StoredResponse(
        status=existing.status_code,
        headers=json.loads(existing.response_headers or "{}"),
        body=existing.response_body or "",
    ))


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
