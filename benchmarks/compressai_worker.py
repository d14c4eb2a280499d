"""The CompressAI side of `compressai_train.py` and `codec_time.py --compressai`, run in CompressAI's environment.

CompressAI 1.2.8 needs numpy < 2, which this project's JAX does not run with, so these run under another
interpreter (a virtual environment with ``pip install 'compressai==1.2.8'``) and import nothing of this
project: numpy, Pillow, torch and CompressAI only.

    python benchmarks/compressai_worker.py train SPEC.json     # train and evaluate (see compressai_train.py)
    python benchmarks/compressai_worker.py serve N M IMAGE     # time compress/decompress on request (codec_time.py)
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def _crops(photos: list[np.ndarray], rng: np.random.Generator, n: int, crop: int) -> np.ndarray:
    """n random crop×crop patches, each flipped and rotated by a random multiple of 90° (uint8 NHWC)."""
    out = np.empty((n, crop, crop, 3), np.uint8)
    for i in range(n):
        p = photos[int(rng.integers(len(photos)))]
        y, x = int(rng.integers(p.shape[0] - crop + 1)), int(rng.integers(p.shape[1] - crop + 1))
        c = p[y : y + crop, x : x + crop]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        out[i] = np.rot90(c, int(rng.integers(4)))
    return out


def _load(path: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def train(spec_path: str) -> None:
    import torch
    from compressai import __version__ as compressai_version
    from compressai.losses import RateDistortionLoss
    from compressai.models import ScaleHyperprior

    s = json.load(open(spec_path))
    torch.manual_seed(s["seed"])
    torch.set_num_threads(s["threads"])
    net = ScaleHyperprior(s["n"], s["m"])
    main_params = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
    aux_params = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam(main_params, lr=s["lr"])
    aux_opt = torch.optim.Adam(aux_params, lr=s["aux_lr"])
    criterion = RateDistortionLoss(lmbda=s["lmbda"])
    photos = [_load(p) for p in s["photos"]]
    photos = [p for p in photos if min(p.shape[:2]) >= s["crop"]]
    rng = np.random.default_rng(s["seed"])
    log = open(os.path.join(s["out"], "train.jsonl"), "w")
    t0 = time.perf_counter()
    net.train()
    for step in range(1, s["steps"] + 1):
        if step == s["decay_step"] + 1:
            for g in opt.param_groups:
                g["lr"] = s["lr"] * s["decay"]
        x = torch.from_numpy(_crops(photos, rng, s["batch"], s["crop"])).permute(0, 3, 1, 2).float() / 255.0
        opt.zero_grad()
        aux_opt.zero_grad()
        out = criterion(net(x), x)
        out["loss"].backward()
        if s["clip"]:
            torch.nn.utils.clip_grad_norm_(main_params, s["clip"])
        opt.step()
        aux = net.aux_loss()
        aux.backward()
        aux_opt.step()
        if step % 100 == 0 or step == s["steps"]:
            row = {
                "step": step,
                "seconds": time.perf_counter() - t0,
                "loss": float(out["loss"].detach()),
                "bpp": float(out["bpp_loss"].detach()),
                "psnr": float(-10 * torch.log10(out["mse_loss"].detach())),
                "aux": float(aux.detach()),
            }
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(f"step {step}/{s['steps']} " + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "step"))
    train_seconds = time.perf_counter() - t0
    torch.save(net.state_dict(), os.path.join(s["out"], "model.pt"))

    net.eval()
    net.update(force=True)
    rows = []
    with torch.no_grad():
        for path in s["eval_images"]:
            u8 = _load(path)
            h, w = u8.shape[:2]
            x = torch.from_numpy(u8.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
            xp = torch.nn.functional.pad(x, (0, (-w) % 64, 0, (-h) % 64), mode="replicate")
            te = time.perf_counter()
            enc = net.compress(xp)
            td = time.perf_counter()
            rec = net.decompress(enc["strings"], enc["shape"])["x_hat"]
            tend = time.perf_counter()
            r8 = np.round(rec[0, :, :h, :w].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            mse = np.mean((r8.astype(np.float64) - u8) ** 2)
            rows.append(
                {
                    "image": os.path.basename(path),
                    "bpp": sum(len(b[0]) for b in enc["strings"]) * 8.0 / (h * w),
                    "psnr": float(10 * np.log10(255.0**2 / mse)),
                    "encode_seconds": td - te,
                    "decode_seconds": tend - td,
                }
            )
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("bpp", "psnr", "encode_seconds", "decode_seconds")}
    result = {
        "name": s["name"],
        "description": (
            f"CompressAI {compressai_version} ScaleHyperprior(N={s['n']}, M={s['m']}), torch {torch.__version__}, "
            f"{s['steps']} steps of {s['what']}, seed {s['seed']}; {len(rows)} evaluation images"
        ),
        "results": {
            "bpp": [mean["bpp"]],
            "psnr-rgb": [mean["psnr"]],
            "encoding_time": [mean["encode_seconds"]],
            "decoding_time": [mean["decode_seconds"]],
        },
        "train_seconds": train_seconds,
        "steps": s["steps"],
        "images": rows,
    }
    with open(os.path.join(s["out"], "results.json"), "w") as f:
        json.dump(result, f, indent=1)


def serve(n: int, m: int, image: str) -> None:
    """Random-weight ScaleHyperprior(N, M) after ``update()``; answers "enc" / "dec" on stdin with the seconds
    of one ``compress`` / ``decompress`` of IMAGE (padded to 64), "quit" to stop. The first line out is
    "ready BYTES"."""
    import torch
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    net = ScaleHyperprior(n, m).eval()
    net.update(force=True)
    u8 = _load(image)
    h, w = u8.shape[:2]
    x = torch.from_numpy(u8.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    x = torch.nn.functional.pad(x, (0, (-w) % 64, 0, (-h) % 64), mode="replicate")
    with torch.no_grad():
        enc = net.compress(x)
        print(f"ready {sum(len(b[0]) for b in enc['strings'])}", flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "quit":
                break
            t0 = time.perf_counter()
            if cmd == "enc":
                enc = net.compress(x)
            elif cmd == "dec":
                net.decompress(enc["strings"], enc["shape"])
            else:
                print(f"error unknown command {cmd!r}", flush=True)
                continue
            print(f"{time.perf_counter() - t0:.6f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "train":
        train(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(__doc__)
