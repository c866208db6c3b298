"""Products: the catalogue list (ProductList) and one product (Product).

Anyone reads; only an admin creates, changes or deletes. A product that
appears in orders is never deleted (409): it is retired with
``is_available=false`` so order history keeps pointing at it.
"""

from __future__ import annotations

import datetime as dt
import io

from flask import g, request
from flask_restful import fields

from ..common import inputs
from ..common.auth import require_admin
from ..common.errors import VALIDATION, Problem, validation_problem
from ..common.fields import API_PREFIX, field_names, marshal, product_fields
from ..common.openapi import documented
from ..common.pagination import add_pagination_args, page_response
from ..common.parsing import RequestParser
from ..common.representations import CSV, JSON, NDJSON, download, marshalled, streamed
from ..common.resource import Resource, check_if_match, item, no_content, not_modified
from ..db import get_session, stream_session
from ..services import catalog_io
from ..services import products as products_service

stock = inputs.int_range(0, 1_000_000_000)

# The filters are shared with the export (resources/catalog.py).
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


def find_product(product_id: int):
    product = products_service.get_product(get_session(), product_id)
    if product is None:
        raise Problem(404, f"No product {product_id}.")
    return product


class ProductList(Resource):
    @documented(parser=list_parser, fields=product_fields, collection="page", summary="List products")
    def get(self):
        args = list_parser.parse_args()
        page = products_service.list_products(get_session(), **args)
        return page_response(page, product_fields)

    @documented(parser=create_parser, fields=product_fields, status=201, etag=True, auth="admin", errors=(409,),
                summary="Create a product")
    def post(self):
        require_admin()
        args = create_parser.parse_args()
        session = get_session()
        product = products_service.create_product(session, dict(args))
        return item(marshal(product, product_fields), product.version, 201,
                    {"Location": product_location(product)})


class Product(Resource):
    @documented(fields=product_fields, etag=True, summary="Read a product")
    def get(self, product_id: int):
        product = find_product(product_id)
        return not_modified(product.version) or item(marshal(product, product_fields), product.version)

    @documented(parser=put_parser, fields=product_fields, etag=True, auth="admin", summary="Replace a product")
    def put(self, product_id: int):
        return self._update(product_id, put_parser)

    @documented(parser=patch_parser, fields=product_fields, etag=True, auth="admin",
                summary="Change some of a product's fields")
    def patch(self, product_id: int):
        return self._update(product_id, patch_parser)

    @documented(status=204, etag=True, auth="admin",
                summary="Delete a product that no order names (409 otherwise: retire it instead)")
    def delete(self, product_id: int):
        require_admin()
        product = find_product(product_id)
        check_if_match(product.version)
        session = get_session()
        products_service.delete_product(session, product)
        return no_content()

    @staticmethod
    def _update(product_id: int, parser):
        require_admin()
        changes = dict(parser.parse_args())
        product = find_product(product_id)
        check_if_match(product.version)
        session = get_session()
        products_service.update_product(session, product, changes)
        return item(marshal(product, product_fields), product.version)


# -- import and export -----------------------------------------------------------

import_parser = RequestParser(location="args")
import_parser.add_argument("dry_run", type=inputs.boolean, default=False)

import_result_fields = {
    "created": fields.Integer,
    "updated": fields.Integer,
    "rows": fields.Integer,
    "dry_run": fields.Boolean,
}

# One definition of the rules: the import validates each row with the same
# input types as PUT /products/<id> (a full product).
IMPORT_RULES = {
    argument.name: catalog_io.Rule(argument.type, argument.required, argument.default)
    for argument in put_parser.args
}


def csv_upload() -> io.TextIOBase:
    """The uploaded CSV as a text stream: a text/csv body or a multipart ``file``."""
    if request.mimetype == "text/csv":
        raw = request.stream
    elif request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise validation_problem({"file": "Attach the CSV file as the form field 'file'."})
        raw = upload.stream
    else:
        raise Problem(415, "Send the CSV as a text/csv body or as the 'file' field of multipart/form-data.",
                      headers={"Accept-Post": "text/csv, multipart/form-data"})
    if isinstance(raw, io.RawIOBase):  # Werkzeug's LimitedStream
        raw = io.BufferedReader(raw)
    # utf-8-sig: a byte-order mark (Excel writes one) is dropped, not read as
    # part of the first column's name.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


class ProductImport(Resource):
    media_types = (JSON,)
    max_body_setting = "MAX_IMPORT_BYTES"

    @documented(parser=import_parser, csv_upload=put_parser, fields=import_result_fields, auth="admin",
                summary="Import products from CSV (all or nothing; upsert by sku)")
    def post(self):
        require_admin()
        args = import_parser.parse_args()
        lines = csv_upload()
        session = get_session()
        result = catalog_io.import_products(session, lines, IMPORT_RULES)
        if result.error_count:
            session.rollback()
            raise Problem(
                400,
                f"{result.error_count} row error(s); nothing was imported."
                + (f" The first {len(result.errors)} are listed." if result.error_count > len(result.errors) else ""),
                title="Invalid rows",
                type=VALIDATION,
                errors=result.errors,
                extra={"error_count": result.error_count},
            )
        if args.dry_run:
            session.rollback()  # validated and counted; nothing is kept
        return marshal({"created": result.created, "updated": result.updated, "rows": result.rows,
                        "dry_run": args.dry_run}, import_result_fields)


class ProductExport(Resource):
    media_types = (JSON, CSV, NDJSON)

    @documented(parser=filter_parser, fields=product_fields, collection="stream",
                summary="Export every matching product (streamed JSON, NDJSON or CSV)")
    def get(self):
        args = filter_parser.parse_args()
        stmt = products_service.filtered_sorted(**args)
        filename = f"products-{dt.date.today().isoformat()}"
        if g.media_type == CSV:  # formatted by the database: no Python object per row
            return download(catalog_io.export_csv(stream_session(), stmt, f"{API_PREFIX}/products/"), filename)
        records = marshalled(stream_session(), lambda session: catalog_io.export_rows(session, stmt), product_fields)
        return streamed(records, field_names(product_fields), filename)
