"""Validation during training: a few fixed held-out crops scored every ``eval.every`` steps.

The photos are the ``val`` subset of ``../shared/data/sun_hays80`` (its sorted
photos 0, 10, ..., 70, which no config trains on: `common.data.pipeline`), or
the builtin `FALLBACK` photos when that folder is absent; ``eval.val_data``
names another folder. Each method turns the crops into (input, target) pairs
once, and at each validation runs its network on all of them as one jitted
batch; `image_scores` gives the PSNR, SSIM and LPIPS means the trainer logs
under ``val/`` (metrics.jsonl and TensorBoard), beside the method's own
measures.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import ml_collections
import numpy as np

from common.data import pipeline
from common.errors import ConfigError, check_int
from common.quality import lpips, metrics

POOL = "sun_hays80"
FALLBACK = "coffee,rocket,chelsea,hubble_deep_field"


def check_config(config) -> None:
    """A ConfigError unless `eval.every` (0: off), `eval.val_images` and `eval.val_crop` are valid."""
    check_int("eval.every", config.eval.get("every", 0), 0, "0: no validation during training")
    if config.eval.get("every", 0):
        check_int("eval.val_images", config.eval.val_images, 1)
        check_int("eval.val_crop", config.eval.val_crop, 32, "LPIPS needs 32 pixels a side")


def photos(config):
    """The validation photos: ``eval.val_data`` (a folder), else sun_hays80's val subset, else builtins."""
    folder = config.eval.get("val_data", "")
    if folder:
        return pipeline.FolderSource(folder)
    cfg = ml_collections.ConfigDict(dict(kind="builtin", names=FALLBACK, prefer_shared=POOL, subset="val"))
    return pipeline.make_source(cfg)


def crops(config, multiple: int = 1) -> np.ndarray:
    """(n, s, s, 3) centre crops of the first `eval.val_images` photos, s = `eval.val_crop` rounded down to
    `multiple` (a photo smaller than that is mirror-padded)."""
    src = photos(config)
    n = min(int(config.eval.val_images), len(src))
    size = int(config.eval.val_crop) // multiple * multiple
    if size < multiple or size < 32:
        raise ConfigError(f"config eval.val_crop={config.eval.val_crop}: under 32 pixels once a multiple of {multiple}")
    out = []
    for i in range(n):
        img = src[i]["image"]
        h, w = img.shape[:2]
        if h < size or w < size:
            img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="symmetric")
            h, w = img.shape[:2]
        y, x = (h - size) // 2, (w - size) // 2
        out.append(img[y : y + size, x : x + size])
    return np.stack(out).astype(np.float32)


def image_scores(out: np.ndarray, target: np.ndarray) -> dict:
    """Mean PSNR, SSIM (RGB, [0, 1]) and LPIPS (v0.1, AlexNet) of a batch of outputs against its targets."""
    a = jnp.clip(jnp.asarray(out, jnp.float32), 0.0, 1.0)
    b = jnp.asarray(target, jnp.float32)
    return {
        "psnr": float(jnp.mean(metrics.psnr(a, b))),
        "ssim": float(jnp.mean(metrics.ssim(a, b))),
        "lpips": float(np.mean(lpips.get("alex")(np.asarray(a), np.asarray(b)))),
    }


class Validator:
    """``validator(state) -> {name: float}``: `score(state, pairs)` on pairs `make_pairs()` builds on first use."""

    def __init__(self, config, make_pairs: Callable[[], dict], score: Callable[[object, dict], dict]):
        check_config(config)
        self._make, self._score, self._pairs = make_pairs, score, None

    def __call__(self, state) -> dict:
        if self._pairs is None:
            self._pairs = self._make()
        return self._score(state, self._pairs)
