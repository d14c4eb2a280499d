"""The one training loop, shared by every method.

A method package exposes ``build(config) -> Task`` (called through `build_task`, which applies the run-wide
settings first); the Task carries the
pure functions (``init``, ``train_step``, ``finalize``) and the host-side
pieces (frozen params, the grain stream, samples, evaluation, prediction).
This file wires them to the mesh, the checkpoints and the logs:

    mesh → input → state (created sharded, or restored) → jitted step →
    loop (log / samples / checkpoints / hooks / SIGTERM) → final save → evaluation
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from common.errors import ConfigError, UserError, check_int
from common.nn import conv
from common.train import checkpoint, logger, resume, sharding

State = TypeVar("State")  # a flax.struct.dataclass with a `step` field
Batch = dict  # str -> numpy array (host) or jax.Array (sharded on the mesh's data axis)
Metrics = dict  # str -> scalar jax.Array
Hook = Callable[[int, Any], None]  # (step just taken, state) after the step's logs and checkpoint request


@dataclasses.dataclass
class Task(Generic[State]):
    """What a method hands to the trainer. `init`, `train_step` and `finalize` are pure; the trainer jits them."""

    init: Callable[[jax.Array], State]  # key -> state
    # (state, batch, key, frozen) -> (state, metrics); key = fold_in(the run's key, state.step), fresh every step
    train_step: Callable[[State, Batch, jax.Array, Any], tuple[State, Metrics]]
    train_data: Callable[[int], Any]  # seed -> grain IterDataset of host batches
    total_steps: int  # the run's length (the config's, or the method's default for it)
    # state -> state with derived data refreshed (e.g. the codec's integer tables); run before every save
    finalize: Callable[[State], State] | None = None
    frozen: Any = None  # pytree of params that are inputs, never optimized (e.g. the VGG)
    samples: Callable[[State, Batch], np.ndarray] | None = None  # (state, host batch) -> RGB grid
    evaluate: Callable[[State, str], dict] | None = None  # (state, outdir) -> metrics
    predict: Callable[[State, str, str], list[str]] | None = None  # (state, input, output) -> files written
    # state -> {name: float} on the held-out crops of common.quality.validation, every `eval.every` steps
    validate: Callable[[State], dict] | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    images_per_step: int = 1


class _Stop:
    """Turns SIGTERM into a flag the loop checks, so the run saves and exits cleanly."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        def handler(signum, frame):
            self.requested = True

        try:
            self._old = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread (e.g. inside some test runners)
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def jit_train_step(task: Task, mesh):
    """The jitted update (state, batch, run key, frozen) -> (state, metrics): state replicated and donated,
    batch sharded on `data`, the method's key folded with the step."""
    repl, data_sh = sharding.replicated(mesh), sharding.batch_sharded(mesh)

    def step(state, batch, key, frozen):
        return task.train_step(state, batch, jax.random.fold_in(key, state.step), frozen)

    return jax.jit(
        step,
        in_shardings=(repl, data_sh, repl, repl),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )


def hlo_flops(lowered, devices: int = 1) -> float:
    """FLOPs of a lowered (not yet compiled) computation, divided over `devices`.

    Counted on the HLO before any backend rewrites it: on a GPU, XLA turns convolutions into cuDNN calls
    whose FLOPs the compiled program's cost analysis leaves out (an H200 reported 8 of SRFeat's ~2,300
    GFLOP per step). The count is the global computation's, so a data-parallel step's share per device is
    it divided by the mesh's devices."""
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # older JAX: one dict per device program
    return float((cost or {}).get("flops", 0.0)) / devices


def step_flops(task: Task, mesh, state, batch, key, frozen) -> float:
    """FLOPs of one train step per device (`hlo_flops`), traced afresh with XLA's own convolution gradients:
    XLA's cost analysis counts a loop's body once, so it would undercount the im2col weight gradient."""
    with conv.weight_grad("xla"):
        return hlo_flops(jit_train_step(task, mesh).lower(state, batch, key, frozen), mesh.devices.size)


@dataclasses.dataclass
class Setup:
    """A task placed on a mesh: its jitted functions and replicated inputs (the loop, tests and benchmarks)."""

    mesh: Any
    init: Callable  # jitted key -> replicated state
    init_key: jax.Array
    abstract: Any  # the state's ShapeDtypeStructs with their sharding (what a restore fills)
    step: Callable  # jit_train_step
    key: jax.Array  # the run's train key, replicated
    frozen: Any  # task.frozen, replicated

    def fresh_state(self):
        return self.init(self.init_key)


# The run settings of configs/base.py.run_config and the least each may be (sample_every 0: no samples;
# total_steps 0: a method's own default where it has one, e.g. each SRFeat stage's)
_RUN_SETTINGS_MIN = {
    "batch_size": 1,
    "total_steps": 0,
    "log_every": 1,
    "checkpoint_every": 1,
    "sample_every": 0,
    "max_checkpoints": 1,
}


def build_task(config) -> Task:
    """The Task of ``config.method`` (``methods.<method>.build``), with the run-wide settings the trainer owns
    applied first: the run settings checked and the convolution configured (`conv.configure`, process-wide, read
    when a step is traced); the run's metadata names the method."""
    check_run_settings(config)
    conv.configure(config)
    task = importlib.import_module(f"methods.{config.method}").build(config)
    task.metadata = {"method": config.method, **task.metadata}
    return task


def check_run_settings(config) -> None:
    """A ConfigError naming the first run setting that is not an integer at least its minimum."""
    for key, least in _RUN_SETTINGS_MIN.items():
        if config.get(key) is not None:
            check_int(key, config.get(key), least)


class TrainingDiverged(UserError, FloatingPointError):
    """A logged metric is NaN or inf; the last checkpoint stays as it was. Reported as one line."""


def abstract_state(task: Task, config, sharding_) -> Any:
    """The state's ShapeDtypeStructs placed with `sharding_` (what a restore fills), without computing it."""
    return checkpoint.abstract_like(jax.eval_shape(task.init, jax.random.key(config.seed)), sharding_)


def setup(task: Task, config, mesh=None) -> Setup:
    """Places `task` on `mesh` (default: every device): the state's init, the jitted step, replicated inputs."""
    mesh = mesh if mesh is not None else sharding.make_mesh()
    repl = sharding.replicated(mesh)
    init_key = jax.random.key(config.seed)
    return Setup(
        mesh=mesh,
        init=jax.jit(task.init, out_shardings=repl),
        init_key=init_key,
        abstract=abstract_state(task, config, repl),
        step=jit_train_step(task, mesh),
        key=jax.jit(lambda: jax.random.key(config.seed + 1), out_shardings=repl)(),
        frozen=sharding.replicate(task.frozen, mesh),
    )


def check_trained(workdir: str) -> None:
    """A FileNotFoundError unless `workdir` holds checkpoints (checked before anything is built or made)."""
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise FileNotFoundError(
            f"--workdir={workdir}: no trained run here (no checkpoints/); train first with --mode=train"
        )


def restore_for_inference(task: Task, config, workdir: str):
    """-> (latest checkpoint's state without the data stream, its step), replicated."""
    check_trained(workdir)
    abstract = abstract_state(task, config, sharding.replicated(sharding.make_mesh()))
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"{workdir}: no checkpoint found under checkpoints/; train first with --mode=train")
    step = ckpt.latest_step()
    state = _restore(ckpt, abstract, config, workdir, with_data=False)[0]
    ckpt.close()
    return state, step


def _restore(ckpt, abstract, config, workdir: str, with_data=True):
    """The latest checkpoint into `abstract`; a checkpoint of another method, or of other sizes, is one
    ConfigError that names the run's config keys which differ from this config."""
    run = resume.read_record(workdir)
    if run is not None and run.get("method") != config.method:
        raise ConfigError(
            f"--workdir={workdir} holds a {run.get('method')!r} run, not a {config.method!r} one: give another "
            f"--workdir (nothing was changed in it)"
        )
    try:
        return ckpt.restore(abstract, with_data=with_data)
    except ConfigError:  # files it cannot read
        raise
    except (ValueError, KeyError, TypeError) as e:
        hint = "was it written with other model sizes?"
        if run is not None and (diff := resume.differences(run, config)):
            hint = f"its config.json differs in {resume.describe(diff)}"
        raise ConfigError(
            f"{ckpt.directory}: checkpoint step {ckpt.latest_step()} does not match this config ({hint}); "
            f"give another --workdir, or the config that trained it"
        ) from e


def train_and_evaluate(
    task: Task, config, workdir: str, *, hooks: Sequence[Hook] = (), allow_config_change: bool = False
) -> dict:
    """Trains to `task.total_steps` (resuming from the latest checkpoint), then evaluates.

    `hooks` run after every step, once the checkpoints requested so far are on disk (so giving hooks makes
    checkpoint writes synchronous): profilers, custom stops, fault injection in tests. A run that resumes keeps
    the config.json it started with; `common.train.resume` says which keys may change meanwhile.

    In a multi-process run every process runs this loop in step (each feeding its own rows of every batch
    to the global batch, and saving together into one orbax checkpoint); process 0 alone writes logs,
    samples and the evaluation, from its own copy of the replicated state.
    """
    con = logger.console()
    run = setup(task, config)
    sharding.check_batch(config.batch_size, run.mesh)
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:  # a file in the way, no permission, a read-only disk
        raise ConfigError(f"--workdir={workdir}: cannot make the run folder: {e.strerror or e}") from e

    # ---- input, and the state: restored, or created already replicated
    data_iter = iter(task.train_data(config.seed))
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.max_checkpoints)
    start = ckpt.latest_step()
    record = resume.read_record(workdir) if start is not None else None
    if record is not None and record.get("method") == config.method:
        changed = resume.check_and_log(
            workdir, record, config, start, allow=allow_config_change, write=jax.process_index() == 0
        )
        for k, (old, new) in changed.items():
            con.info(f"config {k}: {old!r} -> {new!r} from step {start} (recorded in {resume.CHANGES_FILE})")
    if start is not None:
        state, data_state = _restore(ckpt, run.abstract, config, workdir)
        if data_state is not None:
            data_iter.set_state(data_state)
        con.info(f"Resuming from {ckpt.directory} step {start}")
    else:
        state, start = run.fresh_state(), 0
    if jax.process_index() == 0 and record is None:  # a new run; a resumed one keeps the config it started with
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    finalize = jax.jit(task.finalize) if task.finalize else (lambda s: s)

    def save(step, state):
        ckpt.save(step, finalize(state), data_state=data_iter.get_state(), config=config.to_dict())

    log = logger.Logger(workdir, metadata={**task.metadata, "devices": jax.device_count()})
    log.truncate_after(start)  # drop lines a killed run logged after its last checkpoint
    total = int(task.total_steps)
    acc, acc_n, t_last, step_last = None, 0, time.perf_counter(), start
    lead = jax.process_index() == 0  # the one process that draws, logs, samples and evaluates
    bar = None  # made after the first step, so that its rate and ETA leave compilation out
    stopped, failed = None, False  # stopped: the exit status of a stop (130: Ctrl-C, 143: SIGTERM)
    step = start
    every = int(config.get("eval", {}).get("every", 0))  # validation during training (0: off)
    with _Stop() as stop:
        try:
            while step < total:
                host_batch = next(data_iter)
                if bar is None:
                    con.info(f"Compiling the train step (step {step + 1} of {total}) ...")
                    t_compile = time.perf_counter()
                state, metrics = run.step(state, sharding.to_global(host_batch, run.mesh), run.key, run.frozen)
                step += 1
                if bar is None:
                    jax.block_until_ready(metrics)
                    con.info(f"Compiled and took the first step in {time.perf_counter() - t_compile:.1f} s")
                    show = lead and sys.stderr.isatty()
                    bar = tqdm(total=total, initial=step - 1, disable=not show, dynamic_ncols=True, desc="train")
                acc = metrics if acc is None else jax.tree.map(jnp.add, acc, metrics)
                acc_n += 1
                bar.update(1)
                if step % config.log_every == 0 or step == total:
                    now = time.perf_counter()
                    rate = (step - step_last) / max(now - t_last, 1e-9)
                    t_last, step_last = now, step
                    means = jax.tree.map(np.divide, jax.device_get(acc), {k: acc_n for k in acc})
                    means["perf"] = {"steps_per_sec": rate, "images_per_sec": rate * task.images_per_step}
                    flat = log.scalars(step, means)
                    acc, acc_n = None, 0
                    if bar.disable:
                        con.info(_summary(step, total, flat))
                    else:
                        bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in list(flat.items())[:4]})
                if lead and task.validate and every and (step % every == 0 or step == total):
                    t_val = time.perf_counter()
                    flat = log.scalars(step, {"val": task.validate(sharding.host_local(state))})
                    msg = " ".join(f"{k}={v:.4g}" for k, v in flat.items())
                    (con.info if bar.disable else bar.write)(
                        f"validation at step {step}: {msg} ({time.perf_counter() - t_val:.1f} s)"
                    )
                if lead and task.samples and config.sample_every and (step % config.sample_every == 0 or step == total):
                    log.image(step, "train", task.samples(sharding.host_local(state), host_batch))
                if step % config.checkpoint_every == 0 and step < total:
                    save(step, state)
                if hooks:
                    ckpt.wait()
                    for hook in hooks:
                        hook(step, state)
                if stop.requested:
                    con.info(f"SIGTERM: saving step {step} and stopping")
                    stopped = 143
                    break
        except KeyboardInterrupt:
            con.info(f"\nInterrupted: saving step {step} before exiting")
            stopped = 130
        except FloatingPointError as e:  # from log.scalars: keep the last good checkpoint, do not save this state
            failed = True
            ckpt.wait()
            last = ckpt.latest_step()
            kept = f"step {last} in {ckpt.directory} is kept" if last is not None else "no checkpoint was written"
            raise TrainingDiverged(
                f"training diverged: {e} ({kept}); try a lower learning rate, or look for bad inputs"
            ) from e
        except BaseException:
            failed = True  # keep the last good checkpoint, do not save this state
            raise
        finally:
            if bar is not None:
                bar.close()
            if not failed and ckpt.latest_step() != step:
                save(step, state)
            ckpt.wait()
    state = finalize(state)

    results = {}
    if lead and not stopped and task.evaluate is not None and config.get("eval_at_end", True):
        results = run_evaluation(task, sharding.host_local(state), workdir, step)
    ckpt.close()
    log.close()
    if stopped:
        con.info(f"Stopped at step {step}; run the same command again to resume from it")
        raise SystemExit(stopped)
    return results


def run_evaluation(task: Task, state, workdir: str, step: int) -> dict:
    outdir = os.path.join(workdir, "eval")
    os.makedirs(outdir, exist_ok=True)
    t0 = time.perf_counter()
    results = task.evaluate(state, outdir)
    results = {"step": int(step), **results, "eval_seconds": time.perf_counter() - t0}
    logger.write_json(os.path.join(outdir, "metrics.json"), results)
    logger.console().info(json.dumps(_headline(results), indent=1, default=float))
    return results


def _headline(results: dict) -> dict:
    return {k: v for k, v in logger.flatten(results).items() if not isinstance(v, list)}


def _summary(step, total, flat):
    parts = [f"step {step}/{total}"] + [f"{k}={v:.4g}" for k, v in flat.items()]
    return " ".join(parts)
