"""Host memory: keep XLA:CPU's per-step buffers in the heap instead of paying for fresh pages every step.

XLA:CPU allocates an executable's temporaries as one block per call: 2.5 GiB for DMENet's B step at the
authors' size, 3.6 GiB for SRFeat's generator step. glibc's malloc serves a block that large (and, from a
thread other than the main one, anything over 64 MiB) with a fresh ``mmap`` and unmaps it on ``free``, so
every step the kernel faults in and zeroes every page of it again: ~0.3 ms per MiB on the 2-core CPU,
which was 0.7 s of DMENet B's 5.8 s step and 1.3 s of SRFeat G's 8.9 s (``benchmarks/vs_torch.py``).

Three glibc tunables make malloc keep such blocks: one arena (``arena_max=1``: the main one, which grows
by ``brk`` without a size limit), no ``mmap`` below 16 GiB and no returning freed memory at the heap's top
below 16 GiB. A freed step's temporaries are then reused as they are by the next step. The process keeps
its peak heap, which the next step needs again anyway.

Tunables are read when a process starts, so :func:`reexec_with_tunables` starts the process again (same
PID, same arguments) with ``GLIBC_TUNABLES`` set; the entry points (``launch.py``, the benchmarks) call it
first thing. It does nothing off Linux/glibc, when ``GLIBC_TUNABLES`` is already set (yours is kept), or
when ``RESTOREJAX_MALLOC=system``. Python code that imports the project (a notebook) can get the same by
starting its process with ``GLIBC_TUNABLES`` set to :data:`TUNABLES`.
"""

from __future__ import annotations

import os
import platform
import sys

_LARGE = str(16 << 30)
TUNABLES = f"glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold={_LARGE}:glibc.malloc.trim_threshold={_LARGE}"
OPT_OUT_ENV = "RESTOREJAX_MALLOC"  # "system": leave malloc as it is


def _glibc_with_tunables() -> bool:
    if sys.platform != "linux":
        return False
    lib, version = platform.libc_ver()
    try:
        return lib == "glibc" and tuple(int(v) for v in version.split(".")[:2]) >= (2, 26)  # tunables: 2.26+
    except ValueError:
        return False


def wanted() -> bool:
    """Whether :func:`reexec_with_tunables` would start the process again."""
    if os.environ.get(OPT_OUT_ENV, "").lower() == "system" or "GLIBC_TUNABLES" in os.environ:
        return False
    return _glibc_with_tunables()


def reexec_with_tunables() -> None:
    """Replaces this process by itself started with :data:`TUNABLES`; returns at once where :func:`wanted`
    is false (and so also in the process started again, where ``GLIBC_TUNABLES`` is set)."""
    if not wanted():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    env = dict(os.environ, GLIBC_TUNABLES=TUNABLES)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
