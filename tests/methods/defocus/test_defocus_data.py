"""DMENet data: real disparity maps to depth."""

import numpy as np

from common.data import pipeline


def test_disparity_to_depth_fills_invalid():
    disp = np.array([[1.0, np.inf], [0.0, 2.0]])
    d = pipeline.disparity_to_depth(disp)
    assert np.all(np.isfinite(d)) and d[0, 0] > d[1, 1]


# ----------------------------------------------------------------------------- VGG weights
