"""Learned compression (patent 004): losses against numpy, entropy models, the train step, SIC helpers, CLI."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_mesh_matches_one_device, copy_run, run_py
from scipy.stats import norm

from common.errors import ConfigError
from configs import compression as cc
from methods.compression import bitstream, entropy, report
from methods.compression import evaluate as ce
from methods.compression import model as mc

# ----------------------------------------------------------------------------- numpy transcriptions


def np_softplus(x):
    return np.logaddexp(0.0, x)


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_factorized_likelihood(p, y):
    """Ballé 2017's density, channel by channel, written out: P = |σ(s·F(y+½)) − σ(s·F(y−½))|."""
    c = y.shape[-1]
    n_layers = len([k for k in p if k.startswith("matrix")])
    out = np.empty_like(y, dtype=np.float64)
    for ch in range(c):
        v = y[..., ch].reshape(-1).astype(np.float64)

        def logit_cdf(t, ch=ch):
            h = t[None, :]  # (1, N)
            for i in range(n_layers):
                h = np_softplus(np.asarray(p[f"matrix{i}"][ch], np.float64)) @ h + np.asarray(p[f"bias{i}"][ch])
                if i < n_layers - 1:
                    h = h + np.tanh(np.asarray(p[f"factor{i}"][ch])) * np.tanh(h)
            return h[0]

        lo, up = logit_cdf(v - 0.5), logit_cdf(v + 0.5)
        s = -np.sign(lo + up)
        out[..., ch] = np.abs(np_sigmoid(s * up) - np_sigmoid(s * lo)).reshape(y.shape[:-1])
    return np.maximum(out, 1e-9)


def np_gaussian_likelihood(y, scales):
    s = np.maximum(scales, 0.11)
    return np.maximum(norm.cdf((0.5 - np.abs(y)) / s) - norm.cdf((-0.5 - np.abs(y)) / s), 1e-9)


def _random_prior_params(c, seed=0):
    """A FactorizedPrior's params with non-trivial (random) values everywhere."""
    prior = entropy.FactorizedPrior(c)
    p = prior.init(jax.random.key(seed), jnp.zeros((1, 2, 2, c)))["params"]
    rng = np.random.default_rng(seed)
    return prior, jax.tree.map(lambda a: jnp.asarray(a + 0.3 * rng.standard_normal(a.shape), jnp.float32), p)


def test_factorized_rate_matches_numpy():
    prior, p = _random_prior_params(5)
    y = np.random.default_rng(1).normal(0, 3, (2, 4, 3, 5)).astype(np.float32)
    lik = np.asarray(prior.apply({"params": p}, jnp.asarray(y)))
    ref = np_factorized_likelihood(p, y)
    np.testing.assert_allclose(lik, ref, rtol=2e-4, atol=1e-8)
    # L_R = −Σ log₂ p(ŷ) / (H·W), per example, for a 16x12 image (latent 4x3 at stride 4 here)
    rate = np.asarray(mc.rate_loss({"y": jnp.asarray(lik)}, 16 * 12))
    np.testing.assert_allclose(rate, -np.log2(ref).sum(axis=(1, 2, 3)) / 192, rtol=1e-4)


def test_hyperprior_rate_matches_numpy():
    rng = np.random.default_rng(2)
    y = rng.normal(0, 2, (2, 3, 4, 6)).astype(np.float32)
    scales = np.abs(rng.normal(0, 2, y.shape)).astype(np.float32)  # some below the 0.11 bound
    lik_y = np.asarray(entropy.gaussian_likelihood(jnp.asarray(y), jnp.asarray(scales)))
    np.testing.assert_allclose(lik_y, np_gaussian_likelihood(y, scales), rtol=1e-4, atol=1e-9)
    prior, p = _random_prior_params(4, seed=3)
    z = rng.normal(0, 2, (2, 1, 2, 4)).astype(np.float32)
    lik_z = np.asarray(prior.apply({"params": p}, jnp.asarray(z)))
    rate = np.asarray(mc.rate_loss({"y": jnp.asarray(lik_y), "z": jnp.asarray(lik_z)}, 48 * 64))
    ref = (
        -np.log2(np_gaussian_likelihood(y, scales)).sum(axis=(1, 2, 3))
        - np.log2(np_factorized_likelihood(p, z)).sum(axis=(1, 2, 3))
    ) / (48 * 64)
    np.testing.assert_allclose(rate, ref, rtol=1e-4)


def test_distortion_and_feature_identity_losses_match_numpy():
    rng = np.random.default_rng(4)
    a, b = rng.random((3, 8, 8, 3)).astype(np.float32), rng.random((3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(mc.distortion_loss(a, b), ((a - b) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)
    f0, f1 = rng.normal(size=(3, 2, 2, 5)).astype(np.float32), rng.normal(size=(3, 2, 2, 5)).astype(np.float32)
    d = (f0 - f1).reshape(3, -1)
    np.testing.assert_allclose(mc.feature_identity_loss(f0, f1, "mse"), (d**2).mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(mc.feature_identity_loss(f0, f1, "l2"), np.linalg.norm(d, axis=1), rtol=1e-5)


def test_ms_ssim_distortion_trains_with_compressais_lambdas_and_needs_five_scales():
    """loss.distortion=ms_ssim: L_D = 1 − MS-SSIM (the metric, tested against numpy in test_metrics), with a
    finite gradient even where a contrast term is negative; its λ is CompressAI's MS-SSIM table; the total
    is rate + λ·L_D; crops too small for five scales are a config error naming data.crop."""
    rng = np.random.default_rng(5)
    a = jnp.asarray(rng.random((2, 176, 176, 3)), jnp.float32)
    b = jnp.asarray(1.0 - np.asarray(a), jnp.float32)  # anti-correlated: negative contrast terms
    from common.quality import metrics

    np.testing.assert_allclose(mc.distortion_loss(a, a[::-1], "ms_ssim"), 1 - metrics.ms_ssim(a, a[::-1]), 1e-6)
    grad = jax.grad(lambda x: mc.distortion_loss(x, b, "ms_ssim").sum())(a)
    assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).max() > 0
    with pytest.raises(ConfigError, match="loss.distortion='ssim'"):
        mc.distortion_loss(a, b, "ssim")
    cfg = cc.get_config("q5,msssim")
    assert cfg.loss.distortion == "ms_ssim" and cfg.loss.lambda1 == 31.73 and cfg.data.crop >= 176
    assert cc.get_config("q1,msssim").loss.lambda1 == 2.40 and cc.get_config("q8,msssim").loss.lambda1 == 220.0
    cfg = cc.get_config("test,msssim")
    cfg.data.crop = 128
    with pytest.raises(ConfigError, match="data.crop=128.*ms_ssim"):
        from methods import compression

        compression.check_config(cfg)
    cfg.data.crop = 192
    nets = mc.Nets(cfg)
    state = mc.init_state(jax.random.key(0), nets, cfg)
    x = jnp.asarray(rng.random((2, 192, 192, 3)), jnp.float32)
    total, (m, x_hat) = mc.losses(state.params, x, jax.random.key(1), nets=nets)
    np.testing.assert_allclose(m["loss/distortion"], np.mean(1 - metrics.ms_ssim(x_hat, x, floor=1e-6)), rtol=1e-5)
    expect = m["loss/rate"] + cfg.loss.lambda1 * m["loss/distortion"] + m.get("loss/feature_identity", 0.0)
    np.testing.assert_allclose(m["loss/total"], expect, rtol=1e-5)
    mse = float(np.mean((np.asarray(x_hat) - np.asarray(x)) ** 2))
    np.testing.assert_allclose(m["train/psnr"], -10 * np.log10(mse), rtol=1e-4)


def test_gdn_matches_numpy_and_igdn_inverts_it():
    x = np.random.default_rng(5).normal(size=(1, 3, 3, 4)).astype(np.float32)
    gdn = entropy.GDN()
    p = gdn.init(jax.random.key(0), x)["params"]
    rng = np.random.default_rng(6)
    p = {
        "beta": p["beta"] + 0.2 * np.abs(rng.normal(size=4)),
        "gamma": p["gamma"] + 0.1 * np.abs(rng.normal(size=(4, 4))),
    }
    ped = 2.0**-36
    beta = np.maximum(p["beta"], math.sqrt(1e-6 + ped)) ** 2 - ped
    gamma = np.maximum(p["gamma"], 2.0**-18) ** 2 - ped
    ref = x / np.sqrt(beta + np.einsum("...j,ij->...i", x**2, gamma))
    y = np.asarray(gdn.apply({"params": p}, x))
    np.testing.assert_allclose(y, ref, rtol=1e-5)
    igdn = np.asarray(entropy.GDN(inverse=True).apply({"params": p}, x))
    np.testing.assert_allclose(igdn, x * np.sqrt(beta + np.einsum("...j,ij->...i", x**2, gamma)), rtol=1e-5)


# ----------------------------------------------------------------------------- the training step


def _tiny(prior="hyperprior", **loss):
    cfg = cc.get_config("test")
    cfg.model.prior = prior
    cfg.loss.update(loss)
    return cfg


@pytest.mark.parametrize("lambda2", [0.0, 1.0])
def test_total_loss_is_the_weighted_sum_and_fi_uses_the_same_encoder(lambda2):
    cfg = _tiny(lambda1=100.0, lambda2=lambda2)
    nets = mc.Nets(cfg)
    state = mc.init_state(jax.random.key(0), nets, cfg)
    x = jnp.asarray(np.random.default_rng(7).random((2, 64, 64, 3)), jnp.float32)
    key = jax.random.key(3)
    total, (m, x_hat) = mc.losses(state.params, x, key, nets=nets)
    expect = m["loss/rate"] + 100.0 * m["loss/distortion"] + lambda2 * m.get("loss/feature_identity", 0.0)
    np.testing.assert_allclose(m["loss/total"], expect, rtol=1e-5)
    np.testing.assert_allclose(total, m["loss/total"] + m["loss/aux"], rtol=1e-5)
    assert ("loss/feature_identity" in m) == bool(lambda2)
    if lambda2:
        # F0 − F1 = f_e(I0) − f_e(f_rc(x̂)): recomputed by hand with the same encoder parameters
        g_a = lambda im: nets.model.apply({"params": state.params}, im, method=mc.Compressor.analysis)  # noqa: E731
        i1 = np.round(np.clip(np.asarray(x_hat), 0, 1) * 255) / 255
        ref = np.mean((np.asarray(g_a(x)) - np.asarray(g_a(jnp.asarray(i1, jnp.float32)))) ** 2)
        np.testing.assert_allclose(m["loss/feature_identity"], ref, rtol=1e-3)


def test_fi_switches_follow_the_test_time_chain():
    """fi_quant='ste': F0 and F1 are the rounded latents ('center': F0 rounded, F1 not); fi_passes=2
    adds ‖F0 − F2‖ after a second pass through
    f_e∘f_rc∘f_d; mixed quantization decodes round(y). Each against a direct recomputation."""
    x = jnp.asarray(np.random.default_rng(7).random((2, 64, 64, 3)), jnp.float32)
    key = jax.random.key(3)
    base = _tiny(lambda1=100.0, lambda2=1.0)
    nets = mc.Nets(base)
    params = mc.init_state(jax.random.key(0), nets, base).params
    apply = lambda method, *a: nets.model.apply({"params": params}, *a, method=method)  # noqa: E731
    g_a = lambda im: np.asarray(apply(mc.Compressor.analysis, jnp.asarray(im, jnp.float32)))  # noqa: E731
    f_rc = lambda v: np.round(np.clip(np.asarray(v), 0, 1) * 255) / 255  # noqa: E731

    ste = _tiny(lambda1=100.0, lambda2=1.0, fi_quant="ste", fi_passes=2)
    _, (m, x_hat) = mc.losses(params, x, key, nets=mc.Nets(ste))
    f0 = np.round(g_a(x))
    i1 = f_rc(x_hat)
    f1 = np.round(g_a(i1))
    i2 = f_rc(apply(mc.Compressor.decode_latent, jnp.asarray(f1), x))
    f2 = np.round(g_a(i2))
    want = (np.mean((f0 - f1) ** 2) + np.mean((f0 - f2) ** 2)) / 2
    np.testing.assert_allclose(m["loss/feature_identity"], want, rtol=1e-4, atol=1e-6)

    # 'center': F0 = ŷ, I1 decoded from ŷ, F1 = f_e(I1) unrounded (the re-encoding pulled to ŷ's bin centre)
    center = _tiny(lambda1=100.0, lambda2=1.0, fi_quant="center")
    _, (m, _) = mc.losses(params, x, key, nets=mc.Nets(center))
    i1 = f_rc(apply(mc.Compressor.decode_latent, jnp.asarray(f0), x))
    np.testing.assert_allclose(m["loss/feature_identity"], np.mean((f0 - g_a(i1)) ** 2), rtol=1e-4, atol=1e-6)

    mixed = _tiny(lambda1=100.0, lambda2=0.0)
    mixed.model.mixed_quantization = True
    mixed_nets = mc.Nets(mixed)
    _, (_, x_hat) = mc.losses(params, x, key, nets=mixed_nets)
    decoded = apply(mc.Compressor.decode_latent, jnp.round(jnp.asarray(g_a(x))), x)
    np.testing.assert_allclose(np.asarray(x_hat), np.asarray(decoded), atol=1e-5)
    with pytest.raises(ConfigError, match="loss.fi_quant='round'"):
        mc.losses(params, x, key, nets=mc.Nets(_tiny(lambda2=1.0, fi_quant="round")))


def test_quantiles_are_trained_only_by_the_aux_loss_in_their_own_partition():
    cfg = _tiny("factorized")
    cfg.optim.aux_lr = 0.0
    nets = mc.Nets(cfg)
    state = mc.init_state(jax.random.key(0), nets, cfg)
    batch = {"image": jnp.asarray(np.random.default_rng(8).random((2, 64, 64, 3)), jnp.float32)}
    new, _ = mc.train_step(state, batch, jax.random.key(1), None, nets=nets)
    flat0 = dict(jax.tree_util.tree_leaves_with_path(state.params))
    changed = {
        jax.tree_util.keystr(k): not np.allclose(v, flat0[k])
        for k, v in jax.tree_util.tree_leaves_with_path(new.params)
    }
    q = [k for k in changed if "quantiles" in k]
    assert q and not any(changed[k] for k in q)  # aux lr 0: quantiles frozen although the aux loss is large
    assert sum(changed.values()) > len(changed) // 2  # the networks moved
    # and the main loss does not reach the quantiles at all
    grads = jax.grad(lambda p: mc.losses(p, batch["image"], jax.random.key(1), nets=nets)[1][0]["loss/total"])(
        state.params
    )
    assert float(jnp.max(jnp.abs(grads["entropy_y"]["quantiles"]))) == 0.0
    cfg.optim.aux_lr, cfg.optim.lr = 1e-2, 0.0
    nets = mc.Nets(cfg)
    state = mc.init_state(jax.random.key(0), nets, cfg)
    new, m = mc.train_step(state, batch, jax.random.key(1), None, nets=nets)
    assert not np.allclose(new.params["entropy_y"]["quantiles"], state.params["entropy_y"]["quantiles"])
    assert np.allclose(new.params["g_a"]["Conv_0"]["kernel"], state.params["g_a"]["Conv_0"]["kernel"])


@pytest.mark.mesh_check
def test_four_device_mesh_matches_one_device():
    assert_mesh_matches_one_device("compression", "test")


def test_mean_color_delta_e_sees_a_cast_and_ignores_texture():
    rng = np.random.default_rng(0)
    img = (rng.random((20, 30, 3)) * 200 + 20).astype(np.uint8)
    shuffled = rng.permutation(img.reshape(-1, 3)).reshape(img.shape)  # same mean colour, other texture
    assert ce.mean_color_delta_e(shuffled, img) < 1e-6
    pink = np.clip(img.astype(int) + [20, 0, 10], 0, 255).astype(np.uint8)
    from skimage import color

    want = np.linalg.norm(
        color.rgb2lab(pink.reshape(-1, 3).mean(0)[None, None] / 255)
        - color.rgb2lab(img.reshape(-1, 3).mean(0)[None, None] / 255)
    )
    assert ce.mean_color_delta_e(pink, img) == pytest.approx(want) and want > 5


def test_block_color_delta_e_sees_local_colour_that_the_mean_hides():
    """Half the image redder, half greener by the same amount: the mean colour is unchanged, the tiles are not."""
    from skimage import color

    img = np.full((32, 64, 3), 128, np.uint8)
    shifted = img.astype(int)
    shifted[:, :32] += [30, -30, 0]
    shifted[:, 32:] += [-30, 30, 0]
    shifted = shifted.astype(np.uint8)
    assert ce.mean_color_delta_e(shifted, img) < 1.0
    tiles = lambda u: color.rgb2lab(u.astype(np.float64).reshape(2, 16, 4, 16, 3).mean((1, 3)) / 255)  # noqa: E731
    want = np.linalg.norm(tiles(shifted) - tiles(img), axis=-1).mean()
    assert ce.block_color_delta_e(shifted, img) == pytest.approx(want) and want > 20
    assert ce.block_color_delta_e(img[:8, :8], img[:8, :8]) == 0.0  # smaller than a tile: the whole image


def test_sic_curve_and_matched_jpeg_quality():
    u8 = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    curve, last = ce.sic_curve(ce.jpeg_fn(50), u8, 4)
    once = ce.jpeg_fn(50)(u8)
    assert len(curve) == 4 and curve[0] == pytest.approx(ce.psnr_u8(once, u8))
    q = ce.matched_quality(u8, ce.jpeg_bpp(u8, 37))
    assert ce.jpeg_bpp(u8, q) == pytest.approx(ce.jpeg_bpp(u8, 37))
    # a schedule alternates its functions: identity then JPEG gives JPEG's PSNR on odd cycles
    curve, _ = ce.sic_curve(None, u8, 2, [lambda a: a, ce.jpeg_fn(50)])
    assert curve[0] == float("inf") and curve[1] == pytest.approx(ce.psnr_u8(once, u8))


def test_jpeg_psnr_at_interpolates_between_the_neighbouring_points():
    rd = [{"bpp": 0.5, "psnr": 29.0}, {"bpp": 0.2, "psnr": 24.0}, {"bpp": 0.3, "psnr": 26.0}]  # any order
    assert ce.jpeg_psnr_at(rd, 0.25) == pytest.approx(25.0)
    assert ce.jpeg_psnr_at(rd, 0.4) == pytest.approx(26.0 + 3.0 * 0.1 / 0.2)
    assert ce.jpeg_psnr_at(rd, 0.2) == pytest.approx(24.0)
    assert ce.jpeg_psnr_at(rd, 0.1) is None and ce.jpeg_psnr_at(rd, 0.6) is None
    rd = [dict(r, block_color_delta_e=r["psnr"] / 10) for r in rd] + [{"bpp": 0.7, "psnr": 31.0}]  # one without
    assert ce.jpeg_psnr_at(rd, 0.25, "block_color_delta_e") == pytest.approx(2.5)
    assert ce.jpeg_psnr_at(rd, 0.6, "block_color_delta_e") is None


# ----------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_train_then_eval_with_a_variable_rate_schedule(trained, tmp_path):
    w = copy_run(trained("compression.py:test"), tmp_path / "fi")
    w2 = trained("compression.py:test,plain,q1,meanscale", "--config.eval_at_end=False")
    for rel in ("checkpoints/4", "metrics.jsonl", "eval/metrics.json", "eval/rd.png", "eval/sic.png", "samples"):
        assert os.path.exists(os.path.join(w, rel)), rel
    p = run_py(["launch.py", "--config=configs/compression.py:test", f"--workdir={w}", "--mode=eval",
                f"--config.eval.variable_with={w2}"])  # fmt: skip
    assert "\r" not in p.stderr and "it/s" not in p.stderr  # no progress bars in a log that is not a terminal
    ev = json.load(open(os.path.join(w, "eval/metrics.json")))
    rd = ev["rd"]
    assert rd["bit_exact_images"] == rd["num_images"] == 1
    assert rd["bpp"] > 0 and rd["estimated_bpp"] > 0 and rd["psnr"] > 0
    assert [p["quality"] for p in ev["jpeg_rd"]] == [10, 50]
    assert np.isfinite(rd["lpips"]) and rd["lpips"] > 0 and rd["images"][0]["lpips"] == rd["lpips"]
    assert ev["jpeg_rd"][0]["lpips"] > ev["jpeg_rd"][1]["lpips"]  # q10 looks worse than q50
    sic = ev["sic"]
    for k in ("model", "jpeg"):
        assert 0 <= sic[k]["lpips_first"] <= sic[k]["lpips_final"] + 0.05, k
    for k in ("model", "jpeg", "shifted", "model_variable", "jpeg_variable"):
        assert len(sic[k]["psnr"]) == 3, k
    assert len(sic["shifted"]["final_psnr_per_shift"]) == 2
    sym = sic["model"]["symbols"]  # the idempotence diagnostics, cycles 2..3
    assert len(sym["symbols_changed"]) == len(sym["symbols_drift"]) == 2 and len(sym["first_1db_cycle"]) == 1
    assert all(0 <= f <= 1 for f in sym["symbols_changed"]) and os.path.getsize(os.path.join(w, "eval/sic_symbols.png"))
    assert all(im["encode_seconds"] > 0 and im["decode_seconds"] > 0 for im in rd["images"])
    assert rd["jpeg_psnr_at_bpp"] == ce.jpeg_psnr_at(ev["jpeg_rd"], rd["bpp"])
    # the report: one row per run with JPEG at the run's rate (or why not), and the plots
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(photos / "a.png")
    other = tmp_path / "plain" / "eval"  # a second evaluated run (its results, as a λ2 = 0 run would write them)
    other.mkdir(parents=True)
    json.dump({**ev, "lambda2": 0.0}, open(other / "metrics.json", "w"))
    table = report.report(
        [w, str(other.parent)], str(tmp_path / "report"), images=str(photos), anchors=("jpeg", "webp")
    )
    row = table.splitlines()[2].split(" | ")
    j = rd["jpeg_psnr_at_bpp"]
    assert row[5] == ("outside the JPEG points" if j is None else f"{j:.2f} ({rd['psnr'] - j:+.2f})")
    assert row[6] == f"{rd['mean_color_delta_e']:.2f}" and row[7].startswith(f"{rd['block_color_delta_e']:.2f}")
    assert table.splitlines()[4].startswith(
        f"| JPEG, matched to {os.path.basename(os.path.normpath(w))} (q "
    )  # whose rate it is
    assert "Bjøntegaard deltas against classical codecs" in table and "vs webp: BD-rate / BD-PSNR" in table
    assert "needs ≥ 2 runs" in table  # each λ2 is a curve of one run here
    assert all(os.path.getsize(tmp_path / "report" / f) > 1000 for f in ("rd.png", "sic.png"))
    reports = sorted(f for f in os.listdir(tmp_path / "report") if f.startswith("compressai_"))
    assert len(reports) == 2 and json.load(open(tmp_path / "report" / reports[0]))["results"]["bpp"]


@pytest.mark.slow
def test_predict_round_trips_files_and_folders_and_refuses_bad_streams(trained, tmp_path):
    w = trained("compression.py:test")
    w2 = trained("compression.py:test,plain,q1,meanscale", "--config.eval_at_end=False")
    src = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((45, 70, 3)) * 255).astype(np.uint8)).save(src)
    cfg = "--config=configs/compression.py:test"
    run_py(["launch.py", cfg, f"--workdir={w}", "--mode=predict", f"--input={src}", f"--output={tmp_path / 'p.rjx'}"])
    run_py(["launch.py", cfg, f"--workdir={w}", "--mode=predict", f"--input={tmp_path / 'p.rjx'}",
            f"--output={tmp_path / 'back.png'}"])  # fmt: skip
    back = np.asarray(Image.open(tmp_path / "back.png"))
    assert back.shape == (45, 70, 3)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray((np.random.default_rng(1).random((33, 20, 3)) * 255).astype(np.uint8)).save(folder / "sub/a.png")
    Image.fromarray((np.random.default_rng(2).random((64, 65, 3)) * 255).astype(np.uint8)).save(folder / "b.jpg")
    run_py(["launch.py", cfg, f"--workdir={w}", "--mode=predict", f"--input={folder}", f"--output={tmp_path / 'rjx'}"])
    assert sorted(os.listdir(tmp_path / "rjx")) == ["b.rjx", "sub"]
    (tmp_path / "rjx" / "stray.jpg").write_bytes((folder / "b.jpg").read_bytes())  # decoded folders skip images
    p = run_py(["launch.py", cfg, f"--workdir={w}", "--mode=predict", f"--input={tmp_path / 'rjx'}",
                f"--output={tmp_path / 'png'}"])  # fmt: skip
    assert "decoding its 2 .rjx file(s); its 1 image(s) are left alone" in p.stderr, p.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "png")) == ["b.png", "sub"]
    assert np.asarray(Image.open(tmp_path / "png/sub/a.png")).shape == (33, 20, 3)
    assert np.asarray(Image.open(tmp_path / "png/b.png")).shape == (64, 65, 3)
    blob = open(tmp_path / "p.rjx", "rb").read()
    (tmp_path / "cut.rjx").write_bytes(blob[: len(blob) // 2])
    p = run_py(["launch.py", cfg, f"--workdir={w}", "--mode=predict", f"--input={tmp_path / 'cut.rjx'}",
                "--output=x.png"], check=False)  # fmt: skip
    assert p.returncode != 0 and "cut.rjx: truncated" in p.stderr and "Traceback" not in p.stderr
    ms = "--config=configs/compression.py:test,plain,q1,meanscale"
    p = run_py(["launch.py", ms, f"--workdir={w2}", "--mode=predict", f"--input={tmp_path / 'p.rjx'}",
                "--output=x.png"], check=False)  # fmt: skip
    assert p.returncode != 0 and "another model" in p.stderr and "Traceback" not in p.stderr
    # the mean-scale model (the second run) codes through the launcher as well; its stream decodes in-process
    from methods.compression.codec import load_codec

    run_py(["launch.py", ms, f"--workdir={w2}", "--mode=predict", f"--input={src}", f"--output={tmp_path / 'm.rjx'}"])
    blob = open(tmp_path / "m.rjx", "rb").read()
    assert bitstream.unpack(blob)[0].prior == "meanscale"
    assert load_codec(w2).decode(blob).shape == (45, 70, 3)
    p = run_py(["launch.py", cfg, f"--workdir={w}", "--mode=predict", f"--input={src}",
                f"--output={tmp_path / 'enc.png'}"], check=False)  # fmt: skip
    assert p.returncode != 0 and "enc.png: this writes a bitstream" in p.stderr and "Traceback" not in p.stderr
    assert not os.path.exists(tmp_path / "enc.png") and not os.path.exists(tmp_path / "enc.png.rjx")


def test_sic_study_scores_groups_of_runs_over_seeds(trained, tmp_path):
    from common.data import imageio
    from methods.compression import sic_study
    from methods.compression.codec import load_codec

    fi = copy_run(trained("compression.py:test"), tmp_path / "fi")
    plain = copy_run(
        trained("compression.py:test,plain,q1,meanscale", "--config.eval_at_end=False"), tmp_path / "plain"
    )
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        imageio.save_image(str(photos / f"p{i}.png"), (rng.random((40, 56, 3)) * 255).astype(np.uint8))
    text = sic_study.study({"plain": [plain], "fi": [fi, fi]}, str(tmp_path / "out"), (str(photos),), 3, 2)
    summary = json.load(open(tmp_path / "out" / "summary.json"))["photos"]
    # the drop is the mean over images of PSNR(cycle 1) - PSNR(cycle 3), as a direct loop computes it
    cd = load_codec(fi)
    drops = []
    for i in range(2):
        u8 = imageio.to_uint8(imageio.load_image(str(photos / f"p{i}.png")))
        curve, _ = ce.sic_curve(cd.roundtrip_u8, u8, 3)
        drops.append(curve[0] - curve[-1])
    fi_rows = summary["groups"]["fi"]
    assert len(fi_rows) == 2 and fi_rows[0]["drop"] == pytest.approx(np.mean(drops), abs=1e-9)
    assert fi_rows[0] == fi_rows[1] | {"run": fi_rows[0]["run"]}  # one run twice: identical scores
    assert "| fi | 2 |" in text and "± 0.00" in text and "| plain | 1 |" in text and "JPEG" in text
    for f in ("sic_photos.png", "samples_photos.png", "table.md"):
        assert os.path.getsize(tmp_path / "out" / f) > 0
    assert os.path.isfile(os.path.join(fi, "eval", "sic_study_photos_3.json"))  # cached per run
    with pytest.raises(ConfigError, match="NAME=RUN"):
        sic_study.parse_groups(["plain"])
    with pytest.raises(ConfigError, match="not a trained run"):
        sic_study.study({"x": [str(photos)]}, str(tmp_path / "o2"), (str(photos),), 3, 2)


@pytest.mark.parametrize("k,s", [(5, 2), (3, 2), (4, 2), (5, 3)])
def test_subpixel_transposed_convolution_is_flaxs_with_the_same_parameters(k, s):
    """networks.ConvTranspose: the parameters flax's nn.ConvTranspose would create (names, shapes, values), and
    its output and gradients to float rounding, computed as a stride-1 convolution to s·s phases."""
    import flax.linen as nn

    from methods.compression.networks import ConvTranspose

    def wrap(make):
        class M(nn.Module):
            @nn.compact
            def __call__(self, x):
                return make()(x)

        return M()

    ref = wrap(lambda: nn.ConvTranspose(6, (k, k), strides=(s, s), padding="SAME"))
    ours = wrap(lambda: ConvTranspose(6, k, s))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 7, 4)), jnp.float32)
    p = ref.init(jax.random.key(1), x)
    jax.tree.map(np.testing.assert_array_equal, p, ours.init(jax.random.key(1), x))
    p = jax.tree.map(lambda v: v + 0.1, p)  # a non-zero bias
    np.testing.assert_allclose(ours.apply(p, x), ref.apply(p, x), atol=1e-5)
    assert ours.apply(p, x).shape == (2, 5 * s, 7 * s, 6)

    def loss(m):
        return lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))

    ga, gb = jax.grad(loss(ref), argnums=(0, 1))(p, x), jax.grad(loss(ours), argnums=(0, 1))(p, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4), ga, gb)
