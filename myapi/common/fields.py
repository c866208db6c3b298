"""Output fields and the field dicts that shape every entity (DESIGN §3).

Money is a decimal string with two places ("19.99"); times are ISO 8601 UTC
with ``Z``. Links are paths built from a template (``Link``) rather than
``fields.Url``: the API's URLs are fixed, and a per-row ``url_for`` is the
slowest part of marshalling a page.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from string import Formatter

from flask_restful import fields

API_PREFIX = "/api/v1"
CENT = Decimal("0.01")


class Money(fields.Raw):
    """A decimal string with exactly two places."""

    schema = {"type": "string", "pattern": r"^\d+\.\d{2}$", "examples": ["19.99"]}

    def format(self, value):
        return str(Decimal(value).quantize(CENT))


class DateTime(fields.Raw):
    """ISO 8601 in UTC with a ``Z``, to the second."""

    schema = {"type": "string", "format": "date-time"}

    def format(self, value: dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class Template(fields.Raw):
    """A string made from attributes of the object, e.g. ``Template("Hey {username}!")``.

    Unlike ``fields.FormattedString`` it reads attributes by name, so it works
    on ORM rows whose ``__dict__`` is not a plain record.
    """

    schema = {"type": "string"}

    def __init__(self, template: str):
        super().__init__()
        self.template = template
        self.keys = [name for _, name, _, _ in Formatter().parse(template) if name]

    def output(self, key, obj):
        return self.template.format(**{name: fields.get_value(name, obj) for name in self.keys})


class Link(Template):
    """A path inside the API, e.g. ``Link("/users/{id}")`` → ``/api/v1/users/7``."""

    schema = {"type": "string", "format": "uri-reference"}

    def __init__(self, template: str):
        super().__init__(API_PREFIX + template)


def links(**templates: str) -> fields.Nested:
    """A ``links`` object whose members are Links built from the same object."""
    return fields.Nested({rel: Link(t) for rel, t in templates.items()}, attribute=lambda obj: obj)


user_fields = {
    "id": fields.Integer,
    "username": fields.String,
    "email": fields.String,
    "user_priority": fields.Integer,
    "role": fields.String,
    "is_active": fields.Boolean,
    "custom_greeting": Template("Hey there {username}!"),
    "date_created": DateTime,
    "date_updated": DateTime,
    "links": links(self="/users/{id}", orders="/orders?user_id={id}"),
}

token_fields = {
    "token": fields.String,
    "token_type": fields.String,
    "expires_at": DateTime,
}

product_fields = {
    "id": fields.Integer,
    "sku": fields.String,
    "name": fields.String,
    "description": fields.String,
    "category": fields.String,
    "price": Money,
    "stock": fields.Integer,
    "is_available": fields.Boolean,
    "date_created": DateTime,
    "date_updated": DateTime,
    "links": links(self="/products/{id}"),
}

order_item_fields = {
    "product_id": fields.Integer,
    "product_name": fields.String,
    "quantity": fields.Integer,
    "unit_price": Money,
    "subtotal": Money,
}

order_fields = {
    "id": fields.Integer,
    "user_id": fields.Integer,
    "status": fields.String,
    "shipping_address": fields.String,
    "total_amount": Money,
    "items": fields.List(fields.Nested(order_item_fields)),
    "date_created": DateTime,
    "date_updated": DateTime,
    "links": links(self="/orders/{id}", user="/users/{user_id}"),
}


def field_names(field_dict: dict, prefix: str = "") -> list[str]:
    """The flat (dotted) column names a field dict produces, for CSV headers."""
    names: list[str] = []
    for key, field in field_dict.items():
        field = field() if isinstance(field, type) else field
        if isinstance(field, fields.Nested):
            names.extend(field_names(field.nested, f"{prefix}{key}."))
        elif isinstance(field, fields.List) and isinstance(field.container, fields.Nested):
            names.extend(field_names(field.container.nested, f"{prefix}{key}."))
        else:
            names.append(f"{prefix}{key}")
    return names
