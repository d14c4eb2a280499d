"""The compression codec: entropy coding, integer tables, bit-exact round trips, hostile and foreign files."""

import concurrent.futures
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_py

from configs import compression as cc
from methods.compression import bitstream, coding_tables
from methods.compression import codec as mcodec
from methods.compression import model as mc


def _tiny(prior):
    cfg = cc.get_config("test")
    cfg.model.prior = prior
    return cfg


@pytest.mark.parametrize("seed", range(12))
def test_entropy_coding_round_trips_random_latents_and_scale_indices(seed):
    """Random integer tables over ±TAIL, random sub-ranges, symbols anywhere in them (improbable ones too)."""
    rng = np.random.default_rng(seed)
    enc = bitstream.encoder()
    t = coding_tables.TAIL
    c, k, lo = int(rng.integers(1, 6)), int(rng.integers(1, 300)), int(rng.integers(-20, 1))
    hi = lo + int(rng.integers(0, 40))
    tables = np.asarray(coding_tables.quantize_pmf(jnp.asarray(rng.random((c, 2 * t + 1)) ** 40)))
    fsym = rng.integers(lo, hi + 1, (c, k))
    bitstream.encode_factorized(enc, fsym, tables, lo, hi)
    # scale-indexed Gaussian rows: indices 0..63 in random order, symbols from their scales, with outliers
    gauss = np.asarray(coding_tables.finalize(jnp.ones((1, 2 * t + 1)))["gaussian"])
    idx = rng.integers(0, coding_tables.NUM_SCALES, int(rng.integers(1, 500)))
    gsym = np.round(rng.normal(0, coding_tables.scale_table()[idx])).astype(np.int64)
    gsym[:: max(1, len(gsym) // 7)] += int(rng.integers(-30, 30))
    glo, ghi = min(int(gsym.min()), -1), max(int(gsym.max()), 1)
    bitstream.encode_indexed(enc, gsym, idx, gauss, glo, ghi)
    dec = bitstream.decoder(enc.get_compressed())
    np.testing.assert_array_equal(bitstream.decode_factorized(dec, k, tables, lo, hi), fsym)
    np.testing.assert_array_equal(bitstream.decode_indexed(dec, idx, gauss, glo, ghi), gsym)
    assert dec.maybe_exhausted()
    with pytest.raises(ValueError, match="outside the coded range"):
        bitstream.encode_factorized(bitstream.encoder(), fsym + (hi - lo + 1), tables, lo, hi)


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


def test_mean_scale_prior_codes_round_y_minus_fixed_point_means(codecs):
    """The mean-scale h_s in fixed point ≈ the float network's (σ, μ); μ̂ lies on the 2^-FRAC_BITS grid; the codec's
    symbols are round(y − μ̂) and f_d decodes symbols + μ̂; training's likelihood is N(μ, σ) of y + u (numpy)."""
    from scipy.stats import norm

    cd = codecs["meanscale"]
    params = jax.tree.map(lambda a: a * 3.0, cd.params)
    z = np.random.default_rng(0).integers(-4, 5, (1, 3, 5, cd.model.n)).astype(np.int32)
    med = np.asarray(cd.model.apply({"params": params}, method=lambda m: m.entropy_z.medians()))
    zhat = jnp.asarray(z + med)
    want = np.asarray(cd.model.apply({"params": params}, zhat, method=lambda m, v: m.h_s(v)))
    got = coding_tables.fixed_point_scales(params["h_s"], med, z, means=True)
    assert got.shape == want.shape == (1, 12, 20, 2 * cd.model.m)
    np.testing.assert_allclose(got, want, atol=0.01 * max(1.0, float(np.abs(want).max())))
    assert (want[..., cd.model.m :] < 0).any()  # μ is signed: no ReLU on the last layer
    _, mu = coding_tables.scale_indices_and_means(params["h_s"], med, z, cd.tables["thresholds"])
    np.testing.assert_array_equal(mu * 2**coding_tables.FRAC_BITS, np.round(mu * 2**coding_tables.FRAC_BITS))

    img = np.random.default_rng(5).random((64, 64, 3)).astype(np.float32)
    syms = cd.symbols(img)
    y = np.asarray(cd.model.apply({"params": cd.params}, jnp.asarray(img[None]), method=mc.Compressor.symbols)["y"])
    _, mu = cd.indices_and_means(syms["z"])
    np.testing.assert_array_equal(syms["y"], np.round(y - mu))
    np.testing.assert_array_equal(cd.latent(syms), (syms["y"] + mu).astype(np.float32))
    dec, _, _ = cd.decode_symbols(cd.encode_bytes(img))
    np.testing.assert_array_equal(dec["mu"], mu)

    out = cd.model.apply({"params": cd.params}, jnp.asarray(img[None]), rngs={"noise": jax.random.key(1)})
    # recompute σ, μ from the same noisy z through the float network and compare the likelihood with scipy
    yt = np.asarray(out["y"] + out["noise"], np.float64)
    lik = np.asarray(out["likelihoods"]["y"], np.float64)
    sig_mu = cd.model.apply(
        {"params": cd.params}, jnp.asarray(img[None]), rngs={"noise": jax.random.key(1)}, method=_sigma_mu
    )
    s = np.maximum(np.asarray(sig_mu[0], np.float64), 0.11)
    v = np.abs(yt - np.asarray(sig_mu[1], np.float64))
    np.testing.assert_allclose(
        lik, np.maximum(norm.cdf((0.5 - v) / s) - norm.cdf((-0.5 - v) / s), 1e-9), rtol=1e-4, atol=1e-7
    )


def _sigma_mu(m, x):
    """(σ, μ) of the training forward pass, drawing the noise in the same order as Compressor.__call__."""
    y = m.g_a(x - m.dc(x))
    m.make_rng("noise")  # u of y
    z = m.h_a(y)
    z_tilde = z + jax.random.uniform(m.make_rng("noise"), z.shape, z.dtype, -0.5, 0.5)
    return m._gaussian_params(z_tilde)


@pytest.fixture(scope="module")
def codecs():
    out = {}
    for prior in ("hyperprior", "meanscale", "factorized"):
        cfg = _tiny(prior)
        nets = mc.Nets(cfg)
        out[prior] = mcodec.Codec(nets.model, mc.init_state(jax.random.key(0), nets, cfg).params)
    return out


@pytest.mark.parametrize("prior", ["hyperprior", "meanscale", "factorized"])
def test_decode_of_encode_is_bit_identical_at_odd_sizes(codecs, prior):
    cd = codecs[prior]
    for h, w in [(37, 53), (64, 64), (70, 17)]:
        img = np.random.default_rng(h).random((h, w, 3)).astype(np.float32)
        blob, recon, est_bits = cd.encode(img)
        assert recon.shape == (h, w, 3) and recon.dtype == np.uint8
        np.testing.assert_array_equal(cd.decode(blob), recon)
        np.testing.assert_array_equal(cd.roundtrip(img), recon)
        assert est_bits > 0 and len(blob) > bitstream.HEADER_BYTES


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
        with pytest.raises(bitstream.CodecError, match=what.strip()) as e:
            cd.decode(bad, "photo.rjx")
        assert "photo.rjx" in str(e.value)
    with pytest.raises(bitstream.CodecError, match="another model"):
        codecs["factorized"].decode(blob, "photo.rjx")
    other = mcodec.Codec(cd.model, jax.tree.map(lambda a: a * 1.01, cd.params))
    with pytest.raises(bitstream.CodecError, match="another model"):
        other.decode(blob, "photo.rjx")


def _forge(blob: bytes, **changes) -> bytes:
    """The file with header fields changed and the CRC recomputed (what a forger does)."""
    import struct
    import zlib

    fields = dict(zip(bitstream.HEADER_FIELDS, bitstream._HEADER.unpack_from(blob), strict=True))
    body = changes.pop("body", blob[bitstream.HEADER_BYTES :])
    fields.update(changes, nbytes=len(body))
    head = bitstream._HEADER.pack(*list(fields.values())[:-1], 0)[:-4]
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
        "latent symbols announced": _forge(blob, height=4000, width=4000, body=blob[bitstream.HEADER_BYTES :][:4]),
        "z symbol range ": _forge(blob, z_lo=-(10**6), z_hi=10**6),
        "this decoder takes ": _forge(blob, height=0, width=96),
        "must contain": _forge(blob, y_lo=0, y_hi=0),
        "does not end": _forge(blob, body=words),
    }
    for what, bad in cases.items():
        with pytest.raises(bitstream.CodecError, match=what.strip()) as e:
            cd.decode(bad, "forged.rjx")
        assert "forged.rjx" in str(e.value)
    assert np.array_equal(cd.decode(_forge(blob)), cd.decode(blob))  # re-packing alone changes nothing


def test_encoder_refuses_latents_beyond_the_format():
    with pytest.raises(bitstream.CodecError, match="beyond the codable"):
        bitstream.check_symbols(np.array([0, bitstream.SYMBOL_LIMIT + 1]), "image 4x4, y")


def test_fuzzed_bitstreams_give_a_codec_error_or_an_image_never_a_crash():
    """500 seeded mutations (bytes, forged fields with the CRC recomputed, truncations, concatenations)."""
    p = run_py(["tests/helpers/codec_fuzz.py", "500"], timeout=600)
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
    run_py(["tests/helpers/codec_portability.py", "encode", str(tmp_path)])
    with concurrent.futures.ThreadPoolExecutor(len(SETTINGS)) as pool:  # three processes, side by side
        runs = {
            name: pool.submit(
                run_py,
                ["tests/helpers/codec_portability.py", "decode", str(tmp_path)],
                # compiled afresh under each setting, never taken from the session's persistent cache
                env={**env, "JAX_ENABLE_COMPILATION_CACHE": "false"},
                devices=4 if name.startswith("plain") else 1,
            )
            for name, env in SETTINGS.items()
        }
        results = {name: json.loads(run.result().stdout.strip().splitlines()[-1]) for name, run in runs.items()}
    plain = results["plain, 4 devices"]
    files = [k for k in plain if k.endswith(".rjx")]
    assert len(files) == 6 and plain["devices"] == 4 and results["bf16 matmuls"]["precision"] == "bfloat16"
    for name, r in results.items():
        for f in files:
            assert r[f]["symbols"] == plain[f]["symbols"], (name, f)
            a, b = r[f]["image"], plain[f]["image"]
            if a is not None:
                assert np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= 8, (name, f)


def test_old_bitstream_versions_are_a_clear_error(codecs):
    blob = codecs["factorized"].encode_bytes(np.random.default_rng(0).random((16, 16, 3)).astype(np.float32))
    with pytest.raises(bitstream.CodecError, match=r"bitstream version 2; this code reads versions 3-4"):
        codecs["factorized"].decode(_forge(blob, version=2), "old.rjx")
    # version 3 (same layout, no mean-scale prior) still reads; a mean-scale id in a version 3 header does not
    np.testing.assert_array_equal(
        codecs["factorized"].decode(_forge(blob, version=3)), codecs["factorized"].decode(blob)
    )
    ms = codecs["meanscale"].encode_bytes(np.random.default_rng(0).random((16, 16, 3)).astype(np.float32))
    with pytest.raises(bitstream.CodecError, match=r"unknown entropy model id 2 in a version 3 header"):
        codecs["meanscale"].decode(_forge(ms, version=3), "v3.rjx")


def test_mean_removal_codes_the_mean_colour_exactly(codecs):
    """μ̂ = round(255·mean)/255 per channel (numpy), the codec's f_e sees x − μ̂, and f_d's output is re-centred on μ̂."""
    cd = codecs["hyperprior"]
    assert cd.model.mean_removal
    img = (np.random.default_rng(3).random((64, 64, 3)) * [0.3, 0.6, 0.2] + [0.1, 0.3, 0.5]).astype(np.float32)
    syms = cd.symbols(img)
    want = np.round(img.reshape(-1, 3).astype(np.float64).mean(0) * 255)
    np.testing.assert_array_equal(syms["dc"][0], want)

    def apply(method, *args):
        return np.asarray(cd.model.apply({"params": cd.params}, *map(jnp.asarray, args), method=method))

    x = apply(mc.Compressor.decode_symbols, syms["y"], syms["dc"])
    np.testing.assert_allclose(x[0].reshape(-1, 3).mean(0), want / 255, atol=1e-5)
    y = apply(lambda m, v: m.g_a(v), (img[None] - want / 255).astype(np.float32))
    np.testing.assert_array_equal(apply(mc.Compressor.latent, syms["y"]), np.round(y))
    header, _ = bitstream.unpack(cd.encode_bytes(img))
    assert header.dc == tuple(int(v) for v in want)


def test_mean_colour_field_is_checked(codecs):
    """A mean colour beyond 24 bits, or one for a model without mean removal, is a CodecError; the flag is in the id."""
    cd = codecs["factorized"]
    blob = cd.encode_bytes(np.random.default_rng(0).random((16, 16, 3)).astype(np.float32))
    with pytest.raises(bitstream.CodecError, match="mean colour field"):
        cd.decode(_forge(blob, dc=2**24), "dc.rjx")
    bare = mcodec.Codec(cd.model.clone(mean_removal=False), cd.params)
    assert bare.id != cd.id
    blob = bare.encode_bytes(np.random.default_rng(0).random((16, 16, 3)).astype(np.float32))
    assert bitstream.unpack(blob)[0].dc == (0, 0, 0)
    with pytest.raises(bitstream.CodecError, match="without mean removal"):
        bare.decode(_forge(blob, dc=0x102030), "dc.rjx")


def test_tiled_decoding_matches_whole_decoding_and_bounds_the_window(monkeypatch):
    """A latent grid wider than a decode window is decoded window by window: every f_d call sees at most
    tile + 2·overlap pixels a side, and the stitched image equals the whole-image decoding to within one
    8-bit level (float rounding in the mean colour), on all but a handful of pixels."""
    from methods.compression import model as mc

    cfg = cc.get_config("test")
    nets = mc.Nets(cfg)
    params = mc.init_state(jax.random.key(0), nets, cfg).params
    rng = np.random.default_rng(0)
    img = np.clip(rng.random((200, 330, 3)) * 0.3 + np.linspace(0, 0.7, 330)[None, :, None], 0, 1).astype(np.float32)
    whole = mcodec.Codec(nets.model, params, decode_tile=0)
    tiled = mcodec.Codec(nets.model, params, decode_tile=64, decode_overlap=64, whole_pixels=0)
    syms = whole.symbols(img)
    shapes = []
    real = tiled._synthesis
    tiled._synthesis = lambda p, window: (shapes.append(window.shape), real(p, window))[1]
    a, b = whole.reconstruct(syms, 200, 330), tiled.reconstruct(syms, 200, 330)
    assert len(shapes) > 4 and max(max(s[1:3]) for s in shapes) <= (64 + 2 * 64) // 16
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
    blob = tiled.encode_bytes(img)  # the file decodes the same either way
    np.testing.assert_array_equal(tiled.decode(blob), b)


@pytest.mark.parametrize("prior", ["hyperprior", "meanscale"])
def test_tiled_encoding_matches_whole_encoding_and_bounds_the_window(prior):
    """An image wider than an encode window goes through f_e window by window: every call sees at most
    tile + 2·overlap pixels a side, and the symbols equal the whole-image ones but for rare float-rounding
    flips of one step; the file decodes to its own in-process reconstruction."""
    cfg = _tiny(prior)
    nets = mc.Nets(cfg)
    params = mc.init_state(jax.random.key(0), nets, cfg).params
    params = jax.tree.map(lambda a: a * 3.0, params)  # latents of several steps, not all zero
    rng = np.random.default_rng(0)
    img = np.clip(rng.random((200, 330, 3)) * 0.3 + np.linspace(0, 0.7, 330)[None, :, None], 0, 1).astype(np.float32)
    whole = mcodec.Codec(nets.model, params, encode_tile=0)
    tiled = mcodec.Codec(nets.model, params, encode_tile=64, encode_overlap=64, whole_pixels=0)
    shapes = []
    real = tiled._analysis
    tiled._analysis = lambda p, window, dc: (shapes.append(window.shape), real(p, window, dc))[1]
    a, b = whole.symbols(img), tiled.symbols(img)
    assert len(shapes) > 4 and max(max(s[1:3]) for s in shapes) <= 64 + 2 * 64
    np.testing.assert_array_equal(a["dc"], b["dc"])
    assert a["y"].shape == b["y"].shape and (a["y"] != 0).mean() > 0.1
    for k in ("y", "z"):
        diff = np.abs(a[k].astype(int) - b[k].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 2e-3, (k, diff.max(), (diff > 0).mean())
    blob, recon, _ = tiled.encode(img)
    np.testing.assert_array_equal(tiled.decode(blob), recon)
