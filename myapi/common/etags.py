"""Entity tags: one per version of an item, representation and field selection.

``"v7"`` is version 7 as JSON with every field; ``"v7-csv"`` the CSV body;
``"v7-f1a2b3c4"`` a ``fields=`` selection of it. A write's ``If-Match``
compares only the version (common/inputs.if_match): every tag of one
version names the same stored state. A compressed answer's tag also names
its content coding (``"v7:gzip"``, common/compression.py).
"""

from __future__ import annotations

from flask import g

from .media import CSV

#: The content codings of compressed answers (common/compression.py), which their ETags name: ``"v7:gzip"``.
CONTENT_CODINGS = ("zstd", "br", "gzip", "deflate")


def entity_tag(version: int) -> str:
    suffix = "-csv" if g.get("media_type") == CSV else ""
    selection = g.get("field_selection")
    if selection is not None:
        suffix += "-" + selection.tag
    return f'"v{version}{suffix}"'


def matches_if_none_match(tag: str, header: str | None) -> bool:
    """Whether ``If-None-Match`` already names ``tag`` (or ``*``): a read answers 304."""
    if header is None or len(header) > 1000:
        return False
    # A tag of a compressed answer names its coding ("v7:gzip"): the same version and selection.
    tags = {strip_coding(candidate.strip().removeprefix("W/")) for candidate in header.split(",")}
    return tag in tags or "*" in tags


def strip_coding(tag: str) -> str:
    """``"v7-csv:gzip"`` → ``"v7-csv"``: the entity tag as the pipeline made it, before compression."""
    quoted = tag.endswith('"')
    head, colon, coding = (tag[:-1] if quoted else tag).rpartition(":")
    if colon and coding in CONTENT_CODINGS:
        return head + ('"' if quoted else "")
    return tag
