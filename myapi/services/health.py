"""Is the database answering? (GET /health)"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session


def database_answers(session: Session) -> bool:
    """One trivial query; False when the database cannot be reached or fails."""
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


def oldest_undelivered_age(session: Session) -> float | None:
    """Seconds the oldest undelivered webhook event has waited, to the second (None: none waits, or unknown)."""
    from .webhook_delivery import oldest_undelivered_age

    try:
        age = oldest_undelivered_age(session)
    except SQLAlchemyError:
        session.rollback()
        return None
    return None if age is None else round(age)
