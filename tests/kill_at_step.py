"""Trains a config like launch.py and SIGKILLs itself right after step N (its due checkpoints on disk).

    python tests/kill_at_step.py METHOD VARIANT WORKDIR N

A run killed at a known point, for the resume tests: the trainer's hooks run after each step, once the
checkpoints requested so far are written.
"""

import importlib
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import trainer  # noqa: E402

if __name__ == "__main__":
    method, variant, workdir, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    config = importlib.import_module(f"configs.{method}").get_config(variant)
    task = importlib.import_module(f"methods.{method}").build(config)

    def kill(step, state):
        if step == n:
            print(f"killing at step {step}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    trainer.train_and_evaluate(task, config, workdir, hooks=[kill])
