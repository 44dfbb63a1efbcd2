"""A batch loader over tensors held in memory, or over an image file on disk.

A DataLoader over 50,000 tiny tensors spends more time collating than the model spends
training. This loader keeps the whole set as one tensor (on the training device when the
datamodule puts it there) and slices batches out of a permutation instead; a set too large
for memory is read a batch at a time from its cache file (`DiskImages`) and
moved to the device. Images are uint8 until the batch is on its device, where they are
flipped (when asked) and become float in [-1, 1].
"""

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from genlab.data.disk import DiskImages
from genlab.data.pixels import flip_horizontally, flip_masks, to_model_range
from genlab.errors import require

Source = Tensor | DiskImages


class InMemoryBatchLoader:
    """Yields batches `tuple(t[idx] for t in tensors)` over one pass of the data.

    - The order is a fresh permutation each epoch, a function of `(seed, epoch)` only, so
      a resumed run sees the same order as an uninterrupted one.
    - Under DDP each rank takes every `world_size`-th index of the same permutation: the
      ranks see disjoint shards of equal length.
    - Lightning calls `set_epoch` on `loader.sampler` at each epoch start; `sampler` is
      the loader itself.
    - Its place in the epoch, saved in checkpoints, is the number of batches training has
      completed (`completed`, Lightning's own count, given by the datamodule), so that a
      batch that was handed out but not trained on is trained on after a resume.
    - `flip`: each image of a batch mirrored left to right with probability 1/2 (the same
      coin for every image tensor of the batch, so pairs stay aligned), drawn from
      `(seed, epoch, batch)`: a resumed run flips the same images.
    - Batches go to `device` (sources already there are sliced in place); uint8 images
      become float32 in [-1, 1] there.
    """

    def __init__(
        self,
        tensors: tuple[Source, ...],
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        completed: Callable[[], int] | None = None,
        flip: bool = False,
        device: torch.device | None = None,
    ) -> None:
        require(batch_size >= 1, f"data.batch_size must be >= 1 (got {batch_size})")
        require(all(len(t) == len(tensors[0]) for t in tensors), "all tensors need the same length")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.completed = completed
        self.flip = flip
        self.device = device or next(
            (t.device for t in tensors if isinstance(t, Tensor)), torch.device("cpu")
        )
        self.epoch = 0
        self.served = 0  # batches handed out in the current pass
        self.skip = 0  # batches of this epoch a resumed run has already trained on
        require(
            self.samples_per_rank >= (batch_size if drop_last else 1),
            f"data.batch_size={batch_size} is larger than the {self.samples_per_rank} samples "
            f"each process gets; use a smaller data.batch_size",
        )

    @property
    def sampler(self) -> "InMemoryBatchLoader":
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def samples_per_rank(self) -> int:
        return len(self.tensors[0]) // self.world_size

    def __len__(self) -> int:
        if self.drop_last:
            return self.samples_per_rank // self.batch_size
        return -(-self.samples_per_rank // self.batch_size)

    def indices(self) -> Tensor:
        """This rank's sample indices for the current epoch, in order."""
        total = len(self.tensors[0])
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(total, generator=generator)
        else:
            order = torch.arange(total)
        usable = self.samples_per_rank * self.world_size
        return order[self.rank : usable : self.world_size]

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        indices = self.indices()
        on_device = {t.device for t in self.tensors if isinstance(t, Tensor)}
        placed = {device: indices.to(device) for device in on_device}
        masks = None
        if self.flip:
            masks = flip_masks(len(self), self.batch_size, self.seed, self.epoch).to(self.device)
        first, self.skip = self.skip, 0
        self.served = first
        for start in range(first * self.batch_size, len(self) * self.batch_size, self.batch_size):
            end = start + self.batch_size
            parts = [
                t[placed[t.device][start:end]]
                if isinstance(t, Tensor)
                else self.read(t, indices[start:end])
                for t in self.tensors
            ]
            mask = None if masks is None else masks[self.served]
            self.served += 1
            yield self.finish(parts, mask)

    def read(self, source: DiskImages, indices: Tensor) -> Tensor:
        return source.take(indices).to(self.device, non_blocking=True)

    def finish(self, parts: list[Tensor], mask: Tensor | None) -> tuple[Tensor, ...]:
        """Flip the images where `mask` says, then make them float in [-1, 1]."""
        if mask is not None:
            parts = [flip_horizontally(p, mask[: len(p)]) if p.dim() == 4 else p for p in parts]
        return tuple(to_model_range(p) for p in parts)

    # Lightning saves a loader's state in the checkpoint when it has these two methods, and
    # hands it back on resume: a run stopped in the middle of an epoch goes on with the
    # batches it had not trained on, in the same order.
    def state_dict(self) -> dict[str, int]:
        done = self.served if self.completed is None else self.completed()
        return {"epoch": self.epoch, "served": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        finished = state["served"] >= len(self)
        self.skip = 0 if finished else state["served"]


class ZippedBatchLoader:
    """Two loaders side by side, each with its own order: CycleGAN's unpaired domains.

    Yields `(a, b, labels_a, labels_b)` for `min(len)` batches an epoch, so that a domain
    image is never paired with the same partner twice in a row."""

    def __init__(self, loader_a: InMemoryBatchLoader, loader_b: InMemoryBatchLoader) -> None:
        self.loader_a = loader_a
        self.loader_b = loader_b

    @property
    def sampler(self) -> "ZippedBatchLoader":
        return self

    def set_epoch(self, epoch: int) -> None:
        self.loader_a.set_epoch(epoch)
        self.loader_b.set_epoch(epoch)

    def __len__(self) -> int:
        return min(len(self.loader_a), len(self.loader_b))

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        for (a, labels_a), (b, labels_b) in zip(self.loader_a, self.loader_b, strict=False):
            yield a, b, labels_a, labels_b

    def state_dict(self) -> dict[str, dict[str, int]]:
        return {"a": self.loader_a.state_dict(), "b": self.loader_b.state_dict()}

    def load_state_dict(self, state: dict[str, dict[str, int]]) -> None:
        """Both domains go on from the zipped pass's place; a pass that ended (the shorter
        domain's length) starts whole in both, the longer domain's tail unused as before."""
        finished = state["a"]["served"] >= len(self)
        for loader, part in ((self.loader_a, state["a"]), (self.loader_b, state["b"])):
            loader.load_state_dict(part | ({"served": len(loader)} if finished else {}))
