"""CSV import (POST /products/import) and streaming export (GET /products/export)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import threading
from decimal import Decimal

import pytest
import requests
from conftest import PG_URL
from sqlalchemy import func, select

from myapi.db import get_db
from myapi.models import Product

API = "/api/v1"
HEADER = "sku,name,description,category,price,stock,is_available\r\n"


def csv_post(client, account, body: str | bytes, query: str = ""):
    data = body.encode("utf-8") if isinstance(body, str) else body
    return client.post(f"{API}/products/import{query}", data=data, content_type="text/csv",
                       headers=account.headers)


COUNTS = ("created", "updated", "unchanged", "rows", "dry_run")


def counts(response) -> dict:
    """The counts of an import's answer (which also lists what changed: tests/test_bulk.py)."""
    return {name: value for name, value in response.get_json().items() if name in COUNTS}


def product_count(db_session) -> int:
    return db_session.scalar(select(func.count()).select_from(Product))


def good_file(n: int = 3, start: int = 1) -> str:
    rows = [f"SKU-{i:05d},Product {i},Nice,cat-{i % 3},{i}.25,{i * 2},true\r\n" for i in range(start, start + n)]
    return HEADER + "".join(rows)


# -- import ---------------------------------------------------------------------


def test_import_creates_products(client, admin, db_session):
    response = csv_post(client, admin, good_file(3))
    assert response.status_code == 200, response.get_json()
    assert counts(response) == {"created": 3, "updated": 0, "unchanged": 0, "rows": 3, "dry_run": False}
    product = db_session.scalars(select(Product).where(Product.sku == "SKU-00002")).one()
    assert product.price == Decimal("2.25") and product.stock == 4 and product.category == "cat-2"


def test_import_upserts_by_sku_and_bumps_versions(client, admin, db_session):
    csv_post(client, admin, good_file(3))
    response = csv_post(client, admin, HEADER + "SKU-00002,Renamed,,cat-9,9.99,1,false\r\n"
                        + "SKU-00009,New one,,cat-1,1.00,1,\r\n")
    assert counts(response) == {"created": 1, "updated": 1, "unchanged": 0, "rows": 2, "dry_run": False}
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
    assert counts(response) == {"created": 5, "updated": 0, "unchanged": 0, "rows": 5, "dry_run": True}
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
    ("name,category,price,stock\r\nB,tea,1.00,1\r\n", "sku"),  # a file names its skus
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
    assert response.get_json()["detail"] == (
        "The request body is larger than 1000 bytes, the limit set by MYAPI_MAX_IMPORT_BYTES.")
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
    # The second to run finds every row as the first left it: nothing to write.
    assert sorted((r["created"], r["updated"], r["unchanged"]) for _, r in results) == [(0, 0, 3000), (3000, 0, 0)]
    assert product_count(db_session) == 3000
    versions = set(db_session.scalars(select(Product.version)))
    assert versions == {1}


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
    # Only EVIL-1 changes: its formula cells come back with the apostrophe the export added.
    assert counts(response) == {"created": 0, "updated": 1, "unchanged": 30, "rows": 31, "dry_run": False}
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
    assert not [thread for thread in threading.enumerate() if thread.name == "export-csv"]


def test_csv_export_formats_the_next_chunk_in_a_thread_while_this_one_is_sent(client, db_session, monkeypatch):
    """The database writes chunk n+1 in the export's thread while the server compresses and sends chunk n."""
    import datetime as dt

    from myapi.services import backends

    moment = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    db_session.execute(Product.__table__.insert(), [
        {"sku": f"MANY-{i:06d}", "name": f"Product {i}", "description": "x" * 200, "category": "tea",
         "price": Decimal("1.00"), "stock": 1, "is_available": True, "version": 1, "date_created": moment,
         "date_updated": moment} for i in range(2_000)])
    db_session.commit()
    made_in: list[str] = []  # the thread that made each chunk
    for backend_class in (backends.SQLite, backends.PostgreSQL):
        monkeypatch.setattr(backend_class, "export_csv", _spying(backend_class.export_csv, made_in))
    response = client.get(f"{API}/products/export?format=csv", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200 and response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(response.data).count(b"\n") == 2_001
    # The header is sent from the request's own thread, at once; the rows come from the export's.
    assert made_in[0] == threading.current_thread().name
    assert len(made_in) > 2 and set(made_in[1:]) == {"export-csv"}
    assert not [thread for thread in threading.enumerate() if thread.name == "export-csv"]


def _spying(export_csv, made_in: list[str]):
    def spied(self, *args):
        for chunk in export_csv(self, *args):
            made_in.append(threading.current_thread().name)
            yield chunk

    return spied


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


def test_every_form_a_cell_may_take_is_read_as_put_reads_it(client, admin, db_session, small_batches):
    """A batch of plain cells is checked column by column, one with odd forms cell by cell: same values.

    Batch 1 (rows 2-101) is plain; batch 2 holds cells the column forms leave to the input types
    (spaces, signs, leading zeros, TRUE/no, 1.500) and an empty optional cell.
    """
    plain = good_file(100)
    odd = [" ODD-1 ,  Odd one , Nice ,  tea ,01.50,+7,TRUE\r\n", "ODD-2,Odd two,,cat-1,1.500, 0 ,no\r\n",
           "ODD-3,Odd three,x,cat-2,2.,3,\r\n"]
    response = csv_post(client, admin, plain + "".join(odd))
    assert response.status_code == 200, response.get_json()
    assert counts(response)["created"] == 103
    stored = {p.sku: (p.name, p.description, p.category, p.price, p.stock, p.is_available)
              for p in db_session.scalars(select(Product))}
    assert stored["SKU-00042"] == ("Product 42", "Nice", "cat-0", Decimal("42.25"), 84, True)
    assert stored["ODD-1"] == ("Odd one", "Nice", "tea", Decimal("1.50"), 7, True)
    assert stored["ODD-2"] == ("Odd two", "", "cat-1", Decimal("1.50"), 0, False)
    assert stored["ODD-3"] == ("Odd three", "x", "cat-2", Decimal("2.00"), 3, True)


def test_a_batch_whose_optional_column_is_all_empty_is_checked_column_by_column(client, admin, db_session,
                                                                               small_batches, monkeypatch):
    """No description in a whole batch: the column form is asked about no cell, and the batch stays on the fast way."""
    from myapi.services import catalog_import

    row_by_row = []
    validator = catalog_import._validator

    def counting_validator(layout, rules):
        check = validator(layout, rules)

        def checked(record, row_number, report):
            row_by_row.append(row_number)
            return check(record, row_number, report)

        return checked

    monkeypatch.setattr(catalog_import, "_validator", counting_validator)
    body = HEADER + "".join(f"NODESC-{i},Name {i},,tea,1.50,{i},true\r\n" for i in range(150))
    response = csv_post(client, admin, body)
    assert response.status_code == 200, response.get_json()
    assert counts(response)["created"] == 150
    assert row_by_row == []
    assert {p.description for p in db_session.scalars(select(Product))} == {""}


def test_a_batch_with_one_bad_cell_reports_it_as_a_plain_one_would(client, admin, db_session, small_batches):
    """A line feed inside a sku cell, in an otherwise plain batch, is that row's error (nothing written)."""
    body = good_file(150).replace("SKU-00120,", '"SKU-00120\nX",')
    problem = csv_post(client, admin, body).get_json()
    assert [(error["row"], error["field"]) for error in problem["errors"]] == [(121, "sku")]
    assert product_count(db_session) == 0


@pytest.mark.skipif(bool(PG_URL), reason="SQLite's page cache")
@pytest.mark.parametrize("body", [good_file(20), good_file(20) + "BAD,Name,,tea,free,1,true\r\n"])
def test_an_import_sets_the_connections_page_cache_back(app, client, admin, body):
    """The import's 64 MiB page cache is the connection's setting: the pooled connection gets its own back."""
    engine = get_db(app).engine
    with engine.connect() as connection:
        before = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    csv_post(client, admin, body)
    connections = [engine.raw_connection() for _ in range(engine.pool.checkedin())]
    try:
        assert connections
        assert [c.driver_connection.execute("PRAGMA cache_size").fetchone()[0] for c in connections] == \
            [before] * len(connections)
    finally:
        for connection in connections:
            connection.close()


def test_batches_count_created_updated_and_unchanged(client, admin, db_session, small_batches):
    first = csv_post(client, admin, good_file(250))  # three batches
    assert counts(first) == {"created": 250, "updated": 0, "unchanged": 0, "rows": 250, "dry_run": False}
    # 150 existing skus (in two batches, SKU-00007 and SKU-00200 changed), 100 new ones, 120 fillers.
    body = (good_file(250, start=101).replace("SKU-00200,Product 200,", "SKU-00200,Renamed 200,")
            + "SKU-00007,Changed,,tea,1.00,1,true\r\n"
            + "".join(f"SKU-9{i:04d},Filler,,tea,1.00,1,true\r\n" for i in range(120)))
    second = csv_post(client, admin, body)
    assert counts(second) == {"created": 220, "updated": 2, "unchanged": 149, "rows": 371, "dry_run": False}
    assert product_count(db_session) == 250 + 100 + 120
    versions = dict(db_session.execute(select(Product.sku, Product.version)).all())
    assert (versions["SKU-00007"], versions["SKU-00200"], versions["SKU-00150"], versions["SKU-00006"]) == (2, 2, 1, 1)


def test_reimporting_an_unchanged_file_writes_nothing(client, admin, db_session):
    """Issue 18: the second import of the same file answered {"updated": 2} and moved every ETag."""
    body = HEADER + "TEA-1,Sencha,Green,tea,4.50,10,true\r\nTEA-2,Matcha,,tea,9.00,5,false\r\n"
    assert csv_post(client, admin, body).get_json()["created"] == 2
    before = {p.sku: (p.version, p.date_updated) for p in db_session.scalars(select(Product))}
    etag = client.get(f"{API}/products/1").headers["ETag"]

    again = csv_post(client, admin, body)
    assert counts(again) == {"created": 0, "updated": 0, "unchanged": 2, "rows": 2, "dry_run": False}
    db_session.rollback()  # a fresh snapshot
    assert {p.sku: (p.version, p.date_updated) for p in db_session.scalars(select(Product))} == before
    assert client.get(f"{API}/products/1").headers["ETag"] == etag == '"v1"'
    assert client.get(f"{API}/products/1", headers={"If-None-Match": etag}).status_code == 304

    # One cell differs: that row alone is written. A value equal once parsed ("4.5", "TRUE") is no change.
    changed = body.replace("9.00,5,false", "9.00,6,false").replace("4.50,10,true", "4.5,10,TRUE")
    answer = csv_post(client, admin, changed).get_json()
    assert (answer["created"], answer["updated"], answer["unchanged"]) == (0, 1, 1)
    db_session.rollback()  # a fresh snapshot
    after = {p.sku: (p.version, p.date_updated) for p in db_session.scalars(select(Product))}
    assert after["TEA-1"] == before["TEA-1"]
    assert after["TEA-2"][0] == 2 and after["TEA-2"][1] > before["TEA-2"][1]

    # Only the columns the file has count (issue 16): a file without the description column keeps it.
    short = "sku,name,category,price,stock,is_available\r\nTEA-1,Sencha,tea,4.50,10,true\r\n"
    assert counts(csv_post(client, admin, short))["unchanged"] == 1
    db_session.rollback()  # a fresh snapshot
    assert db_session.scalars(select(Product).where(Product.sku == "TEA-1")).one().description == "Green"


def test_a_dry_run_counts_unchanged_rows_too(client, admin, db_session):
    csv_post(client, admin, good_file(3))
    body = good_file(4).replace("Product 2,", "Product two,")
    response = csv_post(client, admin, body, "?dry_run=true")
    assert counts(response) == {"created": 1, "updated": 1, "unchanged": 2, "rows": 4, "dry_run": True}
    assert product_count(db_session) == 3


def test_a_sku_twice_in_one_file_is_a_row_error_naming_both_rows(client, admin, db_session):
    """Issue 18: a repeated sku was silently accepted ({"created": 1, "rows": 2}: which row won?)."""
    body = HEADER + "TEA-1,Sencha,,tea,4.50,10,true\r\nTEA-1,Sencha again,,tea,5.00,1,true\r\n"
    response = csv_post(client, admin, body)
    assert response.status_code == 400
    problem = response.get_json()
    assert problem["errors"] == [{"row": 3, "field": "sku", "message": "TEA-1 is on rows 2 and 3: a file may name a "
                                                                       "sku once."}]
    assert problem["error_count"] == 1
    assert product_count(db_session) == 0
    dry = csv_post(client, admin, body, "?dry_run=true")
    assert dry.status_code == 400 and dry.get_json()["errors"] == problem["errors"]


def test_repeats_across_batches_are_found_with_the_other_errors(client, admin, db_session, small_batches):
    body = (good_file(250)                                           # rows 2-251: three batches
            + "SKU-00007,Again,,tea,1.00,1,true\r\n"                 # row 252: repeats row 8 (batch 1)
            + "SKU-X,Bad,,tea,free,1,true\r\n"                      # row 253: a bad price
            + "SKU-00240,Again,,tea,1.00,1,true\r\n"                # row 254: repeats row 241 (batch 3)
            + "SKU-00007,Third time,,tea,1.00,1,true\r\n")          # row 255: repeats row 252 (same batch)
    problem = csv_post(client, admin, body).get_json()
    assert [(e["row"], e["field"]) for e in problem["errors"]] == [(252, "sku"), (253, "price"), (254, "sku"),
                                                                   (255, "sku")]
    messages = [e["message"] for e in problem["errors"]]
    assert messages[0] == "SKU-00007 is on rows 8 and 252: a file may name a sku once."
    assert messages[2] == "SKU-00240 is on rows 241 and 254: a file may name a sku once."
    assert messages[3] == "SKU-00007 is on rows 252 and 255: a file may name a sku once."
    assert problem["error_count"] == 4
    assert product_count(db_session) == 0


def test_the_first_hundred_errors_are_listed_by_row(client, admin, db_session, small_batches):
    """Errors are found by two threads on PostgreSQL (validation, and the repeats at the end): the
    list still holds the lowest rows, in order."""
    body = (good_file(150)
            + "".join(f"SKU-{i:05d},Again,,tea,1.00,1,true\r\n" for i in range(1, 61))      # rows 152-211
            + "".join(f"BAD-{i},Name,,tea,0,1,true\r\n" for i in range(60)))                # rows 212-271
    problem = csv_post(client, admin, body).get_json()
    assert problem["error_count"] == 120
    assert [e["row"] for e in problem["errors"]] == list(range(152, 252))


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


def test_exports_say_how_many_items_they_hold(client, customer, admin, imported):
    """X-Total-Count on an export: the number of items when it starts (a download's progress total)."""
    for fmt in ("csv", "json", "ndjson"):
        with client.get(f"{API}/products/export?format={fmt}&category=cat-1") as response:
            assert response.headers["X-Total-Count"] == "11"
    with client.get(f"{API}/orders/export", headers=customer.headers) as response:
        assert response.headers["X-Total-Count"] == "0"
