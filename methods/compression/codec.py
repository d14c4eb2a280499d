"""Image ↔ bitstream for one trained compression model.

``Codec`` turns an image into a bitstream file (methods.compression.bitstream) and back. The
encoder computes the integer symbols with one jitted function and the
reconstruction with another (f_rc∘f_d of the symbols); the decoder recovers
the same symbols from the file and runs the same f_d, so its output is
bit-identical to the encoder's in-process reconstruction. The entropy coding
uses only the model's integer tables (methods.compression.coding_tables) and, for the
hyperprior, scale indices computed in fixed point from ẑ, so the symbols a
file decodes to do not depend on the machine. Images of any size are
mirror-padded to the model's stride and cropped back; bpp counts the
original pixels.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from common.data import imageio
from common.quality import evaluation
from common.train import checkpoint
from methods.compression import bitstream, coding_tables
from methods.compression.model import Compressor, compressor, integer_tables

EXTENSION = ".rjx"
TABLE_LIMIT = bitstream.SYMBOL_LIMIT  # the quantile support taken into the coding tables, at most ±this


def codec_functions(model: Compressor) -> dict:
    """The jitted pieces of the codec (params are an argument, so one set serves every checkpoint)."""

    def jitted(method, static=()):
        return jax.jit(lambda p, *a: model.apply({"params": p}, *a, method=method), static_argnums=static)

    return {
        "symbols": jitted(Compressor.symbols),
        "analysis": jitted(Compressor.analysis_window),
        "latent_symbols": jitted(Compressor.latent_symbols),
        "decode": jitted(Compressor.decode_symbols),
        "synthesis": jitted(Compressor.synthesis),
        "likelihoods": jitted(Compressor.quantized_likelihoods),
        "tables": jax.jit(functools.partial(integer_tables, model)),
    }


def tables_of(model: Compressor, params, tables=None, functions=None) -> dict:
    """Integer coding tables: the state's (stored in the checkpoint) or, when absent, finalized here."""
    if not coding_tables.is_finalized(tables):
        tables = (functions or codec_functions(model))["tables"](params)
    return {k: np.asarray(v) for k, v in tables.items()}


# Decoding runs f_d in windows of at most DECODE_TILE + 2·DECODE_OVERLAP output pixels a side, so that its memory
# is that of one window whatever the size a header announces (whole, f_d needs ~1.2 GB per megapixel at the
# default width). The overlap (4 latents) is twice f_d's receptive-field radius in latents (four 5x5 stride-2
# transposed convolutions: 1 + 1/2 + 1/4 + 1/8 < 2), so windows stitch to the whole-image decoding.
DECODE_TILE = 512
DECODE_OVERLAP = 64
# Encoding runs f_e in windows the same way (input pixels; f_e's receptive-field radius is 2 + 4 + 8 + 16 = 30
# pixels: four 5x5 stride-2 convolutions), then h_a on the whole latent grid (1/256 of the pixels).
ENCODE_TILE = 512
ENCODE_OVERLAP = 64
# Images of up to this many (padded) pixels are coded in one piece (windows cost ~1.3x the work and run less
# efficiently; at the default width one megapixel needs ~1.2 GB to decode whole and half that to encode).
WHOLE_PIXELS = 2**20


class Codec:
    """Image ↔ bitstream for one trained model (its parameters and integer coding tables fixed).

    `decode_tile` / `decode_overlap`: the windows of f_d in output pixels (multiples of 16; tile 0 = whole);
    `encode_tile` / `encode_overlap`: those of f_e in input pixels; images of at most `whole_pixels` (padded)
    pixels are coded whole."""

    def __init__(
        self,
        model: Compressor,
        params,
        functions: dict | None = None,
        tables: dict | None = None,
        *,
        decode_tile: int = DECODE_TILE,
        decode_overlap: int = DECODE_OVERLAP,
        encode_tile: int = ENCODE_TILE,
        encode_overlap: int = ENCODE_OVERLAP,
        whole_pixels: int = WHOLE_PIXELS,
    ):
        self.model, self.params = model, params
        self.decode_tile, self.decode_overlap = decode_tile, decode_overlap
        self.encode_tile, self.encode_overlap = encode_tile, encode_overlap
        self.whole_pixels = whole_pixels
        self.prior = model.prior
        fns = functions or codec_functions(model)  # pass them in to reuse the compiled code across params
        self._symbols, self._decode, self._lik = fns["symbols"], fns["decode"], fns["likelihoods"]
        self._synthesis, self._analysis, self._latent_symbols = fns["synthesis"], fns["analysis"], fns["latent_symbols"]
        self._fns, self._given_tables = fns, tables
        self._coded = "z" if model.hyper else "y"  # the latent under the factorized prior
        if model.hyper:
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
        return bitstream.model_id([self.params, self.tables], self.prior + ("+dc" if self.model.mean_removal else ""))

    # -- pieces -----------------------------------------------------------------------------------
    def pad(self, img: np.ndarray) -> np.ndarray:
        return evaluation.pad_to_multiple(img, self.model.multiple).astype(np.float32)

    def symbols(self, img: np.ndarray) -> dict:
        """The integer symbols of an image ({"y", "dc"}, "z" for the hyper priors). The mean-scale prior's also
        carry what its fixed-point h_s derived from ẑ: "index" (scale-table indices) and "mu" (μ̂, float32), and
        "y" is round(y − μ̂)."""
        x = self.pad(img)
        t, o = self.encode_tile, self.encode_overlap
        if self._whole(x.shape[0], x.shape[1], t, o):
            out = {k: np.asarray(v) for k, v in self._symbols(self.params, x[None]).items()}
        else:  # f_e window by window (`evaluation.padded`), so memory stays that of one window
            dc = np.round(x.mean(axis=(0, 1), dtype=np.float64) * 255.0).astype(np.int32)[None]
            fn = lambda window: self._analysis(self.params, window, dc)  # noqa: E731
            m = self.model.multiple
            y = evaluation.padded(fn, x, m, tile=t, overlap=o, clip=False, shrink=16)
            out = {k: np.asarray(v) for k, v in self._latent_symbols(self.params, y[None], dc).items()}
        if self.prior == "meanscale":
            out["index"], out["mu"] = self.indices_and_means(out["z"])
            out["y"] = np.round(out["y"] - out["mu"]).astype(np.int32)
        return out

    def _whole(self, h: int, w: int, tile: int, overlap: int) -> bool:
        """Whether an h x w (padded) image is coded in one piece: no windows, at most `whole_pixels`, or one
        window's size."""
        return not tile or h * w <= self.whole_pixels or max(h, w) <= tile + 2 * overlap

    def latent(self, syms: dict) -> np.ndarray:
        """What f_d decodes: the symbols, or ŷ = symbols + μ̂ for the mean-scale prior (float64 sum, then float32:
        IEEE rounding, the same number everywhere)."""
        if self.prior == "meanscale":
            return (syms["y"].astype(np.float64) + syms["mu"]).astype(np.float32)
        return syms["y"]

    def reconstruct(self, syms: dict, height: int, width: int) -> np.ndarray:
        """f_rc∘f_d of the symbols ({"y", "dc"}, batch of one), cropped: uint8 (H, W, 3).

        A latent grid wider than a decode window goes through f_d window by window (`evaluation.padded`), and
        the mean colour is put back on the stitched image: memory stays that of one window."""
        y = self.latent(syms)
        t, o = self.decode_tile // 16, self.decode_overlap // 16
        if self._whole(16 * y.shape[1], 16 * y.shape[2], 16 * t, 16 * o):
            x = self._decode(self.params, jnp.asarray(y), jnp.asarray(syms["dc"]))
            return imageio.to_uint8(x)[0, :height, :width]
        fn = lambda window: self._synthesis(self.params, window)  # noqa: E731
        x = evaluation.padded(fn, np.asarray(y[0]), 1, 16, tile=t, overlap=o, clip=False)
        if self.model.mean_removal:  # as Compressor._synthesis: re-centred on the coded mean colour
            x -= x.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)
            x += np.asarray(syms["dc"][0], np.float32) / 255.0
        out = np.empty((height, width, 3), np.uint8)
        for r in range(0, height, 256):  # in bands: no full-size float temporaries
            out[r : r + 256] = imageio.to_uint8(x[r : min(r + 256, height), :width])
        return out

    def roundtrip(self, img: np.ndarray) -> np.ndarray:
        """f_ed in process (no entropy coding): uint8 reconstruction of float RGB [0, 1]."""
        return self.reconstruct(self.symbols(img), *img.shape[:2])

    def roundtrip_u8(self, u8: np.ndarray) -> np.ndarray:
        """f_ed on an 8-bit image: one SIC cycle."""
        return self.roundtrip(u8.astype(np.float32) / 255.0)

    def estimated_bits(self, syms: dict) -> float:
        """−Σ log₂ p under the model's float densities (before table and scale quantization)."""
        lik = self._lik(self.params, {k: jnp.asarray(syms[k]) for k in ("y", "z") if k in syms})
        return float(sum(-np.sum(np.log2(np.asarray(v, np.float64))) for v in lik.values()))

    def scale_indices(self, z: np.ndarray) -> np.ndarray:
        """Scale-table index of each y latent from ẑ's symbols: integer arithmetic, identical on every machine."""
        if self.prior == "meanscale":
            return self.indices_and_means(z)[0]
        return coding_tables.scale_indices(self._hs, self._medians, z, self.tables["thresholds"])

    def indices_and_means(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mean-scale prior's scale indices and μ̂ from ẑ's symbols, in fixed point (identical everywhere)."""
        return coding_tables.scale_indices_and_means(self._hs, self._medians, z, self.tables["thresholds"])

    def _table_range(self, sym: np.ndarray) -> tuple[int, int]:
        return min(self._support[0], int(sym.min())), max(self._support[1], int(sym.max()))

    # -- the codec --------------------------------------------------------------------------------
    def encode(self, img: np.ndarray) -> tuple[bytes, np.ndarray, float]:
        """(file bytes, the in-process uint8 reconstruction, estimated bits) of float RGB [0, 1]."""
        blob, syms = self.encode_symbols(img)
        return blob, self.reconstruct(syms, *img.shape[:2]), self.estimated_bits(syms)

    def encode_bytes(self, img: np.ndarray) -> bytes:
        """The file's bytes only (what an encoder does: no reconstruction)."""
        return self.encode_symbols(img)[0]

    def encode_symbols(self, img: np.ndarray) -> tuple[bytes, dict]:
        """(the file's bytes, the integer symbols coded in it): the whole of an encoder's work."""
        syms = self.symbols(img)
        return self.pack(syms, *img.shape[:2]), syms

    def pack(self, syms: dict, h: int, w: int) -> bytes:
        """The file's bytes of integer symbols ({"y", "dc"}, and "z" for a hyperprior) of an h x w image."""
        dc = tuple(int(v) for v in syms["dc"][0])
        fact = syms[self._coded]
        for k in ("y", "z") if self.model.hyper else ("y",):
            bitstream.check_symbols(syms[k], f"image {h}x{w}, {k}")
        flo, fhi = self._table_range(fact)
        enc = bitstream.encoder()
        bitstream.encode_factorized(enc, _channels_first(fact), self.tables["factorized"], flo, fhi)
        if self.model.hyper:
            y = syms["y"]
            ylo, yhi = min(int(y.min()), -1), max(int(y.max()), 1)
            index = syms["index"] if "index" in syms else self.scale_indices(fact)
            bitstream.encode_indexed(enc, y, index, self.tables["gaussian"], ylo, yhi)
            header = bitstream.Header(self.prior, self.id, h, w, (ylo, yhi), (flo, fhi), dc)
        else:
            header = bitstream.Header(self.prior, self.id, h, w, (flo, fhi), dc=dc)
        return bitstream.pack(header, enc.get_compressed())

    def decode(self, blob: bytes, name: str = "bitstream") -> np.ndarray:
        """uint8 (H, W, 3) image of a file's bytes; CodecError if it is not this model's valid stream."""
        syms, height, width = self.decode_symbols(blob, name)
        return self.reconstruct(syms, height, width)

    def decode_symbols(self, blob: bytes, name: str = "bitstream") -> tuple[dict, int, int]:
        """({"y", "dc"} integer symbols, height, width) of a file: the entropy decoding alone, exact anywhere."""
        header, words = bitstream.unpack(blob, name)
        if header.prior != self.prior or header.model_id != self.id:
            raise bitstream.CodecError(
                f"{name}: encoded by another model ({header.prior}, id {header.model_id.hex()}); "
                f"this one is {self.prior}, id {self.id.hex()}"
            )
        if any(header.dc) and not self.model.mean_removal:
            raise bitstream.CodecError(f"{name}: corrupted header (a mean colour for a model without mean removal)")
        m = self.model.multiple
        hp, wp = header.height + (-header.height) % m, header.width + (-header.width) % m
        hyper = self.model.hyper
        count = hp // 16 * (wp // 16) * self.model.m + (hp // 64 * (wp // 64) * self.model.n if hyper else 0)
        bitstream.check_work(count, 4 * words.size, name)
        dec = bitstream.decoder(words)
        mu = None
        with bitstream.decoding(name):
            if hyper:
                zlo, zhi = header.z_range
                zshape = (1, hp // 64, wp // 64, self.model.n)
                zc = bitstream.decode_factorized(dec, zshape[1] * zshape[2], self.tables["factorized"], zlo, zhi)
                z = _channels_last(zc, zshape)
                if self.prior == "meanscale":
                    index, mu = self.indices_and_means(z)
                else:
                    index, mu = self.scale_indices(z), None
                y = bitstream.decode_indexed(dec, index, self.tables["gaussian"], *header.y_range)
            else:
                ylo, yhi = header.y_range
                yshape = (1, hp // 16, wp // 16, self.model.m)
                yc = bitstream.decode_factorized(dec, yshape[1] * yshape[2], self.tables["factorized"], ylo, yhi)
                y = _channels_last(yc, yshape)
        bitstream.check_exhausted(dec, name)
        syms = {"y": y, "dc": np.asarray([header.dc], np.int32)}
        if mu is not None:
            syms["mu"] = mu
        return syms, header.height, header.width


def _channels_first(sym: np.ndarray) -> np.ndarray:
    """(1, h, w, C) → (C, h·w)."""
    return sym[0].reshape(-1, sym.shape[-1]).T


def _channels_last(sym: np.ndarray, shape) -> np.ndarray:
    """(C, h·w) → (1, h, w, C)."""
    return sym.T.reshape(shape)


def load_codec(workdir: str, *, what: str | None = None) -> Codec:
    """The codec of another compression run (its config.json and latest checkpoint)."""
    run = checkpoint.load_run(workdir, what=what or workdir, method="compression", needs=("params",))
    m = run.config["model"]
    params = jax.tree.map(jnp.asarray, run.state["params"])
    return Codec(compressor(m), params, tables=run.state.get("tables"))
