"""The launcher's front door: --help, configs by name from any folder, the console command, and the checks it
makes before building anything."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, run_py, subprocess_env

from methods import METHODS

LAUNCH = os.path.join(ROOT, "launch.py")


def _elsewhere(args, tmp_path):
    """`python launch.py ARGS` started from `tmp_path`, outside the repository."""
    return subprocess.run(
        [sys.executable, LAUNCH, *args], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True
    )


def test_help_lists_every_method_its_variants_and_the_modes_and_exits_0(tmp_path):
    p = _elsewhere(["--help"], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    for name in METHODS:
        assert f"{name} (configs/{name}.py)" in p.stdout
    assert "quick" in p.stdout and "--mode=train|eval|predict" in p.stdout and "--allow_config_change" in p.stdout


def test_a_config_by_method_name_from_another_folder_and_checks_before_building(tmp_path):
    """--config=tone:test resolves to the shipped config from any folder. Evaluating a folder with no run, or
    predicting from a missing input, is one error line before anything is built, and creates nothing."""
    missing = tmp_path / "no_run"
    p = _elsewhere(["--config=tone:test", f"--workdir={missing}", "--mode=eval"], tmp_path)
    assert p.returncode == 1 and "no trained run here" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert "Building" not in p.stderr and not missing.exists()
    p = _elsewhere(["--config=configs/tone.py:test", f"--workdir={missing}", "--mode=predict"], tmp_path)
    assert "no trained run here" in p.stderr  # configs/<name>.py also resolves outside the repository
    (missing / "checkpoints").mkdir(parents=True)
    p = _elsewhere(["--config=tone:test", f"--workdir={missing}", "--mode=predict", "--input=gone.png",
                    "--output=x.png"], tmp_path)  # fmt: skip
    assert p.returncode == 1 and "--input=gone.png: no such file or folder" in p.stderr, p.stderr
    assert "Building" not in p.stderr
    p = _elsewhere(["--config=nosuch:test", f"--workdir={missing}"], tmp_path)
    assert p.returncode == 1 and "nosuch" in p.stderr and "compression, defocus, face_sr" in p.stderr, p.stderr


def test_the_console_command_runs_the_launcher(tmp_path):
    exe = shutil.which("restore-jax")
    if exe is None:
        pytest.skip("the project is not installed (pip install -e .), so there is no restore-jax command")
    p = subprocess.run([exe, "--help"], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True)
    assert p.returncode == 0 and "defocus (configs/defocus.py)" in p.stdout, p.stderr[-2000:]


def test_run_py_is_the_launcher_from_the_root():
    assert run_py(["launch.py", "--help"]).stdout.startswith("usage: python launch.py")
