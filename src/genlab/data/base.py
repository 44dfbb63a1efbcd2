"""The in-memory datamodule every genlab dataset builds on."""

import lightning as L
import torch
from torch import Tensor

from genlab.data.loaders import InMemoryBatchLoader
from genlab.errors import require


def check_declared_shape(key: str, given, expected: tuple[int, ...]) -> None:
    """A `data.<key>` written in a config must agree with the shape the settings imply."""
    require(
        given is None or tuple(given) == tuple(expected),
        f"data.{key}={list(given or [])} disagrees with the channels and image_size "
        f"{list(expected)}; leave data.{key} unset",
    )


class InMemoryDataModule(L.LightningDataModule):
    """Loads (or generates) the whole set once as tensors and serves it from memory.

    Subclasses implement `load() -> (train, val)`, each a tuple `(x, labels)`. `x` holds
    points [N, D] or images [N, C, H, W] in [-1, 1]; `labels` holds class indices (all -1
    when the data has none). `shape` is the shape of one sample and `num_classes` the number
    of classes (0: unlabelled); the model configs read both by interpolation.
    """

    def __init__(
        self, shape: tuple[int, ...], num_classes: int, batch_size: int, seed: int = 0
    ) -> None:
        super().__init__()
        require(batch_size >= 1, f"data.batch_size must be >= 1 (got {batch_size})")
        self.shape = tuple(shape)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.seed = seed
        self.train_set: tuple[Tensor, Tensor] | None = None
        self.val_set: tuple[Tensor, Tensor] | None = None

    @property
    def labelled(self) -> bool:
        return self.num_classes > 0

    def load(self) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set = self.load()

    def train_dataloader(self) -> InMemoryBatchLoader:
        self.setup()
        return self.batch_loader(self.train_set, seed=self.seed)

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """The loaders hand out batches that already live on the training device: pass them
        through instead of walking them with `move_data_to_device` (a tenth of a
        millisecond per step that a small model notices)."""
        if isinstance(batch, (tuple, list)) and all(
            isinstance(part, Tensor) and part.device == device for part in batch
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def batch_loader(self, tensors: tuple[Tensor, ...], seed: int) -> InMemoryBatchLoader:
        """Batches of `tensors`, moved to the training device, this rank's shard under DDP."""
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer else torch.device("cpu")
        return InMemoryBatchLoader(
            tuple(t.to(device) for t in tensors),
            batch_size=self.batch_size,
            seed=seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            completed=self.completed_batches if trainer else None,
        )

    def completed_batches(self) -> int:
        """The batches of the current epoch that training has completed (Lightning's count,
        restored with the checkpoint on a resume)."""
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.completed

    def eval_set(self) -> tuple[Tensor, Tensor]:
        """Held-out real samples and labels, for the quality metrics."""
        self.setup()
        return self.val_set
