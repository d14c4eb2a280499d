"""Errors a user can cause (bad path, image, config or weights file).

`launch.py` prints these as one line naming the culprit instead of a traceback.
"""


class UserError(ValueError):
    """Base class: the message names the file, key or value at fault."""


class ConfigError(UserError):
    """A config value cannot be used."""
