"""Webhook subscriptions (DESIGN §11): where events go, and the secret that signs them.

A subscription names a URL and the event types it wants. Its signing
secret is Standard Webhooks' form, ``whsec_`` + base64 of 32 random bytes,
shown once (in the answer that creates or rotates it). Signing needs the
secret itself, so it is stored as given (unlike tokens and API keys, whose
hashes suffice). A rotation keeps the previous secret signing too for
``PREVIOUS_SECRET_TTL`` (24 h): every delivery meanwhile carries both
signatures, and receivers switch at their own pace.

Targets are checked (services/webhook_targets.py) when a subscription is
made or its URL changed, and again by the worker before every send. No Flask.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from ..models import WEBHOOK_EVENT_TYPES, User, Webhook, WebhookDelivery, utcnow
from .errors import Invalid, NotFound
from .issued import Issued
from .query import FIRST_PAGE, IfMatch, Page, Window, apply_sort, check_version, paginate, sort_keys
from .webhook_targets import check_target

SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks marker, not a secret)
PREVIOUS_SECRET_TTL = dt.timedelta(hours=24)
SORT_KEYS = {"id": Webhook.id, "date_created": Webhook.date_created, "url": Webhook.url}


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _events(events: list[str]) -> str:
    """Space-separated, in WEBHOOK_EVENT_TYPES order, each once."""
    unknown = [name for name in events if name not in WEBHOOK_EVENT_TYPES]
    if unknown or not events:
        raise Invalid("Unknown event types.", {"events": "choose from " + ", ".join(WEBHOOK_EVENT_TYPES)})
    return " ".join(name for name in WEBHOOK_EVENT_TYPES if name in events)


def create_webhook(session: Session, owner: User, *, url: str, events: list[str], description: str = "",
                   is_active: bool = True, allow_private: bool = False) -> Issued:
    """A new subscription of ``owner`` (an admin); Invalid naming ``url`` when it may not be a target."""
    check_target(url, allow_private=allow_private)
    secret = new_secret()
    webhook = Webhook(user_id=owner.id, url=url, events=_events(events), description=description or "",
                      is_active=is_active, secret=secret)
    session.add(webhook)
    session.flush()
    return Issued(webhook, secret)


def list_webhooks(session: Session, *, is_active: bool | None = None, sort=None,
                  window: Window = FIRST_PAGE) -> Page:
    stmt: Select = select(Webhook)
    if is_active is not None:
        stmt = stmt.where(Webhook.is_active.is_(is_active))
    return paginate(session, apply_sort(stmt, sort, SORT_KEYS, Webhook.id.asc()), window,
                    sort_keys(sort, SORT_KEYS, Webhook.id))


def get_webhook(session: Session, webhook_id: int) -> Webhook:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        raise NotFound(f"No webhook {webhook_id}.")
    return webhook


def change_webhook(session: Session, webhook_id: int, changes: dict, *, if_match: IfMatch | None = None,
                   allow_private: bool = False) -> Webhook:
    """Apply validated ``changes`` (url, events, description, is_active); a new url is checked again."""
    webhook = get_webhook(session, webhook_id)
    check_version(webhook.version, if_match)
    if "url" in changes:
        check_target(changes["url"], allow_private=allow_private)
        webhook.url = changes["url"]
    if "events" in changes:
        webhook.events = _events(changes["events"])
    if "description" in changes:
        webhook.description = changes["description"] or ""
    if "is_active" in changes:
        webhook.is_active = changes["is_active"]
    session.flush()
    return webhook


def delete_webhook(session: Session, webhook_id: int, *, if_match: IfMatch | None = None) -> None:
    """Delete a subscription and its delivery log (undelivered events are dropped with it)."""
    webhook = get_webhook(session, webhook_id)
    check_version(webhook.version, if_match)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id))
    session.delete(webhook)
    session.flush()


def rotate_secret(session: Session, webhook_id: int, *, now: dt.datetime | None = None) -> Issued:
    """A new secret; the current one keeps signing (beside it) for 24 h. A second rotation within
    the 24 h replaces the older previous secret: only the two newest are ever valid."""
    webhook = get_webhook(session, webhook_id)
    now = now or utcnow()
    webhook.previous_secret = webhook.secret
    webhook.previous_secret_expires_at = now + PREVIOUS_SECRET_TTL
    webhook.secret = new_secret()
    session.flush()
    return Issued(webhook, webhook.secret)


def signing_secrets(webhook: Webhook, now: dt.datetime | None = None) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one for 24 h."""
    now = now or utcnow()
    found = [webhook.secret]
    if webhook.previous_secret and webhook.previous_secret_expires_at and webhook.previous_secret_expires_at > now:
        found.append(webhook.previous_secret)
    return found
