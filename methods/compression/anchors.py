"""Classical codecs as rate-distortion anchors, and the Bjøntegaard deltas of a curve against another.

Anchors run through Pillow on the same 8-bit images as the learned codec: JPEG (4:2:0), WebP, JPEG 2000 and
AVIF where this Pillow was built with them (`available`), and HEIF/HEVC intra, the codec BPG wraps, through the
optional `pillow-heif` package. Each is swept over its quality range; every point is the mean over the images of
the actual file bits per pixel, PSNR (8-bit RGB), MS-SSIM and the encode and decode seconds.

`bd_rate` and `bd_psnr` are Bjøntegaard's deltas with piecewise cubic (PCHIP) interpolation, as CompressAI's and
JVET's tools compute them: the mean horizontal (log-rate) or vertical (PSNR) gap between two RD curves over the
range where both are defined.
"""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image, features
from scipy.interpolate import PchipInterpolator

# name -> (Pillow format, quality sweep, save options, the Pillow feature that must be present)
ANCHORS = {
    "jpeg": ("JPEG", (5, 10, 20, 30, 50, 70, 85, 95), {}, "jpg"),
    "webp": ("WEBP", (5, 10, 20, 30, 50, 70, 85, 95), {"method": 6}, "webp"),
    "jpeg2000": ("JPEG2000", (200, 100, 60, 40, 25, 15, 10, 5), {"quality_mode": "rates"}, "jpg_2000"),
    "avif": ("AVIF", (10, 25, 40, 55, 70, 85), {"speed": 6}, "avif"),
    "heif": ("HEIF", (10, 25, 40, 55, 70, 85), {}, None),  # pillow-heif (x265 intra, as in BPG)
}


def available() -> dict[str, str]:
    """{anchor: why it cannot run} for every anchor; an empty reason means it runs here."""
    out = {}
    for name, (_, _, _, feature) in ANCHORS.items():
        if feature is not None:
            out[name] = "" if features.check(feature) else f"this Pillow has no {feature} support"
        else:
            try:
                import pillow_heif

                pillow_heif.register_heif_opener()
                out[name] = ""
            except ImportError:
                out[name] = "needs the optional pillow-heif package (pip install -e '.[anchors]')"
    return out


def roundtrip(u8: np.ndarray, name: str, quality) -> tuple[np.ndarray, int, float, float]:
    """(decoded uint8 image, file bytes, encode seconds, decode seconds) of `u8` through anchor `name`."""
    fmt, _, options, _ = ANCHORS[name]
    q = {"quality_layers": [float(quality)]} if name == "jpeg2000" else {"quality": int(quality)}
    buf = io.BytesIO()
    t0 = time.perf_counter()
    Image.fromarray(u8).save(buf, format=fmt, **options, **q)
    t1 = time.perf_counter()
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        out = np.asarray(im.convert("RGB"))
    return out, len(data), t1 - t0, time.perf_counter() - t1


def sweep(images: list[np.ndarray], name: str, score) -> list[dict]:
    """The anchor's RD curve over `images`: one point per quality, each the mean over the images of bpp,
    `score(decoded, original)`'s entries (e.g. PSNR, MS-SSIM) and the encode / decode seconds."""
    _, qualities, _, _ = ANCHORS[name]
    points = []
    for q in qualities:
        rows = []
        for u8 in images:
            out, nbytes, enc, dec = roundtrip(u8, name, q)
            rows.append({"bpp": nbytes * 8 / (u8.shape[0] * u8.shape[1]), **score(out, u8), "encode_s": enc,
                         "decode_s": dec})  # fmt: skip
        points.append({"quality": q, **{k: _mean([r[k] for r in rows]) for k in rows[0]}})
    return sorted(points, key=lambda p: p["bpp"])


def _mean(values) -> float | None:
    """The mean of the values that exist (a score can be None, e.g. MS-SSIM of an image too small for it)."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _pchip_mean(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    order = np.argsort(x)
    x, y = np.asarray(x, np.float64)[order], np.asarray(y, np.float64)[order]
    return float(PchipInterpolator(x, y).integrate(lo, hi) / (hi - lo))


def _check(r1, d1, r2, d2) -> None:
    for r, d in ((r1, d1), (r2, d2)):
        if len(r) != len(d) or len(r) < 2:
            raise ValueError("each RD curve needs at least two (rate, distortion) points")
        if len(set(np.round(d, 12))) != len(d) or len(set(np.round(r, 12))) != len(r):
            raise ValueError("an RD curve has two points at the same rate or quality")


def bd_rate(r1, d1, r2, d2) -> float | None:
    """Bjøntegaard delta rate of curve 2 against curve 1 (rates in any unit, distortion in dB), in percent:
    the mean change of rate at equal quality over the overlapping quality range (negative: curve 2 needs fewer
    bits). None when the quality ranges do not overlap."""
    _check(r1, d1, r2, d2)
    lo, hi = max(min(d1), min(d2)), min(max(d1), max(d2))
    if hi <= lo:
        return None
    a1 = _pchip_mean(np.asarray(d1), np.log10(r1), lo, hi)
    a2 = _pchip_mean(np.asarray(d2), np.log10(r2), lo, hi)
    return float((10 ** (a2 - a1) - 1) * 100)


def bd_psnr(r1, d1, r2, d2) -> float | None:
    """Bjøntegaard delta PSNR of curve 2 against curve 1, in dB: the mean quality gain at equal rate over the
    overlapping log-rate range. None when the rate ranges do not overlap."""
    _check(r1, d1, r2, d2)
    l1, l2 = np.log10(r1), np.log10(r2)
    lo, hi = max(l1.min(), l2.min()), min(l1.max(), l2.max())
    if hi <= lo:
        return None
    return _pchip_mean(l2, np.asarray(d2), lo, hi) - _pchip_mean(l1, np.asarray(d1), lo, hi)
