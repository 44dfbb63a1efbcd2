"""A model's loss charts in TensorBoard with a colour per curve.

TensorBoard colours curves by run: two tags of one run drawn in one chart (CUSTOM SCALARS)
share a colour and differ only by marker. So each curve of a model's `loss_charts` is also
written under the chart's title to a run of its own beside the main one (`SummaryWriter.
add_scalars`: `<run>/<chart>_<curve>`), and the SCALARS tab draws the chart with the
curves in different colours, at the steps of Lightning's own scalars.
"""

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from genlab.contract import LossCharts


class ChartRuns(L.Callback):
    """Writes every logged step's `loss_charts` curves to their own TensorBoard runs."""

    def __init__(self) -> None:
        self.pending_step: int | None = None  # a logging step whose values are not written yet

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # the step's metrics reach callback_metrics after this hook: written at the next one
        if (
            trainer.is_global_zero
            and isinstance(pl_module, LossCharts)
            and pl_module.logging_this_step()
        ):
            self.pending_step = trainer.fit_loop.epoch_loop.total_batch_idx

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.write(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, pl_module)

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pending_step is None or not isinstance(pl_module, LossCharts):
            return
        step, self.pending_step = self.pending_step, None
        metrics = trainer.callback_metrics
        writers = [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        for title, tags in pl_module.loss_charts.items():
            curves = {tag.replace("/", "_"): float(metrics[tag]) for tag in tags if tag in metrics}
            if not curves:
                continue
            for writer in writers:
                writer.add_scalars(title, curves, step)
