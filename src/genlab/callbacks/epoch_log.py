"""A line per epoch in the run's log: the losses, the evaluation, the time it took."""

import logging
import math
import time

import lightning as L

from genlab.callbacks.run_record import final_metrics

log = logging.getLogger("genlab.epochs")


class EpochLog(L.Callback):
    """At each epoch's end (after the evaluation): `epoch 3/20  loss/d 1.21  loss/g 0.934
    eval/fd 0.0123 ... (4.2 s)`. It reaches train.log always, and the console when no
    progress bar shows the losses there."""

    def __init__(self, prefixes: tuple[str, ...] = ("loss/", "eval/")) -> None:
        self.prefixes = tuple(prefixes)
        self.started = time.monotonic()
        self.last_eval: dict[str, float] = {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        log.info(self.line(trainer), extra={"file_only": trainer.progress_bar_callback is not None})

    def line(self, trainer: L.Trainer) -> str:
        scalars = final_metrics(trainer)  # by name
        metrics = {k: v for p in self.prefixes for k, v in scalars.items() if k.startswith(p)}
        evaluation = {k: v for k, v in metrics.items() if k.startswith("eval/")}
        if evaluation == self.last_eval:  # not evaluated this epoch: leave the old values out
            metrics = {k: v for k, v in metrics.items() if k not in evaluation}
        self.last_eval = evaluation
        total = f"/{trainer.max_epochs}" if trainer.max_epochs not in (None, -1) else ""
        shown = "  ".join(
            f"{k} {v:.4g}" if math.isfinite(v) else f"{k} {v}" for k, v in metrics.items()
        )
        seconds = time.monotonic() - self.started
        return f"epoch {trainer.current_epoch + 1}{total}  {shown}  ({seconds:.1f} s)"
