"""Pictures of what the model generates, each epoch, to TensorBoard and `samples/`."""

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary

from genlab.plotting import encode_png, grid_labels, picture, save_png


def log_png(trainer: L.Trainer, tag: str, png: bytes, shape: tuple[int, ...], step: int) -> None:
    """Send an encoded PNG to every TensorBoard logger of the trainer, as an image summary.
    (`add_image` would encode the picture again; it is encoded once for the files and here.)"""
    height, width = shape[:2]
    summary = Summary(
        value=[
            Summary.Value(
                tag=tag,
                image=Summary.Image(
                    height=height, width=width, colorspace=3, encoded_image_string=png
                ),
            )
        ]
    )
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment._get_file_writer().add_summary(summary, global_step=step)


class SamplePlots(L.Callback):
    """Draws samples from fixed noise every `every_n_epochs` epochs and at the end of training.

    Points: a scatter of real against generated points, with the mixture centres when the
    data has them (TensorBoard tag `samples/scatter`). Images: a grid of `per_row` x
    `per_row` samples, one row per class for conditional models (tag `samples/grid`). Each
    goes to TensorBoard (step = epoch) and to `dirpath/epoch_XXX.png`; the latest also to
    `dirpath/last.png`. Models with a `figures` method (the autoencoders, the translation
    models) add their own pictures, each under `samples/<name>` and in `dirpath/<name>/`
    (a figure named `grid` in `dirpath/`: input | translated | target for pix2pix).
    """

    def __init__(
        self,
        dirpath: str,
        num_samples: int = 1000,
        per_row: int = 8,
        every_n_epochs: int = 1,
        seed: int = 1234,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.num_samples = num_samples
        self.per_row = per_row
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.last_drawn: int | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.draw(trainer, pl_module, trainer.current_epoch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last_epoch = max(trainer.current_epoch - 1, 0)
        if self.last_drawn != last_epoch:
            self.draw(trainer, pl_module, last_epoch)

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        self.last_drawn = epoch
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        generator = torch.Generator().manual_seed(self.seed)
        if not hasattr(pl_module, "translate"):  # translation models draw nothing from noise
            self.publish(trainer, *self.samples_picture(pl_module, datamodule, generator, epoch))
        if hasattr(pl_module, "figures"):  # the model's own pictures (reconstructions, ...)
            figures = pl_module.figures(
                *datamodule.eval_set(), generator=generator, per_row=self.per_row
            )
            for name, (samples, labels, nrow) in figures.items():
                image = picture(samples, labels, title=f"{name}, epoch {epoch}", nrow=nrow)
                # a figure named "grid" is the model's main picture: samples/epoch_XXX.png
                folder = self.dirpath if name == "grid" else self.dirpath / name
                self.publish(trainer, f"samples/{name}", image, epoch, folder)

    def samples_picture(
        self, pl_module, datamodule, generator: torch.Generator, epoch: int
    ) -> tuple[str, np.ndarray, int, Path]:
        """Samples from fixed noise: a scatter for points, a grid for images."""
        if len(datamodule.shape) == 1:
            labels = pl_module.resolve_labels(self.num_samples, None)
            fake = pl_module.sample(self.num_samples, labels, generator=generator)
            real, _ = datamodule.eval_set()
            image = picture(
                fake, labels, title=f"epoch {epoch}", real=real[: self.num_samples],
                centers=getattr(datamodule, "centers", None),
            )  # fmt: skip
            return "samples/scatter", image, epoch, self.dirpath
        labels = grid_labels(pl_module.num_classes, self.per_row) if pl_module.conditional else None
        n = self.per_row**2 if labels is None else len(labels)
        image = picture(pl_module.sample(n, labels, generator=generator), nrow=self.per_row)
        return "samples/grid", image, epoch, self.dirpath

    @staticmethod
    def publish(trainer: L.Trainer, tag: str, image: np.ndarray, epoch: int, folder: Path) -> None:
        """To TensorBoard under `tag`, and to `folder/epoch_XXX.png` and `folder/last.png`."""
        png = encode_png(image)
        log_png(trainer, tag, png, image.shape, step=epoch)
        save_png(png, folder / f"epoch_{epoch:03d}.png")
        save_png(png, folder / "last.png")
