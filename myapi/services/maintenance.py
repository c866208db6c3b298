"""Housekeeping: expired tokens and idempotency keys, old change-feed rows, old import records."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, or_
from sqlalchemy.orm import Session

from ..models import IdempotencyKey, Token, utcnow
from . import changes, import_audit


def prune_expired(session: Session, *, changes_retention: dt.timedelta | None = None,
                  imports_retention: dt.timedelta | None = None) -> dict[str, int]:
    """Delete expired or revoked tokens, expired idempotency keys and, given their retentions, older
    change-feed rows and import records (the caller commits)."""
    now = utcnow()
    tokens = session.execute(delete(Token).where(or_(Token.expires_at <= now, Token.revoked_at.is_not(None))))
    keys = session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now))
    counts = {"tokens": tokens.rowcount, "idempotency keys": keys.rowcount}
    if changes_retention is not None:
        counts["feed changes"] = changes.prune(session, changes_retention)
    if imports_retention is not None:
        counts["import records"] = import_audit.prune(session, imports_retention)
    return counts
