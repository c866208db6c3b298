"""How an event is shown (DESIGN §11): in ``GET /events`` and in every webhook delivery's body.

``data`` is the item in the form its own endpoint answers (a product, an
order, an import's summary), or ``{"id": …}`` when it no longer exists.
"""

from __future__ import annotations

from flask_restful import fields

from .fields import DateTime, marshal, order_fields, product_fields


def item_fields(entity: str) -> dict:
    if entity == "import":
        from ..resources.imports import import_summary_fields  # the resources' own form; no import cycle

        return import_summary_fields
    return {"product": product_fields, "order": order_fields}[entity]


def event_data(event) -> dict:
    """The ``data`` of an event (a services.events.Event)."""
    if event.item is None:
        return {"id": event.entity_id}
    return marshal(event.item, item_fields(event.entity))


class EventData(fields.Raw):
    """The item an event is about, as it is now; ``{"id"}`` when it is gone."""

    schema = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"],
              "description": "A product, an order or an import (its summary) as GET of it answers now; only "
                             "{\"id\"} when it no longer exists."}

    def __init__(self):
        super().__init__(attribute=lambda event: event)

    def format(self, value):
        return event_data(value)


event_fields = {
    "id": fields.String,  # evt_<n>: the same in every answer and delivery (the webhook-id header)
    "type": fields.String,
    "created": DateTime,
    "data": EventData,
    "seq": fields.String,  # the entry's watermark: following the feed from it continues after it
}


def delivery_body(event) -> dict:
    """What a webhook POSTs: ``{"id", "type", "created", "data"}``."""
    return {"id": event.id, "type": event.type, "created": DateTime().format(event.created),
            "data": event_data(event)}
