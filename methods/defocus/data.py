"""DMENet training data: thin-lens synthetic defocus (patent Eq. 1) and real-image streams.

Synthetic pairs (I_S, y): a real photo, a depth map (real disparity for
``stereo_motorcycle``, otherwise a procedural layered scene of planes, ramps
and blobs), a thin lens with random focus distance S1 ∈ [x_near, x_far],
focal length F and aperture D, and a layered renderer (far → near, Gaussian
blur per depth layer, alpha-composited with blurred masks). The label is the
per-pixel Gaussian σ = (CoC − 1)/4 (0 where CoC ≤ 1) divided by
σ_max = (coc_max − 1)/4, in [0, 1].

Real streams: (a) unlabelled photos for domain adaptation, (b) photos with a
binary blur mask b (1 = defocused) for sharpness calibration. The real CUHK
blur-detection set cannot be downloaded here, so by default both are a
*proxy*: real photos defocused with a disk (lens-aperture) PSF over a
procedural depth, plus noise and JPEG; the mask is CoC > 1. Point
``data.masked.kind='folder'`` at CUHK-style ``image/`` + ``gt/`` folders to
use real masks.

``python -m methods.defocus.dataset --out DIR --num N`` writes a fixed
synthetic dataset from these functions to disk.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import ndimage

from common.data import degrade, imageio, pipeline

# ----------------------------------------------------------------------------- thin lens (Eq. 1)


def image_space_focal(focal_length, s1):
    """f1 from the thin-lens equation 1/F = 1/S1 + 1/f1 (same units)."""
    return focal_length * s1 / (s1 - focal_length)


def thin_lens_coc(depth, s1, aperture, f1):
    """Seed Eq. 1: c(x) = α·|x − S1| / x with α = f1·D / S1 (sensor units of f1, D)."""
    alpha = f1 * aperture / s1
    return alpha * np.abs(depth - s1) / depth


def coc_to_sigma(coc):
    """Gaussian σ of a CoC diameter in pixels (DMENet authors): (CoC − 1)/4, 0 if CoC ≤ 1."""
    return np.maximum(coc - 1.0, 0.0) / 4.0


def coc_per_unit_aperture(depth_m, s1_mm, focal_mm, width_px):
    """CoC in pixels per mm of aperture D (36 mm sensor over `width_px` pixels); also returns f1."""
    f1 = image_space_focal(focal_mm, s1_mm)
    return thin_lens_coc(depth_m * 1000.0, s1_mm, 1.0, f1) * (width_px / 36.0), f1


def sample_coc(rng: np.random.Generator, depth_m: np.ndarray, lens, *, width_px: int) -> np.ndarray:
    """Random thin lens for a depth map (metres) -> CoC diameter in pixels per pixel.

    S1 ~ U[x_near, x_far] of the map; F ~ U[f_min, f_max] mm; the sensor is
    36 mm wide over `width_px` pixels. The aperture D is the capped constant:
    it is drawn so that the largest CoC in the image is U[0, coc_max] pixels.
    """
    x_near, x_far = float(depth_m.min()), float(depth_m.max())
    s1 = rng.uniform(x_near, x_far) * 1000.0  # mm
    focal = rng.uniform(lens.focal_min_mm, lens.focal_max_mm)
    unit_px, f1 = coc_per_unit_aperture(depth_m, s1, focal, width_px)
    target_max = rng.uniform(0.0, lens.coc_max)
    aperture = target_max / max(float(unit_px.max()), 1e-9)
    return thin_lens_coc(depth_m * 1000.0, s1, aperture, f1) * (width_px / 36.0)


# ----------------------------------------------------------------------------- depth


def procedural_depth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A layered scene in metres: a slanted background plane plus 1-4 nearer objects."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    far = rng.uniform(4.0, 30.0)
    slope_y, slope_x = rng.uniform(-0.6, 0.6, size=2)
    depth = far * (1.0 + slope_y * (yy / h - 0.5) + slope_x * (xx / w - 0.5))
    for _ in range(int(rng.integers(1, 5))):
        d_obj = rng.uniform(0.5, 0.8 * far)
        kind = rng.integers(3)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.1, 0.45) * h, rng.uniform(0.1, 0.45) * w
        if kind == 0:  # ellipse
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        elif kind == 1:  # rectangle
            m = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        else:  # blob: thresholded smooth noise
            noise = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma=min(h, w) / 10)
            m = noise > np.quantile(noise, rng.uniform(0.6, 0.85))
        ramp = d_obj * (1.0 + rng.uniform(-0.2, 0.2) * (yy - cy) / h)  # objects may tilt
        depth = np.where(m, np.minimum(depth, ramp), depth)
    return np.maximum(depth, 0.3).astype(np.float32)


# ----------------------------------------------------------------------------- renderer


def _layer_blur(kernel: str, coc: float):
    """(blur function, its parameter, the kernel's reach in pixels) for a layer of CoC `coc` (common.data.degrade)."""
    if kernel == "gaussian":
        s = float(coc_to_sigma(coc))
        return degrade.gaussian_blur, s, (int(3.0 * s + 0.5) if s > 0 else 0)  # gaussian_filter at truncate=3
    if kernel == "disk":
        r = coc / 2.0
        return degrade.disk_blur, r, (int(np.ceil(max(r, 0.5))) + 1 if r > 0.5 else 0)  # disk_kernel's half-width
    raise ValueError(f"unknown defocus kernel {kernel!r}")


def _window(sel: np.ndarray, reach: int) -> tuple[slice, slice]:
    """The box around `sel`'s pixels grown by `reach` (clipped to the image): outside it a blur of anything
    zero off `sel` is zero, and inside it the reflected border sees only zeros (or the image's own edge), so
    blurring the box alone gives the whole image's result there."""
    rows, cols = np.flatnonzero(sel.any(axis=1)), np.flatnonzero(sel.any(axis=0))
    h, w = sel.shape
    return (
        slice(max(rows[0] - reach, 0), min(rows[-1] + 1 + reach, h)),
        slice(max(cols[0] - reach, 0), min(cols[-1] + 1 + reach, w)),
    )


def render_layers(img: np.ndarray, depth: np.ndarray, coc: np.ndarray, *, n_layers: int, kernel: str):
    """Layered defocus: per depth layer (far → near) blur colour·mask and mask, composite.

    Returns (defocused image, per-pixel CoC actually rendered): each layer is
    blurred with the CoC at its mean depth, and the returned map holds that
    value on the layer's pixels, so labels match the rendering exactly. Each
    layer is blurred over its own box (`_window`), which gives the same result
    as blurring the whole frame.
    """
    edges = np.unique(np.quantile(depth, np.linspace(0, 1, n_layers + 1)))
    layer = np.clip(np.searchsorted(edges, depth, side="right") - 1, 0, len(edges) - 2)
    color = np.zeros_like(img)
    alpha = np.zeros(depth.shape, np.float32)
    rendered = np.zeros(depth.shape, np.float32)
    for k in sorted(np.unique(layer), reverse=True):  # far first; nearer layers occlude
        sel = layer == k
        c = float(coc[sel].mean())
        rendered[sel] = c
        blur, param, reach = _layer_blur(kernel, c)
        win = _window(sel, reach)
        m = sel[win].astype(np.float32)
        bm, bi = blur(m, param), blur(img[win] * m[..., None], param)
        color[win] = color[win] * (1.0 - bm[..., None]) + bi
        alpha[win] = alpha[win] * (1.0 - bm) + bm
    out = color / np.maximum(alpha, 1e-6)[..., None]
    return np.clip(out, 0.0, 1.0).astype(np.float32), rendered


# ----------------------------------------------------------------------------- examples


def _photo_and_depth(rng, source, size: int, use_real_depth: bool = True, photo: int | None = None):
    """A random crop of a random photo of `source` (of photo index `photo` when given) and its depth."""
    index = int(rng.integers(len(source)))  # drawn either way, so that `photo` changes nothing else
    item = source[index if photo is None else photo]
    if use_real_depth and "depth" in item:
        img, depth = pipeline.random_crop(rng, size, item["image"], item["depth"])
        depth = depth * rng.uniform(1.5, 6.0)  # unit-free disparity depth -> metres
    else:
        (img,) = pipeline.random_crop(rng, size, item["image"])
        depth = procedural_depth(rng, size, size)
    return pipeline.random_flip_rot(rng, img, depth)


def sigma_max(lens) -> float:
    """The σ (pixels) that label 1 stands for: the largest CoC's Gaussian σ, (CoC − 1) / 4."""
    return (lens.coc_max - 1.0) / 4.0


def synthetic_example(rng: np.random.Generator, source, cfg, photo: int | None = None) -> dict:
    """One (I_S, y) pair: image (S, S, 3) and label σ/σ_max (S, S, 1) in [0, 1] (from photo `photo` if given)."""
    crop, margin = cfg.crop, cfg.lens.margin
    img, depth = _photo_and_depth(rng, source, crop + 2 * margin, photo=photo)
    coc = sample_coc(rng, depth, cfg.lens, width_px=cfg.lens.sensor_px)
    out, rendered = render_layers(img, depth, coc, n_layers=cfg.lens.n_layers, kernel="gaussian")
    label = np.clip(coc_to_sigma(rendered) / sigma_max(cfg.lens), 0.0, 1.0)
    if cfg.lens.noise > 0:
        out = degrade.gaussian_noise(rng, out, rng.uniform(0, cfg.lens.noise))
    s = slice(margin, margin + crop)
    return {"image": out[s, s], "label": label[s, s, None].astype(np.float32)}


def proxy_real_example(rng: np.random.Generator, source, cfg, photo: int | None = None) -> dict:
    """A 'real' defocused photo (disk PSF, noise, JPEG) with its binary blur mask (CoC > 1)."""
    crop, margin = cfg.crop, cfg.lens.margin
    img, depth = _photo_and_depth(rng, source, crop + 2 * margin, use_real_depth=False, photo=photo)
    # focus on a random pixel's depth so that every proxy photo has a sharp region
    s1 = float(depth[rng.integers(depth.shape[0]), rng.integers(depth.shape[1])]) * 1000.0
    focal = rng.uniform(cfg.lens.focal_min_mm, cfg.lens.focal_max_mm)
    unit_px, _ = coc_per_unit_aperture(depth, s1, focal, cfg.lens.sensor_px)
    aperture = rng.uniform(0.1, 0.5) * cfg.lens.coc_max / max(float(unit_px.max()), 1e-9)
    coc = unit_px * aperture
    out, rendered = render_layers(img, depth, coc, n_layers=cfg.lens.n_layers, kernel="disk")
    out = degrade.gaussian_noise(rng, out, rng.uniform(0.0, 0.02))
    out = degrade.jpeg(out, int(rng.integers(60, 96)))
    s = slice(margin, margin + crop)
    return {"image": out[s, s], "mask": (rendered[s, s, None] > 1.0).astype(np.float32)}


class MaskedFolder:
    """CUHK-style blur-detection folder: PATH/image/* and PATH/gt/* matched by file stem."""

    def __init__(self, path: str, invert: bool = False):
        images = imageio.list_images(os.path.join(path, "image"))
        masks = {os.path.splitext(os.path.basename(p))[0]: p for p in imageio.list_images(os.path.join(path, "gt"))}
        self.pairs, missing = [], []
        for p in images:
            stem = os.path.splitext(os.path.basename(p))[0]
            (self.pairs.append((p, masks[stem])) if stem in masks else missing.append(p))
        if missing:
            raise imageio.ImageError(
                f"{path}: {len(missing)} image(s) have no mask of the same name in gt/: {', '.join(missing[:5])}"
            )
        self.invert = invert

    def __len__(self):
        return len(self.pairs)

    def load(self, i: int):
        img_path, mask_path = self.pairs[i]
        img, mask = imageio.load_image(img_path), imageio.load_mask(mask_path)
        if img.shape[:2] != mask.shape:
            raise imageio.ImageError(f"{mask_path}: mask is {mask.shape}, image {img_path} is {img.shape[:2]}")
        return img, (1.0 - mask if self.invert else mask)

    def example(self, rng: np.random.Generator, crop: int) -> dict:
        img, mask = self.load(int(rng.integers(len(self))))
        img, mask = pipeline.random_crop(rng, crop, img, mask)
        img, mask = pipeline.random_flip_rot(rng, img, mask)
        return {"image": img, "mask": mask[..., None]}


# ----------------------------------------------------------------------------- the training stream


def example_fn(config, source_cfg):
    """rng -> one training example dict holding every stream the config uses (common.data.pipeline.train_pipeline)."""
    dcfg = config.data
    source = pipeline.make_source(source_cfg, min_size=dcfg.crop + 2 * dcfg.lens.margin)
    masked = MaskedFolder(dcfg.masked.path, invert=dcfg.masked.invert) if dcfg.masked.kind == "folder" else None
    lam = config.loss

    def masked_example(rng):
        if masked is not None:
            return masked.example(rng, dcfg.crop)
        return proxy_real_example(rng, source, dcfg)

    def fn(rng):
        syn = synthetic_example(rng, source, dcfg)
        ex = {"syn_image": syn["image"], "syn_label": syn["label"]}
        if lam.adv > 0:  # the real stream feeds D
            real = masked_example(rng) if dcfg.real.kind == "same-as-masked" else proxy_real_example(rng, source, dcfg)
            ex["real_image"] = real["image"]
        if lam.sharp > 0:  # the masked stream feeds S
            mk = masked_example(rng)
            ex["masked_image"], ex["masked_mask"] = mk["image"], mk["mask"]
        return ex

    return fn
