"""The origin rule for pages opened from file:// (``Origin: null``) and the page's content."""

from __future__ import annotations

import re

from livestream.dashboard.static import static_page
from livestream.server.websocket import origin_allowed


def test_null_origin_is_refused_unless_listed() -> None:
    assert not origin_allowed("null", "127.0.0.1:8765", [])
    assert not origin_allowed("null", "127.0.0.1:8765", ["desk.example"])
    assert origin_allowed("null", "127.0.0.1:8765", ["null"])
    assert origin_allowed("null", "127.0.0.1:8765", ["*"])
    # listing "null" does not open the server to other origins
    assert not origin_allowed("http://evil.example", "127.0.0.1:8765", ["null"])


def test_page_is_self_contained_and_starts_on_document_ready(server) -> None:
    html = static_page([], url=server.url, token="s3cret", title="Empty")
    assert not re.search(r"<script[^>]*\ssrc=|<link[^>]*\shref=", html)
    assert "var Livestream" in html  # the client bundle, inline
    assert "document_ready" in html.lower() or "DocumentReady" in html
    assert '\\"token\\": \\"s3cret\\"' in html or '"token": "s3cret"' in html
