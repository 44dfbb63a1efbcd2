"""Adversarial losses and the gradient penalty.

Each loss turns the discriminator's raw scores (logits for BCE, critic values for the
Wasserstein loss) into the two objectives of the game. Pick one with Hydra's `_target_`.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


class AdversarialLoss:
    """The objectives of D and G, given D's raw scores on real and generated samples."""

    # D calls a sample real when its score exceeds this; None where scores are not decisions
    decision_threshold: float | None = 0.0

    def discriminator(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        raise NotImplementedError

    def generator(self, fake_scores: Tensor) -> Tensor:
        raise NotImplementedError

    def fake_loss(self, fake_scores: Tensor) -> Tensor:
        """D's objective on negatives alone: its part of `discriminator` for `fake_scores`."""
        raise NotImplementedError

    def readout(self, scores: Tensor) -> Tensor:
        """What to log as D(x): a probability for BCE, the raw score otherwise."""
        return scores.mean()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NonSaturatingLoss(AdversarialLoss):
    """The original GAN loss with the non-saturating generator objective -log D(G(z))."""

    def discriminator(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        real = F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
        fake = F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
        return real + fake

    def generator(self, fake_scores: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))

    def fake_loss(self, fake_scores: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))

    def readout(self, scores: Tensor) -> Tensor:
        return torch.sigmoid(scores).mean()


class LeastSquaresLoss(AdversarialLoss):
    """LSGAN (Mao et al. 2017) with targets a=0 for fake, b=1 for real, c=1 for G."""

    decision_threshold = 0.5

    def discriminator(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return 0.5 * ((real_scores - 1).pow(2).mean() + fake_scores.pow(2).mean())

    def generator(self, fake_scores: Tensor) -> Tensor:
        return 0.5 * (fake_scores - 1).pow(2).mean()

    def fake_loss(self, fake_scores: Tensor) -> Tensor:
        return 0.5 * fake_scores.pow(2).mean()


class WassersteinLoss(AdversarialLoss):
    """The critic maximises E[D(real)] - E[D(fake)]; Lipschitz-ness comes from clipping or GP."""

    decision_threshold = None

    def discriminator(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return fake_scores.mean() - real_scores.mean()

    def generator(self, fake_scores: Tensor) -> Tensor:
        return -fake_scores.mean()

    def fake_loss(self, fake_scores: Tensor) -> Tensor:
        return fake_scores.mean()


class HingeLoss(AdversarialLoss):
    """The hinge loss of SAGAN / BigGAN."""

    def discriminator(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()

    def generator(self, fake_scores: Tensor) -> Tensor:
        return -fake_scores.mean()

    def fake_loss(self, fake_scores: Tensor) -> Tensor:
        return F.relu(1 + fake_scores).mean()


def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, group: int = 1
) -> Tensor:
    """WGAN-GP's two-sided penalty E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates
    x_hat of real and generated samples; `critic` maps samples to one score each, or, with
    `group=m`, each run of m consecutive samples to one score (a packed D): then the m
    samples share one interpolation weight and one norm, that of the whole pack."""
    n = real.shape[0]
    alpha_shape = (n // group,) + (1,) * (real.dim() - 1)
    alpha = torch.rand(alpha_shape, device=real.device, dtype=real.dtype)
    alpha = alpha.repeat_interleave(group, dim=0)
    interpolates = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(interpolates)
    (grads,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
    return (grads.reshape(n // group, -1).norm(2, dim=1) - 1).pow(2).mean()


def r1_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, group: int = 1) -> Tensor:
    """R1's zero-centred penalty E[||grad_x D(x)||_2^2] on real samples (Mescheder et al.
    2018): D pays for any slope on the data itself. With `group=m` (a packed D) each run
    of m consecutive samples has one score, and the squared norm is that of the whole pack."""
    real = real.detach().requires_grad_(True)
    (grads,) = torch.autograd.grad(critic(real).sum(), real, create_graph=True)
    return grads.reshape(real.shape[0] // group, -1).pow(2).sum(dim=1).mean()


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over the latent dimensions."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
