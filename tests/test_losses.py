"""The adversarial losses and the gradient penalty, against values worked out by hand."""

import pytest
import torch
from torch import nn

from genlab.losses import (
    HingeLoss,
    LeastSquaresLoss,
    NonSaturatingLoss,
    WassersteinLoss,
    gradient_penalty,
)

REAL, FAKE = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])


def test_losses_at_known_scores():
    bce = NonSaturatingLoss()
    expected_d = -(torch.sigmoid(REAL).log().mean() + (1 - torch.sigmoid(FAKE)).log().mean())
    assert bce.discriminator(REAL, FAKE) == pytest.approx(float(expected_d), rel=1e-5)
    assert bce.generator(FAKE) == pytest.approx(float(-torch.sigmoid(FAKE).log().mean()), rel=1e-5)
    assert LeastSquaresLoss().discriminator(REAL, FAKE) == pytest.approx(
        0.5 * ((1 + 1) / 2 + (1 + 1) / 2)
    )
    assert LeastSquaresLoss().generator(FAKE) == pytest.approx(0.5 * (4 + 0) / 2)
    assert WassersteinLoss().discriminator(REAL, FAKE) == pytest.approx(0.0 - 1.0)
    assert WassersteinLoss().generator(FAKE) == pytest.approx(0.0)
    assert HingeLoss().discriminator(REAL, FAKE) == pytest.approx((0 + 1) / 2 + (0 + 2) / 2)


@pytest.mark.parametrize(
    ("loss", "on_fakes"),
    [
        (NonSaturatingLoss(), float(-(1 - torch.sigmoid(FAKE)).log().mean())),
        (LeastSquaresLoss(), 0.5 * (1 + 1) / 2),
        (WassersteinLoss(), 0.0),
        (HingeLoss(), (0 + 2) / 2),
    ],
    ids=lambda x: type(x).__name__ if not isinstance(x, float) else "",
)
def test_the_loss_on_negatives_is_ds_loss_without_its_real_part(loss, on_fakes):
    """`fake_loss` is D's objective on generated samples alone (GAN-CLS adds it for real
    samples with wrong labels): D's loss moves by exactly its change when the fakes do."""
    assert float(loss.fake_loss(FAKE)) == pytest.approx(on_fakes, rel=1e-5)
    other = torch.tensor([0.5, -3.0])
    moved = loss.discriminator(REAL, other) - loss.discriminator(REAL, FAKE)
    assert float(moved) == pytest.approx(float(loss.fake_loss(other) - loss.fake_loss(FAKE)))


class LinearCritic(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x):
        return x @ self.weight


@pytest.mark.parametrize("norm, expected", [(1.0, 0.0), (3.0, 4.0)])
def test_gradient_penalty_of_linear_critic(norm, expected):
    # A linear critic has gradient w everywhere, so the penalty is (||w|| - 1)^2.
    critic = LinearCritic(torch.tensor([0.6, 0.8]) * norm)
    real, fake = torch.randn(64, 2), torch.randn(64, 2)
    assert float(gradient_penalty(critic, real, fake)) == pytest.approx(expected, abs=1e-5)
