"""common.nn.conv: the im2col weight gradient equals jax.grad of lax's convolution, and the switch works."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_py
from jax import lax

from common.errors import ConfigError
from common.nn import conv

NHWC = ("NHWC", "HWIO", "NHWC")
RNG = np.random.default_rng(0)


def _arrays(n, h, w, ci, co, k):
    x = jnp.asarray(RNG.standard_normal((n, h, w, ci)), jnp.float32)
    kern = jnp.asarray(RNG.standard_normal((k, k, ci, co)) / k, jnp.float32)
    return x, kern


def _loss(f, padding, t, stride=1):
    return lambda x, w: jnp.sum(f(x, w, (stride, stride), padding, dimension_numbers=NHWC) * t)


def _grads(x, w, padding, mode, stride=1):
    """(y, dx, dw) of Σ conv(x, w)·t for a fixed random t, traced afresh under `mode`, and the grad's jaxpr."""
    out = lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=NHWC)
    t = jnp.asarray(np.random.default_rng(1).standard_normal(out.shape), jnp.float32)
    f = jax.grad(_loss(conv.conv_general_dilated, padding, t, stride), argnums=(0, 1))
    with conv.weight_grad(mode):
        y = jax.jit(conv.conv_general_dilated, static_argnums=(2, 3, 6))(x, w, (stride,) * 2, padding, None, None, NHWC)
        return (y, *jax.jit(f)(x, w)), str(jax.make_jaxpr(f)(x, w))


def _im2col(jaxpr: str) -> bool:
    """Whether a jaxpr holds the im2col weight gradient (its chunk loop: a scan, or a while)."""
    return "scan[" in jaxpr or "while[" in jaxpr


def _path(jaxpr: str) -> str:
    """Which implementation a gradient's jaxpr holds: the im2col loop, a matmul only, or XLA's convolution."""
    if _im2col(jaxpr):
        return "im2col"
    return "xla" if "conv_general_dilated" in jaxpr else "matmul"


CASES = [  # n, h, w, C_in, C_out, kernel, stride, padding, the path the rewrite takes
    (2, 7, 9, 5, 4, 3, 1, "SAME", "im2col"),
    (1, 6, 6, 3, 2, 4, 1, "SAME", "im2col"),  # even kernel: asymmetric SAME padding
    (2, 9, 9, 3, 6, 5, 1, ((1, 3), (0, 2)), "im2col"),
    (3, 5, 4, 2, 3, 3, 1, ((0, 0), (2, 1)), "im2col"),
    # strided: gradients through the space-to-depth stride-1 form
    (2, 9, 8, 5, 3, 3, 2, "SAME", "im2col"),
    (2, 10, 10, 4, 3, 4, 2, "SAME", "im2col"),
    (1, 11, 7, 3, 2, 5, 2, "VALID", "im2col"),  # rows and columns no output reads
    (2, 12, 12, 3, 4, 3, 3, ((1, 2), (0, 1)), "im2col"),
    # over 256 input channels (the im2col input transposed by a transpose, not a matmul): plain, and space-to-depth
    (1, 5, 6, 260, 4, 3, 1, "SAME", "im2col"),
    (1, 8, 8, 70, 3, 3, 2, "SAME", "im2col"),
    # 1x1: one matmul over the channels
    (2, 8, 5, 4, 3, 1, 1, "VALID", "matmul"),
    (1, 8, 8, 2, 2, 1, 2, "SAME", "matmul"),
    (2, 7, 6, 3, 5, 1, 3, ((1, 0), (2, 1)), "matmul"),  # padded: zero rows and columns in the output
    # a few output channels (kh·kw·C_out ≤ C_in): a matmul to every tap's outputs, then shifted slices
    (2, 7, 9, 30, 3, 3, 1, "SAME", "matmul"),
    (1, 6, 7, 10, 1, 3, 1, ((0, 2), (1, 1)), "matmul"),
    (2, 8, 8, 60, 2, 5, 1, "VALID", "matmul"),
    (1, 6, 6, 16, 1, 4, 1, "SAME", "matmul"),  # even kernel
]


def _case_id(c):
    return "x".join(map(str, c[:7])) + f"-{c[7]}"


@pytest.mark.parametrize("case", [c for c in CASES if c[-1] == "im2col"], ids=_case_id)
@pytest.mark.parametrize("chunk_elements", [1 << 20, 100], ids=["one-chunk", "many-chunks"])
def test_im2col_gradients_match_xla(case, chunk_elements, monkeypatch):
    monkeypatch.setattr(conv, "_CHUNK_ELEMENTS", chunk_elements)
    _check_against_xla(case)


@pytest.mark.parametrize("case", [c for c in CASES if c[-1] == "matmul"], ids=_case_id)
def test_matmul_convolutions_match_xla(case):
    _check_against_xla(case)


def _check_against_xla(case):
    *shape, stride, padding, path = case
    x, w = _arrays(*shape)
    got, jaxpr = _grads(x, w, padding, "im2col", stride)
    want, ref_jaxpr = _grads(x, w, padding, "xla", stride)
    assert (_path(jaxpr), _path(ref_jaxpr)) == (path, "xla"), "the modes did not select the two implementations"
    for name, a, b in zip(("y", "dx", "dw"), got, want, strict=True):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()), err_msg=name
        )


def test_weight_gradient_matches_the_equation():
    """dW[i, j] = Σ_{n,r,c} x_pad[n, r+i, c+j, :]ᵀ g[n, r, c, :], written out in numpy (float64)."""
    x, w = _arrays(2, 6, 7, 3, 4, 3)
    pads = ((1, 1), (2, 0))
    g = RNG.standard_normal((2, 6, 7, 4))
    got = np.asarray(conv.weight_gradient(x, jnp.asarray(g, jnp.float32), (3, 3), pads))
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), *pads, (0, 0)))
    want = np.zeros((3, 3, 3, 4))
    for i in range(3):
        for j in range(3):
            for r in range(6):
                for c in range(7):
                    want[i, j] += np.einsum("nk,no->ko", xp[:, r + i, c + j], g[:, r, c])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_auto_uses_im2col_on_cpu_for_large_convolutions_only_when_ynnpack_runs_them(monkeypatch):
    def traced(n, hw, ci, co):  # traced only: no arrays are computed
        x = jax.ShapeDtypeStruct((n, hw, hw, ci), jnp.float32)
        w = jax.ShapeDtypeStruct((3, 3, ci, co), jnp.float32)
        f = _loss(conv.conv_general_dilated, "SAME", jnp.ones((n, hw, hw, co), jnp.float32))
        with conv.weight_grad("auto"):
            return str(jax.make_jaxpr(jax.grad(f, argnums=1))(x, w))

    flag = "--xla_cpu_experimental_ynn_fusion_type"
    monkeypatch.setenv("XLA_FLAGS", f"--foo {flag}=individual_dot,reduce,individual_convolution")
    assert _im2col(traced(12, 64, 128, 128))  # 14.5 GFLOP
    assert not _im2col(traced(4, 32, 128, 128))  # 1.2 GFLOP
    assert not _im2col(traced(64, 128, 8, 256))  # 7.7 GFLOP but 8 input channels
    monkeypatch.setenv("XLA_FLAGS", "--foo")  # no flag: jaxlib 0.10's default, YNNPACK
    assert _im2col(traced(12, 64, 128, 128))
    for eigen in ("individual_dot,reduce", "dot"):  # the last flag given wins
        monkeypatch.setenv("XLA_FLAGS", f"{flag}=individual_convolution {flag}={eigen}")
        assert not _im2col(traced(12, 64, 128, 128)), eigen


def test_auto_uses_matmuls_for_1x1_and_few_output_convolutions_at_any_size():
    def path(k, ci, co, stride=1):
        x = jax.ShapeDtypeStruct((2, 8, 8, ci), jnp.float32)
        w = jax.ShapeDtypeStruct((k, k, ci, co), jnp.float32)
        f = _loss(conv.conv_general_dilated, "SAME", jnp.ones((2, 8 // stride, 8 // stride, co)), stride)
        with conv.weight_grad("auto"):
            return _path(str(jax.make_jaxpr(jax.grad(f, argnums=(0, 1)))(x, w)))

    assert path(1, 4, 4) == "matmul"
    assert path(1, 8, 16, stride=2) == "matmul"
    assert path(3, 32, 3) == "matmul"  # 27 tap outputs ≤ 32 input channels
    assert path(3, 16, 3) == "xla"  # 27 tap outputs > 16 input channels
    assert path(3, 64, 4) == "xla"  # more than 3 output channels
    assert path(3, 64, 3, stride=2) == "xla"  # strided


def test_thin_convolution_matches_the_equation():
    """y[n, r, c] = Σ_{i,j} x_pad[n, r+i, c+j, :]·W[i, j], written out in numpy (float64)."""
    x, w = _arrays(2, 5, 6, 20, 2, 3)
    pads = ((2, 0), (1, 1))
    got = np.asarray(conv._thin(x, w, pads, None))
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), *pads, (0, 0)))
    want = np.zeros((2, 5, 6, 2))
    for i in range(3):
        for j in range(3):
            want += np.einsum("nrck,ko->nrco", xp[:, i : i + 5, j : j + 6], np.asarray(w, np.float64)[i, j])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_falls_back_where_the_rewrite_does_not_apply():
    x, w = _arrays(2, 8, 8, 4, 4, 3)
    t = jnp.ones((2, 4, 4, 4), jnp.float32)
    for kwargs, arrays in (
        ({"window_strides": (2, 1)}, (x, w)),
        ({"rhs_dilation": (2, 2), "padding": "SAME"}, (x, w)),
        ({}, (x.astype(jnp.bfloat16), w.astype(jnp.bfloat16))),
    ):
        opts = {"window_strides": (1, 1), "padding": ((0, 1), (0, 1)), "dimension_numbers": NHWC, **kwargs}

        def loss(x, w, opts=opts):
            y = conv.conv_general_dilated(x, w, **opts)
            return jnp.sum(y.astype(jnp.float32) * jnp.resize(t, y.shape))

        with conv.weight_grad("im2col"):
            jaxpr = str(jax.make_jaxpr(jax.grad(loss, argnums=1))(*arrays))
        assert not _im2col(jaxpr), kwargs


def test_configure_checks_the_mode():
    import ml_collections

    with pytest.raises(ConfigError, match="conv_weight_grad='fast'"):
        conv.configure(ml_collections.ConfigDict({"conv_weight_grad": "fast"}))
    with pytest.raises(ConfigError, match="conv_weight_grad"):
        with conv.weight_grad("nope"):
            pass


_SHARDED = """
import json, jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from common.nn import conv
from common.train import sharding
mesh = sharding.make_mesh(jax.devices())
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((4, 12, 10, 6)), jnp.float32)
w = jnp.asarray(rng.standard_normal((3, 3, 6, 5)), jnp.float32)
t = jnp.asarray(rng.standard_normal((4, 12, 10, 5)), jnp.float32)
def loss(x, w):
    def f(s):
        return conv.conv_general_dilated(x, w, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum(f(1) * t) + jnp.sum(f(2) * t[:, ::2, ::2])
batch = NamedSharding(mesh, P(mesh.axis_names[0]))
xs, ts = jax.device_put(x, batch), jax.device_put(t, batch)
out = {}
for mode in ("im2col", "xla"):
    with conv.weight_grad(mode):
        f = jax.jit(jax.grad(loss, argnums=(0, 1)))
        dx, dw = f(xs, w)
    out[mode] = (np.asarray(dx), np.asarray(dw))
print(json.dumps({"devices": len(jax.devices()), "sharded": str(dx.sharding.spec),
    "dx": float(np.abs(out["im2col"][0] - out["xla"][0]).max()),
    "dw": float(np.abs(out["im2col"][1] - out["xla"][1]).max()), "scale": float(np.abs(out["xla"][1]).max())}))
"""


def test_im2col_under_a_sharded_batch():
    """Pure under jit and sharding: the batch split over 2 devices gives XLA's gradients (stride 1 and 2)."""
    r = json.loads(run_py(["-c", _SHARDED], devices=2).stdout.strip().splitlines()[-1])
    assert r["devices"] == 2
    assert r["dx"] < 1e-4 and r["dw"] < 1e-5 * r["scale"], r
