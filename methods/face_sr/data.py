"""Self-supervised face SR data: each low-resolution face is its own ground truth.

One random degradation (rotation | Gaussian noise | Gaussian blur | JPEG) per
face, then pairs at every scale: I↓4 → I, I↓8 → I↓2, I↓16 → I↓4.
"""

from __future__ import annotations

import numpy as np

from common.data import degrade, pipeline, resize

DEGRADATIONS = ("rotation", "noise", "blur", "jpeg")

# ----------------------------------------------------------------------------- self-supervised pairs


def input_face(rng, image: np.ndarray, face_size: int, input_size: int) -> np.ndarray:
    """The S x S low-resolution input: the image resized to `face_size` (if set), then a random S crop."""
    if face_size and image.shape[:2] != (face_size, face_size):
        image = np.clip(resize.imresize(image, output_shape=(face_size, face_size)), 0, 1).astype(np.float32)
    (image,) = pipeline.random_crop(rng, input_size, image)
    return image


def make_pairs(rng, face: np.ndarray, dcfg) -> dict:
    """lr{s} / gt{s} for s = 0..scales-1 (GT = face↓2^s, LR = GT↓4) after ONE random degradation."""
    (face,) = pipeline.random_flip_rot(rng, face) if dcfg.flip else (face,)
    kind = int(rng.integers(len(DEGRADATIONS)))
    if DEGRADATIONS[kind] == "rotation":
        face = np.ascontiguousarray(np.rot90(face, int(rng.integers(1, 4))))
    noise = float(rng.uniform(*dcfg.noise_sigma))
    blur = float(rng.uniform(*dcfg.blur_sigma))
    quality = int(rng.integers(dcfg.jpeg_quality[0], dcfg.jpeg_quality[1] + 1))
    ex = {"degradation": np.int32(kind)}
    size = face.shape[0]
    for s in range(dcfg.scales):
        gt = face if s == 0 else np.clip(resize.imresize(face, output_shape=(size >> s, size >> s)), 0, 1)
        lr = np.clip(resize.imresize(gt, output_shape=(gt.shape[0] // 4, gt.shape[1] // 4)), 0, 1)
        if DEGRADATIONS[kind] == "noise":
            lr = degrade.gaussian_noise(rng, lr, noise)
        elif DEGRADATIONS[kind] == "blur":
            lr = degrade.gaussian_blur(lr, blur)
        elif DEGRADATIONS[kind] == "jpeg":
            lr = degrade.jpeg(lr, quality)
        ex[f"lr{s}"], ex[f"gt{s}"] = lr.astype(np.float32), gt.astype(np.float32)
    return ex


def example_fn(config):
    """rng -> one face's pairs (`make_pairs`) from the configured training faces."""
    dcfg = config.data
    source = pipeline.make_source(dcfg.train, min_size=0 if dcfg.face_size else dcfg.input_size)
    n = len(source) if not dcfg.limit else min(dcfg.limit, len(source))

    def fn(rng):
        face = input_face(rng, source[int(rng.integers(n))]["image"], dcfg.face_size, dcfg.input_size)
        return make_pairs(rng, face, dcfg)

    return fn
