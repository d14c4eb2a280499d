"""Two processes x 2 CPU devices, joined by `jax.distributed` on localhost, train like one process x 4 devices.

Each group runs under a deadline with a free port; every child is killed however the test ends, so a hung
collective fails the test instead of hanging the suite.
"""

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, mesh_metrics, mesh_state, run_py, subprocess_env

N_PROC = 2
DEADLINE_S = 300  # a whole group; a healthy one takes well under a minute
GRACE_S = 20  # how long the others may outlive a process that exited (then they are killed)


@dataclasses.dataclass
class Exit:
    returncode: int
    stdout: str
    stderr: str

    def checksums(self) -> dict[int, str]:
        """step -> this process's state digest (printed by tests/helpers/train_worker.py)."""
        return {int(m[1]): m[2] for m in re.finditer(r"^process \d+ step (\d+) checksum (\S+)$", self.stdout, re.M)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_group(
    args: list[str], tmp_path, *, settings: str = "flags", expect_ok: bool = True, deadline_s: float = DEADLINE_S
) -> list[Exit]:
    """`python ARGS` as process i of N_PROC (2 CPU devices each); the group's settings come from launch.py's flags
    or from the JAX_* environment variables. Returns each process's exit; all are dead when it returns."""
    address = f"127.0.0.1:{free_port()}"
    procs, files = [], []
    try:
        for i in range(N_PROC):
            env = subprocess_env(devices=2)
            extra = []
            if settings == "flags":
                extra = [f"--coordinator_address={address}", f"--num_processes={N_PROC}", f"--process_id={i}"]
            else:
                env.update(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES=str(N_PROC), JAX_PROCESS_ID=str(i))
            out, err = open(tmp_path / f"p{i}.out", "w+"), open(tmp_path / f"p{i}.err", "w+")
            files.append((out, err))
            procs.append(
                subprocess.Popen(
                    [sys.executable, *args, *extra], cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True
                )
            )
        deadline, first_exit = time.monotonic() + deadline_s, None
        while any(p.poll() is None for p in procs):
            now = time.monotonic()
            if first_exit is None and any(p.poll() is not None for p in procs):
                first_exit = now
            if now > deadline or (first_exit is not None and now > first_exit + GRACE_S):
                break
            time.sleep(0.2)
        hung = [i for i, p in enumerate(procs) if p.poll() is None]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    exits = []
    for p, (out, err) in zip(procs, files, strict=True):
        out.seek(0), err.seek(0)
        exits.append(Exit(p.returncode, out.read(), err.read()))
        out.close(), err.close()
    report = "\n".join(
        f"--- process {i} rc {e.returncode}\n{e.stdout[-1500:]}\n{e.stderr[-3000:]}" for i, e in enumerate(exits)
    )
    if expect_ok:
        assert not hung, f"processes {hung} still running after the deadline or after another exited:\n{report}"
        assert all(e.returncode == 0 for e in exits), report
    return exits


def assert_same_state(a: dict, b: dict, *, rtol: float = 0.0):
    assert a.keys() == b.keys() and len(a) > 10
    scale = max(float(np.max(np.abs(v))) for v in a.values() if v.size and v.dtype.kind == "f")
    for k in a:
        if rtol == 0.0:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=rtol * max(1.0, scale), err_msg=k)


def load(prefix: str) -> list[dict]:
    out = []
    for i in range(N_PROC):
        with np.load(f"{prefix}.p{i}.npz") as f:
            out.append(dict(f))
    return out


def logged_steps(workdir) -> list[int]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line)["step"] for line in f]


def assert_step_3_metrics_match_one_process(workdir, method: str):
    """The logged step-3 scalars equal those of 1 process x 4 devices (the parameters are compared at the
    parameter scale: Adam's first steps turn float-order noise in near-zero gradients into lr-sized moves)."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        last = json.loads(f.readlines()[-1])
    assert last["step"] == 3
    for k, v in mesh_metrics(method, "test").items():
        np.testing.assert_allclose(last[k], v, rtol=1e-4, atol=1e-6, err_msg=k)


def assert_only_process_0_reports(exits: list[Exit], workdir, evaluate: bool, last: int = 3):
    """One line per logged step, one sample grid, one evaluation: process 0's; process 1 prints no progress."""
    assert logged_steps(workdir) == [2, last]
    assert os.listdir(workdir / "samples") == [f"train_{last:07d}.png"]
    assert os.path.isfile(workdir / "eval" / "metrics.json") == evaluate
    assert ("eval_seconds" in exits[0].stderr) == evaluate and "eval_seconds" not in exits[1].stderr
    assert f"step {last}/{last}" in exits[0].stderr and "step " not in exits[1].stderr


@pytest.mark.slow
@pytest.mark.mesh_check
@pytest.mark.parametrize("method,uninterrupted", [("tone", True), ("compression", False)])
def test_two_processes_train_save_and_resume_like_one_process(method, uninterrupted, tmp_path):
    """Tone (three networks, three optimizers: the richest state of the test configs, and the cheapest to
    compile): an uninterrupted 2-process run, then a killed + relaunched one (evaluated) that must equal it
    bitwise. Compression (to keep the suite short): the killed + relaunched run alone, against 1 x 4 devices.
    Every method, defocus included, is checked on 1 process x 4 devices by tests/helpers/mesh_check.py."""
    worker = ["tests/helpers/train_worker.py", f"--config=configs/{method}.py:test", "--config.total_steps=3"]
    worker += ["--config.checkpoint_every=2", f"--config.eval_at_end={uninterrupted}"]
    reference = mesh_state(method, "test")  # 3 steps on 1 process x 4 devices (tests/helpers/mesh_check.py)

    if uninterrupted:  # the group given by launch.py's flags
        u = tmp_path / "u"
        args = [*worker, f"--workdir={u}", f"--dump={tmp_path / 'u'}", "--config.eval_at_end=False"]
        exits = run_group(args, tmp_path, settings="flags")
        sums = [e.checksums() for e in exits]
        assert sorted(sums[0]) == [1, 2, 3] and sums[0] == sums[1]  # every step, both processes hold one state
        s0, s1 = load(str(tmp_path / "u"))
        assert_same_state(s0, s1)
        assert_same_state(reference, s0, rtol=1e-4)
        assert_step_3_metrics_match_one_process(u, method)
        assert sorted(os.listdir(u / "checkpoints")) == ["2", "3"]  # one orbax checkpoint per save
        assert_only_process_0_reports(exits, u, evaluate=False)
        if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) == os.cpu_count():
            cores = [set(json.loads(re.search(r"^process \d cores (.*)$", e.stdout, re.M)[1])) for e in exits]
            assert cores[0] and cores[1] and (not cores[0] & cores[1] or os.cpu_count() < N_PROC), cores

    # both processes SIGKILLed right after step 2 ...
    k = tmp_path / "k"
    settings = "env" if uninterrupted else "flags"
    exits = run_group([*worker, f"--workdir={k}", "--kill_at=2"], tmp_path, settings=settings, expect_ok=False)
    assert exits[0].returncode == -signal.SIGKILL and "killing at step 2" in exits[0].stdout, exits[0].stderr[-3000:]
    assert all(e.returncode != 0 for e in exits)
    assert sorted(os.listdir(k / "checkpoints")) == ["2"]

    # ... and relaunched (the group given by JAX_* environment variables): both read the step-2 checkpoint back
    exits = run_group([*worker, f"--workdir={k}", f"--dump={tmp_path / 'k'}"], tmp_path, settings="env")
    assert [sorted(e.checksums()) for e in exits] == [[3], [3]]
    assert exits[0].checksums()[3] == exits[1].checksums()[3]
    r0, r1 = load(str(tmp_path / "k"))
    assert_same_state(r0, r1)
    if uninterrupted:  # step 3 equals the uninterrupted run's, bit for bit
        assert exits[0].checksums()[3] == sums[0][3]
        assert_same_state(r0, s0)
    assert_same_state(reference, r0, rtol=1e-4)
    assert_step_3_metrics_match_one_process(k, method)
    assert "Resuming" in exits[0].stderr and "Resuming" not in exits[1].stderr
    assert sorted(os.listdir(k / "checkpoints")) == ["2", "3"]
    assert_only_process_0_reports(exits, k, evaluate=uninterrupted)


def test_a_hung_group_fails_and_leaves_no_process(tmp_path):
    """The harness's own guarantee: a group that never finishes is an assertion failure, and it is killed."""
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match="still running"):
        run_group(["-c", "import time, sys; print(sys.argv, flush=True); time.sleep(600)"], tmp_path, deadline_s=2)
    assert time.monotonic() - t0 < 30


def test_multi_process_settings_are_checked_before_joining(monkeypatch):
    from common.errors import ConfigError
    from common.train import sharding

    for var in sharding.DISTRIBUTED_ENV.values():
        monkeypatch.delenv(var, raising=False)
    assert sharding.initialize_distributed() is False  # nothing set: one process
    with pytest.raises(ConfigError, match="missing: --coordinator_address / JAX_COORDINATOR_ADDRESS"):
        sharding.initialize_distributed(num_processes=2, process_id=0)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    with pytest.raises(ConfigError, match="JAX_PROCESS_ID"):
        sharding.initialize_distributed(num_processes=2)
    monkeypatch.setenv("JAX_PROCESS_ID", "one")
    with pytest.raises(ConfigError, match="process_id='one' \\(JAX_PROCESS_ID\\) is not an integer"):
        sharding.initialize_distributed(num_processes=2)
    with pytest.raises(ConfigError, match="process_id 2 is not in"):
        sharding.initialize_distributed(num_processes=2, process_id=2)


def test_each_process_reads_its_rows_of_the_one_stream():
    """Process i's batches are rows [i*b, (i+1)*b) of the one-process stream's batches: same examples, same rows."""
    from unittest import mock

    import jax

    from common.data import pipeline

    def example(rng):
        return {"x": np.asarray(rng.integers(1 << 30))}

    def batches(n, **kw):
        it = iter(pipeline.train_pipeline(example, batch_size=6, seed=3, num_threads=1))
        return [next(it)["x"] for _ in range(n)]

    whole = batches(3)
    parts = []
    for i in range(3):
        with (
            mock.patch.object(jax, "process_count", return_value=3),
            mock.patch.object(jax, "process_index", return_value=i),
        ):
            parts.append(batches(3))
    assert len(np.unique(np.concatenate(whole))) == 18
    for k in range(3):
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])


def test_the_launcher_names_missing_or_undetectable_multi_process_settings(tmp_path):
    cfg, wd = "--config=configs/defocus.py:test", f"--workdir={tmp_path}"
    env = {v: "" for v in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")}
    p = run_py(["launch.py", cfg, wd, "--num_processes=2"], env=env, check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "missing: --coordinator_address / JAX_COORDINATOR_ADDRESS, --process_id / JAX_PROCESS_ID" in p.stderr
    p = run_py(["launch.py", cfg, wd, "--config.distributed=True"], env=env, check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr and "no TPU pod, Slurm or Open MPI found" in p.stderr
