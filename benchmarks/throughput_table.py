"""Training throughput of every method in one table: each (method, variant, precision) timed by
`train_throughput.py` in its own process, so one run's memory never weighs on the next.

    python benchmarks/throughput_table.py                                   # default variants, float32
    python benchmarks/throughput_table.py --variant quick --steps 10
    # a GPU: MFU against the device's dense peak for the precision (H100 SXM: 989 TFLOP/s bf16, 494 TF32,
    # which XLA uses for float32 convolutions and matmuls by default); one run per precision
    python benchmarks/throughput_table.py --precisions bfloat16 --peak_tflops 989
    python benchmarks/throughput_table.py --precisions float32 --peak_tflops 494

It prints a markdown table (step time, images/s, the input pipeline's images/s, GFLOP per step, achieved
TFLOP/s, MFU, peak device memory, compile + first step) with the device named, ready for the README. Where
the input's images/s is below the step's, training on that machine waits for data: raise data.threads.
A run that fails or runs past ``--timeout`` gets a row with its last error line, the others go on, and the
exit status is 1. Each row is also printed to stderr as soon as its run ends, so a session stopped midway
keeps the rows it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _runs() -> dict[str, tuple[str, str, str, list[str]]]:
    """name -> (label, config file, variant added to --variant, extra overrides): one run per stage of every
    method of `methods.METHODS` (a config's ``STAGES``, default one stage with no overrides)."""
    import importlib

    from methods import METHODS

    runs = {}
    for name in METHODS:
        stages = getattr(importlib.import_module(f"configs.{name}"), "STAGES", {"": []})
        for stage, extra in stages.items():
            runs[f"{name}_{stage}" if stage else name] = (f"{name} {stage}".strip(), name, stage, list(extra))
    return runs


METHODS = _runs()


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    p.add_argument("--variant", default="", help="added to each config's variants, e.g. quick ('': the default)")
    p.add_argument("--precisions", default="float32", help="comma-separated: float32, bfloat16")
    p.add_argument("--steps", type=int, default=5, help="timed steps per run, after the compiling one")
    p.add_argument("--peak_tflops", type=float, default=0.0, help="the device's peak for MFU (0: no MFU column)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run before it is stopped")
    args = p.parse_args(argv)
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}; use {', '.join(METHODS)}")
    bad = [x for x in args.precisions.split(",") if x not in ("float32", "bfloat16")]
    if bad:
        p.error(f"unknown precision(s) {bad}; use float32, bfloat16")
    return args


def command(method: str, variant: str, precision: str, steps: int, peak: float, json_out: str) -> list[str]:
    _, config, own, extra = METHODS[method]
    spec = ",".join(v for v in (own, variant) if v)
    config_flag = f"--config=configs/{config}.py" + (f":{spec}" if spec else "")
    cmd = [sys.executable, os.path.join(HERE, "train_throughput.py"), config_flag]
    cmd += [f"--config.precision={precision}", f"--steps={steps}", f"--json_out={json_out}", *extra]
    return cmd + ([f"--peak_tflops={peak}"] if peak else [])


def run_one(cmd: list[str], json_out: str, timeout: float) -> dict:
    """The figures of one run, or {"error": its last line of stderr (of stdout if stderr is empty)}."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=os.path.dirname(HERE))
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout:g} s"}
    if p.returncode != 0 or not os.path.exists(json_out):
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()] or [ln for ln in p.stdout.splitlines() if ln.strip()]
        return {"error": f"exit {p.returncode}: {lines[-1][:160] if lines else 'no output'}"}
    with open(json_out) as f:
        return json.load(f)


def row(label: str, precision: str, r: dict, peak: float) -> str:
    if "error" in r:
        error = r["error"].replace("|", "\\|")  # a pipe in the message would split the cell
        return f"| {label} | {precision} | {error} |" + " |" * (7 if peak else 6)
    mem = f"{r['peak_memory_gib']:.2f}" if r.get("peak_memory_gib") else "n/a"
    cells = [
        label,
        precision,
        f"{r['step_s']:.3f}",
        f"{r['images_per_s']:.1f}",
        f"{r['pipeline_images_per_s']:.1f}" if "pipeline_images_per_s" in r else "n/a",
        f"{r['gflop_per_step']:.0f}",
        f"{r['gflop_per_s'] / 1e3:.2f}",
    ]
    if peak:
        cells.append(f"{r['gflop_per_s'] / (peak * 1e3):.1%}")
    cells += [mem, f"{r['first_step_s']:.1f}"]
    return "| " + " | ".join(cells) + " |"


def main(argv=None):
    args = parse(argv)
    header = ["method", "precision", "step s", "images/s", "input images/s", "GFLOP/step", "TFLOP/s"]
    header += ["MFU"] if args.peak_tflops else []
    header += ["peak memory GiB", "compile + 1st step s"]
    rows, device, failed = [], None, 0
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            for precision in args.precisions.split(","):
                out = os.path.join(tmp, f"{method}-{precision}.json")
                cmd = command(method, args.variant, precision, args.steps, args.peak_tflops, out)
                print("running:", " ".join(cmd[1:]), file=sys.stderr, flush=True)
                r = run_one(cmd, out, args.timeout)
                failed += "error" in r
                device = device or (f"{r['device']} x{r['devices']}" if "device" in r else None)
                rows.append(row(METHODS[method][0], precision, r, args.peak_tflops))
                print(rows[-1], file=sys.stderr, flush=True)  # a run cut off by its caller keeps finished rows
    variant = args.variant or "default"
    print(f"\nDevice: {device or 'unknown (every run failed)'}; variant: {variant}; {args.steps} timed steps a run")
    if args.peak_tflops:
        print(f"MFU against {args.peak_tflops:g} TFLOP/s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print("\n".join(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
