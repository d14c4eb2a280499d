"""The TFDS source: a prepared ArrayRecord dataset read through `tfds.data_source`, without TensorFlow.

tests/data/tfds holds `tiny_photos`, written by tests/helpers/write_tfds.py (which needs TensorFlow: the `tf` extra).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import write_tfds  # tests/helpers is on the path (conftest)
from conftest import ROOT, run_py

from common.data import pipeline
from common.errors import ConfigError
from configs.base import source

DATA_DIR = os.path.join(ROOT, "tests", "data", "tfds")


def tfds_source(**kw):
    return source(**{"kind": "tfds", "name": write_tfds.NAME, "data_dir": DATA_DIR, **kw})


def test_the_prepared_dataset_holds_the_written_photos():
    src = pipeline.make_source(tfds_source())
    assert len(src) == 4 and [src[i]["name"] for i in range(4)] == [f"tiny_photos[{i}]" for i in range(4)]
    stored = sorted(np.round(src[i]["image"] * 255).astype(np.uint8).tobytes() for i in range(4))
    assert stored == sorted(x.tobytes() for x in write_tfds.photos())  # PNG inside: lossless; TFDS shuffles the order


@pytest.mark.parametrize("field,value", [("name", "no_such_set"), ("split", "test"), ("data_dir", "/nonexistent/tfds")])
def test_a_missing_dataset_split_or_folder_is_one_line_error(field, value):
    with pytest.raises(ConfigError) as e:
        pipeline.make_source(tfds_source(**{field: value}))
    msg = str(e.value)
    assert "\n" not in msg
    cfg = {"name": write_tfds.NAME, "split": "train", "data_dir": DATA_DIR, field: value}
    assert f"{cfg['name']!r}" in msg and f"split {cfg['split']!r}" in msg and cfg["data_dir"] in msg


@pytest.mark.slow
def test_trains_from_the_tfds_dataset_without_tensorflow(tmp_path):
    # a `tensorflow` that cannot be imported, first on the path: reading must not need it
    block = tmp_path / "no_tf"
    (block / "tensorflow").mkdir(parents=True)
    (block / "tensorflow" / "__init__.py").write_text("raise ImportError('TensorFlow is blocked by this test')\n")
    workdir = tmp_path / "run"
    p = run_py(
        [
            "launch.py",
            "--config=configs/compression.py:test",
            f"--workdir={workdir}",
            "--config.data.train.kind=tfds",
            f"--config.data.train.name={write_tfds.NAME}",
            f"--config.data.train.data_dir={DATA_DIR}",
            "--config.total_steps=2",
            "--config.eval_at_end=False",
        ],
        env={"PYTHONPATH": f"{block}{os.pathsep}{ROOT}"},
    )
    steps = [json.loads(line)["step"] for line in open(workdir / "metrics.jsonl")]
    assert steps == [2], p.stderr[-2000:]
    assert json.load(open(workdir / "config.json"))["data"]["train"]["kind"] == "tfds"


@pytest.mark.slow
def test_write_tfds_reproduces_the_stored_dataset(tmp_path):
    """Needs TensorFlow (`pip install -e '.[tf]'`): the writer makes the dataset that tests/data/tfds holds."""
    pytest.importorskip("tensorflow")
    subprocess.run(
        [sys.executable, "tests/helpers/write_tfds.py", str(tmp_path)], cwd=ROOT, check=True, capture_output=True
    )
    fresh = pipeline.make_source(tfds_source(data_dir=str(tmp_path)))
    stored = pipeline.make_source(tfds_source())
    assert len(fresh) == len(stored)
    for i in range(len(stored)):
        np.testing.assert_array_equal(fresh[i]["image"], stored[i]["image"])
