"""What a run records about itself: its config inside each checkpoint, its hparams beside its metrics."""

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from genlab.callbacks.distributed import check_replicas


def final_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The trainer's scalar metrics as floats, sorted by name."""
    metrics = trainer.callback_metrics
    return {k: float(v) for k, v in sorted(metrics.items()) if torch.as_tensor(v).numel() == 1}


def git_state(folder: Path) -> dict[str, Any]:
    """The commit of the git checkout holding `folder`, and whether it has local changes."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10
        )
        if result.returncode:
            raise OSError(result.stderr.strip())
        return result.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("genlab", "torch", "torchvision", "lightning", "hydra-core", "omegaconf"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    return found


def write_run_info(path: Path) -> None:
    """Records what produced the run (the config is in .hydra/): the genlab source's git
    commit with a dirty flag, the package versions and the machine."""
    info = {
        "git": git_state(Path(__file__).resolve().parent),
        "versions": versions(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2) + "\n")


class RunRecord(L.Callback):
    """What a run records about itself, in one callback (Lightning calls every callback at
    every step's hooks, so fewer callbacks cost less):

    - at the start, TensorBoard's CUSTOM SCALARS layout: the curves the model names in
      `loss_charts` drawn on one chart each (the GANs: D's and G's losses together);
    - in each checkpoint, the resolved `model` and `data` configs under `checkpoint["genlab"]`,
      so that `genlab-sample ckpt=...` can rebuild the model from the checkpoint alone;
    - at the end, under DDP, whether the replicas still hold the same weights
      (`ddp/replicas_in_sync`), then the run's settings with its final metrics (as
      `final/...`), so that TensorBoard's HPARAMS tab compares runs. Done in `on_train_end`,
      before Lightning closes the loggers, so the run keeps a single event file.
    """

    def __init__(self, config: dict[str, Any], params: dict[str, Any]) -> None:
        self.config = config
        self.params = params

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        charts = getattr(pl_module, "loss_charts", None)
        if not charts or not trainer.is_global_zero:
            return
        layout = {"genlab": {title: ["Multiline", tags] for title, tags in charts.items()}}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_custom_scalars(layout)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint["genlab"] = self.config

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        check_replicas(trainer, pl_module)  # first, so that its verdict is a final metric
        final = {f"final/{k}": v for k, v in final_metrics(trainer).items()}
        for logger in trainer.loggers:
            # TensorBoard pairs hparams with metrics; the other loggers take them apart.
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(self.params, final)
            else:
                logger.log_hyperparams(self.params)
                logger.log_metrics(final, step=trainer.global_step)
