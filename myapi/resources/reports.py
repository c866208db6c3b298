"""Sales reports for admins, in JSON (``{"data": [...]}``) and CSV."""

from __future__ import annotations

import datetime as dt

from flask_restful import fields

from ..common import inputs
from ..common.auth import require_admin
from ..common.fields import Money, marshal
from ..common.openapi import documented
from ..common.parsing import RequestParser
from ..common.representations import Collection
from ..common.resource import Resource
from ..db import get_session
from ..services import reports as reports_service

top_customers_parser = RequestParser(location="args")
top_customers_parser.add_argument("limit", type=inputs.int_range(1, 100), default=10)
top_customers_parser.add_argument("interval", type=inputs.iso8601_interval)

interval_parser = RequestParser(location="args")
interval_parser.add_argument("interval", type=inputs.iso8601_interval)

year_parser = RequestParser(location="args")
year_parser.add_argument("year", type=inputs.int_range(1970, 9998), default=lambda: dt.date.today().year)

top_customer_fields = {
    "username": fields.String,
    "email": fields.String,
    "order_count": fields.Integer,
    "total_spent": Money,
}
category_revenue_fields = {
    "category": fields.String,
    "revenue": Money,
    "units_sold": fields.Integer,
}
monthly_revenue_fields = {
    "month": fields.String,
    "order_count": fields.Integer,
    "unique_customers": fields.Integer,
    "revenue": Money,
    "running_total": Money,
}


def report(rows: list[dict], row_fields: dict) -> Collection:
    return Collection(data=[marshal(row, row_fields) for row in rows], columns=list(row_fields))


class TopCustomers(Resource):
    @documented(parser=top_customers_parser, fields=top_customer_fields, collection="data", auth="admin",
                summary="The customers who spent most")
    def get(self):
        require_admin()
        args = top_customers_parser.parse_args()
        return report(reports_service.top_customers(get_session(), **args), top_customer_fields)


class RevenueByCategory(Resource):
    @documented(parser=interval_parser, fields=category_revenue_fields, collection="data", auth="admin",
                summary="Revenue and units sold per category")
    def get(self):
        require_admin()
        args = interval_parser.parse_args()
        return report(reports_service.revenue_by_category(get_session(), **args), category_revenue_fields)


class MonthlyRevenue(Resource):
    @documented(parser=year_parser, fields=monthly_revenue_fields, collection="data", auth="admin",
                summary="Revenue of each month of a year, with a running total")
    def get(self):
        require_admin()
        args = year_parser.parse_args()
        return report(reports_service.monthly_revenue(get_session(), **args), monthly_revenue_fields)
