"""Images read from a uint8 cache file on disk, a batch at a time.

A set larger than memory is served from the `.npy` file that `genlab.data.cache` wrote: the
loader asks `take(indices)` for each batch and gets a uint8 tensor of those images, read
with one positioned read (`os.preadv`) per image, or one for a run of consecutive images.
The file's pages stay in the operating system's page cache, shared by every process that
reads it (DDP ranks included), and this process holds only the batch.

Why not a memory map: on Linux kernels that map a file's large folios whole, a memory map
read at random becomes resident as a whole, 1.4 GB for a 1.2 GB cache after reading 6% of
its images (Linux 6.18), whatever `madvise` says; positioned reads keep the resident
memory at the batch's size. The file is still numpy's format: `np.load(path,
mmap_mode="r")` maps it for anyone who wants to look.
"""

import os
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genlab.errors import DataError


def row_chunks(count: int, size: int) -> Iterator[Tensor]:
    """Indices 0..count-1 in consecutive chunks of `size`."""
    for start in range(0, count, size):
        yield torch.arange(start, min(start + size, count))


class ImageFile:
    """An open `.npy` file of N x C x H x W uint8 images."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        header = np.load(self.path, mmap_mode="r")  # reads the header: shape and offset
        self.shape, self.offset = tuple(header.shape), header.offset
        del header
        self.row_bytes = int(np.prod(self.shape[1:]))
        self.fd = os.open(self.path, os.O_RDONLY)
        weakref.finalize(self, os.close, self.fd)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """A copy of images `rows`, in their order."""
        pixels = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and np.all(np.diff(rows) == 1):
            self.read_into(pixels, int(rows[0]))  # a run of consecutive images: one read
            return pixels
        for i, row in enumerate(rows.tolist()):
            self.read_into(pixels[i], row)
        return pixels

    def read_into(self, out: np.ndarray, row: int) -> None:
        """Fill `out` from image `row` on: a read returns at most 2 GB, so read until done."""
        view, done = out.reshape(-1), 0
        while done < view.nbytes:
            count = os.preadv(self.fd, [view[done:]], self.offset + row * self.row_bytes + done)
            if count == 0:
                raise DataError(
                    f"the image cache {self.path.parent} is damaged (its images.npy ends "
                    f"early); delete that folder and the next run rebuilds it"
                )
            done += count


class DiskImages:
    """Rows `rows` of a uint8 image file, as a sequence of images.

    `take(indices)` gives a uint8 CPU tensor of `self[indices]`; `len`, `shape` and `dtype`
    behave like a tensor's. Pickled, it carries its file's path and opens it again (DDP's
    spawned processes)."""

    def __init__(
        self, path: str | Path, rows: np.ndarray | None = None, file: ImageFile | None = None
    ) -> None:
        self.file = file or ImageFile(path)
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
        return len(self.rows) * self.file.row_bytes

    def subset(self, rows: np.ndarray | Tensor) -> "DiskImages":
        """The images at `rows` of this set, from the same open file."""
        return DiskImages(self.file.path, self.rows[np.asarray(rows)], file=self.file)

    def take(self, indices: Tensor) -> Tensor:
        return torch.from_numpy(self.file.read(self.rows[indices.cpu().numpy()]))

    def load(self) -> Tensor:
        """All of this set's images in memory, as one tensor (read in chunks, so that no
        second copy is ever whole)."""
        images = torch.empty(self.shape, dtype=torch.uint8)
        for rows in row_chunks(len(self), 4096):
            images[rows] = self.take(rows)
        return images

    def __getstate__(self) -> dict:
        return {"path": str(self.file.path), "rows": self.rows}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["rows"])
