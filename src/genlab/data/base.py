"""The datamodule every genlab dataset builds on."""

import hashlib
from collections.abc import Iterator

import lightning as L
import torch
from torch import Tensor

from genlab.data.disk import row_chunks
from genlab.data.loaders import InMemoryBatchLoader, Source
from genlab.data.pixels import to_model_range
from genlab.errors import require

EVAL_LIMIT = 10_000  # held-out samples the per-epoch metrics see, at most
TRAIN_LIMIT = 60_000  # training samples a metric's classifier learns from, at most


def check_declared_shape(key: str, given, expected: tuple[int, ...]) -> None:
    """A `data.<key>` written in a config must agree with the shape the settings imply."""
    require(
        given is None or tuple(given) == tuple(expected),
        f"data.{key}={list(given or [])} disagrees with the channels and image_size "
        f"{list(expected)}; leave data.{key} unset",
    )


class InMemoryDataModule(L.LightningDataModule):
    """Loads (or generates) the whole set once and serves it from memory, or from a
    cache file on disk for image folders too large for memory.

    Subclasses implement `load() -> (train, val)`, each a tuple `(x, labels)`. `x` holds
    points [N, D] (float32) or images [N, C, H, W] as uint8 (a tensor, or `DiskImages`);
    `labels` holds class indices (all -1 when the data has none). `shape` is the shape of
    one sample and `num_classes` the number of classes (0: unlabelled); the model configs
    read both by interpolation. `train_set` and `val_set` hold the data as stored; batches,
    `eval_set()` and `real_batches()` give images as float in [-1, 1].

    `flip`: training images mirrored left to right at random (see `InMemoryBatchLoader`).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        num_classes: int,
        batch_size: int,
        seed: int = 0,
        flip: bool = False,
    ) -> None:
        super().__init__()
        require(batch_size >= 1, f"data.batch_size must be >= 1 (got {batch_size})")
        self.shape = tuple(shape)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.seed = seed
        self.flip = flip
        self.train_set: tuple[Source, ...] | None = None
        self.val_set: tuple[Source, ...] | None = None

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

    def batch_loader(self, tensors: tuple[Source, ...], seed: int) -> InMemoryBatchLoader:
        """Training batches of `tensors` on the training device, this rank's shard under
        DDP: tensors move there whole, images on disk a batch at a time."""
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer else torch.device("cpu")
        return InMemoryBatchLoader(
            tuple(t.to(device) if isinstance(t, Tensor) else t for t in tensors),
            batch_size=self.batch_size,
            seed=seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            completed=self.completed_batches if trainer else None,
            flip=self.flip,
            device=device,
        )

    def completed_batches(self) -> int:
        """The batches of the current epoch that training has completed (Lightning's count,
        restored with the checkpoint on a resume)."""
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.completed

    def eval_set(self) -> tuple[Tensor, ...]:
        """Held-out real samples and labels (at most EVAL_LIMIT), for the quality metrics."""
        return self.real_set("val", EVAL_LIMIT)

    def real_set(self, split: str = "train", limit: int | None = None) -> tuple[Tensor, ...]:
        """The samples and labels of `split` ("train" or "val") as the models see them,
        images as float in [-1, 1]: all of them, or a seeded choice of `limit` when there
        are more (the same choice wherever the set is stored)."""
        return in_model_range(self.stored(split), self.seed, limit)

    def training_sample(self) -> tuple[Tensor, ...]:
        """The training samples a metric's classifier learns from: at most TRAIN_LIMIT."""
        return self.real_set("train", TRAIN_LIMIT)

    def real_batches(self, split: str = "train", batch_size: int = 500) -> Iterator[tuple]:
        """The whole `split` ("train" or "val") in its stored order, `batch_size` samples at
        a time, images as float in [-1, 1] on the CPU: for statistics over a set too large
        to hold as float."""
        parts = self.stored(split)
        for rows in row_chunks(len(parts[0]), batch_size):
            yield tuple(to_model_range(read_rows(p, rows).cpu()) for p in parts)

    def content_key(self, split: str = "train") -> str:
        """A hash of `split`'s samples and labels as stored: it changes when they do."""
        digest = hashlib.blake2b(digest_size=12)
        for part in self.stored(split):
            digest.update(f"{tuple(part.shape)} {part.dtype}".encode())
            for rows in row_chunks(len(part), 4096):
                digest.update(read_rows(part, rows).cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def stored(self, split: str) -> tuple[Source, ...]:
        require(split in ("train", "val"), f"split must be train or val (got {split!r})")
        self.setup()
        return self.train_set if split == "train" else self.val_set


def subset(source: Source, rows: Tensor) -> Source:
    """`source[rows]`, for a tensor or images on disk (still on disk)."""
    return source[rows] if isinstance(source, Tensor) else source.subset(rows.numpy())


def read_rows(source: Source, rows: Tensor) -> Tensor:
    return source[rows.to(source.device)] if isinstance(source, Tensor) else source.take(rows)


def in_model_range(
    parts: tuple[Source, ...], seed: int, limit: int | None = None
) -> tuple[Tensor, ...]:
    """Stored samples as the models see them, images read first where they are not held as
    a tensor (on disk, or gathered as stacked digits): all of them, or `limit` of them, a
    seeded choice per length (a domain's images and labels share it)."""
    loaded = []
    for part in parts:
        if limit is not None and len(part) > limit:
            generator = torch.Generator().manual_seed(seed)
            part = subset(
                part, torch.randperm(len(part), generator=generator)[:limit].sort().values
            )
        loaded.append(to_model_range(part if isinstance(part, Tensor) else part.load()))
    return tuple(loaded)
