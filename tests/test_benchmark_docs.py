"""Every figure in docs/benchmarks.md comes from a committed benchmark summary.

``python -m benchmarks NAME`` writes docs/results/NAME.json: the command, the date,
the machine, the settings, the figures and the Markdown tables the docs quote.
These tests check the summaries are complete and that the docs quote their
tables verbatim (re-run a benchmark, paste its new tables: nothing else to edit).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from benchmarks import SUMMARY_DIR, discover

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
SUMMARIES = sorted(SUMMARY_DIR.glob("*.json"))


def test_every_benchmark_has_a_committed_summary_and_no_other_file_is_there() -> None:
    assert {p.stem for p in SUMMARIES} == set(discover())


@pytest.mark.parametrize("path", SUMMARIES, ids=lambda p: p.stem)
def test_summary_says_how_when_and_where_it_was_measured(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == path.stem
    assert doc["command"].split()[:4] == ["python", "-m", "benchmarks", path.stem]
    assert dt.datetime.fromisoformat(doc["date"]).tzinfo is not None
    machine = doc["machine"]
    assert machine["cpus"] >= 1 and machine["platform"] and machine["python"]
    assert len(machine["load_avg_start"]) == 3 and len(machine["load_avg_end"]) == 3
    assert "shared" in doc["shared_machine"]
    assert doc["versions"]["livestream"]
    assert doc["git"]["commit"]
    assert doc["settings"] and doc["figures"] and doc["tables"]


@pytest.mark.parametrize("path", SUMMARIES, ids=lambda p: p.stem)
def test_docs_quote_the_summary_tables_verbatim_and_cite_the_file(path: Path) -> None:
    text = DOC.read_text()
    assert f"docs/results/{path.name}" in text, f"docs/benchmarks.md does not cite {path.name}"
    doc = json.loads(path.read_text())
    for title, table in doc["tables"].items():
        assert table in text, f"{path.name}: table {title!r} is not in docs/benchmarks.md as is"
    assert doc["command"] in text, f"docs/benchmarks.md does not show {doc['command']!r}"
