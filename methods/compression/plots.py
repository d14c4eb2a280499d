"""The compression plots: rate-distortion (with JPEG and CompressAI's published points) and SIC curves."""

from __future__ import annotations

# CompressAI's published Kodak results (results/image/kodak/compressai-bmshj2018-{factorized,hyperprior}_mse_cuda.json:
# their pretrained MSE models at qualities 1-8, RGB PSNR and bpp of the real bitstreams), for the RD plots.
COMPRESSAI_KODAK = {
    "bmshj2018-factorized": {
        "bpp": (0.1226, 0.1885, 0.2878, 0.4404, 0.6481, 0.9670, 1.3512, 1.8333),
        "psnr": (26.909, 28.218, 29.617, 31.277, 32.956, 35.381, 37.397, 39.621),
    },
    "bmshj2018-hyperprior": {
        "bpp": (0.1313, 0.2089, 0.3199, 0.4784, 0.6687, 0.9388, 1.2592, 1.6602),
        "psnr": (27.582, 29.197, 30.972, 32.838, 34.526, 36.743, 38.584, 40.557),
    },
}


def plot_rd(path: str, runs: dict, title: str, anchors: dict | None = None) -> None:
    """PSNR against bpp: each run's point ({label: eval results}; runs with the same prior and λ2 joined into one
    curve by rate), the first run's JPEG curve and, on Kodak, CompressAI's published factorized and hyperprior
    curves (q1-q8); `anchors` ({name: RD points}) adds classical codecs' curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(runs.values()))
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    j = first["jpeg_rd"]
    ax.plot([p["bpp"] for p in j], [p["psnr"] for p in j], "o-", color="black", label="JPEG (Pillow 4:2:0)")
    for name, pts in (anchors or {}).items():
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], ".:", lw=1, label=f"{name} (Pillow)")
    if first["eval_set"] == "kodak":
        for name, pts in COMPRESSAI_KODAK.items():
            ax.plot(pts["bpp"], pts["psnr"], "s--", ms=3, lw=1, label=f"CompressAI {name} (published)")
    groups: dict = {}
    for label, r in runs.items():
        groups.setdefault((r.get("prior"), r["lambda2"]), []).append((r["rd"]["bpp"], r["rd"]["psnr"], label))
    for pts in groups.values():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "*-", ms=12, label=", ".join(p[2] for p in pts))
    top = max(r["rd"]["bpp"] for r in runs.values())
    ax.set(xlabel="bpp", ylabel="PSNR (dB)", title=title, xlim=(0, max(1.0, 1.3 * top)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
