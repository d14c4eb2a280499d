"""Importing `common` turns off XLA:CPU's concurrency-optimized scheduler, unless the user chose otherwise."""

from conftest import run_py

import common

SHOW = ["-c", "import os, common; print(os.environ['XLA_FLAGS'])"]


def test_import_adds_the_scheduler_flag_and_keeps_the_others():
    low, high = common._CHECKED_JAXLIB
    checked = low <= common._jaxlib_version() < high  # a newer jaxlib gets no flag until it is checked
    flags = run_py(SHOW).stdout.split()
    assert ("--xla_cpu_enable_concurrency_optimized_scheduler=false" in flags) == checked
    assert "--xla_force_host_platform_device_count=1" in flags


def test_a_users_own_setting_is_kept():
    mine = "--xla_cpu_enable_concurrency_optimized_scheduler=true"
    assert run_py(SHOW, env={"XLA_FLAGS": mine}).stdout.split() == [mine]


def test_unchecked_jaxlib_versions_get_no_flag(monkeypatch):
    for version, added in (((0, 6), False), ((0, 7), True), ((0, 10), True), ((0, 11), False), ((1, 0), False)):
        monkeypatch.setenv("XLA_FLAGS", "--foo")
        monkeypatch.setattr(common, "_jaxlib_version", lambda v=version: v)
        common._sequential_cpu_scheduler()
        assert (common._SCHEDULER_FLAG in common.os.environ["XLA_FLAGS"]) == added, version
