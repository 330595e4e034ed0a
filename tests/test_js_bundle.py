"""The browser bundle livestream/static/livestream.js must be built from the current js/ sources.

The bundle's first line records ``source-sha256``: a hash over js/src/** and js/package-lock.json
(see js/scripts/build.mjs). Rebuild with ``cd js && npm run build`` when this fails. No npm needed.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "js"
BUNDLE = ROOT / "livestream" / "static" / "livestream.js"


def source_hash() -> str:
    files = sorted(
        [p.relative_to(JS).as_posix() for p in (JS / "src").rglob("*") if p.is_file()]
        + ["package-lock.json"]
    )
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode("utf-8") + b"\0")
        h.update((JS / rel).read_bytes() + b"\0")
    return h.hexdigest()


def test_bundle_is_built_from_current_sources() -> None:
    first = BUNDLE.read_text(encoding="utf-8").split("\n", 1)[0]
    m = re.search(r"source-sha256: ([0-9a-f]{64})", first)
    assert m, f"{BUNDLE} has no source-sha256 header line: {first[:120]!r}"
    assert m.group(1) == source_hash(), (
        "livestream/static/livestream.js is stale: js/src or js/package-lock.json changed since it "
        "was built; run 'npm run build' in js/ and commit the bundle"
    )


def test_bundle_exposes_the_livestream_global_and_ships_in_the_package() -> None:
    text = BUNDLE.read_text(encoding="utf-8")
    assert "var Livestream=" in text
    assert 'import("ws")' not in text  # browsers have WebSocket; the bundle must not need ws
    shipped = resources.files("livestream").joinpath("static", "livestream.js")
    assert shipped.is_file()
