"""benchmarks/throughput_table.py: the commands it runs, the rows it prints, and failed runs reported, not lost;
benchmarks/codec_memory.py: one row, from a child process.

The timing itself is the benchmark's business (no timed tests); these run no JAX step."""

import os
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import throughput_table as tt  # noqa: E402


def test_command_combines_variants_and_overrides():
    cmd = tt.command("srfeat_gan", "quick", "bfloat16", 3, 989.0, "/tmp/x.json")
    assert cmd[0] == sys.executable and cmd[1].endswith(os.path.join("benchmarks", "train_throughput.py"))
    assert "--config=configs/srfeat.py:gan,quick" in cmd
    assert {"--config.precision=bfloat16", "--steps=3", "--json_out=/tmp/x.json", "--config.init_from=scratch"} <= set(
        cmd
    )
    assert "--peak_tflops=989.0" in cmd
    plain = tt.command("tone", "", "float32", 5, 0.0, "o.json")
    assert "--config=configs/tone.py" in plain and not any(c.startswith("--peak_tflops") for c in plain)


def test_rows_fill_every_column():
    r = {"step_s": 0.5, "images_per_s": 18.0, "gflop_per_step": 300.0, "gflop_per_s": 600.0}
    r |= {"peak_memory_gib": 12.345, "first_step_s": 41.0, "pipeline_images_per_s": 7.25}
    for peak, columns in ((0.0, 9), (989.0, 10)):
        ok = tt.row("tone", "float32", r, peak)
        err = tt.row("tone", "float32", {"error": "exit 1: a | b"}, peak)  # the message's pipe is escaped
        assert ok.count("|") == err.replace("\\|", "").count("|") == columns + 1 and "a \\| b" in err
    cells = [c.strip() for c in tt.row("tone", "bfloat16", r, 1.2).split("|")[1:-1]]
    assert cells == ["tone", "bfloat16", "0.500", "18.0", "7.2", "300", "0.60", "50.0%", "12.35", "41.0"]
    assert "| n/a |" in tt.row("tone", "float32", {**r, "peak_memory_gib": None}, 0.0)  # CPU: no memory stats


def test_run_one_reads_the_json_or_reports_the_last_line(tmp_path):
    out = str(tmp_path / "r.json")
    ok = [sys.executable, "-c", f"import json; json.dump({{'step_s': 1.5}}, open({out!r}, 'w'))"]
    assert tt.run_one(ok, out, timeout=60) == {"step_s": 1.5}
    os.remove(out)
    bad = [sys.executable, "-c", "import sys; print('compiling'); sys.exit('RESOURCE_EXHAUSTED: out of memory')"]
    assert tt.run_one(bad, out, timeout=60) == {"error": "exit 1: RESOURCE_EXHAUSTED: out of memory"}
    slow = [sys.executable, "-c", "import time; time.sleep(30)"]
    assert tt.run_one(slow, out, timeout=0.5) == {"error": "stopped after 0.5 s"}


def test_main_prints_each_row_when_its_run_ends(monkeypatch, capsys):
    """The rows reach stderr one by one (a run stopped midway keeps them), then the table on stdout; a failed
    run is a row, and the exit status says so."""
    seen = []

    def fake_run_one(cmd, json_out, timeout):
        seen.append(capsys.readouterr().err)  # what was printed before this run started
        ok = {"step_s": 0.5, "images_per_s": 18.0, "gflop_per_step": 300.0, "gflop_per_s": 600.0}
        ok |= {"peak_memory_gib": 1.0, "first_step_s": 4.0, "device": "Fake GPU", "devices": 1}
        return ok if "configs/tone.py" in " ".join(cmd) else {"error": "exit 1: boom"}

    monkeypatch.setattr(tt, "run_one", fake_run_one)
    assert tt.main(["--methods", "tone,compression"]) == 1
    assert "| tone | float32 | 0.500 |" in seen[1]  # tone's row was out before compression's run began
    out = capsys.readouterr()
    assert "| compression | float32 | exit 1: boom |" in out.err
    assert "Device: Fake GPU x1" in out.out and out.out.count("| tone |") == 1


def test_parse_rejects_unknown_names(capsys):
    for argv in (["--methods", "defocus,srfeet"], ["--precisions", "float16"]):
        with pytest.raises(SystemExit):
            tt.parse(argv)
    assert "float16" in capsys.readouterr().err
    assert tt.parse(["--methods", "tone", "--variant", "quick"]).variant == "quick"


def test_interleaved_rotates_the_order_and_pairs_each_round():
    """benchmarks/timing.py on a fake clock: each step runs once a round, in an order rotated each round, and a
    slow spell of the machine (every call of round 1 twice as long) cancels out of the per-round ratio."""
    import timing

    now, calls, slow = [0.0], [], [range(7, 10)]
    cost = {"a": 1.0, "b": 3.0, "c": 2.0}

    def step(name):
        def run():
            calls.append(name)
            now[0] += cost[name] * (2.0 if len(calls) in slow[0] else 1.0)  # calls 7-9: round 1, after 1 warm-up round

        return run

    times = timing.interleaved({k: step(k) for k in cost}, 3, warmup=1, clock=lambda: now[0])
    assert calls == [*"abc", *"abc", *"bca", *"cab"]  # a warm-up round, then rounds rotated by 0, 1, 2
    assert times == {"a": [1.0, 2.0, 1.0], "b": [3.0, 6.0, 3.0], "c": [2.0, 4.0, 2.0]}
    assert timing.ratio(times["b"], times["a"]) == (3.0, 3.0, 3.0)
    assert timing.ratio([2.0, 4.0, 9.0], [1.0, 1.0, 1.0]) == (4.0, 2.0, 9.0)
    calls.clear()
    slow[0] = range(0)
    settled = timing.interleaved({k: step(k) for k in "ab"}, 2, warmup=0, settle=2, clock=lambda: now[0])
    assert calls == [*"aaabbb", *"bbbaaa"] and settled == {"a": [1.0, 1.0], "b": [3.0, 3.0]}
    with pytest.raises(ValueError, match="equally long"):
        timing.ratio([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="rounds=0"):
        timing.interleaved({"a": step("a")}, 0)


def test_hlo_flops_counts_convolutions_before_the_backend_rewrites_them():
    """The FLOP count behind MFU: 2·N·Ho·Wo·k²·Cin·Cout multiply-adds for a valid convolution (XLA counts
    only the taps inside the image), three times that for its train step (forward, input gradient, weight
    gradient), and a data-parallel device's share of it."""
    import jax
    import jax.numpy as jnp

    from common.train import trainer

    n, h, w, cin, cout, k = 2, 12, 10, 3, 5, 3
    x, kern = jnp.ones((n, h, w, cin)), jnp.ones((k, k, cin, cout))

    def conv(x, kern):
        return jax.lax.conv_general_dilated(x, kern, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    fwd = 2 * n * (h - k + 1) * (w - k + 1) * k * k * cin * cout
    assert trainer.hlo_flops(jax.jit(conv).lower(x, kern)) == pytest.approx(fwd, rel=1e-6)
    step = jax.jit(jax.value_and_grad(lambda x, kern: conv(x, kern).sum(), argnums=(0, 1))).lower(x, kern)
    assert trainer.hlo_flops(step) == pytest.approx(3 * fwd, rel=0.02)  # + the sum's few adds
    assert trainer.hlo_flops(step, devices=4) == pytest.approx(trainer.hlo_flops(step) / 4)


def test_codec_memory_decodes_a_forged_flat_stream_and_reports_its_figures():
    """benchmarks/codec_memory.py's child: packs the all-zero symbols of a size into a valid stream and decodes
    it (in windows here), returning the file's bytes, seconds and peak RSS (the test variant, one small size)."""
    import codec_memory

    res = codec_memory.child("test", 256, 384, 128)
    assert res["bytes"] > 0 and res["seconds"] > 0 and 0 < res["before_gb"] <= res["peak_rss_gb"] < 20, res
    res = codec_memory.child_encode("test", 256, 384, 128)  # the encoder's side: f_e in windows
    assert res["bytes"] > 0 and res["seconds"] > 0 and 0 < res["before_gb"] <= res["peak_rss_gb"] < 20, res
