"""Image reading and writing with clear errors.

Every image that enters the project goes through `load_image`, which returns
float32 RGB in [0, 1] whatever the file holds:

* grayscale (L, I;16, I, F) is replicated to three channels;
* palette images are converted to RGB;
* an alpha channel is composited over white (RGBA, LA, PA);
* 16-bit files keep their precision (divided by 65535);
* floating-point files (TIFF mode F) are clipped to [0, 1]; one holding NaN or infinity is refused;
* an EXIF orientation (a phone's rotated JPEG) is applied, so the pixels are upright as a viewer shows
  them, and so is every output made from them (the PNGs written carry no orientation).

A file that cannot be decoded, or whose header claims more pixels than PIL's decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS`` x 2, ~179 M), raises `ImageError` naming the file.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# What PIL raises on a file it cannot read (DecompressionBombError is none of the others)
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_ORIENTATION = 0x0112  # EXIF tag; 5-8 turn the image by 90 degrees


class ImageError(UserError):
    """A user-supplied image cannot be used, or an output cannot be written there; the message names the file."""


def _make_folder(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:  # a file in the way, no permission, a read-only disk
        why = "a file is in the way" if isinstance(e, FileExistsError | NotADirectoryError) else e.strerror or e
        raise ImageError(f"{folder}: cannot make the output folder: {why}") from e


_NOTED: set[str] = set()  # the conversions already reported in this process


def _note(kind: str, path: str) -> None:
    """Says once per process, for each kind of conversion, that an input is not what the outputs will be."""
    if kind not in _NOTED:
        _NOTED.add(kind)
        logging.getLogger("restore_jax").warning(f"note: {path} is {kind} (said once for all such inputs of this run)")


def _to_float_rgb(img: Image.Image, path: str) -> np.ndarray:
    mode = img.mode
    if mode in ("L", "1", "I;16", "I;16B", "I;16L", "I;16N", "I", "F", "LA"):
        _note("greyscale: it is read as RGB with three equal channels, and outputs are RGB", path)
    if mode.startswith("I;16") or (mode == "I" and np.asarray(img).max(initial=0) > 255):
        _note("16-bit: it is read at full precision, but outputs are written with 8 bits per channel", path)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        _note("transparent: its alpha channel is composited over white, and outputs have no alpha", path)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.float32) / 65535.0
    elif mode == "I":
        a = np.asarray(img)
        arr = a.astype(np.float32) / (65535.0 if a.max(initial=0) > 255 else 255.0)
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ImageError(f"{path}: floating-point image holds NaN or infinite values")
        arr = np.clip(arr, 0.0, 1.0)
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        arr = rgba[..., :3] * alpha + (1.0 - alpha)
    elif mode == "RGB":
        arr = np.asarray(img, dtype=np.float32) / 255.0
    else:  # L, 1, P, CMYK, YCbCr, LAB, HSV ...
        try:
            arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        except Exception as e:  # noqa: BLE001 - report any PIL failure with the path
            raise ImageError(f"{path}: unsupported image mode {mode!r}: {e}") from e
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ImageError(f"{path}: expected an RGB image, got array of shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_image(path: str) -> np.ndarray:
    """Reads `path` as float32 RGB in [0, 1], shape (H, W, 3)."""
    if not os.path.isfile(path):
        raise ImageError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.getexif().get(_ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)
            return _to_float_rgb(img, path)
    except ImageError:
        raise
    except _DECODE_ERRORS as e:
        raise ImageError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e


def load_mask(path: str) -> np.ndarray:
    """Reads a binary mask (any mode) as float32 {0, 1} of shape (H, W)."""
    rgb = load_image(path)
    return (rgb.mean(axis=-1) > 0.5).astype(np.float32)


def image_size(path: str) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels, as `load_image` returns it
    (after the EXIF orientation)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            turned = img.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
    except _DECODE_ERRORS as e:
        raise ImageError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e
    return (w, h) if turned else (h, w)


def list_images(folder: str) -> list[str]:
    """All image files under `folder`, recursively, sorted; errors if none."""
    if not os.path.isdir(folder):
        raise ImageError(f"{folder}: no such folder of images")
    found = []
    for root, _, files in os.walk(folder):
        for f in files:
            if f.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(root, f))
    if not found:
        raise ImageError(f"{folder}: folder contains no images (looked recursively for {', '.join(IMAGE_EXTENSIONS)})")
    return sorted(found)


# Image formats that predict writes, by the extension of the output name asked for
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
OUTPUT_EXTENSIONS = tuple(OUTPUT_FORMATS)


def predict_pairs(
    input_path: str,
    output_path: str,
    ext: str = ".png",
    folder_files=list_images,
    *,
    allowed: Sequence[str] = OUTPUT_EXTENSIONS,
    what: str = "an image",
):
    """(source, destination) pairs of --mode=predict: a folder → the same tree under a folder (its sources are
    `folder_files(input_path)`, each written as NAME + `ext`); a file → the file asked for, whose extension must
    be one of `allowed` (it picks the format; `what` the output is, for the error), or into an existing folder
    under the input's own name + `ext`. No other name is ever made up."""
    if os.path.isdir(input_path):
        if os.path.exists(output_path) and not os.path.isdir(output_path):
            raise ImageError(f"{output_path}: is a file; the input {input_path} is a folder, so give an output folder")
        sources = folder_files(input_path)
        _make_folder(output_path)
        return [
            (p, os.path.join(output_path, os.path.splitext(os.path.relpath(p, input_path))[0] + ext)) for p in sources
        ]
    if not os.path.exists(input_path):
        raise ImageError(f"{input_path}: no such file or folder")
    if os.path.isdir(output_path):
        return [(input_path, os.path.join(output_path, os.path.splitext(os.path.basename(input_path))[0] + ext))]
    if os.path.splitext(output_path)[1].lower() not in allowed:
        raise ImageError(
            f"--output={output_path}: this writes {what}; give a name ending in {', '.join(allowed)}, "
            f"or an existing folder"
        )
    return [(input_path, output_path)]


def progress(items: Sequence, desc: str) -> Sequence:
    """`items`, counted by a progress bar with rate and ETA on an interactive terminal (stderr) when there is more
    than one; as they are elsewhere (logs, pipes, tests)."""
    if len(items) < 2 or not sys.stderr.isatty():
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False, dynamic_ncols=True)


def predict_images(input_path: str, output_path: str, fn, *, min_side: int = 1, what: str = "the model") -> list[str]:
    """--mode=predict for image-to-image methods: writes fn(image) for a file (in the format its output name asks
    for) or a folder (PNGs)."""
    pairs = predict_pairs(input_path, output_path)
    for src, dst in progress(pairs, "predict"):
        img = load_image(src)
        if min(img.shape[:2]) < min_side:
            raise ImageError(
                f"{src}: image is {img.shape[0]}x{img.shape[1]}; {what} needs at least {min_side}x{min_side}"
            )
        save_image(dst, fn(img))
    return [dst for _, dst in pairs]


def to_uint8(img) -> np.ndarray:
    """The project's one 8-bit quantizer: float [0, 1] → uint8, clipped, rounded half to even (as jnp.round).

    The arithmetic stays in the input's precision, so a float32 array from the device quantizes exactly as
    the device would."""
    return np.rint(np.clip(np.asarray(img), 0.0, 1.0) * 255.0).astype(np.uint8)


def write_atomic(path: str, write) -> None:
    """`write(f)` into PATH.partial, then renamed to PATH: an interrupted write never leaves a partial PATH. A
    folder that cannot be made or a file that cannot be written (no permission, a full disk) is an ImageError
    naming PATH."""
    _make_folder(os.path.dirname(os.path.abspath(path)))
    tmp = path + ".partial"
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as e:
        raise ImageError(f"{path}: cannot write the output: {e.strerror or e}") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_png(path: str, img: np.ndarray, *, bits: int = 8) -> None:
    """Writes float [0, 1] (H, W) or (H, W, 3) as an 8- or 16-bit PNG (atomically)."""
    img = np.clip(np.asarray(img, np.float32), 0.0, 1.0)
    if bits == 16:
        if img.ndim != 2:
            raise ValueError("16-bit PNGs are written for single-channel maps only")
        pil = Image.fromarray((img * 65535.0 + 0.5).astype(np.uint16))
    elif bits == 8:
        pil = Image.fromarray(to_uint8(img))
    else:
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    write_atomic(path, lambda f: pil.save(f, format="PNG"))


def save_image(path: str, img: np.ndarray) -> None:
    """Writes float [0, 1] (H, W) or (H, W, 3) as 8 bits per channel (atomically), in the format of the path's
    extension (`OUTPUT_FORMATS`; JPEG at quality 95, WebP lossless)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise ImageError(f"{path}: cannot write this format; use one of {', '.join(OUTPUT_EXTENSIONS)}")
    if ext == ".png":
        return save_png(path, img)
    pil = Image.fromarray(to_uint8(img))
    options = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(OUTPUT_FORMATS[ext], {})
    write_atomic(path, lambda f: pil.save(f, format=OUTPUT_FORMATS[ext], **options))


def grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tiles rows of equally sized images (H, W, 3) or maps (H, W) into one RGB image."""

    def rgb(a):
        a = np.asarray(a, np.float32)
        return np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a

    tiles = [[rgb(a) for a in r] for r in rows]
    h = max(t.shape[0] for r in tiles for t in r)
    w = max(t.shape[1] for r in tiles for t in r)
    ncol = max(len(r) for r in tiles)
    out = np.ones((len(tiles) * (h + pad) + pad, ncol * (w + pad) + pad, 3), np.float32)
    for i, r in enumerate(tiles):
        for j, t in enumerate(r):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + t.shape[0], x : x + t.shape[1]] = t
    return out
