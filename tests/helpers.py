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
