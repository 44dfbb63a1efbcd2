"""Image-to-image data: two image domains A and B, paired (pix2pix) or unpaired (CycleGAN).

Every batch is `(a, b, labels_a, labels_b)`, images in [-1, 1] (labels -1 where there are
none; stored as uint8 like every genlab image). Paired sets keep a[i] and b[i] together;
unpaired ones shuffle the domains apart.
`eval_set()` gives the held-out `(a, b, labels_a, labels_b)`; where `aligned_eval` is true,
b[i] is the true translation of a[i], so translations can be scored against the truth.

Embedded tasks with a known answer, built from the 5,000 MNIST digits of `mnist_mini`:
- `digits_edges` (paired): a digit's Sobel edge map and the digit;
- `digits_inverted` (unpaired): digits against inverted digits (white on black against black
  on white), each domain from its own half of the training digits.

The standard folder layouts of the public sets, for a downloaded dataset:
- pix2pix: `root/train/*.jpg` of side-by-side A|B images, and `root/val/` or `root/test/`;
- CycleGAN: `root/trainA/`, `root/trainB/`, and optionally `root/testA/`, `root/testB/`.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.data import pixels
from genlab.data.base import (
    TRAIN_LIMIT,
    InMemoryDataModule,
    check_declared_shape,
    in_model_range,
    subset,
)
from genlab.data.cache import Decoding
from genlab.data.files import FolderStorage, InMemory, images_in
from genlab.data.images import held_out_split, mnist_mini, stratified_split
from genlab.data.loaders import ZippedBatchLoader
from genlab.errors import DataError, require

Domains = tuple[Tensor, Tensor, Tensor, Tensor]  # a, b, labels_a, labels_b
DIRECTIONS = ("AtoB", "BtoA")


def sobel_edges(images: Tensor) -> Tensor:
    """The Sobel gradient magnitude of images in [-1, 1], scaled per image to [-1, 1]."""
    kernel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([kernel_x, kernel_x.T]).unsqueeze(1)  # 2 x 1 x 3 x 3
    channels = images.shape[1]
    unit = (images + 1) / 2
    gradients = F.conv2d(unit, kernels.repeat(channels, 1, 1, 1), padding=1, groups=channels)
    gradients = gradients.view(len(images), channels, 2, *images.shape[-2:])
    magnitude = gradients.pow(2).sum(2).sqrt()
    peak = magnitude.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1, 1)
    return (magnitude / peak) * 2 - 1


class TranslationDataModule(InMemoryDataModule):
    """Domains A (`channels` x `image_size`^2, the input) and B (`channels_b`, the output);
    `shape` is B's image shape and `shape_a` A's, for the models' interpolations."""

    paired = True

    def __init__(
        self,
        channels: int,
        channels_b: int,
        image_size: int = 32,
        num_classes: int = 0,
        batch_size: int = 16,
        val_fraction: float = 0.2,
        seed: int = 0,
        shape: tuple[int, ...] | None = None,
        shape_a: tuple[int, ...] | None = None,
        flip: bool = False,
    ) -> None:
        for key, value in (("channels", channels), ("channels_b", channels_b)):
            require(value in (1, 3), f"data.{key} must be 1 or 3 (got {value})")
        require(image_size >= 8, f"data.image_size must be >= 8 (got {image_size})")
        require(0 < val_fraction < 1, f"data.val_fraction must lie in (0, 1) (got {val_fraction})")
        shape_b = (channels_b, image_size, image_size)
        expected_a = (channels, image_size, image_size)
        check_declared_shape("shape", shape, shape_b)
        check_declared_shape("shape_a", shape_a, expected_a)
        super().__init__(
            shape=shape_b, num_classes=num_classes, batch_size=batch_size, seed=seed, flip=flip
        )
        self.shape_a = expected_a
        self.channels = channels
        self.channels_b = channels_b
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.aligned_eval = self.paired

    def load(self) -> tuple[Domains, Domains]:
        raise NotImplementedError

    def train_dataloader(self):
        self.setup()
        a, b, labels_a, labels_b = self.train_set
        if self.paired:
            return self.batch_loader(self.train_set, seed=self.seed)
        # two orders, one per domain: the pairs change every epoch
        return ZippedBatchLoader(
            self.batch_loader((a, labels_a), seed=self.seed),
            self.batch_loader((b, labels_b), seed=self.seed + 1),
        )

    def domain_set(self, domain: str) -> tuple[Tensor, Tensor]:
        """One domain's training images (float, in [-1, 1]) and labels (`domain` 'a' or 'b')."""
        self.setup()
        a, b, labels_a, labels_b = self.train_set
        return in_model_range(
            (a, labels_a) if domain == "a" else (b, labels_b), self.seed, TRAIN_LIMIT
        )

    def split_pairs(self, a: Tensor, b: Tensor, labels: Tensor) -> tuple[Domains, Domains]:
        """Hold out `val_fraction` of every class (of everything when unlabelled), pairs kept."""
        train, val = held_out_split(labels, self.labelled, self.val_fraction, self.seed)
        return (
            (subset(a, train), subset(b, train), labels[train], labels[train]),
            (subset(a, val), subset(b, val), labels[val], labels[val]),
        )


def check_digit_domains(channels: int, channels_b: int, num_classes: int) -> None:
    require(
        channels == channels_b == 1 and num_classes == 10,
        "the digit tasks hold 1-channel images of 10 classes: leave data.channels, "
        "data.channels_b and data.num_classes unset",
    )


def digits(image_size: int) -> tuple[Tensor, Tensor]:
    images, labels = mnist_mini()
    return pixels.resize(images, image_size), labels


class DigitsEdgesDataModule(TranslationDataModule):
    """pix2pix's edges-to-photo task on digits: A = Sobel edge map, B = the digit
    (`direction=BtoA` swaps them)."""

    def __init__(
        self, direction: str = "AtoB", channels: int = 1, channels_b: int = 1, **kwargs
    ) -> None:
        require(direction in DIRECTIONS, f"data.direction must be AtoB or BtoA (got {direction!r})")
        check_digit_domains(channels, channels_b, kwargs.setdefault("num_classes", 10))
        super().__init__(channels=channels, channels_b=channels_b, **kwargs)
        self.direction = direction

    def load(self) -> tuple[Domains, Domains]:
        images, labels = digits(self.image_size)
        edges = pixels.to_stored_range(sobel_edges(pixels.to_model_range(images)))
        a, b = (edges, images) if self.direction == "AtoB" else (images, edges)
        return self.split_pairs(a, b, labels)


class DigitsInvertedDataModule(TranslationDataModule):
    """CycleGAN on digits: A = digits, B = inverted digits, from disjoint halves of the
    training digits. The held-out B is the true inversion of the held-out A."""

    paired = False

    def __init__(self, channels: int = 1, channels_b: int = 1, **kwargs) -> None:
        check_digit_domains(channels, channels_b, kwargs.setdefault("num_classes", 10))
        super().__init__(channels=channels, channels_b=channels_b, **kwargs)
        self.aligned_eval = True

    def load(self) -> tuple[Domains, Domains]:
        images, labels = digits(self.image_size)
        train, val = stratified_split(labels, self.val_fraction, self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        train = train[torch.randperm(len(train), generator=generator)]
        half_a, half_b = train[: len(train) // 2], train[len(train) // 2 :]
        return (
            (images[half_a], 255 - images[half_b], labels[half_a], labels[half_b]),
            (images[val], 255 - images[val], labels[val], labels[val]),
        )

    def b_to_a(self, b: Tensor) -> Tensor:
        """The known relation between the domains: the A image a B image (in [-1, 1])
        inverts, which is its negative."""
        return -b


def require_folder(folder: Path, layout: str) -> list[Path]:
    require(
        folder.is_dir(),
        f"{folder.parent.resolve()} has no {folder.name}/ folder; {layout}",
        DataError,
    )
    files = images_in(folder)
    require(bool(files), f"no images found in {folder.resolve()}; {layout}", DataError)
    return files


def holds_images(folder: Path) -> bool:
    return folder.is_dir() and bool(images_in(folder))


class PairedFolderDataModule(TranslationDataModule):
    """pix2pix's layout: `root/train/` of side-by-side A|B images, held out from `root/val/`
    or `root/test/` (else `val_fraction` of train). `direction=BtoA` swaps the halves.
    Decoded once into a cache; `cache_dir`, `in_memory` and `workers` as for image_folder."""

    LAYOUT = "a pix2pix dataset holds train/ (and val/ or test/) of side-by-side A|B images"

    def __init__(
        self,
        root: str,
        direction: str = "AtoB",
        channels: int = 3,
        channels_b: int = 3,
        cache_dir: str = "data/cache",
        in_memory: InMemory = "auto",
        workers: int | None = None,
        **kwargs,
    ) -> None:
        require(direction in DIRECTIONS, f"data.direction must be AtoB or BtoA (got {direction!r})")
        self.root = Path(root)
        self.direction = direction
        self.storage = FolderStorage(cache_dir, in_memory, workers)
        require_folder(self.root / "train", self.LAYOUT)
        kwargs["num_classes"] = 0
        super().__init__(channels=channels, channels_b=channels_b, **kwargs)

    def read_pairs(self, folder: Path) -> tuple:
        """Domain A's and domain B's halves of every side-by-side image in `folder` that
        decodes, in the same order: a file either half of which fails is left out of both."""
        first, second = (0, 1) if self.direction == "AtoB" else (1, 0)
        files = images_in(folder)
        a = self.storage.decode(files, Decoding(self.channels, self.image_size, part=first), folder)
        b = self.storage.decode(
            files, Decoding(self.channels_b, self.image_size, part=second), folder
        )
        both = torch.from_numpy(np.intersect1d(a.kept.numpy(), b.kept.numpy()))
        return a.images(both), b.images(both)

    def load(self) -> tuple[Domains, Domains]:
        a, b = self.read_pairs(self.root / "train")
        held_out = [self.root / name for name in ("val", "test") if holds_images(self.root / name)]
        if not held_out:
            require(
                len(a) >= 2,
                f"{self.root / 'train'} holds too few images to hold some out; add val/",
                DataError,
            )
            return self.split_pairs(a, b, unlabelled(len(a)))
        val_a, val_b = self.read_pairs(held_out[0])
        return (
            (a, b, unlabelled(len(a)), unlabelled(len(a))),
            (val_a, val_b, unlabelled(len(val_a)), unlabelled(len(val_a))),
        )


class UnpairedFolderDataModule(TranslationDataModule):
    """CycleGAN's layout: `root/trainA/`, `root/trainB/` and optionally `root/testA/`,
    `root/testB/` (else `val_fraction` of each training folder is held out). Decoded once
    into a cache; `cache_dir`, `in_memory` and `workers` as for image_folder."""

    LAYOUT = "a CycleGAN dataset holds trainA/ and trainB/ (and optionally testA/, testB/)"
    paired = False

    def __init__(
        self,
        root: str,
        channels: int = 3,
        channels_b: int = 3,
        cache_dir: str = "data/cache",
        in_memory: InMemory = "auto",
        workers: int | None = None,
        **kwargs,
    ) -> None:
        self.root = Path(root)
        self.storage = FolderStorage(cache_dir, in_memory, workers)
        for name in ("trainA", "trainB"):
            require_folder(self.root / name, self.LAYOUT)
        kwargs["num_classes"] = 0
        super().__init__(channels=channels, channels_b=channels_b, **kwargs)
        self.aligned_eval = False

    def domain(self, name: str, channels: int) -> tuple:
        """(train, held-out) images of one domain."""
        decoding = Decoding(channels, self.image_size)
        train = self.storage.read(self.root / f"train{name}", decoding)
        if holds_images(self.root / f"test{name}"):
            return train, self.storage.read(self.root / f"test{name}", decoding)
        keep, held_out = held_out_split(unlabelled(len(train)), False, self.val_fraction, self.seed)
        require(
            len(keep) > 0,
            f"{self.root / f'train{name}'} holds too few images to hold some out; add test{name}/",
            DataError,
        )
        return subset(train, keep), subset(train, held_out)

    def load(self) -> tuple[Domains, Domains]:
        train_a, val_a = self.domain("A", self.channels)
        train_b, val_b = self.domain("B", self.channels_b)
        return (
            (train_a, train_b, unlabelled(len(train_a)), unlabelled(len(train_b))),
            (val_a, val_b, unlabelled(len(val_a)), unlabelled(len(val_b))),
        )


def unlabelled(n: int) -> Tensor:
    return torch.full((n,), -1, dtype=torch.long)
