"""The integration scripts in examples/, run as a user runs them, against the live server."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from myapi.client import Client
from myapi.db import get_db
from myapi.models import Order, Product

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def script(name: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """The script as a user runs it; the config dir (`myapi remote login`'s) is an empty one under ``cwd``."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("MYAPI_")}
    base["XDG_CONFIG_HOME"] = str(cwd / "config")
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], env={**base, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def product_count(app) -> int:
    with get_db(app).engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Product)).scalar_one()


def scoped_key(live_server, account, *scopes) -> str:
    return Client(live_server, account.token).create_api_key("example", list(scopes))["secret"]


def test_catalog_sync(app, live_server, admin, tmp_path):
    # The examples' documented way: a key that can change the catalogue and nothing else.
    env = {"MYAPI_URL": live_server, "MYAPI_API_KEY": scoped_key(live_server, admin, "products:write")}
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text("sku,name,category,price,stock\nTEA-1,Sencha,tea,4.50,10\nTEA-2,Matcha,tea,9.00,5\n")

    first = script("catalog_sync.py", str(catalogue), env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["dry run: 2 rows, 2 to create, 0 to update, 0 unchanged",
                                         "imported: 2 rows, 2 created, 0 updated, 0 unchanged"]
    assert product_count(app) == 2

    # The next night, with a password instead of a token: one new product, one changed.
    catalogue.write_text("sku,name,category,price,stock\nTEA-2,Matcha,tea,9.50,5\nTEA-3,Hojicha,tea,6.00,3\n")
    second = script("catalog_sync.py", str(catalogue), "--url", live_server, "--username", "root",
                    "--password", admin.password, env={}, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1] == "imported: 2 rows, 1 created, 1 updated, 0 unchanged"
    assert [p["price"] for p in Client(live_server).iter_products(q="TEA-2")] == ["9.50"]

    # A bad row stops the sync at the dry run: nothing is written.
    catalogue.write_text("sku,name,category,price,stock\nTEA-4,Genmaicha,tea,0,3\nTEA-5,Kukicha,tea,5.00,3\n")
    failed = script("catalog_sync.py", str(catalogue), env=env, cwd=tmp_path)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.splitlines()[0] == "sync failed: Invalid rows: 1 row error(s); nothing was imported."
    assert failed.stderr.splitlines()[1].startswith("  row 2, price: ")
    assert product_count(app) == 3


def test_accounting_export_of_yesterdays_orders(app, live_server, admin, customer, tmp_path):
    api = Client(live_server, admin.token)
    api.create_product(sku="TEA-1", name="Sencha", category="tea", price="4.50", stock=100)
    shop = Client(live_server, customer.token)
    old, kept, today = (shop.place_order([(1, n)], f"{n} High Street") for n in (1, 2, 3))
    now = dt.datetime.now(dt.timezone.utc)
    yesterday = now.date() - dt.timedelta(days=1)
    with get_db(app).engine.begin() as conn:
        for order, when in ((old, now - dt.timedelta(days=2)), (kept, dt.datetime.combine(
                yesterday, dt.time(23, 59, 30), tzinfo=dt.timezone.utc))):
            conn.execute(update(Order.__table__).where(Order.__table__.c.id == order["id"])
                         .values(date_created=when))

    env = {"MYAPI_URL": live_server, "MYAPI_API_KEY": scoped_key(live_server, admin, "orders:read")}
    done = script("accounting_export.py", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    path = tmp_path / f"orders-{yesterday.isoformat()}.csv"
    assert done.stdout.startswith(f"orders of {yesterday} written to {path.name} (")
    rows = list(csv.DictReader(path.open(newline="")))
    assert [(row["id"], row["items.quantity"], row["total_amount"]) for row in rows] == [
        (str(kept["id"]), "2", "9.00")]

    other = script("accounting_export.py", "--date", now.date().isoformat(), "--output", "today.csv",
                   "--username", "root", "--password", admin.password, "--url", live_server, env={}, cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert [row["id"] for row in csv.DictReader((tmp_path / "today.csv").open(newline=""))] == [str(today["id"])]


def signed_in_config(cwd: Path, url: str, token: str) -> None:
    """What `myapi remote login` keeps, in the config dir ``script`` gives the examples."""
    path = cwd / "config" / "myapi" / "remote.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"url": url, "token": token}))


@pytest.mark.parametrize("name", ["catalog_sync.py", "accounting_export.py"])
def test_examples_without_credentials_are_a_usage_error(name, live_server, tmp_path):
    """Issue 18: with neither --username nor MYAPI_TOKEN they crashed with KeyError: 'MYAPI_TOKEN'."""
    (tmp_path / "catalogue.csv").write_text("sku,name,category,price,stock\nTEA-1,Sencha,tea,4.50,10\n")
    args = ["catalogue.csv"] if name == "catalog_sync.py" else []
    done = script(name, *args, env={"MYAPI_URL": live_server}, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("usage: ")
    assert done.stderr.splitlines()[-1].endswith(
        "error: no credentials: give --username (and --password), set MYAPI_TOKEN, or run `myapi remote login`")
    assert "Traceback" not in done.stderr


def test_examples_use_the_login_that_myapi_remote_login_kept(app, live_server, admin, tmp_path):
    signed_in_config(tmp_path, live_server, admin.token)  # no MYAPI_URL, no MYAPI_TOKEN, no --url
    (tmp_path / "catalogue.csv").write_text("sku,name,category,price,stock\nTEA-1,Sencha,tea,4.50,10\n")
    synced = script("catalog_sync.py", "catalogue.csv", env={}, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout.splitlines()[-1] == "imported: 1 rows, 1 created, 0 updated, 0 unchanged"
    exported = script("accounting_export.py", "--output", "orders.csv", env={}, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "orders.csv").read_text().startswith("id,")

    # A kept token only ever goes to the server it came from.
    elsewhere = script("accounting_export.py", "--url", "http://127.0.0.1:9", env={}, cwd=tmp_path)
    assert elsewhere.returncode == 2 and "no credentials" in elsewhere.stderr


def test_what_the_examples_write_in_the_repository_is_ignored():
    """Issue 18: new-teas.csv (README) and orders-<date>.csv (accounting_export.py) showed up in git status."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    written = ["new-teas.csv", "products.csv", "orders.csv", "orders-2026-11-20.csv",
               "prices.csv", "plan.ndjson", "prices.rejected.csv", "new-teas.rejected.csv"]  # README "Bulk changes"
    checked = subprocess.run([git, "check-ignore", "--no-index", *written], cwd=EXAMPLES.parent, capture_output=True,
                             text=True, timeout=30)
    assert checked.stdout.split() == written, checked.stderr
