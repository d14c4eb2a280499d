"""Importing `common` sets two XLA:CPU flags (the sequential scheduler, Eigen convolutions), unless the user
chose otherwise or jaxlib is a version they were not checked on."""

import pytest
from conftest import run_py

import common

SHOW = ["-c", "import os, common; print(os.environ['XLA_FLAGS'])"]
SCHEDULER = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
EIGEN = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce"


def _checked(window) -> bool:
    low, high = window
    return low <= common._jaxlib_version() < high  # a newer jaxlib gets no flag until it is checked


def test_import_adds_the_flags_and_keeps_the_others():
    flags = run_py(SHOW).stdout.split()
    assert (SCHEDULER in flags) == _checked(common._CHECKED_JAXLIB)
    assert (EIGEN in flags) == _checked(common._YNN_CHECKED_JAXLIB)
    assert "--xla_force_host_platform_device_count=1" in flags


def test_a_users_own_setting_is_kept():
    mine = "--xla_cpu_enable_concurrency_optimized_scheduler=true --xla_cpu_experimental_ynn_fusion_type=dot"
    assert run_py(SHOW, env={"XLA_FLAGS": mine}).stdout.split() == mine.split()


def test_unchecked_jaxlib_versions_get_no_flag(monkeypatch):
    for flag, value, window in (
        (common._SCHEDULER_FLAG, "false", common._CHECKED_JAXLIB),
        (common.YNN_FLAG, "individual_dot,reduce", common._YNN_CHECKED_JAXLIB),
    ):
        low, high = window
        for version, added in ((low[0], low[1] - 1), False), (low, True), (high, False), ((1, 0), False):
            monkeypatch.setenv("XLA_FLAGS", "--foo")
            monkeypatch.setattr(common, "_jaxlib_version", lambda v=version: v)
            common._add_flag(flag, value, window)
            assert (flag in common.os.environ["XLA_FLAGS"]) == added, (flag, version)


COMPILED = [
    "-c",
    "import common, jax, jax.numpy as jnp; from jax import lax\n"
    "dn = ('NHWC', 'HWIO', 'NHWC')\n"
    "conv = jax.jit(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=dn))\n"
    "dot = jax.jit(lambda a: a @ a)\n"
    "print(conv.lower(jnp.ones((2, 32, 32, 64)), jnp.ones((3, 3, 64, 64))).compile().as_text().count('ynn_fusion'),"
    " dot.lower(jnp.ones((256, 256))).compile().as_text().count('ynn_fusion'))",
]


def test_the_eigen_flag_takes_convolutions_and_only_them_from_ynnpack():
    """The compiled HLO: with the flag `common` adds, a convolution is XLA's own op and a matmul still a YNNPACK
    fusion; with YNNPACK's convolutions asked for, the convolution becomes a YNNPACK fusion too."""
    if not _checked(common._YNN_CHECKED_JAXLIB):
        pytest.skip("common adds the Eigen flag on jaxlib 0.10 only")
    conv, dot = map(int, run_py(COMPILED).stdout.split())
    assert conv == 0 and dot > 0, (conv, dot)
    ynn = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce,individual_convolution"
    conv, dot = map(int, run_py(COMPILED, env={"XLA_FLAGS": ynn}).stdout.split())
    assert conv > 0 and dot > 0, (conv, dot)
