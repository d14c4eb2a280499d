"""Validation during training: the held-out photos, their crops, the scores and the trainer's logging."""

import json
import os

import ml_collections
import numpy as np
import pytest
from conftest import copy_run, run_py

from common.data import pipeline
from common.errors import ConfigError
from common.quality import lpips, validation


def _config(**eval_fields):
    e = dict(every=10, val_images=3, val_crop=64, val_data="")
    e.update(eval_fields)
    return ml_collections.ConfigDict(dict(eval=e))


def test_the_val_subset_is_every_tenth_photo_and_the_train_subset_the_rest(tmp_path):
    from PIL import Image

    for i in range(23):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / f"p{i:02d}.png")
    names = lambda subset: [os.path.basename(p) for p in pipeline.FolderSource(str(tmp_path), subset=subset).paths]
    val, train, every = names("val"), names("train"), names("")
    assert val == ["p00.png", "p10.png", "p20.png"]
    assert sorted(val + train) == every and not set(val) & set(train)
    with pytest.raises(ConfigError, match="subset='tune'"):
        pipeline.FolderSource(str(tmp_path), subset="tune")


def test_crops_are_centred_fixed_and_rounded_to_the_multiple(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 120, 3), np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img[:40, :50]).save(tmp_path / "b.png")  # smaller than the crop: mirror-padded
    c = validation.crops(_config(val_data=str(tmp_path), val_crop=70), multiple=16)
    assert c.shape == (2, 64, 64, 3) and c.dtype == np.float32
    np.testing.assert_allclose(c[0], img[13:77, 28:92] / 255.0, atol=1e-6)
    np.testing.assert_allclose(c[1, :40, :50], img[:40, :50] / 255.0, atol=1e-6)
    with pytest.raises(ConfigError, match="eval.val_crop"):
        validation.crops(_config(val_data=str(tmp_path), val_crop=40), multiple=64)


def test_without_shared_data_the_builtin_photos_are_used(monkeypatch):
    monkeypatch.setattr(pipeline, "shared_data_dir", lambda name: None)
    src = validation.photos(_config())
    assert [x["name"] for x in src] == validation.FALLBACK.split(",")


def test_image_scores_match_a_numpy_transcription():
    rng = np.random.default_rng(1)
    ref = rng.random((2, 48, 48, 3)).astype(np.float32)
    out = np.clip(ref + rng.normal(0, 0.05, ref.shape), -0.1, 1.1).astype(np.float32)
    s = validation.image_scores(out, ref)
    clipped = np.clip(out, 0, 1).astype(np.float64)
    psnr = np.mean([10 * np.log10(1.0 / np.mean((clipped[i] - ref[i]) ** 2)) for i in range(2)])
    assert s["psnr"] == pytest.approx(psnr, abs=1e-3)
    assert s["lpips"] == pytest.approx(float(np.mean(lpips.get("alex")(clipped, ref))), abs=1e-5)
    assert 0 < s["ssim"] < 1 and validation.image_scores(ref, ref)["ssim"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("field,value", [("every", -1), ("val_images", 0), ("val_crop", 16)])
def test_bad_validation_settings_name_the_key(field, value):
    with pytest.raises(ConfigError, match=f"eval.{field}"):
        validation.check_config(_config(**{field: value}))


def test_the_trainer_logs_validation_every_n_steps_and_at_the_end(trained, tmp_path):
    w = copy_run(trained("tone.py:test"), tmp_path / "run")  # 4 steps; continued to 7 with validation every 2
    run_py(
        [
            "launch.py",
            "--config=configs/tone.py:test",
            f"--workdir={w}",
            "--config.total_steps=7",
            "--config.eval.every=2",
            "--config.eval_at_end=False",
        ]
    )
    lines = [json.loads(x) for x in open(os.path.join(w, "metrics.jsonl"))]
    val = [r["step"] for r in lines if "val/psnr" in r]
    assert val == [6, 7], val
    assert all(np.isfinite(r[k]) for r in lines for k in ("val/psnr", "val/ssim", "val/lpips") if k in r)
