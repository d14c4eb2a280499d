"""The real codec, rate-distortion and successive-compression (SIC) evaluation, and predict.

``Codec`` turns an image into a bitstream file (common.codec) and back. The
encoder computes the integer symbols with one jitted function and the
reconstruction with another (f_rc∘f_d of the symbols); the decoder recovers
the same symbols from the file and runs the same f_d, so its output is
bit-identical to the encoder's in-process reconstruction (checked for every
evaluation image). Images of any size are mirror-padded to the model's
stride and cropped back; bpp counts the original pixels.

Evaluation (``eval/metrics.json``), on ../shared/data/kodak when present,
builtin photos otherwise:

* ``rd``: per image and mean: actual bpp (file size, header included),
  estimated bpp (−Σ log₂ p of the rounded latents), their ratio, PSNR
  (RGB, 8-bit), MS-SSIM, LPIPS (v0.1, AlexNet), ``mean_color_delta_e`` (CIE76
  ΔE between the mean colours of original and reconstruction: a colour
  cast), and whether decode(encode(x)) is bit-identical;
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
  LPIPS to I0 after cycle 1 and after the last cycle.

Plots: ``eval/rd.png`` (model point(s) and the JPEG curve),
``eval/sic.png`` (PSNR per cycle), ``eval/samples.png`` (original |
model cycle 1 | model last cycle | JPEG last cycle, per row).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from common import checkpoint, codec, coding_tables, data, degrade, imageio, lpips, metrics
from common.errors import ConfigError
from methods.compression import Compressor, integer_tables

FALLBACK_EVAL = "builtin:astronaut+coffee+chelsea+rocket"
EXTENSION = ".rjx"
TABLE_LIMIT = codec.SYMBOL_LIMIT  # the quantile support taken into the coding tables, at most ±this


def to_u8(x) -> np.ndarray:
    """f_rc on the host: float [0, 1] → uint8."""
    return np.asarray(jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0)).astype(np.uint8)


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def mean_color_delta_e(a: np.ndarray, b: np.ndarray) -> float:
    """CIE76 ΔE between the mean colours of two 8-bit RGB images: a colour cast, not texture."""
    from skimage import color

    mean = lambda u: np.asarray(u, np.float64).reshape(-1, 3).mean(0)[None, None] / 255.0  # noqa: E731
    return float(np.linalg.norm(color.rgb2lab(mean(a)) - color.rgb2lab(mean(b))))


def ms_ssim_u8(a: np.ndarray, b: np.ndarray) -> float | None:
    if min(a.shape[:2]) < 161:
        return None
    f = lambda u: jnp.asarray(u, jnp.float32)[None] / 255.0  # noqa: E731
    return float(metrics.ms_ssim(f(a), f(b))[0])


def codec_functions(model: Compressor) -> dict:
    """The jitted pieces of the codec (params are an argument, so one set serves every checkpoint)."""

    def jitted(method, static=()):
        return jax.jit(lambda p, *a: model.apply({"params": p}, *a, method=method), static_argnums=static)

    return {
        "symbols": jitted(Compressor.symbols),
        "decode": jitted(Compressor.decode_symbols),
        "likelihoods": jitted(Compressor.quantized_likelihoods),
        "tables": jax.jit(functools.partial(integer_tables, model)),
    }


def tables_of(model: Compressor, params, tables=None, functions=None) -> dict:
    """Integer coding tables: the state's (stored in the checkpoint) or, when absent, finalized here."""
    if not coding_tables.is_finalized(tables):
        tables = (functions or codec_functions(model))["tables"](params)
    return {k: np.asarray(v) for k, v in tables.items()}


class Codec:
    """Image ↔ bitstream for one trained model (its parameters and integer coding tables fixed)."""

    def __init__(self, model: Compressor, params, functions: dict | None = None, tables: dict | None = None):
        self.model, self.params = model, params
        self.prior = model.prior
        fns = functions or codec_functions(model)  # pass them in to reuse the compiled code across params
        self._symbols, self._decode, self._lik = fns["symbols"], fns["decode"], fns["likelihoods"]
        self._fns, self._given_tables = fns, tables
        self._coded = "z" if self.prior == "hyperprior" else "y"  # the latent under the factorized prior
        if self.prior == "hyperprior":
            self._hs = jax.tree.map(np.asarray, params["h_s"])
            self._medians = np.asarray(model.apply({"params": params}, method=lambda m: m.entropy_z.medians()))
        lo, hi = model.apply({"params": params}, self._coded, method=Compressor.quantile_support)
        self._support = (
            int(max(-TABLE_LIMIT, math.floor(float(jnp.min(lo))))),
            int(min(TABLE_LIMIT, math.ceil(float(jnp.max(hi))))),
        )

    # Tables and id are needed only to entropy-code: in-process round trips (SIC, sample grids) skip them.
    @functools.cached_property
    def tables(self) -> dict:
        return tables_of(self.model, self.params, self._given_tables, self._fns)

    @functools.cached_property
    def id(self) -> bytes:
        return codec.model_id([self.params, self.tables], self.prior)

    # -- pieces -----------------------------------------------------------------------------------
    def pad(self, img: np.ndarray) -> np.ndarray:
        m = self.model.multiple
        h, w = img.shape[:2]
        return np.pad(img, ((0, (-h) % m), (0, (-w) % m), (0, 0)), mode="symmetric").astype(np.float32)

    def symbols(self, img: np.ndarray) -> dict:
        return {k: np.asarray(v) for k, v in self._symbols(self.params, self.pad(img)[None]).items()}

    def reconstruct(self, y_symbols: np.ndarray, height: int, width: int) -> np.ndarray:
        """f_rc∘f_d of the symbols, cropped: uint8 (H, W, 3)."""
        return to_u8(self._decode(self.params, jnp.asarray(y_symbols)))[0, :height, :width]

    def roundtrip(self, img: np.ndarray) -> np.ndarray:
        """f_ed in process (no entropy coding): uint8 reconstruction of float RGB [0, 1]."""
        return self.reconstruct(self.symbols(img)["y"], *img.shape[:2])

    def roundtrip_u8(self, u8: np.ndarray) -> np.ndarray:
        """f_ed on an 8-bit image: one SIC cycle."""
        return self.roundtrip(u8.astype(np.float32) / 255.0)

    def estimated_bits(self, syms: dict) -> float:
        """−Σ log₂ p under the model's float densities (before table and scale quantization)."""
        lik = self._lik(self.params, {k: jnp.asarray(v) for k, v in syms.items()})
        return float(sum(-np.sum(np.log2(np.asarray(v, np.float64))) for v in lik.values()))

    def scale_indices(self, z: np.ndarray) -> np.ndarray:
        """Scale-table index of each y latent from ẑ's symbols: integer arithmetic, identical on every machine."""
        return coding_tables.scale_indices(self._hs, self._medians, z, self.tables["thresholds"])

    def _table_range(self, sym: np.ndarray) -> tuple[int, int]:
        return min(self._support[0], int(sym.min())), max(self._support[1], int(sym.max()))

    # -- the codec --------------------------------------------------------------------------------
    def encode(self, img: np.ndarray) -> tuple[bytes, np.ndarray, float]:
        """(file bytes, the in-process uint8 reconstruction, estimated bits) of float RGB [0, 1]."""
        blob, syms = self._encode(img)
        return blob, self.reconstruct(syms["y"], *img.shape[:2]), self.estimated_bits(syms)

    def encode_bytes(self, img: np.ndarray) -> bytes:
        """The file's bytes only (what an encoder does: no reconstruction)."""
        return self._encode(img)[0]

    def _encode(self, img: np.ndarray) -> tuple[bytes, dict]:
        h, w = img.shape[:2]
        syms = self.symbols(img)
        fact = syms[self._coded]
        for k, v in syms.items():
            codec.check_symbols(v, f"image {h}x{w}, {k}")
        flo, fhi = self._table_range(fact)
        enc = codec.encoder()
        codec.encode_factorized(enc, _channels_first(fact), self.tables["factorized"], flo, fhi)
        if self.prior == "hyperprior":
            y = syms["y"]
            ylo, yhi = min(int(y.min()), -1), max(int(y.max()), 1)
            codec.encode_indexed(enc, y, self.scale_indices(fact), self.tables["gaussian"], ylo, yhi)
            header = codec.Header(self.prior, self.id, h, w, (ylo, yhi), (flo, fhi))
        else:
            header = codec.Header(self.prior, self.id, h, w, (flo, fhi))
        return codec.pack(header, enc.get_compressed()), syms

    def decode(self, blob: bytes, name: str = "bitstream") -> np.ndarray:
        """uint8 (H, W, 3) image of a file's bytes; CodecError if it is not this model's valid stream."""
        y, height, width = self.decode_symbols(blob, name)
        return self.reconstruct(y, height, width)

    def decode_symbols(self, blob: bytes, name: str = "bitstream") -> tuple[np.ndarray, int, int]:
        """(ŷ's integer symbols, height, width) of a file: the entropy decoding alone, exact on every machine."""
        header, words = codec.unpack(blob, name)
        if header.prior != self.prior or header.model_id != self.id:
            raise codec.CodecError(
                f"{name}: encoded by another model ({header.prior}, id {header.model_id.hex()}); "
                f"this one is {self.prior}, id {self.id.hex()}"
            )
        m = self.model.multiple
        hp, wp = header.height + (-header.height) % m, header.width + (-header.width) % m
        hyper = self.prior == "hyperprior"
        count = hp // 16 * (wp // 16) * self.model.m + (hp // 64 * (wp // 64) * self.model.n if hyper else 0)
        codec.check_work(count, 4 * words.size, name)
        dec = codec.decoder(words)
        with codec.decoding(name):
            if hyper:
                zlo, zhi = header.z_range
                zshape = (1, hp // 64, wp // 64, self.model.n)
                zc = codec.decode_factorized(dec, zshape[1] * zshape[2], self.tables["factorized"], zlo, zhi)
                z = _channels_last(zc, zshape)
                y = codec.decode_indexed(dec, self.scale_indices(z), self.tables["gaussian"], *header.y_range)
            else:
                ylo, yhi = header.y_range
                yshape = (1, hp // 16, wp // 16, self.model.m)
                yc = codec.decode_factorized(dec, yshape[1] * yshape[2], self.tables["factorized"], ylo, yhi)
                y = _channels_last(yc, yshape)
        codec.check_exhausted(dec, name)
        return y, header.height, header.width


def _channels_first(sym: np.ndarray) -> np.ndarray:
    """(1, h, w, C) → (C, h·w)."""
    return sym[0].reshape(-1, sym.shape[-1]).T


def _channels_last(sym: np.ndarray, shape) -> np.ndarray:
    """(C, h·w) → (1, h, w, C)."""
    return sym.T.reshape(shape)


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
    return to_u8(out), size * 8.0 / (u8.shape[0] * u8.shape[1])


def jpeg_fn(quality: int):
    return lambda u8: jpeg_roundtrip(u8, quality)[0]


def jpeg_bpp(u8: np.ndarray, quality: int) -> float:
    return jpeg_roundtrip(u8, quality)[1]


def matched_quality(u8: np.ndarray, bpp: float, qualities=range(1, 96)) -> int:
    """The JPEG quality whose bpp on this image is closest to `bpp`."""
    return min(qualities, key=lambda q: abs(jpeg_bpp(u8, q) - bpp))


def load_codec(workdir: str) -> Codec:
    """The codec of another compression run (its config.json and latest checkpoint)."""
    cfg_path = os.path.join(workdir, "config.json")
    ck_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
    if not os.path.isfile(cfg_path) or not os.path.isdir(ck_dir):
        raise ConfigError(f"{workdir}: not a compression run (needs config.json and checkpoints/)")
    with open(cfg_path) as f:
        cfg = json.load(f)
    if cfg.get("method") != "compression":
        raise ConfigError(f"{workdir}: a {cfg.get('method')!r} run, not a compression run")
    ck = checkpoint.Checkpointer(ck_dir)
    try:
        if ck.latest_step() is None:
            raise ConfigError(f"{workdir}: no checkpoint under {ck_dir}")
        raw = ck.restore_raw()
        params = jax.tree.map(jnp.asarray, raw["params"])
        tables = raw.get("tables")
    finally:
        ck.close()
    m = cfg["model"]
    return Codec(Compressor(prior=m["prior"], n=m["n"], m=m["m"]), params, tables=tables)


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


# ----------------------------------------------------------------------------- evaluation


class Evaluator:
    def __init__(self, config, nets):
        self.config = config
        self.nets = nets
        self._functions = None

    def codec(self, state) -> Codec:
        if self._functions is None:
            self._functions = codec_functions(self.nets.model)
        return Codec(self.nets.model, state.params, self._functions, state.tables)

    def train_samples(self, state, frozen, batch) -> np.ndarray:
        del frozen
        cd = self.codec(state)
        rows = []
        for x in batch["image"][:3]:
            rows.append([x, cd.roundtrip(x).astype(np.float32) / 255.0])
        return imageio.grid(rows)

    def _images(self):
        spec = self.config.eval.data or data.shared_data_dir("kodak") or FALLBACK_EVAL
        (name, source) = data.image_sets(spec)[0]
        n = len(source) if not self.config.eval.max_images else min(len(source), self.config.eval.max_images)
        out = []
        for i in range(n):
            item = source[i]
            label = item.get("name") or os.path.basename(getattr(source, "paths", [""] * n)[i]) or str(i)
            out.append((label, to_u8(item["image"])))
        return name, out

    def evaluate(self, state, frozen, outdir: str) -> dict:
        del frozen
        ec = self.config.eval
        cd = self.codec(state)
        set_name, images = self._images()
        t0 = time.perf_counter()

        # ---- rate-distortion with the real codec
        per_image = []
        for label, u8 in tqdm(images, desc="codec", leave=False):
            x = u8.astype(np.float32) / 255.0
            blob, recon, est_bits = cd.encode(x)
            decoded = cd.decode(blob, label)
            pixels = u8.shape[0] * u8.shape[1]
            per_image.append(
                {
                    "image": label,
                    "bpp": len(blob) * 8.0 / pixels,
                    "estimated_bpp": est_bits / pixels,
                    "psnr": psnr_u8(recon, u8),
                    "ms_ssim": ms_ssim_u8(recon, u8),
                    "lpips": lpips.score(recon, u8),
                    "mean_color_delta_e": mean_color_delta_e(recon, u8),
                    "bit_exact": bool(np.array_equal(decoded, recon)),
                }
            )
        rd = {
            k: _mean(r[k] for r in per_image)
            for k in ("bpp", "estimated_bpp", "psnr", "ms_ssim", "lpips", "mean_color_delta_e")
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
                }
            )

        # ---- successive compression
        sic = self.successive(cd, images, per_image) if ec.sic_cycles else {}
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
        self._plots(outdir, results)
        return results

    def successive(self, cd: Codec, images, per_image) -> dict:
        ec = self.config.eval
        n = ec.sic_cycles
        subset = images if not ec.sic_images else images[: ec.sic_images]
        other = load_codec(ec.variable_with) if ec.variable_with else None
        curves = {"model": [], "jpeg": [], "shifted": [], "model_variable": [], "jpeg_variable": []}
        qualities, last = [], {}
        lp = {"model": [], "jpeg": []}  # per image: (LPIPS after cycle 1, after cycle n)
        for i, (_, u8) in enumerate(tqdm(subset, desc=f"SIC x{n}", leave=False)):
            q = matched_quality(u8, per_image[i]["bpp"])
            qualities.append(q)
            c, last_model = sic_curve(cd.roundtrip_u8, u8, n)
            curves["model"].append(c)
            lp["model"].append((lpips.score(cd.roundtrip_u8(u8), u8), lpips.score(last_model, u8)))
            c, last_jpeg = sic_curve(jpeg_fn(q), u8, n)
            curves["jpeg"].append(c)
            lp["jpeg"].append((lpips.score(jpeg_fn(q)(u8), u8), lpips.score(last_jpeg, u8)))
            if i == 0:
                last = {"image": u8, "model_1": cd.roundtrip_u8(u8), "model_n": last_model, "jpeg_n": last_jpeg}
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
        self._last = last
        return out

    def _plots(self, outdir: str, results: dict) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        j = results["jpeg_rd"]
        ax.plot([p["bpp"] for p in j], [p["psnr"] for p in j], "o-", label="JPEG (Pillow)")
        ax.plot([results["rd"]["bpp"]], [results["rd"]["psnr"]], "r*", ms=12, label=f"model (λ2={results['lambda2']})")
        ax.set(xlabel="bpp", ylabel="PSNR (dB)", title=f"{results['eval_set']}: rate-distortion")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "rd.png"), dpi=120)
        plt.close(fig)
        sic = results["sic"]
        if sic:
            plot_sic(os.path.join(outdir, "sic.png"), {"": sic}, title=f"{results['eval_set']}: successive compression")
            last = getattr(self, "_last", None)
            if last:
                row = [last[k].astype(np.float32) / 255.0 for k in ("image", "model_1", "model_n", "jpeg_n")]
                imageio.save_png(os.path.join(outdir, "samples.png"), imageio.grid([row]))

    def predict(self, state, frozen, input_path: str, output_path: str) -> list[str]:
        """Image(s) → bitstream file(s) (.rjx); bitstream file(s) (a file, or a folder of them) → PNG."""
        del frozen
        cd = self.codec(state)
        streams = _bitstreams(input_path)
        if streams:
            written = []
            for src in streams:
                if os.path.isdir(input_path):
                    rel = os.path.splitext(os.path.relpath(src, input_path))[0] + ".png"
                    dst = os.path.join(output_path, rel)
                else:
                    dst = output_path if output_path.lower().endswith(".png") else output_path + ".png"
                with open(src, "rb") as f:
                    img = cd.decode(f.read(), src)
                imageio.save_png(dst, img.astype(np.float32) / 255.0)
                written.append(dst)
            return written
        written = []
        for src, dst in imageio.predict_pairs(input_path, output_path, ext=EXTENSION):
            blob = cd.encode_bytes(imageio.load_image(src))
            imageio.write_atomic(dst, lambda f, b=blob: f.write(b))
            written.append(dst)
        return written


def _bitstreams(path: str) -> list[str]:
    """The .rjx files of a predict input: the file itself, or every .rjx under a folder."""
    if os.path.isfile(path):
        return [path] if path.lower().endswith(EXTENSION) else []
    if os.path.isdir(path):
        return sorted(
            os.path.join(root, f) for root, _, files in os.walk(path) for f in files if f.lower().endswith(EXTENSION)
        )
    return []


def plot_sic(path: str, runs: dict, title: str = "successive compression") -> None:
    """PSNR(I_n, I0) per cycle for several runs' ``sic`` results ({label: sic})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"model": "-", "model_variable": "--", "shifted": ":", "jpeg": "-", "jpeg_variable": "--"}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (label, sic) in enumerate(runs.items()):
        for k, ls in styles.items():
            is_jpeg = k.startswith("jpeg")
            if k not in sic or (is_jpeg and i > 0):  # JPEG once (from the first run)
                continue
            name = k.replace("_", " ") if is_jpeg else f"{label} {k.replace('_', ' ')}".strip()
            color = "black" if is_jpeg else colors[i % len(colors)]
            ax.plot(range(1, len(sic[k]["psnr"]) + 1), sic[k]["psnr"], ls, color=color, label=name)
    ax.set(xlabel="cycle n", ylabel="PSNR(I_n, I_0) (dB)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(workdirs: list[str], out: str) -> str:
    """Compares several evaluated runs: one SIC plot, one RD plot (with JPEG) and a markdown table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {}
    for w in workdirs:
        path = os.path.join(w, "eval", "metrics.json")
        if not os.path.isfile(path):
            raise ConfigError(f"{w}: no eval/metrics.json (run --mode=eval first)")
        with open(path) as f:
            runs[os.path.basename(os.path.normpath(w))] = json.load(f)
    os.makedirs(out, exist_ok=True)
    plot_sic(os.path.join(out, "sic.png"), {k: r["sic"] for k, r in runs.items() if r.get("sic")})
    fig, ax = plt.subplots(figsize=(5, 4))
    first = next(iter(runs.values()))
    ax.plot([p["bpp"] for p in first["jpeg_rd"]], [p["psnr"] for p in first["jpeg_rd"]], "o-", label="JPEG")
    for k, r in runs.items():
        ax.plot([r["rd"]["bpp"]], [r["rd"]["psnr"]], "*", ms=12, label=k)
    ax.set(xlabel="bpp", ylabel="PSNR (dB)", title=f"{first['eval_set']}: rate-distortion")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "rd.png"), dpi=120)
    plt.close(fig)
    lines = [
        "| run | λ2 | bpp (file) | bpp (est.) | PSNR | MS-SSIM | SIC n=1 → n=N (drop) | variable rate | shifted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def sic_cell(s, k):
        if k not in s:
            return "—"
        p = s[k]["psnr"]
        if k.endswith("_variable"):  # alternating rates: compare cycle 1 with the last cycle at the same rate
            last = (len(p) - 1) // 2 * 2
            return f"{p[0]:.2f} → {p[last]:.2f} at n={last + 1} ({p[0] - p[last]:.2f})"
        return f"{p[0]:.2f} → {p[-1]:.2f} ({s[k]['drop']:.2f})"

    for k, r in runs.items():
        rd, s = r["rd"], r.get("sic", {})
        lines.append(
            f"| {k} | {r['lambda2']:g} | {rd['bpp']:.3f} | {rd['estimated_bpp']:.3f} | {rd['psnr']:.2f} | "
            f"{rd['ms_ssim'] or float('nan'):.4f} | {sic_cell(s, 'model')} | {sic_cell(s, 'model_variable')} | "
            f"{sic_cell(s, 'shifted')} |"
        )
    s = first.get("sic", {})
    if s:
        qs = s["jpeg_qualities"]
        lines.append(
            f"| JPEG (matched q {min(qs)}–{max(qs)}) | | | | | | {sic_cell(s, 'jpeg')} | "
            f"{sic_cell(s, 'jpeg_variable')} | |"
        )
    table = "\n".join(lines)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table + "\n")
    return table


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Compare evaluated compression runs (SIC and RD plots, a table).")
    ap.add_argument("workdirs", nargs="+")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    print(report(a.workdirs, a.out))
