"""The `python -m common.<net> convert SRC OUT.npz` command line shared by the weight converters."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from common.errors import UserError


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
