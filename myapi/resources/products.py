"""Products: the catalogue list (ProductList) and one product (Product).

Anyone reads; only an admin creates, changes or deletes. A product that
appears in orders is never deleted (409): it is retired with
``is_available=false`` so order history keeps pointing at it.
"""

from __future__ import annotations

from ..common import inputs
from ..common.auth import current_actor
from ..common.contract import JsonArray, documented, marshal_with, parses, requires
from ..common.fields import API_PREFIX, product_change_fields, product_fields
from ..common.import_answers import IMPORT_ID, IMPORT_STREAMS, spool_for
from ..common.pagination import add_pagination_args
from ..common.parsing import RequestParser, conditional_parser
from ..common.representations import CSV, JSON, NDJSON
from ..common.resource import Resource
from ..db import get_session
from ..services import bulk_changes, catalog_import
from ..services import products as products_service
from .imports import import_result_fields

stock = inputs.int_range(0, 1_000_000_000)

# The filters are shared by the list and the export.
filter_parser = RequestParser(location="args")
filter_parser.add_argument("category", type=inputs.category)
filter_parser.add_argument("q", type=inputs.text(100))
filter_parser.add_argument("min_price", type=inputs.money)
filter_parser.add_argument("max_price", type=inputs.money)
filter_parser.add_argument("in_stock", type=inputs.boolean)
filter_parser.add_argument("is_available", type=inputs.boolean)
filter_parser.add_argument("updated_since", type=inputs.iso8601_datetime)
filter_parser.add_argument("sort", type=inputs.sort_spec(products_service.SORT_KEYS))

list_parser = add_pagination_args(filter_parser.copy())

# POST: sku, name, category and price are required; the rest have defaults.
create_parser = RequestParser(location="body")
create_parser.add_argument("sku", type=inputs.sku, required=True)
create_parser.add_argument("name", type=inputs.text(200, 1), required=True)
create_parser.add_argument("description", type=inputs.text(5000, multiline=True), default="")
create_parser.add_argument("category", type=inputs.category, required=True)
create_parser.add_argument("price", type=inputs.money, required=True)
create_parser.add_argument("stock", type=stock, default=0)
create_parser.add_argument("is_available", type=inputs.boolean, default=True)

# PUT replaces the whole product: stock becomes required too; a missing
# description or is_available is reset to its default.
put_parser = create_parser.copy()
put_parser.replace_argument("stock", type=stock, required=True)

# PATCH changes only what is given.
patch_parser = create_parser.partial()


# PATCH /products: a JSON array of PATCH /products/<id> bodies, each naming its product by sku or id.
bulk_item_parser = patch_parser.copy()
bulk_item_parser.add_argument("id", type=inputs.positive_int, store_missing=False)
bulk_item_parser.add_argument("version", type=inputs.positive_int, store_missing=False)
BULK_ITEMS = JsonArray(bulk_item_parser, bulk_changes.MAX_ITEMS, one_of=("sku", "id"))

bulk_parser = RequestParser(location="args")
bulk_parser.add_argument("max_price_change", type=inputs.percent)


def product_location(product) -> str:
    return f"{API_PREFIX}/products/{product.id}"


class ProductList(Resource):
    change_feed = "/products/changes"  # the feed that continues it: its answers carry X-Changes-Since
    max_body_setting = {"patch": "MAX_BULK_BYTES"}  # 1000 items with long descriptions pass 1 MiB

    @documented(summary="List products")
    @marshal_with(product_fields, paged=True)
    @parses(list_parser)
    @requires("none", "products:read")
    def get(self, args):
        return products_service.list_products(get_session(), **args)

    @documented(summary="Create a product", errors=(409,))
    @marshal_with(product_fields, status=201, etag=True, location=product_location)
    @parses(create_parser)
    @requires("admin", "products:write")
    def post(self, args):
        return products_service.create_product(get_session(), dict(args))

    @documented(summary="Change many products at once (all or nothing): a JSON array of changes by sku or id",
                description="Each item names a product by `sku` or `id` and carries the fields to change, as "
                            "PATCH /products/{product_id} takes them, and optionally the `version` it was made "
                            "from (a stale one is 412 for the whole request). Answers the changed products as "
                            "they are now, in the request's order (an item equal to its stored product is no "
                            "change and not listed; `Prefer: return=minimal`: 204); `X-Import-Id` names its "
                            "audit record.",
                errors=(409, 412), headers=(IMPORT_ID,))
    @marshal_with(product_fields, "data")
    @parses(bulk_parser, json_array=BULK_ITEMS)
    @requires("admin", "products:write")
    def patch(self, args):
        result = bulk_changes.bulk_update(get_session(), args.entries, max_price_change=args.max_price_change,
                                          actor=current_actor())
        return result.items, 200, {IMPORT_ID: str(result.import_id)}


class Product(Resource):
    @documented(summary="Read a product")
    @marshal_with(product_fields, etag=True)
    @requires("none", "products:read")
    def get(self, product_id: int):
        return products_service.read_product(get_session(), product_id)

    @documented(summary="Replace a product", errors=(409,))
    @marshal_with(product_fields, etag=True)
    @parses(put_parser, conditional_parser)
    @requires("admin", "products:write")
    def put(self, args, product_id: int):
        if_match = args.pop("if_match")
        return products_service.update_product(get_session(), product_id, args, if_match=if_match)

    @documented(summary="Change some of a product's fields", errors=(409,))
    @marshal_with(product_fields, etag=True)
    @parses(patch_parser, conditional_parser)
    @requires("admin", "products:write")
    def patch(self, args, product_id: int):
        if_match = args.pop("if_match")
        return products_service.update_product(get_session(), product_id, args, if_match=if_match)

    @documented(summary="Delete a product that no order names (409 otherwise: retire it instead)", errors=(409,))
    @parses(conditional_parser)
    @requires("admin", "products:write")
    def delete(self, args, product_id: int):
        products_service.delete_product(get_session(), product_id, if_match=args.if_match)


# -- import and export -----------------------------------------------------------

import_parser = RequestParser(location="args")
import_parser.add_argument("dry_run", type=inputs.boolean, default=False)
import_parser.add_argument("plan", type=inputs.boolean, default=False)
import_parser.add_argument("on_error", type=inputs.choice(*catalog_import.ON_ERROR), default="reject_file")
import_parser.add_argument("max_price_change", type=inputs.percent)

# One definition of the rules: the import validates each row with the same
# input types as PUT /products/<id> (a full product).
IMPORT_RULES = {
    argument.name: catalog_import.Rule(argument.type, argument.required, argument.default)
    for argument in put_parser.args
}

IMPORT_DESCRIPTION = (
    "A file names `sku` and the columns to set; a stored product keeps the columns the file lacks, a new "
    "one needs every required column. An optional `version` column makes each row conditional (a row made "
    "from another version is a row error). `on_error=reject_file` (the default) imports all or nothing; "
    "`skip_rows` writes the valid rows and answers the rejected ones (`Accept: text/csv`: the rejected rows "
    "as uploaded plus an `error` column). `plan=true` writes nothing and answers what would change "
    "(`Accept: application/x-ndjson` or `text/csv`: the full diff, streamed). `max_price_change=P` refuses "
    "the whole file (409) when any price moves more than P %. Every answer has an `import_id` "
    "(`GET /imports/{import_id}`)."
)


class ProductImport(Resource):
    media_types = (JSON, CSV, NDJSON)  # CSV and NDJSON: the rejected rows, or a plan's whole diff
    max_body_setting = "MAX_IMPORT_BYTES"

    @documented(summary="Import products from CSV (upsert by sku): plan it, all or nothing, or skipping bad rows",
                description=IMPORT_DESCRIPTION, errors=(409,), headers=(IMPORT_ID,))
    @marshal_with(import_result_fields, alternates=IMPORT_STREAMS)
    @parses(import_parser, csv_upload=put_parser)
    @requires("admin", "products:write")
    def post(self, args):
        options = catalog_import.ImportOptions(
            dry_run=args.dry_run, plan=args.plan, on_error=args.on_error, max_price_change=args.max_price_change,
            spool=spool_for(args.plan))
        result = catalog_import.import_products(get_session(), args.upload, IMPORT_RULES, options=options,
                                                actor=current_actor())
        return result, 200, {IMPORT_ID: str(result.import_id)}


class ProductExport(Resource):
    change_feed = "/products/changes"  # the feed that continues it: its answers carry X-Changes-Since
    media_types = (JSON, CSV, NDJSON)

    @documented(summary="Export every matching product (streamed JSON, NDJSON or CSV)")
    @marshal_with(product_fields, export=True)
    @parses(filter_parser)
    @requires("none", "products:read")
    def get(self, args):
        return products_service.export_products(link_prefix=f"{API_PREFIX}/products/", **args)


# -- the change feed (DESIGN §9) ------------------------------------------------------

changes_parser = RequestParser(location="args")
changes_parser.add_argument("since", type=inputs.watermark, required=True)
changes_parser.add_argument("limit", type=inputs.int_range(1, 1000), default=100)


class ProductChanges(Resource):
    media_types = (JSON, NDJSON, CSV)

    @documented(summary="What changed in the catalogue since a watermark (follow it to keep a copy)",
                errors=(410,))
    @marshal_with(product_change_fields, feed=True, select_within="item")
    @parses(changes_parser)
    @requires("none", "products:read")
    def get(self, args):
        return products_service.changes(get_session(), args.since, limit=args.limit)
