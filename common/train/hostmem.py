"""Host memory: huge pages for XLA:CPU's per-step buffers, so that each step faults in 512x fewer pages.

XLA:CPU allocates an executable's temporaries as one block per call: 2.5 GiB for DMENet's B step at the
authors' size, 3.6 GiB for SRFeat's generator step, 8.1 GiB for the full DMENet step. glibc's malloc serves a
block that large with a fresh ``mmap`` and unmaps it on ``free``, so every step the kernel faults in and zeroes
every 4 KiB page of it again, ~0.3 ms per MiB on the 2-core CPU. Where transparent huge pages are enabled
only on request (``/sys/kernel/mm/transparent_hugepage/enabled`` is ``madvise``, a common default), glibc's
``glibc.malloc.hugetlb=1`` tunable asks for them on every block it maps: 2 MiB pages, 512x fewer faults.
The memory used is the same (blocks are still returned on ``free``). DMENet B's step went from 5.09 to
4.52 s and SRFeat G's from 9.93 to 9.28 s (``benchmarks/vs_torch.py``; PyTorch's steps gain too, since
its allocator goes through the same malloc).

Keeping the blocks in the heap instead (``arena_max=1`` and 16 GiB ``mmap``/trim thresholds) was faster
still for SRFeat G (6.7 s) but not safe: the full DMENet step's heap grew past the machine's 24 GiB and the
process was killed.

Tunables are read when a process starts, so :func:`reexec_with_tunables` starts the process again (same PID,
same arguments) with ``GLIBC_TUNABLES`` set; the entry points (``launch.py``, the benchmarks) call it first
thing. It does nothing off Linux, with glibc older than 2.35 (no such tunable), unless transparent huge
pages are in ``madvise`` mode (``always`` gives them already, ``never`` cannot), when ``GLIBC_TUNABLES`` is
already set (yours is kept), or when ``RESTOREJAX_MALLOC=system``. A notebook gets the same by starting its
kernel with ``GLIBC_TUNABLES`` set to :data:`TUNABLES`.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLES = "glibc.malloc.hugetlb=1"
OPT_OUT_ENV = "RESTOREJAX_MALLOC"  # "system": leave malloc as it is
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_version() -> tuple[int, int]:
    lib, version = platform.libc_ver()
    try:
        return tuple(int(v) for v in version.split(".")[:2]) if lib == "glibc" else (0, 0)
    except ValueError:
        return (0, 0)


def _huge_pages_on_request() -> bool:
    try:
        with open(_THP_MODE) as f:
            return "[madvise]" in f.read()
    except OSError:
        return False


def applies() -> bool:
    """Whether this machine has what the tunable needs: Linux, glibc 2.35+, transparent huge pages on request."""
    return sys.platform == "linux" and _glibc_version() >= (2, 35) and _huge_pages_on_request()


def wanted() -> bool:
    """Whether :func:`reexec_with_tunables` would start the process again."""
    if os.environ.get(OPT_OUT_ENV, "").lower() == "system" or "GLIBC_TUNABLES" in os.environ:
        return False
    return applies()


def reexec_with_tunables() -> None:
    """Replaces this process by itself started with :data:`TUNABLES`; returns at once where :func:`wanted`
    is false (and so also in the process started again, where ``GLIBC_TUNABLES`` is set)."""
    if not wanted() or not sys.executable:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    env = dict(os.environ, GLIBC_TUNABLES=TUNABLES)
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as e:  # the process goes on as it is, only slower
        print(f"warning: could not restart under {TUNABLES}: {e}", file=sys.stderr)
