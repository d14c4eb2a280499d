"""Shared building blocks of the five methods.

Importing this package turns off XLA:CPU's concurrency-optimized scheduler (before JAX starts its backend,
through ``XLA_FLAGS``). That scheduler orders independent ops so that they run side by side, and on a
machine with few cores they then fight over the cores that each op's own thread pool already uses: on the
2-core CPU the DMENet B step took 7.0-7.6 s with it and 5.6-5.8 s without, SRFeat's generator step 10.7 s
and 9.6 s (``benchmarks/vs_torch.py``). Only CPU compilations read the flag. To keep XLA's choice, set
``--xla_cpu_enable_concurrency_optimized_scheduler=true`` in ``XLA_FLAGS`` yourself; the flag is only
added to the jaxlib versions it was checked on (an unknown flag would make XLA abort).
"""

import os
from importlib import metadata

_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
_CHECKED_JAXLIB = ((0, 7), (0, 11))  # [lowest, first unchecked) major.minor


def _jaxlib_version() -> tuple[int, int]:
    try:
        major, minor = metadata.version("jaxlib").split(".")[:2]
        return int(major), int(minor)
    except (metadata.PackageNotFoundError, ValueError):
        return (0, 0)


def _sequential_cpu_scheduler() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    low, high = _CHECKED_JAXLIB
    if _SCHEDULER_FLAG not in flags and low <= _jaxlib_version() < high:
        os.environ["XLA_FLAGS"] = f"{flags} {_SCHEDULER_FLAG}=false".strip()


_sequential_cpu_scheduler()
