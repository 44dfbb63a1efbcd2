"""A check that DDP kept the replicas identical."""

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
