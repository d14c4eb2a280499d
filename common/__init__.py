"""Shared building blocks of the five methods.

Importing this package turns off XLA:CPU's concurrency-optimized scheduler (before JAX starts its backend,
through ``XLA_FLAGS``). That scheduler orders independent ops so that they run side by side, and on a
machine with few cores they then fight over the cores that each op's own thread pool already uses: on the
2-core CPU the DMENet B step took 7.0-7.6 s with it and 5.6-5.8 s without, SRFeat's generator step 10.7 s
and 9.6 s (``benchmarks/vs_torch.py``). Only CPU compilations read the flag. To keep XLA's choice, set
``--xla_cpu_enable_concurrency_optimized_scheduler=true`` in ``XLA_FLAGS`` yourself; the flag is only
added to the jaxlib versions it was checked on (an unknown flag would make XLA abort).

It also hands XLA:CPU's convolutions back to Eigen while YNNPACK keeps the matmuls and reductions
(``--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce``; jaxlib 0.10's default adds
``individual_convolution``). On the 2-core CPU YNNPACK's convolution weight gradient ran at a third of the
forward's rate and Eigen's at two thirds (SRFeat's 3x3 128 → 128 layer: 83 ms against 290 ms), which made
the SRFeat generator step 14.2 s with YNNPACK and 11.9 s with Eigen, DMENet's B step 7.8-8.0 s and 6.9-7.0 s
(``benchmarks/vs_torch.py``, ``docs/cpu_speed.md``). `common.conv` reads the same flag to pick its rewrites.
Set the flag in ``XLA_FLAGS`` yourself to keep another choice; it is added on jaxlib 0.10 only.
"""

import os
from importlib import metadata

_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
_CHECKED_JAXLIB = ((0, 7), (0, 11))  # [lowest, first unchecked) major.minor
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_YNN_WITHOUT_CONVOLUTIONS = "individual_dot,reduce"
_YNN_CHECKED_JAXLIB = ((0, 10), (0, 11))


def _jaxlib_version() -> tuple[int, int]:
    try:
        major, minor = metadata.version("jaxlib").split(".")[:2]
        return int(major), int(minor)
    except (metadata.PackageNotFoundError, ValueError):
        return (0, 0)


def _add_flag(flag: str, value: str, checked: tuple[tuple[int, int], tuple[int, int]]) -> None:
    """Appends ``flag=value`` to ``XLA_FLAGS`` unless the user set `flag` or jaxlib is outside `checked`."""
    flags = os.environ.get("XLA_FLAGS", "")
    low, high = checked
    if flag not in flags and low <= _jaxlib_version() < high:
        os.environ["XLA_FLAGS"] = f"{flags} {flag}={value}".strip()


_add_flag(_SCHEDULER_FLAG, "false", _CHECKED_JAXLIB)
_add_flag(YNN_FLAG, _YNN_WITHOUT_CONVOLUTIONS, _YNN_CHECKED_JAXLIB)
