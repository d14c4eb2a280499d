"""Classical-codec anchors and the Bjøntegaard deltas (known answers), and the report's CompressAI JSON."""

import json

import numpy as np
import pytest

from methods.compression import anchors, report

RATES = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
PSNR = 30 + 6 * np.log2(RATES / 0.4) - 0.3 * np.log2(RATES / 0.4) ** 2  # a concave RD curve


def test_bd_psnr_of_a_curve_shifted_by_a_constant_is_the_shift():
    assert anchors.bd_psnr(RATES, PSNR, RATES, PSNR + 0.7) == pytest.approx(0.7, abs=1e-9)
    assert anchors.bd_psnr(RATES, PSNR, RATES, PSNR) == pytest.approx(0.0, abs=1e-12)


def test_bd_rate_of_a_curve_with_rates_scaled_by_a_constant_is_the_factor():
    assert anchors.bd_rate(RATES, PSNR, 0.8 * RATES, PSNR) == pytest.approx(-20.0, abs=1e-9)
    assert anchors.bd_rate(RATES, PSNR, 1.25 * RATES, PSNR) == pytest.approx(25.0, abs=1e-9)
    # both deltas of one curve against another at other sample points of the same underlying line
    r2 = np.array([0.15, 0.3, 0.6, 1.2])
    line = lambda r: 28 + 5 * np.log10(r)  # noqa: E731 - PCHIP reproduces a straight line in log-rate exactly
    assert anchors.bd_rate(RATES, line(RATES), r2, line(r2) + 1.0) == pytest.approx((10 ** (-1 / 5) - 1) * 100)
    assert anchors.bd_psnr(RATES, line(RATES), r2, line(r2) + 1.0) == pytest.approx(1.0)


def test_curves_that_do_not_overlap_and_bad_curves():
    assert anchors.bd_rate(RATES, PSNR, RATES, PSNR + 100) is None
    assert anchors.bd_psnr(RATES, PSNR, RATES * 100, PSNR) is None
    with pytest.raises(ValueError, match="at least two"):
        anchors.bd_rate([0.1], [30.0], RATES, PSNR)
    with pytest.raises(ValueError, match="same rate"):
        anchors.bd_psnr([0.1, 0.1], [30.0, 31.0], RATES, PSNR)


def test_each_available_anchor_round_trips_and_reports_its_bytes():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64]
    u8 = np.clip(np.stack([yy * 4, xx * 3, 128 + 0 * xx], -1) + rng.integers(0, 8, (48, 64, 3)), 0, 255)
    u8 = u8.astype(np.uint8)
    why = anchors.available()
    assert set(why) == set(anchors.ANCHORS) and why["jpeg"] == ""
    for name in (n for n, reason in why.items() if not reason):
        lo_q, hi_q = anchors.ANCHORS[name][1][0], anchors.ANCHORS[name][1][-1]
        low, n_low, enc, dec = anchors.roundtrip(u8, name, lo_q)
        high, n_high, _, _ = anchors.roundtrip(u8, name, hi_q)
        assert low.shape == u8.shape and enc >= 0 and dec >= 0
        assert n_high > n_low, name  # the sweep goes from small files to large ones
        err = lambda a: np.abs(a.astype(float) - u8).mean()  # noqa: E731
        assert err(high) <= err(low) + 1e-9, name
    points = anchors.sweep([u8], "jpeg", lambda out, ref: {"psnr": float(-np.abs(out.astype(float) - ref).mean())})
    assert [p["bpp"] for p in points] == sorted(p["bpp"] for p in points) and len(points) == 8
    assert set(points[0]) == {"quality", "bpp", "psnr", "encode_s", "decode_s"}
    none = anchors.sweep([u8], "jpeg", lambda out, ref: {"ms_ssim": None})  # a score an image is too small for
    assert all(p["ms_ssim"] is None for p in none)


def test_runs_group_into_curves_and_write_compressai_json():
    def run(bpp, psnr, lam):
        rd = {"bpp": bpp, "psnr": psnr, "ms_ssim": 0.9, "encode_seconds": 0.1, "decode_seconds": 0.2}
        return {"prior": "hyperprior", "lambda2": lam, "rd": rd, "eval_set": "kodak"}

    runs = {"q2": run(0.2, 26.0, 1), "q3": run(0.3, 27.5, 1), "plain": run(0.31, 27.8, 0)}
    got = report.curves(runs)
    assert list(got) == ["hyperprior λ2=1", "hyperprior λ2=0"]
    assert [n for n, _ in got["hyperprior λ2=1"]] == ["q2", "q3"]
    out = report.compressai_json("hyperprior λ2=1", got["hyperprior λ2=1"])
    assert out["results"]["bpp"] == [0.2, 0.3] and out["results"]["psnr-rgb"] == [26.0, 27.5]
    assert set(out["results"]) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
    json.dumps(out)  # serialisable
    anchor = {"jpeg": [{"bpp": b, "psnr": 20 + 10 * b} for b in (0.1, 0.2, 0.3, 0.4)]}
    table = report.bd_table(got, anchor)
    assert "needs ≥ 2 runs" in table and "| hyperprior λ2=1 (q2, q3) | " in table


def test_sic_trace_counts_symbol_flips_against_a_direct_count():
    """A stand-in codec whose symbols are 4x4 block means in steps of 8 grey levels, decoded with a bias that pushes
    every other block over a step each cycle. The trace's figures equal a direct count over the same cycles."""
    from methods.compression import sic

    class Blocks:
        def symbols(self, img):
            h, w = img.shape[:2]
            means = img.reshape(h // 4, 4, w // 4, 4, 3).mean(axis=(1, 3)) * 255
            return {"y": np.floor(means / 8).astype(np.int32)[None]}

        def reconstruct(self, syms, h, w):
            q = syms["y"][0]
            bias = 7 + 2 * (np.indices(q.shape[:2]).sum(0) % 2)[..., None]  # 9 on every other block: it drifts
            up = np.repeat(np.repeat(q * 8 + bias, 4, 0), 4, 1)
            return np.clip(up, 0, 255).astype(np.uint8)[:h, :w]

    u8 = np.random.default_rng(0).integers(0, 256, (8, 12, 3)).astype(np.uint8)
    cd = Blocks()
    t = sic.trace(cd, u8, 5, lambda a, b: -float(np.abs(a.astype(float) - b).mean()))
    ys, cur = [], u8
    for _ in range(5):
        y = cd.symbols(cur.astype(np.float32) / 255.0)
        ys.append(y["y"][0])
        cur = cd.reconstruct(y, 8, 12)
    changed = [float(np.mean(ys[k] != ys[k - 1])) for k in range(1, 5)]
    assert t["symbols_changed"] == changed and max(changed) > 0
    assert t["symbols_drift"] == [float(np.abs(ys[k].astype(int) - ys[0]).mean()) for k in range(1, 5)]
    flips = sum((ys[k] != ys[k - 1]).astype(int) for k in range(1, 5))
    assert (t["flip_map"] == flips.sum(-1)).all() and (t["flips_per_channel"] == flips.reshape(-1, 3).sum(0)).all()
    assert np.array_equal(t["last"], cur)
    assert np.array_equal(t["first"], cd.reconstruct(cd.symbols(u8.astype(np.float32) / 255.0), 8, 12))
    s = sic.summarize([t, t])
    assert s["symbols_changed"] == changed and s["first_1db_cycle"] == [t["first_1db_cycle"]] * 2
