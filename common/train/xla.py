"""XLA:CPU flags this project sets for a process, before JAX starts its backend.

:func:`set_cpu_flags` (called first thing by ``launch.py``, the benchmarks and the test setup; nothing sets
them at import time) adds two flags to ``XLA_FLAGS``:

* ``--xla_cpu_enable_concurrency_optimized_scheduler=false``: on a machine with few cores that scheduler
  runs independent ops side by side, and they then fight over the cores that each op's own thread pool
  already uses (slower steps on 2 cores; ``docs/cpu_speed.md``).
* ``--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce``: convolutions go back to Eigen while
  YNNPACK keeps the matmuls and reductions (jaxlib 0.10's default also hands YNNPACK the convolutions, whose
  weight gradient is slow on CPU). `common.nn.conv` reads the same flag to pick its rewrites.

Only CPU compilations read them. A flag the user already set in ``XLA_FLAGS`` is kept as it is, and each
flag is added only on the jaxlib versions it was checked on (an unknown flag makes XLA abort).
"""

import os
from importlib import metadata

SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
CHECKED_JAXLIB = ((0, 7), (0, 11))  # [lowest, first unchecked) major.minor
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_WITHOUT_CONVOLUTIONS = "individual_dot,reduce"
YNN_CHECKED_JAXLIB = ((0, 10), (0, 11))


def jaxlib_version() -> tuple[int, int]:
    try:
        major, minor = metadata.version("jaxlib").split(".")[:2]
        return int(major), int(minor)
    except (metadata.PackageNotFoundError, ValueError):
        return (0, 0)


def add_flag(flag: str, value: str, checked: tuple[tuple[int, int], tuple[int, int]]) -> None:
    """Appends ``flag=value`` to ``XLA_FLAGS`` unless the user set `flag` or jaxlib is outside `checked`."""
    flags = os.environ.get("XLA_FLAGS", "")
    low, high = checked
    if flag not in flags and low <= jaxlib_version() < high:
        os.environ["XLA_FLAGS"] = f"{flags} {flag}={value}".strip()


def set_cpu_flags() -> None:
    """Adds the project's XLA:CPU flags to this process's ``XLA_FLAGS`` (call before JAX's backend starts)."""
    add_flag(SCHEDULER_FLAG, "false", CHECKED_JAXLIB)
    add_flag(YNN_FLAG, YNN_WITHOUT_CONVOLUTIONS, YNN_CHECKED_JAXLIB)
