"""Query helpers shared by the services: whitelisted sorting, pages (by number or keyset), exports, If-Match.

Pages (DESIGN §9). A list is ordered by its requested sort keys and then
the id (:func:`sort_keys`): a total order. A :class:`Window` asks for a
page by number (``OFFSET``) or for the rows *after* a position in that
order (a keyset: the sort-key values and id of the last row a client saw,
which the API hands out as an opaque cursor), and says how to count.
:func:`paginate` reads ``per_page + 1`` rows, so a page knows whether
another row follows, and the keys of its last row start the next page.
A keyset page is ``WHERE (keys) > (the last row's keys) ORDER BY keys
LIMIT n``: an index range scan whose cost does not depend on how deep the
page is, and which sees every row that exists, unchanged in its sort key,
exactly once however the table changes between pages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, literal, or_, select, tuple_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from . import changes
from .backends import backend_for
from .errors import PreconditionFailed

#: ``count=``: a COUNT query, the database's estimate, or no count at all.
COUNT_MODES = ("exact", "estimated", "none")


def _nullable(column) -> bool:
    return bool(getattr(getattr(column, "expression", column), "nullable", False))


def _ordering(column, descending: bool):
    """``column`` ascending or descending; a nullable column puts NULL after every value.

    NULL sorts as the largest value on both databases (PostgreSQL's own
    default; SQLite's is the opposite), so that a keyset (:func:`after`)
    knows where a NULL row is.
    """
    clause = column.desc() if descending else column.asc()
    if _nullable(column):
        clause = clause.nulls_first() if descending else clause.nulls_last()
    return clause


def apply_sort(stmt: Select, spec: Sequence[tuple[str, bool]] | None, columns: Mapping, tiebreak) -> Select:
    """ORDER BY the whitelisted ``columns`` named in ``spec`` (key, descending).

    The parser already refused unknown keys; looking them up in ``columns``
    here is the second lock on the door. ``tiebreak`` (the primary key) comes
    last so pages never overlap or skip rows.
    """
    order = []
    for key, descending in spec or ():
        order.append(_ordering(columns[key], descending))
    order.append(tiebreak)
    return stmt.order_by(*order)


@dataclass(frozen=True)
class SortKey:
    """One key of a list's order: its name in ``sort=``, its column, its direction."""

    name: str
    column: Any
    descending: bool = False

    @property
    def nullable(self) -> bool:
        return _nullable(self.column)

    def value_of(self, row) -> Any:
        return getattr(row, self.column.key)


def sort_keys(spec: Sequence[tuple[str, bool]] | None, columns: Mapping, id_column) -> tuple[SortKey, ...]:
    """The keys a list is ordered by, as :func:`apply_sort` orders it: ``spec``, then the id.

    Keys after the id add nothing (it is unique) and are left out; the id
    comes last, ascending, unless ``spec`` named it. Only whitelisted
    ``columns`` are looked up.
    """
    keys = []
    for name, descending in spec or ():
        column = columns[name]
        keys.append(SortKey(name, column, descending))
        if column is id_column:
            return tuple(keys)
    keys.append(SortKey("id", id_column, False))
    return tuple(keys)


def after(keys: Sequence[SortKey], values: Sequence) -> ColumnElement[bool]:
    """The rows after the one whose ``keys`` have ``values``, in the order of ``keys``.

    When every key has the same direction and none is nullable this is one
    row-value comparison, ``(a, b, id) > (:a, :b, :id)``, which both
    databases answer with a range scan of an index on the leading columns.
    Otherwise it is the lexicographic OR-chain ``a > :a OR (a = :a AND (b <
    :b OR (b = :b AND id > :id)))``, with ``a >= :a`` beside it so that the
    first key's index still bounds the scan. A nullable key counts NULL as
    larger than any value (see :func:`_ordering`).
    """
    if len(values) != len(keys):
        raise ValueError("one value per sort key")
    pairs = list(zip(keys, values, strict=True))
    if len(keys) == 1 and not keys[0].nullable:
        return keys[0].column < values[0] if keys[0].descending else keys[0].column > values[0]
    if len({key.descending for key in keys}) == 1 and not any(key.nullable for key in keys):
        left = tuple_(*(key.column for key in keys))
        right = tuple_(*(literal(value, type_=key.column.type) for key, value in pairs))
        return left < right if keys[0].descending else left > right
    condition = None
    for key, value in reversed(pairs):
        beyond = _beyond(key, value)
        condition = beyond if condition is None else or_(beyond, and_(_same(key, value), condition))
    first, value = pairs[0]
    if not first.nullable:  # a range the first key's index can serve
        condition = and_(first.column <= value if first.descending else first.column >= value, condition)
    return condition


def _beyond(key: SortKey, value) -> ColumnElement[bool]:
    """Rows strictly after ``value`` in ``key``'s direction (NULL being the largest value)."""
    column = key.column
    if value is None:  # NULL is last ascending (nothing follows it), first descending (every value does)
        return column.is_not(None) if key.descending else false()
    strictly = column < value if key.descending else column > value
    return or_(strictly, column.is_(None)) if key.nullable and not key.descending else strictly


def _same(key: SortKey, value) -> ColumnElement[bool]:
    return key.column.is_(None) if value is None else key.column == value

def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its own wildcards escaped (ESCAPE '\\')."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass(frozen=True)
class Window:
    """Which rows of a list a request asks for, and how to count them (DESIGN §9).

    By number: ``page`` (from 1), ``after`` None. By cursor: ``after``, the
    values of the list's sort keys (id last) of the last row the client saw,
    ``page`` None. ``count``: one of :data:`COUNT_MODES`.
    """

    per_page: int = 20
    page: int | None = 1
    after: tuple | None = None
    count: str = "exact"


#: The first page, counted: what a list answers without pagination arguments.
FIRST_PAGE = Window()


@dataclass
class Page:
    """One page of a list.

    ``total_items`` is None when not counted (``count=none``);
    ``total_is_estimate`` is None unless an estimate was asked for.
    ``next_key`` is the sort-key values (id last) of the last item when
    another row follows, else None. ``watermark``: the change feed's
    watermark taken before the page was read, when this request starts a
    walk of a list that a feed continues.
    """

    items: list
    page: int | None
    per_page: int
    total_items: int | None
    total_is_estimate: bool | None = None
    next_key: tuple | None = None
    watermark: changes.Watermark | None = None

    @property
    def total_pages(self) -> int | None:
        if self.total_items is None:
            return None
        return math.ceil(self.total_items / self.per_page)


def row_columns(model) -> tuple:
    """Every mapped column of ``model``, labelled by attribute name: ``select(*row_columns(M))`` gives Rows.

    Reads that only show an item select these instead of the entity: a Row
    has the same attributes (and the same types' conversions) without the
    ORM's identity map, instance state and ORM compile step, about a third
    of a small read. Table columns (Core), labelled with the attribute names.
    """
    return tuple(column.label(attribute.key) if column.name != attribute.key else column
                 for attribute in sa_inspect(model).column_attrs for column in attribute.columns[:1])


def _selects_entity(stmt: Select) -> bool:
    descriptions = stmt.column_descriptions
    return len(descriptions) == 1 and isinstance(descriptions[0]["expr"], type)


def count_rows(session: Session, stmt: Select) -> int:
    """How many rows ``stmt`` selects: one COUNT statement."""
    return session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0


def count_matching(session: Session, stmt: Select, mode: str) -> tuple[int | None, bool | None]:
    """``(total, is_estimate)`` as ``count=`` asks: exact (one COUNT), estimated, or none (no statement).

    An estimate is the database's (backends: PostgreSQL's planner, SQLite's
    ``sqlite_stat1``); where it has none, the exact count, with
    ``is_estimate`` False.
    """
    if mode == "none":
        return None, None
    if mode == "estimated":
        estimate = backend_for(session).estimate_rows(session, stmt.order_by(None))
        if estimate is not None:
            return estimate, True
        return count_rows(session, stmt), False
    return count_rows(session, stmt), None


def paginate(session: Session, stmt: Select, window: Window, keys: Sequence[SortKey], *,
             feed: str | None = None) -> Page:
    """The page of ``stmt`` (ordered by ``keys``, :func:`apply_sort`) that ``window`` asks for.

    At most three statements, whatever the page's size or depth: the
    watermark of ``feed`` when this request starts a walk (no cursor),
    taken *before* any row is read; the count ``window.count`` asks for; the
    page, ``per_page + 1`` rows (the extra one says whether another
    follows). A cursor's page is a keyset range (:func:`after`), never an
    ``OFFSET``.
    """
    watermark = changes.watermark(session) if feed is not None and window.after is None else None
    total, estimated = count_matching(session, stmt, window.count)
    if window.after is not None:
        stmt = stmt.where(after(keys, window.after))
    elif window.page is not None and window.page > 1:
        stmt = stmt.offset((window.page - 1) * window.per_page)
    result = session.execute(stmt.limit(window.per_page + 1))
    rows = list(result.scalars() if _selects_entity(stmt) else result)
    items = rows[:window.per_page]
    next_key = tuple(key.value_of(items[-1]) for key in keys) if len(rows) > window.per_page else None
    return Page(items=items, page=None if window.after is not None else window.page or 1,
                per_page=window.per_page, total_items=total, total_is_estimate=estimated, next_key=next_key,
                watermark=watermark)


@dataclass
class Export:
    """Every row of a query, for a streamed download; read when the body is read.

    ``rows(session)`` gives the objects to marshal (JSON, NDJSON and the
    generic CSV). ``csv(session, columns)``, when given, gives ready CSV
    bytes (header included) for those output columns, formatted by the
    database. ``session`` belongs to the response body, not to the request.
    ``count(session)``, when given, counts the items before the download
    starts (the ``X-Total-Count`` a progress bar shows); it runs in the
    request's session. ``feed`` names the change feed that continues the
    export (its watermark is the answer's ``X-Changes-Since``).
    """

    name: str
    rows: Callable[[Session], Iterable]
    csv: Callable[[Session, Sequence[str]], Iterable[bytes]] | None = None
    count: Callable[[Session], int] | None = None
    #: The change feed that continues this export ("product", "order"): the answer carries X-Changes-Since.
    feed: str | None = None


@dataclass(frozen=True)
class IfMatch:
    """What an ``If-Match`` header accepts: some versions of the item, or any (``*``)."""

    versions: frozenset[int] = frozenset()
    any: bool = False

    def check(self, version: int) -> None:
        """PreconditionFailed unless ``version`` is acceptable."""
        if not (self.any or version in self.versions):
            raise PreconditionFailed(version)


def check_version(version: int, if_match: IfMatch | None) -> None:
    """The If-Match rule of every conditional write; no header, no condition."""
    if if_match is not None:
        if_match.check(version)
