"""common.train.curves: series from metrics.jsonl, the summary slope, the plot and the CLI's errors."""

import json

import numpy as np
import pytest

from common.errors import ConfigError
from common.train import curves


def _run(tmp_path, name, rows):
    d = tmp_path / name
    d.mkdir()
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(d)


def test_series_keeps_the_last_record_of_a_step_and_skips_records_without_the_key(tmp_path):
    rows = [
        {"step": 10, "val/lpips": 0.5},
        {"step": 10, "loss": 1.0},
        {"step": 20, "val/lpips": 0.4},
        {"step": 10, "val/lpips": 0.45},
    ]  # a resumed run logged step 10 again
    steps, values = curves.series(curves.read(_run(tmp_path, "a", rows)), "val/lpips")
    np.testing.assert_array_equal(steps, [10, 20])
    np.testing.assert_allclose(values, [0.45, 0.4])


def test_summary_slope_is_the_least_squares_slope_of_the_last_third():
    steps = np.arange(0, 3001, 100)
    values = np.where(steps < 2000, 1.0, 1.0 - 2e-4 * (steps - 2000))  # flat, then falling 0.2 per 1k steps
    s = curves.summary(steps, values, lower_is_better=True)
    assert s["first"] == 1.0 and s["last"] == pytest.approx(0.8) and s["best"] == pytest.approx(0.8)
    assert s["per_1k_steps"] == pytest.approx(-0.2, rel=1e-6)
    assert curves.summary(steps, values, lower_is_better=False)["best"] == 1.0
    assert curves.lower_is_better("val/lpips") and not curves.lower_is_better("val/psnr")


def test_cli_draws_and_tabulates_and_names_a_missing_key(tmp_path, capsys):
    a = _run(tmp_path, "a", [{"step": s, "val/lpips": 1 / s, "val/psnr": s} for s in (1, 2, 3)])
    b = _run(tmp_path, "b", [{"step": s, "val/lpips": 2 / s, "val/psnr": s / 2} for s in (1, 2, 3)])
    out = tmp_path / "c.png"
    curves.main([f"first={a}", "--baseline", f"base={b}", "--keys", "val/lpips,val/psnr", "--out", str(out), "--table"])
    printed = capsys.readouterr().out
    assert out.stat().st_size > 1000 and "| first | val/lpips | 1 | 0.3333 | 0.3333 |" in printed
    assert "| base | val/psnr | 0.5 | 1.5 | 1.5 |" in printed
    with pytest.raises(ConfigError, match="no run logged val/ssim"):
        curves.main([a, "--keys", "val/ssim"])
    with pytest.raises(ConfigError, match="no metrics.jsonl"):
        curves.main([str(tmp_path), "--keys", "val/lpips"])
