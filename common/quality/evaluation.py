"""What every method's evaluation shares.

* `eval_spec` / `eval_sets`: which images to evaluate on: the configured
  spec, else the folders of ../shared/data that exist, else builtin photos;
* `padded`: a network applied to one image of any size (mirror-padded to
  the network's multiple, cropped back), in overlapping tiles when it is large;
* `rgb_scores`, `score_images` and `means`: per-image score records and their set means;
* `save_samples`: the rows of ``samples.png``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from common.data import imageio, pipeline
from common.errors import check_int
from common.quality import lpips, metrics


def eval_spec(configured: str, shared: Sequence[str], fallback: str) -> str:
    """`configured` if set, else the ``../shared/data`` folders of `shared` that exist, else `fallback`."""
    if configured:
        return configured
    found = [p for p in (pipeline.shared_data_dir(name) for name in shared) if p]
    return ",".join(found) if found else fallback


def eval_sets(configured: str, shared: Sequence[str], fallback: str, min_size: int = 0) -> list[tuple[str, Sequence]]:
    """Named image sources of `eval_spec(...)` (common.data.pipeline.image_sets); a folder with an image whose side is
    under `min_size` (what the method's scores need) is an error listing them."""
    needs = f"the scores need {min_size} pixels a side (LPIPS-alex {lpips.MIN_SIDE['alex']}, SSIM 11); remove them"
    return pipeline.image_sets(eval_spec(configured, shared, fallback), min_size, needs)


def pad_to_multiple(img: np.ndarray, multiple: int, mode: str = "symmetric") -> np.ndarray:
    """(H, W, C) mirror-padded at the bottom and right to sides that are multiples of `multiple`."""
    h, w = img.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode) if (ph or pw) else img


def check_tiling(config) -> None:
    """A ConfigError unless `eval.tile` and `eval.tile_overlap` (the windows of `padded`) are integers ≥ 0."""
    for key in ("tile", "tile_overlap"):
        check_int(f"eval.{key}", config.eval[key], 0, "0: whole images")


def padded(
    fn,
    img: np.ndarray,
    multiple: int,
    scale: int = 1,
    *,
    mode: str = "symmetric",
    tile: int = 0,
    overlap: int = 0,
    clip: bool = True,
    shrink: int = 1,
) -> np.ndarray:
    """`fn` (NHWC → NHWC) on one (H, W, C) image padded to `multiple`; the output (`scale` / `shrink` times
    the input's size; `shrink` must divide `multiple`) is cropped back to the image's and clipped to [0, 1]
    (unless not `clip`).

    With `tile`, a side of the (padded) image longer than ``tile + 2·overlap`` is cut into the fewest equal
    tiles of at most `tile` pixels, each seen through a window `overlap` pixels wider on both sides (moved
    inside the image at its edges): every window has one shape (one compilation), and memory stays that of
    one window whatever the image's size. Every kept pixel has at least `overlap` pixels of real context on
    each side that is not the image's edge, so where `overlap` covers `fn`'s receptive-field radius the
    result is the whole-image one (to float rounding). `tile` and `overlap` round up to multiples of
    `multiple`."""
    h, w = img.shape[:2]
    if not (h and w):
        raise ValueError(f"padded: the image is empty ({h}x{w})")
    if multiple % shrink:
        raise ValueError(f"padded: shrink {shrink} must divide multiple {multiple}")
    x = np.asarray(pad_to_multiple(img, multiple, mode), np.float32)

    def up(v):  # rounded up to a multiple of `multiple`
        return -(-v // multiple) * multiple

    tile, overlap, s = up(tile), up(overlap), scale

    def split(n):  # (tile, window) along a side of n pixels
        if not tile or n <= tile + 2 * overlap:
            return n, n
        t = up(-(-n // -(-n // tile)))
        return t, min(t + 2 * overlap, n)

    (th, wh), (tw, ww) = split(x.shape[0]), split(x.shape[1])
    out = None
    for y0 in range(0, x.shape[0], th):
        for x0 in range(0, x.shape[1], tw):
            y1, x1 = min(y0 + th, x.shape[0]), min(x0 + tw, x.shape[1])
            a = min(max(y0 - overlap, 0), x.shape[0] - wh)
            c = min(max(x0 - overlap, 0), x.shape[1] - ww)
            o = np.asarray(fn(x[None, a : a + wh, c : c + ww]))[0]
            if out is None:
                out = np.empty((x.shape[0] * s // shrink, x.shape[1] * s // shrink, o.shape[-1]), o.dtype)

            def at(v):  # an input coordinate (a multiple of `multiple`) in output pixels
                return v * s // shrink

            out[at(y0) : at(y1), at(x0) : at(x1)] = o[at(y0 - a) : at(y1 - a), at(x0 - c) : at(x1 - c)]
    out = out[: -(-h * scale // shrink), : -(-w * scale // shrink)]
    return np.clip(out, 0.0, 1.0) if clip else out


def rgb_scores(img: np.ndarray, ref: np.ndarray) -> dict:
    """PSNR and SSIM on RGB [0, 1] and LPIPS (v0.1, AlexNet) of one (H, W, 3) image against its reference."""
    a, b = jnp.asarray(img)[None], jnp.asarray(ref)[None]
    return {
        "psnr": float(metrics.psnr(a, b)[0]),
        "ssim": float(metrics.ssim(a, b)[0]),
        "lpips": lpips.score(img, ref),
    }


def score_images(
    source: Sequence,
    score: Callable[[int, dict], tuple[dict, list | None]],
    *,
    limit: int = 0,
    num_samples: int = 0,
    desc: str = "eval",
) -> tuple[list[dict], list[list[np.ndarray]]]:
    """Runs `score(i, item)` -> (record, sample row or None) over the first `limit` items (0 = all), with a
    progress bar named `desc` on an interactive terminal.

    Returns the records and the first `num_samples` sample rows.
    """
    n = len(source) if not limit else min(limit, len(source))
    records, rows = [], []
    for i in imageio.progress(range(n), desc):
        record, row = score(i, source[i])
        records.append(record)
        if row is not None and len(rows) < num_samples:
            rows.append(row)
    return records, rows


def means(records: Sequence[dict], groups: Sequence[str], metrics: Sequence[str]) -> dict:
    """{group: {metric: mean over the records of record[group][metric]}}."""
    return {g: {m: float(np.mean([r[g][m] for r in records])) for m in metrics} for g in groups}


def image_name(item: dict) -> str:
    """The file name of a source item (builtin items carry their name)."""
    return os.path.basename(item["name"])


def save_samples(
    outdir: str,
    rows: Sequence[Sequence[np.ndarray]],
    name: str = "samples.png",
    *,
    columns: Sequence[str] = (),
    map_range: tuple[float, str] | None = None,
) -> None:
    """Writes the rows as one figure under `outdir` (nothing when there are no rows): RGB images as they are,
    each column headed by its label in `columns`. Single-channel maps are shown in grey, or with `map_range`
    = (scale, label) in a colour map of value × scale, with a colour bar named `label` (e.g. σ in pixels)."""
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = max(len(r) for r in rows)
    h, w = max(a.shape[0] for r in rows for a in r), max(a.shape[1] for r in rows for a in r)
    size = 2.4 / max(h, w)  # inches per pixel: about 2.4 inches a tile
    fig, axes = plt.subplots(
        len(rows), ncol, figsize=(ncol * w * size + (1.2 if map_range else 0.2), len(rows) * h * size + 0.5),
        squeeze=False,
    )  # fmt: skip
    shown = None
    for i, row in enumerate(rows):
        for j in range(ncol):
            ax = axes[i, j]
            ax.set_axis_off()
            if j >= len(row):
                continue
            a = np.asarray(row[j], np.float32)
            if a.ndim == 2 and map_range:
                shown = ax.imshow(a * map_range[0], cmap="inferno", vmin=0.0, vmax=map_range[0])
            elif a.ndim == 2:
                ax.imshow(np.clip(a, 0, 1), cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(np.clip(a, 0, 1))
            if i == 0 and j < len(columns):
                ax.set_title(columns[j], fontsize=9)
    if map_range and shown is not None:
        fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01).set_label(map_range[1])
    path = os.path.join(outdir, name)
    imageio.write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)
