"""Shared test setup: CPU only, fast compilation, small helpers."""

import atexit
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import filelock
import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite runs on pytest-xdist workers (`-n auto --maxprocesses=2` in pyproject's addopts). The controller imports
# this file first and makes one folder that its workers inherit through the environment: it holds the persistent
# XLA cache (the same train/eval functions are compiled by many tests and by every subprocess they start), the
# shared trained runs of the `trained` fixture and the mesh check's results. Whoever made it removes it at exit.
_SHARED = os.environ.get("RESTOREJAX_TEST_DIR", "")
if not os.path.isdir(_SHARED):
    _SHARED = tempfile.mkdtemp(prefix="restorejax-tests-")
    os.environ["RESTOREJAX_TEST_DIR"] = _SHARED
    atexit.register(shutil.rmtree, _SHARED, ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(_SHARED, "xla-cache")
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
import jax  # noqa: E402

from common.train import xla  # noqa: E402
from methods import checked_specs  # noqa: E402

xla.set_cpu_flags()  # what the entry points set, before JAX starts its backend

# Compile time dominates these tiny shapes; XLA's heavy passes are not needed.
jax.config.update("jax_disable_most_optimizations", True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "helpers"))  # the helper scripts import as modules too


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


MESH_CHECKS = tuple(checked_specs())


_MESH_STATES = os.path.join(_SHARED, "mesh-states")
_MESH_DONE = os.path.join(_SHARED, "mesh.json")  # {"rc", "stdout", "stderr"}, written when the check ends
_MESH_WANTED = os.path.join(_SHARED, "mesh.wanted")
_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))


def _start_mesh_check():
    """Starts every method's mesh check in one 4-device process in the background, once per test session: the
    first process to get here claims it. A thread of that process writes `_MESH_DONE` when the check ends."""
    try:
        os.close(os.open(os.path.join(_SHARED, "mesh.started"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.makedirs(_MESH_STATES, exist_ok=True)
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    cmd = [sys.executable, "tests/helpers/mesh_check.py", "--save", _MESH_STATES, *MESH_CHECKS]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(4), stdout=out, stderr=err, text=True)
    atexit.register(lambda: proc.poll() is None and proc.kill())

    def report():
        try:
            rc = proc.wait(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = f"killed after 900 s: {proc.wait()}"
        out.seek(0), err.seek(0)
        done = {"rc": rc, "cmd": " ".join(cmd[1:]), "stdout": out.read(), "stderr": err.read()}
        with open(_MESH_DONE + ".tmp", "w") as f:
            json.dump(done, f)
        os.replace(_MESH_DONE + ".tmp", _MESH_DONE)

    threading.Thread(target=report, daemon=True).start()


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(config, items):
    """When a selected test is marked `mesh_check`, the check starts now: its minute of mostly single-threaded
    compiling then runs beside the other tests instead of in front of the first test that asks. A worker only asks
    for it; the controller, which outlives every worker, starts it (`pytest_xdist_node_collection_finished`). The
    marked tests run last (in their collected order), so that no test waits on the check while other tests could
    run: the first one used to wait 40 s for it on a slow day. None of them uses a module-scoped fixture."""
    marked = [item for item in items if item.get_closest_marker("mesh_check")]
    if marked:
        if _WORKER:
            open(_MESH_WANTED, "w").close()
        else:
            _start_mesh_check()
        items[:] = [item for item in items if not item.get_closest_marker("mesh_check")] + marked


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """On the controller, once a worker has collected: starts the mesh check if the worker asked for it."""
    if os.path.exists(_MESH_WANTED):
        _start_mesh_check()


@functools.cache
def _mesh_results() -> dict:
    """Every method's mesh check (started here on first use if no collected test was marked `mesh_check`)."""
    _start_mesh_check()
    deadline = time.monotonic() + 960
    while not os.path.exists(_MESH_DONE):
        if time.monotonic() > deadline:
            raise AssertionError(f"the mesh check wrote no {_MESH_DONE} in 16 minutes")
        time.sleep(0.2)
    with open(_MESH_DONE) as f:
        done = json.load(f)
    if done["rc"] != 0:
        tail = f"{done['stdout'][-3000:]}\n{done['stderr'][-5000:]}"
        raise AssertionError(f"python {done['cmd']} failed ({done['rc']}):\n{tail}")
    return json.loads(done["stdout"].strip().splitlines()[-1])


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
def trained():
    """`trained(CONFIG, *overrides)` -> the workdir of ``launch.py --config=configs/CONFIG`` trained once per
    session through the CLI and shared by every test (on any worker) that asks for the same run: the first to ask
    trains it under a file lock while the others wait. Treat it as read-only: copy it (`copy_run`) to train
    further or evaluate into it."""

    def get(config: str, *overrides: str) -> str:
        key = repr((config, overrides))
        name = "".join(c if c.isalnum() else "_" for c in config + "_".join(overrides))[:50]
        workdir = os.path.join(_SHARED, "trained", f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}")
        os.makedirs(os.path.dirname(workdir), exist_ok=True)
        with filelock.FileLock(workdir + ".lock"):
            if not os.path.exists(workdir + ".done"):
                shutil.rmtree(workdir, ignore_errors=True)  # what a failed attempt left
                run_py(["launch.py", f"--config=configs/{config}", f"--workdir={workdir}", *overrides])
                open(workdir + ".done", "w").close()
        return workdir

    return get


def copy_run(workdir: str, dst) -> str:
    """A private copy of a shared run folder (checkpoints, logs, eval) to change."""
    shutil.copytree(workdir, str(dst))
    return str(dst)
