"""The contract every listed method keeps with the trainer (`methods.METHODS`): `trainer.build_task` builds it,
its state initialises, and one train step traces to a state of the same structure and finite scalar metrics.
The bf16 check (tests/common/train/test_precision.py) and the device-mesh check (tests/helpers/mesh_check.py)
loop over the same list."""

import importlib

import jax
import jax.numpy as jnp
import pytest

from common.train import trainer
from methods import METHODS, checked_specs


@pytest.mark.parametrize("spec", checked_specs())
def test_build_init_and_a_traced_step(spec):
    method, variant = spec.split(":")
    config = importlib.import_module(f"configs.{method}").get_config(variant)
    task = trainer.build_task(config)
    assert isinstance(task, trainer.Task) and task.metadata["method"] == method == config.method
    assert task.total_steps > 0 and task.images_per_step >= config.batch_size
    state = jax.eval_shape(task.init, jax.random.key(0))
    batch = jax.tree.map(jnp.asarray, next(iter(task.train_data(config.seed))))
    new, metrics = jax.eval_shape(task.train_step, state, batch, jax.random.key(1), task.frozen)
    assert jax.tree.structure(new) == jax.tree.structure(state)
    assert metrics and all(m.shape == () for m in jax.tree.leaves(metrics)), metrics


def test_the_list_drives_the_checks():
    specs = checked_specs()
    assert [s.split(":")[0] for s in specs] == list(METHODS)  # one check per method, in order
    assert "srfeat:test,gan" in specs  # a config's CHECKED_VARIANTS replace the default ("test",)


@pytest.mark.parametrize("method", METHODS)
def test_validation_during_training_scores_the_held_out_crops(method):
    """With `eval.every` set, every method hands the trainer a validator: finite scores of the method's kind
    (PSNR/SSIM/LPIPS for image outputs, the σ-map error for DMENet), the same twice for one state, and none
    when `eval.every` is 0."""
    config = importlib.import_module(f"configs.{method}").get_config("test")
    assert trainer.build_task(config).validate is None
    config.eval.every = 2
    config.eval.val_images = 2
    config.eval.val_crop = 64
    task = trainer.build_task(config)
    state = task.init(jax.random.key(0))
    first, again = task.validate(state), task.validate(state)
    expected = {"mse", "mae"} if method == "defocus" else {"psnr", "ssim", "lpips"}
    assert expected <= set(first), first
    assert all(jnp.isfinite(v) for v in first.values()) and first == again
