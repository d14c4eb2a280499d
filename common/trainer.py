"""The one training loop, shared by every method.

A method module exposes ``build(config) -> Task``; the Task carries the pure
functions (``init``, ``train_step``) and the host-side pieces (frozen
params, the grain stream, samples, evaluation, prediction). This file wires
them to the mesh, the checkpoints and the logs:

    mesh → input → state (created sharded, or restored) → jitted step →
    loop (log / samples / checkpoints / SIGTERM) → final save → evaluation
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from common import checkpoint, logger, sharding
from common.errors import ConfigError

# Test hook: the loop sleeps forever once it reaches this step (after saving
# the checkpoints due before it), so a test can SIGKILL a run at a known point.
PAUSE_ENV = "RESTOREJAX_PAUSE_AT_STEP"


@dataclasses.dataclass
class Task:
    """What a method hands to the trainer. Functions marked pure are jitted."""

    init: Callable[[jax.Array], Any]  # pure: key -> state
    train_step: Callable[..., tuple[Any, dict]]  # pure: (state, batch, key, frozen) -> (state, metrics)
    train_data: Callable[[int], Any]  # seed -> grain IterDataset of numpy batch dicts
    # pure: state -> state with derived data refreshed (e.g. the codec's integer tables); run before every save
    finalize: Callable[[Any], Any] | None = None
    frozen: Any = None  # pytree of params that are inputs, never optimized (e.g. VGG-19)
    samples: Callable[..., np.ndarray] | None = None  # (state, frozen, batch) -> RGB grid
    evaluate: Callable[..., dict] | None = None  # (state, frozen, outdir) -> metrics
    predict: Callable[..., None] | None = None  # (state, frozen, input, output) -> None
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
    """The jitted update: state replicated and donated, batch sharded on `data`."""
    repl, data_sh = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    return jax.jit(
        task.train_step,
        in_shardings=(repl, data_sh, repl, repl),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )


def _state_setup(task: Task, config, mesh):
    repl = sharding.replicated(mesh)
    init_key = jax.random.key(config.seed)
    abstract = checkpoint.abstract_like(jax.eval_shape(task.init, init_key), repl)
    init = jax.jit(task.init, out_shardings=repl)
    return init, init_key, abstract


def restore_for_inference(task: Task, config, workdir: str):
    """-> (latest checkpoint's state without the data stream, frozen params, its step), replicated."""
    mesh = sharding.make_mesh()
    _, _, abstract = _state_setup(task, config, mesh)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"{workdir}: no checkpoint found under checkpoints/; train first with --mode=train")
    step = ckpt.latest_step()
    state = _restore(ckpt, abstract, with_data=False)[0]
    ckpt.close()
    frozen = jax.device_put(task.frozen, sharding.replicated(mesh))
    return state, frozen, step


def _restore(ckpt, abstract, with_data=True):
    try:
        return ckpt.restore(abstract, with_data=with_data)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"{ckpt.directory}: checkpoint step {ckpt.latest_step()} does not match this config "
            f"(was it written with other model sizes?): {type(e).__name__}: {str(e)[:300]}"
        ) from e


def train_and_evaluate(task: Task, config, workdir: str) -> dict:
    """Trains to `config.total_steps` (resuming from the latest checkpoint), then evaluates."""
    mesh = sharding.make_mesh()
    sharding.check_batch(config.batch_size, mesh)
    repl = sharding.replicated(mesh)
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    # ---- input
    data_iter = iter(task.train_data(config.seed))

    # ---- state: restored, or created already replicated
    init, init_key, abstract = _state_setup(task, config, mesh)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.max_checkpoints)
    start = ckpt.latest_step()
    if start is not None:
        state, data_state = _restore(ckpt, abstract)
        if data_state is not None:
            data_iter.set_state(data_state)
        print(f"Resuming from {ckpt.directory} step {start}", file=sys.stderr)
    else:
        state, start = init(init_key), 0
    frozen = jax.device_put(task.frozen, repl)

    step_fn = jit_train_step(task, mesh)
    base_key = jax.device_put(jax.random.key(config.seed + 1), repl)
    finalize = jax.jit(task.finalize) if task.finalize else (lambda s: s)

    def save(step, state):
        ckpt.save(step, finalize(state), data_state=data_iter.get_state(), config=config.to_dict())

    log = logger.Logger(workdir, metadata={**task.metadata, "devices": jax.device_count()})
    log.truncate_after(start)  # drop lines a killed run logged after its last checkpoint
    pause_at = int(os.environ.get(PAUSE_ENV, "-1"))
    total = int(config.total_steps)
    acc, acc_n, t_last, step_last = None, 0, time.perf_counter(), start
    bar = tqdm(
        total=total,
        initial=start,
        disable=not sys.stderr.isatty(),
        dynamic_ncols=True,
        desc="train",
    )
    stopped, failed = False, False
    step = start
    with _Stop() as stop:
        try:
            while step < total:
                if step == pause_at:
                    ckpt.wait()
                    print(f"{PAUSE_ENV}: pausing at step {step}", file=sys.stderr, flush=True)
                    while True:
                        time.sleep(3600)
                host_batch = next(data_iter)
                batch = sharding.to_global(host_batch, mesh)
                state, metrics = step_fn(state, batch, base_key, frozen)
                step += 1
                acc = metrics if acc is None else jax.tree.map(jnp.add, acc, metrics)
                acc_n += 1
                bar.update(1)
                if step % config.log_every == 0 or step == total:
                    now = time.perf_counter()
                    rate = (step - step_last) / max(now - t_last, 1e-9)
                    t_last, step_last = now, step
                    means = jax.tree.map(np.divide, jax.device_get(acc), {k: acc_n for k in acc})
                    means["perf"] = {
                        "steps_per_sec": rate,
                        "images_per_sec": rate * task.images_per_step,
                    }
                    flat = log.scalars(step, means)
                    acc, acc_n = None, 0
                    if bar.disable:
                        print(_summary(step, total, flat), file=sys.stderr, flush=True)
                    else:
                        bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in list(flat.items())[:4]})
                if task.samples and config.sample_every and (step % config.sample_every == 0 or step == total):
                    log.image(step, "train", task.samples(state, frozen, host_batch))
                if step % config.checkpoint_every == 0 and step < total:
                    save(step, state)
                if stop.requested:
                    print(f"SIGTERM: saving step {step} and stopping", file=sys.stderr, flush=True)
                    stopped = True
                    break
        except KeyboardInterrupt:
            print(f"\nInterrupted: saving step {step} before exiting", file=sys.stderr, flush=True)
            stopped = True
        except BaseException:
            failed = True  # e.g. a NaN: keep the last good checkpoint, do not save this state
            raise
        finally:
            bar.close()
            if not failed and ckpt.latest_step() != step:
                save(step, state)
            ckpt.wait()
    state = finalize(state)

    results = {}
    if not stopped and task.evaluate is not None and config.get("eval_at_end", True):
        results = run_evaluation(task, state, frozen, workdir, step)
    ckpt.close()
    log.close()
    if stopped:
        raise SystemExit(143)
    return results


def run_evaluation(task: Task, state, frozen, workdir: str, step: int) -> dict:
    outdir = os.path.join(workdir, "eval")
    os.makedirs(outdir, exist_ok=True)
    t0 = time.perf_counter()
    results = task.evaluate(state, frozen, outdir)
    results = {"step": int(step), **results, "eval_seconds": time.perf_counter() - t0}
    logger.write_json(os.path.join(outdir, "metrics.json"), results)
    print(json.dumps(_headline(results), indent=1, default=float), file=sys.stderr)
    return results


def _headline(results: dict) -> dict:
    return {k: v for k, v in logger.flatten(results).items() if not isinstance(v, list)}


def _summary(step, total, flat):
    parts = [f"step {step}/{total}"] + [f"{k}={v:.4g}" for k, v in flat.items()]
    return " ".join(parts)
