"""The methods: each is a package ``methods/<name>/`` with ``build(config) -> common.train.trainer.Task`` and a
config file ``configs/<name>.py``.

`METHODS` is the one list of them. The launcher finds a method by its config's ``method`` field; the tests and
benchmarks that check every method (the contract test, bf16, the device mesh, throughput) loop over this list,
building each config's ``CHECKED_VARIANTS`` (``("test",)`` when the config has none).
"""

METHODS = ("defocus", "srfeat", "tone", "face_sr", "compression")


def checked_specs() -> list[str]:
    """``method:variant`` of every config variant the every-method checks build, in `METHODS` order."""
    import importlib

    specs = []
    for name in METHODS:
        config = importlib.import_module(f"configs.{name}")
        specs += [f"{name}:{v}" for v in getattr(config, "CHECKED_VARIANTS", ("test",))]
    return specs
