"""The one place that talks to orbax.

A checkpoint step holds three items: ``state`` (the method's state dataclass,
restored into an abstract target carrying the right shardings), ``data``
(the grain iterator state, so a resume continues the exact stream) and
``config`` (the resolved config, for reference). `load_run` reads another
run's folder (its config.json and latest state) for the methods that start
from, or compare with, an earlier run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys

import jax
import orbax.checkpoint as ocp

from common.errors import ConfigError

# How TensorStore (under orbax) reports files it cannot read: truncated, missing or not what they claim to be
_UNREADABLE = ("FAILED_PRECONDITION", "NOT_FOUND", "DATA_LOSS", "OUT_OF_RANGE", "error while reading")


def _drop_closed_loop_errors(previous, unraisable) -> None:
    """sys.unraisablehook that drops what orbax's reads left running after a failed one raise later: "Event
    loop is closed", and their own read errors when their coroutines are collected."""
    e = unraisable.exc_value
    closed = isinstance(e, RuntimeError) and str(e) == "Event loop is closed"
    if not (closed or any(code in str(e) for code in _UNREADABLE)):
        previous(unraisable)


@contextlib.contextmanager
def _reading(step_dir: str):
    """An orbax restore of `step_dir`: files it cannot read are a ConfigError naming the folder.

    When one read fails, orbax's other reads finish after its event loop has closed, and each would print a
    "RuntimeError: Event loop is closed" traceback (an unraisable exception) under the error, or its own read
    error when its coroutine is collected: a failed read leaves a hook that drops exactly those."""
    previous = sys.unraisablehook
    sys.unraisablehook = functools.partial(_drop_closed_loop_errors, previous)
    try:
        yield
    except Exception as e:
        if not any(code in str(e) for code in _UNREADABLE):
            raise
        root = e
        while root.__cause__ is not None:  # the innermost error names the array and what is wrong with it
            root = root.__cause__
        detail = (str(root).strip().splitlines() or [type(root).__name__])[0][:400]
        raise ConfigError(
            f"{step_dir}: the checkpoint cannot be read (damaged or incomplete files): {detail}. "
            "Move that folder away to start from the checkpoint before it."
        ) from e
    sys.unraisablehook = previous


def abstract_like(tree, sharding):
    """ShapeDtypeStructs of `tree` (arrays or shapes) placed with `sharding`."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


class Checkpointer:
    def __init__(self, directory: str, *, max_to_keep: int = 3):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        # naming each item's handler lets item_metadata read a step without warning about items it cannot restore
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "data": ocp.JsonCheckpointHandler(),
            "config": ocp.JsonCheckpointHandler(),
        }
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, *, data_state: dict | None = None, config: dict | None = None) -> None:
        items = {"state": ocp.args.StandardSave(state)}
        if data_state is not None:
            items["data"] = ocp.args.JsonSave(data_state)
        if config is not None:
            items["config"] = ocp.args.JsonSave(config)
        self.manager.save(int(step), args=ocp.args.Composite(**items), force=True)

    def restore(self, abstract_state, step: int | None = None, *, with_data: bool = True):
        """-> (state, data_state or None) from `step` (default: the latest)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory}: no checkpoint to restore")
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        stored = set(self.manager.item_metadata(step).keys()) if with_data else set()
        if with_data and "data" in stored:
            items["data"] = ocp.args.JsonRestore()
        with _reading(os.path.join(self.directory, str(step))):
            out = self.manager.restore(step, args=ocp.args.Composite(**items))
        return out["state"], (out["data"] if "data" in items else None)

    def restore_raw(self, step: int | None = None):
        """The `state` item as stored (nested dicts of arrays), without a target structure."""
        step = self.latest_step() if step is None else step
        with _reading(os.path.join(self.directory, str(step))):
            out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
        return out["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


@dataclasses.dataclass(frozen=True)
class Run:
    """Another run's folder as read by `load_run`: its config.json and its latest checkpoint's state."""

    workdir: str
    config: dict
    state: dict  # the stored `state` item (nested dicts of numpy arrays)
    step: int


def load_run(workdir: str, *, what: str, method: str | None = None, needs: tuple[str, ...] = ()) -> Run:
    """Reads a run folder's config.json and latest checkpoint; every problem is a ConfigError naming `what`.

    `what` names the setting that pointed here (e.g. ``config init_from='runs/a'``); `method`, when given,
    must match the run's; `needs` are state fields the caller uses.
    """
    workdir = os.path.abspath(workdir)
    cfg_path, ck_dir = os.path.join(workdir, "config.json"), os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ck_dir) or not os.path.isfile(cfg_path):
        raise ConfigError(f"{what}: {workdir} is not a run folder (needs config.json and checkpoints/; train first)")
    try:
        with open(cfg_path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{what}: cannot read {cfg_path}: {e}") from e
    if method is not None and config.get("method") != method:
        raise ConfigError(f"{what}: {workdir} is a {config.get('method')!r} run, not a {method!r} run")
    ck = Checkpointer(ck_dir)
    try:
        step = ck.latest_step()
        if step is None:
            raise ConfigError(f"{what}: no checkpoint under {ck_dir}")
        state = ck.restore_raw(step)
    finally:
        ck.close()
    missing = [k for k in needs if not isinstance(state, dict) or k not in state]
    if missing:
        hint = f" (not a {method} checkpoint?)" if method else ""
        raise ConfigError(f"{what}: step {step} of {workdir} has no {', '.join(missing)}{hint}")
    return Run(workdir, config, state, int(step))
