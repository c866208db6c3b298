"""Events (DESIGN §11): what happened, read from the change feed's rows.

An event is a ``changes`` row (migration 0003; 0005 adds a completed CSV
import's), written by a trigger in the writing transaction: an event exists
if and only if its change committed (an outbox, never "commit, then
publish"). Its type is the change's entity and kind (``EVENT_TYPES``); an
order's plain ``updated`` change (its address, its total) is no event, and
neither is a PATCH /products record (its products' changes are).

``GET /events`` is the change feed of services/changes.py over every entity
(the same ``(txid, id)`` order, running horizon and retention, through
``changes.read_changes``): a follower sees every event exactly once, gap-free,
whatever the commit order. An event's ``data`` is the item as it is when the
event is read (or ``{"id"}`` when it is gone), like a feed entry's ``item``.
No Flask.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from ..models import WEBHOOK_EVENT_TYPES, Change, ImportRecord
from . import changes
from .changes import FeedPage, Watermark

#: (entity, kind) of a change -> its event type. Anything else (an order's "updated") is no event.
EVENT_TYPE_OF = {
    ("product", "created"): "product.created",
    ("product", "updated"): "product.updated",
    ("product", "deleted"): "product.deleted",
    ("order", "created"): "order.created",
    ("order", "status_changed"): "order.status_changed",
    ("import", "completed"): "import.completed",
}
CHANGE_OF_TYPE = {event_type: key for key, event_type in EVENT_TYPE_OF.items()}
assert tuple(CHANGE_OF_TYPE) == WEBHOOK_EVENT_TYPES  # noqa: S101 (one list of types)
EVENT_TYPES = WEBHOOK_EVENT_TYPES


def event_type(change: Change) -> str | None:
    """The event type of a change, or None when it is no event."""
    return EVENT_TYPE_OF.get((change.entity, change.kind))


def event_id(change_id: int) -> str:
    """An event's id: stable, unique, the same in every answer and every delivery (webhook-id)."""
    return f"evt_{change_id}"


def types_filter(types: list[str] | None = None):
    """The WHERE clause of the changes that are events of ``types`` (every type when None or empty)."""
    pairs = [CHANGE_OF_TYPE[name] for name in (types or EVENT_TYPES)]
    return or_(*(and_(Change.entity == entity, Change.kind == kind) for entity, kind in pairs))


@dataclass
class Event:
    id: str
    type: str
    created: dt.datetime
    entity: str
    entity_id: int
    item: object | None  # the item as it is now (Product, Order, ImportRecord), None when gone
    seq: Watermark


def current_items(session: Session, rows: list[Change]) -> dict[tuple[str, int], object]:
    """The items the changes are about, as they are now, by (entity, id)."""
    found: dict[tuple[str, int], object] = {}
    for entity in {row.entity for row in rows}:
        ids = {row.entity_id for row in rows if row.entity == entity}
        if entity == "import":
            items = session.scalars(select(ImportRecord).where(ImportRecord.id.in_(ids))).all()
            found.update(((entity, item.id), item) for item in items)
        else:
            found.update(((entity, item_id), item)
                         for item_id, item in changes.current_items(session, entity, ids).items())
    return found


def to_events(session: Session, rows: list[Change]) -> list[Event]:
    current = current_items(session, rows)
    return [Event(event_id(row.id), event_type(row), row.date_created, row.entity, row.entity_id,
                  current.get((row.entity, row.entity_id)), Watermark(row.txid, row.id)) for row in rows]


def feed(session: Session, since: Watermark, *, types: list[str] | None = None, limit: int = 100) -> FeedPage:
    """Up to ``limit`` events of ``types`` after ``since``, in commit order, and the next watermark."""
    rows, next_since = changes.read_changes(session, since, limit, types_filter(types))
    return FeedPage(to_events(session, rows), next_since)
