"""SRFeat: single-image super-resolution with feature discrimination (patent 000).

``build(config)`` assembles the trainer's Task for stage 1 (``pretrain``,
SRFeat_M) or stage 2 (``gan``, initialised from a stage-1 run) from `model`
(generator, discriminators, losses, the steps), `data` (HR patches and their
bicubic LR) and `evaluate` (the SR benchmark protocol, samples, prediction).
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp

from common.data import pipeline
from common.errors import ConfigError, check_size
from common.pretrained import vgg
from common.quality import evaluation
from common.train import checkpoint, logger, trainer
from methods.srfeat import data, evaluate, model


def check_config(config) -> None:
    model.upsampling_factors(config.model.scale)
    check_size("data.lr_size", config.data.lr_size)
    evaluation.check_tiling(config)
    if config.stage not in ("pretrain", "gan"):
        raise ConfigError(f"config stage={config.stage!r}: expected 'pretrain' or 'gan'")
    if config.disc.schedule not in ("alternate", "simultaneous"):
        raise ConfigError(f"config disc.schedule={config.disc.schedule!r}: expected 'alternate' or 'simultaneous'")
    if config.stage == "gan":
        if not config.init_from:
            raise ConfigError(
                "config stage=gan needs --config.init_from=WORKDIR of a stage-1 (pretrain) run "
                "(or --config.init_from=scratch to start the generator from random weights)"
            )
        if not (config.disc.image or config.disc.feature):
            raise ConfigError("config stage=gan with disc.image=False and disc.feature=False: no discriminator left")
        if config.data.lr_size * config.model.scale < 16:
            raise ConfigError("config data.lr_size * model.scale must be >= 16 (VGG-19 conv5_4 is 1/16 resolution)")
    elif config.init_from not in ("", "scratch"):
        raise ConfigError(f"config init_from={config.init_from!r} is only used with stage=gan")


def total_steps(config) -> int:
    """`config.total_steps`, or the stage's default length (``pretrain.steps`` / ``gan.steps``) when it is 0."""
    stage_cfg = config.gan if config.stage == "gan" else config.pretrain
    return int(config.total_steps) if config.total_steps > 0 else int(stage_cfg.steps)


def build(config) -> trainer.Task:
    """Everything the trainer needs for SRFeat under `config` (stage 1 or 2)."""
    check_config(config)
    frozen, backbone = {}, None
    if config.stage == "gan":
        backbone = vgg.load_backbone(
            config.backbone, config.vgg19_weights, width=config.loss.vgg_width, seed=config.seed, random_init="he"
        )
        frozen = {"vgg": backbone.variables}
    nets = model.Nets(config, backbone)

    g_init, init_step = None, None
    if config.stage == "gan" and config.init_from != "scratch":
        n = config.data.lr_size
        abstract = jax.eval_shape(lambda: nets.g.init(jax.random.key(0), jnp.zeros((1, n, n, 3)), train=False))
        what = f"config init_from={config.init_from!r}"
        run = checkpoint.load_run(config.init_from, what=what, method="srfeat", needs=("g", "g_stats"))
        g_init, init_step = model.load_generator(run, abstract["params"], abstract["batch_stats"], what=what), run.step
        logger.console().info(f"stage 2: generator initialised from {config.init_from} step {init_step}")

    def init(key):
        gi = jax.tree.map(jnp.asarray, g_init) if g_init is not None else None
        return model.init_state(key, nets, config, gi)

    ev = evaluate.Evaluator(config, nets.upscale)
    return trainer.Task(
        init=init,
        train_step=functools.partial(model.train_step, nets=nets),
        train_data=pipeline.train_stream(config, lambda: data.example_fn(config)),
        total_steps=total_steps(config),
        frozen=frozen,
        samples=ev.train_samples,
        evaluate=ev.evaluate,
        validate=ev.validator() if config.eval.every else None,
        predict=ev.predict,
        metadata={
            "stage": config.stage,
            "scale": config.model.scale,
            "init_from": json.dumps([config.init_from, init_step]) if config.init_from else "",
            "discriminators": ",".join(nets.discs),
            **(backbone.metadata() if backbone else {"vgg_arch": "unused (stage 1)"}),
            "vgg_feature_scale": nets.feature_scale,
        },
        images_per_step=config.batch_size,
    )
