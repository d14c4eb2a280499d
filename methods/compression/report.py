"""Compares evaluated compression runs: one SIC plot, one RD plot (with JPEG) and a markdown table.

python -m methods.compression.report runs/comp_plain runs/comp_fi --out runs/comp_report
"""

from __future__ import annotations

import json
import os

from common.errors import ConfigError
from methods.compression.evaluate import jpeg_psnr_at
from methods.compression.plots import plot_rd, plot_sic


def report(workdirs: list[str], out: str) -> str:
    """Compares several evaluated runs: one SIC plot, one RD plot (with JPEG) and a markdown table."""
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
    plot_rd(os.path.join(out, "rd.png"), runs, f"{first['eval_set']}: rate-distortion")
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
