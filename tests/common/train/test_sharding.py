"""Processes on one host: read threads and disjoint shares of the cores."""

import os

import jax
import pytest

from common.data import pipeline


def test_read_threads_split_the_cores_between_processes_on_one_host(monkeypatch):
    """Several processes of one run started on this machine (coordinator on a loopback address) share its cores:
    each takes cores // processes, at least 1, unless it was bound to its share (then its affinity is the share).
    A coordinator elsewhere, or named by this host's name (processes on other hosts join it too), leaves the
    count alone (a launcher that shares a host binds each task's affinity itself)."""
    import socket

    import ml_collections

    from common.train import sharding

    config = ml_collections.ConfigDict({"data": {"threads": 0}})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    monkeypatch.setattr(jax, "process_count", lambda: 4)
    for here in ("localhost:1234", "127.0.0.1:1234", "[::1]:1234"):
        monkeypatch.setattr(sharding, "_coordinator", here)
        assert sharding.processes_on_this_host() == 4, here
        assert pipeline.read_threads(config) == 1  # 6 cores // 4 processes
    for elsewhere in ("10.1.2.3:1234", "node-17.cluster:1234", f"{socket.gethostname()}:99", None):
        monkeypatch.setattr(sharding, "_coordinator", elsewhere)
        assert sharding.processes_on_this_host() == 1, elsewhere
        assert pipeline.read_threads(config) == 6
    monkeypatch.setattr(sharding, "_coordinator", "localhost:1234")
    monkeypatch.setattr(sharding, "_pinned", True)
    assert pipeline.read_threads(config) == 6  # the affinity is already this process's share
    monkeypatch.setattr(sharding, "_pinned", False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    assert pipeline.read_threads(config) == 1  # never 0 threads
    monkeypatch.setattr(jax, "process_count", lambda: 1)
    assert pipeline.read_threads(config) == 2


@pytest.mark.parametrize("n_cores,n_proc", [(2, 2), (16, 3), (6, 4), (2, 4), (1, 3), (64, 8)])
def test_processes_on_one_host_get_disjoint_shares_of_its_cores(n_cores, n_proc):
    from common.train import sharding

    cores = set(range(100, 100 + n_cores))
    shares = [sharding.share_of_cores(cores, n_proc, i) for i in range(n_proc)]
    assert all(shares) and set().union(*shares) == cores
    if n_cores >= n_proc:  # disjoint, within one core of each other
        assert sum(map(len, shares)) == n_cores
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    else:  # one core each, spread over all of them
        assert all(len(s) == 1 for s in shares)


def test_binding_to_a_share_happens_only_for_a_loopback_group_on_an_unbound_machine(monkeypatch):
    from common.train import sharding

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: None)
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cores: calls.append(cores), raising=False)
    monkeypatch.setattr(sharding, "_pinned", False)
    monkeypatch.setattr(sharding, "_coordinator", None)
    for affinity, address, want in (
        (set(range(4)), "127.0.0.1:5", [{2, 3}]),
        (set(range(4)), "otherhost:5", []),
        ({0, 1}, "localhost:5", []),  # narrowed already (taskset, cpuset, a launcher): left alone
    ):
        calls.clear()
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, a=affinity: a, raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: 4)
        assert sharding.initialize_distributed(coordinator_address=address, num_processes=2, process_id=1)
        assert calls == want, (affinity, address)
        assert sharding._pinned == bool(want)
        monkeypatch.setattr(sharding, "_pinned", False)
