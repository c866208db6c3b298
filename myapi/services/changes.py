"""The change feeds (DESIGN §9): what changed since a watermark, gap-free under concurrency.

Triggers (migration 0003) write a ``changes`` row in every transaction that
inserts, updates or deletes a product or an order. The feed hands those rows
out in ``(txid, id)`` order, and a **watermark** is the ``(txid, id)`` of the
last change a client has, written ``"<txid>.<id>"`` (opaque to clients).

Why ``(txid, id)`` and not the id alone: on PostgreSQL ids are taken when a
row is written, but transactions commit in another order, so a lower id can
become visible after a higher one was handed out. Transaction ids are given
out in order, and ``pg_snapshot_xmin(pg_current_snapshot())`` is the oldest
transaction still running: every transaction below it has ended. The feed
hands out only changes of transactions below that horizon, in ``(txid,
id)`` order; any change that becomes visible later belongs to a transaction
at or above it, so it sorts after everything handed out: no gap, whatever
the commit order, and no change twice. On SQLite, writers are serialised
(``BEGIN IMMEDIATE``), so every visible change is final and ``txid`` is 0.

Each change is answered with the item as it is now (or ``delete`` when it is
gone): applying a page of changes in order leaves a copy equal to the table
as of that read, and a later change of the same item brings it forward.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.orm import Session, selectinload

from .. import problems
from ..models import Change, ChangeHorizon, Order, Product, utcnow
from .backends import backend_for
from .errors import DomainError, Invalid

ENTITIES = {"product": Product, "order": Order}
_WATERMARK = re.compile(r"^(0|[1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,17})$")


@dataclass(frozen=True, order=True)
class Watermark:
    """A position in the feed: every change at or before it has been handed out."""

    txid: int = 0
    change_id: int = 0

    def __str__(self) -> str:
        return f"{self.txid}.{self.change_id}"

    @classmethod
    def parse(cls, text_value: str) -> Watermark:
        """``"<txid>.<id>"`` (``"0"`` is the beginning); ValueError otherwise."""
        if text_value == "0":
            return cls()
        match = _WATERMARK.match(text_value or "")
        if match is None:
            raise ValueError('must be a watermark this API gave you (next_since, X-Changes-Since), or "0"')
        return cls(int(match[1]), int(match[2]))


BEGINNING = Watermark()


class ChangesExpired(DomainError):
    """The changes after this watermark were pruned: re-export and follow from the new watermark."""

    problem = problems.CHANGES_EXPIRED


def _horizon_txid(session: Session) -> int | None:
    """The oldest transaction still running (PostgreSQL); None on SQLite (every visible change is final)."""
    return backend_for(session).running_horizon(session)


def watermark(session: Session) -> Watermark:
    """A watermark for a copy read after this call: following the feed from it misses nothing.

    Taken *before* the copy is read. PostgreSQL: every transaction below
    the running horizon has ended, so its changes are in any later read.
    SQLite: the newest change now.
    """
    horizon = _horizon_txid(session)
    if horizon is not None:
        mark = Watermark(horizon, 0)
    else:
        mark = Watermark(0, session.scalar(select(func.coalesce(func.max(Change.id), 0))))
    return max(mark, _pruned_through(session))  # never before what was pruned (which would be 410)


def _pruned_through(session: Session) -> Watermark:
    horizon = session.get(ChangeHorizon, 1)
    return Watermark(horizon.txid, horizon.change_id) if horizon is not None else BEGINNING


@dataclass
class FeedEntry:
    seq: Watermark
    op: str
    id: int
    version: int
    item: object | None


@dataclass
class FeedPage:
    entries: list[FeedEntry]
    next_since: Watermark


def feed(session: Session, entity: str, since: Watermark, *, limit: int = 100,
         owner_id: int | None = None) -> FeedPage:
    """Up to ``limit`` changes of ``entity`` after ``since`` (only ``owner_id``'s orders when given)."""
    _check_not_expired(session, since)
    horizon = _horizon_txid(session)
    stmt = (select(Change).where(Change.entity == entity,
                                 tuple_(Change.txid, Change.id) > tuple_(since.txid, since.change_id))
            .order_by(Change.txid, Change.id).limit(limit))
    if horizon is not None:
        stmt = stmt.where(Change.txid < horizon)
    if owner_id is not None:
        stmt = stmt.where(Change.owner_id == owner_id)
    rows = session.scalars(stmt).all()
    current = _current_items(session, entity, {row.entity_id for row in rows})
    entries = []
    for row in rows:
        item = current.get(row.entity_id)
        entries.append(FeedEntry(Watermark(row.txid, row.id), "upsert" if item is not None else "delete",
                                 row.entity_id, item.version if item is not None else row.version, item))
    if rows:
        next_since = entries[-1].seq
    elif horizon is not None:
        # Nothing below the horizon is left after ``since``: move up to it, so an idle
        # follower's watermark stays fresh (every later change sorts after it).
        next_since = max(since, Watermark(horizon, 0))
    else:
        next_since = since
    return FeedPage(entries, next_since)


def _current_items(session: Session, entity: str, ids: set[int]) -> dict[int, object]:
    if not ids:
        return {}
    model = ENTITIES[entity]
    stmt = select(model).where(model.id.in_(ids))
    if model is Order:
        stmt = stmt.options(selectinload(Order.items))
    return {item.id: item for item in session.scalars(stmt)}


def _check_not_expired(session: Session, since: Watermark) -> None:
    if since < _pruned_through(session):
        raise ChangesExpired(
            "Changes after this watermark were pruned (MYAPI_CHANGES_RETENTION); export again and follow "
            "the feed from the export's X-Changes-Since.", {"since": "older than the kept changes"})


def prune(session: Session, retention: dt.timedelta) -> int:
    """Delete changes older than ``retention`` and move the horizon past them (the caller commits)."""
    cutoff = utcnow() - retention
    newest = session.execute(
        select(Change.txid, Change.id).where(Change.date_created < cutoff)
        .order_by(Change.txid.desc(), Change.id.desc()).limit(1)
    ).first()
    if newest is None:
        return 0
    session.execute(update(ChangeHorizon).where(ChangeHorizon.id == 1)
                    .values(txid=newest.txid, change_id=newest.id))
    # Everything at or before the new horizon goes, whatever its age: a since before it is 410 anyway.
    return session.execute(delete(Change).where(
        tuple_(Change.txid, Change.id) <= tuple_(newest.txid, newest.id))).rowcount


def check_watermark(value: str) -> Watermark:
    """Parse a client's watermark; Invalid (400) naming ``since`` otherwise."""
    try:
        return Watermark.parse(value)
    except ValueError as error:
        raise Invalid("The since parameter is not a watermark.", {"since": str(error)}) from None
