"""Self-supervised x4 face super-resolution from low-resolution faces only (paper 003).

``build(config)`` assembles the trainer's Task from `model` (G, D, the losses,
the train step), `data` (one degradation per face, pairs at every scale) and
`evaluate` (the paper's Tables 1-2 protocol, samples, prediction).
"""

from __future__ import annotations

import functools

from common.data import pipeline
from common.errors import ConfigError, check_size
from common.pretrained import vgg
from common.train import trainer
from methods.face_sr import data, evaluate, model


def check_config(config) -> None:
    d = config.data
    mult = 4 * 2 ** (d.scales - 1) * 2**config.model.n_down
    check_size("data.input_size", d.input_size, mult, "4·2^(scales−1)·2^model.n_down")
    if d.face_size and d.face_size < d.input_size:
        raise ConfigError(f"config data.face_size={d.face_size} is smaller than data.input_size={d.input_size}")


def build(config) -> trainer.Task:
    """Everything the trainer needs for self-supervised face SR under `config`."""
    check_config(config)
    backbone = vgg.load_backbone(
        config.backbone, config.vgg19_weights, width=config.model.vgg_width, seed=config.seed, random_init="he"
    )
    nets = model.Nets(config, backbone)
    ev = evaluate.Evaluator(config, nets.upscale)
    return trainer.Task(
        init=functools.partial(model.init_state, nets=nets, config=config),
        train_step=functools.partial(model.train_step, nets=nets),
        train_data=pipeline.train_stream(config, lambda: data.example_fn(config)),
        total_steps=config.total_steps,
        frozen={"vgg": backbone.variables},
        samples=ev.train_samples,
        evaluate=ev.evaluate,
        validate=ev.validator() if config.eval.every else None,
        predict=ev.predict,
        metadata={
            **backbone.metadata(),
            "vgg_layers": ",".join(nets.layers),
            "vgg_feature_scale": nets.feature_scale,
        },
        images_per_step=config.batch_size,
    )
