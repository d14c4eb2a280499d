"""Compares evaluated compression runs: one SIC plot, one RD plot, a markdown table, BD-rates against classical
codecs, and the runs' RD curves in CompressAI's results-JSON layout.

    python -m methods.compression.report runs/cpu_q1 runs/cpu_q2 runs/cpu --out runs/comp_report \
        [--images ../shared/data/kodak] [--anchors jpeg,webp,jpeg2000,avif,heif]

Runs of one prior and one λ2 (and distortion) form one RD curve, by rate. Each curve gets its Bjøntegaard
delta rate and PSNR against each anchor (`methods.compression.anchors`), swept on `--images` (the runs' own
evaluation photos: Kodak when ../shared/data is present); a curve needs at least two runs.
"""

from __future__ import annotations

import json
import os

from common.data import imageio, pipeline
from common.errors import ConfigError
from methods.compression import anchors as anchor_codecs
from methods.compression.evaluate import jpeg_psnr_at, ms_ssim_u8, psnr_u8
from methods.compression.plots import plot_rd, plot_sic


def curves(runs: dict) -> dict[str, list[tuple[str, dict]]]:
    """{curve label: [(run name, eval results), ...] by rate}: runs of one prior, λ2 and distortion together."""
    groups: dict = {}
    for name, r in runs.items():
        key = f"{r.get('prior', '?')} λ2={r['lambda2']:g}" + (f" {r['distortion']}" if r.get("distortion") else "")
        groups.setdefault(key, []).append((name, r))
    return {k: sorted(v, key=lambda nr: nr[1]["rd"]["bpp"]) for k, v in groups.items()}


def compressai_json(label: str, members: list[tuple[str, dict]]) -> dict:
    """One curve in CompressAI's results-JSON layout (what its plotting tools read)."""
    rd = [r["rd"] for _, r in members]
    names = ", ".join(n for n, _ in members)
    return {
        "name": label,
        "description": f"restore-jax compression runs {names} on {members[0][1]['eval_set']}",
        "results": {
            "bpp": [x["bpp"] for x in rd],
            "psnr-rgb": [x["psnr"] for x in rd],
            "ms-ssim-rgb": [x.get("ms_ssim") for x in rd],
            "encoding_time": [x.get("encode_seconds") for x in rd],
            "decoding_time": [x.get("decode_seconds") for x in rd],
        },
    }


def anchor_curves(folder: str, names: list[str], cache: str) -> tuple[dict, dict]:
    """({anchor: RD points} swept on the images of `folder`, {anchor: why it was skipped}); cached in `cache`."""
    done = json.load(open(cache)) if os.path.isfile(cache) else {}
    if done.get("folder") != os.path.abspath(folder):
        done = {"folder": os.path.abspath(folder), "curves": {}}
    images = None
    skipped = {}
    why = anchor_codecs.available()
    for name in names:
        if name not in anchor_codecs.ANCHORS:
            raise ConfigError(f"--anchors: unknown anchor {name!r}; known: {', '.join(anchor_codecs.ANCHORS)}")
        if why[name]:
            skipped[name] = why[name]
            continue
        if name not in done["curves"]:
            if images is None:
                images = [imageio.to_uint8(imageio.load_image(p)) for p in imageio.list_images(folder)]

            def score(out, ref):
                return {"psnr": psnr_u8(out, ref), "ms_ssim": ms_ssim_u8(out, ref)}

            done["curves"][name] = anchor_codecs.sweep(images, name, score)
            with open(cache, "w") as f:
                json.dump(done, f, indent=1)
    return {n: done["curves"][n] for n in names if n in done["curves"]}, skipped


def bd_table(model_curves: dict, anchor_rd: dict) -> str:
    """Markdown: BD-rate (%) and BD-PSNR (dB) of each model curve against each anchor (negative rate: fewer bits)."""
    lines = ["| curve (runs) | " + " | ".join(f"vs {a}: BD-rate / BD-PSNR" for a in anchor_rd) + " |"]
    lines.append("|---|" + "---|" * len(anchor_rd))
    for label, members in model_curves.items():
        r = [m["rd"]["bpp"] for _, m in members]
        d = [m["rd"]["psnr"] for _, m in members]
        cells = []
        for pts in anchor_rd.values():
            if len(members) < 2:
                cells.append("needs ≥ 2 runs")
                continue
            ra, da = [p["bpp"] for p in pts], [p["psnr"] for p in pts]
            rate, gain = anchor_codecs.bd_rate(ra, da, r, d), anchor_codecs.bd_psnr(ra, da, r, d)
            cells.append(
                ("no overlap" if rate is None else f"{rate:+.1f} %")
                + " / "
                + ("—" if gain is None else f"{gain:+.2f} dB")
            )
        lines.append(f"| {label} ({', '.join(n for n, _ in members)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(
    workdirs: list[str],
    out: str,
    images: str | None = None,
    anchors: tuple[str, ...] = ("jpeg", "webp", "jpeg2000", "avif", "heif"),
) -> str:
    """Compares several evaluated runs: SIC and RD plots, a markdown table, BD-rates against the anchors (swept
    on `images`; default the shared Kodak folder when present) and CompressAI results JSON per curve."""
    runs = {}
    for w in workdirs:
        path = os.path.join(w, "eval", "metrics.json")
        if not os.path.isfile(path):
            raise ConfigError(f"{w}: no eval/metrics.json (run --mode=eval first)")
        with open(path) as f:
            runs[os.path.basename(os.path.normpath(w))] = json.load(f)
    os.makedirs(out, exist_ok=True)
    plot_sic(os.path.join(out, "sic.png"), {k: r["sic"] for k, r in runs.items() if r.get("sic")})
    first_name, first = next(iter(runs.items()))
    folder = images or (pipeline.shared_data_dir("kodak") if first["eval_set"] == "kodak" else None)
    anchor_rd, skipped = anchor_curves(folder, list(anchors), os.path.join(out, "anchors.json")) if folder else ({}, {})
    plot_rd(os.path.join(out, "rd.png"), runs, f"{first['eval_set']}: rate-distortion", anchor_rd)
    model_curves = curves(runs)
    for label, members in model_curves.items():
        safe = "".join(c if c.isalnum() else "_" for c in label)
        with open(os.path.join(out, f"compressai_{safe}.json"), "w") as f:
            json.dump(compressai_json(label, members), f, indent=1)
    lines = [
        "| run | λ2 | bpp (file) | bpp (est.) | PSNR | JPEG at that bpp (Δ) | mean-colour ΔE | "
        "16×16 colour ΔE (JPEG) | MS-SSIM | LPIPS | SIC n=1 → n=N (drop) | variable rate | shifted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def sic_cell(s, k):
        if k not in s:
            return "—"
        p = s[k]["psnr"]
        if k.endswith("_variable"):  # alternating rates: compare cycle 1 with the last cycle at the same rate
            last = (len(p) - 1) // 2 * 2
            return f"{p[0]:.2f} → {p[last]:.2f} at n={last + 1} ({p[0] - p[last]:.2f})"
        return f"{p[0]:.2f} → {p[-1]:.2f} ({s[k]['drop']:.2f})"

    def jpeg_cell(r):
        j = jpeg_psnr_at(r["jpeg_rd"], r["rd"]["bpp"])  # from the JPEG points, so older metrics files work too
        return "outside the JPEG points" if j is None else f"{j:.2f} ({r['rd']['psnr'] - j:+.2f})"

    def num(x, fmt):
        return "—" if x is None else format(x, fmt)

    def block_cell(r):
        j = jpeg_psnr_at(r["jpeg_rd"], r["rd"]["bpp"], "block_color_delta_e")
        return num(r["rd"].get("block_color_delta_e"), ".2f") + ("" if j is None else f" ({j:.2f})")

    for k, r in runs.items():
        rd, s = r["rd"], r.get("sic", {})
        lines.append(
            f"| {k} | {r['lambda2']:g} | {rd['bpp']:.3f} | {rd['estimated_bpp']:.3f} | {rd['psnr']:.2f} | "
            f"{jpeg_cell(r)} | {num(rd.get('mean_color_delta_e'), '.2f')} | {block_cell(r)} | "
            f"{num(rd['ms_ssim'], '.4f')} | "
            f"{num(rd.get('lpips'), '.3f')} | {sic_cell(s, 'model')} | {sic_cell(s, 'model_variable')} | "
            f"{sic_cell(s, 'shifted')} |"
        )
    s = first.get("sic", {})
    if s:
        qs = s["jpeg_qualities"]
        lines.append(
            f"| JPEG, matched to {first_name} (q {min(qs)}–{max(qs)}) | | | | | | | | | | {sic_cell(s, 'jpeg')} | "
            f"{sic_cell(s, 'jpeg_variable')} | |"
        )
    table = "\n".join(lines)
    if anchor_rd:
        table += f"\n\nBjøntegaard deltas against classical codecs on {folder}:\n\n" + bd_table(model_curves, anchor_rd)
    elif not folder:
        table += "\n\n(no BD-rates: give --images, the runs' evaluation photos)"
    for name, why in skipped.items():
        table += f"\n\n{name} skipped: {why}"
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table + "\n")
    return table


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Compare evaluated compression runs (SIC and RD plots, a table).")
    ap.add_argument("workdirs", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--images", default=None, help="the runs' evaluation photos, for the anchors (default: Kodak)")
    ap.add_argument("--anchors", default="jpeg,webp,jpeg2000,avif,heif", help="classical codecs to compare with")
    a = ap.parse_args()
    from common.errors import run_cli

    print(run_cli(report, a.workdirs, a.out, a.images, tuple(x for x in a.anchors.split(",") if x)))
