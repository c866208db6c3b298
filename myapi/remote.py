"""``myapi remote``: drive a running myapi server from the shell, through :mod:`myapi.client`.

``myapi remote login`` asks for the server URL, a username and a password and
keeps ``{url, token}`` in the user's config dir (``click.get_app_dir("myapi")``,
a 0600 file). ``MYAPI_URL`` and ``MYAPI_TOKEN`` override what is stored; a
stored token is only ever sent to the server it came from.

Lists print a table on a terminal and CSV when piped (``--format`` chooses:
table, csv or json). Exports and imports show a progress bar when stdout is a
terminal. An error prints the problem's title, detail and field errors on
stderr and exits with status 1.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import click
import requests

from .client import API_PREFIX, ApiError, Client, RateLimited, Unauthorized, ValidationFailed, unreachable
from .clihelp import HelpGroup
from .csvcells import plain_cell
from .models import API_KEY_SCOPES, DELIVERY_STATUSES, WEBHOOK_EVENT_TYPES

DEFAULT_URL = "http://127.0.0.1:5000"
#: A command talks to a person: a server that does not answer gets two quick, announced
#: retries (about a second), not the ~15 s of silence a script's client allows.
CONNECT_RETRIES = 2
CONFIG_FILE = "remote.json"

PRODUCT_COLUMNS = ("id", "sku", "name", "category", "price", "stock", "is_available")
ORDER_COLUMNS = ("id", "user_id", "status", "total_amount", "items", "date_created")


# -- stored credentials -----------------------------------------------------------


def config_path() -> Path:
    return Path(click.get_app_dir("myapi")) / CONFIG_FILE


def load_stored() -> dict:
    try:
        data = json.loads(config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def store(url: str, token: str) -> Path:
    """Write ``{url, token}`` readable by the user alone (0600, in a 0700 dir), atomically."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{CONFIG_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"url": url, "token": token}, fh)
    os.chmod(tmp, 0o600)  # in case it existed with other permissions
    os.replace(tmp, path)
    return path


def forget() -> bool:
    try:
        config_path().unlink()
        return True
    except FileNotFoundError:
        return False


def server_of(url: str) -> str:
    """``http://host:port`` of a URL, with or without ``/api/v1`` or a trailing slash."""
    url = url.strip().rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}"


def credentials(url: str | None = None) -> tuple[str | None, str | None]:
    """The server and the bearer credential a command or a script should use, either possibly None.

    The server: ``url``, else MYAPI_URL, else the one `login` stored. The
    credential: MYAPI_TOKEN, then an API key (MYAPI_API_KEY), then the token
    `login` stored, if it came from that same server. examples/ use it too.
    """
    stored = load_stored()
    url = url or os.environ.get("MYAPI_URL") or stored.get("url") or None
    token = os.environ.get("MYAPI_TOKEN") or os.environ.get("MYAPI_API_KEY") or None
    if token is None and url and stored.get("token") and server_of(stored.get("url", "")) == server_of(url):
        token = stored["token"]
    return url, token


def connect() -> Client:
    """A client for MYAPI_URL / the stored URL, with MYAPI_TOKEN / MYAPI_API_KEY / the stored token."""
    url, token = credentials()
    if not url:
        raise click.ClickException("no server: run `myapi remote login` or set MYAPI_URL")
    return Client(url, token, **client_options())


def client_options() -> dict:
    return {"connect_retries": CONNECT_RETRIES, "on_retry": lambda message: click.echo(message, err=True)}


# -- output -----------------------------------------------------------------------


def cell(value) -> str:
    """A value as table or CSV text: csvcells.plain_cell (not neutralised), an order's items summed up."""
    if isinstance(value, list):  # an order's items: "2 x Tea; 1 x Mug"
        return "; ".join(
            f"{item.get('quantity')} x {item.get('product_name') or item.get('product_id')}"
            if isinstance(item, Mapping) else str(item) for item in value)
    if isinstance(value, Mapping):
        return json.dumps(value)
    return plain_cell(value)


def flat(record: Mapping, prefix: str = "") -> dict:
    out = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            out.update(flat(value, f"{prefix}{key}."))
        elif isinstance(value, list) and not any(isinstance(item, Mapping) for item in value):
            out[f"{prefix}{key}"] = " ".join(map(str, value))  # e.g. a key's scopes
        else:
            out[f"{prefix}{key}"] = value
    return out


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def print_table(rows: list[Mapping], columns: Iterable[str], width: int = 40) -> None:
    columns = list(columns)
    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    cells = [[text if len(text) <= width else text[: width - 1] + "…" for text in line] for line in cells]
    widths = [max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)]
    numeric = [bool(cells) and all(is_number(line[i]) or not line[i] for line in cells) for i in range(len(columns))]

    def line(values):
        return "  ".join(value.rjust(w) if num else value.ljust(w)
                         for value, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    click.echo(line(columns))
    click.echo(line(["-" * w for w in widths]))
    for values in cells:
        click.echo(line(values))
    click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", err=True)


def output(records: Iterable[Mapping], fmt: str | None, table_columns: Iterable[str] | None = None) -> None:
    """Records as a table (a terminal's default), CSV (when piped) or JSON."""
    fmt = fmt or ("table" if sys.stdout.isatty() else "csv")
    if fmt == "json":
        click.echo(json.dumps(list(records), indent=2 if sys.stdout.isatty() else None))
        return
    rows = [flat(record) for record in records]
    every_column = list(dict.fromkeys(key for row in rows for key in row))
    if fmt == "table":
        print_table(rows, list(table_columns or every_column))
        return
    columns = list(dict.fromkeys([*(table_columns or ()), *every_column]))  # CSV: every column, the table's first
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(column)) for column in columns])


def limited(records: Iterable[Mapping], limit: int | None) -> Iterable[Mapping]:
    for count, record in enumerate(records):
        if limit is not None and count >= limit:
            return
        yield record


def show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress  # tqdm draws on stderr


def report_error(error: ApiError) -> None:
    message = f"error: {error.title}"
    if error.detail and error.detail != error.title:
        message += f": {error.detail}"
    click.echo(message, err=True)
    for line in error.error_lines():
        click.echo(f"  {line}", err=True)
    extra = error.body.get("error_count")
    if isinstance(extra, int) and extra > len(error.errors or []):
        click.echo(f"  ... {extra - len(error.errors or [])} more", err=True)
    if isinstance(error, Unauthorized):
        click.echo("  (sign in with `myapi remote login`, or set MYAPI_TOKEN)", err=True)
    if isinstance(error, RateLimited) and error.retry_after is not None:
        click.echo(f"  (try again in {error.retry_after:g} s)", err=True)
    if error.request_id:
        click.echo(f"  request id: {error.request_id}", err=True)


# -- the command group ------------------------------------------------------------


class RemoteGroup(HelpGroup):
    """Turns API and connection errors of every sub-command into a message and exit status 1."""

    group_class = HelpGroup

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ApiError as error:
            report_error(error)
            ctx.exit(1)
        except requests.ConnectionError as error:
            server = error.request.url if error.request is not None else "the server"
            click.echo(f"error: {unreachable(server, error)}", err=True)
            ctx.exit(1)
        except requests.RequestException as error:
            click.echo(f"error: cannot talk to the server: {error}", err=True)
            ctx.exit(1)


FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default=None,
                      help="Output format (default: table on a terminal, csv when piped).")
EXPORT_FORMAT = click.option("--format", "fmt", type=click.Choice(["csv", "json", "ndjson"]), default="csv",
                             show_default=True, help="File format.")
PROGRESS = click.option("--progress/--no-progress", default=None,
                        help="Progress bar (default: when stdout is a terminal).")
LIMIT = click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many rows.")


def product_filters(command: Callable) -> Callable:
    for decorator in reversed((
        click.option("--category", help="Category slug."),
        click.option("--q", help="Substring of name or sku."),
        click.option("--min-price", help="Lowest price (inclusive)."),
        click.option("--max-price", help="Highest price (inclusive)."),
        click.option("--in-stock/--out-of-stock", default=None, help="Only products with / without stock."),
        click.option("--available/--retired", "is_available", default=None, help="is_available true / false."),
        click.option("--updated-since", help="ISO 8601 time: products changed since then."),
        click.option("--sort", help="Sort keys, e.g. -price,name."),
    )):
        command = decorator(command)
    return command


def order_filters(command: Callable) -> Callable:
    for decorator in reversed((
        click.option("--status", help="pending, paid, shipped, completed or cancelled."),
        click.option("--created", help="ISO 8601 interval or date (a date is that whole day, UTC)."),
        click.option("--user-id", type=int, help="Orders of one user (admin)."),
        click.option("--sort", help="Sort keys, e.g. -date_created."),
    )):
        command = decorator(command)
    return command


@click.group(cls=RemoteGroup)
def remote() -> None:
    """Drive a running myapi server (MYAPI_URL / MYAPI_TOKEN, or `myapi remote login`)."""


@remote.command()
@click.option("--url", envvar="MYAPI_URL", prompt="Server URL", default=lambda: load_stored().get("url", DEFAULT_URL),
              help="The server, e.g. http://127.0.0.1:5000 (env MYAPI_URL).")
@click.option("--username", prompt=True)
@click.option("--password", prompt=True, hide_input=True)
def login(url: str, username: str, password: str) -> None:
    """Sign in and keep the token in your config dir (0600)."""
    client = Client.login(url, username, password, **client_options())
    path = store(server_of(url), client.token)
    click.echo(f"signed in to {server_of(url)} as {username}; token kept in {path}", err=True)
    if os.environ.get("MYAPI_TOKEN"):
        click.echo("note: MYAPI_TOKEN is set and takes precedence over the stored token", err=True)


@remote.command()
def logout() -> None:
    """Revoke the token on the server and forget it."""
    stored = load_stored()
    if not (stored.get("token") or os.environ.get("MYAPI_TOKEN")):
        click.echo("not signed in", err=True)
        return
    client = connect()
    if client.token:
        with contextlib.suppress(Unauthorized):  # expired or revoked already: nothing to revoke
            client.logout()
    forget()
    click.echo("signed out", err=True)


def download(export, file: str, fmt: str, progress: bool, filters: dict) -> None:
    """Stream an export (a Client.export_* method) to FILE, or to stdout for ``-``."""
    target = sys.stdout.buffer if file == "-" else file
    written = export(target, fmt, progress=show_progress(progress) and file != "-", **filters)
    if file != "-":
        click.echo(f"exported {written} bytes to {file}", err=True)


# -- products ---------------------------------------------------------------------


@remote.group()
def products() -> None:
    """The catalogue: list, export, import."""


@products.command("list")
@product_filters
@FORMAT
@LIMIT
def products_list(fmt, limit, **filters) -> None:
    """List products (every page)."""
    client = connect()
    output(limited(client.iter_products(**filters), limit), fmt, PRODUCT_COLUMNS)


@products.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@product_filters
@EXPORT_FORMAT
@PROGRESS
def products_export(file, fmt, progress, **filters) -> None:
    """Download the catalogue to FILE (- for stdout) as it streams."""
    download(connect().export_products, file, fmt, progress, filters)


@products.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check and count every row; write nothing.")
@click.option("--plan", is_flag=True,
              help="Show what would change, the largest price moves first; write nothing.")
@click.option("--on-error", type=click.Choice(["reject_file", "skip_rows"]), default=None,
              help="reject_file (the default): all or nothing; skip_rows: import the valid rows. Rejected rows "
                   "are saved next to FILE, as FILE.rejected.csv.")
@click.option("--max-price-change", metavar="PERCENT",
              help="Refuse the whole file if any price would move more than PERCENT %.")
@click.option("--diff", "diff_file", type=click.Path(dir_okay=False),
              help="With --plan: save the whole diff, one entry per row, to this file (.ndjson, else CSV).")
@PROGRESS
def products_import(file, dry_run, plan, on_error, max_price_change, diff_file, progress) -> None:
    """Upload a CSV of sku and the columns to set (name, category, price, stock, description,
    is_available): plan it first, skip the bad rows, or import all or nothing."""
    client = connect()
    options = {"dry_run": dry_run, "plan": plan, "on_error": on_error, "max_price_change": max_price_change,
               "progress": show_progress(progress)}
    rejected_file = rejected_path(file)
    if plan:
        print_plan(client.import_products(file, save_to=diff_file, **options))
        if diff_file:
            click.echo(f"the whole diff is in {diff_file}", err=True)
        return
    try:
        if on_error == "skip_rows":
            result = client.import_products(file, save_to=rejected_file, **options)
        else:
            result = client.import_products(file, **options)
    except ValidationFailed as error:
        if not error.body.get("error_count"):
            raise
        # Bad rows: nothing was imported. Save them all (a skip_rows dry run finds every one).
        report_error(error)
        client.import_products(file, save_to=rejected_file, **{**options, "dry_run": True, "on_error": "skip_rows",
                                                               "progress": False})
        click.echo(f"the rejected rows are in {rejected_file}, each with its error: fix them in {file} "
                   "and import it again", err=True)
        raise click.exceptions.Exit(1) from None
    summary = (f"{result['rows']} rows: {result['created']} created, {result['updated']} updated, "
               f"{result.get('unchanged', 0)} unchanged, {result.get('rejected', 0)} rejected "
               f"(import {result['import_id']})")
    click.echo(f"dry run, nothing written: {summary}" if result.get("dry_run") else f"imported {summary}")
    if on_error == "skip_rows":
        if result.get("rejected"):
            click.echo(f"the rejected rows are in {rejected_file}, each with its error: fix them and import "
                       "that file", err=True)
        else:
            Path(rejected_file).unlink(missing_ok=True)  # only the header: nothing was rejected


# `myapi remote import FILE`: the same command, by the name issue 16 gave it.
remote.add_command(products_import, "import")


def rejected_path(file: str) -> str:
    """``new-teas.csv`` -> ``new-teas.rejected.csv``, next to it."""
    path = Path(file)
    return str(path.with_name(f"{path.stem if path.suffix.lower() == '.csv' else path.name}.rejected.csv"))


def change_text(changes: Mapping) -> str:
    """``price 4.50 -> 4.95; stock 10 -> 12`` (a created product: its values)."""
    return "; ".join(f"{name} {cell(change.get('before'))} -> {cell(change.get('after'))}"
                     if change.get("before") is not None else f"{name} {cell(change.get('after'))}"
                     for name, change in changes.items())


PLAN_LINES = 20  # changes and errors a plan prints (the rest: --diff)


def print_plan(result: Mapping, title: str = "plan, nothing written") -> None:
    """A plan, readable: the counts, whether it would be refused, the largest price moves, the first changes."""
    click.echo(f"{title}: {result['rows']} rows: {result['created']} created, "
               f"{result['updated']} updated, {result['unchanged']} unchanged, {result['rejected']} rejected "
               f"(import {result['import_id']})")
    if result.get("refused"):
        click.echo(f"the import would be refused: {result['refused']}")
    moves = result.get("largest_price_changes") or []
    if moves:
        click.echo("\nlargest price changes:")
        print_table([{**move, "change": f"{float(move['change_percent']):+.2f} %"} for move in moves],
                    ("row", "sku", "before", "after", "change"))
    guardrail = result.get("price_guardrail") or []
    if guardrail:
        click.echo("\nover max_price_change:")
        print_table(guardrail[:PLAN_LINES], ("row", "sku", "before", "after", "change_percent"))
    changes = result.get("changes") or []
    if changes:
        click.echo("\nchanges:")
        where = "row" if any(change.get("row") is not None for change in changes) else "index"  # a file, a PATCH
        print_table([{**change, "changes": change_text(change.get("changes") or {})}
                     for change in changes[:PLAN_LINES]], (where, "sku", "action", "changes"), width=80)
        more = result["created"] + result["updated"] - min(len(changes), PLAN_LINES)
        if more > 0:
            click.echo(f"... and {more} more (--diff FILE saves every row's)")
    errors = result.get("errors") or []
    if errors:
        click.echo("\nrejected rows:")
        for error in errors[:PLAN_LINES]:
            click.echo(f"  row {error['row']}, {error['field']}: {error['message']}")
        if result.get("error_count", 0) > min(len(errors), PLAN_LINES):
            click.echo(f"  ... {result['error_count'] - min(len(errors), PLAN_LINES)} more")


# -- the audit trail of bulk changes ----------------------------------------------


@remote.group()
def imports() -> None:
    """The audit trail of bulk changes: imports, plans, dry runs, PATCH /products (admin)."""


IMPORT_COLUMNS = ("id", "date_created", "user_id", "source", "plan", "dry_run", "on_error", "rows", "created",
                  "updated", "unchanged", "rejected")


@imports.command("list")
@click.option("--user-id", type=int, help="Only this user's.")
@click.option("--source", type=click.Choice(["file", "patch"]), help="Only imports, or only PATCH /products.")
@FORMAT
@LIMIT
def imports_list(user_id, source, fmt, limit) -> None:
    """Every recorded bulk change, the newest first."""
    records = connect().iter_imports(user_id=user_id, source=source, sort="-id")
    output(limited(records, limit), fmt, IMPORT_COLUMNS)


@imports.command("show")
@click.argument("import_id", type=click.IntRange(1))
def imports_show(import_id) -> None:
    """Who made one bulk change, when, with which options, and what it changed."""
    record = connect().get_import(import_id)
    click.echo(f"import {record['id']} by user {record['user_id']}"
               + (f" (API key {record['api_key_id']})" if record.get("api_key_id") else "")
               + f" at {record['date_created']}: {record['source']}, "
               + ("plan" if record["plan"] else "dry run" if record["dry_run"] else "written")
               + (f", on_error={record['on_error']}" if record.get("on_error") else "")
               + (f", max_price_change={record['max_price_change']}" if record.get("max_price_change") else ""))
    title = "plan, nothing written" if record["plan"] else "dry run, nothing written" if record["dry_run"] else "done"
    print_plan({**record, "import_id": record["id"]}, title)


# -- orders -----------------------------------------------------------------------


@remote.group()
def orders() -> None:
    """Orders: list, export."""


@orders.command("list")
@order_filters
@FORMAT
@LIMIT
def orders_list(fmt, limit, **filters) -> None:
    """List your orders (an admin: everyone's)."""
    client = connect()
    output(limited(client.iter_orders(**filters), limit), fmt, ORDER_COLUMNS)


@orders.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@order_filters
@EXPORT_FORMAT
@PROGRESS
def orders_export(file, fmt, progress, **filters) -> None:
    """Download orders to FILE (- for stdout); CSV has one row per order line."""
    download(connect().export_orders, file, fmt, progress, filters)


# -- reports ----------------------------------------------------------------------


@remote.group()
def reports() -> None:
    """Sales reports (admin)."""


@reports.command("top-customers")
@click.option("--limit", type=click.IntRange(1, 100), default=None, help="How many (default 10).")
@click.option("--interval", help="ISO 8601 interval, e.g. 2026-01/2026-03.")
@FORMAT
def top_customers(limit, interval, fmt) -> None:
    """Customers by total spent."""
    output(connect().top_customers(limit=limit, interval=interval), fmt)


@reports.command("revenue-by-category")
@click.option("--interval", help="ISO 8601 interval, e.g. 2026-01/2026-03.")
@FORMAT
def revenue_by_category(interval, fmt) -> None:
    """Revenue and units sold per category."""
    output(connect().revenue_by_category(interval=interval), fmt)


@reports.command("monthly-revenue")
@click.option("--year", type=int, default=None, help="Default: this year.")
@FORMAT
def monthly_revenue(year, fmt) -> None:
    """Twelve months of revenue with a running total."""
    output(connect().monthly_revenue(year=year), fmt)


@remote.command("sync")
@click.argument("entity", type=click.Choice(["products", "orders"]))
@click.argument("file", type=click.Path(dir_okay=False))
@PROGRESS
def sync(entity, file, progress) -> None:
    """Keep FILE (CSV) equal to the server's products or orders.

    The first run exports; later runs apply only what changed since (the
    watermark is kept in FILE.since). Run it as often as you like.
    """
    result = connect().sync(entity, file, progress=show_progress(progress))
    click.echo(f"{file}: {result}", err=True)


@remote.group()
def keys() -> None:
    """API keys for scripts (needs a sign-in: `myapi remote login`)."""


KEY_COLUMNS = ("id", "name", "prefix", "scopes", "expires_at", "last_used_at", "revoked_at")


@keys.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(API_KEY_SCOPES),
              help="What the key may do; repeat for several.")
@click.option("--expires-at", help="ISO 8601 date-time; default: never.")
def keys_create(name, scopes, expires_at) -> None:
    """Create a key and print its secret: the only time it is shown."""
    key = connect().create_api_key(name, scopes, expires_at=expires_at)
    click.echo(f"API key {key['id']} ({', '.join(key['scopes'])}); keep this secret, it is not shown again:",
               err=True)
    click.echo(key["secret"])


@keys.command("list")
@FORMAT
def keys_list(fmt) -> None:
    """Your keys (an admin: everyone's), never their secrets."""
    output(connect().iter_api_keys(), fmt, KEY_COLUMNS)


@keys.command("revoke")
@click.argument("key_id", type=click.IntRange(1))
def keys_revoke(key_id) -> None:
    """Revoke a key: it stops working at once."""
    connect().revoke_api_key(key_id)
    click.echo(f"API key {key_id} revoked", err=True)


# -- webhooks (DESIGN §11) ----------------------------------------------------------


@remote.group()
def webhooks() -> None:
    """Webhook subscriptions and their deliveries (admin, or a key with webhooks:manage)."""


WEBHOOK_COLUMNS = ("id", "url", "events", "is_active", "description", "date_created")
DELIVERY_COLUMNS = ("id", "event_id", "event_type", "entity_id", "status", "attempts", "last_status_code",
                    "last_error", "next_attempt_at")


@webhooks.command("create")
@click.argument("url")
@click.option("--event", "events", multiple=True, required=True, type=click.Choice(WEBHOOK_EVENT_TYPES),
              help="An event type to send; repeat for several.")
@click.option("--description", default=None, help="What the receiver is, for the list.")
def webhooks_create(url, events, description) -> None:
    """Subscribe URL to events and print its signing secret: the only time it is shown."""
    webhook = connect().create_webhook(url, events, description=description)
    click.echo(f"webhook {webhook['id']} ({', '.join(webhook['events'])}) -> {webhook['url']}; keep this signing "
               "secret, it is shown once and not again:", err=True)
    click.echo(webhook["secret"])


@webhooks.command("list")
@click.option("--active/--paused", "is_active", default=None, help="Only active / paused subscriptions.")
@FORMAT
def webhooks_list(is_active, fmt) -> None:
    """Every subscription, never its secret."""
    output(connect().iter_webhooks(is_active=is_active), fmt, WEBHOOK_COLUMNS)


@webhooks.command("deliveries")
@click.argument("webhook_id", type=click.IntRange(1))
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), default=None, help="Only deliveries in this state.")
@FORMAT
@LIMIT
def webhooks_deliveries(webhook_id, status, fmt, limit) -> None:
    """A subscription's delivery log, the newest first: status, attempts, the last answer, the next attempt."""
    records = connect().iter_deliveries(webhook_id, status=status, sort="-id")
    output(limited(records, limit), fmt, DELIVERY_COLUMNS)


@webhooks.command("delete")
@click.argument("webhook_id", type=click.IntRange(1))
def webhooks_delete(webhook_id) -> None:
    """Delete a subscription, with its delivery log and pending deliveries."""
    connect().delete_webhook(webhook_id)
    click.echo(f"webhook {webhook_id} deleted", err=True)


@webhooks.command("rotate-secret")
@click.argument("webhook_id", type=click.IntRange(1))
def webhooks_rotate_secret(webhook_id) -> None:
    """Print a new signing secret (shown once); the previous one keeps signing for 24 h."""
    webhook = connect().rotate_webhook_secret(webhook_id)
    click.echo(f"webhook {webhook_id}: a new signing secret, shown once and not again; the previous one keeps "
               f"signing until {webhook['previous_secret_expires_at']}:", err=True)
    click.echo(webhook["secret"])


@webhooks.command("retry")
@click.argument("webhook_id", type=click.IntRange(1))
@click.argument("delivery_id", type=click.IntRange(1))
def webhooks_retry(webhook_id, delivery_id) -> None:
    """Send a delivery again now (a failed one gets one more attempt)."""
    delivery = connect().retry_delivery(webhook_id, delivery_id)
    click.echo(f"delivery {delivery_id} of webhook {webhook_id} is {delivery['status']}: the worker sends it next",
               err=True)
