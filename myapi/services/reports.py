"""Sales reports. Revenue counts orders that are paid, shipped or completed:
money that came in and did not go back (pending orders are not paid yet,
cancelled ones were refunded or never paid).

All sums run in the database over integer cents, so they are exact on SQLite
and PostgreSQL alike; times are UTC.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Select, distinct, func, select
from sqlalchemy.orm import Session

from ..models import CENT, Money, Order, OrderItem, Product, User
from .backends import backend_for

REVENUE_STATUSES = ("paid", "shipped", "completed")
ZERO = Decimal("0.00")


def _in_interval(stmt: Select, interval: tuple[dt.datetime, dt.datetime] | None) -> Select:
    if interval is not None:
        start, end = interval
        stmt = stmt.where(Order.date_created >= start, Order.date_created < end)
    return stmt


def _money(value) -> Decimal:
    return ZERO if value is None else Decimal(value).quantize(CENT)


def top_customers(session: Session, *, limit: int = 10,
                  interval: tuple[dt.datetime, dt.datetime] | None = None) -> list[dict]:
    total_spent = func.sum(Order.total_amount, type_=Money).label("total_spent")
    stmt = (
        select(User.username, User.email, func.count(Order.id).label("order_count"), total_spent)
        .join(Order, Order.user_id == User.id)
        .where(Order.status.in_(REVENUE_STATUSES))
        .group_by(User.id, User.username, User.email)
        .order_by(total_spent.desc(), User.username)
        .limit(limit)
    )
    return [
        {"username": row.username, "email": row.email, "order_count": row.order_count,
         "total_spent": _money(row.total_spent)}
        for row in session.execute(_in_interval(stmt, interval))
    ]


def revenue_by_category(session: Session, *,
                        interval: tuple[dt.datetime, dt.datetime] | None = None) -> list[dict]:
    """Revenue and units per category (the product's current category)."""
    revenue = func.sum(OrderItem.unit_price * OrderItem.quantity, type_=Money).label("revenue")
    stmt = (
        select(Product.category, revenue, func.sum(OrderItem.quantity).label("units_sold"))
        .join(OrderItem, OrderItem.product_id == Product.id)
        .join(Order, Order.id == OrderItem.order_id)
        .where(Order.status.in_(REVENUE_STATUSES))
        .group_by(Product.category)
        .order_by(revenue.desc(), Product.category)
    )
    return [
        {"category": row.category, "revenue": _money(row.revenue), "units_sold": int(row.units_sold or 0)}
        for row in session.execute(_in_interval(stmt, interval))
    ]


def monthly_revenue(session: Session, *, year: int) -> list[dict]:
    """Twelve months of ``year``; the running total comes from a window function."""
    month = backend_for(session).month(Order.date_created).label("month")
    revenue = func.sum(Order.total_amount, type_=Money)
    stmt = (
        select(
            month,
            func.count(Order.id).label("order_count"),
            func.count(distinct(Order.user_id)).label("unique_customers"),
            revenue.label("revenue"),
            func.sum(revenue).over(order_by=month).label("running_total"),
        )
        .where(Order.status.in_(REVENUE_STATUSES))
        .group_by(month)
        .order_by(month)
    )
    start = dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(year + 1, 1, 1, tzinfo=dt.timezone.utc)
    rows = {row.month: row for row in session.execute(_in_interval(stmt, (start, end)))}

    report, running = [], ZERO
    for number in range(1, 13):
        key = f"{year:04d}-{number:02d}"
        row = rows.get(key)
        if row is not None:
            running = _money(row.running_total)
        report.append({
            "month": key,
            "order_count": row.order_count if row else 0,
            "unique_customers": row.unique_customers if row else 0,
            "revenue": _money(row.revenue) if row else ZERO,
            "running_total": running,  # months without sales carry the total forward
        })
    return report
