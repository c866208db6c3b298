"""``myapi remote``: through click's CliRunner, and as a real subprocess, against the live server."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import stat
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from myapi.app import create_app
from myapi.cli import main
from myapi.client import ApiError, Client, Unauthorized
from myapi.db import get_db
from myapi.remote import config_path, server_of

GOOD_CSV = ("sku,name,category,price,stock\r\n"
            "TEA-1,Sencha,tea,4.50,10\r\nTEA-2,Matcha,tea,9.00,5\r\nMUG-1,Mug,mugs,7.25,0\r\n")
BAD_CSV = "sku,name,category,price,stock\r\nTEA-1,Sencha,tea,free,10\r\nTEA-2,,tea,9.00,5\r\n"


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    """A config dir of the test's own; no MYAPI_URL / MYAPI_TOKEN from the caller's shell."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("MYAPI_URL", raising=False)
    monkeypatch.delenv("MYAPI_TOKEN", raising=False)
    monkeypatch.delenv("MYAPI_API_KEY", raising=False)
    return home


def run(*args, input=None, env=None):
    return CliRunner().invoke(main, ["remote", *args], input=input, env=env, catch_exceptions=False)


@pytest.fixture
def signed_in(live_server, admin):
    result = run("login", input="root\n" + admin.password + "\n", env={"MYAPI_URL": live_server})
    assert result.exit_code == 0, result.output
    return live_server


def test_login_stores_a_private_token_and_logout_revokes_it(live_server, admin, config_home):
    result = run("login", input=f"{live_server}/api/v1/\nroot\n{admin.password}\n")  # asked for the URL
    assert result.exit_code == 0, result.output
    assert "Server URL" in result.output and f"signed in to {live_server} as root" in result.stderr
    path = config_path()
    assert path.parent.parent == config_home and path.parent.name == "myapi"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["url"] == live_server and Client(live_server, stored["token"]).me()["username"] == "root"
    assert admin.password not in path.read_text()

    result = run("logout")
    assert result.exit_code == 0 and "signed out" in result.stderr
    assert not path.exists()
    with pytest.raises(Unauthorized):
        Client(live_server, stored["token"]).me()
    assert "not signed in" in run("logout").stderr


def test_login_with_a_wrong_password_fails_cleanly(live_server, admin):
    result = run("login", input="root\nwrong-password\n", env={"MYAPI_URL": live_server})
    assert result.exit_code == 1
    assert "error: Unauthorized: Unknown username or wrong password." in result.stderr
    assert not config_path().exists()


def test_products_list_formats_and_filters(signed_in, admin):
    Client(signed_in, admin.token).import_products(io.BytesIO(GOOD_CSV.encode()))

    piped = run("products", "list")  # not a terminal: CSV
    assert piped.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(piped.stdout)))
    assert [row["sku"] for row in rows] == ["TEA-1", "TEA-2", "MUG-1"]
    assert list(rows[0])[:7] == ["id", "sku", "name", "category", "price", "stock", "is_available"]

    table = run("products", "list", "--format", "table", "--category", "tea", "--sort", "-price")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["id", "sku", "name", "category", "price", "stock", "is_available"]
    assert set(lines[1]) <= {"-", " "}
    assert [line.split()[1] for line in lines[2:]] == ["TEA-2", "TEA-1"]
    assert lines[2].split()[4] == "9.00"

    listed = json.loads(run("products", "list", "--format", "json", "--out-of-stock").stdout)
    assert [p["sku"] for p in listed] == ["MUG-1"]
    assert len(json.loads(run("products", "list", "--format", "json", "--limit", "2").stdout)) == 2


def test_products_export_and_import(signed_in, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(GOOD_CSV)
    result = run("products", "import", str(good), "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("dry run, nothing written: 3 rows: 3 created, 0 updated, 0 unchanged, 0 rejected "
                             "(import 1)\n")
    assert run("products", "import", str(good)).stdout == ("imported 3 rows: 3 created, 0 updated, 0 unchanged, "
                                                           "0 rejected (import 2)\n")

    exported = tmp_path / "out.csv"
    result = run("products", "export", str(exported), "--category", "tea")
    assert result.exit_code == 0 and "exported" in result.stderr
    assert [row["sku"] for row in csv.DictReader(exported.open(newline=""))] == ["TEA-1", "TEA-2"]
    to_stdout = run("products", "export", "-", "--format", "ndjson")
    assert [json.loads(line)["sku"] for line in to_stdout.stdout.splitlines()] == ["TEA-1", "TEA-2", "MUG-1"]
    assert "download" in run("products", "export", str(exported), "--progress").stderr

    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV)
    result = run("products", "import", str(bad))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:3] == [
        "error: Invalid rows: 2 row error(s); nothing was imported.",
        "  row 2, price: must be an amount like 19.99",
        "  row 3, name: This field is required.",
    ]
    # Every rejected row is saved next to the file, as uploaded, with its error (issue 16).
    assert f"the rejected rows are in {tmp_path / 'bad.rejected.csv'}" in result.stderr
    rejected = list(csv.reader((tmp_path / "bad.rejected.csv").open(newline="")))
    assert rejected[0] == ["error", "sku", "name", "category", "price", "stock"]
    assert [row[1] for row in rejected[1:]] == ["TEA-1", "TEA-2"]


def test_orders_and_reports(signed_in, live_server, admin, customer, tmp_path):
    api = Client(live_server, admin.token)
    api.import_products(io.BytesIO(GOOD_CSV.encode()))
    shop = Client(live_server, customer.token)
    paid = shop.place_order([(1, 2), (2, 1)], "1 High Street")
    api.set_order_status(paid["id"], "paid")
    shop.place_order([(2, 1)], "2 High Street")

    table = run("orders", "list", "--format", "table", "--status", "paid").stdout.splitlines()
    assert table[0].split() == ["id", "user_id", "status", "total_amount", "items", "date_created"]
    assert "2 x Sencha; 1 x Matcha" in table[2] and len(table) == 3
    rows = list(csv.DictReader(io.StringIO(run("orders", "list").stdout)))
    assert [(row["id"], row["status"]) for row in rows] == [("1", "paid"), ("2", "pending")]

    path = tmp_path / "orders.csv"
    assert run("orders", "export", str(path), "--user-id", str(customer.id)).exit_code == 0
    assert [row["items.product_name"] for row in csv.DictReader(path.open(newline=""))] == [
        "Sencha", "Matcha", "Matcha"]

    top = run("reports", "top-customers", "--format", "json")
    assert json.loads(top.stdout) == [{"username": "alice", "email": "alice@example.com", "order_count": 1,
                                       "total_spent": "18.00"}]
    by_category = list(csv.DictReader(io.StringIO(run("reports", "revenue-by-category").stdout)))
    assert by_category == [{"category": "tea", "revenue": "18.00", "units_sold": "3"}]
    months = run("reports", "monthly-revenue", "--format", "table").stdout.splitlines()
    assert months[0].split() == ["month", "order_count", "unique_customers", "revenue", "running_total"]
    assert len(months) == 14


def test_environment_overrides_and_errors(signed_in, live_server, customer):
    # MYAPI_TOKEN wins over the stored (admin) token: a customer may not read reports.
    result = run("reports", "top-customers", env={"MYAPI_TOKEN": customer.token})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: Forbidden: ")
    assert "request id: " in result.stderr

    # The stored token only ever goes to the server it came from.
    other = live_server.replace("127.0.0.1", "localhost")
    assert server_of(other + "/api/v1/") == other
    result = run("orders", "list", env={"MYAPI_URL": other})
    assert result.exit_code == 1 and "error: Unauthorized" in result.stderr
    assert "myapi remote login" in result.stderr


def test_rate_limited_sign_in(app_config, admin):
    limited = create_app({**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_SIGNIN": "1/minute"})
    server = make_server("127.0.0.1", 0, limited, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        env = {"MYAPI_URL": f"http://127.0.0.1:{server.port}"}
        assert run("login", input=f"root\n{admin.password}\n", env=env).exit_code == 0
        again = run("login", input=f"root\n{admin.password}\n", env=env)
    finally:
        server.shutdown()
        thread.join(5)
        get_db(limited).engine.dispose()
    assert again.exit_code == 1
    assert again.stderr.startswith("error: Too Many Requests")
    assert "(try again in " in again.stderr


def test_not_signed_in_anywhere(live_server):
    result = run("products", "list")
    assert result.exit_code == 1 and "run `myapi remote login` or set MYAPI_URL" in result.stderr
    # Anyone may read the catalogue: a URL is enough.
    assert run("products", "list", env={"MYAPI_URL": live_server}).exit_code == 0


# -- as a real process ---------------------------------------------------------------


def myapi(*args, env, input=None):
    return subprocess.run([sys.executable, "-m", "myapi.cli", "remote", *args], input=input, env=env,
                          capture_output=True, text=True, timeout=60,
                          start_new_session=True)  # no controlling terminal: the password is read from stdin


def test_as_a_subprocess(live_server, admin, tmp_path, config_home):
    env = {name: value for name, value in os.environ.items() if not name.startswith("MYAPI_")}
    env.update({"XDG_CONFIG_HOME": str(config_home), "MYAPI_URL": live_server})

    login = myapi("login", env=env, input=f"root\n{admin.password}\n")
    assert login.returncode == 0, login.stderr
    assert f"signed in to {live_server} as root" in login.stderr
    assert stat.S_IMODE(config_path().stat().st_mode) == 0o600

    good = tmp_path / "good.csv"
    good.write_text(GOOD_CSV)
    imported = myapi("products", "import", str(good), env=env)
    assert imported.returncode == 0 and imported.stdout == ("imported 3 rows: 3 created, 0 updated, 0 unchanged, "
                                                            "0 rejected (import 1)\n")
    assert imported.stderr == ""  # piped: no progress bar

    listed = myapi("products", "list", env=env)
    assert listed.returncode == 0
    assert [row["name"] for row in csv.DictReader(io.StringIO(listed.stdout))] == ["Sencha", "Matcha", "Mug"]

    exported = tmp_path / "export.csv"
    export = myapi("products", "export", str(exported), env=env)
    assert export.returncode == 0 and export.stderr.startswith("exported ") and "download" not in export.stderr
    assert exported.read_text().count("\n") == 4

    # When stderr is a terminal the same export shows a progress bar there (tqdm draws on stderr).
    leader, follower = pty.openpty()
    # A new pty is 0 columns wide, where tqdm draws nothing: give it a terminal's size.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    drawn = b""
    try:
        with_bar = subprocess.run([sys.executable, "-m", "myapi.cli", "remote", "products", "export", str(exported)],
                                  env=env, stdout=subprocess.PIPE, stderr=follower, timeout=60)
        os.close(follower)
        follower = None
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if follower is not None:
            os.close(follower)
        os.close(leader)
    assert with_bar.returncode == 0 and b"download" in drawn and b"exported " in drawn

    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV)
    failed = myapi("products", "import", str(bad), "--dry-run", env=env)
    assert failed.returncode == 1 and failed.stdout == ""
    assert "error: Invalid rows: 2 row error(s); nothing was imported." in failed.stderr
    assert "  row 2, price: must be an amount like 19.99" in failed.stderr
    assert "  row 3, name: This field is required." in failed.stderr
    assert "Traceback" not in failed.stderr


def test_keys_create_list_revoke_and_a_script_with_the_key(signed_in, db_session):
    created = run("keys", "create", "accounting", "--scope", "orders:read", "--scope", "reports:read")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("myapi_") and "not shown again" in created.stderr

    listed = run("keys", "list", "--format", "csv")
    assert listed.exit_code == 0 and "accounting" in listed.stdout and "orders:read reports:read" in listed.stdout
    assert secret not in listed.stdout and secret[:14] in listed.stdout

    # The key in place of a login: the client and the CLI read MYAPI_API_KEY.
    report = run("reports", "top-customers", "--format", "json", env={"MYAPI_API_KEY": secret, "MYAPI_URL": signed_in})
    assert report.exit_code == 0, report.output
    with pytest.raises(ApiError) as refused:
        Client(signed_in, api_key=secret).list_products()
    assert refused.value.status == 403 and refused.value.errors == {"scope": "products:read"}

    key_id = json.loads(run("keys", "list", "--format", "json").stdout)[0]["id"]
    assert run("keys", "revoke", str(key_id)).exit_code == 0
    with pytest.raises(Unauthorized):
        Client(signed_in, api_key=secret).top_customers()


# -- a person at the terminal (issue 18) ------------------------------------------------------


def test_an_unreachable_server_is_one_clear_line_after_a_short_visible_retry():
    """It used to be 16 s of silence, then urllib3's 'HTTPConnectionPool(...): Max retries exceeded...'."""
    from tools.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = run("products", "list", env={"MYAPI_URL": url})
    took = time.monotonic() - started
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"cannot reach {url}: connection refused; retrying now",
        f"cannot reach {url}: connection refused; retrying in 1 s",
        f"error: cannot reach {url}: connection refused",
    ]
    assert took < 5, took
    login = run("login", "--url", url + "/api/v1", "--username", "root", "--password", "x")
    assert login.exit_code == 1 and login.stderr.splitlines()[-1] == f"error: cannot reach {url}: connection refused"


def test_connection_reasons_in_a_few_words():
    from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

    from myapi.client import connection_reason, unreachable

    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert connection_reason(requests_error(MaxRetryError(None, "/x", refused))) == "connection refused"
    assert connection_reason(MaxRetryError(None, "/x", ConnectTimeoutError(None, "timed out"))) == "timed out"
    assert unreachable("http://shop.example:8000/api/v1/products?page=2", refused) == (
        "cannot reach http://shop.example:8000: connection refused")


def requests_error(reason):
    import requests

    return requests.ConnectionError(reason)


def test_export_progress_counts_products_out_of_the_servers_total(signed_in, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text('sku,name,category,price,stock,description\r\nTEA-1,Sencha,tea,4.50,10,"Two\nlines, ""quoted"""\r\n'
                    'TEA-2,Matcha,tea,9.00,5,\r\nMUG-1,Mug,mugs,7.25,0,"A\n\n""b"""\r\n')  # a row is not a line
    assert run("products", "import", str(good)).exit_code == 0
    for fmt in ("csv", "ndjson"):
        shown = run("products", "export", str(tmp_path / f"out.{fmt}"), "--format", fmt, "--progress").stderr
        assert "3/3" in shown and " products" in shown, shown  # not a byte counter
