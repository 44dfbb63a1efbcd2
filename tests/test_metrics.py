"""Sample-quality metrics against values worked out by hand."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genlab.callbacks.evaluation import SampleQuality
from genlab.data.toy2d import GridDataModule, RingDataModule
from genlab.metrics import frechet_distance, least_class_recall, mode_coverage, prdc


def test_mode_coverage_perfect_and_collapsed():
    ring = RingDataModule(num_train=16, num_val=8)
    centers = ring.centers
    perfect = centers.repeat(100, 1) + 0.01 * torch.randn(800, 2)
    scores = mode_coverage(perfect, centers, std=0.02)
    assert scores["modes"] == 8 and scores["hq"] == 1.0
    assert scores["reverse_kl"] == pytest.approx(0.0, abs=1e-9)

    collapsed = centers[:1].repeat(500, 1)
    scores = mode_coverage(torch.cat([collapsed, torch.full((500, 2), 10.0)]), centers, std=0.02)
    assert scores["modes"] == 1 and scores["hq"] == 0.5
    assert scores["reverse_kl"] == pytest.approx(math.log(8))


def test_grid_matches_the_papers():
    grid = GridDataModule(num_train=16, num_val=8)
    assert len(grid.centers) == 25
    assert sorted(set(grid.centers[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


def test_frechet_distance_of_a_shift():
    real = torch.randn(5000, 3, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    shifted = real + torch.tensor([1.0, 2.0, 0.0])
    assert frechet_distance(real, shifted) == pytest.approx(5.0, rel=1e-3)


def test_prdc_separates_good_from_bad_samples():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(1000, 2, generator=generator)
    good = torch.randn(1000, 2, generator=generator)
    half = torch.randn(1000, 2, generator=generator).abs()  # only one quadrant of the real support
    far = torch.randn(1000, 2, generator=generator) + 20
    assert prdc(real, good)["precision"] > 0.9 and prdc(real, good)["recall"] > 0.9
    assert prdc(real, half)["recall"] < 0.6
    assert prdc(real, far)["precision"] == 0.0 and prdc(real, far)["coverage"] == 0.0


def mixture_sampler(dim: int, seed: int = 0):
    """Draws from one fixed mixture of 10 unit Gaussians in `dim` dimensions."""
    generator = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(10, dim, generator=generator)

    def draw(n: int) -> torch.Tensor:
        modes = torch.randint(len(centers), (n,), generator=generator)
        return centers[modes] + torch.randn(n, dim, generator=generator)

    return draw


class PixelFeatures(torch.nn.Module):
    """Stands in for the digit classifier: an image's 128 pixels are its features."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def test_held_out_distribution_covers_a_10000_image_held_out_set():
    """Generated images drawn from the held-out distribution itself, 2,500 against a
    10,000-image held-out set (mnist, fashion_mnist, cifar10): coverage 1 - 0.5^5 = 0.97 on equal sizes,
    where 10,000 against 2,500 reads 1 - 0.8^5 = 0.67."""
    draw = mixture_sampler(128)
    real, fake = draw(10_000).view(-1, 2, 8, 8), draw(2_500).view(-1, 2, 8, 8)
    quality = SampleQuality()
    quality.classifiers["data"] = PixelFeatures()
    data = SimpleNamespace(num_classes=10)
    metrics = quality.image_metrics(real, torch.zeros(10_000, dtype=torch.long), fake, None, data)
    assert metrics["coverage"] >= 0.95 and 0.9 <= metrics["density"] <= 1.1
    assert metrics["prdc_n"] == 2_500


def test_prdc_of_the_real_distribution_on_unequal_sizes():
    """500 samples against 1,000 held-out ones (pixelcnn on mnist_mini): the larger side is
    cut to 500, the same subset on every call."""
    draw = mixture_sampler(128, seed=1)
    real, fake = draw(1_000), draw(500)
    scores = prdc(real, fake)
    assert scores["coverage"] >= 0.95 and scores["prdc_n"] == 500
    assert prdc(real, fake) == scores
    assert prdc(fake, real)["prdc_n"] == 500


def brute_force_prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """PRDC by its definitions, with distances from float64 differences."""

    def distances(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    real_radii = np.sort(distances(real, real), axis=1)[:, k]
    fake_radii = np.sort(distances(fake, fake), axis=1)[:, k]
    real_to_fake = distances(real, fake)
    return {
        "precision": (real_to_fake <= real_radii[:, None]).any(axis=0).mean(),
        "recall": (real_to_fake <= fake_radii[None, :]).any(axis=1).mean(),
        "density": (real_to_fake <= real_radii[:, None]).sum(axis=0).mean() / k,
        "coverage": (real_to_fake.min(axis=1) <= real_radii).mean(),
    }


def test_prdc_of_2d_points_far_from_the_origin_is_exact():
    """Unit Gaussians a million away from the origin, where the matrix-product shortcut for
    distances loses the spacing of near neighbours (in float32, and in float64 too unless
    the points are centred): PRDC must match float64 differences."""
    generator = torch.Generator().manual_seed(0)
    offset = torch.tensor([1e6, -1e6], dtype=torch.float64)
    real = offset + torch.randn(400, 2, generator=generator, dtype=torch.float64)
    fake = offset + 1.2 * torch.randn(400, 2, generator=generator, dtype=torch.float64)
    scores = prdc(real, fake)
    expected = brute_force_prdc(real.numpy(), fake.numpy())
    assert {key: scores[key] for key in expected} == pytest.approx(expected, abs=1e-12)


def test_least_class_recall_sees_one_class_collapse_that_overall_recall_hides():
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(10, 8, generator=generator) * 6
    labels = torch.arange(600) % 10

    def draw(collapsed: int | None = None) -> torch.Tensor:
        points = centers[labels] + torch.randn(600, 8, generator=generator)
        if collapsed is not None:  # every sample of that class one image, barely jittered
            one = labels == collapsed
            points[one] = centers[collapsed] + 0.01 * torch.randn(
                int(one.sum()), 8, generator=generator
            )
        return points

    real = draw()
    healthy, collapsed = draw(), draw(collapsed=3)
    assert least_class_recall(real, labels, healthy, labels) > 0.5
    assert prdc(real, collapsed)["recall"] > 0.8  # nine classes of ten are fine
    assert least_class_recall(real, labels, collapsed, labels) < 0.1
    few = labels < 2  # classes with no more than k samples a side are left out
    assert math.isnan(least_class_recall(real[:5], labels[:5], real[:5], labels[:5]))
    assert least_class_recall(real[few], labels[few], healthy[few], labels[few]) > 0.5
