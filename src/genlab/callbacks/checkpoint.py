"""Make every checkpoint self-describing, so that `genlab-sample ckpt=...` can rebuild the model."""

from typing import Any

import lightning as L


class StoreRunConfig(L.Callback):
    """Stores the resolved `model` and `data` configs under `checkpoint["genlab"]`."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["genlab"] = self.config
