"""The media-type shim rewrites exactly the Elasticsearch 8 vendor media types, and nothing else."""

from __future__ import annotations

from tests.harness import es_shim


def test_the_compatibility_media_types_become_plain_ones():
    assert es_shim.plain_media_type("application/vnd.elasticsearch+json; compatible-with=8") == "application/json"
    assert es_shim.plain_media_type("application/vnd.elasticsearch+x-ndjson; compatible-with=8") == "application/x-ndjson"


def test_other_media_types_pass_unchanged():
    assert es_shim.plain_media_type("application/json; charset=UTF-8") == "application/json; charset=UTF-8"
    assert es_shim.plain_media_type("text/plain") == "text/plain"


def test_only_content_type_and_accept_are_rewritten_and_hop_headers_dropped():
    vendor = "application/vnd.elasticsearch+json; compatible-with=8"
    headers = {"Content-Type": vendor, "Accept": vendor, "X-Opaque-Id": vendor, "Connection": "keep-alive", "Host": "x"}

    assert es_shim.forwarded_headers(headers) == {"Content-Type": "application/json", "Accept": "application/json", "X-Opaque-Id": vendor}
