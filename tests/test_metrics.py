"""Sample-quality metrics against values worked out by hand."""

import math

import pytest
import torch

from genlab.data.toy2d import GridDataModule, RingDataModule
from genlab.metrics import frechet_distance, mode_coverage, prdc


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
