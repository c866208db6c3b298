"""Orders: place and list (OrderList), one order and its status (Order), export.

Customers see only their own orders; anyone else's answers 404. Admins see
all and may filter by ``user_id``. Status changes follow the transitions in
services/orders.py: the owner (or an admin) may cancel a pending or paid
order, which restocks it; only an admin moves it to paid, shipped, completed.
"""

from __future__ import annotations

import datetime as dt

from ..common import inputs
from ..common.auth import require_user
from ..common.errors import Problem
from ..common.fields import API_PREFIX, field_names, marshal, order_fields
from ..common.openapi import documented
from ..common.pagination import add_pagination_args, page_response
from ..common.parsing import RequestParser, is_json_request
from ..common.representations import CSV, JSON, NDJSON, marshalled, streamed
from ..common.resource import Resource, check_if_match, item, not_modified
from ..db import get_session, stream_session
from ..models import ORDER_STATUSES
from ..services import orders as orders_service

filter_parser = RequestParser(location="args")
filter_parser.add_argument("status", type=inputs.choice(*ORDER_STATUSES))
filter_parser.add_argument("user_id", type=inputs.positive_int)
filter_parser.add_argument("created", type=inputs.iso8601_interval)
filter_parser.add_argument("sort", type=inputs.sort_spec(orders_service.SORT_KEYS))

list_parser = add_pagination_args(filter_parser.copy())

place_parser = RequestParser(location="body")
place_parser.add_argument("items", type=inputs.order_items, required=True)
place_parser.add_argument("shipping_address", type=inputs.text(500, 1, multiline=True), required=True)

status_parser = RequestParser(location="body")
status_parser.add_argument("status", type=inputs.choice(*ORDER_STATUSES), required=True)


def order_location(order) -> str:
    return f"{API_PREFIX}/orders/{order.id}"


def parse_filters(parser, user) -> dict:
    """The parsed filters; ``user_id`` is an admin's filter (a customer may name only themself)."""
    args = dict(parser.parse_args())
    if args.get("user_id") not in (None, user.id) and not user.is_admin:
        raise Problem(403, "Only an admin may list another user's orders.",
                      errors={"user_id": "Leave it out to list your own orders."})
    return args


class OrderList(Resource):
    @documented(parser=list_parser, fields=order_fields, collection="page", auth="user", errors=(403,),
                summary="List your orders (an admin: everyone's)")
    def get(self):
        user = require_user()
        args = parse_filters(list_parser, user)
        page = orders_service.list_orders(get_session(), user, **args)
        return page_response(page, order_fields)

    @documented(parser=place_parser, fields=order_fields, status=201, etag=True, auth="user", errors=(409,),
                body_media_types=(JSON,), summary="Place an order")
    def post(self):
        user = require_user()
        if not is_json_request():
            raise Problem(415, "Send the order as application/json (a form cannot express its items).",
                          headers={"Accept-Post": "application/json"})
        args = place_parser.parse_args()
        order = orders_service.place_order(get_session(), user, args["items"], args["shipping_address"])
        return item(marshal(order, order_fields), order.version, 201, {"Location": order_location(order)})


class Order(Resource):
    @documented(fields=order_fields, etag=True, auth="user", summary="Read an order")
    def get(self, order_id: int):
        order = orders_service.visible_order(get_session(), require_user(), order_id)
        return not_modified(order.version) or item(marshal(order, order_fields), order.version)

    @documented(parser=status_parser, fields=order_fields, etag=True, auth="user", errors=(403, 409),
                summary="Change an order's status (cancel it; an admin: pay, ship, complete)")
    def patch(self, order_id: int):
        user = require_user()
        args = status_parser.parse_args()
        session = get_session()
        order = orders_service.visible_order(session, user, order_id, for_update=True)
        check_if_match(order.version)
        orders_service.change_status(session, user, order, args["status"])
        return item(marshal(order, order_fields), order.version)


class OrderExport(Resource):
    media_types = (JSON, CSV, NDJSON)

    @documented(parser=filter_parser, fields=order_fields, collection="stream", auth="user", errors=(403,),
                summary="Export every matching order (streamed JSON, NDJSON or CSV)")
    def get(self):
        user = require_user()
        args = parse_filters(filter_parser, user)
        stmt = orders_service.filtered(user, **args)
        filename = f"orders-{dt.date.today().isoformat()}"
        def orders(session):  # 500 at a time, their items in one IN query per chunk
            return session.scalars(stmt.execution_options(yield_per=500))

        records = marshalled(stream_session(), orders, order_fields)
        return streamed(records, field_names(order_fields), filename)
