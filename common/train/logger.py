"""Run outputs: metrics.jsonl, TensorBoard events, sample grids, config.json."""

from __future__ import annotations

import json
import logging
import math
import os
import sys

import jax
import numpy as np

from common.data import imageio


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest and notebooks replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def console() -> logging.Logger:
    """The project's progress messages (resuming, stopping, evaluation headlines) on stderr.

    Its own handler at INFO, so absl's verbosity (launch.py quiets orbax to WARNING) does not hide them;
    only process 0 prints.
    """
    log = logging.getLogger("restore_jax")
    if not log.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.INFO if jax.process_index() == 0 else logging.WARNING)
    return log


def flatten(d: dict, prefix: str = "", sep: str = "/") -> dict:
    """{'a': {'b': 1}} -> {'a/b': 1} (or 'a.b' with ``sep='.'``)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + sep, sep))
        else:
            out[key] = v
    return out


class Logger:
    """Writes scalars to WORKDIR/metrics.jsonl and TensorBoard, images to WORKDIR/samples/.

    Only process 0 writes.
    """

    def __init__(self, workdir: str, *, metadata: dict | None = None):
        self.workdir = workdir
        self.active = jax.process_index() == 0
        self._tb = None
        if self.active:
            os.makedirs(workdir, exist_ok=True)
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(workdir, flush_secs=30)
            if metadata:
                self._tb.add_text("run/metadata", json.dumps(metadata, indent=1), 0)
                with open(os.path.join(workdir, "run_metadata.json"), "w") as f:
                    json.dump(metadata, f, indent=1)

    def truncate_after(self, step: int) -> None:
        """Removes metrics.jsonl lines of steps > `step` (left by a run killed after its last checkpoint)."""
        path = os.path.join(self.workdir, "metrics.jsonl")
        if not self.active or not os.path.exists(path):
            return
        with open(path) as f:
            lines = f.readlines()
        keep = [ln for ln in lines if ln.strip() and json.loads(ln)["step"] <= step]
        if len(keep) != len(lines):
            with open(path, "w") as f:
                f.writelines(keep)

    def scalars(self, step: int, metrics: dict) -> dict:
        """Logs a (possibly nested) dict of scalars; raises on NaN/Inf."""
        flat = {k: float(np.asarray(v)) for k, v in flatten(metrics).items()}
        bad = [k for k, v in flat.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"non-finite metric(s) at step {step}: {', '.join(bad)}")
        if self.active:
            with open(os.path.join(self.workdir, "metrics.jsonl"), "a") as f:
                f.write(json.dumps({"step": int(step), **flat}) + "\n")
            for k, v in flat.items():
                self._tb.add_scalar(k, v, int(step))
        return flat

    def image(self, step: int, name: str, img: np.ndarray) -> str | None:
        if not self.active:
            return None
        path = os.path.join(self.workdir, "samples", f"{name}_{int(step):07d}.png")
        imageio.save_png(path, img)
        self._tb.add_image(name, np.clip(img, 0, 1), int(step), dataformats="HWC")
        return path

    def close(self):
        if self._tb is not None:
            self._tb.close()


def write_json(path: str, obj) -> None:
    if jax.process_index() != 0:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, default=float)
