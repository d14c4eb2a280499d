"""Train, evaluate or run one of the project's methods.

    python launch.py --config=configs/<method>.py[:variant] --workdir=DIR \\
        [--mode=train|eval|predict] [--input=PATH --output=PATH] [--config.key=value ...]

Installed, the same launcher is the console command ``restore-jax``, which also takes a method's name for its
shipped config from any folder: ``restore-jax --config=defocus:quick --workdir=DIR``.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/defocus.py:quick.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, samples, eval).")
flags.DEFINE_enum("mode", "train", ["train", "eval", "predict"], "What to do.")
flags.DEFINE_string("input", None, "predict: an image or a folder of images.")
flags.DEFINE_string("output", None, "predict: output file (image input) or folder (folder input).")
flags.DEFINE_bool("allow_config_change", False, "train: continue a run with config values that differ from its own.")
# Several processes (JAX's distributed runtime). Unset: read from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
# JAX_PROCESS_ID; on a TPU pod or under Slurm `--config.distributed=True` alone lets JAX detect them.
flags.DEFINE_string("coordinator_address", None, "multi-process: host:port of process 0's coordinator.")
flags.DEFINE_integer("num_processes", None, "multi-process: how many processes take part.")
flags.DEFINE_integer("process_id", None, "multi-process: this process's index, 0 .. num_processes-1.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def check_paths(mode: str, workdir: str, input_path: str | None, output_path: str | None) -> None:
    """What can be checked before anything is built: the run to evaluate or apply, and predict's input."""
    from common.train import trainer

    if mode == "train":
        return
    trainer.check_trained(workdir)
    if mode == "predict":
        if not input_path or not output_path:
            raise app.UsageError("--mode=predict needs --input=PATH and --output=PATH")
        if not os.path.exists(input_path):
            raise FileNotFoundError(f"--input={input_path}: no such file or folder")


def main(argv, hooks=()):
    """The launcher; `hooks` (per-step callbacks, see `trainer.train_and_evaluate`) are for scripts that wrap it."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax/absl INFO lines drown the progress output
    from common.train import logger, sharding, trainer

    config = FLAGS.config
    workdir = os.path.abspath(FLAGS.workdir)
    check_paths(FLAGS.mode, workdir, FLAGS.input, FLAGS.output)
    joined = sharding.initialize_distributed(
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
        auto=config.distributed,
    )
    if joined and FLAGS.mode != "train":
        raise app.UsageError(f"--mode={FLAGS.mode} runs in one process; start it without the multi-process settings")
    logger.console().info(f"Building {config.method} (networks, weights, data) ...")
    task = trainer.build_task(config)
    if FLAGS.mode == "train":
        trainer.train_and_evaluate(task, config, workdir, hooks=hooks, allow_config_change=FLAGS.allow_config_change)
    elif FLAGS.mode == "eval":
        state, step = trainer.restore_for_inference(task, config, workdir)
        trainer.run_evaluation(task, state, workdir, step)
    else:
        state, _ = trainer.restore_for_inference(task, config, workdir)
        for path in task.predict(state, FLAGS.input, FLAGS.output):
            print(path)


def usage() -> str:
    """The launcher's help: its usage, modes and flags, and every shipped config's variants (from their docstrings)."""
    import importlib

    from methods import METHODS

    lines = [
        "usage: python launch.py --config=configs/METHOD.py[:VARIANT,...] --workdir=DIR [--mode=train|eval|predict]",
        "                        [--input=PATH --output=PATH] [--config.KEY=VALUE ...] [--allow_config_change]",
        "       restore-jax --config=METHOD[:VARIANT,...] --workdir=DIR ...   (the installed command; any folder)",
        "",
        "modes: train (default: train to config.total_steps, resuming, then evaluate), eval (evaluate the latest",
        "checkpoint into DIR/eval), predict (apply it to --input, an image or a folder, writing --output)",
        "multi-process: --coordinator_address=HOST:PORT --num_processes=N --process_id=I, or --config.distributed=True",
        "",
        "configs and their variants (combine variants with commas):",
    ]
    for name in METHODS:
        doc = importlib.import_module(f"configs.{name}").__doc__ or ""
        first = doc.strip().splitlines()[0] if doc.strip() else ""
        lines += ["", f"{name} (configs/{name}.py): {first}"]
        text = doc.split("Variants", 1)
        if len(text) == 2:
            lines += ["  " + line.rstrip() for line in text[1].splitlines()[1:] if line.strip()]
    return "\n".join(lines)


def run(main=main):
    """Entry point (also the ``restore-jax`` command): the process's XLA:CPU flags (`common.train.xla`) and malloc
    set up for XLA's large per-step buffers (`common.train.hostmem`), then user-facing errors as one clear line
    instead of a traceback."""
    from common.errors import run_absl
    from common.train import hostmem, xla

    xla.set_cpu_flags()
    hostmem.reexec_with_tunables()
    run_absl(main, help_text=usage)


if __name__ == "__main__":
    run()
