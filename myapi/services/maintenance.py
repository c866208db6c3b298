"""Housekeeping: expired tokens and idempotency keys."""

from __future__ import annotations

from sqlalchemy import delete, or_
from sqlalchemy.orm import Session

from ..models import IdempotencyKey, Token, utcnow


def prune_expired(session: Session) -> dict[str, int]:
    """Delete expired or revoked tokens and expired idempotency keys (the caller commits)."""
    now = utcnow()
    tokens = session.execute(delete(Token).where(or_(Token.expires_at <= now, Token.revoked_at.is_not(None))))
    keys = session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now))
    return {"tokens": tokens.rowcount, "idempotency keys": keys.rowcount}
