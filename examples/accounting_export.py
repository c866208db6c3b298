"""Accounting export: yesterday's orders (UTC) to a CSV file, one row per order line.

The script needs to read orders and nothing else, so give it a key that can do
only that (an admin's key reads everyone's orders; a customer's, their own):

    myapi remote keys create accounting --scope orders:read   # prints myapi_… once
    MYAPI_URL=http://127.0.0.1:5000 MYAPI_API_KEY=myapi_... python examples/accounting_export.py

or, for a quick try, a sign-in:

    myapi remote login                                   # once; then simply:
    python examples/accounting_export.py
    python examples/accounting_export.py --username admin --date 2026-11-20 --output orders.csv
"""

import argparse
import datetime as dt
import getpass

from myapi.client import Client
from myapi.remote import DEFAULT_URL, credentials

yesterday = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
parser = argparse.ArgumentParser(description="Export one day's orders to CSV.")
parser.add_argument("--date", type=dt.date.fromisoformat, default=yesterday, help="default: yesterday (UTC)")
parser.add_argument("--output", help="default: orders-<date>.csv")
parser.add_argument("--url", help=f"the server (default: MYAPI_URL, the one `myapi remote login` kept, {DEFAULT_URL})")
parser.add_argument("--username", help="sign in as this user (default: MYAPI_TOKEN, MYAPI_API_KEY or the login kept "
                                       "by `myapi remote login`)")
parser.add_argument("--password", help="default: asked for")
args = parser.parse_args()
url, token = credentials(args.url)
if not args.username and not token:
    parser.error("no credentials: give --username (and --password), set MYAPI_TOKEN, or run `myapi remote login`")

if args.username:
    api = Client.login(url or DEFAULT_URL, args.username, args.password or getpass.getpass())
else:
    api = Client(url or DEFAULT_URL, token=token)
output = args.output or f"orders-{args.date.isoformat()}.csv"
size = api.export_orders(output, created=args.date.isoformat())  # a date is that whole day
print(f"orders of {args.date} written to {output} ({size} bytes)")
