"""Writes the test TFDS dataset: a few generated photos as a prepared ArrayRecord dataset (needs TensorFlow).

    pip install -e '.[tf]' && python tests/helpers/write_tfds.py DATA_DIR

`DATA_DIR/tiny_photos/1.0.0/` is what `tfds.data_source("tiny_photos", data_dir=DATA_DIR)` reads, and what
`--config.data.train.kind=tfds --config.data.train.name=tiny_photos --config.data.train.data_dir=DATA_DIR`
trains from. A copy written by this script is kept in tests/data/tfds so the reading side is tested
without TensorFlow.
"""

import sys

import numpy as np

NAME, VERSION, SIZE = "tiny_photos", "1.0.0", (72, 96)


def photos(n: int = 4) -> list[np.ndarray]:
    """Smooth colour gradients with a few discs: small as PNG, unlike noise, and not flat."""
    h, w = SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    rng = np.random.default_rng(0)
    for _ in range(n):
        img = np.stack([np.cos(xx / w * a + yy / h * b + c) for a, b, c in rng.uniform(0, 6, (3, 3))], -1)
        discs = np.stack([rng.uniform(0, h, 3), rng.uniform(0, w, 3), rng.uniform(6, 20, 3), rng.uniform(-1, 1, 3)], 1)
        for cy, cx, r, v in discs:
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = v
        out.append(np.round((img + 1) * 127.5).clip(0, 255).astype(np.uint8))
    return out


def write(data_dir: str) -> None:
    import tensorflow_datasets as tfds

    features = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3))})
    tfds.dataset_builders.store_as_tfds_dataset(
        name=NAME,
        version=VERSION,
        features=features,
        split_datasets={"train": [(i, {"image": x}) for i, x in enumerate(photos())]},
        data_dir=data_dir,
        file_format="array_record",
        description="Generated test photos of restore-jax (tests/write_tfds.py).",
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    write(sys.argv[1])
