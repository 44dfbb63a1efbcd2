"""What a run records about itself: its config inside each checkpoint, its hparams beside its metrics."""

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from genlab.callbacks.distributed import check_replicas
from genlab.contract import LossCharts


def final_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The trainer's scalar metrics as floats, sorted by name."""
    metrics = trainer.callback_metrics
    return {k: float(v) for k, v in sorted(metrics.items()) if torch.as_tensor(v).numel() == 1}


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
        charts = pl_module.loss_charts if isinstance(pl_module, LossCharts) else None
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
