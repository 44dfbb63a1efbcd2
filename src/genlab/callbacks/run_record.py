"""What a run records about itself: its config inside each checkpoint, its hparams beside its metrics."""

import re
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

from genlab.callbacks.distributed import carry_progress, check_replicas
from genlab.contract import LossCharts


def final_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The trainer's scalar metrics as floats, sorted by name."""
    metrics = trainer.callback_metrics
    return {k: float(v) for k, v in sorted(metrics.items()) if torch.as_tensor(v).numel() == 1}


def mlflow_names(params: Any) -> Any:
    """The params with every key made a valid MLflow name: the characters MLflow refuses
    (the `@` of Hydra's `model/optimizer@model.optimizer_d` choice; a colon, refused on
    Windows) become `_`."""
    if not isinstance(params, dict):
        return params
    return {re.sub(r"[^\w\-. /]", "_", str(k)): mlflow_names(v) for k, v in params.items()}


def finish_wandb(trainer: L.Trainer, exit_code: int) -> None:
    """Lightning's WandbLogger leaves its W&B run open until the process exits: finish it
    with the genlab run, so that its end is recorded now and the next run in this process (a
    sweep's next job) starts a run of its own rather than writing into this one."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=exit_code)


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
      before Lightning closes the loggers, so the run keeps a single event file. MLflow
      gets the settings under names it accepts; a W&B run is finished here (or failed, when
      training ends in an exception).
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
                params = (
                    mlflow_names(self.params) if isinstance(logger, MLFlowLogger) else self.params
                )
                logger.log_hyperparams(params)
                logger.log_metrics(final, step=trainer.global_step)
        finish_wandb(trainer, exit_code=0)
        carry_progress(trainer)  # last: the counts are for metrics.json, not a final metric

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        finish_wandb(trainer, exit_code=1)
