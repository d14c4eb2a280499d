"""FID: the Fréchet distance against its closed form, and Keras InceptionV3 weights through the converter."""

import functools
import json
import os

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.quality import fid
from common.train import trainer


def test_frechet_distance_matches_the_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    v1, v2 = rng.uniform(0.1, 2, 5), rng.uniform(0.1, 2, 5)
    ref = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert fid.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(ref, rel=1e-6)
    f = rng.normal(size=(50, 4))
    assert fid.frechet_distance(*fid.statistics(f), *fid.statistics(f)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("n1,n2", [(7, 12), (1, 5), (30, 30)])
def test_the_low_rank_feature_distance_equals_the_equation(n1, n2):
    """Fewer images than features: the nuclear-norm form against Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) written out with
    symmetric eigendecompositions ((Σ1Σ2)^½ has the eigenvalues of (Σ1^½ Σ2 Σ1^½)^½)."""
    rng = np.random.default_rng(n1)
    d = 40
    f1, f2 = rng.normal(size=(n1, d)) * rng.uniform(0.2, 2, d), rng.normal(0.3, 1.0, size=(n2, d))
    (mu1, s1), (mu2, s2) = fid.statistics(f1), fid.statistics(f2)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)))
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross
    assert fid.feature_distance(f1, f2) == pytest.approx(ref, rel=1e-6)  # the reference sums ~1e-8 noise roots
    assert fid.feature_distance(f1, f1) == pytest.approx(0.0, abs=1e-9)
    big = rng.normal(size=(d + 5, d))  # more images than features: the sqrtm path
    assert fid.feature_distance(big, f2) == pytest.approx(fid.frechet_distance(*fid.statistics(big), mu2, s2))


def _write_keras_h5(path, params):
    """A file laid out like Keras' InceptionV3 notop weights (TF2 names: conv2d, conv2d_1, ...)."""
    with h5py.File(path, "w") as f:
        for i in range(fid.NUM_LAYERS):
            cname = "conv2d" if i == 0 else f"conv2d_{i}"
            bname = "batch_normalization" if i == 0 else f"batch_normalization_{i}"
            p = params[f"cbn{i}"]
            f.create_group(cname).create_group(cname).create_dataset("kernel:0", data=np.asarray(p["conv"]["kernel"]))
            g = f.create_group(bname).create_group(bname)
            g.create_dataset("beta:0", data=np.asarray(p["beta"]))
            g.create_dataset("moving_mean:0", data=np.asarray(p["mean"]))
            g.create_dataset("moving_variance:0", data=np.asarray(p["var"]) + 0.5)


@functools.cache
def _inception_variables():
    """Random InceptionV3 variables (initialised once per session: the init traces the whole network)."""
    return jax.jit(fid.InceptionV3().init)(jax.random.key(0), jnp.zeros((1, 75, 75, 3)))


def test_keras_weights_convert_load_give_the_same_features_and_score_face_sr(trained, tmp_path):
    """One InceptionV3 init for both halves (it traces the whole network): the converter, then face SR's
    evaluation, which reports FID only when given the converted weights."""
    v = _inception_variables()
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda a: np.asarray(a) + 0.05 * rng.standard_normal(a.shape).astype(np.float32), v["params"])
    _write_keras_h5(tmp_path / "w.h5", params)
    fid.convert(str(tmp_path / "w.h5"), str(tmp_path / "w.npz"))
    loaded = fid.load(str(tmp_path / "w.npz"))
    expect = jax.tree.map(np.asarray, params)
    for i in range(fid.NUM_LAYERS):
        expect[f"cbn{i}"]["var"] = expect[f"cbn{i}"]["var"] + 0.5
    np.testing.assert_array_equal(loaded["params"]["cbn93"]["conv"]["kernel"], expect["cbn93"]["conv"]["kernel"])
    np.testing.assert_array_equal(loaded["params"]["cbn10"]["var"], expect["cbn10"]["var"])
    x = jnp.asarray(rng.random((1, 40, 40, 3)), jnp.float32)
    apply = jax.jit(fid.InceptionV3().apply)
    out = apply(loaded, x)
    assert out.shape == (1, 2048)
    np.testing.assert_allclose(out, apply({"params": expect}, x), rtol=1e-5)
    _face_sr_reports_fid_only_with(str(tmp_path / "w.npz"), trained, tmp_path)
    # a file with a layer missing is a clear error
    with h5py.File(tmp_path / "w.h5", "a") as f:
        del f["conv2d_5"]
    with pytest.raises(fid.WeightsError, match="expected 94 conv2d"):
        fid.convert(str(tmp_path / "w.h5"), str(tmp_path / "bad.npz"))
    with pytest.raises(fid.WeightsError, match="not found"):
        fid.load(str(tmp_path / "nope.npz"))


def _face_sr_reports_fid_only_with(weights, trained, tmp_path):
    from configs import face_sr as cfg_mod

    config = cfg_mod.get_config("test")
    config.eval.train_count = 1
    config.eval.data = "builtin:astronaut+grace_hopper"
    without = json.load(open(os.path.join(trained("face_sr.py:test"), "eval", "metrics.json")))
    assert "not computed" in without["fid"] and "fid" not in without["held_out"]["model"]
    config.eval.inception_weights = weights
    task = trainer.build_task(config)
    with_fid = task.evaluate(jax.jit(task.init)(jax.random.key(0)), str(tmp_path / "eval"))
    # one face per group: a single-sample covariance is 0, so FID reduces to ‖μ_model − μ_truth‖² > 0
    for g in ("train_inputs", "held_out"):
        for k in ("bicubic", "model"):
            assert np.isfinite(with_fid[g][k]["fid"]) and with_fid[g][k]["fid"] >= 0
