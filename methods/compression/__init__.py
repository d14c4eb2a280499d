"""Learned image compression stable under successive re-compression (patent 004).

``build(config)`` assembles the trainer's Task from `model` (f_e, f_d, the
entropy models, Eqs. 1-2 / 5-6 as losses, the train step and the integer
tables' `finalize`), `data` (random crops), `codec` (image ↔ bitstream) and
`evaluate` (RD and SIC with the real codec, samples, predict); `report`
compares several evaluated runs.
"""

from __future__ import annotations

import functools

from common.data import pipeline
from common.errors import ConfigError, check_size
from common.train import trainer
from methods.compression import data, evaluate, model


def check_config(config) -> None:
    m = config.model
    if m.prior not in model.PRIORS:
        raise ConfigError(f"config model.prior={m.prior!r}: use {', '.join(map(repr, model.PRIORS))}")
    mult = 16 if m.prior == "factorized" else 64
    check_size("data.crop", config.data.crop, mult, f"the {m.prior} model down-samples by {mult}")
    if config.loss.fi_norm not in ("mse", "l2"):
        raise ConfigError(f"config loss.fi_norm={config.loss.fi_norm!r}: use 'mse' or 'l2'")
    if config.loss.distortion not in model.DISTORTIONS:
        raise ConfigError(f"config loss.distortion={config.loss.distortion!r}: use 'mse' or 'ms_ssim'")
    if config.loss.distortion == "ms_ssim" and config.data.crop < model.MS_SSIM_MIN_SIDE:
        raise ConfigError(
            f"config data.crop={config.data.crop}: loss.distortion='ms_ssim' needs crops of at least "
            f"{model.MS_SSIM_MIN_SIDE} pixels (five scales of an 11-pixel window); e.g. --config.data.crop=192"
        )
    if config.loss.lambda1 <= 0:
        raise ConfigError(f"config loss.lambda1={config.loss.lambda1} must be > 0")


def build(config) -> trainer.Task:
    """Everything the trainer needs for the compression model under `config`."""
    check_config(config)
    nets = model.Nets(config)
    ev = evaluate.Evaluator(config, nets.model)
    return trainer.Task(
        init=functools.partial(model.init_state, nets=nets, config=config),
        train_step=functools.partial(model.train_step, nets=nets),
        finalize=functools.partial(model.finalize, nets=nets),
        train_data=pipeline.train_stream(config, lambda: data.example_fn(config)),
        total_steps=config.total_steps,
        samples=ev.train_samples,
        evaluate=ev.evaluate,
        validate=ev.validator() if config.eval.every else None,
        predict=ev.predict,
        metadata={
            "prior": config.model.prior,
            "lambda1": config.loss.lambda1,
            "lambda2": config.loss.lambda2,
        },
        images_per_step=config.batch_size,
    )
