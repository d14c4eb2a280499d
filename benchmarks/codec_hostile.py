"""Time and memory of the decoder on forged bitstreams (valid CRC, hostile header fields).

    python benchmarks/codec_hostile.py [--workdir RUN]

With a compression run's workdir its model is used, else the `test` config's
initial model. Each forged file (the cases of the "hostile files" issue) is
decoded in its own fresh subprocess; printed per case: the outcome, wall
seconds of the decode call, and the process's peak RSS growth during it.
"""

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CASES = {
    "z range -2^31..2^31-1": dict(z_lo=-(2**31), z_hi=2**31 - 1),
    "y range -2^31..2^31-1": dict(y_lo=-(2**31), y_hi=2**31 - 1),
    "size 16000x16000": dict(height=16000, width=16000),
    "size 4000x4000": dict(height=4000, width=4000),
    "z range +-10^6": dict(z_lo=-(10**6), z_hi=10**6),
    "random payload words": dict(body="random"),
}


def forge(blob: bytes, changes: dict) -> bytes:
    import numpy as np

    from methods.compression import bitstream

    fields = dict(zip(bitstream.HEADER_FIELDS, bitstream._HEADER.unpack_from(blob), strict=True))
    body = blob[bitstream.HEADER_BYTES :]
    if changes.get("body") == "random":
        body = np.random.default_rng(0).integers(0, 2**32, len(body) // 4, dtype=np.uint64).astype("<u4").tobytes()
    fields.update({k: v for k, v in changes.items() if k != "body"}, nbytes=len(body))
    head = bitstream._HEADER.pack(*list(fields.values())[:-1], 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(head + body)) + body


def load(workdir):
    import jax

    from methods.compression import codec as mcodec
    from methods.compression import model as mc

    if workdir:
        return mcodec.load_codec(workdir)
    from configs.compression import get_config

    cfg = get_config("test")
    nets = mc.Nets(cfg)
    return mcodec.Codec(nets.model, mc.init_state(jax.random.key(0), nets, cfg).params)


def child(workdir, case):
    import numpy as np

    from methods.compression import bitstream

    cd = load(workdir)
    blob = cd.encode_bytes(np.random.default_rng(0).random((64, 96, 3)).astype(np.float32))
    bad = forge(blob, CASES[case])
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    try:
        cd.decode(bad, "forged.rjx")
        outcome = "image"
    except bitstream.CodecError as e:
        outcome = f"CodecError: {str(e)[:90]}"
    dt = time.perf_counter() - t
    grow = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    print(json.dumps({"case": case, "outcome": outcome, "seconds": dt, "peak_rss_growth_mb": grow}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="")
    ap.add_argument("--case", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.case:
        return child(a.workdir, a.case)
    for case in CASES:
        p = subprocess.run(
            [sys.executable, __file__, "--workdir", a.workdir, "--case", case], capture_output=True, text=True
        )
        line = p.stdout.strip().splitlines()[-1] if p.returncode == 0 else f"rc={p.returncode}: {p.stderr[-300:]}"
        try:
            r = json.loads(line)
            print(f"{case:24s} {r['seconds']:6.3f} s  +{r['peak_rss_growth_mb']:7.1f} MB  {r['outcome']}")
        except json.JSONDecodeError:
            print(f"{case:24s} FAILED {line}")


if __name__ == "__main__":
    from common.errors import run_cli

    run_cli(main)
