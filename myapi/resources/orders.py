"""Orders: place and list (OrderList), one order and its status (Order), export.

Customers see only their own orders; anyone else's answers 404. Admins see
all and may filter by ``user_id``. Status changes follow the transitions in
services/orders.py: the owner (or an admin) may cancel a pending or paid
order, which restocks it; only an admin moves it to paid, shipped, completed.
"""

from __future__ import annotations

from ..common import inputs
from ..common.auth import current_user
from ..common.contract import documented, marshal_with, parses, requires
from ..common.fields import API_PREFIX, order_change_fields, order_fields
from ..common.pagination import add_pagination_args
from ..common.parsing import JSON_TYPES, RequestParser, conditional_parser
from ..common.representations import CSV, JSON, NDJSON
from ..common.resource import Resource
from ..db import get_session
from ..models import ORDER_STATUSES
from ..services import orders as orders_service

filter_parser = RequestParser(location="args")
filter_parser.add_argument("status", type=inputs.choice(*ORDER_STATUSES))
filter_parser.add_argument("user_id", type=inputs.positive_int)
filter_parser.add_argument("created", type=inputs.iso8601_interval)
filter_parser.add_argument("sort", type=inputs.sort_spec(orders_service.SORT_KEYS))

list_parser = add_pagination_args(filter_parser.copy())

# JSON only: a form cannot express the items.
place_parser = RequestParser(location="body", media_types=JSON_TYPES)
place_parser.add_argument("items", type=inputs.order_items, required=True)
place_parser.add_argument("shipping_address", type=inputs.text(500, 1, multiline=True), required=True)

status_parser = RequestParser(location="body")
status_parser.add_argument("status", type=inputs.choice(*ORDER_STATUSES), required=True)


def order_location(order) -> str:
    return f"{API_PREFIX}/orders/{order.id}"


class OrderList(Resource):
    change_feed = "/orders/changes"  # the feed that continues it: its answers carry X-Changes-Since

    @documented(summary="List your orders (an admin: everyone's)", errors=(403,))
    @marshal_with(order_fields, paged=True)
    @parses(list_parser)
    @requires("user", "orders:read")
    def get(self, args):
        return orders_service.list_orders(get_session(), current_user(), **args)

    @documented(summary="Place an order", errors=(409,))
    @marshal_with(order_fields, status=201, etag=True, location=order_location)
    @parses(place_parser)
    @requires("user", "orders:write")
    def post(self, args):
        return orders_service.place_order(get_session(), current_user(), args["items"], args.shipping_address)


class Order(Resource):
    @documented(summary="Read an order")
    @marshal_with(order_fields, etag=True)
    @requires("user", "orders:read")
    def get(self, order_id: int):
        return orders_service.visible_order(get_session(), current_user(), order_id)

    @documented(summary="Change an order's status (cancel it; an admin: pay, ship, complete)", errors=(403, 409))
    @marshal_with(order_fields, etag=True)
    @parses(status_parser, conditional_parser)
    @requires("user", "orders:write")
    def patch(self, args, order_id: int):
        return orders_service.change_status(get_session(), current_user(), order_id, args.status,
                                            if_match=args.if_match)


class OrderExport(Resource):
    change_feed = "/orders/changes"  # the feed that continues it: its answers carry X-Changes-Since
    media_types = (JSON, CSV, NDJSON)

    @documented(summary="Export every matching order (streamed JSON, NDJSON or CSV)", errors=(403,))
    @marshal_with(order_fields, export=True)
    @parses(filter_parser)
    @requires("user", "orders:read")
    def get(self, args):
        return orders_service.export_orders(current_user(), **args)


# -- the change feed (DESIGN §9) ------------------------------------------------------

changes_parser = RequestParser(location="args")
changes_parser.add_argument("since", type=inputs.watermark, required=True)
changes_parser.add_argument("limit", type=inputs.int_range(1, 1000), default=100)


class OrderChanges(Resource):
    media_types = (JSON, NDJSON, CSV)

    @documented(summary="What changed in your orders (an admin: everyone's) since a watermark", errors=(410,))
    @marshal_with(order_change_fields, feed=True, select_within="item")
    @parses(changes_parser)
    @requires("user", "orders:read")
    def get(self, args):
        return orders_service.changes(get_session(), current_user(), args.since, limit=args.limit)
