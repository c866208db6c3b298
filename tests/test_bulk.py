"""Bulk writes a merchandiser can trust (issue 16, DESIGN §12), through HTTP, the database checked after.

Import plans with diffs, on_error=skip_rows, rejected rows as CSV, partial
columns, version rows, the price guardrail, PATCH /products, and the audit
trail (GET /imports). Runs on SQLite, and on PostgreSQL with
MYAPI_TEST_DATABASE_URL.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import threading
import time
from decimal import Decimal

import pytest
import requests
from sqlalchemy import func, select, text, update

from myapi.models import ImportRecord, Product

API = "/api/v1"
HEADER = "sku,name,description,category,price,stock,is_available\r\n"
CATALOGUE = (HEADER
             + "TEA-1,Sencha,Green tea,tea,4.50,10,true\r\n"
             + "TEA-2,Matcha,,tea,20.00,5,true\r\n"
             + "MUG-1,Mug,Stoneware,mugs,8.00,3,false\r\n")


def post_csv(client, account, body: str | bytes, query: str = "", accept: str | None = None, **headers):
    data = body.encode("utf-8") if isinstance(body, str) else body
    if accept:
        headers["Accept"] = accept
    return client.post(f"{API}/products/import{query}", data=data, content_type="text/csv",
                       headers={**account.headers, **headers})


def stored(db_session) -> dict[str, tuple]:
    """sku -> (name, description, category, price, stock, is_available, version), read afresh."""
    db_session.rollback()
    return {p.sku: (p.name, p.description, p.category, p.price, p.stock, p.is_available, p.version)
            for p in db_session.scalars(select(Product))}


def records(db_session) -> int:
    db_session.rollback()
    return db_session.scalar(select(func.count()).select_from(ImportRecord))


@pytest.fixture
def catalogue(client, admin, db_session):
    response = post_csv(client, admin, CATALOGUE)
    assert response.status_code == 200, response.get_json()
    return stored(db_session)


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of 100 rows on both databases, so a few hundred rows span several."""
    from myapi.services import backends

    monkeypatch.setattr(backends.SQLite, "import_batch_size", 100)
    monkeypatch.setattr(backends.PostgreSQL, "import_batch_size", 100)


# -- plan=true -----------------------------------------------------------------------------


def test_a_plan_answers_each_change_with_before_and_after_and_writes_nothing(client, admin, catalogue, db_session):
    body = (HEADER
            + "TEA-1,Sencha,Green tea,tea,4.95,12,true\r\n"     # price and stock change
            + "TEA-2,Matcha,,tea,20.00,5,true\r\n"              # unchanged
            + "NEW-1,Kettle,,kitchen,30.00,2,true\r\n")         # created
    imports_before = records(db_session)
    response = post_csv(client, admin, body, "?plan=true")
    assert response.status_code == 200, response.get_json()
    plan = response.get_json()
    assert (plan["plan"], plan["rows"], plan["created"], plan["updated"], plan["unchanged"], plan["rejected"]) == (
        True, 3, 1, 1, 1, 0)
    assert plan["refused"] is None and plan["errors"] == [] and plan["changes_truncated"] is False
    updated, created = plan["changes"]
    assert updated == {"row": 2, "sku": "TEA-1", "action": "updated", "changes": {
        "price": {"before": "4.50", "after": "4.95"}, "stock": {"before": 10, "after": 12}}}
    assert created["sku"] == "NEW-1" and created["action"] == "created"
    assert created["changes"]["price"] == {"before": None, "after": "30.00"}
    assert created["changes"]["is_available"] == {"before": None, "after": True}
    assert plan["largest_price_changes"] == [{"row": 2, "sku": "TEA-1", "before": "4.50", "after": "4.95",
                                              "change_percent": "10.00"}]
    # Nothing written: same products, same versions. The plan itself is on the record.
    assert stored(db_session) == catalogue
    assert response.headers["X-Import-Id"] == str(plan["import_id"])
    assert records(db_session) == imports_before + 1


def test_a_plans_full_diff_streams_as_ndjson_and_csv(client, admin, catalogue, db_session):
    body = ("sku,price,stock\r\n"
            "TEA-1,5.00,10\r\n"        # price only
            "TEA-2,20.00,5\r\n"        # unchanged
            "GONE-1,1.00,1\r\n"        # a new sku in a partial file: rejected
            "MUG-1,-3,1\r\n")          # a bad price: rejected
    response = post_csv(client, admin, body, "?plan=true", accept="application/x-ndjson")
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    assert response.is_streamed
    entries = [json.loads(line) for line in response.data.decode().splitlines()]
    assert [(e["row"], e["sku"], e["action"]) for e in entries] == [
        (2, "TEA-1", "updated"), (3, "TEA-2", "unchanged"), (4, "GONE-1", "rejected"), (5, "MUG-1", "rejected")]
    assert entries[0]["changes"] == {"price": {"before": "4.50", "after": "5.00"}}
    assert "name, category" in entries[2]["errors"][0]["message"]
    assert entries[3]["errors"][0]["field"] == "price"
    import_id = int(response.headers["X-Import-Id"])

    as_csv = post_csv(client, admin, body, "?plan=true&format=csv")
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(as_csv.data.decode())))
    assert rows[0] == ["row", "sku", "action", "field", "before", "after", "message"]
    assert rows[1] == ["2", "TEA-1", "updated", "price", "4.50", "5.00", ""]
    assert rows[2] == ["3", "TEA-2", "unchanged", "", "", "", ""]
    assert rows[3][:4] == ["4", "GONE-1", "rejected", "sku"]
    assert stored(db_session) == catalogue
    # The record keeps the plan's counts and listed changes, not the stream.
    record = client.get(f"{API}/imports/{import_id}", headers=admin.headers).get_json()
    assert (record["plan"], record["updated"], record["unchanged"], record["rejected"]) == (True, 1, 1, 2)
    assert record["changes"][0]["changes"] == {"price": {"before": "4.50", "after": "5.00"}}
    assert record["refused"] == "2 row(s) have errors: with on_error=reject_file nothing would be written."


def test_a_big_plan_lists_the_first_changes_and_streams_them_all(client, admin, db_session, small_batches,
                                                                  monkeypatch):
    from myapi.services import catalog_import

    monkeypatch.setattr(catalog_import, "CHANGES_LISTED", 50)
    body = HEADER + "".join(f"SKU-{i:04d},Product {i},,tea,{i}.00,{i},true\r\n" for i in range(1, 351))
    summary = post_csv(client, admin, body, "?plan=true").get_json()
    assert summary["created"] == 350 and len(summary["changes"]) == 50 and summary["changes_truncated"] is True
    assert [entry["row"] for entry in summary["changes"]] == list(range(2, 52))  # file order
    streamed = post_csv(client, admin, body, "?plan=true", accept="application/x-ndjson")
    entries = [json.loads(line) for line in streamed.data.decode().splitlines()]
    assert len(entries) == 350 and [e["row"] for e in entries] == list(range(2, 352))
    record = client.get(f"{API}/imports/{summary['import_id']}", headers=admin.headers).get_json()
    assert len(record["changes"]) == 50 and record["changes_truncated"] is True  # the record is bounded too
    assert db_session.scalar(select(func.count()).select_from(Product)) == 0


# -- on_error=skip_rows and the rejected rows ---------------------------------------------


def test_skip_rows_writes_the_valid_rows_in_one_go_and_answers_the_rejected_ones(client, admin, catalogue,
                                                                                 db_session):
    body = (HEADER
            + "TEA-1,Sencha,Green tea,tea,4.75,10,true\r\n"     # updated
            + "BAD SKU,Nope,,tea,1.00,1,true\r\n"               # rejected
            + "NEW-1,Kettle,,kitchen,30.00,2,true\r\n"          # created
            + "NEW-2,Teapot,,kitchen,0,2,maybe\r\n")            # rejected (two errors)
    response = post_csv(client, admin, body, "?on_error=skip_rows")
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert (answer["created"], answer["updated"], answer["unchanged"], answer["rejected"], answer["error_count"]) == (
        1, 1, 0, 2, 3)
    assert [(e["row"], e["field"]) for e in answer["errors"]] == [(3, "sku"), (5, "price"), (5, "is_available")]
    after = stored(db_session)
    assert after["TEA-1"][3] == Decimal("4.75") and after["TEA-1"][6] == 2
    assert after["NEW-1"][:5] == ("Kettle", "", "kitchen", Decimal("30.00"), 2)
    assert "NEW-2" not in after and "BAD SKU" not in after
    assert after["TEA-2"] == catalogue["TEA-2"] and after["MUG-1"] == catalogue["MUG-1"]


def test_rejected_rows_as_csv_come_back_as_uploaded_and_the_fixed_file_imports(client, admin, catalogue,
                                                                               db_session):
    body = ("Price,SKU,stock\r\n"                             # any order, any case, as uploaded
            "4.60,TEA-1,10\r\n"
            "\"1,5\",TEA-2,5\r\n"                            # a bad price that needs quoting
            "3.00,MUG-1\r\n"                                  # a short row
            "9.00,NEW-1,1\r\n")                               # a new sku in a partial file
    response = post_csv(client, admin, body, "?on_error=skip_rows", accept="text/csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    rejected = list(csv.reader(io.StringIO(response.data.decode())))
    assert rejected[0] == ["error", "Price", "SKU", "stock"]
    assert [row[1:] for row in rejected[1:]] == [["1,5", "TEA-2", "5"], ["3.00", "MUG-1"], ["9.00", "NEW-1", "1"]]
    assert rejected[1][0].startswith("row 3: price: ")
    assert rejected[2][0] == "row 4: *: Expected 3 cells, found 2."
    assert rejected[3][0].startswith("row 5: sku: No product has the sku NEW-1")
    assert stored(db_session)["TEA-1"][3] == Decimal("4.60")  # the good row went in
    record = client.get(f"{API}/imports/{response.headers['X-Import-Id']}", headers=admin.headers).get_json()
    assert (record["updated"], record["rejected"], record["on_error"]) == (1, 3, "skip_rows")

    # Fix the file the answer gave (the error column is ignored) and upload it again.
    fixed = response.data.decode().replace('"1,5"', "1.50").replace("3.00,MUG-1", "3.00,MUG-1,3")
    fixed = "\r\n".join(line for line in fixed.split("\r\n") if "NEW-1" not in line)
    again = post_csv(client, admin, fixed, accept="text/csv")
    assert again.status_code == 200, again.data
    assert list(csv.reader(io.StringIO(again.data.decode()))) == [["error", "Price", "SKU", "stock"]]  # none left
    after = stored(db_session)
    assert after["TEA-2"][3] == Decimal("1.50") and after["MUG-1"][3] == Decimal("3.00")


def test_a_rejected_file_sent_back_unfixed_has_one_error_column(client, admin, catalogue):
    first = post_csv(client, admin, "sku,stock\r\nTEA-1,-1\r\n", "?on_error=skip_rows", accept="text/csv")
    second = post_csv(client, admin, first.data, "?on_error=skip_rows", accept="text/csv")
    rows = list(csv.reader(io.StringIO(second.data.decode())))
    assert rows[0] == ["error", "sku", "stock"] and rows[1][1:] == ["TEA-1", "-1"]


def test_under_reject_file_the_csv_answer_of_a_bad_file_is_still_a_problem(client, admin, catalogue, db_session):
    response = post_csv(client, admin, "sku,stock\r\nTEA-1,-1\r\n", accept="text/csv")
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert stored(db_session) == catalogue
    # The rejected rows of such a file: a dry run that skips them.
    dry = post_csv(client, admin, "sku,stock\r\nTEA-1,-1\r\n", "?dry_run=true&on_error=skip_rows", accept="text/csv")
    assert dry.status_code == 200 and dry.data.decode().splitlines()[1].endswith(",TEA-1,-1")
    assert stored(db_session) == catalogue


def test_skip_rows_across_batches_never_writes_a_repeated_sku(client, admin, db_session, small_batches):
    body = (HEADER + "".join(f"SKU-{i:04d},Product {i},,tea,1.00,{i},true\r\n" for i in range(1, 251))
            + "SKU-0007,Again,,tea,9.00,9,true\r\n")   # row 252 repeats row 8, two batches back
    response = post_csv(client, admin, body, "?on_error=skip_rows")
    answer = response.get_json()
    assert (answer["created"], answer["rejected"]) == (250, 1)
    assert answer["errors"] == [{"row": 252, "field": "sku",
                                 "message": "SKU-0007 is on rows 8 and 252: a file may name a sku once."}]
    assert stored(db_session)["SKU-0007"][:5] == ("Product 7", "", "tea", Decimal("1.00"), 7)


# -- partial columns ----------------------------------------------------------------------


def test_a_file_with_some_columns_changes_only_those(client, admin, catalogue, db_session):
    response = post_csv(client, admin, "sku,stock\r\nTEA-1,99\r\nMUG-1,3\r\n")
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["updated"], response.get_json()["unchanged"]) == (1, 1)
    after = stored(db_session)
    assert after["TEA-1"] == (*catalogue["TEA-1"][:4], 99, True, 2)
    assert after["MUG-1"] == catalogue["MUG-1"] and after["TEA-2"] == catalogue["TEA-2"]
    # A full file without the optional columns keeps them too (is_available false stays false).
    post_csv(client, admin, "sku,name,category,price,stock\r\nMUG-1,Big mug,mugs,8.00,3\r\n")
    assert stored(db_session)["MUG-1"] == ("Big mug", "Stoneware", "mugs", Decimal("8.00"), 3, False, 2)


def test_a_new_sku_in_a_partial_file_is_a_row_error_naming_the_missing_columns(client, admin, catalogue,
                                                                               db_session):
    response = post_csv(client, admin, "sku,price\r\nTEA-1,5.00\r\nNEW-1,3.00\r\n")
    assert response.status_code == 400
    problem = response.get_json()
    assert problem["errors"] == [{"row": 3, "field": "sku", "message": "No product has the sku NEW-1: a new "
                                  "product needs the column(s) name, category, stock, which the file lacks."}]
    assert stored(db_session) == catalogue  # reject_file: nothing written, TEA-1 included


def test_a_file_must_name_its_skus(client, admin, catalogue):
    response = post_csv(client, admin, "name,stock\r\nTea,1\r\n")
    assert response.status_code == 400 and response.get_json()["errors"] == {"sku": "Missing column."}


# -- conditional rows (version) -----------------------------------------------------------


def test_version_rows_update_only_the_version_they_were_made_from(client, admin, catalogue, db_session):
    # TEA-2 changes after the file was made: its row is stale.
    client.patch(f"{API}/products", headers=admin.headers, json=[{"sku": "TEA-2", "stock": 6}])
    body = "sku,version,stock\r\nTEA-1,1,11\r\nTEA-2,1,50\r\nMUG-1,,4\r\n"
    response = post_csv(client, admin, body)
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"row": 3, "field": "version", "message": "TEA-2 is at version 2; "
                                              "this was made from version 1: read it again (nothing of it was "
                                              "written)."}]
    after = stored(db_session)
    assert (after["TEA-1"][4], after["TEA-2"][4], after["MUG-1"][4]) == (10, 6, 3)  # the whole file refused

    skipping = post_csv(client, admin, body, "?on_error=skip_rows").get_json()
    assert (skipping["updated"], skipping["rejected"]) == (2, 1)
    after = stored(db_session)
    assert (after["TEA-1"][4:], after["TEA-2"][4:], after["MUG-1"][4:]) == ((11, True, 2), (6, True, 2),
                                                                           (4, False, 2))


def test_a_version_for_a_sku_that_does_not_exist_is_a_row_error(client, admin, catalogue, db_session):
    response = post_csv(client, admin, "sku,version,name,category,price,stock\r\nNEW-1,3,Pot,kitchen,9.00,1\r\n"
                        "NEW-2,x,Pot,kitchen,9.00,1\r\n")
    assert [(e["row"], e["field"]) for e in response.get_json()["errors"]] == [(2, "version"), (3, "version")]
    assert "NEW-1" not in stored(db_session)


# -- the price guardrail ------------------------------------------------------------------


def test_max_price_change_refuses_the_whole_file_listing_before_and_after(client, admin, catalogue, db_session):
    body = "sku,price\r\nTEA-1,4.95\r\nTEA-2,25.00\r\nMUG-1,6.00\r\n"  # +10 %, +25 %, -25 %
    for query in ("?max_price_change=20", "?max_price_change=20&on_error=skip_rows"):
        response = post_csv(client, admin, body, query)
        assert response.status_code == 409, response.get_json()
        problem = response.get_json()
        assert problem["type"] == "urn:myapi:problem:price-change-refused"
        assert [(e["sku"], e["before"], e["after"], e["change_percent"]) for e in problem["errors"]] == [
            ("TEA-2", "20.00", "25.00", "25.00"), ("MUG-1", "8.00", "6.00", "-25.00")]
        assert problem["error_count"] == 2
        assert stored(db_session) == catalogue
    # Exactly the limit is allowed; a plan shows the refusal instead of answering it.
    assert post_csv(client, admin, "sku,price\r\nTEA-1,4.95\r\n", "?max_price_change=10").status_code == 200
    plan = post_csv(client, admin, body, "?max_price_change=20&plan=true").get_json()
    assert plan["refused"].startswith("2 price(s) would move more than max_price_change=20 %")
    assert [e["sku"] for e in plan["price_guardrail"]] == ["TEA-2", "MUG-1"]
    assert stored(db_session)["TEA-2"][3] == Decimal("20.00")


# -- PATCH /products ---------------------------------------------------------------------------


def test_bulk_patch_changes_every_item_in_one_transaction(client, admin, catalogue, db_session):
    ids = {sku: db_session.scalar(select(Product.id).where(Product.sku == sku)) for sku in catalogue}
    response = client.patch(f"{API}/products", headers=admin.headers, json=[
        {"sku": "TEA-1", "stock": 20, "price": "4.60"},
        {"id": ids["MUG-1"], "is_available": True, "version": 1},
        {"sku": "TEA-2", "name": "Matcha"},                       # equal: no change, same version
    ])
    assert response.status_code == 200, response.get_json()
    items = response.get_json()["data"]  # the changed items, in the request's order (DESIGN §12)
    assert [(i["sku"], i["stock"], i["price"], i["is_available"]) for i in items] == [
        ("TEA-1", 20, "4.60", True), ("MUG-1", 3, "8.00", True)]
    after = stored(db_session)
    assert (after["TEA-1"][6], after["MUG-1"][6], after["TEA-2"][6]) == (2, 2, 1)
    record = client.get(f"{API}/imports/{response.headers['X-Import-Id']}", headers=admin.headers).get_json()
    assert (record["source"], record["rows"], record["updated"], record["unchanged"]) == ("patch", 3, 2, 1)
    assert record["changes"][0] == {"index": 0, "sku": "TEA-1", "action": "updated", "changes": {
        "price": {"before": "4.50", "after": "4.60"}, "stock": {"before": 10, "after": 20}}}
    assert record["columns"] == ["name", "price", "stock", "is_available"]
    assert record["changes_truncated"] is False
    # Nothing changes: nothing is answered, nothing written.
    same = client.patch(f"{API}/products", headers=admin.headers, json=[{"sku": "TEA-2", "stock": 5}])
    assert same.status_code == 200 and same.get_json()["data"] == []
    assert stored(db_session) == after


def test_bulk_patch_is_all_or_nothing(client, admin, catalogue, db_session):
    response = client.patch(f"{API}/products", headers=admin.headers, json=[
        {"sku": "TEA-1", "stock": 1}, {"sku": "NOPE-1", "stock": 1}, {"id": 999_999, "stock": 1},
        {"sku": "TEA-1", "name": "Twice"}])
    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.get_json()["errors"]] == [(1, "sku"), (2, "id"), (3, "sku")]
    invalid = client.patch(f"{API}/products", headers=admin.headers, json=[
        {"sku": "TEA-1", "stock": -1}, {"stock": 2}, {"sku": "TEA-2", "id": 1}, {"sku": "TEA-2", "colour": "red"}])
    assert invalid.status_code == 400
    assert [(e["index"], e["field"]) for e in invalid.get_json()["errors"]] == [
        (0, "stock"), (1, "sku"), (2, "sku"), (3, "colour")]
    stale = client.patch(f"{API}/products", headers=admin.headers, json=[
        {"sku": "TEA-1", "stock": 1, "version": 1}, {"sku": "TEA-2", "stock": 1, "version": 7}])
    assert stale.status_code == 412
    assert stale.get_json()["errors"] == [{"index": 1, "field": "version", "version": 1, "message": (
        "TEA-2 is at version 1; this was made from version 7: read it again (nothing of it was written).")}]
    guarded = client.patch(f"{API}/products?max_price_change=5", headers=admin.headers, json=[
        {"sku": "TEA-1", "stock": 1}, {"sku": "TEA-2", "price": "10.00"}])
    assert guarded.status_code == 409
    assert guarded.get_json()["errors"][0]["index"] == 1
    assert stored(db_session) == catalogue


def test_bulk_patch_bounds_and_shapes(client, admin, catalogue, db_session):
    too_many = client.patch(f"{API}/products", headers=admin.headers, json=[{"sku": "TEA-1"}] * 1001)
    assert too_many.status_code == 400 and "1 to 1000" in too_many.get_json()["errors"]["body"]
    assert client.patch(f"{API}/products", headers=admin.headers, json=[]).status_code == 400
    assert client.patch(f"{API}/products", headers=admin.headers, json={"sku": "TEA-1"}).status_code == 400
    assert client.patch(f"{API}/products", headers=admin.headers, data="sku=TEA-1",
                        content_type="application/x-www-form-urlencoded").status_code == 415
    minimal = client.patch(f"{API}/products", headers={**admin.headers, "Prefer": "return=minimal"},
                           json=[{"sku": "TEA-1", "stock": 2}])
    assert minimal.status_code == 204 and minimal.data == b""
    assert minimal.headers["X-Import-Id"] and minimal.headers["Preference-Applied"] == "return=minimal"
    after = stored(db_session)
    assert after["TEA-1"] == (*catalogue["TEA-1"][:4], 2, True, 2)  # the write happened, version bumped
    assert after["TEA-2"] == catalogue["TEA-2"] and after["MUG-1"] == catalogue["MUG-1"]
    record = client.get(f"{API}/imports/{minimal.headers['X-Import-Id']}", headers=admin.headers).get_json()
    assert (record["source"], record["updated"]) == ("patch", 1)


# -- the audit trail ---------------------------------------------------------------------------


def test_every_import_answers_an_import_id_and_the_trail_shows_who_and_what(client, admin, make_account,
                                                                           db_session):
    answer = post_csv(client, admin, CATALOGUE).get_json()
    dry = post_csv(client, admin, CATALOGUE, "?dry_run=true").get_json()
    assert answer["import_id"] < dry["import_id"]
    record = client.get(f"{API}/imports/{answer['import_id']}", headers=admin.headers).get_json()
    assert record["user_id"] == admin.id and record["api_key_id"] is None
    assert (record["created"], record["rows"], record["source"], record["dry_run"]) == (3, 3, "file", False)
    assert record["columns"] == ["sku", "name", "description", "category", "price", "stock", "is_available"]
    assert [change["sku"] for change in record["changes"]] == ["TEA-1", "TEA-2", "MUG-1"]
    assert record["date_created"].endswith("Z")
    assert client.get(f"{API}/imports/{dry['import_id']}", headers=admin.headers).get_json()["dry_run"] is True

    listed = client.get(f"{API}/imports?sort=-id", headers=admin.headers).get_json()
    assert [item["id"] for item in listed["data"]] == [dry["import_id"], answer["import_id"]]
    assert "changes" not in listed["data"][0]
    assert client.get(f"{API}/imports/999", headers=admin.headers).status_code == 404
    customer = make_account("customer")
    assert client.get(f"{API}/imports", headers=customer.headers).status_code == 403
    assert client.get(f"{API}/imports/{answer['import_id']}", headers=customer.headers).status_code == 403


def test_an_api_key_needs_products_write_and_is_named_on_the_record(client, admin, db_session):
    def key(scopes):
        response = client.post(f"{API}/api-keys", headers=admin.headers, json={"name": "sync", "scopes": scopes})
        return response.get_json()["id"], {"Authorization": f"Bearer {response.get_json()['secret']}"}

    _, reader = key(["products:read"])
    for response in (client.post(f"{API}/products/import", data=CATALOGUE, content_type="text/csv", headers=reader),
                     client.patch(f"{API}/products", json=[{"sku": "TEA-1"}], headers=reader),
                     client.get(f"{API}/imports", headers=reader)):
        assert response.status_code == 403
        assert response.get_json()["errors"] == {"scope": "products:write"}
    key_id, writer = key(["products:write"])
    response = client.post(f"{API}/products/import", data=CATALOGUE, content_type="text/csv", headers=writer)
    assert response.status_code == 200
    record = client.get(f"{API}/imports/{response.get_json()['import_id']}", headers=writer).get_json()
    assert record["api_key_id"] == key_id


def test_a_refused_file_leaves_no_record(client, admin, db_session):
    assert post_csv(client, admin, HEADER + "BAD SKU,x,,tea,1.00,1,true\r\n").status_code == 400
    assert records(db_session) == 0


def test_records_are_pruned_after_the_retention(app, client, admin, db_session):
    from myapi.services.maintenance import prune_expired

    post_csv(client, admin, CATALOGUE)
    post_csv(client, admin, CATALOGUE)
    db_session.rollback()
    db_session.execute(update(ImportRecord).where(ImportRecord.id == 1)
                       .values(date_created=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400)))
    db_session.commit()
    counts = prune_expired(db_session, imports_retention=dt.timedelta(days=365))
    db_session.commit()
    assert counts["import records"] == 1
    assert db_session.scalars(select(ImportRecord.id)).all() == [2]


# -- the default path lists what it changed ------------------------------------------------


def test_the_default_import_lists_its_first_changes(client, admin, catalogue, db_session, small_batches,
                                                    monkeypatch):
    from myapi.services import catalog_import

    monkeypatch.setattr(catalog_import, "CHANGES_LISTED", 120)
    body = HEADER + "".join(f"SKU-{i:04d},Product {i},,tea,1.00,{i},true\r\n" for i in range(1, 301))
    answer = post_csv(client, admin, body).get_json()
    assert answer["created"] == 300 and len(answer["changes"]) == 120
    changed = body.replace("SKU-0150,Product 150,", "SKU-0150,Renamed,")
    answer = post_csv(client, admin, changed).get_json()
    assert (answer["updated"], answer["unchanged"]) == (1, 299)
    assert answer["changes"] == [{"row": 151, "sku": "SKU-0150", "action": "updated",
                                  "changes": {"name": {"before": "Product 150", "after": "Renamed"}}}]


# -- the OpenAPI document -------------------------------------------------------------------


def test_the_document_describes_the_new_parameters_and_answers(app, client, admin, catalogue):
    from test_openapi import assert_matches, deref, parameter

    from myapi.common.openapi import openapi_document

    document = openapi_document(app)
    imports = document["paths"]["/products/import"]["post"]
    assert parameter(document, imports, "plan", "query")["schema"] == {"type": "boolean", "default": False}
    assert parameter(document, imports, "on_error", "query")["schema"]["enum"] == ["reject_file", "skip_rows"]
    assert parameter(document, imports, "max_price_change", "query")["schema"]["pattern"]
    answer = imports["responses"]["200"]
    assert set(answer["content"]) == {"application/json", "text/csv", "application/x-ndjson"}
    assert "rejected rows exactly as uploaded" in answer["content"]["text/csv"]["schema"]["description"]
    assert "X-Import-Id" in answer["headers"] and "409" in imports["responses"]
    patch = document["paths"]["/products"]["patch"]
    body = patch["requestBody"]["content"]["application/json"]["schema"]
    assert (body["type"], body["minItems"], body["maxItems"]) == ("array", 1, 1000)
    item = deref(document, body["items"])
    assert item["oneOf"] == [{"required": ["sku"]}, {"required": ["id"]}]
    assert {"sku", "id", "version", "price", "stock"} <= set(item["properties"])
    assert item["additionalProperties"] is False
    assert {"200", "204", "400", "409", "412", "413", "415"} <= set(patch["responses"])
    assert document["paths"]["/imports"]["get"]["x-required-scope"] == "products:write"

    # Real answers match it.
    plan = post_csv(client, admin, "sku,price\r\nTEA-1,5.00\r\nNEW-1,1.00\r\n", "?plan=true")
    assert_matches(document, plan.get_json(), "/products/import", "post")
    skipped = post_csv(client, admin, "sku,price\r\nTEA-1,5.00\r\nNEW-1,1.00\r\n", "?on_error=skip_rows")
    assert_matches(document, skipped.get_json(), "/products/import", "post")
    changed = client.patch(f"{API}/products", headers=admin.headers, json=[{"sku": "TEA-2", "stock": 1}])
    assert_matches(document, changed.get_json(), "/products", "patch")
    assert_matches(document, client.get(f"{API}/imports", headers=admin.headers).get_json(), "/imports", "get")
    for import_id in (plan.get_json()["import_id"], changed.headers["X-Import-Id"]):
        record = client.get(f"{API}/imports/{import_id}", headers=admin.headers).get_json()
        assert_matches(document, record, "/imports/{import_id}", "get")
    refused = post_csv(client, admin, "sku,price\r\nTEA-1,50.00\r\n", "?max_price_change=1")
    assert_matches(document, refused.get_json(), "/products/import", "post", "409", "application/problem+json")


# -- the client and the CLI ---------------------------------------------------------------------


def test_the_client_plans_skips_saves_and_patches(live_server, admin, catalogue, tmp_path, db_session):
    from myapi.client import Client, PreconditionFailed, PriceChangeRefused

    api = Client(live_server, admin.token)
    path = tmp_path / "changes.csv"
    path.write_text("sku,price,stock\r\nTEA-1,5.40,10\r\nTEA-2,20.00,-1\r\nNEW-1,1.00,1\r\n")
    plan = api.import_products(path, plan=True)
    assert (plan["plan"], plan["updated"], plan["rejected"]) == (True, 1, 2) and plan["refused"]
    diff = tmp_path / "plan.ndjson"
    record = api.import_products(path, plan=True, save_to=diff)
    assert [json.loads(line)["action"] for line in diff.read_text().splitlines()] == ["updated", "rejected",
                                                                                     "rejected"]
    assert record["import_id"] == record["id"] and record["plan"] is True and record["rejected"] == 2
    with pytest.raises(PriceChangeRefused) as refused:
        api.import_products(path, on_error="skip_rows", max_price_change=10)
    assert refused.value.error_lines() == ["row 2, sku TEA-1, price: The price moves +20.00 % (4.50 to 5.40), "
                                           "more than max_price_change=10."]
    rejected = tmp_path / "changes.rejected.csv"
    record = api.import_products(path, on_error="skip_rows", save_to=rejected)
    assert (record["updated"], record["rejected"]) == (1, 2)
    assert [row[1] for row in csv.reader(rejected.open(newline=""))] == ["sku", "TEA-2", "NEW-1"]
    assert stored(db_session)["TEA-1"][3] == Decimal("5.40")

    changed = api.update_products([{"sku": "TEA-2", "stock": 7}, {"sku": "MUG-1", "price": "8.80"}])
    assert [(p["sku"], p["stock"], p["price"]) for p in changed] == [("TEA-2", 7, "20.00"), ("MUG-1", 3, "8.80")]
    assert api.get_import(changed.import_id)["source"] == "patch"
    with pytest.raises(PreconditionFailed):
        api.update_products([{"sku": "TEA-2", "stock": 8, "version": 1}])
    assert [r["source"] for r in api.iter_imports(sort="-id")][:2] == ["patch", "file"]


def test_the_cli_prints_a_plan_and_saves_rejected_rows_next_to_the_file(live_server, admin, catalogue, tmp_path,
                                                                        monkeypatch):
    from click.testing import CliRunner

    from myapi.cli import main

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("MYAPI_URL", live_server)
    monkeypatch.setenv("MYAPI_TOKEN", admin.token)

    def run(*args):
        return CliRunner().invoke(main, ["remote", *args], catch_exceptions=False)

    path = tmp_path / "prices.csv"
    path.write_text("sku,price\r\nTEA-1,5.40\r\nTEA-2,15.00\r\nMUG-1,8.10\r\nNEW-1,2.00\r\n")
    result = run("products", "import", str(path), "--plan", "--diff", str(tmp_path / "diff.csv"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "plan, nothing written: 4 rows: 0 created, 3 updated, 0 unchanged, 1 rejected (import 2)"
    assert lines[1].startswith("the import would be refused: 1 row(s) have errors")
    assert lines[3] == "largest price changes:"
    moves = [line.split() for line in lines[6:9]]
    assert [(move[1], move[-2]) for move in moves] == [("TEA-2", "-25.00"), ("TEA-1", "+20.00"), ("MUG-1", "+1.25")]
    assert "  2  TEA-1  updated  price 4.50 -> 5.40" in lines
    assert "row 5, sku: No product has the sku NEW-1" in result.stdout
    assert (tmp_path / "diff.csv").read_text().startswith("row,sku,action,field,before,after,message")

    result = run("products", "import", str(path), "--on-error", "skip_rows", "--max-price-change", "30")
    assert result.exit_code == 0, result.output
    assert result.stdout == "imported 4 rows: 0 created, 3 updated, 0 unchanged, 1 rejected (import 3)\n"
    saved = tmp_path / "prices.rejected.csv"
    assert f"the rejected rows are in {saved}" in result.stderr
    assert list(csv.reader(saved.open(newline="")))[1][1:] == ["NEW-1", "2.00"]

    shown = run("imports", "show", "3")
    assert shown.exit_code == 0 and "on_error=skip_rows, max_price_change=30" in shown.stdout
    listed = run("imports", "list", "--format", "json")
    assert [record["id"] for record in json.loads(listed.stdout)] == [3, 2, 1]
    aliased = run("import", str(path), "--plan")  # `myapi remote import`, the issue's name
    assert aliased.exit_code == 0 and aliased.stdout.startswith("plan, nothing written: 4 rows")


# -- review of issue 16: locks, conflicts, limits, refusals in later batches, who may ---------------

POSTGRES = pytest.mark.skipif(not os.environ.get("MYAPI_TEST_DATABASE_URL"),
                              reason="needs PostgreSQL (MYAPI_TEST_DATABASE_URL)")


def hold_import_lock(app, seconds: float) -> tuple[threading.Thread, float]:
    """Another session holds the import lock (as a running import does) for ``seconds``; when it took it."""
    from myapi.db import get_db
    from myapi.services.backends import IMPORT_LOCK_ID

    held = threading.Event()

    def hold():
        with get_db(app).engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": IMPORT_LOCK_ID})
            held.set()
            time.sleep(seconds)
            connection.rollback()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert held.wait(10)
    return thread, time.monotonic()


@POSTGRES
def test_a_plan_does_not_wait_for_a_running_import(app, client, admin, catalogue, db_session):
    thread, since = hold_import_lock(app, 2.0)
    body = "sku,version,stock\r\nTEA-1,1,11\r\nMUG-1,,4\r\n"
    plan = post_csv(client, admin, body, "?plan=true")
    dry = post_csv(client, admin, body, "?dry_run=true&on_error=skip_rows")
    assert time.monotonic() - since < 1.5  # neither waited for the lock
    assert plan.status_code == 200 and plan.get_json()["updated"] == 2
    assert dry.status_code == 200 and dry.get_json()["updated"] == 2
    assert stored(db_session) == catalogue
    # An import that writes does wait for it (the lock really was held).
    imported = post_csv(client, admin, body)
    assert imported.status_code == 200 and time.monotonic() - since >= 1.9
    thread.join(10)
    assert stored(db_session)["TEA-1"][4] == 11


@POSTGRES
def test_a_deadlock_with_a_concurrent_write_is_a_503_safe_to_retry(app, client, admin, catalogue, db_session):
    from myapi.db import get_db

    ids = dict(db_session.execute(select(Product.sku, Product.id)).all())
    db_session.rollback()
    held, failures = threading.Event(), []

    def other_writer():  # locks MUG-1, then wants TEA-1, which the PATCH locked first: a cycle
        try:
            with get_db(app).engine.connect() as connection:
                connection.execute(text("SET deadlock_timeout = '10s'"))  # so that the PATCH is the victim
                connection.execute(text("SELECT id FROM products WHERE id = :id FOR UPDATE"), {"id": ids["MUG-1"]})
                held.set()
                time.sleep(0.5)
                connection.execute(text("SELECT id FROM products WHERE id = :id FOR UPDATE"), {"id": ids["TEA-1"]})
                connection.rollback()
        except Exception as error:  # pragma: no cover - reported below
            failures.append(error)

    thread = threading.Thread(target=other_writer, daemon=True)
    thread.start()
    assert held.wait(10)
    changes = [{"sku": "TEA-1", "stock": 1}, {"sku": "MUG-1", "stock": 1}]
    response = client.patch(f"{API}/products", headers=admin.headers, json=changes)
    thread.join(20)
    assert not failures
    assert response.status_code == 503, response.get_json()
    assert response.mimetype == "application/problem+json" and response.headers["Retry-After"] == "1"
    problem = response.get_json()
    assert problem["type"] == "urn:myapi:problem:write-conflict"
    assert problem["title"] == "Write conflicted with a concurrent one"
    assert "nothing was written" in problem["detail"]
    assert stored(db_session) == catalogue and records(db_session) == 1  # the catalogue's import only
    retried = client.patch(f"{API}/products", headers=admin.headers, json=changes)
    assert retried.status_code == 200
    assert (stored(db_session)["TEA-1"][4], stored(db_session)["MUG-1"][4]) == (1, 1)


def test_the_write_conflict_is_in_the_catalogue_and_the_client_knows_it():
    from myapi import problems
    from myapi.client import WriteConflict, error_from_response

    kind = problems.CATALOGUE["urn:myapi:problem:write-conflict"]
    assert (kind.status, kind.title) == (503, "Write conflicted with a concurrent one")
    response = requests.models.Response()
    response.status_code, response._content = 503, json.dumps(
        {"type": kind.uri, "title": kind.title, "status": 503, "detail": "x"}).encode()
    assert isinstance(error_from_response(response), WriteConflict)


def test_bulk_patch_takes_bodies_up_to_max_bulk_bytes(client, admin, db_session):
    rows = "".join(f"SKU-{i:04d},Product {i},,tea,1.00,1,true\r\n" for i in range(300))
    assert post_csv(client, admin, HEADER + rows).status_code == 200
    before = stored(db_session)
    long = "Leaves. " * 625  # 5000 characters, the longest description
    changes = [{"sku": f"SKU-{i:04d}", "description": long} for i in range(300)]
    assert 1024 * 1024 < len(json.dumps(changes)) < 8 * 1024 * 1024
    response = client.patch(f"{API}/products", headers={**admin.headers, "Prefer": "return=minimal"}, json=changes)
    assert response.status_code == 204, response.get_json()
    assert {product[1] for product in stored(db_session).values()} == {long.strip()}

    too_large = [{"sku": f"SKU-{i:04d}", "description": "x" * 30_000} for i in range(300)]  # > 8 MiB
    response = client.patch(f"{API}/products", headers=admin.headers, json=too_large)
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
    assert response.get_json()["detail"].endswith("the limit set by MYAPI_MAX_BULK_BYTES.")
    assert {product[1] for product in stored(db_session).values()} == {long.strip()}
    assert [product[6] for product in stored(db_session).values()] == [2] * 300
    assert before  # the other methods of /products keep the general limit
    one = client.post(f"{API}/products", headers=admin.headers, json={"sku": "BIG", "x": "y" * 1_100_000})
    assert one.status_code == 413 and "MYAPI_MAX_CONTENT_LENGTH" in one.get_json()["detail"]


def test_a_plan_that_is_also_a_dry_run_says_so_on_its_record(client, admin, catalogue, db_session):
    answer = post_csv(client, admin, "sku,stock\r\nTEA-1,99\r\n", "?plan=true&dry_run=true").get_json()
    assert (answer["plan"], answer["dry_run"], answer["updated"]) == (True, True, 1)
    record = client.get(f"{API}/imports/{answer['import_id']}", headers=admin.headers).get_json()
    assert (record["plan"], record["dry_run"]) == (True, True)
    listed = client.get(f"{API}/imports?sort=-id", headers=admin.headers).get_json()["data"][0]
    assert (listed["plan"], listed["dry_run"]) == (True, True)
    assert stored(db_session) == catalogue


def test_the_client_sends_float_amounts_as_cents(live_server, admin, catalogue, tmp_path, db_session):
    from myapi.client import Client

    api = Client(live_server, admin.token)
    path = tmp_path / "prices.csv"
    path.write_text("sku,price\r\nTEA-1,4.60\r\n")
    plan = api.import_products(path, plan=True, max_price_change=0.1 + 0.2)  # "0.30", not 0.30000000000000004
    assert plan["max_price_change"] == "0.30" and plan["refused"]
    changed = api.update_products([{"sku": "TEA-1", "price": 1.1 + 2.2}], max_price_change=(0.1 + 0.2) * 100)
    assert [p["price"] for p in changed] == ["3.30"]
    assert stored(db_session)["TEA-1"][3] == Decimal("3.30")
    for bad in (True, object()):
        with pytest.raises(TypeError, match="max_price_change must be a str, int, Decimal or float"):
            api.update_products([{"sku": "TEA-1", "stock": 1}], max_price_change=bad)
    assert stored(db_session)["TEA-1"][4] == catalogue["TEA-1"][4]


def test_the_listed_changes_say_when_they_are_the_first_ones(client, admin, db_session, monkeypatch):
    from myapi.services import catalog_import

    monkeypatch.setattr(catalog_import, "CHANGES_LISTED", 2)
    answer = post_csv(client, admin, CATALOGUE).get_json()
    assert (answer["created"], len(answer["changes"]), answer["changes_truncated"]) == (3, 2, True)
    record = client.get(f"{API}/imports/{answer['import_id']}", headers=admin.headers).get_json()
    assert (len(record["changes"]), record["changes_truncated"]) == (2, True)
    again = post_csv(client, admin, CATALOGUE.replace("Sencha", "Gyokuro")).get_json()
    assert (again["updated"], len(again["changes"]), again["changes_truncated"]) == (1, 1, False)


def test_a_stale_version_in_a_later_batch_refuses_the_whole_file(client, admin, db_session, small_batches):
    body = HEADER + "".join(f"SKU-{i:04d},Product {i},,tea,10.00,{i},true\r\n" for i in range(1, 251))
    assert post_csv(client, admin, body).status_code == 200
    client.patch(f"{API}/products", headers=admin.headers, json=[{"sku": "SKU-0230", "stock": 1}])
    before = stored(db_session)
    changes = "sku,version,stock\r\n" + "".join(f"SKU-{i:04d},1,{i + 1000}\r\n" for i in range(1, 251))
    response = post_csv(client, admin, changes)  # rows 2-101 and 102-201 are processed before row 231
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"row": 231, "field": "version", "message": (
        "SKU-0230 is at version 2; this was made from version 1: read it again (nothing of it was written).")}]
    assert stored(db_session) == before
    assert records(db_session) == 2  # the first import and the PATCH: a refused file has none


def test_the_guardrail_in_a_later_batch_refuses_the_whole_file(client, admin, db_session, small_batches):
    body = HEADER + "".join(f"SKU-{i:04d},Product {i},,tea,10.00,{i},true\r\n" for i in range(1, 251))
    assert post_csv(client, admin, body).status_code == 200
    before = stored(db_session)
    prices = "sku,price\r\n" + "".join(
        f"SKU-{i:04d},{'15.00' if i == 240 else '10.10'}\r\n" for i in range(1, 251))  # +1 %, and one +50 %
    for query in ("?max_price_change=10", "?max_price_change=10&on_error=skip_rows"):
        response = post_csv(client, admin, prices, query)
        assert response.status_code == 409
        assert [(e["row"], e["sku"], e["change_percent"]) for e in response.get_json()["errors"]] == [
            (241, "SKU-0240", "50.00")]
        assert stored(db_session) == before
    assert records(db_session) == 1


def test_who_may_not_write_products_changes_nothing(client, admin, customer, catalogue, db_session):
    key = client.post(f"{API}/api-keys", headers=admin.headers, json={"name": "r", "scopes": ["products:read"]})
    reader = {"Authorization": f"Bearer {key.get_json()['secret']}"}
    for headers in (customer.headers, reader):
        patch = client.patch(f"{API}/products", headers=headers, json=[{"sku": "TEA-1", "stock": 1}])
        skip = client.post(f"{API}/products/import?on_error=skip_rows", headers=headers, content_type="text/csv",
                           data="sku,stock\r\nTEA-1,1\r\nNEW-1,2\r\n")
        for response in (patch, skip):
            assert response.status_code == 403 and response.mimetype == "application/problem+json"
    assert stored(db_session) == catalogue and records(db_session) == 1


def test_bad_options_are_400_problems_and_change_nothing(client, admin, catalogue, db_session):
    body = "sku,stock\r\nTEA-1,1\r\n"
    answers = [post_csv(client, admin, body, "?on_error=skip"),
               post_csv(client, admin, body, "?max_price_change=-5"),
               post_csv(client, admin, body, "?max_price_change=1.234"),
               post_csv(client, admin, body, "?max_price_change=ten&plan=true"),
               client.patch(f"{API}/products?max_price_change=abc", headers=admin.headers,
                            json=[{"sku": "TEA-1", "stock": 1}])]
    fields = [next(iter(answer.get_json()["errors"])) for answer in answers]
    assert fields == ["on_error", "max_price_change", "max_price_change", "max_price_change", "max_price_change"]
    for answer in answers:
        assert answer.status_code == 400 and answer.mimetype == "application/problem+json"
        assert answer.get_json()["type"] == "urn:myapi:problem:validation-error"
    assert stored(db_session) == catalogue and records(db_session) == 1


def test_a_plan_with_a_version_column_and_with_skip_rows(client, admin, catalogue, db_session):
    client.patch(f"{API}/products", headers=admin.headers, json=[{"sku": "TEA-2", "stock": 6}])
    before = stored(db_session)
    body = "sku,version,stock\r\nTEA-1,1,11\r\nTEA-2,1,50\r\nMUG-1,,4\r\nNEW-1,,1\r\n"
    plan = post_csv(client, admin, body, "?plan=true").get_json()
    assert (plan["updated"], plan["rejected"], plan["on_error"]) == (2, 2, "reject_file")
    assert [(e["row"], e["field"]) for e in plan["errors"]] == [(3, "version"), (5, "sku")]
    assert plan["refused"] == "2 row(s) have errors: with on_error=reject_file nothing would be written."
    assert [change["sku"] for change in plan["changes"]] == ["TEA-1", "MUG-1"]
    skipping = post_csv(client, admin, body, "?plan=true&on_error=skip_rows").get_json()
    assert (skipping["updated"], skipping["rejected"], skipping["on_error"]) == (2, 2, "skip_rows")
    assert skipping["refused"] is None  # skip_rows would write the two good rows
    record = client.get(f"{API}/imports/{skipping['import_id']}", headers=admin.headers).get_json()
    assert (record["plan"], record["on_error"], record["columns"]) == (True, "skip_rows", ["sku", "stock", "version"])
    assert stored(db_session) == before
