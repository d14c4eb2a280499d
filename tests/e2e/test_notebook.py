"""notebooks/quickstart.ipynb runs top to bottom (CPU, the `test` variant) and shows its pictures."""

import json
import os
import tarfile

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


def _archive(path) -> str:
    """A .tar.gz of the repository's sources, in one top folder as GitHub's archives are."""
    skip = {".git", "runs", "__pycache__", ".pytest_cache", ".ruff_cache"}
    with tarfile.open(path, "w:gz") as t:
        for root, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
            for f in files:
                full = os.path.join(root, f)
                t.add(full, arcname=os.path.join("restore-jax-main", os.path.relpath(full, ROOT)))
    return str(path)


@pytest.mark.slow
def test_the_quickstart_notebook_runs_top_to_bottom_from_an_archive(tmp_path, monkeypatch):
    """As Colab runs it: opened with nothing beside it, the install cell extracts an archive of the repository
    (here a local one) and the rest runs from that copy."""
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")  # the kernel inherits this process's environment
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    workdir = tmp_path / "run"
    out = tmp_path / "executed.ipynb"
    alone = tmp_path / "colab"
    alone.mkdir()
    archive = _archive(tmp_path / "restore-jax-main.tar.gz")
    papermill.execute_notebook(
        NOTEBOOK,
        str(out),
        parameters={"VARIANT": "test", "INSTALL": False, "WORKDIR": str(workdir), "ARCHIVE": archive},
        cwd=str(alone),
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
    assert f"project root: {alone / 'restore-jax' / 'restore-jax-main'}" in text  # the extracted copy ran
    assert json.load(open(workdir / "eval" / "metrics.json"))["step"] == 4
    assert os.path.isfile(workdir / "predict" / "coffee_defocus_raw16.png")


def test_without_a_project_the_install_cell_says_what_to_set(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params, install = nb.cells[1].source, nb.cells[3].source
    code = params.replace('ARCHIVE = ""', f'ARCHIVE = "{tmp_path / "missing.zip"}"') + "\n" + install
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(SystemExit, match="no project found: set REPO_URL .* or ARCHIVE"):
            exec(compile(code, "install-cell", "exec"), {"__name__": "notebook"})
    finally:
        os.chdir(cwd)
