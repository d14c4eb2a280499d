"""Image files in and out: unusual and broken inputs get documented handling or a clear error naming the file."""

import os
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from common.data import imageio


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


def test_conversions_are_said_once_per_kind(tmp_path, monkeypatch):
    """Grey, 16-bit and transparent inputs are converted (to RGB, 8-bit outputs, over white): each kind is
    reported once per process, naming the first such file; an RGB file says nothing."""
    import logging

    monkeypatch.setattr(imageio, "_NOTED", set())
    said = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    log = logging.getLogger("restore_jax")
    log.addHandler(handler)
    try:
        grey = _save(tmp_path / "g.png", np.zeros((4, 4), np.uint8))
        deep = _save(tmp_path / "d.png", np.full((4, 4), 40000, np.uint16))
        rgba = _save(tmp_path / "a.png", np.zeros((4, 4, 4), np.uint8))
        rgb = _save(tmp_path / "c.png", np.zeros((4, 4, 3), np.uint8))
        for path in (rgb, grey, grey, deep, deep, rgba, rgba, rgb):
            imageio.load_image(path)
    finally:
        log.removeHandler(handler)
    assert len(said) == 3, said  # grey; 16-bit (also grey, already said); transparent: each once
    assert "g.png is greyscale" in said[0] and "d.png is 16-bit" in said[1] and "a.png is transparent" in said[2]
    assert "a.png is greyscale" not in " ".join(said) and "c.png" not in " ".join(said)


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
    """A file goes to exactly the file named (its extension must name a format written; nothing is appended) or
    into an existing folder under its own name; a folder's tree is mirrored under the output folder, which must
    not be a file."""
    (tmp_path / "in" / "sub").mkdir(parents=True)
    photo = _save(tmp_path / "in" / "sub" / "cat.jpg", np.zeros((4, 4, 3), np.uint8))
    out = tmp_path / "out"
    for name in ("x.PNG", "x.jpg", "x.jpeg", "x.tif", "x.webp"):
        assert imageio.predict_pairs(photo, str(out / name)) == [(photo, str(out / name))]
    for name in ("x", "x.png.bak", "x.rjx"):
        with pytest.raises(imageio.ImageError, match=rf"--output=.*{name}: this writes an image; give a name ending"):
            imageio.predict_pairs(photo, str(out / name))
    with pytest.raises(imageio.ImageError, match=r"out.png: this writes a bitstream; give a name ending in .rjx"):
        imageio.predict_pairs(photo, str(out / "out.png"), ".rjx", allowed=(".rjx",), what="a bitstream")
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


@pytest.mark.parametrize("ext,fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".tiff", "TIFF"), (".webp", "WEBP")])
def test_save_image_writes_the_format_its_name_asks_for(tmp_path, ext, fmt):
    yy, xx = np.mgrid[0:16, 0:24] / 32.0  # smooth, so that JPEG at quality 95 stays close
    img = np.stack([yy, xx, 0.5 + 0 * xx], -1).astype(np.float32)
    path = str(tmp_path / f"out{ext}")
    imageio.save_image(path, img)
    with Image.open(path) as f:
        assert f.format == fmt and f.size == (24, 16)
    back = imageio.load_image(path)
    tol = (
        10 / 255 if fmt == "JPEG" else 0.5 / 255 + 1e-6
    )  # JPEG subsamples the colour  # lossless formats give the 8-bit image back
    assert np.abs(back - img).max() <= tol
    with pytest.raises(imageio.ImageError, match=r"out.gif: cannot write this format"):
        imageio.save_image(str(tmp_path / "out.gif"), img)


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
