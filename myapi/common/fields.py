"""Output fields and the field dicts that shape every entity (DESIGN §3).

Money is a decimal string with two places ("19.99"); times are ISO 8601 UTC
with ``Z``. Links are paths built from a template (``Link``) rather than
``fields.Url``: the API's URLs are fixed, and a per-row ``url_for`` is the
slowest part of marshalling a page.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import keyword
from decimal import Decimal
from string import Formatter

from flask_restful import fields

from ..services import product_columns

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
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="seconds") + "Z"  # a third of strftime's time


class OptionalDateTime(DateTime):
    """A DateTime that may be null (a key that was never used, never expires...)."""

    schema = {"type": ["string", "null"], "format": "date-time"}


class Nullable(fields.Raw):
    """A scalar shown as it is, or null: ``Nullable("integer")``."""

    def __init__(self, json_type: str, *, description: str | None = None, attribute=None):
        super().__init__(attribute=attribute)
        self.schema = {"type": [json_type, "null"]}
        if description:
            self.schema["description"] = description


class Entries(fields.Raw):
    """A list of plain objects shown as they are (an import's errors or changes), described by ``item_schema``.

    ``fields=`` selects the list whole (its members are not named one by one:
    a long list of selectable names would make the longest ``fields=`` a URL
    that no server takes).
    """

    def __init__(self, item_schema: dict, *, attribute=None):
        super().__init__(attribute=attribute)
        self.schema = {"type": "array", "items": item_schema}

    def format(self, value):
        return list(value)


class Diff(fields.Raw):
    """What a bulk change does to one product: ``{column: {"before": …, "after": …}}`` (services/product_diff.py)."""

    schema = {
        "type": "object",
        "description": "Each column that changes, with its value before and after (before is null for a new "
                       "product). Money is a two-place string.",
        "propertyNames": {"enum": [name for name in product_columns.WRITABLE if name != "sku"]},
        "additionalProperties": {"type": "object", "required": ["before", "after"],
                                 "properties": {"before": {}, "after": {}}, "additionalProperties": False},
    }


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


def _same(obj):
    """The ``attribute`` of a group built from the object itself (``links``)."""
    return obj


def links(**templates: str) -> fields.Nested:
    """A ``links`` object whose members are Links built from the same object."""
    return fields.Nested({rel: Link(t) for rel, t in templates.items()}, attribute=_same)


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

api_key_fields = {
    "id": fields.Integer,
    "user_id": fields.Integer,
    "name": fields.String,
    "prefix": fields.String,
    "scopes": fields.List(fields.String, attribute="scope_list"),
    "date_created": DateTime,
    "expires_at": OptionalDateTime,
    "last_used_at": OptionalDateTime,
    "revoked_at": OptionalDateTime,
    "links": links(self="/api-keys/{id}", user="/users/{user_id}"),
}

# The answer to POST /api-keys, the one time the secret is shown.
created_api_key_fields = {**api_key_fields, "secret": fields.String}

token_fields = {
    "token": fields.String,
    "token_type": fields.String,
    "expires_at": DateTime,
}

# The output field of each kind of column (services/product_columns.py).
FIELD_OF_KIND = {
    "integer": fields.Integer,
    "text": fields.String,
    "money": Money,
    "boolean": fields.Boolean,
    "timestamp": DateTime,
}

# id, sku, name, description, category, price, stock, is_available,
# date_created, date_updated (product_columns.COLUMNS, which the CSV export
# and import share), then links.
product_fields = {
    **{name: FIELD_OF_KIND[product_columns.KIND[name]] for name in product_columns.COLUMNS},
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


def change_fields_of(item_fields: dict) -> dict:
    """A change feed's entry (DESIGN §9): where it is, what happened, and the item as it is now."""
    return {
        "seq": fields.String,  # the entry's watermark: following the feed from it continues after it
        "op": fields.String,  # "upsert" | "delete"
        "id": fields.Integer,
        "version": fields.Integer,
        "item": fields.Nested(item_fields, allow_null=True),  # null for a delete
    }


product_change_fields = change_fields_of(product_fields)
order_change_fields = change_fields_of(order_fields)


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


# -- fast marshalling ---------------------------------------------------------------
#
# flask_restful.marshal looks every value up through ``get_value``, which for a
# SQLAlchemy Row or ORM object first tries it as a mapping (an exception per
# field) and walks dotted names. Exports of 100k rows spent most of their time
# there. ``marshal`` below compiles a field dict once into one generated
# function: each attribute read once into a local, the common formats inline
# (``int``, ``str``, ``bool``), a ``links`` group built from the same locals;
# no call per field. Objects that are dicts, or lack an attribute, take the
# general path (one small function per field) with the same output
# (tests/test_fields.py compares both with flask_restful.marshal on every field
# dict).


def _reader(name: str):
    def read(obj):
        if isinstance(obj, dict):
            return obj.get(name)
        return getattr(obj, name, None)

    return read


def _step(key: str, field):
    field = field() if isinstance(field, type) else field
    attribute = field.attribute if field.attribute is not None else key
    read = attribute if callable(attribute) else _reader(attribute)
    if isinstance(field, fields.Nested):
        inner = compile_fields(field.nested)
        allow_null, default = field.allow_null, field.default

        def nested(obj):
            value = read(obj)
            if value is None:
                if allow_null:
                    return None
                if default is not None:
                    return default
            return inner(value)

        return nested
    if isinstance(field, fields.List):
        container = field.container
        # A list of objects, or of scalars.
        inner = compile_fields(container.nested) if isinstance(container, fields.Nested) else container.format
        return lambda obj: None if (values := read(obj)) is None else [inner(value) for value in values]
    if isinstance(field, Template):
        return lambda obj: field.output(key, obj)
    if type(field).output is not fields.Raw.output:  # a field with its own lookup: keep it
        return lambda obj: field.output(key, obj)
    fmt, default = field.format, field.default

    def scalar(obj):
        value = read(obj)
        return default if value is None else fmt(value)

    return scalar


def _general(field_dict: dict):
    """The general path: one small function per field (any object, dicts, missing attributes)."""
    steps = [(key, _step(key, field)) for key, field in field_dict.items()]

    def to_dict(obj) -> dict:
        return {key: step(obj) for key, step in steps}

    return to_dict


# Formats written inline in the generated code, by the exact ``format`` method.
_INLINE = {fields.Integer.format: "int({})", fields.String.format: "str({})", fields.Boolean.format: "bool({})",
           fields.Raw.format: "{}"}


def _plain(name) -> bool:
    """Whether ``name`` can be read as ``obj.name`` in generated code."""
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)


class _Source:
    """The generated function of one field dict: reads, then one dict display."""

    def __init__(self, namespace: dict):
        self.namespace = namespace
        self.reads: dict[str, str] = {}  # attribute name -> local variable

    def constant(self, value) -> str:
        name = f"k{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def read(self, attribute: str) -> str:
        if attribute not in self.reads:
            self.reads[attribute] = f"v{len(self.reads)}"
        return self.reads[attribute]

    def value(self, key: str, field) -> str:
        """A Python expression for one field's output."""
        field = field() if isinstance(field, type) else field
        attribute = field.attribute if field.attribute is not None else key
        if isinstance(field, fields.Nested) and attribute is _same:
            return self.display(field.nested)
        if isinstance(field, Template) and all(_plain(name) for name in field.keys):
            arguments = ", ".join(f"{name}={self.read(name)}" for name in field.keys)
            return f"{self.constant(field.template)}.format({arguments})"
        if callable(attribute) or not _plain(attribute) or isinstance(field, (fields.Nested, Template)):
            return f"{self.constant(_step(key, field))}(obj)"
        if isinstance(field, fields.List):
            container = field.container
            inner = (compile_fields(container.nested) if isinstance(container, fields.Nested)
                     else container.format)
            local = self.read(attribute)
            return f"(None if {local} is None else [{self.constant(inner)}(x) for x in {local}])"
        if type(field).output is not fields.Raw.output:  # a field with its own lookup
            return f"{self.constant(field.output)}({key!r}, obj)"
        local = self.read(attribute)
        fmt = type(field).format
        inline = _INLINE.get(fmt)
        formatted = inline.format(local) if inline else f"{self.constant(field.format)}({local})"
        return f"({self.constant(field.default)} if {local} is None else {formatted})"

    def display(self, field_dict: dict) -> str:
        members = ", ".join(f"{key!r}: {self.value(key, field)}" for key, field in field_dict.items())
        return "{" + members + "}"


def compile_fields(field_dict: dict):
    """A function turning one object (ORM row, Row or dict) into the field dict's output."""
    general = _general(field_dict)
    namespace = {"general": general}
    source = _Source(namespace)
    display = source.display(field_dict)
    reads = "".join(f"        {local} = obj.{attribute}\n" for attribute, local in source.reads.items())
    code = ("def to_dict(obj):\n"
            "    if type(obj) is dict:\n"
            "        return general(obj)\n"
            "    try:\n"
            f"{reads or '        pass' + chr(10)}"
            "    except AttributeError:\n"
            "        return general(obj)\n"
            f"    return {display}\n")
    exec(compile(code, f"<marshal {', '.join(list(field_dict)[:4])}...>", "exec"), namespace)  # noqa: S102
    to_dict = namespace["to_dict"]
    to_dict.source = code  # for a reader of a traceback
    return to_dict


_COMPILED: dict[int, tuple[dict, object]] = {}


def marshal(obj, field_dict: dict) -> dict:
    """``flask_restful.marshal`` for one object (or a list), compiled once per field dict."""
    cached = _COMPILED.get(id(field_dict))
    if cached is None or cached[0] is not field_dict:
        cached = (field_dict, compile_fields(field_dict))
        _COMPILED[id(field_dict)] = cached
    to_dict = cached[1]
    if isinstance(obj, (list, tuple)):
        return [to_dict(item) for item in obj]
    return to_dict(obj)


# -- field selection (?fields=, DESIGN §8.1) ------------------------------------------

def max_selection_length(field_dict: dict) -> int:
    """The longest sensible ``fields=``: every selectable name once."""
    return len(",".join(selectable_names(field_dict)))


def selectable_names(field_dict: dict) -> list[str]:
    """The names ``fields=`` accepts: every key, and ``group.member`` inside nested groups."""
    names: list[str] = []
    for key, field in field_dict.items():
        names.append(key)
        inner = _nested_dict(field)
        if inner is not None:
            names.extend(f"{key}.{name}" for name in selectable_names(inner))
    return names


def _nested_dict(field) -> dict | None:
    field = field() if isinstance(field, type) else field
    if isinstance(field, fields.Nested):
        return field.nested
    if isinstance(field, fields.List) and isinstance(field.container, fields.Nested):
        return field.container.nested
    return None


def _pruned(field_dict: dict, wanted: set[str]) -> dict:
    """``field_dict`` with only the ``wanted`` names, in the dict's own order."""
    kept: dict = {}
    for key, field in field_dict.items():
        if key in wanted:
            kept[key] = field
            continue
        members = {name.split(".", 1)[1] for name in wanted if name.startswith(key + ".")}
        if not members:
            continue
        field = field() if isinstance(field, type) else field
        if isinstance(field, fields.Nested):
            kept[key] = fields.Nested(_pruned(field.nested, members), allow_null=field.allow_null,
                                      attribute=field.attribute, default=field.default)
        else:  # a list of nested objects
            container = field.container
            kept[key] = fields.List(fields.Nested(_pruned(container.nested, members), allow_null=container.allow_null,
                                                  default=container.default), attribute=field.attribute)
    return kept


class Selection:
    """The output fields a request asked for with ``fields=``: a smaller field dict."""

    def __init__(self, field_dict: dict, names: list[str]):
        self.names = tuple(names)
        self.fields = _pruned(field_dict, set(names))
        self.tag = hashlib.blake2s(",".join(names).encode(), digest_size=4).hexdigest()
        self.columns = field_names(self.fields)
        self._to_dict = compile_fields(self.fields)

    def marshal(self, obj):
        if isinstance(obj, (list, tuple)):
            return [self._to_dict(item) for item in obj]
        return self._to_dict(obj)


def select_fields(field_dict: dict, spec: str) -> Selection:
    """The Selection ``spec`` (``"id,sku,links.self"``) names; ValueError naming the valid names."""
    valid = selectable_names(field_dict)
    names = [name.strip() for name in spec.split(",")] if len(spec) <= max_selection_length(field_dict) else []
    if not names or any(not name for name in names):
        raise ValueError("must name at least one field, separated by commas; choose from " + ", ".join(valid))
    unknown = [name for name in names if name not in valid]
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise ValueError(f"unknown field {shown}; choose from " + ", ".join(valid))
    wanted = set(names)
    return _selection(_Identity(field_dict), tuple(name for name in valid if name in wanted))


class _Identity:
    """A field dict as a cache key, by identity (dicts are not hashable)."""

    def __init__(self, field_dict: dict):
        self.dict = field_dict

    def __hash__(self):
        return id(self.dict)

    def __eq__(self, other):
        return isinstance(other, _Identity) and other.dict is self.dict


@functools.lru_cache(maxsize=256)
def _selection(field_dict: _Identity, names: tuple[str, ...]) -> Selection:
    return Selection(field_dict.dict, list(names))
