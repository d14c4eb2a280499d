"""Successive-compression stability over training seeds: groups of runs, mean ± standard deviation.

    python -m methods.compression.sic_study --out runs/sic_study \
        --group plain=runs/plain_s0,runs/plain_s1,runs/plain_s2 \
        --group fi=runs/fi_s0,runs/fi_s1,runs/fi_s2 [--sets kodak,set14] [--cycles 50] [--shifts 4]

One trained run is one draw: the 50-cycle drop of two runs of the same recipe can differ by more than the
effect of L_FI. So each group (a recipe, one run per seed) is scored on every image of each set
(``../shared/data/<set>``, or a folder), and the table gives, per group and set, the mean ± standard deviation
over its runs of:

* the first pass: actual bpp (file bytes) and PSNR;
* the drop PSNR(I_1) − PSNR(I_N) after N cycles (mean over the set's images), and its ratio to the first
  group's (the baseline);
* the drop of one-pixel-shifted crops of the set's first image (offsets 0..shifts−1);
* the symbol diagnostics of `methods.compression.sic`: the fraction of latent symbols that flip at cycle 2
  and at cycle N, and the median first cycle 1 dB under cycle 1;

and JPEG at the quality matched per image to the baseline's first run. Each run's scores are cached in its
``eval/sic_study_<set>_<N>.json``, so adding a group re-scores only the new runs. ``sic_<set>.png`` plots the
groups' mean curves with a ±1 std band, and ``samples_<set>.png`` the set's first image after N cycles of each
group's first run and of JPEG.
"""

from __future__ import annotations

import json
import os

import numpy as np

from common.data import imageio, pipeline
from common.errors import ConfigError, run_cli
from methods.compression import sic as sic_trace
from methods.compression.codec import load_codec
from methods.compression.evaluate import jpeg_bpp, jpeg_fn, matched_quality, psnr_u8, sic_curve


def image_set(name: str) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """(label, [(file name, uint8 image)]) of ``../shared/data/<name>`` or of a folder path."""
    folder = name if os.path.isdir(name) else pipeline.shared_data_dir(name)
    if not folder or not os.path.isdir(folder):
        raise ConfigError(f"--sets: {name!r} is neither a folder nor a set under ../shared/data")
    paths = imageio.list_images(folder)
    if not paths:
        raise ConfigError(f"--sets: no images in {folder}")
    label = os.path.basename(os.path.normpath(folder))
    return label, [(os.path.basename(p), imageio.to_uint8(imageio.load_image(p))) for p in paths]


def score_run(workdir: str, set_label: str, images, cycles: int, shifts: int) -> dict:
    """One run's SIC scores on one set (cached in the run's eval/ folder)."""
    cache = os.path.join(workdir, "eval", f"sic_study_{set_label}_{cycles}.json")
    if os.path.isfile(cache):
        with open(cache) as f:
            done = json.load(f)
        if done.get("images") == [n for n, _ in images] and done.get("shifts") == shifts:
            return done
    cd = load_codec(workdir)
    rows = []
    for name, u8 in imageio.progress(images, f"{os.path.basename(workdir)}: SIC x{cycles} on {set_label}"):
        bits = len(cd.encode_bytes(u8.astype(np.float32) / 255.0)) * 8.0
        t = sic_trace.trace(cd, u8, cycles, psnr_u8)
        rows.append(
            {
                "image": name,
                "bpp": bits / (u8.shape[0] * u8.shape[1]),
                "psnr": t["psnr"],
                "symbols_changed": t["symbols_changed"],
                "first_1db_cycle": t["first_1db_cycle"],
            }
        )
    u8 = images[0][1]
    h, w = u8.shape[0] - shifts + 1, u8.shape[1] - shifts + 1
    shifted = [
        sic_curve(cd.roundtrip_u8, np.ascontiguousarray(u8[k : k + h, k : k + w]), cycles)[0] for k in range(shifts)
    ]
    out = {
        "workdir": os.path.abspath(workdir),
        "images": [n for n, _ in images],
        "shifts": shifts,
        "per_image": rows,
        "shifted_psnr": [float(v) for v in np.mean(shifted, axis=0)],
    }
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache, "w") as f:
        json.dump(out, f)
    return out


def run_summary(s: dict) -> dict:
    """The figures of one run on one set (means over its images)."""
    p = np.mean([r["psnr"] for r in s["per_image"]], axis=0)
    changed = np.mean([r["symbols_changed"] for r in s["per_image"]], axis=0) if len(p) > 1 else [np.nan]
    firsts = [r["first_1db_cycle"] for r in s["per_image"]]
    return {
        "bpp": float(np.mean([r["bpp"] for r in s["per_image"]])),
        "psnr_first": float(p[0]),
        "drop": float(p[0] - p[-1]),
        "shifted_drop": float(s["shifted_psnr"][0] - s["shifted_psnr"][-1]),
        "changed_cycle2": float(changed[0]),
        "changed_last": float(changed[-1]),
        "first_1db_median": float(np.median([f if f is not None else len(p) + 1 for f in firsts])),
        "curve": [float(v) for v in p],
    }


def mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def jpeg_reference(images, bpps: list[float], cycles: int) -> dict:
    """JPEG at the quality matched per image to `bpps`: first-pass bpp, PSNR curve and drop."""
    curves, rates = [], []
    for (_, u8), bpp in zip(images, bpps, strict=True):
        q = matched_quality(u8, bpp)
        rates.append(jpeg_bpp(u8, q))
        curves.append(sic_curve(jpeg_fn(q), u8, cycles)[0])
    c = np.mean(curves, axis=0)
    return {"bpp": float(np.mean(rates)), "psnr_first": float(c[0]), "drop": float(c[0] - c[-1]), "curve": c.tolist()}


def _cell(values, fmt: str) -> str:
    m, s = mean_std(values)
    return f"{m:{fmt}} ± {s:{fmt}}" if len(values) > 1 else f"{m:{fmt}}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "—"


def table(set_label: str, groups: dict, jpeg: dict) -> str:
    base = next(iter(groups))
    base_drop = mean_std([r["drop"] for r in groups[base]])[0]
    n = len(next(iter(groups.values()))[0]["curve"])
    lines = [
        f"{set_label}, {n} cycles (mean ± std over runs):",
        "",
        f"| group | runs | bpp | PSNR (cycle 1) | drop | drop / {base}'s | shifted crops' drop | symbols flipped "
        "at cycle 2 / last | first cycle 1 dB down (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g, rs in groups.items():
        lines.append(
            f"| {g} | {len(rs)} | {_cell([r['bpp'] for r in rs], '.3f')}"
            f" | {_cell([r['psnr_first'] for r in rs], '.2f')}"
            f" | {_cell([r['drop'] for r in rs], '.2f')} | {_ratio(mean_std([r['drop'] for r in rs])[0], base_drop)}"
            f" | {_cell([r['shifted_drop'] for r in rs], '.2f')}"
            f" | {_cell([100 * r['changed_cycle2'] for r in rs], '.2f')} % / "
            f"{_cell([100 * r['changed_last'] for r in rs], '.3f')} %"
            f" | {_cell([r['first_1db_median'] for r in rs], '.0f')} |"
        )
    lines.append(
        f"| JPEG, matched to {base}'s first run | | {jpeg['bpp']:.3f} | {jpeg['psnr_first']:.2f} | "
        f"{jpeg['drop']:.2f} | | | | |"
    )
    return "\n".join(lines)


def plot_curves(path: str, set_label: str, groups: dict, jpeg: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for g, rs in groups.items():
        c = np.asarray([r["curve"] for r in rs])
        x = np.arange(1, c.shape[1] + 1)
        m = c.mean(axis=0)
        ax.plot(x, m, label=f"{g} ({len(rs)} runs)")
        if len(rs) > 1:
            s = c.std(axis=0, ddof=1)
            ax.fill_between(x, m - s, m + s, alpha=0.2)
    ax.plot(np.arange(1, len(jpeg["curve"]) + 1), jpeg["curve"], "k--", label="JPEG (quality matched)")
    ax.set(xlabel="cycle n", ylabel="PSNR(I_n, I_0) dB", title=f"{set_label}: successive compression")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sample_strip(path: str, u8: np.ndarray, finals: dict) -> None:
    """The original beside each entry of `finals` ({label: uint8 image}), labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = {"original": u8, **finals}
    fig, axes = plt.subplots(1, len(items), figsize=(3.2 * len(items), 3.2 * u8.shape[0] / u8.shape[1] + 0.5))
    for ax, (label, img) in zip(np.atleast_1d(axes), items.items(), strict=True):
        ax.imshow(img)
        ax.set_title(label, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def study(groups: dict[str, list[str]], out: str, sets=("kodak",), cycles: int = 50, shifts: int = 4) -> str:
    """Scores every run of every group on every set; writes table.md, summary.json and the plots to `out`."""
    if not groups:
        raise ConfigError("--group: give at least one group NAME=RUN[,RUN...]")
    for g, runs in groups.items():
        for w in runs:
            if not os.path.isfile(os.path.join(w, "config.json")):
                raise ConfigError(f"--group {g}: {w} is not a trained run (no config.json)")
    if cycles < 2:
        raise ConfigError(f"--cycles {cycles}: successive compression needs at least 2 cycles")
    os.makedirs(out, exist_ok=True)
    text, summary = [], {}
    for name in sets:
        label, images = image_set(name)
        scored = {g: [score_run(w, label, images, cycles, shifts) for w in runs] for g, runs in groups.items()}
        per_group = {g: [run_summary(s) for s in ss] for g, ss in scored.items()}
        base = next(iter(scored.values()))[0]
        jpeg = jpeg_reference(images, [r["bpp"] for r in base["per_image"]], cycles)
        text.append(table(label, per_group, jpeg))
        plot_curves(os.path.join(out, f"sic_{label}.png"), label, per_group, jpeg)
        u8 = images[0][1]
        finals = {}
        for g, runs in groups.items():
            cd = load_codec(runs[0])
            cur = u8
            for _ in range(cycles):
                cur = cd.roundtrip_u8(cur)
            finals[f"{g}, {cycles} cycles ({psnr_u8(cur, u8):.2f} dB)"] = cur
        q = matched_quality(u8, base["per_image"][0]["bpp"])
        _, jp = sic_curve(jpeg_fn(q), u8, cycles)
        finals[f"JPEG q{q}, {cycles} cycles ({psnr_u8(jp, u8):.2f} dB)"] = jp
        sample_strip(os.path.join(out, f"samples_{label}.png"), u8, finals)
        summary[label] = {
            "groups": {g: [dict(r, run=w) for r, w in zip(rs, groups[g], strict=True)] for g, rs in per_group.items()},
            "jpeg": jpeg,
        }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    result = "\n\n".join(text)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(result + "\n")
    return result


def parse_groups(specs: list[str]) -> dict[str, list[str]]:
    groups = {}
    for spec in specs:
        name, sep, runs = spec.partition("=")
        if not sep or not name or not runs:
            raise ConfigError(f"--group {spec!r}: use NAME=RUN[,RUN...]")
        groups[name] = [r for r in runs.split(",") if r]
    return groups


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Successive-compression stability of groups of runs over seeds.")
    ap.add_argument("--group", action="append", default=[], help="NAME=RUN[,RUN...]; the first is the baseline")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sets", default="kodak", help="comma-separated ../shared/data sets or folders")
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--shifts", type=int, default=4)
    a = ap.parse_args()
    print(
        run_cli(
            lambda: study(parse_groups(a.group), a.out, tuple(s for s in a.sets.split(",") if s), a.cycles, a.shifts)
        )
    )
