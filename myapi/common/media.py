"""The media types the API speaks (content negotiation is in representations.py)."""

JSON = "application/json"
CSV = "text/csv"
NDJSON = "application/x-ndjson"
HTML = "text/html"
PROBLEM = "application/problem+json"

#: ``?format=`` names.
FORMATS = {"json": JSON, "csv": CSV, "ndjson": NDJSON}
