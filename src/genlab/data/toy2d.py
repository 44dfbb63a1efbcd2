"""Generated 2-D datasets: the seed's two moons, and the mode-collapse benchmarks.

`ring` and `grid` follow the Unrolled GAN, VEEGAN and PacGAN papers: 8 Gaussians on a
circle of radius 2 with std 0.02, and 25 Gaussians on a 5x5 grid with spacing 2 and std
0.05. Their `centers` and `std` let the evaluation count covered modes.
"""

import math

import torch
from sklearn.datasets import make_moons
from torch import Tensor

from genlab.data.base import InMemoryDataModule
from genlab.errors import require


class Toy2DDataModule(InMemoryDataModule):
    """Draws `num_train + num_val` points once, with `seed`, and serves them from memory."""

    centers: Tensor | None = None  # mixture centres, for datasets with known modes
    std: float | None = None

    def __init__(
        self,
        num_classes: int,
        batch_size: int = 256,
        num_train: int = 51_200,
        num_val: int = 2_500,
        seed: int = 0,
        shape: tuple[int, ...] = (2,),
        flip: bool = False,
    ) -> None:
        require(num_train >= 1 and num_val >= 1, "data.num_train and data.num_val must be >= 1")
        require(
            not flip,
            "data.flip mirrors images, and this dataset holds 2-D points: drop data.flip=true",
        )
        require(
            tuple(shape) == (2,),
            f"2-D datasets have data.shape=[2] (got {list(shape)}); leave it unset",
        )
        super().__init__(shape=(2,), num_classes=num_classes, batch_size=batch_size, seed=seed)
        self.num_train = num_train
        self.num_val = num_val

    def generate(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """`n` points of shape [n, 2] and the index of the component each was drawn from."""
        raise NotImplementedError

    def load(self) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        points, labels = self.generate(self.num_train + self.num_val, generator)
        n = self.num_train
        return (points[:n], labels[:n]), (points[n:], labels[n:])


class MoonsDataModule(Toy2DDataModule):
    """scikit-learn's two interleaving half circles, with Gaussian `noise`."""

    def __init__(self, noise: float = 0.05, num_classes: int = 2, **kwargs) -> None:
        require(noise >= 0, f"data.noise must be >= 0 (got {noise})")
        require(num_classes == 2, "moons has two classes: leave data.num_classes=2")
        super().__init__(num_classes=num_classes, **kwargs)
        self.noise = noise

    def generate(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        random_state = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        points, labels = make_moons(n_samples=n, noise=self.noise, random_state=random_state)
        return torch.as_tensor(points, dtype=torch.float32), torch.as_tensor(
            labels, dtype=torch.long
        )


class GaussianMixtureDataModule(Toy2DDataModule):
    """Equal-weight isotropic Gaussians with standard deviation `std` around `centers`."""

    def __init__(self, centers: Tensor, std: float, num_classes: int, **kwargs) -> None:
        require(std > 0, f"data.std must be > 0 (got {std})")
        require(
            num_classes == len(centers),
            f"this mixture has {len(centers)} modes: set data.num_classes={len(centers)}",
        )
        super().__init__(num_classes=num_classes, **kwargs)
        self.centers = centers
        self.std = std

    def generate(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        labels = torch.randint(0, len(self.centers), (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator) * self.std
        return self.centers[labels] + noise, labels


class RingDataModule(GaussianMixtureDataModule):
    """`num_modes` Gaussians evenly spaced on a circle of `radius`."""

    def __init__(
        self, num_modes: int = 8, radius: float = 2.0, std: float = 0.02, **kwargs
    ) -> None:
        require(num_modes >= 1, f"data.num_modes must be >= 1 (got {num_modes})")
        angles = torch.arange(num_modes, dtype=torch.float32) * (2 * math.pi / num_modes)
        centers = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
        kwargs.setdefault("num_classes", num_modes)
        super().__init__(centers=centers, std=std, **kwargs)


class GridDataModule(GaussianMixtureDataModule):
    """`grid_size` x `grid_size` Gaussians spaced `spacing` apart, centred on the origin."""

    def __init__(
        self, grid_size: int = 5, spacing: float = 2.0, std: float = 0.05, **kwargs
    ) -> None:
        require(grid_size >= 1, f"data.grid_size must be >= 1 (got {grid_size})")
        offsets = (torch.arange(grid_size, dtype=torch.float32) - (grid_size - 1) / 2) * spacing
        centers = torch.cartesian_prod(offsets, offsets)
        kwargs.setdefault("num_classes", grid_size**2)
        super().__init__(centers=centers, std=std, **kwargs)
