"""Optimizers and the one way an update is applied.

Every method steps each of its networks with `apply_update`; the four
methods that follow their authors' "Adam with a staircase decay" build it
with `adam_with_decay` from an ``optim`` config block.
"""

from __future__ import annotations

import optax


def adam_with_decay(o, **adam_kwargs) -> optax.GradientTransformation:
    """Adam at ``o.lr`` multiplied by ``o.decay`` every ``o.decay_steps`` steps (staircase), ``b1=o.b1``."""
    return optax.adam(staircase(o), b1=o.b1, **adam_kwargs)


def staircase(o) -> optax.Schedule:
    """``o.lr`` x ``o.decay`` ^ floor(step / ``o.decay_steps``)."""
    return optax.exponential_decay(o.lr, o.decay_steps, o.decay, staircase=True)


def apply_update(tx: optax.GradientTransformation, grads, params, opt_state):
    """One optimizer step on one network: (grads, params, opt_state) -> (new params, new opt_state)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
