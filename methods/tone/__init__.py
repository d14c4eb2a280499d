"""Naturalness-preserving tone enhancement with an inverse network (patent 001).

``build(config)`` assembles the trainer's Task from `model` (G, D, C, the
losses of Eqs. 1-6, the train step), `data` (the fixed enhancement A and the
example stream) and `evaluate` (held-out scores, samples, prediction).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from common.data import pipeline
from common.errors import ConfigError, check_size
from common.train import trainer
from methods.tone import data, evaluate, model


def check_config(config) -> None:
    check_size("data.crop", config.data.crop, 16, "D strides 4 times")
    if config.model.arch not in model.ARCHS:
        raise ConfigError(f"config model.arch={config.model.arch!r}: expected one of {', '.join(model.ARCHS)}")
    if config.data.algorithm not in data.ALGORITHMS:
        raise ConfigError(f"config data.algorithm={config.data.algorithm!r}: known are {', '.join(data.ALGORITHMS)}")
    model.color_loss(jnp.zeros((1, 11, 11, 3)), jnp.zeros((1, 11, 11, 3)), config.loss.color)


def build(config) -> trainer.Task:
    """Everything the trainer needs for tone enhancement under `config`."""
    check_config(config)
    nets = model.Nets(config)
    ev = evaluate.Evaluator(config, enhance=nets.enhance, invert=nets.invert)
    return trainer.Task(
        init=functools.partial(model.init_state, nets=nets, config=config),
        train_step=functools.partial(model.train_step, nets=nets),
        train_data=pipeline.train_stream(config, lambda: data.example_fn(config)),
        total_steps=config.total_steps,
        samples=ev.train_samples,
        evaluate=ev.evaluate,
        validate=ev.validator() if config.eval.every else None,
        predict=ev.predict,
        metadata={
            "algorithm": config.data.algorithm,
            "lambdas": [config.loss.lambda1, config.loss.lambda2, config.loss.lambda3],
        },
        images_per_step=2 * config.batch_size,
    )
