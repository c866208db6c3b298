"""Sales reports for admins, in JSON (``{"data": [...]}``) and CSV."""

from __future__ import annotations

import datetime as dt

from flask_restful import fields

from ..common import inputs
from ..common.contract import documented, marshal_with, parses, requires
from ..common.fields import Money
from ..common.parsing import RequestParser
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


class TopCustomers(Resource):
    @documented(summary="The customers who spent most")
    @marshal_with(top_customer_fields, envelope="data")
    @parses(top_customers_parser)
    @requires("admin", "reports:read")
    def get(self, args):
        return reports_service.top_customers(get_session(), **args)


class RevenueByCategory(Resource):
    @documented(summary="Revenue and units sold per category")
    @marshal_with(category_revenue_fields, envelope="data")
    @parses(interval_parser)
    @requires("admin", "reports:read")
    def get(self, args):
        return reports_service.revenue_by_category(get_session(), **args)


class MonthlyRevenue(Resource):
    @documented(summary="Revenue of each month of a year, with a running total")
    @marshal_with(monthly_revenue_fields, envelope="data")
    @parses(year_parser)
    @requires("admin", "reports:read")
    def get(self, args):
        return reports_service.monthly_revenue(get_session(), **args)
