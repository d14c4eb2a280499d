"""Entry points start again with glibc's malloc asking for huge pages for XLA's per-step buffers
(`common.train.hostmem`)."""

import ast
import subprocess
import sys

import pytest
from conftest import ROOT, subprocess_env

from common.train import hostmem

pytestmark = pytest.mark.skipif(
    not hostmem.applies(), reason="needs Linux, glibc 2.35+ and transparent huge pages in madvise mode"
)

# Restarts (or not), then allocates, touches and frees a 256 MiB block twice, as XLA does with a step's temporaries.
# Prints the tunables it ran under, the page faults of the second block and its own arguments.
PROBE = """
import ctypes, os, resource, sys
from common.train import hostmem
hostmem.reexec_with_tunables()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
SIZE = 256 << 20
def step():
    p = libc.malloc(SIZE)
    ctypes.memset(p, 1, SIZE)
    libc.free(p)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step()
print(repr(os.environ.get("GLIBC_TUNABLES")), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, sys.argv[1:])
"""


def probe(**env):
    e = {k: v for k, v in subprocess_env().items() if k not in ("GLIBC_TUNABLES", hostmem.OPT_OUT_ENV)}
    e.update(env)
    args = [sys.executable, "-c", PROBE, "one", "--two=2"]
    p = subprocess.run(args, cwd=ROOT, env=e, capture_output=True, text=True, timeout=120, check=True)
    tunables, faults, argv = p.stdout.strip().split(" ", 2)
    return ast.literal_eval(tunables), int(faults), ast.literal_eval(argv)


# A fresh mmap of 256 MiB each time: 65,536 faults of 4 KiB pages, 128 of 2 MiB ones (a few more where the kernel
# finds no free 2 MiB page and falls back to small ones).
HUGE, SMALL = 4096, 32768


def test_restarted_process_maps_large_blocks_with_huge_pages():
    tunables, faults, argv = probe()
    assert tunables == hostmem.TUNABLES
    assert argv == ["one", "--two=2"]  # the same command line, run again
    assert faults < HUGE, f"{faults} page faults for a 256 MiB block: not huge pages"


def test_opting_out_keeps_glibcs_default_small_pages():
    tunables, faults, argv = probe(**{hostmem.OPT_OUT_ENV: "system"})
    assert tunables is None and argv == ["one", "--two=2"]
    assert faults > SMALL, faults


def test_a_users_own_tunables_are_kept():
    mine = "glibc.malloc.check=0"
    tunables, _, _ = probe(GLIBC_TUNABLES=mine)
    assert tunables == mine
