"""Reading weight files from outside, and the `python -m common.<net> convert SRC OUT.npz` command line.

Weight files are untrusted input. Pickles are read only through
`load_pickled_arrays`, whose unpickler can build numpy arrays and nothing
else, so a crafted file cannot run code.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
from collections.abc import Callable

import numpy as np

from common.errors import UserError


class WeightsError(UserError):
    """A weights file is missing or malformed; the message names it."""


def _reconstruct():
    try:  # numpy >= 2 keeps the pickling helpers in numpy._core; old pickles name numpy.core
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray._reconstruct


# The only globals a pickle of plain numpy arrays needs.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        make = _ALLOWED.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")
        return make()


def _leaves(tree, prefix=""):
    if isinstance(tree, list | tuple):
        tree = {str(i): v for i, v in enumerate(tree)}
    if isinstance(tree, dict):
        for k, v in tree.items():
            if not isinstance(k, str):
                raise TypeError(f"non-string key {k!r} under {prefix or 'the root'}")
            yield from _leaves(v, f"{prefix}{k}/")
    elif isinstance(tree, np.ndarray):
        if tree.dtype.kind not in "fiu":
            raise TypeError(f"array {prefix.rstrip('/')} has dtype {tree.dtype}, expected a number type")
        yield prefix.rstrip("/"), tree
    else:
        raise TypeError(f"{prefix.rstrip('/') or 'the root'} is a {type(tree).__name__}, expected a dict or array")


def load_pickled_arrays(path: str, *, npy: bool = False) -> dict[str, np.ndarray]:
    """Reads a pickled nest of dicts/lists of numpy arrays -> {'a/0/c': array}; anything else is a WeightsError.

    `npy=True` reads an object `.npy` file (a numpy header, then the pickle of a
    0-d object array holding the dict; Python-2 pickles decode as latin-1).
    """
    try:
        with open(path, "rb") as f:
            if npy:
                fmt = np.lib.format
                major, _ = fmt.read_magic(f)
                _, _, dtype = (fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0)(f)
                if dtype != np.dtype(object):
                    raise WeightsError(f"{path}: a .npy of {dtype}, expected a pickled dict of layers")
            raw = f.read()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read weights file ({e.strerror or e})") from e
    except ValueError as e:
        raise WeightsError(f"{path}: not a .npy file ({e})") from e
    try:
        tree = _ArraysOnly(io.BytesIO(raw), encoding="latin1" if npy else "ASCII").load()
        if isinstance(tree, np.ndarray) and tree.dtype == object and tree.ndim == 0:
            tree = tree.item()
        return dict(_leaves(tree))
    except Exception as e:  # noqa: BLE001 - any unpickling failure: name the file
        raise WeightsError(f"{path}: not a pickled dict of numpy arrays ({type(e).__name__}: {e})") from e


def check_shapes(arrays: dict, expected: dict, path: str) -> None:
    """Every expected key present with its shape, else a WeightsError naming the file and key."""
    for key, shape in expected.items():
        if key not in arrays:
            raise WeightsError(f"{path}: missing array {key!r}")
        if tuple(arrays[key].shape) != tuple(shape):
            raise WeightsError(f"{path}: {key!r} has shape {tuple(arrays[key].shape)}, expected {tuple(shape)}")


def convert_cli(argv, *, prog: str, description: str, what: str, convert: Callable[[str, str], None]) -> None:
    """Parses `convert SRC DST`, runs `convert`, prints the result or the one-line error."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help=f"convert {what} weights to the project's .npz")
    c.add_argument("src")
    c.add_argument("dst")
    a = p.parse_args(argv)
    try:
        convert(a.src, a.dst)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {a.dst}")


def load_npz(path: str, *, what: str, hint: str) -> dict[str, np.ndarray]:
    """All arrays of a converted `.npz` (no pickles); a missing or unreadable file is a WeightsError."""
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: {what} weights file not found ({hint})")
    try:
        z = np.load(path, allow_pickle=False)
        return {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from e
