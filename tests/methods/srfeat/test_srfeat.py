"""SRFeat: building blocks, equations, the two-stage step, 4-device mesh and the CLI."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_mesh_matches_one_device, run_py

from common.data import resize
from common.nn import layers
from common.quality import metrics
from common.train import sharding, trainer
from configs import srfeat as cfg_mod
from methods.srfeat import model as sm


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------- building blocks


def test_depth_to_space_matches_tensorflow_documented_examples():
    # the three examples of the tf.nn.depth_to_space documentation (NHWC, block 2)
    x = np.array([[[[1, 2, 3, 4]]]], np.float32)
    np.testing.assert_array_equal(layers.depth_to_space(x, 2), [[[[1], [2]], [[3], [4]]]])
    x = np.arange(1, 13, dtype=np.float32).reshape(1, 1, 1, 12)
    np.testing.assert_array_equal(layers.depth_to_space(x, 2), [[[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]]]])
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 2, 2, 4)
    want = [[[[1], [2], [5], [6]], [[3], [4], [7], [8]], [[9], [10], [13], [14]], [[11], [12], [15], [16]]]]
    np.testing.assert_array_equal(layers.depth_to_space(x, 2), want)
    # block 3, any channel count: out[h·r+i, w·r+j, c] = in[h, w, (i·r+j)·C + c]
    x = np.random.default_rng(0).random((2, 3, 4, 18)).astype(np.float32)
    y = np.asarray(layers.depth_to_space(x, 3))
    for h, w, i, j, c in [(0, 0, 0, 0, 0), (2, 3, 2, 1, 1), (1, 2, 1, 2, 0)]:
        assert y[1, h * 3 + i, w * 3 + j, c] == x[1, h, w, (i * 3 + j) * 2 + c]
    with pytest.raises(ValueError, match="divisible"):
        layers.depth_to_space(x[..., :5], 2)


def test_imresize_matches_pillow_bicubic_away_from_borders_and_keeps_constants():
    from PIL import Image

    x = np.random.default_rng(1).random((96, 80)).astype(np.float32)
    for s in (0.25, 0.5, 2.0, 4.0):
        y = resize.imresize(x, s)
        assert y.shape == (int(96 * s), int(80 * s))
        ref = np.asarray(Image.fromarray(x, mode="F").resize((y.shape[1], y.shape[0]), Image.BICUBIC))
        b = 9 if s < 1 else 8  # Pillow renormalises a truncated kernel at borders; MATLAB mirrors
        np.testing.assert_allclose(y[b:-b, b:-b], ref[b:-b, b:-b], atol=1e-5)
        assert np.abs(y - ref).max() > 1e-3  # ...and the borders do differ (MATLAB's symmetric padding)
    c = np.full((37, 41, 3), 0.3)
    np.testing.assert_allclose(resize.imresize(c, 1 / 3), 0.3, atol=1e-12)
    assert resize.imresize(c, 1 / 3).shape == (13, 14, 3)  # MATLAB: ceil(scale · size)
    np.testing.assert_array_equal(resize.modcrop(np.zeros((37, 41)), 4).shape, (36, 40))


def test_rgb_to_y_is_bt601_and_shave_drops_the_border():
    rgb = np.random.default_rng(2).random((1, 6, 7, 3)).astype(np.float32)
    want = (16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255
    np.testing.assert_allclose(np.asarray(metrics.rgb_to_y(rgb))[..., 0], want, rtol=1e-6)
    assert metrics.shave(rgb, 2).shape == (1, 2, 3, 3)


def test_long_range_skip_sums_blocks_1_to_n_minus_1_through_1x1_convs_plus_block_n():
    g = sm.Generator(channels=6, blocks=5, scale=4)
    x = jax.random.uniform(jax.random.key(0), (2, 5, 7, 3))
    v = g.init(jax.random.key(1), x, train=False)
    y, st = g.apply(v, x, train=False, mutable=["intermediates"])
    assert y.shape == (2, 20, 28, 3)
    p, inter = v["params"], st["intermediates"]
    skips = sorted(k for k in p if k.startswith("skip"))
    assert skips == [f"skip{i}" for i in range(1, 5)]  # blocks 1..4 only, never block 5
    assert all(set(p[k]) == {"kernel"} and p[k]["kernel"].shape == (1, 1, 6, 6) for k in skips)  # 1x1, no bias
    blocks = [np.asarray(b, np.float64) for b in inter["blocks"]]
    assert len(blocks) == 5
    want = blocks[4] + sum(
        np.einsum("nhwc,cd->nhwd", blocks[i - 1], np.asarray(p[f"skip{i}"]["kernel"][0, 0], np.float64))
        for i in range(1, 5)
    )
    np.testing.assert_allclose(np.asarray(inter["skip_sum"][0]), want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- equations


def test_losses_match_numpy_transcriptions():
    rng = np.random.default_rng(3)
    sr, hr = rng.random((3, 8, 8, 3)), rng.random((3, 8, 8, 3))
    np.testing.assert_allclose(sm.pixel_loss(sr, hr), ((sr - hr) ** 2).mean(axis=(1, 2, 3)), rtol=1e-6)
    f_sr, f_hr = rng.normal(size=(3, 2, 2, 16)) * 3, rng.normal(size=(3, 2, 2, 16)) * 3
    np.testing.assert_allclose(sm.perceptual_loss(f_sr, f_hr), ((f_sr - f_hr) ** 2).mean(axis=(1, 2, 3)), rtol=1e-6)
    l_fake, l_real = rng.normal(size=5) * 4, rng.normal(size=5) * 4
    np.testing.assert_allclose(sm.generator_adv_loss(l_fake), -np.log(_sig(l_fake)), rtol=1e-5)
    np.testing.assert_allclose(
        sm.discriminator_loss(l_real, l_fake),
        -np.log(_sig(l_real)) - np.log(1 - _sig(l_fake)),
        rtol=1e-5,
    )


def _gan_task(variant):
    config = cfg_mod.get_config(f"test,gan,{variant}" if variant else "test,gan")
    task = trainer.build_task(config)
    mesh = sharding.make_mesh(jax.devices()[:1])
    state = task.init(jax.random.key(0))
    batch = next(iter(task.train_data(0)))
    return config, task, mesh, state, batch


@pytest.mark.parametrize("schedule", ["alternate", "simultaneous"])
def test_gan_step_combines_the_terms_and_equals_a_direct_gradient(schedule):
    config, task, mesh, state, batch = _gan_task("")
    config.disc.schedule = schedule
    if schedule == "simultaneous":  # the probes' switches, checked on one of the two cases
        config.loss.pixel, config.loss.clip_vgg = 0.5, True
    nets = sm.Nets(config)
    step = jax.jit(lambda s, b: sm.train_step(s, b, None, task.frozen, nets=nets))
    new, m = step(state, batch)
    lam = config.loss
    np.testing.assert_allclose(
        m["loss/g"],
        m["loss/perceptual"]
        + lam.adv_image * m["loss/adv_image"]
        + lam.adv_feature * m["loss/adv_feature"]
        + lam.pixel * m.get("loss/pixel", 0.0),
        rtol=1e-5,
    )
    assert ("loss/pixel" in m) == bool(lam.pixel)
    np.testing.assert_allclose(m["loss/d"], lam.d_weight * (m["loss/d_image"] + m["loss/d_feature"]), rtol=1e-5)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new.g_stats, state.g_stats))  # BN frozen

    # reference: the textbook G update, differentiating L_G(G(g)) end to end against the chosen D
    d, d_stats = (new.d, new.d_stats) if schedule == "alternate" else (state.d, state.d_stats)
    lr, hr = jnp.asarray(batch["lr"]), jnp.asarray(batch["hr"])

    def l_g(g):
        sr = nets.g.apply({"params": g, "batch_stats": state.g_stats}, lr, train=False)
        phi_sr = nets.features(task.frozen, jnp.clip(sr, 0, 1) if lam.clip_vgg else sr)
        phi_hr = nets.features(task.frozen, hr)
        out = jnp.mean(sm.perceptual_loss(phi_sr, phi_hr)) + lam.pixel * jnp.mean(sm.pixel_loss(sr, hr))
        for name, x in (("image", sr), ("feature", phi_sr)):
            logits = sm._d_apply(nets, d[name], d_stats[name], x)[0]
            out += getattr(lam, f"adv_{name}") * jnp.mean(sm.generator_adv_loss(logits))
        return out

    sr = nets.g.apply({"params": state.g, "batch_stats": state.g_stats}, lr, train=False)
    phi = functools.partial(nets.features, task.frozen)
    l_p = jnp.mean(sm.perceptual_loss(phi(jnp.clip(sr, 0, 1) if lam.clip_vgg else sr), phi(hr)))
    np.testing.assert_allclose(m["loss/perceptual"], l_p, rtol=1e-5)
    if lam.clip_vgg:  # the clip must matter here for this case to test it
        assert abs(float(l_p - jnp.mean(sm.perceptual_loss(phi(sr), phi(hr))))) > 1e-4 * float(l_p)
    grads = jax.jit(jax.grad(l_g))(state.g)
    upd, _ = nets.tx.update(grads, state.opt_g, state.g)
    want = optax.apply_updates(state.g, upd)
    for a, b in zip(jax.tree.leaves(new.g), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("variant", ["feat", "first"])
def test_feature_only_variants_have_no_image_discriminator(variant):
    """`feat` keeps L_p beside the feature GAN; `first` (the patent's first embodiment) is the feature GAN alone."""
    config, task, mesh, state, batch = _gan_task(variant)
    assert set(state.d) == {"feature"} and config.loss.perceptual == (0.0 if variant == "first" else 1.0)
    new, m = trainer.jit_train_step(task, mesh)(state, sharding.to_global(batch, mesh), jax.random.key(1), task.frozen)
    assert "loss/adv_image" not in m and "loss/adv_feature" in m
    assert all(np.isfinite(float(v)) for v in m.values())
    want = config.loss.perceptual * m["loss/perceptual"] + config.loss.adv_feature * m["loss/adv_feature"]
    np.testing.assert_allclose(m["loss/g"], want, rtol=1e-5)


@pytest.mark.mesh_check
def test_four_device_mesh_matches_one_device_for_a_gan_step_and_does_not_retrace():
    r = assert_mesh_matches_one_device("srfeat", "test,gan")
    assert "loss/d_image" in r["metrics_1"] and "loss/d_feature" in r["metrics_1"]


# ----------------------------------------------------------------------------- CLI


CFG = "--config=configs/srfeat.py:test"


def test_stage_1_leaves_its_outputs_and_benchmark_scores(trained):
    m = trained("srfeat.py:test")
    for rel in ("checkpoints/4", "metrics.jsonl", "config.json", "eval/metrics.json", "eval/samples.png"):
        assert os.path.exists(os.path.join(m, rel)), rel
    ev = json.load(open(os.path.join(m, "eval/metrics.json")))
    s = ev["sets"]["builtin"]
    assert ev["scale"] == 4 and s["num_images"] == 1 and s["bicubic"]["psnr"] > 15
    assert s["psnr_gain_over_bicubic"] == pytest.approx(s["model"]["psnr"] - s["bicubic"]["psnr"])
    assert 0 < s["bicubic"]["lpips"] < 1 and s["model"]["lpips"] == pytest.approx(s["images"][0]["model"]["lpips"])


@pytest.mark.slow
def test_stage_2_starts_from_stage_1_through_the_cli(trained, tmp_path):
    m, g = trained("srfeat.py:test"), str(tmp_path / "g")
    # --config.stage=gan as the issue writes it
    p = run_py(["launch.py", CFG, f"--workdir={g}", "--config.stage=gan", f"--config.init_from={m}"])
    assert "initialised from" in p.stderr and "step 4" in p.stderr
    lines = [json.loads(x) for x in open(os.path.join(g, "metrics.jsonl"))]
    assert "loss/adv_feature" in lines[-1] and "loss/d_image" in lines[-1]
    meta = json.load(open(os.path.join(g, "run_metadata.json")))
    assert meta["stage"] == "gan" and meta["vgg_pretrained"] is False and meta["vgg_arch"] == "vgg19"
    assert json.loads(meta["init_from"]) == [m, 4]


@pytest.mark.slow
def test_predict_upscales_any_size_and_errors_name_the_key(trained, tmp_path):
    m = trained("srfeat.py:test")
    from common.data import imageio

    src = str(tmp_path / "small.png")
    imageio.save_png(src, np.random.default_rng(0).random((20, 13, 3)))
    out = str(tmp_path / "big.png")
    run_py(["launch.py", CFG, f"--workdir={m}", "--mode=predict", f"--input={src}", f"--output={out}"])
    assert imageio.load_image(out).shape == (80, 52, 3)

    p = run_py(["launch.py", CFG, f"--workdir={tmp_path / 'x'}", "--config.stage=gan"], check=False)
    assert p.returncode != 0 and "init_from" in p.stderr and "Traceback" not in p.stderr
    p = run_py(
        [
            "launch.py",
            CFG,
            f"--workdir={tmp_path / 'y'}",
            "--config.stage=gan",
            f"--config.init_from={m}",
            "--config.model.channels=12",
        ],
        check=False,
    )
    assert p.returncode != 0 and "does not match" in p.stderr and "Traceback" not in p.stderr


def test_load_run_reads_a_run_and_names_the_setting_when_it_cannot(trained, tmp_path):
    from common.errors import ConfigError
    from common.train import checkpoint

    m = trained("srfeat.py:test")
    run = checkpoint.load_run(m, what="x", method="srfeat", needs=("g", "g_stats"))
    assert run.step == 4 and run.config["method"] == "srfeat" and "block1" in run.state["g"]
    with pytest.raises(ConfigError, match=r"config init_from='nowhere': .* is not a run folder"):
        checkpoint.load_run(str(tmp_path), what="config init_from='nowhere'")
    with pytest.raises(ConfigError, match=r"a 'srfeat' run, not a 'tone' run"):
        checkpoint.load_run(m, what="config eval.inverse_from", method="tone")
    with pytest.raises(ConfigError, match="step 4 of .* has no c$"):
        checkpoint.load_run(m, what="w", needs=("c",))


def _blur_twice(x):
    """A stand-in network with a receptive-field radius of exactly 4: two 5x5 box filters ("SAME", zero pad)."""
    k = jnp.ones((5, 5, 1, 1), jnp.float32) / 25.0
    y = x[..., :1]
    for _ in range(2):
        y = jax.lax.conv_general_dilated(y, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.repeat(y, 3, axis=-1)


def test_tiles_give_the_whole_image_result_where_the_overlap_covers_the_receptive_field():
    from common.quality import evaluation

    img = np.random.default_rng(0).random((37, 53, 3)).astype(np.float32)
    whole = evaluation.padded(_blur_twice, img, 1)
    calls = []

    def counted(x):
        calls.append(x.shape)
        return _blur_twice(x)

    tiled = evaluation.padded(counted, img, 1, tile=8, overlap=4)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    assert len(calls) == 5 * 7 and set(calls) == {(1, 16, 16, 3)}  # one window shape: one compilation
    short = evaluation.padded(_blur_twice, img, 1, tile=8, overlap=3)  # 1 pixel short of the radius
    assert np.abs(short - whole).max() > 1e-3
    # an image no larger than one window goes through whole; tile and overlap round up to the multiple
    np.testing.assert_array_equal(evaluation.padded(_blur_twice, img, 1, tile=40, overlap=8), whole)
    calls.clear()
    evaluation.padded(counted, img, 4, tile=6, overlap=3)  # -> tile 8, overlap 4, on the image padded to 40 x 56
    assert set(calls) == {(1, 16, 16, 3)} and len(calls) == 5 * 7
    calls.clear()  # a side that fits in one window is not cut; the other is cut into equal tiles (53 -> 5 x 11)
    strip = evaluation.padded(counted, img[:12], 1, tile=12, overlap=4)
    np.testing.assert_allclose(strip, evaluation.padded(_blur_twice, img[:12], 1), atol=1e-6)
    assert set(calls) == {(1, 12, 19, 3)} and len(calls) == 5


def test_srfeat_upscales_a_large_image_in_tiles_like_whole():
    """G's receptive-field radius at the test size is 12 LR pixels; an overlap of 16 gives the whole result."""
    from methods.srfeat import evaluate

    c = cfg_mod.get_config("test")
    state = jax.jit(trainer.build_task(c).init)(jax.random.key(0))
    ev = evaluate.Evaluator(c, sm.Nets(c, None).upscale)  # reads c.eval at each call
    img = np.random.default_rng(1).random((70, 90, 3)).astype(np.float32)
    results = {}
    for tile in (0, 32):
        c.eval.update(bucket=8, tile=tile, tile_overlap=16)
        results[tile] = ev.upscale(state, img)
    assert results[0].shape == (280, 360, 3)
    np.testing.assert_allclose(results[32], results[0], atol=2e-5)
