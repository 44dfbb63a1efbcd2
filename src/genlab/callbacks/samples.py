"""Pictures of what the model generates, each epoch, to TensorBoard and `samples/`."""

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from genlab.plotting import save_png, scatter_figure


def log_image(trainer: L.Trainer, tag: str, image: np.ndarray, step: int) -> None:
    """Send an H x W x 3 uint8 image to every TensorBoard logger of the trainer."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, global_step=step, dataformats="HWC")


class SamplePlots(L.Callback):
    """Draws a fixed-noise batch every `every_n_epochs` epochs and at the end of training.

    2-D data: a scatter of real against generated points, with the mixture centres when
    the data has them. The images go to TensorBoard (step = epoch) and to
    `dirpath/<kind>_epoch_XXX.png`; the last one also to `dirpath/<kind>_last.png`.
    """

    def __init__(
        self, dirpath: str, num_samples: int = 1000, every_n_epochs: int = 1, seed: int = 1234
    ) -> None:
        self.dirpath = Path(dirpath)
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.seed = seed

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.draw(trainer, pl_module, trainer.current_epoch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch % self.every_n_epochs != 0 or trainer.current_epoch == 0:
            self.draw(trainer, pl_module, max(trainer.current_epoch - 1, 0))

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        if not trainer.is_global_zero:
            return
        generator = torch.Generator().manual_seed(self.seed)
        labels = pl_module.resolve_labels(self.num_samples, None)
        fake = pl_module.sample(self.num_samples, labels, generator=generator)
        datamodule = trainer.datamodule
        real, _ = datamodule.eval_set()
        image = scatter_figure(
            fake,
            real[: self.num_samples],
            getattr(datamodule, "centers", None),
            labels=labels,
            title=f"epoch {epoch}",
        )
        log_image(trainer, "samples/scatter", image, step=epoch)
        save_png(image, self.dirpath / f"scatter_epoch_{epoch:03d}.png")
        save_png(image, self.dirpath / "scatter_last.png")
