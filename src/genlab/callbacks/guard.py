"""Runs that die keep what they had: a divergence guard and a checkpoint on interruption."""

import logging
import math
import os
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from genlab.contract import Guarded
from genlab.errors import DivergenceError

log = logging.getLogger(__name__)


class DivergenceGuard(L.Callback):
    """Stops training when a loss becomes NaN or Inf, or when D has won outright for
    `saturation_window` batches (D's accuracy on real and on fake samples both at least
    `saturation_level`: G then learns nothing). It raises a one-line DivergenceError that
    names the step, the loss and a fix; the checkpoints of earlier epochs stay as they are.

    Models hand it their latest step's readings (`Guarded.guard_readings`: the losses and, for
    GANs, D's weaker accuracy) and the fix to suggest (`divergence_advice`). Checking costs a
    device sync, so it happens every `check_every_n_steps` batches and at each epoch end,
    before any checkpoint is written.
    """

    def __init__(
        self,
        check_every_n_steps: int = 10,
        saturation_window: int = 2000,
        saturation_level: float = 0.99,
    ) -> None:
        self.every = max(1, check_every_n_steps)
        self.saturation_window = saturation_window
        self.saturation_level = saturation_level
        self.saturated_batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if (batch_idx + 1) % self.every == 0:
            self.check(trainer, pl_module, self.every)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer, pl_module, 0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, Guarded):
            raise TypeError(
                f"{type(pl_module).__name__} gives the divergence guard nothing to read: make "
                f"it a genlab GenerativeModule (genlab/contract.py, Guarded)"
            )

    def check(self, trainer: L.Trainer, pl_module: L.LightningModule, batches: int) -> None:
        losses, saturation = pl_module.guard_readings()
        if not losses:
            raise RuntimeError(
                f"{type(pl_module).__name__}.training_step left guard_values unset: the "
                f"divergence guard has no loss to watch (genlab/contract.py, Guarded)"
            )
        watched = [value.detach().float().reshape(-1)[:1] for value in losses.values()]
        if saturation is not None:
            watched.append(saturation.detach().float().reshape(1))
        # one device sync for everything the guard reads
        readings = torch.cat([w.to(watched[0].device) for w in watched]).tolist()
        for name, value in zip(losses, readings, strict=False):
            if not math.isfinite(value):
                raise DivergenceError(
                    f"{name} became {value} at step {trainer.global_step} "
                    f"(epoch {trainer.current_epoch}); {pl_module.divergence_advice()}; "
                    f"the checkpoints of earlier epochs are kept"
                )
        if saturation is None or not self.saturation_window or not batches:
            return
        if readings[-1] >= self.saturation_level:
            self.saturated_batches += batches
        else:
            self.saturated_batches = 0
        if self.saturated_batches >= self.saturation_window:
            raise DivergenceError(
                f"D has told real from fake with accuracy >= {self.saturation_level} for "
                f"{self.saturated_batches} batches up to step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}), so G gets no signal; "
                f"{pl_module.divergence_advice()}; the checkpoints of earlier epochs are kept"
            )


class CheckpointOnInterrupt(L.Callback):
    """Ctrl-C or SIGTERM (a cluster's preemption notice): stop where a batch ends and save
    `dirpath/last.ckpt` there, so that `ckpt_path=last` carries on exactly as if nothing
    had happened.

    Lightning stops at a batch's end for SIGTERM. Ctrl-C would stop wherever it lands,
    between D's and G's updates even, and a checkpoint there cannot resume exactly; so in a
    single-process run the first Ctrl-C takes SIGTERM's way (the run stops when the batch
    ends) and a second one stops at once, without a checkpoint."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.saved: Path | None = None
        self.stop_requested = False
        self.previous: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # by now Lightning's SIGTERM handler is in place (it is registered after on_fit_start)
        if (
            threading.current_thread() is threading.main_thread()
            and trainer.world_size == 1
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
            and signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        ):
            self.previous = signal.signal(signal.SIGINT, self.request_stop)

    def request_stop(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        signal.signal(signal.SIGINT, self.previous)
        log.warning("Ctrl-C: stopping when this batch ends (Ctrl-C again to stop at once)")
        os.kill(os.getpid(), signal.SIGTERM)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.previous is not None and not self.stop_requested:
            signal.signal(signal.SIGINT, self.previous)
        self.previous = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        if isinstance(exception, SIGTERMException) or (
            isinstance(exception, KeyboardInterrupt) and self.previous is None
        ):
            # SIGTERM, a first Ctrl-C, or Ctrl-C where it cannot wait (DDP): save
            path = self.dirpath / "last.ckpt"
            trainer.save_checkpoint(path)
            self.saved = path
