"""notebooks/quickstart.ipynb runs top to bottom (CPU, the `test` variant) and shows its pictures."""

import json
import os

import nbformat
import papermill
import pytest
from conftest import ROOT

NOTEBOOK = os.path.join(ROOT, "notebooks", "quickstart.ipynb")


def test_the_stored_notebook_has_parameters_and_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'VARIANT = "quick"' in tagged[0].source
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
def test_the_quickstart_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")  # the kernel inherits this process's environment
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    workdir = tmp_path / "run"
    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        NOTEBOOK,
        str(out),
        parameters={"VARIANT": "test", "INSTALL": False, "WORKDIR": str(workdir)},
        cwd=ROOT,
        kernel_name="python3",
        execution_timeout=600,
        progress_bar=False,
    )  # raises PapermillExecutionError naming the cell when one fails
    nb = nbformat.read(str(out), as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) == 5  # last training sample, eval samples, PR curve, the photo and its defocus map
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "cpu" in text and "coffee_defocus.png" in text
    assert json.load(open(workdir / "eval" / "metrics.json"))["step"] == 4
    assert os.path.isfile(workdir / "predict" / "coffee_defocus_raw16.png")
