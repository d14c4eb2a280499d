"""Errors a user can cause (bad path, image, config or weights file).

`launch.py` and the benchmark scripts print these as one line naming the culprit instead of a traceback
(:func:`run_cli`).
"""

import os
import sys


class UserError(ValueError):
    """Base class: the message names the file, key or value at fault."""


class ConfigError(UserError):
    """A config value cannot be used."""


def check_size(key: str, value, multiple: int = 1, why: str = "") -> None:
    """A ConfigError unless config `key`'s `value` (a patch or crop side) is a positive multiple of `multiple`."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % multiple:
        need = "a positive integer" if multiple == 1 else f"a positive multiple of {multiple}"
        raise ConfigError(f"config {key}={value!r} must be {need}{f' ({why})' if why else ''}")


def check_int(key: str, value, least: int = 0, why: str = "") -> None:
    """A ConfigError unless config `key`'s `value` (a count, a step, a size in pixels) is an integer ≥ `least`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"config {key}={value!r}: must be an integer >= {least}{f' ({why})' if why else ''}")


def run_cli(main, *args, **kwargs):
    """``main(*args, **kwargs)``, with a user's error (a bad config, file or weights; a missing file) printed as
    one line naming it and exit status 1, instead of a traceback."""
    try:
        return main(*args, **kwargs)
    except (UserError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


def _config_files(argv: list[str]) -> list[str]:
    """The paths of ``--config=PATH[:VARIANTS]`` / ``--config PATH[:VARIANTS]`` in `argv`."""
    out = []
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            out.append(a.split("=", 1)[1])
        elif a == "--config" and i + 1 < len(argv):
            out.append(argv[i + 1])
    return [v.split(":", 1)[0] for v in out]


CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def resolve_config(value: str) -> str:
    """``--config``'s value with its path made absolute when it names a shipped config: a method's name
    (``defocus:quick``) or ``configs/<name>.py`` given from outside the repository. Other paths stay as given."""
    path, sep, variants = value.partition(":")
    name = os.path.basename(path).removesuffix(".py")
    shipped = os.path.join(CONFIGS_DIR, f"{name}.py")
    is_name = "/" not in path and not path.endswith(".py")
    if (is_name or (not os.path.isfile(path) and path == f"configs/{name}.py")) and os.path.isfile(shipped):
        return shipped + sep + variants
    return value


def _resolve_configs(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, a in enumerate(out):
        if a.startswith("--config="):
            out[i] = "--config=" + resolve_config(a.split("=", 1)[1])
        elif a == "--config" and i + 1 < len(out):
            out[i + 1] = resolve_config(out[i + 1])
    return out


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with every bad flag reported in one line: a config file that does not exist, an
    override of a key the config lacks, and a config file's own error (an unknown variant), all of which
    ml_collections reports with a traceback. ``--help`` prints `_HELP` (when set) and exits 0."""
    from absl import flags

    if _HELP is not None and any(a in ("-h", "--help", "-help", "--helpfull", "--helpshort") for a in argv[1:]):
        print(_HELP())
        sys.exit(0)
    argv = _resolve_configs(argv)
    for path in _config_files(argv):
        if not os.path.isfile(path):
            sys.exit(f"error: --config={path}: no such config file (a file, or a method: {_method_names()})")
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:  # an override such as --config.model.widht=2
        while e.args and isinstance(e.args[0], BaseException):  # ml_collections nests the KeyError
            e = e.args[0]
        key, _, hint = str(e.args[0] if e.args else e).partition("\n")  # "'widht'", 'Did you mean "width" ...?'
        key = key.strip("'\"")
        bad = [a for a in argv if a.startswith("--config.") and key in a.split("=", 1)[0].split(".")]
        sys.exit(f"error: {' '.join(bad) or key}: the config has no key {key!r}. {hint}".rstrip(". "))
    except flags.Error as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        if any(line.startswith("Traceback (most recent call last)") for line in lines):
            exception, _, message = lines[-1].partition(": ")  # "configs.base.ConfigError: ..."
            lines = [lines[0], f"{exception.rpartition('.')[2]}: {message}"]
        sys.exit(f"error: {' '.join(lines)}")


def _method_names() -> str:
    """The shipped configs' names (a config file per method)."""
    names = [f[:-3] for f in os.listdir(CONFIGS_DIR) if f.endswith(".py") and f not in ("__init__.py", "base.py")]
    return ", ".join(sorted(names))


_HELP = None  # () -> the text --help prints, given by the entry point


def run_absl(main, help_text=None) -> None:
    """``absl.app.run(main)`` under :func:`run_cli`, with bad flags reported in one line too, and ``--help``
    printing ``help_text()`` (when given) with exit status 0."""
    global _HELP
    from absl import app

    _HELP = help_text
    run_cli(app.run, main, flags_parser=_parse_flags)
