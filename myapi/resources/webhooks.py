"""Webhook subscriptions (DESIGN §11): WebhookList (create, list), Webhook (read, change, delete) and
WebhookSecret (rotate). Admins only, scope ``webhooks:manage``.

The signing secret (``whsec_…``) is in the answers of POST /webhooks and
POST /webhooks/<id>/rotate-secret only; neither is idempotent-replayable
(a stored replay would keep the secret in a second table).
"""

from __future__ import annotations

from flask import current_app
from flask_restful import fields

from ..common import inputs
from ..common.auth import current_user
from ..common.contract import documented, marshal_with, parses, requires
from ..common.fields import API_PREFIX, DateTime, Nullable, OptionalDateTime, links
from ..common.pagination import add_pagination_args
from ..common.parsing import RequestParser, conditional_parser
from ..common.resource import Resource
from ..db import get_session
from ..models import DELIVERY_STATUSES
from ..services import webhook_delivery
from ..services import webhooks as webhooks_service
from .events import event_types

webhook_fields = {
    "id": fields.Integer,
    "user_id": fields.Integer,  # the admin who made it
    "url": fields.String,
    "events": fields.List(fields.String, attribute="event_list"),
    "description": fields.String,
    "is_active": fields.Boolean,
    "version": fields.Integer,
    "date_created": DateTime,
    "date_updated": DateTime,
    # Set after a rotation: until then deliveries carry the previous secret's signature too.
    "previous_secret_expires_at": OptionalDateTime,
    "links": links(self="/webhooks/{id}", deliveries="/webhooks/{id}/deliveries"),
}
# The answers that show the secret, once: POST /webhooks and POST /webhooks/<id>/rotate-secret.
created_webhook_fields = {**webhook_fields, "secret": fields.String}

list_parser = add_pagination_args(RequestParser(location="args"))
list_parser.add_argument("is_active", type=inputs.boolean)
list_parser.add_argument("sort", type=inputs.sort_spec(webhooks_service.SORT_KEYS))

create_parser = RequestParser(location="body")
create_parser.add_argument("url", type=inputs.web_url, required=True)
create_parser.add_argument("events", type=event_types, required=True)
create_parser.add_argument("description", type=inputs.text(500), default="")
create_parser.add_argument("is_active", type=inputs.boolean, default=True)

patch_parser = RequestParser(location="body")
patch_parser.add_argument("url", type=inputs.web_url, store_missing=False)
patch_parser.add_argument("events", type=event_types, store_missing=False)
patch_parser.add_argument("description", type=inputs.text(500), store_missing=False)
patch_parser.add_argument("is_active", type=inputs.boolean, store_missing=False)


def webhook_location(webhook) -> str:
    return f"{API_PREFIX}/webhooks/{webhook.id}"


def allow_private() -> bool:
    return bool(current_app.config.get("WEBHOOK_ALLOW_PRIVATE"))


class WebhookList(Resource):
    idempotent_post = False  # a replay would have to store the secret

    @documented(summary="List webhook subscriptions (never their secrets)")
    @marshal_with(webhook_fields, paged=True)
    @parses(list_parser)
    @requires("admin", "webhooks:manage")
    def get(self, args):
        return webhooks_service.list_webhooks(get_session(), **args)

    @documented(summary="Subscribe a URL to events: the signing secret is in this answer only")
    @marshal_with(created_webhook_fields, status=201, location=webhook_location, minimal=False)
    @parses(create_parser)
    @requires("admin", "webhooks:manage")
    def post(self, args):
        return webhooks_service.create_webhook(get_session(), current_user(), url=args.url, events=args.events,
                                               description=args.description, is_active=args.is_active,
                                               allow_private=allow_private())


class Webhook(Resource):
    @documented(summary="Read a webhook subscription (never its secret)")
    @marshal_with(webhook_fields, etag=True)
    @requires("admin", "webhooks:manage")
    def get(self, webhook_id: int):
        return webhooks_service.get_webhook(get_session(), webhook_id)

    @documented(summary="Change a webhook subscription's url, events, description or is_active")
    @marshal_with(webhook_fields, etag=True)
    @parses(patch_parser, conditional_parser)
    @requires("admin", "webhooks:manage")
    def patch(self, args, webhook_id: int):
        if_match = args.pop("if_match")
        return webhooks_service.change_webhook(get_session(), webhook_id, dict(args), if_match=if_match,
                                               allow_private=allow_private())

    @documented(summary="Delete a webhook subscription and its delivery log")
    @parses(conditional_parser)
    @requires("admin", "webhooks:manage")
    def delete(self, args, webhook_id: int):
        webhooks_service.delete_webhook(get_session(), webhook_id, if_match=args.if_match)


class WebhookSecret(Resource):
    idempotent_post = False  # a replay would have to store the secret

    @documented(summary="A new signing secret (in this answer only); the previous one keeps signing for 24 h")
    @marshal_with(created_webhook_fields, minimal=False)
    @requires("admin", "webhooks:manage")
    def post(self, webhook_id: int):
        return webhooks_service.rotate_secret(get_session(), webhook_id)


# -- the delivery log ---------------------------------------------------------------------

delivery_fields = {
    "id": fields.Integer,
    "webhook_id": fields.Integer,
    "event_id": fields.String(attribute=lambda delivery: f"evt_{delivery.change_id}"),
    "event_type": fields.String,
    "entity": fields.String,
    "entity_id": fields.Integer,
    "status": fields.String,  # pending | delivering | succeeded | failed
    "attempts": fields.Integer,
    "last_attempt_at": OptionalDateTime,
    "last_status_code": Nullable("integer", description="The receiver's last answer (null: none, see last_error)."),
    "last_error": Nullable("string", description="Why the last attempt got no answer (timeout, refused...)."),
    "next_attempt_at": OptionalDateTime,  # null once it ended
    "date_created": DateTime,
    "links": links(webhook="/webhooks/{webhook_id}", retry="/webhooks/{webhook_id}/deliveries/{id}/retry"),
}

deliveries_parser = add_pagination_args(RequestParser(location="args"))
deliveries_parser.add_argument("status", type=inputs.choice(*DELIVERY_STATUSES))
deliveries_parser.add_argument("sort", type=inputs.sort_spec(webhook_delivery.DELIVERY_SORT_KEYS))


class WebhookDeliveryList(Resource):
    @documented(summary="A webhook's deliveries: status, attempts, the last answer, the next attempt")
    @marshal_with(delivery_fields, paged=True)
    @parses(deliveries_parser)
    @requires("admin", "webhooks:manage")
    def get(self, args, webhook_id: int):
        return webhook_delivery.list_deliveries(get_session(), webhook_id, **args)


class WebhookDeliveryRetry(Resource):
    @documented(summary="Send a delivery again now (a failed one gets one more attempt)", errors=(409,))
    @marshal_with(delivery_fields)
    @requires("admin", "webhooks:manage")
    def post(self, webhook_id: int, delivery_id: int):
        return webhook_delivery.retry_now(get_session(), webhook_id, delivery_id)
