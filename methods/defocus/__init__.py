"""DMENet: defocus-map estimation with domain adaptation (patent 002).

``build(config)`` assembles the trainer's Task from the package's parts:
`model` (networks, Eqs. 2-7 as losses, state and train step), `data` (the
thin-lens synthetic pairs and the real streams) and `evaluate` (held-out
scores, plots, prediction).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from common.data import pipeline
from common.errors import ConfigError, check_size
from common.pretrained import vgg
from common.quality import evaluation
from common.train import trainer
from methods.defocus import data, evaluate, model


def check_config(config) -> None:
    for name, size in (("data.crop", config.data.crop), ("eval.crop", config.eval.crop)):
        check_size(name, size, 16, "B down-samples 4 times")
    evaluation.check_tiling(config)
    if config.model.sharp_loss not in ("mse", "bce"):
        raise ConfigError(f"config model.sharp_loss={config.model.sharp_loss!r}: expected 'mse' or 'bce'")
    if config.data.real.kind not in ("proxy", "same-as-masked"):
        raise ConfigError(f"config data.real.kind={config.data.real.kind!r}: expected 'proxy' or 'same-as-masked'")
    if config.data.masked.kind not in ("proxy", "folder"):
        raise ConfigError(f"config data.masked.kind={config.data.masked.kind!r}: expected 'proxy' or 'folder'")


def build(config) -> trainer.Task:
    """Everything the trainer needs for DMENet under `config`."""
    check_config(config)
    backbone = vgg.load_backbone(config.backbone, config.vgg19_weights, width=config.model.vgg_width, seed=config.seed)
    nets = model.Nets(config, backbone)
    init_encoder = backbone.pretrained and config.model.init_encoder
    encoder = backbone.variables["params"] if init_encoder else None

    def init(key):
        enc = jax.tree.map(jnp.asarray, encoder) if encoder is not None else None
        return model.init_state(key, nets, config, enc)

    on = model.uses(config.loss)
    ev = evaluate.Evaluator(config, functools.partial(model.predict_maps, nets=nets))
    return trainer.Task(
        init=init,
        train_step=functools.partial(model.train_step, nets=nets, config=config),
        train_data=pipeline.train_stream(config, lambda: data.example_fn(config, config.data.train)),
        total_steps=config.total_steps,
        frozen={"vgg": backbone.variables},
        samples=ev.train_samples,
        evaluate=ev.evaluate,
        validate=ev.validator() if config.eval.every else None,
        predict=ev.predict,
        metadata={**backbone.metadata(), "encoder_init": "imagenet" if init_encoder else "random"},
        images_per_step=(1 + int(on["adv"]) + int(on["sharp"])) * config.batch_size,
    )
