"""The bitstream of the learned codec: a versioned header and range-coded symbols (constriction).

File layout (little-endian)::

    magic "RJXC" | version u8 | prior u8 | model id 8 bytes | height u32 | width u32 |
    y_lo i32 | y_hi i32 | z_lo i32 | z_hi i32 | mean colour u32 | payload bytes u32 | CRC-32 u32 | payload

(the CRC covers everything before it and the payload; the mean colour is
0xRRGGBB, the image's 8-bit mean per channel for a model with mean removal, 0
otherwise)

The payload is one constriction range-coder stream (``perfect=False``
categorical models built from the model's **integer** tables, see
`methods.compression.coding_tables`): the factorized-prior symbols channel by channel over
[lo, hi], then, for the hyperprior, the latent's symbols grouped by their
scale-table index (ascending), each group under that scale's quantized
Gaussian over [y_lo, y_hi]. The indices come from ẑ through a fixed-point
h_s, so encoder and decoder derive them bit for bit on any machine. The
ranges are the image's own extremes (widened to the tables' quantile
support), so no escape codes are needed.

Every failure to read a file (not ours, another version, another model,
truncated, corrupted) is a ``CodecError`` naming the file and what is wrong.
Range decoding garbage never fails by itself, so the CRC catches accidental
damage. A CRC is trivial to recompute, so a forged file is bounded before any
work is done (`check_header`, `check_work`), and after symbol decoding the
stream must be consumed exactly:

* symbol ranges within ±`SYMBOL_LIMIT` (the coding tables' limit; the
  encoder refuses latents beyond it);
* at most `MAX_PIXELS` pixels;
* at most `FREE_SYMBOLS` + `SYMBOLS_PER_BYTE` · payload bytes latent
  symbols, so decoding work is bounded by the file's size (real images need
  far more bits than 1/2048 per symbol);
* constriction's own failures (including Rust panics) become CodecErrors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import zlib

import constriction
import jax
import numpy as np

from common.errors import UserError
from methods.compression import coding_tables

MAGIC = b"RJXC"
# 2: integer coding tables and fixed-point scale indices (coding_tables); 3: mean colour; 4: the mean-scale prior
VERSION = 4
READS = (3, 4)  # version 3 files (factorized and scale hyperprior) have the same layout
PRIORS = ("factorized", "hyperprior", "meanscale")  # the header's entropy-model id is the index here
HYPER_PRIORS = ("hyperprior", "meanscale")
_HEADER = struct.Struct("<4sBB8sIIiiiiIII")
HEADER_FIELDS = (
    *("magic", "version", "prior", "id", "height", "width"),
    *("y_lo", "y_hi", "z_lo", "z_hi", "dc", "nbytes", "crc"),
)
HEADER_BYTES = _HEADER.size
SYMBOL_LIMIT = 4096  # |latent symbol| the codec handles (coding tables span at most 2·4096 + 1 entries)
MAX_PIXELS = 2**25  # 33.5 MP (8K UHD is 33.2 MP): larger headers are refused before decoding
FREE_SYMBOLS = 2**16  # latent symbols any payload may announce ...
SYMBOLS_PER_BYTE = 2**14  # ... plus this many per payload byte


class CodecError(UserError):
    """A bitstream cannot be decoded (the message names the file and the reason)."""


@dataclasses.dataclass(frozen=True)
class Header:
    prior: str
    model_id: bytes
    height: int
    width: int
    y_range: tuple[int, int]
    z_range: tuple[int, int] = (0, 0)
    dc: tuple[int, int, int] = (0, 0, 0)  # the 8-bit mean colour (mean removal), else zeros


def model_id(params, prior: str) -> bytes:
    """8 bytes identifying a model: SHA-256 of its prior and every parameter's shape and bytes."""
    h = hashlib.sha256(prior.encode())
    for leaf in jax.tree_util.tree_leaves(params):
        a = np.ascontiguousarray(np.asarray(leaf, np.float32))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.digest()[:8]


def pack(header: Header, payload: np.ndarray) -> bytes:
    body = np.asarray(payload, np.uint32).astype("<u4").tobytes()
    fields = [MAGIC, VERSION, PRIORS.index(header.prior), header.model_id, header.height, header.width]
    r, g, b = header.dc
    fields += [*header.y_range, *header.z_range, r << 16 | g << 8 | b, len(body)]
    crc = zlib.crc32(_HEADER.pack(*fields, 0)[:-4] + body)
    return _HEADER.pack(*fields, crc) + body


def unpack(blob: bytes, name: str = "bitstream") -> tuple[Header, np.ndarray]:
    """Header and payload words of a file's bytes; CodecError on anything wrong."""
    if len(blob) < HEADER_BYTES:
        if not MAGIC.startswith(blob[:4]):
            raise CodecError(f"{name}: not a restore-jax compressed image (no {MAGIC.decode()} header)")
        raise CodecError(f"{name}: truncated header ({len(blob)} of {HEADER_BYTES} bytes)")
    magic, version, prior, mid, h, w, ylo, yhi, zlo, zhi, dc, nbytes, crc = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise CodecError(f"{name}: not a restore-jax compressed image (starts with {magic!r}, not {MAGIC!r})")
    if version not in READS:
        raise CodecError(f"{name}: bitstream version {version}; this code reads versions {READS[0]}-{READS[-1]}")
    if prior >= len(PRIORS) or (version < 4 and PRIORS[prior] == "meanscale"):
        raise CodecError(f"{name}: unknown entropy model id {prior} in a version {version} header")
    body = blob[HEADER_BYTES:]
    if len(body) != nbytes:
        what = "truncated" if len(body) < nbytes else "has trailing bytes"
        raise CodecError(f"{name}: {what}: the header announces {nbytes} payload bytes, the file has {len(body)}")
    if zlib.crc32(blob[: HEADER_BYTES - 4] + body) != crc or nbytes % 4:
        raise CodecError(f"{name}: corrupted (CRC-32 of header and payload does not match)")
    if dc >> 24:
        raise CodecError(f"{name}: corrupted header (mean colour field {dc:#x} exceeds 0xFFFFFF)")
    header = Header(PRIORS[prior], mid, h, w, (ylo, yhi), (zlo, zhi), (dc >> 16, dc >> 8 & 255, dc & 255))
    check_header(header, name)
    return header, np.frombuffer(body, "<u4").astype(np.uint32)


def check_header(header: Header, name: str) -> None:
    """Size and symbol ranges a real encoder can produce, else a CodecError."""
    h, w = header.height, header.width
    if h == 0 or w == 0 or h * w > MAX_PIXELS:
        raise CodecError(f"{name}: corrupted header (image of {h}x{w}; this decoder takes 1 to {MAX_PIXELS} pixels)")
    ranges = {"y": header.y_range} | ({"z": header.z_range} if header.prior in HYPER_PRIORS else {})
    for k, (lo, hi) in ranges.items():
        if not -SYMBOL_LIMIT <= lo <= hi <= SYMBOL_LIMIT:
            raise CodecError(f"{name}: corrupted header ({k} symbol range {lo}..{hi}, limit ±{SYMBOL_LIMIT})")
    if header.prior in HYPER_PRIORS and not header.y_range[0] <= -1 < 1 <= header.y_range[1]:
        raise CodecError(f"{name}: corrupted header (y symbol range {header.y_range} must contain -1..1)")


def check_work(symbols: int, payload_bytes: int, name: str) -> None:
    """Refuses a header that announces more latent symbols than its payload could carry."""
    limit = FREE_SYMBOLS + SYMBOLS_PER_BYTE * payload_bytes
    if symbols > limit:
        raise CodecError(
            f"{name}: corrupted header ({symbols} latent symbols announced for {payload_bytes} payload bytes; "
            f"at most {limit})"
        )


def check_symbols(symbols: np.ndarray, what: str) -> None:
    """The encoder's side of SYMBOL_LIMIT: a clear error for latents the format cannot carry."""
    if symbols.size and int(np.abs(symbols).max()) > SYMBOL_LIMIT:
        raise CodecError(
            f"{what}: latent symbols reach {int(np.abs(symbols).max())}, beyond the codable ±{SYMBOL_LIMIT}"
        )


def decoding(name: str):
    """Context: any failure inside the range decoder (Rust panics included) -> CodecError naming the file."""
    return _Decoding(name)


class _Decoding:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if kind is None or issubclass(kind, (KeyboardInterrupt, SystemExit, CodecError)):
            return False
        # constriction raises ValueError/RuntimeError, or pyo3's PanicException (a BaseException) on a panic
        raise CodecError(f"{self.name}: the payload does not decode ({kind.__name__}: {e})") from e


def check_exhausted(dec, name: str) -> None:
    """After the last symbol the stream must be used up: leftover or missing words mean a forged payload."""
    if not dec.maybe_exhausted():
        raise CodecError(f"{name}: corrupted payload (the range-coded stream does not end after the last symbol)")


# ----------------------------------------------------------------------------- entropy coding


def encoder() -> constriction.stream.queue.RangeEncoder:
    return constriction.stream.queue.RangeEncoder()


def decoder(words: np.ndarray) -> constriction.stream.queue.RangeDecoder:
    return constriction.stream.queue.RangeDecoder(np.asarray(words, np.uint32))


def _check_range(symbols: np.ndarray, lo: int, hi: int, what: str) -> None:
    if symbols.size and (symbols.min() < lo or symbols.max() > hi):
        raise ValueError(f"{what}: symbols {symbols.min()}..{symbols.max()} fall outside the coded range {lo}..{hi}")


def _categorical(row: np.ndarray, lo: int, hi: int):
    return constriction.stream.model.Categorical(coding_tables.probabilities(row, lo, hi), perfect=False)


def encode_factorized(enc, symbols: np.ndarray, tables: np.ndarray, lo: int, hi: int) -> None:
    """Symbols [C, K] (int), channel c under the integer row tables[c] restricted to lo..hi."""
    symbols = np.asarray(symbols, np.int64)
    _check_range(symbols, lo, hi, "factorized prior")
    for c in range(symbols.shape[0]):
        enc.encode((symbols[c] - lo).astype(np.int32), _categorical(tables[c], lo, hi))


def decode_factorized(dec, count: int, tables: np.ndarray, lo: int, hi: int) -> np.ndarray:
    out = np.empty((tables.shape[0], count), np.int32)
    for c in range(tables.shape[0]):
        out[c] = dec.decode(_categorical(tables[c], lo, hi), count) + lo
    return out


def encode_indexed(enc, symbols: np.ndarray, indices: np.ndarray, tables: np.ndarray, lo: int, hi: int) -> None:
    """Symbols (any shape) each under the integer row tables[index] over lo..hi, grouped by index (ascending)."""
    symbols, indices = np.asarray(symbols, np.int64).ravel(), np.asarray(indices).ravel()
    _check_range(symbols, lo, hi, "Gaussian conditional")
    for i in np.unique(indices):
        enc.encode((symbols[indices == i] - lo).astype(np.int32), _categorical(tables[i], lo, hi))


def decode_indexed(dec, indices: np.ndarray, tables: np.ndarray, lo: int, hi: int) -> np.ndarray:
    flat = np.asarray(indices).ravel()
    out = np.empty(flat.shape, np.int32)
    for i in np.unique(flat):
        sel = flat == i
        out[sel] = dec.decode(_categorical(tables[i], lo, hi), int(sel.sum())) + lo
    return out.reshape(np.shape(indices))
