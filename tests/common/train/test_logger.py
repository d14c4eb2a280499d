"""Run outputs: metrics.jsonl lines, NaN detection, truncation on resume."""

import json
import math

import numpy as np
import pytest

from common.train import logger


def test_scalars_written_flat_and_nan_raises(tmp_path):
    log = logger.Logger(str(tmp_path), metadata={"method": "x"})
    log.scalars(2, {"loss": {"a": np.float32(1.5)}, "b": 2})
    log.scalars(4, {"loss": {"a": 0.5}, "b": 1})
    with pytest.raises(FloatingPointError, match="step 6: loss/a"):
        log.scalars(6, {"loss": {"a": math.nan}, "b": 1})
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert lines == [{"step": 2, "loss/a": 1.5, "b": 2.0}, {"step": 4, "loss/a": 0.5, "b": 1.0}]
    log.truncate_after(2)
    assert [json.loads(x)["step"] for x in open(tmp_path / "metrics.jsonl")] == [2]
    path = log.image(4, "train", np.zeros((8, 8, 3)))
    assert path.endswith("samples/train_0000004.png")
    log.close()
    assert json.load(open(tmp_path / "run_metadata.json")) == {"method": "x"}
