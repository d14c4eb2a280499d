"""A state's leaves as numpy arrays keyed by their path (what the multi-process checks compare)."""

import jax
import numpy as np

# State fields derived from the others by the Task's `finalize` before each save (so a restored state has them
# fresh, and a state in the middle of a run has them stale): not compared.
DERIVED = (".tables",)


def local_leaves(state) -> dict[str, np.ndarray]:
    """This process's copy of each trained leaf of a replicated state, keyed by its path."""
    keys, arrays = [], []
    for path, x in jax.tree_util.tree_leaves_with_path(state):
        if jax.tree_util.keystr(path).startswith(DERIVED):
            continue
        if isinstance(x, jax.Array):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                x = jax.random.key_data(x)
            x = x.addressable_data(0)
        keys.append(jax.tree_util.keystr(path))
        arrays.append(x)
    return dict(zip(keys, map(np.asarray, jax.device_get(arrays)), strict=True))
