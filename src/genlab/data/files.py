"""Image files on disk as a stored image set: which files, decoded through the folder
cache, held in memory or read from the cache file (`data.in_memory`).

`in_memory=auto` holds a set in memory when its uint8 size is at most a quarter of the
memory available now (within the process's cgroup limit, under SLURM or in a container),
and reads it from its cache file otherwise.
"""

import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from genlab.data.cache import Cache, Decoding, cached_folder
from genlab.data.disk import DiskImages
from genlab.errors import DataError, require

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
InMemory = Literal["auto"] | bool
MEMORY_SHARE = 0.25  # of the available memory, that in_memory=auto lets a set take
SHOWN_FAILURES = 3  # files named in the warning line; info.json lists them all


def images_in(folder: Path) -> list[Path]:
    """The image files directly inside `folder`, sorted by name."""
    with os.scandir(folder) as entries:
        names = sorted(
            e.name for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
        )
    return [folder / name for name in names]


def check_in_memory(value) -> None:
    require(
        value == "auto" or isinstance(value, bool),
        f"data.in_memory must be auto, true or false (got {value!r}); auto holds the set in "
        f"memory when it fits",
    )


def available_memory() -> int:
    """Bytes of memory available to new allocations: MemAvailable, or what the cgroup
    (SLURM's --mem, a container's limit) still allows when that is less."""
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    group = Path("/sys/fs/cgroup")
    try:
        limit = (group / "memory.max").read_text().strip()
        if limit != "max":
            used = int((group / "memory.current").read_text())
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return available


def holds_in_memory(in_memory: InMemory, nbytes: int) -> bool:
    if in_memory == "auto":
        return nbytes <= MEMORY_SHARE * available_memory()
    return bool(in_memory)


class FolderImages:
    """`files` decoded as `decoding`, through the cache in `cache_dir`.

    `kept` are the indices of the files that decoded (the others are named in one warning);
    `images(rows)` gives those rows as a uint8 tensor in memory or as `DiskImages`."""

    def __init__(
        self,
        files: list[Path],
        decoding: Decoding,
        cache_dir: str | Path,
        in_memory: InMemory = "auto",
        workers: int | None = None,
        where: Path | None = None,
    ) -> None:
        self.where = where or (files[0].parent if files else Path("."))
        require(
            bool(files),
            f"{self.where} holds no images; add some, or point data.root elsewhere",
            DataError,
        )
        self.cache: Cache = cached_folder(
            files, decoding, cache_dir, workers, describe=str(self.where)
        )
        if self.cache.built:
            log.info(
                "data: %d images of %s decoded into %s",
                len(files),
                self.where,
                self.cache.folder,
            )
        self.on_disk = DiskImages(self.cache.images_file)
        self.kept = torch.from_numpy(np.flatnonzero(self.cache.kept))
        self.report_failures()
        self.in_memory = holds_in_memory(in_memory, self.on_disk.nbytes)

    def report_failures(self) -> None:
        failures = self.cache.failures
        if len(self.kept) == 0:
            name, why = failures[0]
            raise DataError(
                f"none of the {len(failures)} files in {self.where} decodes as an image "
                f"(first: {name}: {why}); point data.root at a folder of images"
            )
        if failures:
            named = ", ".join(f"{name} ({why})" for name, why in failures[:SHOWN_FAILURES])
            hidden = len(failures) - SHOWN_FAILURES
            more = f" and {hidden} more" if hidden > 0 else ""
            log.warning(
                "%d of %d files in %s do not decode and are left out: %s%s (all in %s)",
                len(failures),
                self.cache.size,
                self.where,
                named,
                more,
                self.cache.folder / "info.json",
            )

    def images(self, rows: Tensor) -> Tensor | DiskImages:
        """The images at `rows` (indices of files), in memory or on disk."""
        subset = self.on_disk.subset(rows.numpy())
        return subset.load() if self.in_memory else subset


class FolderStorage:
    """Where a folder dataset's decoded images go and how they are held: `cache_dir`,
    `in_memory` (auto, true, false), `workers` (the data config's keys of the same names)."""

    def __init__(
        self,
        cache_dir: str = "data/cache",
        in_memory: InMemory = "auto",
        workers: int | None = None,
    ) -> None:
        check_in_memory(in_memory)
        self.cache_dir, self.in_memory, self.workers = cache_dir, in_memory, workers

    def decode(self, files: list[Path], decoding: Decoding, where: Path) -> FolderImages:
        """`files` (found in `where`) decoded as `decoding`, through the cache."""
        return FolderImages(
            files, decoding, self.cache_dir, self.in_memory, self.workers, where=where
        )

    def read(self, folder: Path, decoding: Decoding) -> Tensor | DiskImages:
        """Every image of `folder` that decodes, in memory or on disk."""
        stored = self.decode(images_in(folder), decoding, folder)
        return stored.images(stored.kept)
