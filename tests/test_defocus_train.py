"""DMENet end to end: jitted steps, 4-device mesh, exact resume, CLI modes and errors."""

import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest
from conftest import ROOT, assert_mesh_matches_one_device, run_py, subprocess_env

CFG = "--config=configs/defocus.py:test"


def test_one_step_in_process_all_ablations():
    from common import sharding, trainer
    from configs import defocus as cfg_mod
    from methods import defocus

    for ablation in ("b", "bdsc", "full"):
        config = cfg_mod.get_config(f"test,{ablation}")
        task = defocus.build(config)
        mesh = sharding.make_mesh(jax.devices()[:1])
        state = task.init(jax.random.key(0))
        batch = next(iter(task.train_data(0)))
        assert ("real_image" in batch) == config.model.use_domain
        assert ("masked_image" in batch) == config.model.use_sharp
        chex.assert_shape(batch["syn_image"], (4, 32, 32, 3))
        step = trainer.jit_train_step(task, mesh)
        new, metrics = step(state, sharding.to_global(batch, mesh), jax.random.key(1), task.frozen)
        assert int(new.step) == 1
        assert ("loss/aux" in metrics) == config.model.use_aux
        assert ("loss/domain" in metrics) == config.model.use_domain
        assert all(np.isfinite(float(v)) for v in metrics.values())


def test_four_device_mesh_matches_one_device_and_does_not_retrace():
    assert_mesh_matches_one_device("defocus", "test", metric_keys=["loss/main"])


def _params(workdir):
    """Latest checkpoint's raw arrays, read back through the project's checkpoint wrapper."""
    import orbax.checkpoint as ocp

    path = os.path.join(workdir, "checkpoints")
    step = max(int(d) for d in os.listdir(path) if d.isdigit())
    mngr = ocp.CheckpointManager(path)
    state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    mngr.close()
    return step, state


@pytest.mark.slow
def test_train_outputs_resume_continue_and_exact_resume_after_sigkill(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    # straight: 4 steps, leaves every output of a run
    run_py(["launch.py", CFG, f"--workdir={a}"])
    for rel in ("checkpoints/4", "metrics.jsonl", "config.json", "eval/metrics.json", "eval/pr_curve.png"):
        assert os.path.exists(os.path.join(a, rel)), rel
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(a))
    assert os.listdir(os.path.join(a, "samples"))
    lines = [json.loads(x) for x in open(os.path.join(a, "metrics.jsonl"))]
    assert [x["step"] for x in lines] == [2, 4] and "loss/blur" in lines[0]
    ev = json.load(open(os.path.join(a, "eval/metrics.json")))
    for k in ("model", "constant", "blur_measure"):
        assert ev["synthetic"][k]["mse"] >= 0
    assert 0 <= ev["masked"]["model"]["ap"] <= 1

    # interrupted: pause at step 3 (after the step-2 checkpoint), SIGKILL, resume to 4
    env = subprocess_env(RESTOREJAX_PAUSE_AT_STEP="3")
    proc = subprocess.Popen(
        [sys.executable, "launch.py", CFG, f"--workdir={b}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    out = ""
    while time.time() < deadline:
        line = proc.stdout.readline()
        out += line
        if "pausing at step 3" in line or proc.poll() is not None:
            break
    assert "pausing at step 3" in out, out[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _params(b)[0] == 2
    p = run_py(["launch.py", CFG, f"--workdir={b}", "--config.eval_at_end=False"])
    assert "Resuming" in p.stderr and "step 2" in p.stderr
    assert [json.loads(x)["step"] for x in open(os.path.join(b, "metrics.jsonl"))] == [2, 4]
    (sa, pa), (sb, pb) = _params(a), _params(b)
    assert sa == sb == 4
    leaves_a, leaves_b = jax.tree.leaves(pa), jax.tree.leaves(pb)
    assert len(leaves_a) == len(leaves_b) > 10
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bitwise

    # raising total_steps continues from 4
    p = run_py(["launch.py", CFG, f"--workdir={a}", "--config.total_steps=6", "--config.eval_at_end=False"])
    assert _params(a)[0] == 6
    assert [json.loads(x)["step"] for x in open(os.path.join(a, "metrics.jsonl"))] == [2, 4, 6]

    # eval and predict from the latest checkpoint
    run_py(["launch.py", CFG, f"--workdir={a}", "--mode=eval"])
    assert json.load(open(os.path.join(a, "eval/metrics.json")))["step"] == 6
    from common import imageio

    img = np.random.default_rng(0).uniform(size=(37, 50, 3)).astype(np.float32)
    imageio.save_png(str(tmp_path / "in.png"), img)
    out_png = str(tmp_path / "out.png")
    run_py(
        ["launch.py", CFG, f"--workdir={a}", "--mode=predict", f"--input={tmp_path / 'in.png'}", f"--output={out_png}"]
    )
    from PIL import Image

    with Image.open(out_png) as im:
        assert im.size == (50, 37) and im.mode == "RGB"
    with Image.open(str(tmp_path / "out_raw16.png")) as im:
        assert im.size == (50, 37) and im.mode.startswith("I")


def test_cli_errors_are_one_clear_line(tmp_path):
    p = run_py(["launch.py", CFG, f"--workdir={tmp_path}", "--config.model.widht=2"], check=False)
    assert p.returncode != 0 and "widht" in p.stderr
    p = run_py(
        [
            "launch.py",
            CFG,
            f"--workdir={tmp_path}",
            "--config.backbone=vgg19",
            "--config.vgg19_weights=/nope/vgg.npz",
            "--config.model.vgg_width=1.0",
        ],
        check=False,
    )
    assert p.returncode != 0 and "/nope/vgg.npz: VGG-19 weights file not found" in p.stderr
    assert "Traceback" not in p.stderr
    # pretrained weights exist only at full width: the error names the backbone, the width and the way out
    p = run_py(["launch.py", CFG, f"--workdir={tmp_path}", "--config.backbone=vgg16"], check=False)
    assert p.returncode != 0 and "backbone vgg16" in p.stderr and "0.0625" in p.stderr and "Traceback" not in p.stderr
    p = run_py(
        [
            "launch.py",
            CFG,
            f"--workdir={tmp_path}",
            "--config.data.train.kind=folder",
            f"--config.data.train.path={tmp_path}",
        ],
        check=False,
    )
    assert p.returncode != 0 and "contains no images" in p.stderr and "Traceback" not in p.stderr
    p = run_py(["launch.py", CFG, f"--workdir={tmp_path / 'empty'}", "--mode=eval"], check=False)
    assert p.returncode != 0 and "no checkpoint" in p.stderr and "Traceback" not in p.stderr
    p = run_py(["launch.py", CFG, f"--workdir={tmp_path}", "--config.data.crop=40"], check=False)
    assert p.returncode != 0 and "data.crop=40" in p.stderr and "Traceback" not in p.stderr
