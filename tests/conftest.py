"""Shared test setup: CPU only, fast compilation, small helpers."""

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA cache per session, shared by this process and every subprocess it starts: the same
# train/eval functions are compiled by many tests (a run, then its eval and predict modes, the mesh checks).
_CACHE = tempfile.mkdtemp(prefix="restorejax-xla-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
import jax  # noqa: E402

# Compile time dominates these tiny shapes; XLA's heavy passes are not needed.
jax.config.update("jax_disable_most_optimizations", True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(devices=1, **extra):
    """Environment of the test subprocesses: CPU with `devices` devices, fast compilation."""
    e = dict(os.environ)
    e.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        PYTHONPATH=ROOT,
        JAX_DISABLE_MOST_OPTIMIZATIONS="1",
    )
    e.update(extra)
    return e


def run_py(args, *, env=None, timeout=600, check=True, devices=1):
    """Runs `python ARGS` from the repo root in a fresh process; returns CompletedProcess."""
    e = subprocess_env(devices, **(env or {}))
    p = subprocess.run([sys.executable, *args], cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(
            f"python {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
        )
    return p


MESH_CHECKS = ("defocus:test", "srfeat:test,gan", "tone:test", "face_sr:test", "compression:test")


_MESH_STATES = tempfile.mkdtemp(prefix="restorejax-mesh-states-")
atexit.register(shutil.rmtree, _MESH_STATES, ignore_errors=True)
_mesh_job: dict = {}


def _start_mesh_check():
    """Starts every method's mesh check in one 4-device process, in the background (once per session)."""
    if _mesh_job:
        return
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    cmd = [sys.executable, "tests/mesh_check.py", "--save", _MESH_STATES, *MESH_CHECKS]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(4), stdout=out, stderr=err, text=True)
    atexit.register(lambda: proc.poll() is None and proc.kill())
    _mesh_job.update(proc=proc, out=out, err=err, cmd=" ".join(cmd[1:]))


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(config, items):
    """When a selected test is marked `mesh_check`, the check starts now: its minute of mostly single-threaded
    compiling then runs beside the in-process tests instead of in front of the first test that asks. The marked
    tests run last (in their collected order), so that no test waits on the check while other tests could run:
    the first one used to wait 40 s for it on a slow day. None of them uses a module-scoped fixture."""
    marked = [item for item in items if item.get_closest_marker("mesh_check")]
    if marked:
        _start_mesh_check()
        items[:] = [item for item in items if not item.get_closest_marker("mesh_check")] + marked


@functools.cache
def _mesh_results() -> dict:
    """Every method's mesh check (started on first use if no collected test was marked `mesh_check`)."""
    _start_mesh_check()
    proc, out, err = _mesh_job["proc"], _mesh_job["out"], _mesh_job["err"]
    try:
        proc.wait(timeout=900)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    out.seek(0), err.seek(0)
    stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        tail = f"{stdout[-3000:]}\n{stderr[-5000:]}"
        raise AssertionError(f"python {_mesh_job['cmd']} failed ({proc.returncode}):\n{tail}")
    return json.loads(stdout.strip().splitlines()[-1])


def mesh_metrics(method: str, variant: str) -> dict:
    """The scalar metrics of the mesh check's third step on one process with 4 devices."""
    return _mesh_results()[f"{method}:{variant}"]["metrics_4"]


def mesh_state(method: str, variant: str) -> dict:
    """The state after the mesh check's 3 steps on one process with 4 devices: {leaf path: array}."""
    _mesh_results()
    with np.load(os.path.join(_MESH_STATES, f"{method}_{variant}.npz")) as f:
        return dict(f)


def assert_mesh_matches_one_device(method: str, variant: str, *, metric_keys=None):
    """3 steps on a forced 4-device CPU mesh equal 3 steps on 1 device; each step function is traced once."""
    r = _mesh_results()[f"{method}:{variant}"]
    assert r["traces_1"] == 1 and r["traces_4"] == 1, r
    assert r["max_diff"] <= 1e-4 * max(1.0, r["param_scale"]), r
    for k in metric_keys or r["metrics_1"]:
        np.testing.assert_allclose(r["metrics_1"][k], r["metrics_4"][k], rtol=1e-4, atol=1e-6, err_msg=k)
    return r


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """`trained(CONFIG, *overrides)` -> the workdir of ``launch.py --config=configs/CONFIG`` trained once per
    session through the CLI and shared by every test that asks for the same run. Treat it as read-only:
    copy it (`copy_run`) to train further or evaluate into it."""
    runs = {}

    def get(config: str, *overrides: str) -> str:
        key = (config, overrides)
        if key not in runs:
            name = "".join(c if c.isalnum() else "_" for c in config + "_".join(overrides))[:60]
            workdir = str(tmp_path_factory.mktemp(name))
            run_py(["launch.py", f"--config=configs/{config}", f"--workdir={workdir}", *overrides])
            runs[key] = workdir
        return runs[key]

    return get


def copy_run(workdir: str, dst) -> str:
    """A private copy of a shared run folder (checkpoints, logs, eval) to change."""
    shutil.copytree(workdir, str(dst))
    return str(dst)
