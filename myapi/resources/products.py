"""Products: the catalogue list (ProductList) and one product (Product).

Anyone reads; only an admin creates, changes or deletes. A product that
appears in orders is never deleted (409): it is retired with
``is_available=false`` so order history keeps pointing at it.
"""

from __future__ import annotations

from flask_restful import fields

from ..common import inputs
from ..common.contract import documented, marshal_with, parses, requires
from ..common.fields import API_PREFIX, product_fields
from ..common.pagination import add_pagination_args
from ..common.parsing import RequestParser, conditional_parser
from ..common.representations import CSV, JSON, NDJSON
from ..common.resource import Resource
from ..db import get_session
from ..services import catalog_import
from ..services import products as products_service

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


def product_location(product) -> str:
    return f"{API_PREFIX}/products/{product.id}"


class ProductList(Resource):
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


class Product(Resource):
    @documented(summary="Read a product")
    @marshal_with(product_fields, etag=True)
    @requires("none", "products:read")
    def get(self, product_id: int):
        return products_service.get_product(get_session(), product_id)

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

import_result_fields = {
    "created": fields.Integer,
    "updated": fields.Integer,
    "unchanged": fields.Integer,  # rows equal to the stored product: not written, same version
    "rows": fields.Integer,
    "dry_run": fields.Boolean,
}

# One definition of the rules: the import validates each row with the same
# input types as PUT /products/<id> (a full product).
IMPORT_RULES = {
    argument.name: catalog_import.Rule(argument.type, argument.required, argument.default)
    for argument in put_parser.args
}


class ProductImport(Resource):
    media_types = (JSON,)
    max_body_setting = "MAX_IMPORT_BYTES"

    @documented(summary="Import products from CSV (all or nothing; upsert by sku)")
    @marshal_with(import_result_fields)
    @parses(import_parser, csv_upload=put_parser)
    @requires("admin", "products:write")
    def post(self, args):
        return catalog_import.import_products(get_session(), args.upload, IMPORT_RULES, dry_run=args.dry_run)


class ProductExport(Resource):
    media_types = (JSON, CSV, NDJSON)

    @documented(summary="Export every matching product (streamed JSON, NDJSON or CSV)")
    @marshal_with(product_fields, export=True)
    @parses(filter_parser)
    @requires("none", "products:read")
    def get(self, args):
        return products_service.export_products(link_prefix=f"{API_PREFIX}/products/", **args)
