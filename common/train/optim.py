"""Optimizers and the one way an update is applied.

Every method steps each of its networks with `apply_update`; the four
methods that follow their authors' "Adam with a staircase decay" build it
with `adam_with_decay` from an ``optim`` config block. A block may set
``schedule='cosine'`` instead (the rate falls to zero over ``decay_steps``),
which short runs use so that their last weights are not those of a
still-large step.
"""

from __future__ import annotations

import optax

from common.errors import ConfigError

SCHEDULES = ("staircase", "cosine")


def adam_with_decay(o, **adam_kwargs) -> optax.GradientTransformation:
    """Adam at `schedule(o)`, ``b1=o.b1``."""
    return optax.adam(schedule(o), b1=o.b1, **adam_kwargs)


def schedule(o) -> optax.Schedule:
    """The learning rate of an ``optim`` block, by ``o.schedule`` (default 'staircase').

    staircase: ``o.lr`` x ``o.decay`` ^ floor(step / ``o.decay_steps``) (the authors' decay);
    cosine: ``o.lr`` x (1 + cos(pi x min(step, decay_steps) / decay_steps)) / 2, zero from ``decay_steps`` on.
    """
    kind = o.get("schedule", "staircase")
    if kind == "staircase":
        return optax.exponential_decay(o.lr, o.decay_steps, o.decay, staircase=True)
    if kind == "cosine":
        return optax.cosine_decay_schedule(o.lr, o.decay_steps)
    raise ConfigError(f"config optim.schedule={kind!r}: expected one of {', '.join(SCHEDULES)}")


def apply_update(tx: optax.GradientTransformation, grads, params, opt_state):
    """One optimizer step on one network: (grads, params, opt_state) -> (new params, new opt_state)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
