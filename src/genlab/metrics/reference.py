"""A real set's reference statistics in some feature space, computed once and cached.

The Fréchet distance needs the mean and covariance of the real features, accumulated over
the set in chunks (`RunningGaussian`, float64); KID and PRDC need feature samples, so a
seeded uniform subset of the features is kept beside them (`SeededSubset`). Both are saved
in one file per (dataset content, feature extractor), which later evaluations read instead
of going over the real set again.
"""

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor


class RunningGaussian:
    """Mean and covariance (n - 1 in the denominator, as np.cov) of a stream of [N, D]
    feature chunks, merged chunk by chunk in float64 (Chan, Golub and LeVeque's pairwise
    update), so that a large set never has to be in memory at once."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: Tensor | None = None
        self.scatter: Tensor | None = None  # sum of the outer products of the centred rows

    def update(self, chunk: Tensor) -> None:
        x = chunk.detach().to("cpu", torch.float64).reshape(len(chunk), -1)
        if len(x) == 0:
            return
        mean = x.mean(0)
        centred = x - mean
        scatter = centred.T @ centred
        if self.mean is None:
            self.count, self.mean, self.scatter = len(x), mean, scatter
            return
        total = self.count + len(x)
        delta = mean - self.mean
        self.mean = self.mean + delta * (len(x) / total)
        self.scatter = (
            self.scatter + scatter + torch.outer(delta, delta) * (self.count * len(x) / total)
        )
        self.count = total

    @property
    def covariance(self) -> Tensor:
        return self.scatter / (self.count - 1)


def gaussian_fit(features: Tensor) -> tuple[Tensor, Tensor]:
    """The mean and covariance of [N, D] features, in float64."""
    stats = RunningGaussian()
    stats.update(features)
    return stats.mean, stats.covariance


class SeededSubset:
    """A uniform random subset of at most `size` rows of a stream of chunks, the same for the
    same seed and stream: each row draws a random priority and the `size` highest are kept;
    `rows` gives them in the order of their priorities (so any prefix is itself a uniform
    subset). A row that enters takes the slot of one that leaves, so a chunk costs its own
    size, not the subset's."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)
        self.filling: list[tuple[Tensor, Tensor]] = []  # (rows, priorities) until `size` rows
        self.slots: Tensor | None = None  # then the kept rows, in no particular order
        self.priorities = torch.empty(0)

    def update(self, chunk: Tensor) -> None:
        chunk = chunk.detach().to("cpu", torch.float32)
        drawn = torch.rand(len(chunk), generator=self.generator)
        if self.slots is None:
            room = self.size - sum(len(rows) for rows, _ in self.filling)
            self.filling.append((chunk[:room], drawn[:room]))
            chunk, drawn = chunk[room:], drawn[room:]
            if len(chunk) == 0 and room > 0:
                return
            self.full()
        if len(chunk) == 0:
            return
        merged = torch.cat([self.priorities, drawn])
        keep = merged.topk(self.size).indices
        entering = keep[keep >= self.size] - self.size
        leaving = torch.ones(self.size, dtype=torch.bool)
        leaving[keep[keep < self.size]] = False
        free = leaving.nonzero().flatten()
        self.slots[free] = chunk[entering]
        self.priorities[free] = drawn[entering]

    def full(self) -> None:
        """The rows gathered so far become the slots (once, not a copy per chunk)."""
        self.slots = torch.cat([rows for rows, _ in self.filling])
        self.priorities = torch.cat([priorities for _, priorities in self.filling])
        self.filling = []

    @property
    def rows(self) -> Tensor | None:
        if self.slots is None and not self.filling:
            return None
        if self.slots is None:
            self.full()
        return self.slots[self.priorities.argsort(descending=True)]


@dataclass
class Reference:
    """A real set's features: their mean and covariance over all `count` images (float64)
    and a seeded subset of the features themselves (float32, in random order)."""

    mean: Tensor
    covariance: Tensor
    count: int
    features: Tensor


def compute_reference(chunks: Iterable[Tensor], keep: int, seed: int = 0) -> Reference:
    """The reference statistics of a stream of [N, D] feature chunks, keeping `keep` rows."""
    stats, subset = RunningGaussian(), SeededSubset(keep, seed)
    for chunk in chunks:
        stats.update(chunk)
        subset.update(chunk)
    if stats.count < 2:
        raise ValueError(f"reference statistics need at least 2 samples (got {stats.count})")
    return Reference(stats.mean, stats.covariance, stats.count, subset.rows)


def reference_path(cache_dir: str | Path, content_key: str, extractor: str) -> Path:
    """The cache file of one dataset content seen through one feature extractor."""
    name = re.sub(r"[^\w.-]+", "_", f"{content_key}-{extractor}")
    return Path(cache_dir) / f"reference-{name}.pt"


def save_reference(reference: Reference, path: Path) -> None:
    """Written beside its final name and renamed: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(vars(reference), partial)
    partial.replace(path)


def load_reference(path: Path) -> Reference | None:
    """The cached reference, or None when there is none (or it cannot be read)."""
    if not path.is_file():
        return None
    try:
        return Reference(**torch.load(path, map_location="cpu", weights_only=True))
    except Exception:  # a foreign or damaged file: computed again and replaced
        return None
