"""`common.train.xla.set_cpu_flags` (called by the entry points, not at import) sets two XLA:CPU flags (the
sequential scheduler, Eigen convolutions), unless the user chose otherwise or jaxlib is a version they were
not checked on."""

import pytest
from conftest import run_py

from common.train import xla

SHOW = ["-c", "import os; from common.train import xla; xla.set_cpu_flags(); print(os.environ['XLA_FLAGS'])"]
SCHEDULER = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
EIGEN = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce"


def _checked(window) -> bool:
    low, high = window
    return low <= xla.jaxlib_version() < high  # a newer jaxlib gets no flag until it is checked


def test_set_cpu_flags_adds_the_flags_and_keeps_the_others():
    flags = run_py(SHOW).stdout.split()
    assert (SCHEDULER in flags) == _checked(xla.CHECKED_JAXLIB)
    assert (EIGEN in flags) == _checked(xla.YNN_CHECKED_JAXLIB)
    assert "--xla_force_host_platform_device_count=1" in flags


def test_importing_the_project_changes_no_process_setting():
    code = "import os, common, common.train.trainer, methods.defocus, launch; print(os.environ['XLA_FLAGS'])"
    assert run_py(["-c", code]).stdout.split() == ["--xla_force_host_platform_device_count=1"]


def test_a_users_own_setting_is_kept():
    mine = "--xla_cpu_enable_concurrency_optimized_scheduler=true --xla_cpu_experimental_ynn_fusion_type=dot"
    assert run_py(SHOW, env={"XLA_FLAGS": mine}).stdout.split() == mine.split()


def test_unchecked_jaxlib_versions_get_no_flag(monkeypatch):
    for flag, value, window in (
        (xla.SCHEDULER_FLAG, "false", xla.CHECKED_JAXLIB),
        (xla.YNN_FLAG, "individual_dot,reduce", xla.YNN_CHECKED_JAXLIB),
    ):
        low, high = window
        for version, added in ((low[0], low[1] - 1), False), (low, True), (high, False), ((1, 0), False):
            monkeypatch.setenv("XLA_FLAGS", "--foo")
            monkeypatch.setattr(xla, "jaxlib_version", lambda v=version: v)
            xla.add_flag(flag, value, window)
            assert (flag in xla.os.environ["XLA_FLAGS"]) == added, (flag, version)


COMPILED = [
    "-c",
    "from common.train import xla; xla.set_cpu_flags()\n"
    "import jax, jax.numpy as jnp; from jax import lax\n"
    "dn = ('NHWC', 'HWIO', 'NHWC')\n"
    "conv = jax.jit(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=dn))\n"
    "dot = jax.jit(lambda a: a @ a)\n"
    "print(conv.lower(jnp.ones((2, 32, 32, 64)), jnp.ones((3, 3, 64, 64))).compile().as_text().count('ynn_fusion'),"
    " dot.lower(jnp.ones((256, 256))).compile().as_text().count('ynn_fusion'))",
]


def test_the_eigen_flag_takes_convolutions_and_only_them_from_ynnpack():
    """The compiled HLO: with the flag set, a convolution is XLA's own op and a matmul still a YNNPACK fusion;
    with YNNPACK's convolutions asked for, the convolution becomes a YNNPACK fusion too."""
    if not _checked(xla.YNN_CHECKED_JAXLIB):
        pytest.skip("the Eigen flag is added on jaxlib 0.10 only")
    conv, dot = map(int, run_py(COMPILED).stdout.split())
    assert conv == 0 and dot > 0, (conv, dot)
    ynn = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce,individual_convolution"
    conv, dot = map(int, run_py(COMPILED, env={"XLA_FLAGS": ynn}).stdout.split())
    assert conv > 0 and dot > 0, (conv, dot)
