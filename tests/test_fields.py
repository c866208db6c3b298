"""The compiled marshaller gives exactly what flask_restful.marshal gives."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import flask_restful
import pytest
from sqlalchemy import select

from myapi.common import fields as myfields
from myapi.db import get_db
from myapi.models import Order, OrderItem, Product, User
from myapi.resources import reports


@pytest.fixture
def rows(app):
    with get_db(app).session() as session, session.begin():
        user = User(username="ann", email="ann@example.com", password_hash="x", role="customer")
        product = Product(sku="T-1", name="Tea", description="", category="tea", price=Decimal("2.50"), stock=3)
        session.add_all([user, product])
        session.flush()
        order = Order(user_id=user.id, status="paid", shipping_address="x", total_amount=Decimal("5.00"))
        order.items = [OrderItem(product_id=product.id, product_name="Tea", quantity=2, unit_price=Decimal("2.50"))]
        session.add(order)
    session = get_db(app).session()
    yield session
    session.close()


@pytest.mark.parametrize("model,field_dict", [
    (User, myfields.user_fields), (Product, myfields.product_fields), (Order, myfields.order_fields),
])
def test_same_output_as_flask_restful_for_orm_objects(rows, model, field_dict):
    obj = rows.scalars(select(model)).first()
    assert myfields.marshal(obj, field_dict) == flask_restful.marshal(obj, field_dict)


def test_same_output_for_core_rows(rows):
    row = rows.execute(select(*[getattr(Product, c) for c in ("id", "sku", "name", "description", "category",
                                                              "price", "stock", "is_available", "date_created",
                                                              "date_updated")])).first()
    assert myfields.marshal(row, myfields.product_fields) == flask_restful.marshal(row, myfields.product_fields)


@pytest.mark.parametrize("field_dict", [reports.top_customer_fields, reports.monthly_revenue_fields])
def test_same_output_for_dicts_and_missing_values(field_dict):
    record = {"username": "ann", "email": None, "order_count": 2, "total_spent": Decimal("3.5"),
              "month": "2025-01", "revenue": Decimal("1"), "running_total": Decimal("1.005")}
    assert myfields.marshal(record, field_dict) == flask_restful.marshal(record, field_dict)


def test_token_fields_and_lists():
    token = {"token": "abc", "token_type": "Bearer", "expires_at": dt.datetime(2026, 1, 2, 3, 4, 5,
                                                                               tzinfo=dt.timezone.utc)}
    assert myfields.marshal(token, myfields.token_fields) == flask_restful.marshal(token, myfields.token_fields)
    assert myfields.marshal([token], myfields.token_fields) == [flask_restful.marshal(token, myfields.token_fields)]
