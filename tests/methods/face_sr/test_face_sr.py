"""Self-supervised face SR: equations, pair builder, blocks, mesh and the CLI."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_mesh_matches_one_device, run_py

from common.data import imageio
from common.nn import layers
from common.train import trainer
from configs import face_sr as cfg_mod
from methods.face_sr import data as fd
from methods.face_sr import model as fm


def test_generator_and_discriminator_losses_match_numpy():
    rng = np.random.default_rng(0)
    sr, gt = rng.random((2, 16, 16, 3)), rng.random((2, 16, 16, 3))
    np.testing.assert_allclose(fm.pixel_loss(sr, gt), np.abs(sr - gt).mean(axis=(1, 2, 3)), rtol=1e-5)
    fs = {"a": rng.normal(size=(2, 4, 4, 8)), "b": rng.normal(size=(2, 2, 2, 16))}
    fg = {"a": rng.normal(size=(2, 4, 4, 8)), "b": rng.normal(size=(2, 2, 2, 16))}
    want = sum(np.abs(fs[k] - fg[k]).mean(axis=(1, 2, 3)) for k in ("a", "b"))
    np.testing.assert_allclose(fm.feature_loss(fs, fg, ("a", "b")), want, rtol=1e-5)
    d_fake, d_real = rng.normal(size=(2, 3, 3, 1)), rng.normal(size=(2, 3, 3, 1))
    np.testing.assert_allclose(fm.generator_adv_loss(d_fake), 0.5 * ((d_fake - 1) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(
        fm.discriminator_loss(d_real, d_fake),
        0.5 * ((d_real - 1) ** 2).mean(axis=(1, 2, 3)) + 0.5 * (d_fake**2).mean(axis=(1, 2, 3)),
        rtol=1e-5,
    )


def test_step_total_is_the_sum_of_the_terms_over_scales():
    config = cfg_mod.get_config("test")
    task = trainer.build_task(config)
    state = task.init(jax.random.key(0))
    batch = next(iter(task.train_data(0)))
    new, m = jax.jit(task.train_step)(state, batch, jax.random.key(1), task.frozen)
    np.testing.assert_allclose(m["loss/g"], m["loss/l1"] + m["loss/adv"] + m["loss/vgg"], rtol=1e-5)
    nets = fm.Nets(config)
    # the L1 term is Σ over both scales of ‖G(LR_s) − GT_s‖₁, recomputed here
    want = sum(float(jnp.mean(jnp.abs(nets.upscale(state, batch[f"lr{s}"]) - batch[f"gt{s}"]))) for s in range(2))
    np.testing.assert_allclose(m["loss/l1"], want, rtol=1e-4)
    assert int(new.step) == 1


def test_pair_builder_makes_the_scales_and_exactly_one_degradation():
    dcfg = cfg_mod.get_config("").data  # the paper: 256 inputs, three scales
    face = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
    seen = set()
    for i in range(24):
        ex = fd.make_pairs(np.random.default_rng([3, i]), face, dcfg)
        for s, (lr, gt) in enumerate(((64, 256), (32, 128), (16, 64))):
            assert ex[f"lr{s}"].shape == (lr, lr, 3) and ex[f"gt{s}"].shape == (gt, gt, 3)
        kind = fd.DEGRADATIONS[int(ex["degradation"])]
        seen.add(kind)
        # exactly one: a rotation changes GT and leaves LR = GT↓4 clean; the others keep GT = input
        # (up to the flip/rot augmentation) and change LR away from GT↓4.
        from common.data import resize

        clean_lr = np.clip(resize.imresize(ex["gt0"], output_shape=(64, 64)), 0, 1)
        lr_changed = np.abs(ex["lr0"] - clean_lr).max() > 1e-3
        assert lr_changed == (kind != "rotation"), kind
    assert seen == set(fd.DEGRADATIONS)


def test_preact_block_resamples_and_scales_by_inverse_sqrt2():
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 4))
    for resample, shape in (("down", (1, 4, 4, 6)), ("up", (1, 16, 16, 6)), ("none", (1, 8, 8, 6))):
        blk = layers.PreActResBlock(6, resample=resample)
        v = blk.init(jax.random.key(1), x)
        assert blk.apply(v, x).shape == shape
    blk = layers.PreActResBlock(4, norm=False)
    v = blk.init(jax.random.key(1), x)
    zero = jax.tree.map(jnp.zeros_like, v)  # residual convs zero → output = identity shortcut / √2
    np.testing.assert_allclose(blk.apply(zero, x), x / np.sqrt(2), rtol=1e-6)


def test_generator_starts_as_bicubic_and_its_residual_trains():
    g = fm.Generator(width=1 / 16, n_down=1, n_bottleneck=1)
    x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
    v = g.init(jax.random.key(1), x)
    np.testing.assert_allclose(g.apply(v, x), jax.image.resize(x, (2, 32, 32, 3), "cubic"), atol=1e-6)
    grad = jax.grad(lambda p: jnp.sum(g.apply({"params": p}, x) ** 2))(v["params"])
    assert float(jnp.max(jnp.abs(grad["to_rgb"]["kernel"]))) > 0  # zero-initialised, not frozen


@pytest.mark.mesh_check
def test_four_device_mesh_matches_one_device():
    assert_mesh_matches_one_device("face_sr", "test")


@pytest.mark.slow
def test_train_eval_predict_through_the_cli(trained, tmp_path):
    w = trained("face_sr.py:test")
    cfg = "--config=configs/face_sr.py:test"
    for rel in ("checkpoints/4", "metrics.jsonl", "eval/metrics.json", "eval/samples.png", "samples"):
        assert os.path.exists(os.path.join(w, rel)), rel
    ev = json.load(open(os.path.join(w, "eval/metrics.json")))
    assert "train_inputs" not in ev and ev["held_out"]["num_images"] == 1
    assert set(ev["held_out"]["model"]) == {"psnr", "ssim", "sharpness", "lpips", "fd_vgg16", "fd_alex"}
    assert all(ev["held_out"][k]["fd_vgg16"] >= 0 for k in ("model", "bicubic"))  # FD-VGG16 against the true faces
    assert 0 <= ev["held_out"]["model"]["lpips"] < 1 and ev["lpips_net"] == "alex"
    src, out = str(tmp_path / "face.png"), str(tmp_path / "big.png")
    imageio.save_png(src, np.random.default_rng(0).random((24, 20, 3)))
    run_py(["launch.py", cfg, f"--workdir={w}", "--mode=predict", f"--input={src}", f"--output={out}"])
    assert imageio.load_image(out).shape == (96, 80, 3)
