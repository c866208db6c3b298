"""Sales reports: exact figures on a fixed data set."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from myapi.db import get_db
from myapi.models import Order, OrderItem, Product, User

API = "/api/v1"
UTC = dt.timezone.utc


@pytest.fixture
def sales(app, admin):
    """Three customers, two categories, orders across 2025 in every status."""
    with get_db(app).session() as session, session.begin():
        tea = Product(sku="T-1", name="Tea", category="tea", price=Decimal("2.50"), stock=100)
        mug = Product(sku="M-1", name="Mug", category="mugs", price=Decimal("7.00"), stock=100)
        users = [User(username=name, email=f"{name}@example.com", password_hash="not-a-hash",
                      role="customer") for name in ("ann", "ben", "cat")]
        session.add_all([tea, mug, *users])
        session.flush()

        def add(user, status, when, lines):
            order = Order(user_id=user.id, status=status, shipping_address="x", date_created=when,
                          total_amount=sum((p.price * q for p, q in lines), Decimal("0.00")))
            order.items = [OrderItem(product_id=p.id, product_name=p.name, quantity=q, unit_price=p.price)
                           for p, q in lines]
            session.add(order)

        ann, ben, cat = users
        add(ann, "paid", dt.datetime(2025, 1, 10, tzinfo=UTC), [(tea, 2), (mug, 1)])      # 12.00
        add(ann, "completed", dt.datetime(2025, 1, 20, tzinfo=UTC), [(tea, 1)])          # 2.50
        add(ben, "shipped", dt.datetime(2025, 3, 5, tzinfo=UTC), [(mug, 3)])             # 21.00
        add(cat, "pending", dt.datetime(2025, 3, 6, tzinfo=UTC), [(mug, 10)])            # not revenue
        add(cat, "cancelled", dt.datetime(2025, 3, 7, tzinfo=UTC), [(tea, 10)])          # not revenue
        add(cat, "paid", dt.datetime(2025, 12, 31, 23, 59, tzinfo=UTC), [(tea, 4)])       # 10.00
        add(cat, "paid", dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC), [(tea, 1)])          # 2.50, next year


def get(client, admin, path):
    response = client.get(f"{API}/reports/{path}", headers=admin.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def test_top_customers(client, admin, sales):
    assert get(client, admin, "top-customers") == [
        {"username": "ben", "email": "ben@example.com", "order_count": 1, "total_spent": "21.00"},
        {"username": "ann", "email": "ann@example.com", "order_count": 2, "total_spent": "14.50"},
        {"username": "cat", "email": "cat@example.com", "order_count": 2, "total_spent": "12.50"},
    ]
    assert [r["username"] for r in get(client, admin, "top-customers?limit=1")] == ["ben"]
    in_january = get(client, admin, "top-customers?interval=2025-01")
    assert in_january == [{"username": "ann", "email": "ann@example.com", "order_count": 2, "total_spent": "14.50"}]


def test_revenue_by_category(client, admin, sales):
    assert get(client, admin, "revenue-by-category") == [
        {"category": "mugs", "revenue": "28.00", "units_sold": 4},
        {"category": "tea", "revenue": "20.00", "units_sold": 8},
    ]
    assert get(client, admin, "revenue-by-category?interval=2025-03-01/2025-03-31") == [
        {"category": "mugs", "revenue": "21.00", "units_sold": 3}]


def test_monthly_revenue_with_running_total(client, admin, sales):
    months = get(client, admin, "monthly-revenue?year=2025")
    assert len(months) == 12
    assert months[0] == {"month": "2025-01", "order_count": 2, "unique_customers": 1, "revenue": "14.50",
                         "running_total": "14.50"}
    assert months[1] == {"month": "2025-02", "order_count": 0, "unique_customers": 0, "revenue": "0.00",
                         "running_total": "14.50"}
    assert months[2] == {"month": "2025-03", "order_count": 1, "unique_customers": 1, "revenue": "21.00",
                         "running_total": "35.50"}
    assert months[11] == {"month": "2025-12", "order_count": 1, "unique_customers": 1, "revenue": "10.00",
                          "running_total": "45.50"}
    assert get(client, admin, "monthly-revenue?year=2026")[0]["revenue"] == "2.50"


def test_reports_as_csv(client, admin, sales):
    response = client.get(f"{API}/reports/top-customers?format=csv", headers=admin.headers)
    assert response.mimetype == "text/csv"
    lines = response.data.decode().splitlines()
    assert lines[0] == "username,email,order_count,total_spent"
    assert lines[1] == "ben,ben@example.com,1,21.00"


def test_empty_reports(client, admin):
    assert get(client, admin, "top-customers") == []
    assert client.get(f"{API}/reports/revenue-by-category?format=csv",
                      headers=admin.headers).data.decode().splitlines() == ["category,revenue,units_sold"]


def test_reports_are_admin_only(client, customer):
    for path in ("top-customers", "revenue-by-category", "monthly-revenue"):
        assert client.get(f"{API}/reports/{path}", headers=customer.headers).status_code == 403
        assert client.get(f"{API}/reports/{path}").status_code == 401


@pytest.mark.parametrize("query", ["top-customers?limit=0", "top-customers?limit=1000",
                                   "top-customers?interval=yesterday", "revenue-by-category?interval=2025-02/2025-01",
                                   "monthly-revenue?year=twenty", "monthly-revenue?year=1800",
                                   "monthly-revenue?year=9999",
                                   "monthly-revenue?month=1"])
def test_bad_report_parameters_are_400(client, admin, query):
    response = client.get(f"{API}/reports/{query}", headers=admin.headers)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
