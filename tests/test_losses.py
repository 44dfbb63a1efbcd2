"""The adversarial losses and the gradient penalties, against values worked out by hand."""

import pytest
import torch
from torch import nn

from genlab.losses import (
    HingeLoss,
    LeastSquaresLoss,
    NonSaturatingLoss,
    WassersteinLoss,
    gradient_penalty,
    r1_penalty,
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


def test_r1_penalty_is_the_squared_slope_on_real_samples_per_pack():
    """D scores pairs of 2-D points with w = (1, 2, 3, 4): its slope on a pack is w, so the
    penalty is |w|^2 = 30 whatever the points; taken per point it would be (5 + 25) / 2."""
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)

    def packed_critic(x):
        return x.reshape(-1, 4) @ w

    real = torch.randn(8, 2, dtype=torch.float64)
    assert float(r1_penalty(packed_critic, real, group=2)) == pytest.approx(30.0)
    assert float(r1_penalty(packed_critic, real)) == pytest.approx(15.0)
    # the penalty reaches D's weights (it is a loss D can lower)
    w.requires_grad_(True)
    (grad,) = torch.autograd.grad(r1_penalty(packed_critic, real, group=2), w)
    assert torch.allclose(grad, 2 * w.detach())
