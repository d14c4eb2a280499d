"""Evaluation helpers: labelled sample grids."""

import numpy as np


def test_sample_grids_are_labelled_and_maps_get_a_colour_bar(tmp_path):
    """Column labels add a title band above the grid; a σ scale adds a colour bar beside it."""
    from PIL import Image

    from common.quality import evaluation

    rgb, sigma = np.full((32, 32, 3), 0.5, np.float32), np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    rows = [[rgb, sigma], [rgb, sigma]]
    sizes = {}
    for name, kw in (
        ("plain", {}),
        ("labelled", {"columns": ("input", "map")}),
        ("scaled", {"columns": ("input", "map"), "map_range": (7.0, "σ (pixels)")}),
    ):
        evaluation.save_samples(str(tmp_path), rows, f"{name}.png", **kw)
        with Image.open(tmp_path / f"{name}.png") as im:
            sizes[name] = im.size
    assert sizes["labelled"][1] > sizes["plain"][1]  # the title band
    assert sizes["scaled"][0] > sizes["labelled"][0]  # the colour bar
    evaluation.save_samples(str(tmp_path), [], "none.png")
    assert not (tmp_path / "none.png").exists()
