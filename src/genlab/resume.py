"""Resuming a run: `ckpt_path=last`, or a checkpoint inside a run's `checkpoints/`, carries
the run on as it was started.

The run's recorded config (`.hydra/config.yaml`) is the base; of the command line, only the
settings that may change on resume are taken (`MAY_CHANGE`: how long to train, where, with
how many threads, what to log). An override that would change what the checkpoint was
trained on (the model, the data, their sizes, the seed) stops the run with one line; one
that repeats the run's own overrides is fine. A run that finished says so and trains no
further, unless a larger `trainer.max_epochs` (or `max_steps`) extends it.
"""

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict

from genlab.attempts import attempt_records, latest_record, recorded_overrides
from genlab.checkpoints import existing
from genlab.config import compose_again
from genlab.errors import CheckpointError, ConfigError, require

# settings a resumed run may take from the command line (a key, or every key under a group)
MAY_CHANGE = (
    "ckpt_path",
    "trainer.max_epochs", "trainer.max_steps", "trainer.max_time",
    "hardware", "trainer.accelerator", "trainer.devices", "trainer.num_nodes",
    "trainer.strategy", "trainer.precision", "num_threads", "speedups",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
    "logger", "callbacks", "paths.data_dir", "paths.log_dir", "optimized_metric",
)  # fmt: skip


@dataclass
class Resume:
    """Where a start writes, and whether it carries a run on."""

    folder: Path  # the run folder
    checkpoint: Path | None  # the checkpoint to resume from; None for a fresh start
    in_run: bool  # the checkpoint belongs to the run in `folder` (it has a record)


def locate(cfg: DictConfig) -> Resume:
    """The folder this start writes into: Hydra's, or the run a checkpoint belongs to."""
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path:
        return Resume(output_dir, None, False)
    if str(ckpt_path) == "last":
        path = output_dir / "checkpoints" / "last.ckpt"
        require(
            path.is_file(),
            f"ckpt_path=last found no {path}; resume a run in its folder with "
            f"hydra.run.dir=<run folder> ckpt_path=last, or pass the .ckpt file",
            CheckpointError,
        )
    else:
        path = existing(ckpt_path)
    run = path.resolve().parent.parent
    if path.parent.name == "checkpoints" and attempt_records(run):
        return Resume(run, path.resolve(), True)
    return Resume(output_dir, path.resolve(), False)  # a checkpoint from elsewhere: a new run


def restore(cfg: DictConfig, resume: Resume) -> tuple[DictConfig, list[str]]:
    """The run's recorded config (its latest start's) with this command's allowed changes
    applied, and the overrides that compose it; or a one-line ConfigError naming the
    override that would change what the checkpoint learned. (The changes are the overrides
    that the new record lists beyond the previous one's.)"""
    record = latest_record(resume.folder)
    saved_overrides = recorded_overrides(record)
    current = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    changes = allowed_changes(current, saved_overrides, resume.folder)
    changed_keys = {key_of(c) for c in changes}
    effective = [o for o in saved_overrides if key_of(o) not in changed_keys] + changes
    before = compose_again(saved_overrides)
    after = compose_again(effective)
    restored = OmegaConf.load(record / "config.yaml")
    with open_dict(restored):
        for key, value in leaf_changes(before, after):
            if value is DROPPED:
                parent, _, leaf = key.rpartition(".")
                node = OmegaConf.select(restored, parent) if parent else restored
                if isinstance(node, DictConfig) and leaf in node:
                    del node[leaf]
            else:
                OmegaConf.update(restored, key, value, force_add=True)
        restored.ckpt_path = str(resume.checkpoint)
        restored.paths.output_dir = str(resume.folder)
    return restored, effective


def allowed_changes(current: list[str], saved: list[str], run: Path) -> list[str]:
    """The command's overrides that change something a resume may change; a ConfigError for
    one that would change anything else."""
    changes = [o for o in changed(saved, current) if key_of(o) != "ckpt_path"]
    for override in changes:
        key = key_of(override)
        if not any(key == allowed or key.startswith(allowed + ".") for allowed in MAY_CHANGE):
            started = " ".join(saved) or "the defaults"
            raise ConfigError(
                f"{override} would change what {run.name}'s checkpoint was trained on "
                f"(it started with: {started}); drop it to resume, or start a new run "
                f"(a resume may change only trainer.max_epochs/max_steps/max_time, hardware, "
                f"logging and callbacks)"
            )
    return changes


def changed(previous: list[str], now: list[str]) -> list[str]:
    """The overrides of `now` that set a key to another value than `previous` did (the last
    override of a key counts; `model.lr=1e-4` and `model.lr=0.0001` agree)."""
    last = {key_of(o): normal(o) for o in previous}
    return [o for o in now if last.get(key_of(o)) != normal(o)]


@functools.lru_cache(maxsize=256)
def parse(override: str) -> Override:
    return OverridesParser.create().parse_override(override)


def key_of(override: str) -> str:
    return parse(override).key_or_group


def normal(override: str) -> str:
    """An override in one spelling, its value parsed."""
    parsed = parse(override)
    return f"{parsed.get_key_element()}={parsed.value()!r}"


def leaf_changes(before: DictConfig, after: DictConfig) -> list[tuple[str, Any]]:
    """(dotted key, new value) for every setting that differs, values unresolved."""
    old = OmegaConf.to_container(before, resolve=False)
    new = OmegaConf.to_container(after, resolve=False)
    return list(walk(old, new, ""))


DROPPED = object()  # a setting the new config no longer has


def walk(old: Any, new: Any, path: str):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*new, *(k for k in old if k not in new)]:
            where = f"{path}.{key}" if path else str(key)
            yield from walk(old.get(key, DROPPED), new.get(key, DROPPED), where)
    elif old != new:
        yield path, new


def nothing_to_train(resume: Resume, cfg: DictConfig) -> str | None:
    """Why resuming this run would train nothing (it has reached `cfg`'s epoch or step
    limit), as the line to print; None when there is training left."""
    path = resume.folder / "metrics.json"
    if not resume.in_run or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None
    epochs, steps = record.get("epochs"), record.get("global_step")
    if not isinstance(epochs, int) or not isinstance(steps, int):
        return None
    max_epochs = cfg.trainer.get("max_epochs")
    max_steps = cfg.trainer.get("max_steps")
    if max_epochs is not None and max_epochs != -1 and epochs >= max_epochs:
        reached = f"its {epochs} epochs (trainer.max_epochs={max_epochs})"
        extend = "trainer.max_epochs"
    elif max_steps is not None and max_steps != -1 and steps >= max_steps:
        reached = f"{steps} steps (trainer.max_steps={max_steps})"
        extend = "trainer.max_steps"
    else:
        return None
    status = "finished" if record.get("status") == "completed" else "stopped"
    return (
        f"{resume.folder} has {status} at {reached}; nothing to train, nothing changed: "
        f"pass a larger {extend} to train it longer"
    )
