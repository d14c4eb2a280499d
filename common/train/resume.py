"""What may change when a run is continued: a run folder's config.json is the record of how it was trained.

Keys that only change how a run continues (its length, logging, checkpointing, evaluation, precision and speed
settings) may differ from the record on resume; each change is appended to ``config_changes.jsonl`` with the
step at which it happened, and config.json keeps the values the run started with. Any other change (a model
size, a loss weight, the data) is refused, naming the keys, unless the user asks for it
(``--allow_config_change``): the record would otherwise describe a run that never happened.
"""

from __future__ import annotations

import json
import os
import time

from common.errors import ConfigError
from common.train import logger

# Keys, or prefixes of keys, that may change on resume
CONTINUATION_KEYS = (
    "total_steps",
    "log_every",
    "checkpoint_every",
    "sample_every",
    "max_checkpoints",
    "eval_at_end",
    "eval.",
    "precision",
    "conv_weight_grad",
    "data.threads",
)
CHANGES_FILE = "config_changes.jsonl"


def read_record(workdir: str) -> dict | None:
    """The run folder's config.json, or None when it has none that reads."""
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            run = json.load(f)
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) else None


def differences(record: dict, config, workdir: str | None = None) -> dict[str, tuple]:
    """{dotted key: (value in the record, value in `config`)} for every key whose values differ; with `workdir`,
    the record is the run's config as it now stands (config.json with the changes logged since)."""
    ours = logger.flatten(json.loads(config.to_json_best_effort()), sep=".")
    theirs = logger.flatten(record, sep=".")
    if workdir is not None:
        theirs.update(_logged_changes(workdir))
    return {
        k: (theirs.get(k), ours.get(k)) for k in sorted(ours.keys() | theirs.keys()) if ours.get(k) != theirs.get(k)
    }


def _logged_changes(workdir: str) -> dict:
    """{key: its latest value} from CHANGES_FILE (lines that do not read are skipped)."""
    latest = {}
    try:
        with open(os.path.join(workdir, CHANGES_FILE)) as f:
            for line in f:
                try:
                    change = json.loads(line)
                    latest[change["key"]] = change["to"]
                except (ValueError, KeyError, TypeError):
                    continue
    except OSError:
        pass
    return latest


def continues(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in CONTINUATION_KEYS)


def describe(diff: dict[str, tuple], limit: int = 6) -> str:
    items = [f"{k} ({a!r} there, {b!r} here)" for k, (a, b) in diff.items()]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def check_and_log(workdir: str, record: dict, config, step: int, *, allow: bool, write: bool) -> dict[str, tuple]:
    """Refuses a resume whose config differs from the run's (config.json and the changes logged since) in other
    than `CONTINUATION_KEYS`, unless `allow`; logs every difference with `step` to CHANGES_FILE when `write`.
    Returns the differences."""
    diff = differences(record, config, workdir)
    frozen = {k: v for k, v in diff.items() if not continues(k)}
    if frozen and not allow:
        raise ConfigError(
            f"--workdir={workdir} holds a run trained with another config: {describe(frozen)}. Only "
            f"{', '.join(k.rstrip('.') + ('.*' if k.endswith('.') else '') for k in CONTINUATION_KEYS)} may "
            f"change when a run continues; give another --workdir, or add --allow_config_change to continue this "
            f"run with the new values (config.json keeps the old ones, {CHANGES_FILE} records the change)"
        )
    if diff and write:
        with open(os.path.join(workdir, CHANGES_FILE), "a") as f:
            for k, (old, new) in diff.items():
                f.write(json.dumps({"step": step, "key": k, "from": old, "to": new, "time": time.time()}) + "\n")
    return diff
