"""The benchmark command runs: ``python -m benchmarks spine --quick`` end to end.

A smoke test only: one subscriber, 100-row batches, a fraction of a second per
case. It checks that every case ran and the results file is complete; it
asserts nothing about speed (the figures live in docs/benchmarks.md).
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


def test_list_names_the_spine_benchmark() -> None:
    proc = _run("--list", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "spine" in proc.stdout


def test_unknown_benchmark_is_refused() -> None:
    proc = _run("no-such-benchmark", timeout=60)
    assert proc.returncode == 2
    assert "no benchmark named" in proc.stderr


@pytest.mark.timeout(300)
def test_spine_quick_run_writes_results(tmp_path: Path) -> None:
    proc = _run("spine", "--quick", "--no-plot", "--out", str(tmp_path))
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
    assert "Fan-out" in proc.stdout
