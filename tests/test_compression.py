"""HTTP compression (common/compression.py): lists and streamed exports by Accept-Encoding, ETags per encoding."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib

import brotli
import pytest
from backports import zstd
from test_cursors import add_products

from myapi.app import create_app
from myapi.db import get_db

API = "/api/v1"
DECODERS = {"gzip": gzip.decompress, "br": brotli.decompress, "zstd": zstd.decompress,
            "deflate": zlib.decompress}


@pytest.fixture
def shelf(db_session):
    return add_products(db_session, 120)


def get(client, path, encoding=None, **headers):
    if encoding is not None:
        headers["Accept-Encoding"] = encoding
    return client.get(f"{API}{path}", headers=headers)


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd", "deflate"])
def test_a_list_is_compressed_as_asked(client, shelf, coding):
    plain = get(client, "/products?per_page=100", "identity")
    packed = get(client, "/products?per_page=100", coding)
    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == coding
    assert "Accept-Encoding" in packed.headers["Vary"] and "Accept-Encoding" in plain.headers["Vary"]
    body = DECODERS[coding](packed.get_data())
    assert len(packed.get_data()) < len(body) / 3  # a page of products compresses well
    assert int(packed.headers["Content-Length"]) == len(packed.get_data())
    assert json.loads(body) == plain.get_json()
    assert packed.headers["X-Total-Count"] == "120" and packed.headers["Link"] == plain.headers["Link"]


def test_q_values_choose_and_refuse(client, shelf):
    assert get(client, "/products?per_page=100", "gzip;q=0.5, br;q=1").headers["Content-Encoding"] == "br"
    assert "Content-Encoding" not in get(client, "/products?per_page=100", "gzip;q=0").headers
    assert "Content-Encoding" not in get(client, "/products?per_page=100", "compress, x-unknown").headers
    assert "Content-Encoding" not in get(client, "/products?per_page=100").headers  # no header: identity


def test_small_answers_and_errors_are_left_alone(client, shelf):
    one = get(client, f"/products/{shelf[0]}", "gzip")
    assert one.status_code == 200 and "Content-Encoding" not in one.headers
    assert one.headers["ETag"] == '"v1"'
    missing = get(client, "/products/999999", "gzip")
    assert missing.status_code == 404 and "Content-Encoding" not in missing.headers
    assert missing.mimetype == "application/problem+json"


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_a_streamed_export_is_compressed_on_the_fly(client, shelf, fmt):
    plain = get(client, f"/products/export?format={fmt}", "identity")
    packed = get(client, f"/products/export?format={fmt}", "gzip")
    assert packed.status_code == 200 and packed.is_streamed
    assert packed.headers["Content-Encoding"] == "gzip"
    assert "Content-Length" not in packed.headers  # streamed: the length is not known in advance
    assert packed.headers["X-Total-Count"] == "120"
    assert packed.headers["X-Changes-Since"] == plain.headers["X-Changes-Since"]
    data = gzip.decompress(packed.get_data())
    assert data == plain.get_data()
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(data.decode())))
        assert len(rows) == 120 and rows[0]["sku"] == "SKU-0001"


def test_an_export_arrives_in_several_compressed_chunks(client, db_session):
    add_products(db_session, 3000)
    response = get(client, "/products/export?format=csv", "gzip")
    chunks = [chunk for chunk in response.response if chunk]
    assert len(chunks) > 1  # compressed as it streams, not gathered first
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = b"".join(decoder.decompress(chunk) for chunk in chunks) + decoder.flush()
    assert data.count(b"\n") == 3001


@pytest.fixture
def small_min_app(app_config):
    """The app compressing every answer, however small (to see an item's ETag per encoding)."""
    app = create_app({**app_config, "COMPRESS_MIN_SIZE": 1})
    yield app
    get_db(app).engine.dispose()


def test_etags_name_the_encoding_and_still_work(small_min_app, make_account, shelf):
    client = small_min_app.test_client()
    admin = make_account("admin", "root")
    path = f"/products/{shelf[0]}"
    packed = get(client, path, "gzip")
    assert packed.headers["Content-Encoding"] == "gzip" and packed.headers["ETag"] == '"v1:gzip"'
    # The tag of either encoding says the client's copy is current.
    assert get(client, path, "gzip", **{"If-None-Match": '"v1:gzip"'}).status_code == 304
    assert get(client, path, "identity", **{"If-None-Match": '"v1:gzip"'}).status_code == 304
    assert get(client, path, "identity").headers["ETag"] == '"v1"'
    # A write conditional on the compressed tag is the same version.
    changed = client.patch(f"{API}{path}", json={"stock": 7},
                           headers={**admin.headers, "If-Match": '"v1:gzip"', "Accept-Encoding": "gzip"})
    assert changed.status_code == 200
    assert changed.headers["ETag"] == '"v2:gzip"'
    stale = client.patch(f"{API}{path}", json={"stock": 8}, headers={**admin.headers, "If-Match": '"v1:gzip"'})
    assert stale.status_code == 412
    assert client.get(f"{API}{path}").get_json()["stock"] == 7


def test_compression_can_be_turned_off(app_config, shelf):
    app = create_app({**app_config, "COMPRESSION": False})
    try:
        response = get(app.test_client(), "/products?per_page=100", "gzip")
        assert response.status_code == 200 and "Content-Encoding" not in response.headers
    finally:
        get_db(app).engine.dispose()


def test_requests_decodes_it_over_http(live_server, http, shelf):
    """An integration script with requests gets compressed answers without doing anything."""
    response = http.get(f"{live_server}{API}/products/export?format=csv", stream=True)
    assert response.headers["Content-Encoding"] in ("gzip", "br", "zstd", "deflate")
    wire = response.raw.read(decode_content=False)
    assert len(wire) < len(DECODERS[response.headers["Content-Encoding"]](wire)) / 3
    listed = http.get(f"{live_server}{API}/products?per_page=100")
    assert listed.headers["Content-Encoding"] and len(listed.json()["data"]) == 100
