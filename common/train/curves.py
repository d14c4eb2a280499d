"""Curves of logged scalars from run folders: one panel per key, one line per run.

    python -m common.train.curves runs/a runs/b --keys val/lpips,val/psnr --out curves.png
    python -m common.train.curves gan64=runs/a gan128=runs/b --keys val/lpips --out lpips.png --table \
        --baseline "stage 1=runs/m"

A run is a folder with a ``metrics.jsonl`` (what every training writes), optionally
given as LABEL=FOLDER. A `--baseline` run (say, the pixel-loss model a GAN
stage starts from) is drawn as a dashed line at its last logged value.
`--table` also prints, for each run and key, the first, best and last logged
value and the change per 1,000 steps over the last third of the run (a
least-squares slope), which says whether a curve was still moving.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from common.errors import ConfigError, run_cli


def read(workdir: str) -> list[dict]:
    """The records of a run's metrics.jsonl (a line that does not parse is an error naming the file and line)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise ConfigError(f"{workdir}: no metrics.jsonl (not a run folder?)")
    out = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as e:
                    raise ConfigError(f"{path}, line {i}: not JSON ({e})") from e
    return out


def series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `key` over the records that hold it, in step order (a resumed run's last word wins)."""
    by_step = {int(r["step"]): float(r[key]) for r in records if key in r}
    steps = np.array(sorted(by_step), np.int64)
    return steps, np.array([by_step[s] for s in steps], np.float64)


def summary(steps: np.ndarray, values: np.ndarray, lower_is_better: bool) -> dict:
    """First, best and last value, and the least-squares change per 1,000 steps over the last third."""
    if not len(steps):
        return {}
    tail = steps >= steps[0] + (steps[-1] - steps[0]) * 2 / 3
    slope = float(np.polyfit(steps[tail], values[tail], 1)[0] * 1000) if tail.sum() >= 2 else float("nan")
    best = values.min() if lower_is_better else values.max()
    return {"first": float(values[0]), "best": float(best), "last": float(values[-1]), "per_1k_steps": slope}


def lower_is_better(key: str) -> bool:
    name = key.split("/")[-1]
    return not any(name.startswith(k) for k in ("psnr", "ssim", "ms_ssim", "accuracy", "ap"))


def plot(runs: dict[str, list[dict]], keys: list[str], out: str, baselines: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for label, records in runs.items():
            steps, values = series(records, key)
            if len(steps):
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3, label=label)
        for i, (label, records) in enumerate((baselines or {}).items()):
            steps, values = series(records, key)
            if len(steps):
                ax.axhline(values[-1], ls="--", lw=1, color=f"C{7 + i}", label=f"{label} (last)")
        ax.set_xlabel("step")
        ax.set_title(key + (" (lower is better)" if lower_is_better(key) else " (higher is better)"), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _labelled(specs) -> dict[str, list[dict]]:
    out = {}
    for spec in specs:
        label, _, folder = spec.rpartition("=")
        out[label or os.path.basename(os.path.normpath(folder))] = read(folder)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders, or LABEL=FOLDER")
    p.add_argument("--keys", default="val/lpips,val/psnr", help="comma-separated logged keys")
    p.add_argument("--out", default="", help="a PNG to draw (none: only --table)")
    p.add_argument("--table", action="store_true", help="print first / best / last / slope per run and key")
    p.add_argument("--baseline", action="append", default=[], help="a run (LABEL=FOLDER) drawn at its last value")
    a = p.parse_args(argv)
    runs, baselines = _labelled(a.runs), _labelled(a.baseline)
    keys = [k for k in a.keys.split(",") if k]
    missing = [k for k in keys if not any(series(r, k)[0].size for r in {**runs, **baselines}.values())]
    if missing:
        raise ConfigError(f"no run logged {', '.join(missing)} (validation needs --config.eval.every=N)")
    if a.out:
        plot(runs, keys, a.out, baselines)
        print(f"wrote {a.out}")
    if a.table or not a.out:
        print("| run | key | first | best | last | change per 1k steps (last third) |\n|---|---|---|---|---|---|")
        for label, records in {**baselines, **runs}.items():
            for key in keys:
                s = summary(*series(records, key), lower_is_better(key))
                if s:
                    print(
                        f"| {label} | {key} | {s['first']:.4g} | {s['best']:.4g} | {s['last']:.4g} | "
                        f"{s['per_1k_steps']:+.3g} |"
                    )


if __name__ == "__main__":
    run_cli(main)
