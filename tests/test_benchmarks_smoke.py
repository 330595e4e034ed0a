"""The benchmark command runs: every benchmark imports, the quick ones run end to end.

Smoke tests only: ``spine --quick`` (one subscriber, 100-row batches, a fraction of
a second per case), ``feed --quick``, ``catchup --quick``, ``chart_frame --quick`` and ``transports --quick``
(whichever client libraries are installed), each writing its
summary to a temporary directory; the browser benchmarks (notebook, viewers) are
checked up to their figures and tables, from recorded inputs. Nothing here asserts
speed (the figures live in docs/benchmarks.md, from docs/results/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_list_names_every_benchmark_and_each_imports() -> None:
    proc = _run("--list", timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {"spine", "feed", "notebook", "viewers", "chart_frame", "transports"} <= names
    assert "cannot import" not in proc.stdout, proc.stdout


def _summary(path: Path, name: str) -> dict:
    doc = json.loads((path / f"{name}.json").read_text())
    assert doc["benchmark"] == name
    assert doc["command"].startswith(f"python -m benchmarks {name} ")
    assert doc["machine"]["cpus"] >= 1 and doc["date"] and doc["tables"]
    return doc


def test_unknown_benchmark_is_refused() -> None:
    proc = _run("no-such-benchmark", timeout=60)
    assert proc.returncode == 2
    assert "no benchmark named" in proc.stderr


@pytest.mark.timeout(300)
def test_spine_quick_run_writes_results(tmp_path: Path) -> None:
    proc = _run("spine", "--quick", "--no-plot", "--out", str(tmp_path),
                "--summary-dir", str(tmp_path))
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    doc = json.loads((tmp_path / "spine-latest.json").read_text())
    assert doc["benchmark"] == "spine"
    raw = doc["raw"]
    systems = {"livestream", "json", "arrow"}
    for part in ("fanout", "pandas", "latency"):
        assert {r["system"] for r in raw[part]} == systems, part
        for r in raw[part]:
            assert "error" not in r, r
            assert r["complete"], r
            assert r["delivered_rows"] == r["expected_rows"] > 0, r
    for r in raw["latency"]:
        assert r["latency"]["samples"] > 0
    for r in raw["pandas"]:  # every system ends with a DataFrame of the rows it received
        assert r["frame_rows"] and r["frame_rows"][0] >= r["delivered_rows"], r
    assert "Fan-out" in proc.stdout
    tables = _summary(tmp_path, "spine")["tables"]
    assert {"fanout", "cases"} <= set(tables)  # (no targets: they concern 100 subscribers)
    assert "| 100 | 1 |" in tables["fanout"]


@pytest.mark.timeout(300)
def test_feed_quick_run_writes_its_summary(tmp_path: Path) -> None:
    proc = _run("feed", "--quick", "--summary-dir", str(tmp_path))
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    doc = _summary(tmp_path, "feed")
    assert {len(doc["figures"]["runs"][k]) for k in ("receive", "bare", "livestream")} == {1}
    assert "livestream feed stream" in doc["tables"]["clients"]


@pytest.mark.timeout(300)
def test_catchup_quick_run_writes_its_summary(tmp_path: Path) -> None:
    proc = _run("catchup", "--quick", "--summary-dir", str(tmp_path))
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    doc = _summary(tmp_path, "catchup")
    raw = doc["figures"]["raw"]
    assert set(raw) == {"before", "queue only", "merged"}
    for name, runs in raw.items():  # every row arrived, on every server
        assert len(runs) == 1 and runs[0]["messages"] > 0, (name, runs)
    assert raw["before"][0]["merged"] == raw["queue only"][0]["merged"] == 0
    assert "| merged |" in doc["tables"]["catchup"]


@pytest.mark.timeout(300)
def test_chart_frame_quick_run_writes_its_summary(tmp_path: Path) -> None:
    proc = _run("chart_frame", "--quick", "--summary-dir", str(tmp_path))
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    fig = _summary(tmp_path, "chart_frame")["figures"]
    assert fig["livestream"]["comm_messages_per_frame"] == 3  # one PATCH-DOC per frame
    assert fig["naive"]["comm_messages_per_frame"] > 3
    assert fig["livestream"]["points"] == fig["naive"]["points"] == 20_000


@pytest.mark.timeout(300)
def test_transports_quick_run_writes_its_summary(tmp_path: Path) -> None:
    from benchmarks import bench_transports as bt

    proc = _run("transports", "--quick", "--summary-dir", str(tmp_path))
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    doc = _summary(tmp_path, "transports")
    for workload in bt.WORKLOADS:
        fig = doc["figures"][workload]
        assert fig[bt.BASELINE]["status"] == "ok"  # Tornado is a runtime dependency
        for name in bt.CLIENTS:  # every library measured, or said to be missing
            assert fig[name]["status"] == ("ok" if bt.installed(name) else "not installed"), \
                (name, fig[name])
        for run in doc["figures"]["runs"][workload].values():
            assert len(run) == 1 and run[0]["msgs_per_s"] > 0
        assert "| Tornado, `on_message_callback`" in doc["tables"][workload]


def test_transports_reports_a_missing_library_as_not_installed(monkeypatch) -> None:
    from benchmarks import bench_transports as bt

    monkeypatch.setitem(bt.NEEDS, "picows", "livestream_no_such_module")
    assert not bt.installed("picows")
    run = {"msgs_per_s": 1000.0, "cpu_us_per_msg": 5.0}
    runs = {"json": {"tornado-callback": [run], "aiohttp": [dict(run, msgs_per_s=3000.0)]}}
    summary = bt.summarise(runs, ["tornado-callback", "aiohttp"])
    assert summary["json"]["picows"] == {"status": "not installed"}
    assert summary["json"]["aiohttp"]["vs_baseline"][0] == 3.0
    table = bt.tables(summary, 1, {"messages": 10, "frames": 1, "json_bytes": 120,
                                   "arrow_bytes": 5000}, {"picows": "not installed"})["json"]
    picows_row = next(line for line in table.splitlines() if "picows" in line)
    assert "| not installed |" in picows_row
    assert "3.00×" in table


def test_feed_reports_the_aiohttp_comparison_as_not_installed_without_aiohttp(monkeypatch) -> None:
    from benchmarks import bench_feed as bf

    monkeypatch.setitem(bf.OPTIONAL, "livestream-aiohttp", "livestream_no_such_module")
    assert not bf.available("livestream-aiohttp") and bf.available("livestream")
    run = {"msgs_per_s": 1000.0, "cpu_us_per_msg": 2.0, "gc_collections": [0, 0, 0], "gc_ms": 0}
    runs = {k: [dict(run)] for k in bf.CLIENTS if bf.available(k)}
    runs["livestream"] = [dict(run, msgs_per_s=2500.0)]
    summary = bf.summarise(runs)
    assert summary["picows_vs_aiohttp_feed"] is None
    assert summary["livestream_vs_bare"][0] == 2.5
    tabs = bf.tables(summary, 1)
    row = next(line for line in tabs["clients"].splitlines() if "on aiohttp" in line)
    assert "not installed" in row
    assert "target ≥ 2×: met" in tabs["ratios"]


def test_notebook_figures_count_what_the_page_received() -> None:
    from benchmarks import bench_notebook as nb

    kernel = {"fed": 10_000, "start": 100.0, "end": 112.0, "feed_s": 10.0,
              "kernel_rows": 10_000, "comm_messages": 600, "updates": 200}
    # the page got rows 0..5999, then (after a redraw from the window) 8000..9999
    samples = [(100.0 + t / 10, min(8_000, t * 100)) for t in range(0, 121)]
    acc = {"received": 8_000, "skipped": 2_000, "max": 9_999, "streams": 150, "resets": 1}
    r = nb.phase_figures(kernel, samples, acc, exceeded=[105.0, 200.0], batch=500)
    assert r["page_rows_received"] == 8_000 and r["page_rows_missing"] == 2_000
    assert r["page_rows_skipped_inside"] == 2_000 and r["page_redraws"] == 1
    assert r["iopub_rate_exceeded"] == 1  # only the event inside the phase
    assert r["page_rows_per_s"] == 1_000  # 100 rows per 0.1 s sample, until the final count
    table = nb.tables({"phases": {"server-livestream": r}})["phases"]
    assert "end to end" in table and "| 2,000 |" in table


def test_viewers_table_has_a_row_per_viewer_count() -> None:
    from benchmarks import bench_viewers as bv

    rows = [{"mode": "static", "viewers": 0, "cpu_pct": 5.0, "rss_mib": 150.0},
            {"mode": "static", "viewers": 10, "cpu_pct": 6.0, "rss_mib": 151.0,
             "cpu_per_viewer": 0.1, "rss_per_viewer": 0.1, "points_before": 10,
             "points_after": 20}]
    table = bv.tables(rows, ["static"])["viewers"]
    assert table.splitlines()[2].startswith("| 0 |") and "10 → 20" in table


@pytest.mark.redis
@pytest.mark.timeout(300)
def test_backplane_quick_run_writes_its_summary(tmp_path: Path) -> None:
    proc = _run("backplane", "--quick", "--out", str(tmp_path), "--summary-dir", str(tmp_path))
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    doc = _summary(tmp_path, "backplane")
    assert set(doc["tables"]) == {"cost", "scaling", "memory"}
    figures = doc["figures"]
    assert set(figures["cost"]) == {"memory", "redis"}
    assert figures["cost"]["memory"]["rows_per_s_ratio"] == 1.0
    assert set(figures["scaling"]) == {"1 node in memory", "1 node on Redis", "2 nodes on Redis"}
    assert figures["memory"]["bytes_per_row"] > 0
