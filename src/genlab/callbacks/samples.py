"""Pictures of what the model generates, each epoch, to TensorBoard and `samples/`."""

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import lightning as L
import numpy as np
import torch

from genlab.callbacks.pictures import log_png
from genlab.callbacks.run_end import fit_ends_here
from genlab.contract import Figures, Sampler, Translator
from genlab.plotting import encode_png, grid_labels, picture, save_png


class SamplePlots(L.Callback):
    """Draws samples from fixed noise every `every_n_epochs` epochs and at the end of training.

    Points: a scatter of real against generated points, with the mixture centres when the
    data has them (TensorBoard tag `samples/scatter`). Images: a grid of `per_row` x
    `per_row` samples, one row per class for conditional models (tag `samples/grid`). Each
    goes to TensorBoard (step = epoch) and to `dirpath/epoch_XXX.png`; the latest also to
    `dirpath/last.png`. `Figures` models (the autoencoders, the translation models) add
    their own pictures, each under `samples/<name>` and in `dirpath/<name>/`
    (a figure named `grid` in `dirpath/`: input | translated | target for pix2pix).
    """

    def __init__(
        self,
        dirpath: str,
        num_samples: int = 1000,
        per_row: int = 8,
        every_n_epochs: int = 1,
        seed: int = 1234,
        figures_every_n_epochs: int = 5,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.figures_every_n_epochs = figures_every_n_epochs
        self.num_samples = num_samples
        self.per_row = per_row
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.last_drawn: int | None = None
        self.writer: ThreadPoolExecutor | None = None
        self.pending: list[Future] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.draw(trainer, pl_module, trainer.current_epoch)

    def draw_last(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last_epoch = max(trainer.current_epoch - 1, 0)
        if self.last_drawn != last_epoch:
            self.draw(trainer, pl_module, last_epoch)

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        self.last_drawn = epoch
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        generator = torch.Generator().manual_seed(self.seed)
        if isinstance(pl_module, Sampler):  # translation models draw nothing from noise
            self.publish(trainer, *self.samples_picture(pl_module, datamodule, generator, epoch))
        # the model's own pictures (reconstructions, ...): every `figures_every_n_epochs`
        # epochs and at the end; translation models show their grid there, every time
        figures_due = (epoch + 1) % self.figures_every_n_epochs == 0 or fit_ends_here(trainer)
        if isinstance(pl_module, Figures) and (figures_due or isinstance(pl_module, Translator)):
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

    def publish(
        self, trainer: L.Trainer, tag: str, image: np.ndarray, epoch: int, folder: Path
    ) -> None:
        """To TensorBoard under `tag`, and to `folder/epoch_XXX.png` and `folder/last.png`.
        The PNG encoding and the writes run on a background thread while training goes on
        (the next epoch's steps do not wait for zlib and the disk)."""
        if self.writer is None:
            self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genlab-png")
        self.pending.append(self.writer.submit(write_picture, trainer, tag, image, epoch, folder))

    def wait(self) -> None:
        """Wait for the pictures still being written, and raise their errors."""
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.draw_last(trainer, pl_module)
        self.wait()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        self.wait()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.wait()
        if self.writer is not None:
            self.writer.shutdown()
            self.writer = None


def write_picture(
    trainer: L.Trainer, tag: str, image: np.ndarray, epoch: int, folder: Path
) -> None:
    png = encode_png(image)
    log_png(trainer, tag, png, image.shape, step=epoch)
    name = f"epoch_{epoch:03d}.png"
    save_png(png, folder / name)
    point_last_at(folder, name, png)


def point_last_at(folder: Path, name: str, png: bytes) -> None:
    """`folder/last.png` becomes a link to the newest picture (atomically replaced), or a
    copy where the file system has no links."""
    link = folder / f".last.{os.getpid()}.png"
    try:
        link.unlink(missing_ok=True)
        link.symlink_to(name)
        link.replace(folder / "last.png")
    except OSError:
        save_png(png, folder / "last.png")
