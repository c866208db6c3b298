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

from sqlalchemy import Select, delete, func, select, tuple_, update
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
    SQLite: the newest change now. Never before what was pruned (which
    would be 410). One statement, built once per database kind: a list's
    first page pays for it.
    """
    backend = backend_for(session)
    built = _WATERMARK_STATEMENTS.get(type(backend))
    if built is None:
        built = _WATERMARK_STATEMENTS[type(backend)] = _watermark_statement(backend.horizon_expression())
    stmt, by_horizon = built
    now, pruned_txid, pruned_change = session.execute(stmt).one()
    mark = Watermark(now, 0) if by_horizon else Watermark(0, now)
    return max(mark, Watermark(pruned_txid, pruned_change) if pruned_txid is not None else BEGINNING)


def _watermark_statement(horizon) -> tuple[Select, bool]:
    """SELECT (the running horizon, or the newest change id), (the pruned-through mark), and which it reads."""
    changes, pruned = Change.__table__.c, ChangeHorizon.__table__.c
    now = horizon if horizon is not None else select(func.coalesce(func.max(changes.id), 0)).scalar_subquery()
    stmt = select(now, *(select(column).where(pruned.id == 1).scalar_subquery()
                         for column in (pruned.txid, pruned.change_id)))
    return stmt, horizon is not None


_WATERMARK_STATEMENTS: dict[type, tuple[Select, bool]] = {}


def _pruned_through(session: Session) -> Watermark:
    row = session.execute(select(ChangeHorizon.txid, ChangeHorizon.change_id).where(ChangeHorizon.id == 1)).first()
    return Watermark(row.txid, row.change_id) if row is not None else BEGINNING


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
    where = [Change.entity == entity]
    if owner_id is not None:
        where.append(Change.owner_id == owner_id)
    rows, next_since = read_changes(session, since, limit, *where)
    current = current_items(session, entity, {row.entity_id for row in rows})
    entries = []
    for row in rows:
        item = current.get(row.entity_id)
        entries.append(FeedEntry(Watermark(row.txid, row.id), "upsert" if item is not None else "delete",
                                 row.entity_id, item.version if item is not None else row.version, item))
    return FeedPage(entries, next_since)


def read_changes(session: Session, since: Watermark, limit: int, *where) -> tuple[list[Change], Watermark]:
    """Up to ``limit`` change rows after ``since`` matching ``where``, in feed order, and the page's next_since.

    The one read every feed shares (this module's feeds, the events of
    services/events.py, the webhooks' fan-out): only changes below the
    running horizon, ``(txid, id)`` order, the expiry checked after the
    read, and a short page's next_since moved up to the read's frontier.
    """
    horizon = _horizon_txid(session)
    stmt = (select(Change).where(tuple_(Change.txid, Change.id) > tuple_(since.txid, since.change_id), *where)
            .order_by(Change.txid, Change.id).limit(limit))
    if horizon is not None:
        stmt = stmt.where(Change.txid < horizon)
    rows = session.scalars(stmt).all()
    # Checked after the read, from the table (a PostgreSQL read is one snapshot per statement): a prune
    # that ended before the rows were read is seen here, so no pruned change goes missing unnoticed.
    _check_not_expired(session, since)
    next_since = Watermark(rows[-1].txid, rows[-1].id) if rows else since
    if len(rows) < limit:
        # Every change of this feed up to the frontier was on this page: move up to it, so that a
        # follower whose feed is quiet (or whose changes are few: a customer's orders) keeps a fresh
        # watermark and is not sent back to export by a prune of other changes.
        next_since = max(next_since, _frontier(session, horizon))
    return list(rows), next_since


def _frontier(session: Session, horizon: int | None) -> Watermark:
    """Where the feed's read reached: every later change sorts after it.

    PostgreSQL: the running horizon (every change of a transaction below it
    was visible to the read). SQLite: the newest change, read in the same
    read transaction as the page (writers are serialised: none is pending).
    """
    if horizon is not None:
        return Watermark(horizon, 0)
    return Watermark(0, session.scalar(select(func.coalesce(func.max(Change.id), 0))))


def current_items(session: Session, entity: str, ids: set[int]) -> dict[int, object]:
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
    stmt = select(Change.txid, Change.id).where(Change.date_created < cutoff)
    horizon = _horizon_txid(session)
    if horizon is not None:
        # Never past a transaction still running: a watermark at the pruned horizon (an export's)
        # must not sort after a change that commits later.
        stmt = stmt.where(Change.txid < horizon)
    newest = session.execute(stmt.order_by(Change.txid.desc(), Change.id.desc()).limit(1)).first()
    if newest is None:
        return 0
    session.execute(update(ChangeHorizon).where(ChangeHorizon.id == 1)
                    .values(txid=newest.txid, change_id=newest.id))
    # Everything at or before the new horizon goes, whatever its age: a since before it is 410 anyway.
    # Except the newest change of all: SQLite gives a new row the highest id + 1, so an emptied table
    # would hand out ids again that watermarks already passed (AUTOINCREMENT would cost every write).
    newest_of_all = select(func.max(Change.id)).scalar_subquery()
    return session.execute(delete(Change).where(
        tuple_(Change.txid, Change.id) <= tuple_(newest.txid, newest.id), Change.id < newest_of_all)).rowcount


def check_watermark(value: str) -> Watermark:
    """Parse a client's watermark; Invalid (400) naming ``since`` otherwise."""
    try:
        return Watermark.parse(value)
    except ValueError as error:
        raise Invalid("The since parameter is not a watermark.", {"since": str(error)}) from None
