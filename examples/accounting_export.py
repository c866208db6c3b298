"""Accounting export: yesterday's orders (UTC) to a CSV file, one row per order line.

    MYAPI_URL=http://127.0.0.1:5000 MYAPI_TOKEN=... python examples/accounting_export.py
    python examples/accounting_export.py --username admin --date 2026-11-20 --output orders.csv
"""

import argparse
import datetime as dt
import getpass
import os

from myapi.client import Client

yesterday = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
parser = argparse.ArgumentParser(description="Export one day's orders to CSV.")
parser.add_argument("--date", type=dt.date.fromisoformat, default=yesterday, help="default: yesterday (UTC)")
parser.add_argument("--output", help="default: orders-<date>.csv")
parser.add_argument("--url", default=os.environ.get("MYAPI_URL", "http://127.0.0.1:5000"))
parser.add_argument("--username", help="sign in as this user (default: the token in MYAPI_TOKEN)")
parser.add_argument("--password", help="default: asked for")
args = parser.parse_args()

if args.username:
    api = Client.login(args.url, args.username, args.password or getpass.getpass())
else:
    api = Client(args.url, token=os.environ["MYAPI_TOKEN"])
output = args.output or f"orders-{args.date.isoformat()}.csv"
size = api.export_orders(output, created=args.date.isoformat())  # a date is that whole day
print(f"orders of {args.date} written to {output} ({size} bytes)")
