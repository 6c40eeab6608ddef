"""notebooks/changing_landscape.ipynb runs top to bottom and shows what its text says."""

from __future__ import annotations

import json

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

NOTEBOOK = REPO / "notebooks" / "changing_landscape.ipynb"

# Appended before running: the notebook's results as one JSON line, for the assertions below.
REPORT = """
import json
print(json.dumps({
    "linear": {k: {"lambda_max": float(v["lambda"][-1]), "lr_max": v["lr_max"]} for k, v in linear.items()},
    "nets": {f"{norm}/{features}": v for (norm, features), v in nets.items()},
    "best_loss": {f"{norm}/{features}": float(l[-1]) for (norm, features), (_, l) in best.items()},
    "shifted": rows.tolist(),
}))
"""


@pytest.mark.slow  # ~26 s of training inside the notebook
def test_changing_landscape_notebook_runs_and_shows_its_claims(monkeypatch) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "stored with outputs"
    )
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    monkeypatch.delenv("NORMLAB_FIGURES_DIR", raising=False)  # write no figure files
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's torch: one thread, as documented
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 4
    report = json.loads(nb.cells[-1].outputs[-1]["text"])

    # 1. the measured largest stable rate of the quadratic is 2/lambda_max (bisection precision)
    for name in ("raw", "standardised"):
        linear = report["linear"][name]
        assert abs(linear["lr_max"] * linear["lambda_max"] / 2 - 1) < 1e-3, name
    assert report["linear"]["standardised"]["lr_max"] > 5000 * report["linear"]["raw"]["lr_max"]
    # 2. BN on raw features tolerates rates >= 1000x the plain net's, and trains further
    nets, best = report["nets"], report["best_loss"]
    assert nets["batch/raw"]["lr_max"] > 1000 * nets["none/raw"]["lr_max"]
    assert best["batch/raw"] < best["none/raw"] / 2
    assert best["none/standardised"] < best["batch/raw"] / 5
    # 3. a shifted test set: eval mode loses accuracy, the test batch's statistics keep it,
    # a one-class test batch is near chance at every shift
    eval_mode, batch_stats, one_class = zip(*report["shifted"], strict=True)
    assert eval_mode[0] > 0.9 and eval_mode[-1] < 0.6
    assert min(batch_stats) > 0.9
    assert max(abs(a - 0.5) for a in one_class) < 0.1
