"""Rate-distortion and successive-compression (SIC) evaluation with the real codec, samples and predict.

Evaluation (``eval/metrics.json``), on ../shared/data/kodak when present,
builtin photos otherwise:

* ``rd``: per image and mean: actual bpp (file size, header included),
  estimated bpp (−Σ log₂ p of the rounded latents), their ratio, PSNR
  (RGB, 8-bit), MS-SSIM, LPIPS (v0.1, AlexNet), ``mean_color_delta_e`` (CIE76
  ΔE between the mean colours of original and reconstruction: a colour
  cast), ``block_color_delta_e`` (the same ΔE per 16×16 tile, averaged:
  local colour errors such as desaturation), and whether decode(encode(x)) is
  bit-identical; the encode and decode seconds of each image (after a warm-up that compiles them);
* ``jpeg_rd``: Pillow JPEG at ``eval.jpeg_qualities`` (4:2:0, default settings),
  with the same measures;
* ``sic``: I_n = f_ed(I_{n−1}) for n = 1..``eval.sic_cycles``: PSNR(I_n, I0)
  per cycle (mean over images) for the model, for JPEG at the quality whose
  first-pass bpp is closest to the model's on that image, for one-pixel
  shifted crops (crop offsets 0..``eval.sic_shifts``−1 pixels), and, with
  ``eval.variable_with=WORKDIR`` (another rate point), the variable-rate
  schedule alternating this model and that one (JPEG alternating the two
  matched qualities). ``drop`` = PSNR at cycle 1 − PSNR at the last cycle;
  for the variable schedules (odd cycles at this model's rate, even cycles
  at the other's) ``drop_same_rate`` compares cycle 1 with the last odd cycle.
  The model and matched JPEG also get ``lpips_first`` / ``lpips_final``: mean
  LPIPS to I0 after cycle 1 and after the last cycle. ``sic.model.symbols`` traces the model's cycles through
  its latent symbols: the fraction that flips each cycle, their drift, the first cycle 1 dB down, and the
  channels that flip most (`methods.compression.sic`).

Plots: ``eval/rd.png`` (model point(s) and the JPEG curve),
``eval/sic.png`` (PSNR per cycle), ``eval/sic_symbols.png`` (symbol flips per cycle, drift, and where the
first image's symbols flipped), ``eval/samples.png`` (original | model cycle 1 | model last cycle | JPEG last
cycle).
"""

from __future__ import annotations

import os
import time

import jax.numpy as jnp
import numpy as np

from common.data import degrade, imageio
from common.quality import evaluation, lpips, metrics, validation
from common.train import logger
from methods.compression import entropy, plots
from methods.compression import sic as sic_trace  # (`sic` names the results below)
from methods.compression.codec import EXTENSION, Codec, codec_functions, load_codec

FALLBACK_EVAL = "builtin:astronaut+coffee+chelsea+rocket"


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _lab_means(u8: np.ndarray, block: int) -> np.ndarray:
    """CIELAB of the mean colour of each block×block tile (the whole image when block = 0 or too large)."""
    from skimage import color

    x = np.asarray(u8, np.float64) / 255.0
    h, w = (x.shape[0] // block * block, x.shape[1] // block * block) if block else (0, 0)
    if h and w:
        x = x[:h, :w].reshape(h // block, block, w // block, block, 3).mean((1, 3))
    else:
        x = x.reshape(-1, 3).mean(0)[None, None]
    return color.rgb2lab(x)


def mean_color_delta_e(a: np.ndarray, b: np.ndarray) -> float:
    """CIE76 ΔE between the mean colours of two 8-bit RGB images: a colour cast, not texture."""
    return float(np.linalg.norm(_lab_means(a, 0) - _lab_means(b, 0), axis=-1).mean())


def block_color_delta_e(a: np.ndarray, b: np.ndarray, block: int = 16) -> float:
    """Mean CIE76 ΔE between the mean colours of corresponding 16×16 tiles: local colour (desaturation, hue
    shifts) that a correct mean colour can hide, still blind to texture."""
    return float(np.linalg.norm(_lab_means(a, block) - _lab_means(b, block), axis=-1).mean())


def ms_ssim_u8(a: np.ndarray, b: np.ndarray) -> float | None:
    if min(a.shape[:2]) < metrics.ms_ssim_min_side():
        return None
    f = lambda u: jnp.asarray(u, jnp.float32)[None] / 255.0  # noqa: E731
    return float(metrics.ms_ssim(f(a), f(b))[0])


# ----------------------------------------------------------------------------- successive compression


def sic_curve(fed, img_u8: np.ndarray, cycles: int, schedule=None) -> list[float]:
    """PSNR(I_n, I0) for n = 1..cycles, I_n = f(I_{n−1}) with f = schedule[(n−1) % len] (or fed)."""
    funcs = schedule or [fed]
    cur, out = img_u8, []
    for n in range(cycles):
        cur = funcs[n % len(funcs)](cur)
        out.append(psnr_u8(cur, img_u8))
    return out, cur


def jpeg_roundtrip(u8: np.ndarray, quality: int) -> tuple[np.ndarray, float]:
    """(Pillow JPEG round trip of an 8-bit image, its bpp)."""
    out, size = degrade.jpeg_with_size(u8.astype(np.float32) / 255.0, quality)
    return imageio.to_uint8(out), size * 8.0 / (u8.shape[0] * u8.shape[1])


def jpeg_fn(quality: int):
    return lambda u8: jpeg_roundtrip(u8, quality)[0]


def jpeg_bpp(u8: np.ndarray, quality: int) -> float:
    return jpeg_roundtrip(u8, quality)[1]


def matched_quality(u8: np.ndarray, bpp: float, qualities=range(1, 96)) -> int:
    """The JPEG quality whose bpp on this image is closest to `bpp`."""
    return min(qualities, key=lambda q: abs(jpeg_bpp(u8, q) - bpp))


def jpeg_psnr_at(jpeg_rd: list[dict], bpp: float, key: str = "psnr") -> float | None:
    """JPEG's mean PSNR (or another measure `key`) at `bpp`, linear between the two JPEG RD points around it;
    None outside their range or where the points lack `key` (metrics files from older versions)."""
    pts = sorted((p["bpp"], p[key]) for p in jpeg_rd if p.get(key) is not None)
    if not pts or not pts[0][0] <= bpp <= pts[-1][0]:
        return None
    return float(np.interp(bpp, [b for b, _ in pts], [q for _, q in pts]))


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


# ----------------------------------------------------------------------------- evaluation


class Evaluator:
    """Evaluation, samples and prediction of the compression `model` (a Compressor) at a state's params."""

    def __init__(self, config, model):
        self.config = config
        self.model = model
        self._functions = None

    def codec(self, state) -> Codec:
        if self._functions is None:
            self._functions = codec_functions(self.model)
        return Codec(self.model, state.params, self._functions, state.tables)

    def validator(self) -> validation.Validator:
        """Estimated bpp (from the rounded latents' likelihoods) and PSNR/SSIM/LPIPS of the 8-bit decoded
        validation crops: what the codec would give, without range coding."""

        def score(state, p):
            if self._functions is None:
                self._functions = codec_functions(self.model)
            f = self._functions
            syms = f["symbols"](state.params, p["x"])
            bits = sum(float(entropy.bits(v).sum()) for v in f["likelihoods"](state.params, syms).values())
            x_hat = np.asarray(f["decode"](state.params, syms["y"], syms["dc"]))
            x_hat = np.round(np.clip(x_hat, 0.0, 1.0) * 255.0) / 255.0
            n, h, w = p["x"].shape[:3]
            return {"bpp": bits / (n * h * w), **validation.image_scores(x_hat, p["x"])}

        pairs = lambda: {"x": validation.crops(self.config, self.model.multiple)}  # noqa: E731
        return validation.Validator(self.config, pairs, score)

    def train_samples(self, state, batch) -> np.ndarray:
        cd = self.codec(state)
        rows = []
        for x in batch["image"][:3]:
            rows.append([x, cd.roundtrip(x).astype(np.float32) / 255.0])
        return imageio.grid(rows)

    def _images(self):
        least = lpips.MIN_SIDE["alex"]
        (name, source) = evaluation.eval_sets(self.config.eval.data, ("kodak",), FALLBACK_EVAL, least)[0]
        n = len(source) if not self.config.eval.max_images else min(len(source), self.config.eval.max_images)
        out = []
        for i in range(n):
            item = source[i]
            label = item.get("name") or os.path.basename(getattr(source, "paths", [""] * n)[i]) or str(i)
            out.append((label, imageio.to_uint8(item["image"])))
        return name, out

    def evaluate(self, state, outdir: str) -> dict:
        ec = self.config.eval
        cd = self.codec(state)
        set_name, images = self._images()
        t0 = time.perf_counter()

        # ---- rate-distortion with the real codec; encode and decode timed per image (after a warm-up call that
        # compiles them for the first image's size)
        per_image = []
        if images:
            cd.decode(cd.encode_bytes(images[0][1].astype(np.float32) / 255.0))
        for label, u8 in imageio.progress(images, "codec"):
            x = u8.astype(np.float32) / 255.0
            t_enc = time.perf_counter()
            blob, syms = cd.encode_symbols(x)
            t_dec = time.perf_counter()
            decoded = cd.decode(blob, label)
            t_end = time.perf_counter()
            recon, est_bits = cd.reconstruct(syms, *u8.shape[:2]), cd.estimated_bits(syms)
            pixels = u8.shape[0] * u8.shape[1]
            per_image.append(
                {
                    "image": label,
                    "encode_seconds": t_dec - t_enc,
                    "decode_seconds": t_end - t_dec,
                    "bpp": len(blob) * 8.0 / pixels,
                    "estimated_bpp": est_bits / pixels,
                    "psnr": psnr_u8(recon, u8),
                    "ms_ssim": ms_ssim_u8(recon, u8),
                    "lpips": lpips.score(recon, u8),
                    "mean_color_delta_e": mean_color_delta_e(recon, u8),
                    "block_color_delta_e": block_color_delta_e(recon, u8),
                    "bit_exact": bool(np.array_equal(decoded, recon)),
                }
            )
        rd = {
            k: _mean(r[k] for r in per_image)
            for k in ("bpp", "estimated_bpp", "psnr", "ms_ssim", "lpips", "mean_color_delta_e", "block_color_delta_e")
            + ("encode_seconds", "decode_seconds")
        } | {
            "bit_exact_images": sum(r["bit_exact"] for r in per_image),
            "num_images": len(per_image),
        }
        rd["actual_over_estimated"] = rd["bpp"] / rd["estimated_bpp"]
        rd["images"] = per_image
        codec_seconds = time.perf_counter() - t0

        # ---- JPEG RD points
        jpeg_rd = []
        for q in ec.jpeg_qualities:
            rows = [(*jpeg_roundtrip(u8, q), u8) for _, u8 in images]  # (decoded, bpp, original)
            jpeg_rd.append(
                {
                    "quality": int(q),
                    "bpp": _mean(r[1] for r in rows),
                    "psnr": _mean(psnr_u8(r[0], r[2]) for r in rows),
                    "ms_ssim": _mean(ms_ssim_u8(r[0], r[2]) for r in rows),
                    "lpips": _mean(lpips.score(r[0], r[2]) for r in rows),
                    "block_color_delta_e": _mean(block_color_delta_e(r[0], r[2]) for r in rows),
                }
            )

        rd["jpeg_psnr_at_bpp"] = jpeg_psnr_at(jpeg_rd, rd["bpp"])

        # ---- successive compression
        sic, last = self.successive(cd, images, per_image) if ec.sic_cycles else ({}, None)
        results = {
            "eval_set": set_name,
            "prior": cd.prior,
            "lambda1": self.config.loss.lambda1,
            "lambda2": self.config.loss.lambda2,
            "rd": rd,
            "jpeg_rd": jpeg_rd,
            "sic": sic,
            "codec_seconds_per_image": codec_seconds / max(1, len(images)),
        }
        self._plots(outdir, results, last)
        return results

    def successive(self, cd: Codec, images, per_image) -> tuple[dict, dict]:
        """(the ``sic`` results, the first image's cycles for samples.png)."""
        ec = self.config.eval
        n = ec.sic_cycles
        subset = images if not ec.sic_images else images[: ec.sic_images]
        other = (
            load_codec(ec.variable_with, what=f"config eval.variable_with={ec.variable_with!r}")
            if ec.variable_with
            else None
        )
        curves = {"model": [], "jpeg": [], "shifted": [], "model_variable": [], "jpeg_variable": []}
        qualities, last = [], {}
        lp = {"model": [], "jpeg": []}  # per image: (LPIPS after cycle 1, after cycle n)
        traces = []  # the model's cycles traced through its latent symbols (methods.compression.sic)
        for i, (_, u8) in enumerate(imageio.progress(subset, f"SIC x{n}")):
            q = matched_quality(u8, per_image[i]["bpp"])
            qualities.append(q)
            first_jpeg = jpeg_fn(q)(u8)  # cycle 1, computed once
            traces.append(sic_trace.trace(cd, u8, n, psnr_u8))
            c, first_model, last_model = traces[-1]["psnr"], traces[-1]["first"], traces[-1]["last"]
            curves["model"].append(c)
            lp["model"].append((lpips.score(first_model, u8), lpips.score(last_model, u8)))
            c, last_jpeg = sic_curve(jpeg_fn(q), u8, n)
            curves["jpeg"].append(c)
            lp["jpeg"].append((lpips.score(first_jpeg, u8), lpips.score(last_jpeg, u8)))
            if i == 0:
                last = {"image": u8, "model_1": first_model, "model_n": last_model, "jpeg_n": last_jpeg}
            if other is not None:
                q2 = matched_quality(u8, len(other.encode_bytes(u8.astype(np.float32) / 255.0)) * 8.0 / u8[..., 0].size)
                curves["model_variable"].append(sic_curve(None, u8, n, [cd.roundtrip_u8, other.roundtrip_u8])[0])
                curves["jpeg_variable"].append(sic_curve(None, u8, n, [jpeg_fn(q), jpeg_fn(q2)])[0])
        s = ec.sic_shifts
        if s > 1:
            u8 = subset[0][1]
            h, w = u8.shape[0] - s + 1, u8.shape[1] - s + 1
            for k in range(s):
                crop = np.ascontiguousarray(u8[k : k + h, k : k + w])
                curves["shifted"].append(sic_curve(cd.roundtrip_u8, crop, n)[0])
        out = {"cycles": n, "num_images": len(subset), "jpeg_qualities": qualities}
        if other is not None:
            out["variable_with"] = ec.variable_with
        for k, cs in curves.items():
            if not cs:
                continue
            mean = np.mean(np.asarray(cs), axis=0)
            out[k] = {"psnr": [float(v) for v in mean], "drop": float(mean[0] - mean[-1])}
            if k in lp:
                out[k]["lpips_first"] = _mean(a for a, _ in lp[k])
                out[k]["lpips_final"] = _mean(b for _, b in lp[k])
            if k.endswith("_variable"):  # the last cycle run at this model's own rate (odd n)
                out[k]["drop_same_rate"] = float(mean[0] - mean[(n - 1) // 2 * 2])
            if k == "shifted":
                out[k]["final_psnr_per_shift"] = [float(c[-1]) for c in cs]
                out[k]["image"] = subset[0][0]
        if traces and n > 1:
            out["model"]["symbols"] = sic_trace.summarize(traces)
            if last:
                last["trace"] = traces[0]
        return out, last

    def _plots(self, outdir: str, results: dict, last: dict | None) -> None:
        label = f"this model (λ2={results['lambda2']:g})"
        plots.plot_rd(os.path.join(outdir, "rd.png"), {label: results}, f"{results['eval_set']}: rate-distortion")
        sic = results["sic"]
        if sic:
            plots.plot_sic(
                os.path.join(outdir, "sic.png"), {"": sic}, title=f"{results['eval_set']}: successive compression"
            )
            if last:
                row = [last[k].astype(np.float32) / 255.0 for k in ("image", "model_1", "model_n", "jpeg_n")]
                n = sic["cycles"]
                columns = ("original", "model, cycle 1", f"model, cycle {n}", f"JPEG, cycle {n}")
                evaluation.save_samples(outdir, [row], columns=columns)
            if last and "trace" in last and "symbols" in sic["model"]:
                title = f"{results['eval_set']}: latent symbols under successive compression"
                sic_trace.plot(os.path.join(outdir, "sic_symbols.png"), sic["model"]["symbols"], last["trace"], title)

    def predict(self, state, input_path: str, output_path: str) -> list[str]:
        """Image(s) → bitstream file(s) (.rjx); bitstream file(s) (a file, or a folder of them) → PNG."""
        cd = self.codec(state)
        streams = _bitstreams(input_path)
        if streams:
            if os.path.isdir(input_path) and (images := _images_under(input_path)):
                logger.console().warning(
                    f"{input_path}: decoding its {len(streams)} .rjx file(s); its {len(images)} image(s) are left "
                    f"alone (give a folder of images alone to encode them)"
                )
            written = []
            pairs = imageio.predict_pairs(
                input_path, output_path, ".png", folder_files=lambda _: streams, what="the decoded image"
            )
            for src, dst in imageio.progress(pairs, "decode"):
                with open(src, "rb") as f:
                    img = cd.decode(f.read(), src)
                imageio.save_image(dst, img.astype(np.float32) / 255.0)
                written.append(dst)
            return written
        written = []
        pairs = imageio.predict_pairs(
            input_path, output_path, EXTENSION, allowed=(EXTENSION,), what=f"a bitstream (encoding {input_path})"
        )
        for src, dst in imageio.progress(pairs, "encode"):
            blob = cd.encode_bytes(imageio.load_image(src))
            imageio.write_atomic(dst, lambda f, b=blob: f.write(b))
            written.append(dst)
        return written


def _images_under(folder: str) -> list[str]:
    try:
        return imageio.list_images(folder)
    except imageio.ImageError:  # none
        return []


def _bitstreams(path: str) -> list[str]:
    """The .rjx files of a predict input: the file itself, or every .rjx under a folder."""
    if os.path.isfile(path):
        return [path] if path.lower().endswith(EXTENSION) else []
    if os.path.isdir(path):
        return sorted(
            os.path.join(root, f) for root, _, files in os.walk(path) for f in files if f.lower().endswith(EXTENSION)
        )
    return []
