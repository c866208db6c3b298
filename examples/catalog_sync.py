"""Nightly catalogue sync: check a CSV with a dry run, then import it, printing the counts.

    MYAPI_URL=http://127.0.0.1:5000 MYAPI_TOKEN=... python examples/catalog_sync.py products.csv
    python examples/catalog_sync.py products.csv --url http://127.0.0.1:5000 --username admin

The CSV has the columns sku,name,category,price,stock (description and
is_available optional). A bad row stops the sync before anything is written:
the dry run raises ValidationFailed listing every bad row.
"""

import argparse
import getpass
import os
import sys

from myapi.client import ApiError, Client

parser = argparse.ArgumentParser(description="Import a catalogue CSV: a dry run first, then for real.")
parser.add_argument("csv_file")
parser.add_argument("--url", default=os.environ.get("MYAPI_URL", "http://127.0.0.1:5000"))
parser.add_argument("--username", help="sign in as this admin (default: the token in MYAPI_TOKEN)")
parser.add_argument("--password", help="default: asked for")
args = parser.parse_args()
if not os.path.isfile(args.csv_file):
    parser.error(f"no such file: {args.csv_file}")

try:
    if args.username:
        api = Client.login(args.url, args.username, args.password or getpass.getpass())
    else:
        api = Client(args.url, token=os.environ["MYAPI_TOKEN"])
    checked = api.import_products(args.csv_file, dry_run=True)
    print("dry run: {rows} rows, {created} to create, {updated} to update".format(**checked))
    done = api.import_products(args.csv_file)
    print("imported: {rows} rows, {created} created, {updated} updated".format(**done))
except ApiError as error:
    sys.exit("\n  ".join([f"sync failed: {error.title}: {error.detail}", *error.error_lines()]))
