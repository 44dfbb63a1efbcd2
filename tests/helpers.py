"""Test-only callbacks, importable by genlab-train subprocesses (tests/ is on PYTHONPATH)."""

from pathlib import Path

import lightning as L
import torch


class DumpGeneratorWeights(L.Callback):
    """Every rank saves its generator's weights at the end of training to dirpath/rank<N>.pt."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.generator.state_dict().items()}
        torch.save(state, self.dirpath / f"rank{trainer.global_rank}.pt")


class StopAfterEpochs(L.Callback):
    """Ends training cleanly after `epochs` epochs, as if the run had been cut there."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class PoisonWeights(L.Callback):
    """Sets every generator (or decoder) weight to NaN at batch `batch` of epoch `epoch`."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch = epoch
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            net = getattr(pl_module, "generator", None) or pl_module.decoder
            with torch.no_grad():
                for parameter in net.parameters():
                    parameter.fill_(float("nan"))


class InterruptAtBatch(L.Callback):
    """Presses Ctrl-C (raises KeyboardInterrupt) before batch `batch` of epoch `epoch`."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch = epoch
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise KeyboardInterrupt
