"""What a run records about itself: its config inside each checkpoint, its hparams beside its metrics."""

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger


class StoreRunConfig(L.Callback):
    """Stores the resolved `model` and `data` configs under `checkpoint["genlab"]`, so that
    `genlab-sample ckpt=...` can rebuild the model from the checkpoint alone."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint["genlab"] = self.config


def final_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The trainer's scalar metrics as floats, sorted by name."""
    metrics = trainer.callback_metrics
    return {k: float(v) for k, v in sorted(metrics.items()) if torch.as_tensor(v).numel() == 1}


class LogHyperparams(L.Callback):
    """At the end of training, logs the run's settings with its final metrics (as `final/...`),
    so that TensorBoard's HPARAMS tab compares runs. Done in `on_train_end`, before Lightning
    closes the loggers, so the run keeps a single event file."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        final = {f"final/{k}": v for k, v in final_metrics(trainer).items()}
        for logger in trainer.loggers:
            # TensorBoard pairs hparams with metrics; the other loggers take them apart.
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(self.params, final)
            else:
                logger.log_hyperparams(self.params)
                logger.log_metrics(final, step=trainer.global_step)
