"""The audit trail of bulk changes (DESIGN §12): who changed what, when, with which options.

Every import that answers 200 (an import, a dry run, a plan) and every
``PATCH /products`` adds one ``ImportRecord`` in the request's own
transaction, so a record exists if and only if its change committed (a
refused file changes nothing and has none: its answer is the problem). The
record keeps the counts and the answer's bounded lists (the first 100
changes, ``CHANGES_LISTED``, and ``changes_truncated`` when there were more;
the first 100 row errors; the guardrail's first 100 offences; a PATCH's
every change, at most 1000), so it never grows with the file; the full diff
of a file is only ever streamed, at request time, by a plan. No Flask.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import orjson
from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from ..models import ImportRecord, utcnow
from .errors import NotFound
from .query import FIRST_PAGE, Page, Window, apply_sort, paginate, sort_keys

SORT_KEYS = {"id": ImportRecord.id, "date_created": ImportRecord.date_created}


@dataclass(frozen=True)
class Actor:
    """Who makes a bulk change: the user, and the API key when one was used."""

    user_id: int
    api_key_id: int | None = None


def _mode(result) -> str:
    """``import``, ``plan``, ``dry_run`` or ``plan+dry_run``: the record says what the answer said."""
    return "+".join(name for name in ("plan", "dry_run") if getattr(result, name, False)) or "import"


def _add(session: Session, actor: Actor, source: str, result, detail: dict) -> int:
    limit = result.max_price_change
    record = ImportRecord(
        user_id=actor.user_id, api_key_id=actor.api_key_id, source=source, mode=_mode(result),
        on_error=getattr(result, "on_error", None),
        max_price_change=None if limit is None else str(limit),
        columns=",".join(result.columns), rows=result.rows, created=result.created, updated=result.updated,
        unchanged=result.unchanged, rejected=result.rejected, error_count=result.error_count,
        detail=orjson.dumps(detail).decode(),
    )
    session.add(record)
    session.flush()
    return record.id


def record_import(session: Session, actor: Actor, result) -> int:
    """Add the record of a CSV import (a catalog_import.ImportResult); its id."""
    return _add(session, actor, "file", result, {
        "errors": result.errors, "changes": result.changes, "price_guardrail": result.price_guardrail,
        "largest_price_changes": result.largest_price_changes, "refused": result.refused})


def record_patch(session: Session, actor: Actor, result) -> int:
    """Add the record of a ``PATCH /products`` (a bulk_changes.BulkResult); its id."""
    return _add(session, actor, "patch", result, {"errors": [], "changes": result.changes, "price_guardrail": [],
                                                   "largest_price_changes": None, "refused": None})


def get_import(session: Session, import_id: int) -> ImportRecord:
    record = session.get(ImportRecord, import_id)
    if record is None:
        raise NotFound(f"No import {import_id}.")
    return record


def list_imports(session: Session, *, user_id: int | None = None, source: str | None = None, sort=None,
                 window: Window = FIRST_PAGE) -> Page:
    """Every record (newest last, unless sorted otherwise), optionally one user's or one source's."""
    stmt: Select = select(ImportRecord)
    if user_id is not None:
        stmt = stmt.where(ImportRecord.user_id == user_id)
    if source is not None:
        stmt = stmt.where(ImportRecord.source == source)
    return paginate(session, apply_sort(stmt, sort, SORT_KEYS, ImportRecord.id.asc()), window,
                    sort_keys(sort, SORT_KEYS, ImportRecord.id))


def prune(session: Session, retention: dt.timedelta) -> int:
    """Delete records older than ``retention`` (the caller commits)."""
    return session.execute(delete(ImportRecord).where(ImportRecord.date_created < utcnow() - retention)).rowcount
