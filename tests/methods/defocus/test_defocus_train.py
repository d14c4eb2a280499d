"""DMENet end to end: jitted steps, 4-device mesh, exact resume, CLI modes and errors."""

import json
import os
import signal

import chex
import jax
import numpy as np
import pytest
from conftest import assert_mesh_matches_one_device, copy_run, run_py

from common.train import trainer

CFG = "--config=configs/defocus.py:test"


def test_one_step_in_process_all_ablations():
    from common.train import sharding, trainer
    from configs import defocus as cfg_mod
    from methods.defocus import model

    assert [cfg_mod.get_config(f"test,{a}").loss.aux for a in ("b", "bd", "bdc", "bdsc", "full")] == [0, 0, 0, 0, 1]
    for ablation in ("b", "bdsc"):  # "full" is the shared trained run and the mesh check
        config = cfg_mod.get_config(f"test,{ablation}")
        task = trainer.build_task(config)
        mesh = sharding.make_mesh(jax.devices()[:1])
        state = task.init(jax.random.key(0))
        batch = next(iter(task.train_data(0)))
        on = model.uses(config.loss)
        assert ("real_image" in batch) == on["adv"] == (ablation != "b")
        assert ("masked_image" in batch) == on["sharp"] == (ablation != "b")
        chex.assert_shape(batch["syn_image"], (4, 32, 32, 3))
        step = trainer.jit_train_step(task, mesh)
        new, metrics = step(state, sharding.to_global(batch, mesh), jax.random.key(1), task.frozen)
        assert int(new.step) == 1
        assert ("loss/aux" in metrics) == on["aux"] == (ablation == "full")  # the patent adds it in the last step
        assert ("loss/domain" in metrics) == on["adv"]
        assert ("loss/content" in metrics) == on["content"]
        assert all(np.isfinite(float(v)) for v in metrics.values())


def test_a_large_photo_is_mapped_in_windows_like_whole():
    """The map's receptive-field radius is 206 pixels; windows with a 240-pixel overlap give the whole map."""
    from configs import defocus as cfg_mod
    from methods import defocus

    c = cfg_mod.get_config("test")
    task = trainer.build_task(c)
    ev = task.predict.__self__  # reads c.eval at each call
    state = jax.jit(task.init)(jax.random.key(0))
    img = np.random.default_rng(2).random((40, 700, 3)).astype(np.float32)
    shapes, maps = [], ev.maps
    ev.maps = lambda st, x: shapes.append(x.shape) or maps(st, x)
    c.eval.update(tile=0, tile_overlap=240)
    whole = ev.whole_map(state, img)
    c.eval.tile = 128  # 700 > 128 + 2·240: six tiles of 128, each seen in a 608-wide window
    tiled = ev.whole_map(state, img)
    assert shapes == [(1, 48, 704, 3)] + [(1, 48, 608, 3)] * 6
    assert whole.shape == (40, 700)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    c.eval.tile = -1
    with pytest.raises(defocus.ConfigError, match="eval.tile=-1"):
        trainer.build_task(c)


@pytest.mark.mesh_check
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


def test_a_run_leaves_every_output(trained):
    a = trained("defocus.py:test")
    for rel in ("checkpoints/4", "metrics.jsonl", "config.json", "eval/metrics.json", "eval/pr_curve.png"):
        assert os.path.exists(os.path.join(a, rel)), rel
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(a))
    assert os.listdir(os.path.join(a, "samples"))
    lines = [json.loads(x) for x in open(os.path.join(a, "metrics.jsonl"))]
    assert [x["step"] for x in lines] == [2, 4] and "loss/blur" in lines[0]
    ev = json.load(open(os.path.join(a, "eval/metrics.json")))
    syn = ev["synthetic"]
    for k in ("model", "constant", "blur_measure"):
        lo, hi = syn[k]["mse_ci95"]
        assert 0 <= lo <= syn[k]["mse"] + 1e-9 and syn[k]["mse"] <= hi + 1e-9  # a 95 % bootstrap interval
    d = syn["model_minus_blur_measure"]
    assert abs(d["mse"] - (syn["model"]["mse"] - syn["blur_measure"]["mse"])) < 1e-9  # the paired difference
    assert d["mse_ci95"][0] - 1e-9 <= d["mse"] <= d["mse_ci95"][1] + 1e-9 and syn["model_beats_blur_measure"] == (
        d["mse_ci95"][1] < 0
    )
    assert syn["photos"] == ["coffee"] and syn["num_images"] == 4
    assert 0 <= ev["masked"]["model"]["ap"] <= 1 and len(ev["masked"]["model_minus_blur_measure_ap_ci95"]) == 2


@pytest.mark.slow
def test_a_run_killed_by_sigkill_resumes_bitwise_exactly(trained, tmp_path):
    a, b = trained("defocus.py:test"), str(tmp_path / "b")
    # SIGKILL right after step 3 (the step-2 checkpoint on disk, step 3 logged nowhere), resume to 4
    p = run_py(["tests/helpers/train_worker.py", CFG, f"--workdir={b}", "--kill_at=3"], check=False)
    assert p.returncode == -signal.SIGKILL and "killing at step 3" in p.stdout, p.stderr[-3000:]
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


@pytest.mark.slow
def test_more_steps_continue_then_eval_and_predict_use_the_latest_checkpoint(trained, tmp_path):
    a = copy_run(trained("defocus.py:test"), tmp_path / "a")
    # raising total_steps continues from 4
    run_py(["launch.py", CFG, f"--workdir={a}", "--config.total_steps=6", "--config.eval_at_end=False"])
    assert _params(a)[0] == 6
    assert [json.loads(x)["step"] for x in open(os.path.join(a, "metrics.jsonl"))] == [2, 4, 6]

    # eval and predict from the latest checkpoint
    run_py(["launch.py", CFG, f"--workdir={a}", "--mode=eval"])
    assert json.load(open(os.path.join(a, "eval/metrics.json")))["step"] == 6
    from common.data import imageio

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
    # bad flags: ml_collections would print a traceback for each
    p = run_py(["launch.py", CFG, f"--workdir={tmp_path}", "--config.model.widht=2"], check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "--config.model.widht=2: the config has no key 'widht'. Did you mean \"width\"" in p.stderr
    p = run_py(["launch.py", "--config=configs/defocus.py:tset", f"--workdir={tmp_path}"], check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "ConfigError: configs/defocus.py: unknown variant(s) ['tset']; use quick, test," in p.stderr
    p = run_py(["benchmarks/train_throughput.py", "--config=configs/defocuss.py:test"], check=False)
    assert p.returncode != 0 and p.stderr.strip().splitlines()[-1] == (
        "error: --config=configs/defocuss.py: no such config file (a file, or a method: "
        "compression, defocus, face_sr, srfeat, tone)"
    )
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
