"""Image sources and grain pipelines shared by every method.

Three sources, chosen by `config.kind`:

* ``builtin``: real photos shipped inside installed packages (scikit-image,
  matplotlib, scikit-learn when installed); offline on a fresh machine. With
  ``prefer_shared=NAME`` the folder ``../shared/data/NAME`` is used instead
  when it exists (a training pool of real photos), the builtins otherwise.
  Its ``subset`` picks part of that folder: ``train`` leaves out every
  `VAL_STRIDE`-th photo (in sorted order), ``val`` is those photos only, so
  that validation during training and recipe tuning see photos no training
  run uses.
  ``stereo_motorcycle`` also carries its real disparity map (as ``depth``).
* ``folder``: every image under a local folder, recursively.
* ``tfds``: a *prepared* TFDS dataset read through ``tfds.data_source``.

A source is a sequence of dicts ``{"image": float32 (H, W, 3) in [0, 1],
"name": str}`` (plus ``"depth"`` where the source has one). Pipelines are
``grain.MapDataset``s over an endless index, transformed by a seeded
``random_map`` and batched, so the stream is a pure function of (seed, index)
and its iterator state is a single integer saved with each checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import grain
import jax
import numpy as np

from common.data import imageio
from common.errors import ConfigError, check_int
from common.train import sharding

# name -> loader returning uint8 RGB (H, W, 3)
_SKIMAGE_NAMES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)
# grayscale photos/textures (returned as 3 equal channels)
_SKIMAGE_GRAY = ("camera", "moon", "grass", "gravel", "brick", "clock", "coins", "page", "text")
_EXTRA_NAMES = ("grace_hopper", "china", "flower")
BUILTIN_NAMES = _SKIMAGE_NAMES + _SKIMAGE_GRAY + _EXTRA_NAMES
ENDLESS = 2**40  # "infinite" index range of training streams
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # common/data/..
SHARED_DATA_ENV = "RESTOREJAX_SHARED_DATA"  # overrides ../shared/data (the benchmark images)


def _load_builtin(name: str) -> dict[str, Any]:
    import skimage.data

    out: dict[str, Any] = {"name": name}
    if name not in BUILTIN_NAMES:
        raise ConfigError(f"unknown builtin image {name!r}; known: {', '.join(BUILTIN_NAMES)}")
    if name == "stereo_motorcycle":
        left, _, disp = skimage.data.stereo_motorcycle()
        out["image"] = left.astype(np.float32) / 255.0
        out["depth"] = disparity_to_depth(disp)
    elif name in _SKIMAGE_NAMES:
        out["image"] = getattr(skimage.data, name)().astype(np.float32) / 255.0
    elif name in _SKIMAGE_GRAY:
        out["image"] = np.repeat(getattr(skimage.data, name)()[..., None], 3, -1).astype(np.float32) / 255.0
    elif name == "grace_hopper":
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        out["image"] = imageio.load_image(str(path))
    elif name in ("china", "flower"):
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as e:
            raise ConfigError(f"builtin image {name!r} needs scikit-learn installed") from e
        out["image"] = load_sample_image(f"{name}.jpg").astype(np.float32) / 255.0
    out["image"] = out["image"][..., :3]
    return out


def available_builtin_names() -> list[str]:
    names = list(_SKIMAGE_NAMES) + ["grace_hopper"]
    try:
        import sklearn  # noqa: F401

        names += ["china", "flower"]
    except ImportError:
        pass
    return names


def disparity_to_depth(disp: np.ndarray) -> np.ndarray:
    """Depth ∝ 1/disparity; invalid (non-finite or <= 0) pixels take the nearest valid depth."""
    from scipy import ndimage

    disp = np.asarray(disp, np.float64)
    valid = np.isfinite(disp) & (disp > 0)
    if not valid.any():
        raise ValueError("disparity map has no valid pixel")
    depth = np.zeros_like(disp)
    depth[valid] = 1.0 / disp[valid]
    if not valid.all():
        idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
        depth = depth[tuple(idx)]
    depth = depth / np.median(depth[valid])  # unit-free: the thin-lens model rescales it
    return depth.astype(np.float32)


class BuiltinSource(Sequence):
    """The embedded default images (loaded once, kept in memory)."""

    def __init__(self, names: str | Sequence[str] | None = None):
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        names = list(names) if names else available_builtin_names()
        self.items = [_load_builtin(n) for n in names]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class FolderSource(Sequence):
    """Every image under a folder (recursively); decoded on access."""

    def __init__(self, path: str, min_size: int = 0, needs: str = "", subset: str = ""):
        """`min_size`: the least side an image may have; `needs` says what needs it (default: the crop).

        `subset`: '' every image; 'val' every `VAL_STRIDE`-th in sorted order; 'train' the others.
        """
        if subset not in SUBSETS:
            raise ConfigError(f"data source subset={subset!r}: expected '', 'train' or 'val'")
        self.paths = imageio.list_images(path)
        if subset:
            val = set(self.paths[::VAL_STRIDE])
            self.paths = [p for p in self.paths if (p in val) == (subset == "val")]
        if min_size:
            small = []
            for p in self.paths:
                h, w = imageio.image_size(p)
                if min(h, w) < min_size:
                    small.append(f"{p} ({h}x{w})")
            if small:
                more = f" and {len(small) - 5} more" if len(small) > 5 else ""
                needs = needs or f"the {min_size}-pixel crop; remove them or lower the crop size"
                raise imageio.ImageError(
                    f"{len(small)} image(s) in {path} have a side under {min_size} pixels: "
                    f"{', '.join(small[:5])}{more} ({needs})"
                )

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        p = self.paths[i]
        return {"image": imageio.load_image(p), "name": os.path.relpath(p)}


class TfdsSource(Sequence):
    """A prepared TFDS dataset (array_record) read without TensorFlow."""

    def __init__(self, name: str, split: str, data_dir: str | None = None, key: str = "image"):
        try:
            import tensorflow_datasets as tfds
        except ImportError as e:  # pragma: no cover - core dependency
            raise ValueError("the tfds source needs tensorflow-datasets installed") from e
        try:
            self.ds = tfds.data_source(name, split=split, data_dir=data_dir)
        except Exception as e:  # noqa: BLE001 - TFDS raises many types; name the dataset
            detail = (str(e).strip().splitlines() or [""])[0][:200]  # TFDS appends every dataset it knows
            raise ConfigError(
                f"TFDS dataset {name!r} split {split!r} is not prepared in "
                f"{data_dir or '~/tensorflow_datasets'} ({type(e).__name__}: {detail}). Prepare it "
                "once with TensorFlow (`pip install .[tf]`, then `tfds build` or the dataset's builder; "
                "tests/helpers/write_tfds.py is an example), or use source kind 'folder'."
            ) from e
        self.key = key
        self.name = name

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        ex = self.ds[i]
        img = np.asarray(ex[self.key])
        scale = 65535.0 if img.dtype == np.uint16 else 255.0
        img = img.astype(np.float32) / scale
        if img.ndim == 2 or img.shape[-1] == 1:
            img = np.repeat(img.reshape(img.shape[:2] + (1,)), 3, -1)
        return {"image": img[..., :3], "name": f"{self.name}[{i}]"}


VAL_STRIDE = 10  # subset 'val' of a shared pool: its sorted photos 0, 10, 20, ... (8 of sun_hays80's 80)
SUBSETS = ("", "train", "val")


def make_source(cfg, min_size: int = 0) -> Sequence:
    """Builds the source described by a config block with field `kind`."""
    kind = cfg.kind
    if kind == "builtin":
        pool = cfg.get("prefer_shared") and shared_data_dir(cfg.prefer_shared)
        if pool:  # a folder of real photos beside the repository beats the few embedded ones
            return FolderSource(pool, min_size=min_size, subset=cfg.get("subset", ""))
        return BuiltinSource(cfg.get("names") or None)
    if kind == "folder":
        if not cfg.get("path"):
            raise ConfigError("data source kind 'folder' needs `path` (e.g. --config.data.train.path=DIR)")
        return FolderSource(cfg.path, min_size=min_size)
    if kind == "tfds":
        return TfdsSource(cfg.name, cfg.get("split", "train"), cfg.get("data_dir") or None)
    raise ConfigError(f"unknown data source kind {kind!r}; expected builtin, folder or tfds")


def shared_data_dir(name: str) -> str | None:
    """`../shared/data/<name>` beside the repository (or under $RESTOREJAX_SHARED_DATA), if it exists."""
    root = os.environ.get(SHARED_DATA_ENV) or os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")
    path = os.path.join(root, name)
    return path if os.path.isdir(path) else None


def image_sets(spec: str, min_size: int = 0, needs: str = "") -> list[tuple[str, Sequence]]:
    """Named evaluation sets from a comma-separated spec.

    Each item is a folder (``../shared/data/set5``; named by its last path
    component, and refused if an image has a side under `min_size`, for what
    `needs` says) or ``builtin:NAME+NAME`` (named ``builtin``).
    """
    sets = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.startswith("builtin:"):
            sets.append(("builtin", BuiltinSource(item[len("builtin:") :].replace("+", ","))))
        else:
            if not os.path.isdir(item):
                raise ConfigError(f"evaluation set {item!r} is not a folder (nor builtin:NAME+NAME)")
            sets.append((os.path.basename(os.path.normpath(item)), FolderSource(item, min_size, needs)))
    if not sets:
        raise ConfigError(f"no evaluation set in {spec!r}")
    return sets


# ----------------------------------------------------------------------------- augmentation


def random_crop(rng: np.random.Generator, size: int, *arrays: np.ndarray) -> list[np.ndarray]:
    """The same random `size` x `size` crop of arrays sharing (H, W); reflect-pads small ones."""
    h, w = arrays[0].shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        arrays = tuple(np.pad(a, ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2), mode="reflect") for a in arrays)
        h, w = arrays[0].shape[:2]
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return [a[y : y + size, x : x + size] for a in arrays]


def random_flip_rot(rng: np.random.Generator, *arrays: np.ndarray) -> list[np.ndarray]:
    """The same random horizontal flip and rot90 applied to every array."""
    k = int(rng.integers(0, 4))
    flip = bool(rng.integers(0, 2))
    out = []
    for a in arrays:
        if flip:
            a = a[:, ::-1]
        out.append(np.ascontiguousarray(np.rot90(a, k)))
    return out


# ----------------------------------------------------------------------------- pipelines


def train_pipeline(
    sample_fn: Callable[[np.random.Generator], dict],
    *,
    batch_size: int,
    seed: int,
    num_threads: int = 2,
):
    """An endless, deterministic, checkpointable grain stream of batches.

    `sample_fn(rng)` builds one example from a generator seeded by (seed,
    index); each process reads its own rows of every batch, so on
    multi-process runs `batch_size` is the global batch.
    """
    pc, pi = jax.process_count(), jax.process_index()
    if batch_size % pc:
        raise ValueError(f"batch size {batch_size} is not divisible by the {pc} processes")
    # One stream seeded by the global index. Process i reads rows [i*b, (i+1)*b) of each global batch, so a
    # step's global batch holds the same examples in the same rows for any process count.
    ds = grain.MapDataset.range(ENDLESS).random_map(lambda _, rng: sample_fn(rng), seed=seed)
    b = batch_size // pc
    if pc > 1:
        stream = ds
        ds = grain.MapDataset.range(ENDLESS).map(lambda m: stream[(m // b) * batch_size + pi * b + m % b])
    ds = ds.batch(b)
    opts = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(2, 2 * num_threads))
    return ds.to_iter_dataset(opts)


AUTO_THREADS_MAX = 16  # each thread keeps two batches in flight; more cores than this rarely pay on one host


def read_threads(config) -> int:
    """``data.threads``, with 0 meaning this process's share of the CPU cores it may use, at most `AUTO_THREADS_MAX`.

    The examples are synthesised in numpy/scipy, which release the GIL: on 2 cores, 2 threads gave 1.7-1.8x
    one thread's images/s (DMENet, tone). A GPU outruns 2 threads several times over (README, "Mixed
    precision"), so the default follows the machine. Processes of one run started on the same machine split
    its cores between them (`common.train.sharding.cpu_cores`) rather than each taking them all."""
    threads = config.data.threads
    check_int("data.threads", threads, 0, "0: one per CPU core")
    if threads:
        return threads
    return min(sharding.cpu_cores(), AUTO_THREADS_MAX)


def train_stream(config, make_example: Callable[[], Callable[[np.random.Generator], dict]]):
    """A Task's ``train_data``: seed -> `train_pipeline` of ``make_example()`` at the config's batch size and
    `read_threads`. `make_example` runs only when training starts (sources are decoded then)."""
    threads = read_threads(config)  # checked when the task is built, before anything trains

    def train_data(seed: int):
        return train_pipeline(make_example(), batch_size=config.batch_size, seed=seed, num_threads=threads)

    return train_data


def fixed_set(sample_fn: Callable[[np.random.Generator], dict], n: int, seed: int) -> list[dict]:
    """`n` examples drawn with seeds (seed, i): a reproducible held-out set."""
    return [sample_fn(np.random.default_rng([seed, i])) for i in range(n)]
