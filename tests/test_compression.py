"""Learned compression (seed 004): losses against numpy, entropy models, the real codec, SIC, CLI."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_mesh_matches_one_device, run_py
from scipy.stats import norm

from common import codec, coding_tables, entropy
from configs import compression as cc
from methods import compression as mc
from methods import compression_eval as ce

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


def test_four_device_mesh_matches_one_device():
    assert_mesh_matches_one_device("compression", "test")


# ----------------------------------------------------------------------------- entropy coding and the codec


@pytest.mark.parametrize("seed", range(12))
def test_entropy_coding_round_trips_random_latents_and_scale_indices(seed):
    """Random integer tables over ±TAIL, random sub-ranges, symbols anywhere in them (improbable ones too)."""
    rng = np.random.default_rng(seed)
    enc = codec.encoder()
    t = coding_tables.TAIL
    c, k, lo = int(rng.integers(1, 6)), int(rng.integers(1, 300)), int(rng.integers(-20, 1))
    hi = lo + int(rng.integers(0, 40))
    tables = np.asarray(coding_tables.quantize_pmf(jnp.asarray(rng.random((c, 2 * t + 1)) ** 40)))
    fsym = rng.integers(lo, hi + 1, (c, k))
    codec.encode_factorized(enc, fsym, tables, lo, hi)
    # scale-indexed Gaussian rows: indices 0..63 in random order, symbols from their scales, with outliers
    gauss = np.asarray(coding_tables.finalize(jnp.ones((1, 2 * t + 1)))["gaussian"])
    idx = rng.integers(0, coding_tables.NUM_SCALES, int(rng.integers(1, 500)))
    gsym = np.round(rng.normal(0, coding_tables.scale_table()[idx])).astype(np.int64)
    gsym[:: max(1, len(gsym) // 7)] += int(rng.integers(-30, 30))
    glo, ghi = min(int(gsym.min()), -1), max(int(gsym.max()), 1)
    codec.encode_indexed(enc, gsym, idx, gauss, glo, ghi)
    dec = codec.decoder(enc.get_compressed())
    np.testing.assert_array_equal(codec.decode_factorized(dec, k, tables, lo, hi), fsym)
    np.testing.assert_array_equal(codec.decode_indexed(dec, idx, gauss, glo, ghi), gsym)
    assert dec.maybe_exhausted()
    with pytest.raises(ValueError, match="outside the coded range"):
        codec.encode_factorized(codec.encoder(), fsym + (hi - lo + 1), tables, lo, hi)


def test_integer_tables_are_exact_distributions():
    """Rows of 2^PRECISION, every symbol ≥ 1, and the Gaussian rows close to the normal mass they quantize."""
    from scipy.stats import norm as gauss

    t = coding_tables.finalize(jnp.asarray(np.random.default_rng(0).random((3, 2 * coding_tables.TAIL + 1))))
    for k in ("factorized", "gaussian"):
        rows = np.asarray(t[k], np.int64)
        assert np.all(rows >= 1) and np.all(rows.sum(-1) == 2**coding_tables.PRECISION), k
    s = coding_tables.scale_table()[20]
    q = np.arange(-5, 6)
    want = gauss.cdf((q + 0.5) / s) - gauss.cdf((q - 0.5) / s)
    got = np.asarray(t["gaussian"][20])[q + coding_tables.TAIL] / 2**coding_tables.PRECISION
    np.testing.assert_allclose(got, want, rtol=1e-3)  # the ≥ 1 floor of the far tails takes 8193 / 2^24 of the mass
    mids = np.sqrt(coding_tables.scale_table()[:-1] * coding_tables.scale_table()[1:])
    np.testing.assert_allclose(np.asarray(t["thresholds"]) / 2**coding_tables.FRAC_BITS, mids, atol=1e-3)


def test_fixed_point_hyper_synthesis_follows_the_float_network(codecs):
    """The integer h_s (host float64 im2col, flax's transposed-conv padding) ≈ the flax h_s, index = nearest scale."""
    cd = codecs["hyperprior"]
    params = jax.tree.map(lambda a: a * 3.0, cd.params)  # larger weights: σ spans more of the scale table
    z = np.random.default_rng(0).integers(-4, 5, (1, 3, 5, cd.model.n)).astype(np.int32)
    want = np.asarray(cd.model.apply({"params": params}, jnp.asarray(z), method=mc.Compressor.scales))
    med = np.asarray(cd.model.apply({"params": params}, method=lambda m: m.entropy_z.medians()))
    got = coding_tables.fixed_point_scales(params["h_s"], med, z)
    np.testing.assert_allclose(np.maximum(got, 0.11), want, atol=0.01 * max(1.0, float(want.max())))
    idx = coding_tables.scale_indices(params["h_s"], med, z, cd.tables["thresholds"])
    table = coding_tables.scale_table()
    nearest = np.argmin(np.abs(np.log(table)[None] - np.log(np.maximum(got, 0.11)).reshape(-1, 1)), axis=1)
    assert np.mean(idx.ravel() == nearest) > 0.99


@pytest.fixture(scope="module")
def codecs():
    out = {}
    for prior in ("hyperprior", "factorized"):
        cfg = _tiny(prior)
        nets = mc.Nets(cfg)
        out[prior] = ce.Codec(nets.model, mc.init_state(jax.random.key(0), nets, cfg).params)
    return out


@pytest.mark.parametrize("prior", ["hyperprior", "factorized"])
def test_decode_of_encode_is_bit_identical_at_odd_sizes(codecs, prior):
    cd = codecs[prior]
    for h, w in [(37, 53), (64, 64), (70, 17)]:
        img = np.random.default_rng(h).random((h, w, 3)).astype(np.float32)
        blob, recon, est_bits = cd.encode(img)
        assert recon.shape == (h, w, 3) and recon.dtype == np.uint8
        np.testing.assert_array_equal(cd.decode(blob), recon)
        np.testing.assert_array_equal(cd.roundtrip(img), recon)
        assert est_bits > 0 and len(blob) > codec.HEADER_BYTES


def test_corrupted_truncated_and_foreign_bitstreams_are_clear_errors(codecs):
    cd = codecs["hyperprior"]
    blob, _, _ = cd.encode(np.random.default_rng(0).random((40, 50, 3)).astype(np.float32))
    cases = {
        "truncated": blob[:-5],
        "truncated header": blob[:10],
        "corrupted": blob[:-3] + bytes([blob[-3] ^ 0x10]) + blob[-2:],
        "corrupted ": blob[:20] + bytes([blob[20] ^ 1]) + blob[21:],  # the height field
        "not a restore-jax": b"\x89PNG\r\n\x1a\n" + blob[8:],
        "version": blob[:4] + bytes([9]) + blob[5:],
        "trailing": blob + b"\0\0\0\0",
    }
    for what, bad in cases.items():
        with pytest.raises(codec.CodecError, match=what.strip()) as e:
            cd.decode(bad, "photo.rjx")
        assert "photo.rjx" in str(e.value)
    with pytest.raises(codec.CodecError, match="another model"):
        codecs["factorized"].decode(blob, "photo.rjx")
    other = ce.Codec(cd.model, jax.tree.map(lambda a: a * 1.01, cd.params))
    with pytest.raises(codec.CodecError, match="another model"):
        other.decode(blob, "photo.rjx")


def _forge(blob: bytes, **changes) -> bytes:
    """The file with header fields changed and the CRC recomputed (what a forger does)."""
    import struct
    import zlib

    names = ("magic", "version", "prior", "id", "height", "width", "y_lo", "y_hi", "z_lo", "z_hi", "nbytes", "crc")
    fields = dict(zip(names, codec._HEADER.unpack_from(blob), strict=True))
    body = changes.pop("body", blob[codec.HEADER_BYTES :])
    fields.update(changes, nbytes=len(body))
    head = codec._HEADER.pack(*list(fields.values())[:-1], 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(head + body)) + body


def test_forged_headers_with_valid_crc_are_clear_errors(codecs):
    """The issue's forged files: each a CodecError naming the file (before any large allocation)."""
    cd = codecs["hyperprior"]
    blob = cd.encode_bytes(np.random.default_rng(0).random((64, 96, 3)).astype(np.float32))
    words = np.random.default_rng(1).integers(0, 2**32, 40, dtype=np.uint64).astype("<u4").tobytes()
    cases = {
        "z symbol range": _forge(blob, z_lo=-(2**31), z_hi=2**31 - 1),
        "y symbol range": _forge(blob, y_lo=-(2**31), y_hi=2**31 - 1),
        "this decoder takes": _forge(blob, height=16000, width=16000),
        "latent symbols announced": _forge(blob, height=4000, width=4000, body=blob[codec.HEADER_BYTES :][:4]),
        "z symbol range ": _forge(blob, z_lo=-(10**6), z_hi=10**6),
        "this decoder takes ": _forge(blob, height=0, width=96),
        "must contain": _forge(blob, y_lo=0, y_hi=0),
        "does not end": _forge(blob, body=words),
    }
    for what, bad in cases.items():
        with pytest.raises(codec.CodecError, match=what.strip()) as e:
            cd.decode(bad, "forged.rjx")
        assert "forged.rjx" in str(e.value)
    assert np.array_equal(cd.decode(_forge(blob)), cd.decode(blob))  # re-packing alone changes nothing


def test_encoder_refuses_latents_beyond_the_format():
    with pytest.raises(codec.CodecError, match="beyond the codable"):
        codec.check_symbols(np.array([0, codec.SYMBOL_LIMIT + 1]), "image 4x4, y")


def test_fuzzed_bitstreams_give_a_codec_error_or_an_image_never_a_crash():
    """500 seeded mutations (bytes, forged fields with the CRC recomputed, truncations, concatenations)."""
    p = run_py(["tests/codec_fuzz.py", "500"], timeout=600)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["bad"] == [] and r["CodecError"] + r["image"] == r["cases"] == 500, r
    assert r["CodecError"] > 400 and r["image"] > 0, r  # both outcomes occur: the mutations reach the decoder


SETTINGS = {
    "plain, 4 devices": {},
    "fast-math, one thread": {
        "XLA_FLAGS": "--xla_cpu_enable_fast_math=true --xla_cpu_multi_thread_eigen=false",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    },
    "bf16 matmuls": {"JAX_DEFAULT_MATMUL_PRECISION": "bfloat16"},
}


def test_bitstreams_decode_to_the_same_symbols_under_other_numerics(tmp_path):
    """Encoded in one process; decoded on 4 devices, with fast-math on one thread, and with bf16 matmuls.

    The entropy decoding (integer tables + fixed-point scale indices) must give the same symbols in every
    case. f_d then runs in floating point, so the pixels are compared too: identical where the synthesis
    numerics are the encoder's, a few 8-bit steps apart at most under fast-math or bf16.
    """
    run_py(["tests/codec_portability.py", "encode", str(tmp_path)])
    results = {}
    for name, env in SETTINGS.items():
        devices = 4 if name.startswith("plain") else 1
        p = run_py(["tests/codec_portability.py", "decode", str(tmp_path)], env=env, devices=devices)
        results[name] = json.loads(p.stdout.strip().splitlines()[-1])
    plain = results["plain, 4 devices"]
    files = [k for k in plain if k.endswith(".rjx")]
    assert len(files) == 4 and plain["devices"] == 4 and results["bf16 matmuls"]["precision"] == "bfloat16"
    for name, r in results.items():
        for f in files:
            assert r[f]["symbols"] == plain[f]["symbols"], (name, f)
            a, b = r[f]["image"], plain[f]["image"]
            if a is not None:
                assert np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= 8, (name, f)


def test_old_bitstream_versions_are_a_clear_error(codecs):
    blob = codecs["factorized"].encode_bytes(np.random.default_rng(0).random((16, 16, 3)).astype(np.float32))
    with pytest.raises(codec.CodecError, match=r"bitstream version 1; this code reads version 2"):
        codecs["factorized"].decode(_forge(blob, version=1), "old.rjx")


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


# ----------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_train_eval_variable_rate_and_predict_round_trip(tmp_path):
    w, w2 = str(tmp_path / "fi"), str(tmp_path / "plain")
    run_py(["launch.py", "--config=configs/compression.py:test", f"--workdir={w}"])
    run_py(
        ["launch.py", "--config=configs/compression.py:test,plain,q1", f"--workdir={w2}", "--config.eval_at_end=False"]
    )
    for rel in ("checkpoints/4", "metrics.jsonl", "eval/metrics.json", "eval/rd.png", "eval/sic.png", "samples"):
        assert os.path.exists(os.path.join(w, rel)), rel
    run_py(["launch.py", "--config=configs/compression.py:test", f"--workdir={w}", "--mode=eval",
            f"--config.eval.variable_with={w2}"])  # fmt: skip
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
    run_py(["launch.py", cfg, f"--workdir={w}", "--mode=predict", f"--input={tmp_path / 'rjx'}",
            f"--output={tmp_path / 'png'}"])  # fmt: skip
    assert np.asarray(Image.open(tmp_path / "png/sub/a.png")).shape == (33, 20, 3)
    assert np.asarray(Image.open(tmp_path / "png/b.png")).shape == (64, 65, 3)
    blob = open(tmp_path / "p.rjx", "rb").read()
    (tmp_path / "cut.rjx").write_bytes(blob[: len(blob) // 2])
    p = run_py(["launch.py", cfg, f"--workdir={w}", "--mode=predict", f"--input={tmp_path / 'cut.rjx'}",
                "--output=x.png"], check=False)  # fmt: skip
    assert p.returncode != 0 and "cut.rjx: truncated" in p.stderr and "Traceback" not in p.stderr
    p = run_py(["launch.py", cfg, f"--workdir={w2}", "--mode=predict", f"--input={tmp_path / 'p.rjx'}",
                "--output=x.png"], check=False)  # fmt: skip
    assert p.returncode != 0 and "another model" in p.stderr and "Traceback" not in p.stderr
