"""Run settings and patch sizes that cannot work, a workdir that cannot be made and a damaged checkpoint are
one-line config errors; a diverged run says so in one line and keeps its last good checkpoint."""

import gc
import json
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from common.errors import ConfigError, UserError, check_size
from common.train import trainer
from configs import base


def _run_config(**changes):
    c = base.run_config("toy", total_steps=6, batch_size=1)
    base.tiny_run(c, batch_size=1)
    c.total_steps = 6
    c.update(changes)
    return c


@pytest.mark.parametrize(
    "key, bad",
    [("batch_size", 0), ("batch_size", -2), ("total_steps", -1), ("log_every", 0), ("checkpoint_every", 0),
     ("sample_every", -1), ("max_checkpoints", 0)],
)  # fmt: skip
def test_run_settings_below_their_minimum_are_named(key, bad):
    trainer.check_run_settings(_run_config())  # the defaults pass
    with pytest.raises(ConfigError, match=rf"config {key}={bad}: must be an integer >= "):
        trainer.check_run_settings(_run_config(**{key: bad}))


def test_sizes_must_be_positive_multiples():
    check_size("data.crop", 32, 16)
    for bad in (0, -16, 40):
        with pytest.raises(ConfigError, match=rf"config data.crop={bad} must be a positive multiple of 16 \(why\)"):
            check_size("data.crop", bad, 16, "why")
    with pytest.raises(ConfigError, match="config data.lr_size=0 must be a positive integer$"):
        check_size("data.lr_size", 0)


@struct.dataclass
class _State:
    step: jnp.ndarray
    w: jnp.ndarray


def _toy_task(nan_from_step: int, total_steps: int = 6, size: int = 4096) -> trainer.Task:
    """w grows by 1 a step; the logged loss (w[0]) turns NaN once `nan_from_step` steps are done."""

    def train_step(state, batch, key, frozen):
        w = state.w + batch["x"].sum() + 1.0
        loss = jnp.where(state.step + 1 >= nan_from_step, jnp.nan, w[0])
        return _State(step=state.step + 1, w=w), {"loss": loss}

    def train_data(seed):
        rows = grain.MapDataset.range(1000).map(lambda i: {"x": np.zeros((1,), np.float32)})
        return rows.batch(1).to_iter_dataset()

    return trainer.Task(
        # w is random (it does not compress) and larger than OCDBT's inline limit: it has a file of its own
        init=lambda key: _State(step=jnp.zeros((), jnp.int32), w=jax.random.normal(key, (size,))),
        train_step=train_step,
        train_data=train_data,
        total_steps=total_steps,
    )


def test_a_diverged_run_is_one_clear_error_and_keeps_its_last_checkpoint(tmp_path):
    config = _run_config(log_every=1, checkpoint_every=2, eval_at_end=False)
    with pytest.raises(trainer.TrainingDiverged) as err:
        trainer.train_and_evaluate(_toy_task(nan_from_step=3), config, str(tmp_path))
    message = str(err.value)
    assert isinstance(err.value, UserError) and isinstance(err.value, FloatingPointError)  # one line from launch.py
    assert message.startswith("training diverged: non-finite metric(s) at step 3: loss")
    assert f"step 2 in {tmp_path / 'checkpoints'} is kept" in message
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]  # the NaN state was not saved
    with pytest.raises(trainer.TrainingDiverged, match=r"at step 1: loss \(no checkpoint was written\)"):
        trainer.train_and_evaluate(_toy_task(nan_from_step=1), config, str(tmp_path / "fresh"))


def test_a_workdir_that_cannot_be_made_is_named(tmp_path):
    in_the_way = tmp_path / "run"
    in_the_way.write_text("not a folder")
    for workdir in (in_the_way, in_the_way / "sub"):
        with pytest.raises(ConfigError, match=rf"--workdir={workdir}: cannot make the run folder: "):
            trainer.train_and_evaluate(_toy_task(nan_from_step=99), _run_config(), str(workdir))


def test_a_run_folder_of_another_method_or_size_is_named_and_left_as_it_was(tmp_path):
    """Training or evaluating into a folder that holds a run this config cannot resume is one error (the other
    method; or the config.json keys that differ), and the folder's config.json is not overwritten."""
    config = _run_config(checkpoint_every=2, eval_at_end=False)
    config.unlock()
    config.size = 4096
    trainer.train_and_evaluate(_toy_task(nan_from_step=99, total_steps=2), config, str(tmp_path))
    before = (tmp_path / "config.json").read_text()
    other = _run_config(method="other", total_steps=4)
    with pytest.raises(ConfigError, match=rf"--workdir={tmp_path} holds a 'toy' run, not a 'other' one"):
        trainer.train_and_evaluate(_toy_task(nan_from_step=99, total_steps=4), other, str(tmp_path))
    with pytest.raises(ConfigError, match="holds a 'toy' run"):
        trainer.restore_for_inference(_toy_task(nan_from_step=99), other, str(tmp_path))
    bigger = config.copy_and_resolve_references()
    bigger.size, bigger.total_steps = 8192, 4
    refused = rf"--workdir={tmp_path} holds a run trained with another config: size \(4096 there, 8192 here\)\. "
    with pytest.raises(ConfigError, match=refused):
        trainer.train_and_evaluate(_toy_task(nan_from_step=99, total_steps=4, size=8192), bigger, str(tmp_path))
    differs = r"does not match this config \(its config.json differs in size \(4096 there, 8192 here\), total_steps"
    for call in (
        lambda: trainer.train_and_evaluate(
            _toy_task(nan_from_step=99, total_steps=4, size=8192), bigger, str(tmp_path), allow_config_change=True
        ),
        lambda: trainer.restore_for_inference(_toy_task(nan_from_step=99, size=8192), bigger, str(tmp_path)),
    ):
        with pytest.raises(ConfigError, match=differs) as e:
            call()
        assert "User-provided" not in str(e.value) and str(e.value).endswith("or the config that trained it")
    assert (tmp_path / "config.json").read_text() == before
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]


def test_a_resumed_run_may_change_only_how_it_continues(tmp_path):
    """total_steps, logging and evaluation keys may change when a run continues (each change recorded with its
    step); anything else is refused, naming the keys, unless asked for. config.json keeps the first values."""
    config = _run_config(checkpoint_every=2, eval_at_end=False)
    trainer.train_and_evaluate(_toy_task(nan_from_step=99, total_steps=2), config, str(tmp_path))
    before = (tmp_path / "config.json").read_text()
    changes = tmp_path / "config_changes.jsonl"

    other_batch = config.copy_and_resolve_references()
    other_batch.batch_size, other_batch.total_steps = config.batch_size * 2, 4
    with pytest.raises(ConfigError, match=r"another config: batch_size \(\d+ there, \d+ here\)\. Only total_steps"):
        trainer.train_and_evaluate(_toy_task(nan_from_step=99, total_steps=4), other_batch, str(tmp_path))
    assert not changes.exists() and sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]

    longer = config.copy_and_resolve_references()
    longer.total_steps, longer.log_every = 4, config.log_every + 1
    trainer.train_and_evaluate(_toy_task(nan_from_step=99, total_steps=4), longer, str(tmp_path))
    logged = [json.loads(line) for line in changes.read_text().splitlines()]
    want = [(2, "log_every", config.log_every + 1), (2, "total_steps", 4)]
    assert [(c["step"], c["key"], c["to"]) for c in logged] == want
    assert (tmp_path / "config.json").read_text() == before

    other_batch.total_steps = 6
    trainer.train_and_evaluate(
        _toy_task(nan_from_step=99, total_steps=6), other_batch, str(tmp_path), allow_config_change=True
    )
    logged = [json.loads(line) for line in changes.read_text().splitlines()][2:]
    assert [(c["step"], c["key"]) for c in logged] == [(4, "batch_size"), (4, "log_every"), (4, "total_steps")]
    assert (tmp_path / "config.json").read_text() == before
    other_batch.total_steps = (
        7  # the allowed change stands: continuing needs no flag, and only the new change is logged
    )
    trainer.train_and_evaluate(_toy_task(nan_from_step=99, total_steps=7), other_batch, str(tmp_path))
    logged = [json.loads(line) for line in changes.read_text().splitlines()][5:]
    assert [(c["step"], c["key"], c["from"], c["to"]) for c in logged] == [(6, "total_steps", 6, 7)]


def test_ctrl_c_saves_the_step_and_exits_130(tmp_path, capsys):
    """Ctrl-C (KeyboardInterrupt) saves the step reached and exits with status 130, saying how to resume."""

    def interrupt(step, state):
        if step == 3:
            raise KeyboardInterrupt

    config = _run_config(checkpoint_every=100, eval_at_end=False)
    with pytest.raises(SystemExit) as e:
        trainer.train_and_evaluate(_toy_task(nan_from_step=99), config, str(tmp_path), hooks=[interrupt])
    assert e.value.code == 130
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3"]
    err = capsys.readouterr().err
    assert "run the same command again to resume" in err
    # the phases are announced: no long silence before the first step
    assert "Compiling the train step (step 1 of 6) ..." in err and "Compiled and took the first step in" in err


def test_a_damaged_checkpoint_is_one_error_naming_its_folder(tmp_path):
    """A truncated array file in the latest step: resume and inference name that step's folder and the way out,
    rather than orbax's traceback and a screen of "Event loop is closed"."""
    config = _run_config(checkpoint_every=2, eval_at_end=False)
    task = _toy_task(nan_from_step=99, total_steps=4)
    trainer.train_and_evaluate(task, config, str(tmp_path))
    arrays = sorted((tmp_path / "checkpoints" / "4" / "state").glob("ocdbt.process_0/d/*"), key=os.path.getsize)
    arrays[-1].write_bytes(arrays[-1].read_bytes()[:100])
    damaged = rf"{tmp_path / 'checkpoints' / '4'}: the checkpoint cannot be read \(damaged or incomplete files\): "
    with pytest.raises(ConfigError, match=damaged + ".*Move that folder away"):
        trainer.restore_for_inference(task, config, str(tmp_path))
    with pytest.raises(ConfigError, match=damaged):
        trainer.train_and_evaluate(_toy_task(nan_from_step=99, total_steps=6), config, str(tmp_path))
    gc.collect()  # orbax's abandoned reads are collected here, under the hook that silences them, not in a later test
