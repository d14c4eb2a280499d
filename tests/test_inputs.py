"""Bad and unusual inputs: clear errors naming the file, or documented handling."""

import os
import struct
import sys
import zlib

import jax
import numpy as np
import pytest
from PIL import Image

from common import data, imageio, vgg
from common.errors import UserError


def _save(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return str(path)


def test_grayscale_rgba_16bit_and_palette_load_as_rgb(tmp_path):
    g = _save(tmp_path / "g.png", np.full((9, 7), 128, np.uint8))
    x = imageio.load_image(g)
    assert x.shape == (9, 7, 3) and np.allclose(x, 128 / 255)
    rgba = np.zeros((5, 5, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # fully transparent -> composited over white
    rgba[0, 0, 3] = 255
    x = imageio.load_image(_save(tmp_path / "a.png", rgba))
    assert np.allclose(x[0, 0], [1, 0, 0]) and np.allclose(x[1, 1], [1, 1, 1])
    a16 = np.full((4, 6), 65535 // 2, np.uint16)
    p16 = str(tmp_path / "d.png")
    Image.fromarray(a16).save(p16)
    x = imageio.load_image(p16)
    assert x.shape == (4, 6, 3) and abs(x[0, 0, 0] - 0.5) < 1e-4  # 16-bit precision kept
    pal = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).convert("P")
    pal.save(tmp_path / "p.png")
    assert imageio.load_image(str(tmp_path / "p.png")).shape == (3, 4, 3)


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(imageio.ImageError, match="broken.jpg"):
        imageio.load_image(str(bad))
    trunc = tmp_path / "trunc.png"
    _save(tmp_path / "ok.png", np.zeros((64, 64, 3), np.uint8))
    trunc.write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    with pytest.raises(imageio.ImageError, match="trunc.png"):
        imageio.load_image(str(trunc))
    with pytest.raises(imageio.ImageError, match="nothere.png"):
        imageio.load_image(str(tmp_path / "nothere.png"))


def test_float_images_are_clipped_and_non_finite_ones_refused(tmp_path):
    f = np.linspace(-0.5, 1.5, 12, dtype=np.float32).reshape(3, 4)
    x = imageio.load_image(_save(tmp_path / "f.tif", f))
    assert x.shape == (3, 4, 3) and np.allclose(x[..., 1], np.clip(f, 0, 1))
    for bad in (np.nan, np.inf):
        f[1, 2] = bad
        with pytest.raises(imageio.ImageError, match="nan.tif.*NaN or infinite"):
            imageio.load_image(_save(tmp_path / "nan.tif", f))


def test_a_header_claiming_a_huge_image_is_refused_naming_the_file(tmp_path):
    """A 20000 x 20000 PNG header over a few bytes of data: PIL's decompression-bomb error, as an ImageError."""

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 99)))
    for read in (imageio.load_image, imageio.image_size):
        with pytest.raises(imageio.ImageError, match="bomb.png.*exceeds limit"):
            read(str(bomb))


# What each EXIF orientation asks a viewer to do to the stored pixels (EXIF 2.3, tag 0x0112)
_UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # turned 180 degrees
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: np.rot90(a[:, ::-1], 1),  # mirrored, then turned 90 degrees counter-clockwise
    6: lambda a: np.rot90(a, -1),  # turned 90 degrees clockwise (a phone held upright)
    7: lambda a: np.rot90(a[:, ::-1], -1),  # mirrored, then turned 90 degrees clockwise
    8: lambda a: np.rot90(a, 1),  # turned 90 degrees counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(_UPRIGHT))
def test_exif_orientation_is_applied(tmp_path, orientation):
    stored = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = str(tmp_path / "photo.png")
    Image.fromarray(stored).save(path, exif=exif.tobytes())
    upright = _UPRIGHT[orientation](stored)
    x = imageio.load_image(path)
    np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), upright)
    assert imageio.image_size(path) == upright.shape[:2]


def test_predict_destinations(tmp_path):
    """A file goes to the named file (the extension added if missing) or into an existing folder under its own
    name; a folder's tree is mirrored under the output folder, which must not be a file."""
    (tmp_path / "in" / "sub").mkdir(parents=True)
    photo = _save(tmp_path / "in" / "sub" / "cat.jpg", np.zeros((4, 4, 3), np.uint8))
    out = tmp_path / "out"
    assert imageio.predict_pairs(photo, str(out / "x")) == [(photo, str(out / "x.png"))]
    assert imageio.predict_pairs(photo, str(out / "x.PNG")) == [(photo, str(out / "x.PNG"))]
    out.mkdir()
    assert imageio.predict_pairs(photo, str(out)) == [(photo, str(out / "cat.png"))]
    assert imageio.predict_pairs(photo, str(out), ext=".rjx") == [(photo, str(out / "cat.rjx"))]
    tree = imageio.predict_pairs(str(tmp_path / "in"), str(tmp_path / "tree"))
    assert tree == [(photo, str(tmp_path / "tree/sub/cat.png"))]
    streams = [str(tmp_path / "in" / "sub" / "a.rjx")]
    pairs = imageio.predict_pairs(str(tmp_path / "in"), str(tmp_path / "dec"), folder_files=lambda _: streams)
    assert pairs == [(streams[0], str(tmp_path / "dec/sub/a.png"))]
    a_file = tmp_path / "taken.png"
    a_file.write_bytes(b"x")
    with pytest.raises(imageio.ImageError, match="taken.png: is a file; the input .* is a folder"):
        imageio.predict_pairs(str(tmp_path / "in"), str(a_file))
    with pytest.raises(imageio.ImageError, match="nothere.jpg: no such file or folder"):
        imageio.predict_pairs(str(tmp_path / "nothere.jpg"), str(out))


def test_outputs_that_cannot_be_written_name_the_path(tmp_path):
    """A file where an output folder should be, or a write that fails (here a full disk), is one ImageError
    naming the path; nothing partial is left behind, and an earlier output of that name is kept."""
    (tmp_path / "afile").write_text("in the way")
    for dst in (tmp_path / "afile" / "x.png", tmp_path / "afile" / "sub" / "x.png"):
        with pytest.raises(imageio.ImageError, match="afile.*: cannot make the output folder: a file is in the way"):
            imageio.save_png(str(dst), np.zeros((4, 4, 3)))
    (tmp_path / "src").mkdir()
    _save(tmp_path / "src" / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(imageio.ImageError, match="afile/out: cannot make the output folder"):
        imageio.predict_pairs(str(tmp_path / "src"), str(tmp_path / "afile" / "out"))

    def full_disk(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    dst = tmp_path / "out.rjx"
    dst.write_bytes(b"earlier")
    with pytest.raises(imageio.ImageError, match=r"out.rjx: cannot write the output: No space left on device"):
        imageio.write_atomic(str(dst), full_disk)
    assert sorted(os.listdir(tmp_path)) == ["afile", "out.rjx", "src"] and dst.read_bytes() == b"earlier"


def test_progress_bars_only_on_a_terminal_and_for_several_items(monkeypatch):
    items = [("a", "b"), ("c", "d"), ("e", "f")]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert imageio.progress(items, "predict") is items  # logs and pipes get no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert imageio.progress(items[:1], "predict") == items[:1]  # one image: no bar
    bar = imageio.progress(items, "predict")
    assert bar is not items and type(bar).__module__.startswith("tqdm") and list(bar) == items
    assert bar.total == 3 and bar.desc == "predict"


def test_folder_source_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="contains no images"):
        data.FolderSource(str(empty))
    with pytest.raises(UserError, match="no such folder"):
        data.FolderSource(str(tmp_path / "missing"))
    imgs = tmp_path / "imgs" / "sub"
    imgs.mkdir(parents=True)
    _save(imgs / "big.png", np.zeros((80, 90, 3), np.uint8))
    _save(imgs / "small.png", np.zeros((20, 90, 3), np.uint8))
    with pytest.raises(UserError, match=r"small.png \(20x90\)"):
        data.FolderSource(str(tmp_path / "imgs"), min_size=64)
    src = data.FolderSource(str(tmp_path / "imgs"), min_size=16)  # recursive
    assert len(src) == 2 and src[0]["image"].shape[-1] == 3


def test_an_evaluation_folder_with_images_too_small_to_score_is_refused(tmp_path):
    """LPIPS-alex is NaN below 31 pixels a side: such images are named before any score, not averaged as NaN."""
    from common import evaluation, lpips

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
    monkeypatch.setenv(data.SHARED_DATA_ENV, str(tmp_path))
    assert isinstance(data.make_source(cfg), data.BuiltinSource)  # no pool folder: the builtins
    (tmp_path / "pool").mkdir()
    _save(tmp_path / "pool" / "a.png", np.zeros((70, 70, 3), np.uint8))
    src = data.make_source(cfg, min_size=64)
    assert isinstance(src, data.FolderSource) and len(src) == 1
    assert isinstance(data.make_source(source("camera")), data.BuiltinSource)  # no preference: the builtins


def test_unknown_builtin_and_source_kind():
    from ml_collections import ConfigDict

    with pytest.raises(UserError, match="unknown builtin image 'lena'"):
        data.BuiltinSource("astronaut,lena")
    with pytest.raises(UserError, match="unknown data source kind 'web'"):
        data.make_source(ConfigDict(dict(kind="web")))


def test_grey_builtins_and_evaluation_set_specs(tmp_path):
    cam = data.BuiltinSource("camera")[0]["image"]
    assert cam.shape == (512, 512, 3) and np.array_equal(cam[..., 0], cam[..., 2])
    folder = tmp_path / "myset"
    folder.mkdir()
    imageio.save_png(str(folder / "a.png"), np.zeros((8, 8, 3)))
    sets = data.image_sets(f"{folder}, builtin:coffee+camera")
    assert [(n, len(s)) for n, s in sets] == [("myset", 1), ("builtin", 2)]
    with pytest.raises(UserError, match="'nowhere' is not a folder"):
        data.image_sets("nowhere")
    with pytest.raises(UserError, match="no evaluation set"):
        data.image_sets(" , ")


def test_unknown_config_variant():
    from configs import defocus

    with pytest.raises(ValueError, match="quik"):
        defocus.get_config("quik")


def test_pipeline_is_deterministic_and_resumable():
    fn = lambda rng: {"x": rng.uniform(size=(2,)).astype(np.float32)}
    it = iter(data.train_pipeline(fn, batch_size=3, seed=7, num_threads=1))
    first = [next(it)["x"] for _ in range(2)]
    state = it.get_state()
    third = next(it)["x"]
    it2 = iter(data.train_pipeline(fn, batch_size=3, seed=7, num_threads=2))
    np.testing.assert_array_equal(next(it2)["x"], first[0])
    it2.set_state(state)
    np.testing.assert_array_equal(next(it2)["x"], third)
    other = iter(data.train_pipeline(fn, batch_size=3, seed=8, num_threads=1))
    assert not np.array_equal(next(other)["x"], first[0])


def test_read_threads_follow_the_machine_unless_set(monkeypatch):
    """data.threads=0 (the default variants): one thread per core this process may use, at most 16; a set
    value is kept (the stream is the same for any count, above); a negative or fractional one is a one-line
    error naming the key."""
    import ml_collections

    from common.errors import ConfigError

    def cfg(threads):
        return ml_collections.ConfigDict({"data": {"threads": threads}})

    for cores, want in ((1, 1), (6, 6), (64, data.AUTO_THREADS_MAX)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert data.read_threads(cfg(0)) == want
        assert data.read_threads(cfg(3)) == 3
    for bad in (-1, 1.5):
        with pytest.raises(ConfigError, match=r"data\.threads"):
            data.read_threads(cfg(bad))


def test_read_threads_split_the_cores_between_processes_on_one_host(monkeypatch):
    """Several processes of one run started on this machine (coordinator on a loopback address) share its cores:
    each takes cores // processes, at least 1, unless it was bound to its share (then its affinity is the share).
    A coordinator elsewhere, or named by this host's name (processes on other hosts join it too), leaves the
    count alone (a launcher that shares a host binds each task's affinity itself)."""
    import socket

    import ml_collections

    from common import sharding

    config = ml_collections.ConfigDict({"data": {"threads": 0}})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    monkeypatch.setattr(jax, "process_count", lambda: 4)
    for here in ("localhost:1234", "127.0.0.1:1234", "[::1]:1234"):
        monkeypatch.setattr(sharding, "_coordinator", here)
        assert sharding.processes_on_this_host() == 4, here
        assert data.read_threads(config) == 1  # 6 cores // 4 processes
    for elsewhere in ("10.1.2.3:1234", "node-17.cluster:1234", f"{socket.gethostname()}:99", None):
        monkeypatch.setattr(sharding, "_coordinator", elsewhere)
        assert sharding.processes_on_this_host() == 1, elsewhere
        assert data.read_threads(config) == 6
    monkeypatch.setattr(sharding, "_coordinator", "localhost:1234")
    monkeypatch.setattr(sharding, "_pinned", True)
    assert data.read_threads(config) == 6  # the affinity is already this process's share
    monkeypatch.setattr(sharding, "_pinned", False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    assert data.read_threads(config) == 1  # never 0 threads
    monkeypatch.setattr(jax, "process_count", lambda: 1)
    assert data.read_threads(config) == 2


@pytest.mark.parametrize("n_cores,n_proc", [(2, 2), (16, 3), (6, 4), (2, 4), (1, 3), (64, 8)])
def test_processes_on_one_host_get_disjoint_shares_of_its_cores(n_cores, n_proc):
    from common import sharding

    cores = set(range(100, 100 + n_cores))
    shares = [sharding.share_of_cores(cores, n_proc, i) for i in range(n_proc)]
    assert all(shares) and set().union(*shares) == cores
    if n_cores >= n_proc:  # disjoint, within one core of each other
        assert sum(map(len, shares)) == n_cores
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    else:  # one core each, spread over all of them
        assert all(len(s) == 1 for s in shares)


def test_binding_to_a_share_happens_only_for_a_loopback_group_on_an_unbound_machine(monkeypatch):
    from common import sharding

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: None)
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cores: calls.append(cores), raising=False)
    monkeypatch.setattr(sharding, "_pinned", False)
    monkeypatch.setattr(sharding, "_coordinator", None)
    for affinity, address, want in (
        (set(range(4)), "127.0.0.1:5", [{2, 3}]),
        (set(range(4)), "otherhost:5", []),
        ({0, 1}, "localhost:5", []),  # narrowed already (taskset, cpuset, a launcher): left alone
    ):
        calls.clear()
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, a=affinity: a, raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: 4)
        assert sharding.initialize_distributed(coordinator_address=address, num_processes=2, process_id=1)
        assert calls == want, (affinity, address)
        assert sharding._pinned == bool(want)
        monkeypatch.setattr(sharding, "_pinned", False)


def test_disparity_to_depth_fills_invalid():
    disp = np.array([[1.0, np.inf], [0.0, 2.0]])
    d = data.disparity_to_depth(disp)
    assert np.all(np.isfinite(d)) and d[0, 0] > d[1, 1]


# ----------------------------------------------------------------------------- VGG weights


def _fake_layers(seed=0):
    rng = np.random.default_rng(seed)
    out, cin = {}, 3
    for layer in vgg.LAYERS:
        c = vgg.CHANNELS[layer]
        out[layer] = (
            rng.normal(size=(3, 3, cin, c)).astype(np.float32) * 0.01,
            rng.normal(size=(c,)).astype(np.float32),
        )
        cin = c
    return out


def test_convert_npy_dict_format(tmp_path):
    layers = _fake_layers()
    d = {k: [w, b] for k, (w, b) in layers.items()}
    d["fc6"] = [np.zeros((2, 2), np.float32), np.zeros(2, np.float32)]  # ignored
    np.save(tmp_path / "vgg19.npy", d, allow_pickle=True)
    vgg.convert(str(tmp_path / "vgg19.npy"), str(tmp_path / "w.npz"))
    variables, pre = vgg.load(str(tmp_path / "w.npz"))
    assert pre == "caffe"
    p = variables["params"]
    np.testing.assert_array_equal(p["conv1_1"]["kernel"], layers["conv1_1"][0][:, :, ::-1])  # BGR -> RGB
    np.testing.assert_array_equal(p["conv5_4"]["bias"], layers["conv5_4"][1])
    # the module runs with them and conv1_1 on an RGB input equals the BGR kernel on a BGR input
    import jax.numpy as jnp

    x = np.random.default_rng(1).uniform(size=(1, 16, 16, 3)).astype(np.float32)
    feats = vgg.VGG(upto="conv1_1").apply(variables, jnp.asarray(x))
    xb = (x * 255.0 - np.array([123.68, 116.779, 103.939], np.float32))[..., ::-1]
    import jax

    ref = jax.lax.conv_general_dilated(
        jnp.asarray(xb), layers["conv1_1"][0], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_allclose(feats["conv1_1"], np.maximum(ref + layers["conv1_1"][1], 0), rtol=1e-4, atol=1e-3)


def test_convert_keras_h5_format(tmp_path):
    import h5py

    layers = _fake_layers(1)
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        for layer, (w, b) in layers.items():
            name = f"block{layer[4]}_conv{layer[6]}"
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
            g.create_dataset(f"{name}_W_1:0", data=w)
            g.create_dataset(f"{name}_b_1:0", data=b)
    vgg.convert(str(path), str(tmp_path / "w.npz"))
    variables, pre = vgg.load(str(tmp_path / "w.npz"))
    np.testing.assert_array_equal(variables["params"]["conv3_2"]["kernel"], layers["conv3_2"][0])


def test_convert_torchvision_pth(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install .[torch]")
    layers = _fake_layers(2)
    sd = {}
    for layer, idx in vgg._TORCH_INDEX.items():
        w, b = layers[layer]
        sd[f"features.{idx}.weight"] = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
        sd[f"features.{idx}.bias"] = torch.from_numpy(b)
    torch.save(sd, tmp_path / "vgg19-dcbb9e9d.pth")
    vgg.convert(str(tmp_path / "vgg19-dcbb9e9d.pth"), str(tmp_path / "w.npz"))
    variables, pre = vgg.load(str(tmp_path / "w.npz"))
    assert pre == "torch"
    np.testing.assert_array_equal(variables["params"]["conv1_1"]["kernel"], layers["conv1_1"][0])


def test_missing_and_malformed_weights(tmp_path):
    with pytest.raises(vgg.WeightsError, match="not found"):
        vgg.load(str(tmp_path / "none.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(vgg.WeightsError, match="bad.npz"):
        vgg.load(str(bad))
    np.savez(tmp_path / "partial.npz", __preprocess__=np.array("caffe"), **{"conv1_1/kernel": np.zeros((3, 3, 3, 64))})
    with pytest.raises(vgg.WeightsError, match="missing array 'conv1_1/bias'"):
        vgg.load(str(tmp_path / "partial.npz"))
    layers = _fake_layers()
    arrays = {f"{k}/kernel": w for k, (w, _) in layers.items()} | {f"{k}/bias": b for k, (_, b) in layers.items()}
    arrays["conv2_1/kernel"] = np.zeros((3, 3, 64, 100), np.float32)
    np.savez(tmp_path / "shape.npz", __preprocess__=np.array("caffe"), **arrays)
    with pytest.raises(vgg.WeightsError, match="conv2_1/kernel"):
        vgg.load(str(tmp_path / "shape.npz"))
    with pytest.raises(vgg.WeightsError, match="unknown weights format"):
        open(tmp_path / "x.bin", "wb").write(b"1")
        vgg.convert(str(tmp_path / "x.bin"), str(tmp_path / "y.npz"))
    assert os.path.exists(tmp_path / "x.bin")
