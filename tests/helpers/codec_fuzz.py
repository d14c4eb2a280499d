"""Seeded mutations of valid bitstreams, decoded one by one; run by tests/test_compression.py in a subprocess.

    python tests/helpers/codec_fuzz.py [N]

Prints one JSON line: the number of cases, how many ended in a CodecError or
in an image of the header's size, the other outcomes (which must be none),
and the slowest case's seconds. An abort inside a native library kills this
process, not pytest.
"""

import json
import struct
import sys
import time
import zlib

import jax
import numpy as np

from configs.compression import get_config
from methods.compression import bitstream
from methods.compression import codec as mcodec
from methods.compression import model as mc

FIELDS = ("version", "prior", "height", "width", "y_lo", "y_hi", "z_lo", "z_hi", "dc", "nbytes")
INDEX = {f: bitstream.HEADER_FIELDS.index(f) for f in FIELDS}
EXTREMES = (0, 1, -1, 2, 63, 64, 4096, 4097, -4097, 65535, 2**16 + 1, 2**24, 2**31 - 1, -(2**31), 16000)


def repack(fields: list, body: bytes) -> bytes:
    """Header fields + body with the CRC recomputed, as a forger would."""
    head = bitstream._HEADER.pack(*fields[:-1], 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(head + body)) + body


def fit(value: int, index: int) -> int:
    """`value` wrapped into the field's C type so that it packs."""
    if index in (INDEX["version"], INDEX["prior"]):
        return value % 256
    if index in (INDEX["height"], INDEX["width"], INDEX["dc"], INDEX["nbytes"]):
        return value % 2**32
    return (value + 2**31) % 2**32 - 2**31


def mutate(blob: bytes, rng: np.random.Generator, others: list[bytes]) -> tuple[str, bytes]:
    fields = list(bitstream._HEADER.unpack_from(blob))
    body = blob[bitstream.HEADER_BYTES :]
    kind = rng.integers(6)
    if kind == 0:  # random bytes flipped anywhere (the CRC should catch them)
        b = bytearray(blob)
        for _ in range(rng.integers(1, 5)):
            b[rng.integers(len(b))] ^= int(rng.integers(1, 256))
        return "bytes", bytes(b)
    if kind == 1:  # one or two header fields forged, CRC recomputed
        for f in rng.choice(FIELDS, size=rng.integers(1, 3), replace=False):
            i = INDEX[str(f)]
            v = int(rng.choice(EXTREMES)) if rng.random() < 0.6 else int(fields[i]) + int(rng.integers(-70, 70))
            fields[i] = fit(v, i)
        return "fields", repack(fields, body)
    if kind == 2:  # payload words replaced, CRC recomputed
        b = bytearray(body)
        for _ in range(rng.integers(1, 4)):
            if len(b) >= 4:
                j = int(rng.integers(len(b) // 4)) * 4
                b[j : j + 4] = rng.integers(0, 2**32, dtype=np.uint64).astype("<u4").tobytes()
        return "payload", repack(fields, bytes(b))
    if kind == 3:  # truncated, with or without the header's length and CRC fixed
        cut = int(rng.integers(0, len(blob)))
        if rng.random() < 0.5 or cut < bitstream.HEADER_BYTES:
            return "truncated", blob[:cut]
        nb = (cut - bitstream.HEADER_BYTES) // 4 * 4
        fields[INDEX["nbytes"]] = nb
        return "truncated+crc", repack(fields, body[:nb])
    if kind == 4:  # concatenated with another valid file or with random words
        extra = (
            others[int(rng.integers(len(others)))] if rng.random() < 0.5 else rng.bytes(4 * int(rng.integers(1, 64)))
        )
        if rng.random() < 0.5:
            return "concatenated", blob + extra
        nb = len(body) + len(extra) // 4 * 4
        fields[INDEX["nbytes"]] = nb
        return "concatenated+crc", repack(fields, (body + extra)[:nb])
    # random payload of random length behind a valid, recomputed header
    nb = 4 * int(rng.integers(0, 200))
    fields[INDEX["nbytes"]] = nb
    return "random payload", repack(fields, rng.bytes(nb))


def main(n: int) -> None:
    codecs, blobs = [], []
    for prior in ("hyperprior", "meanscale", "factorized"):
        cfg = get_config("test")
        cfg.model.prior = prior
        nets = mc.Nets(cfg)
        cd = mcodec.Codec(nets.model, mc.init_state(jax.random.key(0), nets, cfg).params)
        for h, w in ((64, 96), (37, 53)):
            img = np.random.default_rng(h).random((h, w, 3)).astype(np.float32)
            codecs.append(cd)
            blobs.append(cd.encode_bytes(img))
    rng = np.random.default_rng(1234)
    outcomes, bad, slowest = {"CodecError": 0, "image": 0}, [], 0.0
    for case in range(n):
        k = case % len(blobs)
        kind, data = mutate(blobs[k], rng, blobs)
        t = time.perf_counter()
        try:
            img = codecs[k].decode(data, f"case{case}.rjx")
            hdr = bitstream._HEADER.unpack_from(data)
            if img.shape != (hdr[4], hdr[5], 3) or img.dtype != np.uint8:
                bad.append([case, kind, f"image of shape {img.shape} for a {hdr[4]}x{hdr[5]} header"])
            else:
                outcomes["image"] += 1
        except bitstream.CodecError as e:
            if f"case{case}.rjx" not in str(e):
                bad.append([case, kind, f"CodecError without the file name: {e}"])
            else:
                outcomes["CodecError"] += 1
        except BaseException as e:  # noqa: BLE001 - the point is to catch everything else
            bad.append([case, kind, f"{type(e).__name__}: {e}"[:300]])
        slowest = max(slowest, time.perf_counter() - t)
    print(json.dumps({"cases": n, **outcomes, "bad": bad, "slowest_s": slowest}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
