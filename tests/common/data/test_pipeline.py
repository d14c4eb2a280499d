"""Image sources and the input pipeline: folders, builtin photos, evaluation sets, determinism, read threads."""

import os

import numpy as np
import pytest
from PIL import Image

from common.data import imageio, pipeline
from common.errors import UserError


def _save(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return str(path)


def test_folder_source_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="contains no images"):
        pipeline.FolderSource(str(empty))
    with pytest.raises(UserError, match="no such folder"):
        pipeline.FolderSource(str(tmp_path / "missing"))
    imgs = tmp_path / "imgs" / "sub"
    imgs.mkdir(parents=True)
    _save(imgs / "big.png", np.zeros((80, 90, 3), np.uint8))
    _save(imgs / "small.png", np.zeros((20, 90, 3), np.uint8))
    with pytest.raises(UserError, match=r"small.png \(20x90\)"):
        pipeline.FolderSource(str(tmp_path / "imgs"), min_size=64)
    src = pipeline.FolderSource(str(tmp_path / "imgs"), min_size=16)  # recursive
    assert len(src) == 2 and src[0]["image"].shape[-1] == 3


def test_an_evaluation_folder_with_images_too_small_to_score_is_refused(tmp_path):
    """LPIPS-alex is NaN below 31 pixels a side: such images are named before any score, not averaged as NaN."""
    from common.quality import evaluation, lpips

    _save(tmp_path / "ok.png", np.zeros((40, 50, 3), np.uint8))
    _save(tmp_path / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(UserError, match=r"tiny.png \(1x1\) \(the scores need 40 pixels a side \(LPIPS-alex 31"):
        evaluation.eval_sets(str(tmp_path), (), "", 40)
    assert len(evaluation.eval_sets(str(tmp_path), (), "", 0)[0][1]) == 2  # no minimum: both
    for net, side in lpips.MIN_SIDE.items():  # the smallest side scores finite, one pixel less is an error
        a = np.random.default_rng(0).random((side, side + 3, 3)).astype(np.float32)
        assert np.isfinite(lpips.score(a, 0.9 * a, net))
        with pytest.raises(ValueError, match=f"LPIPS-{net} needs images of at least {side} pixels a side"):
            lpips.score(a[1:], 0.9 * a[1:], net)


def test_builtin_source_prefers_a_shared_photo_folder_when_present(tmp_path, monkeypatch):
    from configs.base import source

    cfg = source("camera", prefer_shared="pool")
    monkeypatch.setenv(pipeline.SHARED_DATA_ENV, str(tmp_path))
    assert isinstance(pipeline.make_source(cfg), pipeline.BuiltinSource)  # no pool folder: the builtins
    (tmp_path / "pool").mkdir()
    _save(tmp_path / "pool" / "a.png", np.zeros((70, 70, 3), np.uint8))
    src = pipeline.make_source(cfg, min_size=64)
    assert isinstance(src, pipeline.FolderSource) and len(src) == 1
    assert isinstance(pipeline.make_source(source("camera")), pipeline.BuiltinSource)  # no preference: the builtins


def test_without_the_override_the_shared_folder_is_beside_the_repository(monkeypatch, tmp_path):
    """../shared/data is found relative to the repository root (where launch.py is), wherever the module sits."""
    assert os.path.isfile(os.path.join(pipeline.REPO_ROOT, "launch.py"))
    monkeypatch.delenv(pipeline.SHARED_DATA_ENV, raising=False)
    monkeypatch.setattr(pipeline, "REPO_ROOT", str(tmp_path / "repo"))
    (tmp_path / "shared" / "data" / "kodak").mkdir(parents=True)
    assert pipeline.shared_data_dir("kodak") == str(tmp_path / "shared" / "data" / "kodak")
    assert pipeline.shared_data_dir("set5") is None


def test_unknown_builtin_and_source_kind():
    from ml_collections import ConfigDict

    with pytest.raises(UserError, match="unknown builtin image 'lena'"):
        pipeline.BuiltinSource("astronaut,lena")
    with pytest.raises(UserError, match="unknown data source kind 'web'"):
        pipeline.make_source(ConfigDict(dict(kind="web")))


def test_grey_builtins_and_evaluation_set_specs(tmp_path):
    cam = pipeline.BuiltinSource("camera")[0]["image"]
    assert cam.shape == (512, 512, 3) and np.array_equal(cam[..., 0], cam[..., 2])
    folder = tmp_path / "myset"
    folder.mkdir()
    imageio.save_png(str(folder / "a.png"), np.zeros((8, 8, 3)))
    sets = pipeline.image_sets(f"{folder}, builtin:coffee+camera")
    assert [(n, len(s)) for n, s in sets] == [("myset", 1), ("builtin", 2)]
    with pytest.raises(UserError, match="'nowhere' is not a folder"):
        pipeline.image_sets("nowhere")
    with pytest.raises(UserError, match="no evaluation set"):
        pipeline.image_sets(" , ")


def test_unknown_config_variant():
    from configs import defocus

    with pytest.raises(ValueError, match="quik"):
        defocus.get_config("quik")


def test_pipeline_is_deterministic_and_resumable():
    fn = lambda rng: {"x": rng.uniform(size=(2,)).astype(np.float32)}
    it = iter(pipeline.train_pipeline(fn, batch_size=3, seed=7, num_threads=1))
    first = [next(it)["x"] for _ in range(2)]
    state = it.get_state()
    third = next(it)["x"]
    it2 = iter(pipeline.train_pipeline(fn, batch_size=3, seed=7, num_threads=2))
    np.testing.assert_array_equal(next(it2)["x"], first[0])
    it2.set_state(state)
    np.testing.assert_array_equal(next(it2)["x"], third)
    other = iter(pipeline.train_pipeline(fn, batch_size=3, seed=8, num_threads=1))
    assert not np.array_equal(next(other)["x"], first[0])


def test_read_threads_follow_the_machine_unless_set(monkeypatch):
    """data.threads=0 (the default variants): one thread per core this process may use, at most 16; a set
    value is kept (the stream is the same for any count, above); a negative or fractional one is a one-line
    error naming the key."""
    import ml_collections

    from common.errors import ConfigError

    def cfg(threads):
        return ml_collections.ConfigDict({"data": {"threads": threads}})

    for cores, want in ((1, 1), (6, 6), (64, pipeline.AUTO_THREADS_MAX)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert pipeline.read_threads(cfg(0)) == want
        assert pipeline.read_threads(cfg(3)) == 3
    for bad in (-1, 1.5):
        with pytest.raises(ConfigError, match=r"data\.threads"):
            pipeline.read_threads(cfg(bad))
