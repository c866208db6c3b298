"""Orders: placement that never oversells, reading, and status transitions.

Placement is one transaction. The product rows are locked in id order
(the backend's ``for_update``: ``SELECT ... FOR UPDATE`` on PostgreSQL; on
SQLite the request's ``BEGIN IMMEDIATE`` already serialises writers), then
availability and stock are checked, stock is decremented, prices are
snapshotted and the total is computed with Decimal. Locking in one global order means two orders for
overlapping products queue instead of deadlocking. The ``stock >= 0`` CHECK is
the last line of defence: even a bug here could not sell what is not there.

Cancelling a pending or paid order restocks its lines in the same
transaction as the status change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import Select, bindparam, insert, select, update
from sqlalchemy.orm import Session, selectinload

from ..models import CENT, Order, OrderItem, Product, User, utcnow
from . import changes as changes_service
from .backends import backend_for
from .changes import FeedPage, Watermark
from .errors import Conflict, InsufficientStock, Invalid, NotFound, PermissionDenied
from .query import FIRST_PAGE, Export, IfMatch, Page, Window, apply_sort, check_version, count_rows, paginate, sort_keys

SORT_KEYS = {
    "id": Order.id,
    "date_created": Order.date_created,
    "total_amount": Order.total_amount,
    "status": Order.status,
}

# (from, to) -> who may do it
TRANSITIONS = {
    ("pending", "paid"): "admin",
    ("paid", "shipped"): "admin",
    ("shipped", "completed"): "admin",
    ("pending", "cancelled"): "owner",
    ("paid", "cancelled"): "owner",
}
ADMIN_ONLY_TARGETS = {"paid", "shipped", "completed"}
RESTOCKING_TARGETS = {"cancelled"}


def _lock_products(session: Session, product_ids: Sequence[int]) -> dict[int, Product]:
    """Load (and on PostgreSQL lock) the products, always in id order."""
    stmt = select(Product).where(Product.id.in_(sorted(product_ids))).order_by(Product.id)
    stmt = backend_for(session).for_update(stmt)
    return {product.id: product for product in session.scalars(stmt)}


def place_order(session: Session, user: User, lines: Sequence[tuple[int, int]], shipping_address: str) -> Order:
    """Place an order for ``lines`` of (product_id, quantity), ids distinct.

    Raises UnknownProducts (400) for ids that do not exist, Conflict (409)
    for unavailable products and InsufficientStock (409) naming every short
    line; in each case nothing was written.

    Core statements, not the ORM's unit of work (a third of the request's
    time): lock and read the products, insert the order, decrement the
    stock (one executemany; the rows are locked, so no version check), insert
    the lines (one executemany). The triggers record the changes as for any
    write. The answer is a transient Order built from what was written.
    """
    products = {row.id: row for row in session.execute(
        backend_for(session).for_update(_PRODUCTS_TO_ORDER), {"ids": sorted(pid for pid, _ in lines)})}

    unknown = [product_id for product_id, _ in lines if product_id not in products]
    if unknown:
        raise Invalid(
            "Some products do not exist.",
            [{"product_id": pid, "field": "product_id", "message": "No such product."} for pid in unknown],
        )
    unavailable = [pid for pid, _ in lines if not products[pid].is_available]
    if unavailable:
        raise Conflict(
            "Some products are not available for sale.",
            [{"product_id": pid, "field": "product_id", "message": "This product is not available."}
             for pid in unavailable],
        )
    short = [
        {"product_id": pid, "field": "quantity", "requested": quantity, "available": products[pid].stock,
         "message": f"Only {products[pid].stock} in stock." if products[pid].stock else "Out of stock."}
        for pid, quantity in lines
        if products[pid].stock < quantity
    ]
    if short:
        raise InsufficientStock("Not enough stock for some items; nothing was ordered.", short)

    now = utcnow()
    total = sum((products[pid].price * quantity for pid, quantity in lines), Decimal("0.00")).quantize(CENT)
    values = {"user_id": user.id, "status": "pending", "shipping_address": shipping_address, "total_amount": total,
              "version": 1, "date_created": now, "date_updated": now}
    order = Order(id=session.execute(_INSERT_ORDER, values).scalar_one(), **values)
    session.execute(_DECREMENT_STOCK, [{"product_id": pid, "quantity": quantity, "now": now}
                                       for pid, quantity in lines])
    lines_written = [{"order_id": order.id, "product_id": pid, "product_name": products[pid].name,
                      "quantity": quantity, "unit_price": products[pid].price} for pid, quantity in lines]
    session.execute(_INSERT_LINES, lines_written)
    order.items = [OrderItem(**line) for line in lines_written]
    return order


_PRODUCTS, _ORDERS, _ITEMS = Product.__table__, Order.__table__, OrderItem.__table__
# Built once, as the statements below: constructing one costs about as much as running its cached compilation.
_INSERT_ORDER = insert(_ORDERS).returning(_ORDERS.c.id)
_INSERT_LINES = insert(_ITEMS)
_PRODUCTS_TO_ORDER = (select(_PRODUCTS.c.id, _PRODUCTS.c.name, _PRODUCTS.c.price, _PRODUCTS.c.stock,
                             _PRODUCTS.c.is_available)
                      .where(_PRODUCTS.c.id.in_(bindparam("ids", expanding=True))).order_by(_PRODUCTS.c.id))
_DECREMENT_STOCK = (update(_PRODUCTS).where(_PRODUCTS.c.id == bindparam("product_id"))
                    .values(stock=_PRODUCTS.c.stock - bindparam("quantity"), version=_PRODUCTS.c.version + 1,
                            date_updated=bindparam("now")))


def _with_items(stmt: Select) -> Select:
    return stmt.options(selectinload(Order.items))


def get_order(session: Session, order_id: int, *, for_update: bool = False) -> Order | None:
    stmt = _with_items(select(Order).where(Order.id == order_id))
    if for_update:
        stmt = backend_for(session).for_update(stmt, of=Order)
    return session.scalars(stmt).first()


def visible_order(session: Session, user: User, order_id: int, *, for_update: bool = False) -> Order:
    """The order if ``user`` owns it or is an admin; NotFound otherwise (no existence leak)."""
    order = get_order(session, order_id, for_update=for_update)
    if order is None or (order.user_id != user.id and not user.is_admin):
        raise NotFound(f"No order {order_id}.")
    return order


def filtered(user: User, *, status: str | None = None, user_id: int | None = None,
             created: tuple[dt.datetime, dt.datetime] | None = None, sort=None) -> Select:
    """Orders ``user`` may see, filtered and sorted (items loaded in one more query).

    ``user_id`` is an admin's filter: a customer may name only themself.
    """
    if user_id not in (None, user.id) and not user.is_admin:
        raise PermissionDenied("Only an admin may list another user's orders.",
                               {"user_id": "Leave it out to list your own orders."})
    stmt = select(Order)
    if not user.is_admin:
        stmt = stmt.where(Order.user_id == user.id)
    elif user_id is not None:
        stmt = stmt.where(Order.user_id == user_id)
    if status is not None:
        stmt = stmt.where(Order.status == status)
    if created is not None:
        start, end = created
        stmt = stmt.where(Order.date_created >= start, Order.date_created < end)
    return _with_items(apply_sort(stmt, sort, SORT_KEYS, Order.id.asc()))


def list_orders(session: Session, user: User, *, window: Window = FIRST_PAGE, **filters) -> Page:
    """A page of the orders ``user`` may see that match (a walk is continued by the orders' change feed)."""
    return paginate(session, filtered(user, **filters), window, sort_keys(filters.get("sort"), SORT_KEYS, Order.id),
                    feed="order")


def export_orders(user: User, **filters) -> Export:
    """Every order ``user`` may see that matches, 500 at a time (their items in one IN query per chunk)."""
    stmt = filtered(user, **filters).execution_options(yield_per=500)
    return Export(name=f"orders-{dt.date.today().isoformat()}", rows=lambda session: session.scalars(stmt),
                  count=lambda session: count_rows(session, stmt), feed="order")


def changes(session: Session, user: User, since: Watermark, *, limit: int = 100) -> FeedPage:
    """The orders' change feed after ``since``: a customer's own orders, every order for an admin."""
    return changes_service.feed(session, "order", since, limit=limit, owner_id=None if user.is_admin else user.id)


def change_status(session: Session, user: User, order_id: int, target: str, *,
                  if_match: IfMatch | None = None) -> Order:
    """Move the order to ``target`` if the transition is legal and ``user`` may make it.

    The order row is locked first (FOR UPDATE on PostgreSQL), so two
    changes of one order queue; a stale If-Match changes nothing.
    """
    order = visible_order(session, user, order_id, for_update=True)
    check_version(order.version, if_match)
    if target in ADMIN_ONLY_TARGETS and not user.is_admin:
        raise PermissionDenied(f"Only an admin may mark an order {target}.")
    if (order.status, target) not in TRANSITIONS:
        raise Conflict(
            f"An order cannot go from {order.status} to {target}.",
            {"status": f"Allowed from {order.status}: "
                       + (", ".join(t for (f, t) in TRANSITIONS if f == order.status) or "nothing (final)")},
        )
    if target in RESTOCKING_TARGETS:
        products = _lock_products(session, [item.product_id for item in order.items])
        for item in order.items:
            products[item.product_id].stock += item.quantity
    order.status = target
    session.flush()
    return order
