"""Execute every notebook in notebooks/ with nbclient in a real kernel.

Each notebook starts its own server on a free port and a simulated feed, and its
cells assert on the data they receive; a failing assertion fails the test. The
outputs are checked too: no errors, no stray stderr (a library must not print
into cells), and the live views really were created as widgets.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield from cell.get("outputs", [])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    outs = list(_outputs(nb))
    errors = [o for o in outs if o.output_type == "error"]
    assert not errors, errors
    stderr = [o.text for o in outs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, stderr
    # keep the executed copy for inspection (tests/artifacts is gitignored)
    art = ROOT / "tests" / "artifacts"
    art.mkdir(exist_ok=True)
    nbformat.write(nb, art / f"executed-{path.name}")
    if path.stem in ("quickstart", "trading", "chat", "game"):
        widgets = [o for o in outs if WIDGET_MIME in o.get("data", {})]
        assert widgets, "the notebook shows live widgets"
        models = {json.loads(json.dumps(o["data"][WIDGET_MIME]))["model_id"] for o in widgets}
        state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json")
        if state:  # nbclient stores the widget state: the charts are BokehModels
            names = {state["state"][m]["model_name"] for m in models if m in state["state"]}
            assert "BokehModel" in names or "HTMLModel" in names
