"""Successive compression (SIC) of the learned codec, traced through its latent symbols.

For an image I_0, cycle n encodes I_{n−1} into the integer symbols ŷ_{n−1} = round(f_e(I_{n−1})) (after mean
removal) and decodes I_n = f_rc∘f_d(ŷ_{n−1}). The model is idempotent once ŷ stops changing; instability is
symbols that flip from one cycle to the next. `trace` records, besides PSNR(I_n, I_0):

* ``symbols_changed``: the fraction of latent symbols of ŷ_{n−1} that differ from ŷ_{n−2} (cycles 2..N);
* ``symbols_drift``: the mean |ŷ_{n−1} − ŷ_0| (cycles 2..N);
* ``first_1db_cycle``: the first cycle whose PSNR is 1 dB or more under cycle 1's (None: never);
* ``flip_map`` (H/16, W/16) and ``flips_per_channel`` (M): how often each latent position and channel flipped
  over the cycles: where in the image, and in which channels, the instability lives.
"""

from __future__ import annotations

import numpy as np


def trace(cd, u8: np.ndarray, cycles: int, psnr) -> dict:
    """SIC of one 8-bit image through codec `cd` for `cycles` cycles (`psnr(a, b)` in dB), with the symbol
    diagnostics above; ``first`` is I_1 and ``last`` is I_N."""
    h, w = u8.shape[:2]
    cur, first = u8, None
    prev = None
    out = {"psnr": [], "symbols_changed": [], "symbols_drift": []}
    flips = None
    for _ in range(cycles):
        y = cd.symbols(cur.astype(np.float32) / 255.0)
        cur = cd.reconstruct(y, h, w)
        out["psnr"].append(psnr(cur, u8))
        sym = np.asarray(y["y"])[0]  # (h/16, w/16, M) of the padded image
        if prev is None:
            first, flips = sym, np.zeros(sym.shape, np.int32)
            out["first"] = cur  # I_1
        else:
            changed = sym != prev
            flips += changed
            out["symbols_changed"].append(float(changed.mean()))
            out["symbols_drift"].append(float(np.abs(sym.astype(np.int64) - first).mean()))
        prev = sym
    p = out["psnr"]
    out["first_1db_cycle"] = next((n + 1 for n in range(len(p)) if p[0] - p[n] >= 1.0), None)
    out["flip_map"] = flips.sum(axis=-1)
    out["flips_per_channel"] = flips.reshape(-1, flips.shape[-1]).sum(axis=0)
    out["last"] = cur
    return out


def summarize(traces: list[dict]) -> dict:
    """The diagnostics of several images: per-cycle means, and each image's first 1-dB cycle."""
    firsts = [t["first_1db_cycle"] for t in traces]
    channels = np.sum([t["flips_per_channel"] for t in traces], axis=0)
    ranked = np.argsort(-channels)
    return {
        "symbols_changed": [float(v) for v in np.mean([t["symbols_changed"] for t in traces], axis=0)],
        "symbols_drift": [float(v) for v in np.mean([t["symbols_drift"] for t in traces], axis=0)],
        "first_1db_cycle": firsts,
        "first_1db_cycle_median": (float(np.median([f for f in firsts if f is not None])) if any(firsts) else None),
        "never_1db": int(sum(f is None for f in firsts)),
        "channels_most_flipped": [int(c) for c in ranked[:8]],
        "channel_flip_share_top8": float(channels[ranked[:8]].sum() / max(1, channels.sum())),
    }


def plot(path: str, summary: dict, first: dict, title: str) -> None:
    """Symbols changed per cycle, their drift from cycle 1, and where the first image's symbols flipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    cycles = range(2, len(summary["symbols_changed"]) + 2)
    axes[0].semilogy(cycles, np.maximum(summary["symbols_changed"], 1e-7))
    axes[0].set(xlabel="cycle n", ylabel="fraction of ŷ changed since n−1", title="symbol flips per cycle")
    axes[1].plot(cycles, summary["symbols_drift"])
    axes[1].set(xlabel="cycle n", ylabel="mean |ŷ_n − ŷ_1|", title="drift from the first encoding")
    im = axes[2].imshow(first["flip_map"], cmap="magma")
    axes[2].set(title="flips over all cycles, first image (latent grid)")
    axes[2].set_axis_off()
    fig.colorbar(im, ax=axes[2], fraction=0.04)
    for ax in axes[:2]:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
