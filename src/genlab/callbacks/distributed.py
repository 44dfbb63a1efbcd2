"""What a DDP run reports at its end: whether the replicas stayed identical, and how far
training went."""

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn


def check_replicas(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """At the end of a multi-process run, compares a checksum of every parameter across ranks.

    The result is `trainer.callback_metrics["ddp/replicas_in_sync"]` (1.0 or 0.0), which
    ends up in `metrics.json`; a mismatch also warns.
    """
    if trainer.world_size < 2:
        return
    with torch.no_grad():
        checksum = torch.stack([p.detach().double().sum() for p in pl_module.parameters()])
        checksums = trainer.strategy.all_gather(checksum.to(pl_module.device))
    in_sync = bool((checksums == checksums[0]).all())
    trainer.callback_metrics["ddp/replicas_in_sync"] = torch.tensor(float(in_sync))
    if not in_sync:
        rank_zero_warn("DDP replicas hold different weights at the end of training")


def carry_progress(trainer: L.Trainer) -> None:
    """Under DDP, rank 0's epoch and step counts as `progress/epochs` and
    `progress/global_step` in `trainer.callback_metrics`: with spawned ranks (a DDP job in a
    multirun) the main process's loops never run, and callback_metrics is what Lightning
    carries back to it. `metrics.json` takes them from there."""
    if trainer.world_size < 2:
        return
    trainer.callback_metrics["progress/epochs"] = torch.tensor(float(trainer.current_epoch))
    trainer.callback_metrics["progress/global_step"] = torch.tensor(float(trainer.global_step))
