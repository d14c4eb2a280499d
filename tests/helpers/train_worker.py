"""launch.py with test hooks: per-step state checksums, a SIGKILL after step N, the final state dumped.

    python tests/helpers/train_worker.py --config=configs/X.py:VARIANT --workdir=DIR [launch.py flags]
        [--kill_at=N] [--dump=PREFIX]

Prints ``process P step S checksum C`` after every step (C: a float64 digest of this process's copy of
the state, so processes of one run can be compared) and ``process P cores [...]`` (its CPU affinity) after
the first, SIGKILLs itself right after step N (its due
checkpoints on disk), and writes this process's state after the last step to ``PREFIX.pP.npz`` (leaves
keyed by their path). Multi-process settings are launch.py's flags or environment variables.
"""

import os
import signal
import sys

import jax
import numpy as np
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import launch  # noqa: E402  (defines the launcher's flags)
from tests.helpers.leaves import local_leaves  # noqa: E402

flags.DEFINE_integer("kill_at", None, "SIGKILL this process right after this step.")
flags.DEFINE_string("dump", None, "Write the state after the last step to PREFIX.p<process>.npz.")
FLAGS = flags.FLAGS


def hook(step, state):
    leaves = local_leaves(state)
    digest = sum(float(np.sum(np.abs(v.astype(np.float64)) * (i + 1))) for i, v in enumerate(leaves.values()))
    print(f"process {jax.process_index()} step {step} checksum {digest!r}", flush=True)
    if step == 1 and hasattr(os, "sched_getaffinity"):
        print(f"process {jax.process_index()} cores {sorted(os.sched_getaffinity(0))}", flush=True)
    if FLAGS.dump and step == FLAGS.config.total_steps:
        np.savez(f"{FLAGS.dump}.p{jax.process_index()}.npz", **leaves)
    if FLAGS.kill_at == step:
        print(f"killing at step {step}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    launch.run(lambda argv: launch.main(argv, hooks=[hook]))
