"""Images read from a memory-mapped uint8 file, a batch at a time.

A set larger than memory is served from the file that `genlab.data.cache` wrote: the
loader asks `take(indices)` for each batch and gets a uint8 tensor of those images. The
pages read stay in the operating system's page cache, shared by every process that maps
the file (DDP ranks included); every `RELEASE_BYTES` read, this process drops its own
mapping of them (`madvise(MADV_DONTNEED)`), so its resident memory stays bounded whatever
the file's size.
"""

import mmap
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

RELEASE_BYTES = 256 * 2**20


class MappedFile:
    """One read-only mapping of a `.npy` file of uint8 images, shared by its subsets."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        header = np.load(self.path, mmap_mode="r")  # reads the header: shape and offset
        self.shape, offset = tuple(header.shape), header.offset
        del header
        with open(self.path, "rb") as file:
            self.map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        count = int(np.prod(self.shape))
        self.array = np.frombuffer(self.map, dtype=np.uint8, count=count, offset=offset)
        self.array = self.array.reshape(self.shape)
        self.read_since_release = 0

    def read(self, rows: np.ndarray) -> np.ndarray:
        """A copy of `rows`, in their order."""
        pixels = self.array[rows]
        self.read_since_release += pixels.nbytes
        if self.read_since_release >= RELEASE_BYTES:
            self.map.madvise(mmap.MADV_DONTNEED)
            self.read_since_release = 0
        return pixels


class MappedImages:
    """Rows `rows` of a memory-mapped N x C x H x W uint8 file, as a sequence of images.

    `take(indices)` gives a uint8 CPU tensor of `self[indices]`; `len`, `shape` and `dtype`
    behave like a tensor's. Pickled, it carries its file's path and maps it again (DDP's
    spawned processes)."""

    def __init__(self, path: str | Path, rows: np.ndarray | None = None, file=None) -> None:
        self.file = file or MappedFile(path)
        count = self.file.shape[0]
        self.rows = np.arange(count) if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.file.shape[1:])

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    @property
    def nbytes(self) -> int:
        return len(self.rows) * int(np.prod(self.file.shape[1:]))

    def subset(self, rows: np.ndarray | Tensor) -> "MappedImages":
        """The images at `rows` of this set, on the same mapping."""
        return MappedImages(self.file.path, self.rows[np.asarray(rows)], file=self.file)

    def take(self, indices: Tensor) -> Tensor:
        return torch.from_numpy(self.file.read(self.rows[indices.cpu().numpy()]))

    def load(self) -> Tensor:
        """All of this set's images in memory, as one tensor (read in chunks, so that no
        second copy is ever whole)."""
        images = torch.empty(self.shape, dtype=torch.uint8)
        for start in range(0, len(self), 4096):
            chunk = torch.arange(start, min(start + 4096, len(self)))
            images[start : start + len(chunk)] = self.take(chunk)
        return images

    def __getstate__(self) -> dict:
        return {"path": str(self.file.path), "rows": self.rows}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["rows"])
