"""CSV import (POST /products/import) and streaming export (GET /products/export)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import threading
from decimal import Decimal

import pytest
import requests
from sqlalchemy import func, select

from myapi.models import Product

API = "/api/v1"
HEADER = "sku,name,description,category,price,stock,is_available\r\n"


def csv_post(client, account, body: str | bytes, query: str = ""):
    data = body.encode("utf-8") if isinstance(body, str) else body
    return client.post(f"{API}/products/import{query}", data=data, content_type="text/csv",
                       headers=account.headers)


def product_count(db_session) -> int:
    return db_session.scalar(select(func.count()).select_from(Product))


def good_file(n: int = 3, start: int = 1) -> str:
    rows = [f"SKU-{i:05d},Product {i},Nice,cat-{i % 3},{i}.25,{i * 2},true\r\n" for i in range(start, start + n)]
    return HEADER + "".join(rows)


# -- import ---------------------------------------------------------------------


def test_import_creates_products(client, admin, db_session):
    response = csv_post(client, admin, good_file(3))
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"created": 3, "updated": 0, "rows": 3, "dry_run": False}
    product = db_session.scalars(select(Product).where(Product.sku == "SKU-00002")).one()
    assert product.price == Decimal("2.25") and product.stock == 4 and product.category == "cat-2"


def test_import_upserts_by_sku_and_bumps_versions(client, admin, db_session):
    csv_post(client, admin, good_file(3))
    response = csv_post(client, admin, HEADER + "SKU-00002,Renamed,,cat-9,9.99,1,false\r\n"
                        + "SKU-00009,New one,,cat-1,1.00,1,\r\n")
    assert response.get_json() == {"created": 1, "updated": 1, "rows": 2, "dry_run": False}
    product = db_session.scalars(select(Product).where(Product.sku == "SKU-00002")).one()
    assert (product.name, product.price, product.is_available, product.version) == (
        "Renamed", Decimal("9.99"), False, 2)
    assert product_count(db_session) == 4


def test_import_with_bad_rows_lists_every_one_and_writes_nothing(client, admin, db_session):
    body = (HEADER
            + "SKU-1,Good,,tea,1.00,1,true\r\n"
            + "bad sku,Bad,,tea,1.00,1,true\r\n"
            + "SKU-3,,,Not A Slug,0,-1,maybe\r\n"
            + "SKU-4,Short row\r\n")
    response = csv_post(client, admin, body)
    assert response.status_code == 400
    problem = response.get_json()
    assert problem["error_count"] == 7
    fields = [(e["row"], e["field"]) for e in problem["errors"]]
    assert fields == [(3, "sku"), (4, "name"), (4, "category"), (4, "price"), (4, "stock"),
                      (4, "is_available"), (5, "*")]
    assert product_count(db_session) == 0


def test_import_error_list_is_capped_but_counted(client, admin, db_session):
    body = HEADER + "".join(f"SKU-{i},Name,,tea,0,1,true\r\n" for i in range(150))
    problem = csv_post(client, admin, body).get_json()
    assert problem["error_count"] == 150 and len(problem["errors"]) == 100
    assert product_count(db_session) == 0


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of 100 rows on both databases, so a few hundred rows span several."""
    from myapi.services import backends

    monkeypatch.setattr(backends.SQLite, "import_batch_size", 100)
    monkeypatch.setattr(backends.PostgreSQL, "import_batch_size", 100)


def test_a_bad_row_after_many_good_batches_still_writes_nothing(client, admin, db_session, small_batches):
    body = good_file(2500) + "SKU-LAST,Name,,tea,free,1,true\r\n"
    response = csv_post(client, admin, body)
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"row": 2502, "field": "price",
                                             "message": response.get_json()["errors"][0]["message"]}]
    assert product_count(db_session) == 0


def test_dry_run_validates_and_counts_but_writes_nothing(client, admin, db_session):
    response = csv_post(client, admin, good_file(5), "?dry_run=true")
    assert response.status_code == 200
    assert response.get_json() == {"created": 5, "updated": 0, "rows": 5, "dry_run": True}
    assert product_count(db_session) == 0


def test_multipart_upload(client, admin, db_session):
    response = client.post(f"{API}/products/import", headers=admin.headers,
                           data={"file": (io.BytesIO(good_file(2).encode()), "products.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()
    assert product_count(db_session) == 2


def test_multipart_without_a_file_is_400(client, admin):
    response = client.post(f"{API}/products/import", headers=admin.headers, data={"other": "x"},
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert "file" in response.get_json()["errors"]


def test_byte_order_mark_is_tolerated(client, admin, db_session):
    response = csv_post(client, admin, b"\xef\xbb\xbf" + good_file(1).encode())
    assert response.status_code == 200, response.get_json()
    assert product_count(db_session) == 1


def test_columns_in_any_order_and_optional_columns_left_out(client, admin, db_session):
    response = csv_post(client, admin, "price,stock,sku,category,name\r\n2.00,3,AB-1,tea,Tea\r\n")
    assert response.status_code == 200
    product = db_session.scalars(select(Product)).one()
    assert product.description == "" and product.is_available is True


@pytest.mark.parametrize("body,key", [
    ("", None),
    ("sku,name,category,price\r\nA,B,tea,1.00,\r\n", "stock"),
    ("sku,name,category,price,stock,colour\r\nA,B,tea,1.00,1,red\r\n", "colour"),
    (HEADER, None),
])
def test_bad_files_are_400(client, admin, db_session, body, key):
    response = csv_post(client, admin, body)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    if key:
        assert key in response.get_json()["errors"]
    assert product_count(db_session) == 0


def test_not_utf8_is_400(client, admin, db_session):
    response = csv_post(client, admin, HEADER.encode() + "SKU-1,Caf\u00e9,,tea,1.00,1,true\r\n".encode("latin-1"))
    assert response.status_code == 400
    assert product_count(db_session) == 0


def test_import_is_admin_only_and_csv_only(client, customer, admin, db_session):
    assert csv_post(client, customer, good_file(1)).status_code == 403
    response = client.post(f"{API}/products/import", data=good_file(1), content_type="application/json",
                           headers=admin.headers)
    assert response.status_code == 415
    assert product_count(db_session) == 0


def test_oversized_import_is_413(app, admin, db_session):
    app.config["MAX_IMPORT_BYTES"] = 1000
    response = csv_post(app.test_client(), admin, good_file(100))
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert product_count(db_session) == 0


def test_concurrent_imports_of_the_same_skus(live_server, admin, db_session):
    results = []
    barrier = threading.Barrier(2)
    body = good_file(3000)

    def upload():
        barrier.wait()
        response = requests.post(f"{live_server}{API}/products/import", data=body.encode(), timeout=120,
                                 headers={**admin.headers, "Content-Type": "text/csv"})
        results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(code for code, _ in results) == [200, 200]
    assert sorted((r["created"], r["updated"]) for _, r in results) == [(0, 3000), (3000, 0)]
    assert product_count(db_session) == 3000
    versions = set(db_session.scalars(select(Product.version)))
    assert versions == {2}


# -- export ---------------------------------------------------------------------


@pytest.fixture
def imported(client, admin):
    body = good_file(30) + "EVIL-1,=cmd|' /C calc'!A0,@SUM(1),cat-1,1.00,1,true\r\n"
    assert csv_post(client, admin, body).status_code == 200


def test_export_csv_streams_every_matching_row(live_server, imported):
    response = requests.get(f"{live_server}{API}/products/export?format=csv&category=cat-1", stream=True,
                            timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"].startswith('attachment; filename="products-')
    assert response.headers["Content-Disposition"].endswith('.csv"')
    assert "Content-Length" not in response.headers  # streamed
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
    assert len(rows) == 11
    assert list(rows[0]) == ["id", "sku", "name", "description", "category", "price", "stock", "is_available",
                             "date_created", "date_updated", "links.self"]
    evil = next(r for r in rows if r["sku"] == "EVIL-1")
    assert evil["name"].startswith("'=") and evil["description"] == "'@SUM(1)"


def test_export_ndjson(live_server, imported):
    response = requests.get(f"{live_server}{API}/products/export", headers={"Accept": "application/x-ndjson"},
                            stream=True, timeout=30)
    assert response.headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.iter_lines() if line]
    assert len(lines) == 31
    assert lines[0]["sku"] == "SKU-00001" and lines[0]["price"] == "1.25"


def test_export_json_array_with_filters_and_sort(live_server, imported):
    response = requests.get(f"{live_server}{API}/products/export?sort=-price&max_price=5", timeout=30)
    assert response.headers["Content-Type"] == "application/json"
    data = response.json()
    assert [p["sku"] for p in data] == ["SKU-00004", "SKU-00003", "SKU-00002", "SKU-00001", "EVIL-1"]


def test_export_of_nothing_is_an_empty_document(client):
    with client.get(f"{API}/products/export") as response:
        assert response.get_json() == []
    with client.get(f"{API}/products/export?format=csv") as response:
        assert response.data.decode().startswith("id,sku,")


def test_export_rejects_bad_filters_before_streaming(client):
    response = client.get(f"{API}/products/export?min_price=cheap")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_an_exported_file_imports_again_as_it_is(client, admin, imported, db_session):
    with client.get(f"{API}/products/export?format=csv") as response:
        exported = response.data
    response = csv_post(client, admin, exported)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"created": 0, "updated": 31, "rows": 31, "dry_run": False}
    db_session.rollback()
    evil = db_session.scalars(select(Product).where(Product.sku == "EVIL-1")).one()
    # The neutralising apostrophe comes back in: a round trip never re-arms a formula.
    assert evil.name.startswith("'=")


TRICKY_TEXT = ["=1+1", "+1", "-2", "@SUM(A1)", "\tTabbed", "\rReturn", 'say "hi", then go', "line one\nline two",
               "café ☕ 🍵", "plain", "'already quoted", "a,b", " spaced ", "-"]


@pytest.fixture
def tricky_products(db_session):
    import datetime as dt
    moment = dt.datetime(2024, 2, 29, 23, 59, 58, 987654, tzinfo=dt.timezone.utc)
    prices = ["0.05", "1.00", "10.10", "999999.99", "12.34", "0.99", "100.00"]
    for i, text in enumerate(TRICKY_TEXT):
        db_session.add(Product(sku=f"TRICKY-{i:02d}", name=text, description=TRICKY_TEXT[-1 - i] if i % 3 else "",
                               category="=cat" if i == 3 else "tea", price=Decimal(prices[i % len(prices)]),
                               stock=i * 7, is_available=bool(i % 2), date_created=moment,
                               date_updated=moment + dt.timedelta(days=i, microseconds=i)))
    db_session.commit()


@pytest.mark.parametrize("query", ["", "?sort=-price,name", "?min_price=1.00&max_price=100.00&sort=price",
                                   "?q=E&category=tea", "?updated_since=2024-03-03T00:00:00Z"])
def test_csv_export_equals_the_generic_csv_of_the_json_fields(client, tricky_products, db_session, query):
    """The database-formatted CSV has exactly the cells the field dict + generic CSV writer give."""
    from myapi.common.fields import field_names, marshal, product_fields
    from myapi.common.representations import csv_cell, flatten

    with client.get(f"{API}/products/export?format=csv{query.replace('?', '&')}") as response:
        assert response.status_code == 200
        exported = list(csv.reader(io.StringIO(response.data.decode("utf-8"), newline="")))
    with client.get(f"{API}/products/export?format=ndjson{query.replace('?', '&')}") as response:
        ids = [json.loads(line)["id"] for line in response.data.splitlines()]
    columns = field_names(product_fields)
    assert exported[0] == columns
    expected = []
    for product_id in ids:
        flat = flatten(marshal(db_session.get(Product, product_id), product_fields))[0]
        expected.append([csv_cell(flat.get(column)) for column in columns])
    assert exported[1:] == expected
    assert len(ids) > 0 and (query or len(ids) == len(TRICKY_TEXT))


def test_csv_export_stops_cleanly_when_the_client_goes_away(live_server, app, db_session):
    import datetime as dt

    from myapi.db import get_db

    moment = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    db_session.execute(Product.__table__.insert(), [
        {"sku": f"MANY-{i:06d}", "name": f"Product {i}", "description": "x" * 200, "category": "tea",
         "price": Decimal("1.00"), "stock": 1, "is_available": True, "version": 1, "date_created": moment,
         "date_updated": moment} for i in range(20_000)])
    db_session.commit()
    with requests.get(f"{live_server}{API}/products/export?format=csv", stream=True, timeout=30) as response:
        assert next(response.iter_content(64)).startswith(b"id,sku,")
    # The abandoned stream gave its connection back (PostgreSQL: COPY cancelled):
    # the next export is whole and nothing is left checked out.
    response = requests.get(f"{live_server}{API}/products/export?format=csv", timeout=30)
    assert response.status_code == 200 and response.text.count("\n") == 20_001
    for _ in range(100):
        if get_db(app).engine.pool.checkedout() == 0:
            break
        threading.Event().wait(0.05)
    assert get_db(app).engine.pool.checkedout() == 0


def test_import_keeps_backslashes_tabs_and_line_breaks_exactly(client, admin, db_session):
    """What COPY's text format would read as escapes (\\N, \\t, a real tab...) arrives as it was sent."""
    rows = [
        ("ESC-1", "Tab\there", "line one\nline two\r\nline three"),
        ("ESC-2", r"back\slash \N \t \\", r"\N"),
        ("ESC-3", "café ☕ \"quoted\", comma", "ends with a backslash \\"),
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["sku", "name", "description", "category", "price", "stock", "is_available"])
    for sku, name, description in rows:
        writer.writerow([sku, name, description, "tea", "1.50", "3", "true"])
    response = csv_post(client, admin, out.getvalue())
    assert response.status_code == 200, response.get_json()
    stored = {p.sku: (p.name, p.description) for p in db_session.scalars(select(Product))}
    assert stored == {sku: (name, description) for sku, name, description in rows}


def test_batches_count_created_and_updated_and_the_last_repeat_wins(client, admin, db_session, small_batches):
    first = csv_post(client, admin, good_file(250))  # three batches
    assert first.get_json() == {"created": 250, "updated": 0, "rows": 250, "dry_run": False}
    # 150 existing skus (in two batches), 100 new ones, and SKU-00007 twice in
    # different batches: the later row wins.
    body = (good_file(250, start=101)
            + "SKU-00007,First repeat,,tea,1.00,1,true\r\n"
            + "".join(f"SKU-9{i:04d},Filler,,tea,1.00,1,true\r\n" for i in range(120))
            + "SKU-00007,Last repeat,,tea,2.00,2,false\r\n")
    second = csv_post(client, admin, body)
    assert second.get_json() == {"created": 220, "updated": 152, "rows": 372, "dry_run": False}
    assert product_count(db_session) == 250 + 100 + 120
    repeated = db_session.scalars(select(Product).where(Product.sku == "SKU-00007")).one()
    assert (repeated.name, repeated.price, repeated.stock, repeated.is_available, repeated.version) == (
        "Last repeat", Decimal("2.00"), 2, False, 3)


def test_read_ahead_hands_on_items_and_errors_and_stops_with_its_caller():
    from myapi.services.catalog_import import _read_ahead

    assert list(_read_ahead(iter(range(5)))) == [0, 1, 2, 3, 4]

    def failing():
        yield 1
        raise ValueError("bad upload")

    with pytest.raises(ValueError, match="bad upload"):
        list(_read_ahead(failing()))

    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    batches = _read_ahead(endless())
    with pytest.raises(RuntimeError), contextlib.closing(batches):
        for item in batches:
            if item == 3:
                raise RuntimeError("the database write failed")
    assert not [t for t in threading.enumerate() if t.name == "import-validate"]
    count = len(produced)
    threading.Event().wait(0.3)
    assert len(produced) == count  # the producer has stopped


def test_export_neutralises_the_same_prefixes_as_every_other_csv():
    from myapi import csvcells
    from myapi.common import representations
    from myapi.services import catalog_export

    assert catalog_export.FORMULA_PREFIXES is csvcells.FORMULA_PREFIXES
    assert representations.csv_cell is csvcells.csv_cell


def test_the_quoting_rule_the_sql_export_follows_is_the_csv_modules():
    from myapi import csvcells

    def written(cell: str) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator=csvcells.LINE_END).writerow([cell, "x"])
        return out.getvalue()

    for char in csvcells.QUOTED_IF_CONTAINS:
        assert written(f"a{char}b").startswith(csvcells.QUOTE)
    assert written("a;b'= \t@c") == "a;b'= \t@c,x" + csvcells.LINE_END
