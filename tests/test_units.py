"""Losses, metrics and the batch loader against values worked out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab.data.loaders import InMemoryBatchLoader
from genlab.data.toy2d import GridDataModule, RingDataModule
from genlab.errors import ConfigError
from genlab.losses import (
    HingeLoss,
    LeastSquaresLoss,
    NonSaturatingLoss,
    WassersteinLoss,
    gradient_penalty,
)
from genlab.metrics import frechet_distance, mode_coverage, prdc


def test_losses_at_known_scores():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])
    bce = NonSaturatingLoss()
    expected_d = -(torch.sigmoid(real).log().mean() + (1 - torch.sigmoid(fake)).log().mean())
    assert bce.discriminator(real, fake) == pytest.approx(float(expected_d), rel=1e-5)
    assert bce.generator(fake) == pytest.approx(float(-torch.sigmoid(fake).log().mean()), rel=1e-5)
    assert LeastSquaresLoss().discriminator(real, fake) == pytest.approx(
        0.5 * ((1 + 1) / 2 + (1 + 1) / 2)
    )
    assert LeastSquaresLoss().generator(fake) == pytest.approx(0.5 * (4 + 0) / 2)
    assert WassersteinLoss().discriminator(real, fake) == pytest.approx(0.0 - 1.0)
    assert WassersteinLoss().generator(fake) == pytest.approx(0.0)
    assert HingeLoss().discriminator(real, fake) == pytest.approx((0 + 1) / 2 + (0 + 2) / 2)


class LinearCritic(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x, labels=None):
        return x @ self.weight


@pytest.mark.parametrize("norm, expected", [(1.0, 0.0), (3.0, 4.0)])
def test_gradient_penalty_of_linear_critic(norm, expected):
    # A linear critic has gradient w everywhere, so the penalty is (||w|| - 1)^2.
    critic = LinearCritic(torch.tensor([0.6, 0.8]) * norm)
    real, fake = torch.randn(64, 2), torch.randn(64, 2)
    assert float(gradient_penalty(critic, real, fake)) == pytest.approx(expected, abs=1e-5)


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


def collect(loader: InMemoryBatchLoader, epoch: int) -> torch.Tensor:
    loader.set_epoch(epoch)
    return torch.cat([batch[0] for batch in loader])


def test_loader_yields_every_sample_once_in_a_new_order_each_epoch():
    data = torch.arange(100)
    loader = InMemoryBatchLoader((data,), batch_size=10, seed=3)
    first, second = collect(loader, 0), collect(loader, 1)
    assert sorted(first.tolist()) == list(range(100)) == sorted(second.tolist())
    assert not torch.equal(first, second)
    again = InMemoryBatchLoader((data,), batch_size=10, seed=3)
    assert torch.equal(collect(again, 1), second)
    assert loader.sampler is loader and len(loader) == 10


def test_loader_shards_disjointly_across_ranks():
    data = torch.arange(103)
    shards = [
        collect(InMemoryBatchLoader((data,), batch_size=5, seed=1, rank=r, world_size=2), 4)
        for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 50
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_loader_rejects_a_batch_larger_than_the_data():
    with pytest.raises(ValueError, match="smaller data.batch_size"):
        InMemoryBatchLoader((torch.arange(10),), batch_size=11)


def test_generator_moving_average_ramps_up_then_follows_slowly():
    from functools import partial

    from genlab.losses import NonSaturatingLoss
    from genlab.models.gan import GAN
    from genlab.nets.mlp import MLPDiscriminator, MLPGenerator

    torch.manual_seed(0)
    gan = GAN(
        MLPGenerator(2, (2,), [8]), MLPDiscriminator((2,), [8]), NonSaturatingLoss(),
        partial(torch.optim.Adam), partial(torch.optim.Adam), latent_dim=2, ema_decay=0.9,
    )  # fmt: skip
    weight = next(gan.generator.parameters())
    average = next(gan.generator_ema.parameters())
    start = average.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    gan.update_ema()  # first update: decay (1 + 1) / (10 + 1) = 0.18, far below 0.9
    assert torch.allclose(average, start + (1 - 2 / 11))
    for _ in range(100):
        gan.update_ema()
    assert torch.allclose(average, weight, atol=1e-3)
    assert not average.requires_grad
    assert any(key.startswith("generator_ema.") for key in gan.state_dict())  # checkpointed


def test_tacgan_generator_loss_subtracts_the_twin_classifier():
    """G's classification term is CE(classifier) - CE(twin): a sample the twin recognises
    as its class costs G, so pleasing the classifier alone is not enough."""
    from functools import partial

    from genlab.losses import NonSaturatingLoss
    from genlab.models.gan import GAN
    from genlab.nets import discriminator, generator

    torch.manual_seed(0)
    shape = (1, 8, 8)
    d = discriminator(shape, aux_classes=3, twin_classes=3, width=4)
    score, logits, twin = d(torch.randn(5, *shape))
    assert score.shape == (5,) and logits.shape == twin.shape == (5, 3)
    gan = GAN(
        generator(4, shape, num_classes=3, width=4), d, NonSaturatingLoss(),
        partial(torch.optim.Adam), partial(torch.optim.Adam), latent_dim=4, num_classes=3,
        aux_weight=1.0,
    )  # fmt: skip
    x, labels = torch.randn(6, *shape), torch.tensor([0, 1, 2, 0, 1, 2])
    scores, logits, twin = gan.critic(x, labels)
    expected = F.cross_entropy(logits, labels) - F.cross_entropy(twin, labels)
    assert torch.allclose(gan.generator_classification(logits, twin, labels), expected)
    plain = gan.generator_classification(logits, None, labels)  # ACGAN
    assert torch.allclose(plain, F.cross_entropy(logits, labels))
    with pytest.raises(ConfigError, match="twin classifier needs the auxiliary one"):
        discriminator(shape, twin_classes=3, width=4)
