"""Events (DESIGN §11): ``GET /events``, every type's events in commit order (services/events.py)."""

from __future__ import annotations

from ..common import inputs
from ..common.contract import documented, marshal_with, parses, requires
from ..common.event_fields import event_fields
from ..common.parsing import RequestParser
from ..common.representations import JSON, NDJSON
from ..common.resource import Resource
from ..db import get_session
from ..models import WEBHOOK_EVENT_TYPES
from ..services import events as events_service

# A subscription's events (a body's array) and a feed's filter (one comma-separated parameter).
event_types = inputs.name_list("event type", WEBHOOK_EVENT_TYPES)
event_type_filter = inputs.name_list("event type", WEBHOOK_EVENT_TYPES, query=True)


events_parser = RequestParser(location="args")
events_parser.add_argument("since", type=inputs.watermark, required=True)
events_parser.add_argument("types", type=event_type_filter)
events_parser.add_argument("limit", type=inputs.int_range(1, 1000), default=100)


class EventList(Resource):
    media_types = (JSON, NDJSON)

    @documented(summary="What happened since a watermark: every event, in commit order (follow next_since)",
                errors=(410,))
    @marshal_with(event_fields, feed=True)
    @parses(events_parser)
    @requires("admin", "webhooks:manage")
    def get(self, args):
        return events_service.feed(get_session(), args.since, types=args.types, limit=args.limit)
