"""Stacked MNIST (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018): three digits
as the red, green and blue channels of one image, so that the data has 10^3 = 1,000 modes,
one per digit triple; a generator's mode coverage is counted by reading each channel with a
digit classifier (`genlab.metrics.stacked`).

The digits are mnist_mini's (`genlab.data.images`): its training split for the training
triples, its held-out split for the held-out ones. A split stores the digits once and the
index triples into them; each batch is gathered from them (`StackedDigits`), so a set of
50,000 images costs its 50,000 x 3 indices, not 50,000 x 3 x 28 x 28 pixels.
"""

import numpy as np
import torch
from torch import Tensor

from genlab.data import pixels
from genlab.data.base import InMemoryDataModule, check_declared_shape
from genlab.data.images import held_out_split, mnist_mini
from genlab.errors import require

DIGITS = 10
CHANNELS = 3


class StackedDigits:
    """Images `digits[triples[i]]`, one digit per channel, made when asked for.

    `digits` [M, 1, H, W] uint8, `triples` [N, 3] rows of `digits`. Serves the batch loader
    and the datamodule as images on disk do (`genlab.data.disk.DiskImages`): `len`, `shape`,
    `dtype`, `take(indices)` (a uint8 tensor of those images), `subset(rows)` and `load()`."""

    def __init__(self, digits: Tensor, triples: Tensor) -> None:
        self.digits = digits
        self.triples = triples

    def __len__(self) -> int:
        return len(self.triples)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.triples), self.triples.shape[1], *self.digits.shape[2:])

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    @property
    def nbytes(self) -> int:
        """What it holds: the digits and the triples, not the images they make."""
        return self.digits.nbytes + self.triples.nbytes

    def take(self, indices: Tensor) -> Tensor:
        rows = self.triples[torch.as_tensor(indices).cpu()]  # [n, 3]
        return self.digits[rows].flatten(1, 2)  # [n, 3, 1, H, W] -> [n, 3, H, W]

    def subset(self, rows: np.ndarray | Tensor) -> "StackedDigits":
        return StackedDigits(self.digits, self.triples[torch.as_tensor(rows)])

    def load(self) -> Tensor:
        return self.take(torch.arange(len(self)))


def draw_triples(digit_labels: Tensor, count: int, generator: torch.Generator) -> tuple:
    """`count` triples of digit indices, each drawn uniformly and independently, and their
    classes 100 * r + 10 * g + b."""
    triples = torch.randint(len(digit_labels), (count, CHANNELS), generator=generator)
    place = DIGITS ** torch.arange(CHANNELS - 1, -1, -1)  # 100, 10, 1
    return triples, (digit_labels[triples] * place).sum(1)


class StackedMnistDataModule(InMemoryDataModule):
    """`num_train` training and `num_val` held-out triples of mnist_mini digits, 3 x
    `image_size` x `image_size`, labelled 0..999 by their digits. mnist_mini is split as
    `data=mnist_mini` splits it (`val_fraction` of each class held out, by `seed`); the
    triples are drawn from `seed` too. `mode_samples`: how many samples the mode count
    (`eval/modes`, `eval/reverse_kl`) reads, at most `num_val` (the real held-out triples read the
    same way give its floor)."""

    def __init__(
        self,
        num_train: int = 50_000,
        num_val: int = 26_000,
        mode_samples: int = 26_000,
        channels: int = CHANNELS,
        image_size: int = 28,
        num_classes: int = DIGITS**CHANNELS,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        seed: int = 0,
        shape: tuple[int, ...] | None = None,
    ) -> None:
        require(
            channels == CHANNELS and num_classes == DIGITS**CHANNELS,
            "stacked_mnist holds 3-channel images of 1000 classes (the digit triples); "
            "leave data.channels and data.num_classes unset",
        )
        require(image_size >= 8, f"data.image_size must be >= 8 (got {image_size})")
        require(0 < val_fraction < 1, f"data.val_fraction must lie in (0, 1) (got {val_fraction})")
        require(num_train >= 1, f"data.num_train must be >= 1 (got {num_train})")
        require(
            1 <= mode_samples <= num_val,
            f"data.mode_samples={mode_samples} must lie in 1..data.num_val={num_val} (its "
            f"floor reads as many held-out triples); raise data.num_val or lower data.mode_samples",
        )
        expected = (channels, image_size, image_size)
        check_declared_shape("shape", shape, expected)
        super().__init__(expected, num_classes, batch_size=batch_size, seed=seed)
        self.channels = channels
        self.image_size = image_size
        self.num_train = num_train
        self.num_val = num_val
        self.mode_samples = mode_samples
        self.val_fraction = val_fraction
        self.digit_split: tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None

    def digits(self) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """mnist_mini's training and held-out digits (uint8 images, labels), as
        `data=mnist_mini` with this seed and val_fraction splits them, at `image_size`."""
        if self.digit_split is None:
            images, labels = mnist_mini()
            images = pixels.resize(images, self.image_size)
            train, val = held_out_split(labels, True, self.val_fraction, self.seed)
            self.digit_split = (images[train], labels[train]), (images[val], labels[val])
        return self.digit_split

    def load(self) -> tuple[tuple, tuple]:
        generator = torch.Generator().manual_seed(self.seed)
        splits = []
        counts = (self.num_train, self.num_val)
        for (images, labels), count in zip(self.digits(), counts, strict=True):
            triples, classes = draw_triples(labels, count, generator)
            splits.append((StackedDigits(images, triples), classes))
        return tuple(splits)

    def channel_digits(self) -> tuple[Tensor, Tensor]:
        """The training digits, one channel each, as float in [-1, 1], and their labels:
        what the digit classifier that reads each channel learns from (mnist_mini's own
        training split, so the two datasets share that classifier's cache)."""
        images, labels = self.digits()[0]
        return pixels.to_model_range(images), labels
