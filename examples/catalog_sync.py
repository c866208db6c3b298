"""Nightly catalogue sync: check a CSV with a dry run, then import it, printing the counts.

A key that can change the catalogue and nothing else (an admin's):

    myapi remote keys create catalog-sync --scope products:write   # prints myapi_… once
    MYAPI_URL=http://127.0.0.1:5000 MYAPI_API_KEY=myapi_... python examples/catalog_sync.py products.csv

or a sign-in:

    myapi remote login                                   # once; then simply:
    python examples/catalog_sync.py products.csv
    python examples/catalog_sync.py products.csv --url http://127.0.0.1:5000 --username admin

The CSV has the columns sku,name,category,price,stock (description and
is_available optional). A bad row stops the sync before anything is written:
the dry run raises ValidationFailed listing every bad row. Rows equal to the
stored products are counted as unchanged and not written.
"""

import argparse
import getpass
import os
import sys

from myapi.client import ApiError, Client
from myapi.remote import DEFAULT_URL, credentials

parser = argparse.ArgumentParser(description="Import a catalogue CSV: a dry run first, then for real.")
parser.add_argument("csv_file")
parser.add_argument("--url", help=f"the server (default: MYAPI_URL, the one `myapi remote login` kept, {DEFAULT_URL})")
parser.add_argument("--username", help="sign in as this admin (default: MYAPI_TOKEN, MYAPI_API_KEY or the login kept "
                                       "by `myapi remote login`)")
parser.add_argument("--password", help="default: asked for")
args = parser.parse_args()
if not os.path.isfile(args.csv_file):
    parser.error(f"no such file: {args.csv_file}")
url, token = credentials(args.url)
if not args.username and not token:
    parser.error("no credentials: give --username (and --password), set MYAPI_TOKEN, or run `myapi remote login`")

try:
    if args.username:
        api = Client.login(url or DEFAULT_URL, args.username, args.password or getpass.getpass())
    else:
        api = Client(url or DEFAULT_URL, token=token)
    checked = api.import_products(args.csv_file, dry_run=True)
    print("dry run: {rows} rows, {created} to create, {updated} to update, {unchanged} unchanged".format(**checked))
    done = api.import_products(args.csv_file)
    print("imported: {rows} rows, {created} created, {updated} updated, {unchanged} unchanged".format(**done))
except ApiError as error:
    sys.exit("\n  ".join([f"sync failed: {error.title}: {error.detail}", *error.error_lines()]))
