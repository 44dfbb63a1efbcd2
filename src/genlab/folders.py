"""Output folders checked writable before anything is written, so that a read-only place
is one line at the start, not a traceback after an epoch."""

import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from genlab.errors import ConfigError

# the run's own subfolders, checked when they exist already (a resumed run's)
SUBFOLDERS = ("checkpoints", "samples", "tensorboard", "csv")


def nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def unwritable(path: Path) -> Path | None:
    """The folder that stops `path` from being created or written into, if any."""
    existing = nearest_existing(path)
    if not existing.is_dir():
        return existing
    return None if os.access(existing, os.W_OK | os.X_OK) else existing


def check_writable(folder: Path, what: str = "hydra.run.dir") -> None:
    """The run folder, and the subfolders it already has, can be written."""
    for path in [folder, *(folder / name for name in SUBFOLDERS if (folder / name).exists())]:
        blocked = unwritable(path)
        if blocked is not None:
            raise ConfigError(
                f"cannot write to {blocked} (read-only or not a folder); point {what} "
                f"(or paths.log_dir) at a writable folder"
            )


class CheckOutputFolder(Callback):
    """Hydra callback: the run or sweep folder must be writable before Hydra creates it
    (Hydra would stop with a traceback); one line and exit status 2 instead."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self.check(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.check(Path(config.hydra.sweep.dir), "hydra.sweep.dir")

    @staticmethod
    def check(folder: Path, what: str) -> None:
        try:
            check_writable(folder, what)
        except ConfigError as error:
            print(f"genlab-train: error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)
