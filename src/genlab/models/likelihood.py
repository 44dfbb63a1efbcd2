"""What the explicit-density models (VAE family, PixelCNN) share: pixel likelihoods in nats
and the conversions that reporting needs. Images live in [-1, 1]; binary images in {-1, 1}."""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import DataError, require
from genlab.models.base import SamplingModule, make_optimizer


def check_binary(x: Tensor, fix: str) -> None:
    """Bernoulli likelihoods are only likelihoods on binary data."""
    require(
        bool(((x == 1) | (x == -1)).all()),
        f"this model's Bernoulli likelihood needs binary images: set data.binarize=true ({fix})",
        DataError,
    )


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """-log p(x) per image in nats, for per-pixel logits and images in {-1, 1} (or grey levels
    in [-1, 1], where it is the usual BCE reconstruction error, not a likelihood).

    `logits` may carry leading sample dimensions (k x N x C x H x W against N images): each
    sample is scored against its image by broadcasting, without k copies of the images."""
    target = ((x + 1) / 2).expand_as(logits)
    return per_image(F.binary_cross_entropy_with_logits(logits, target, reduction="none"), x)


def per_image(values: Tensor, x: Tensor) -> Tensor:
    """Per-pixel `values` (shaped like the images x, with any leading dimensions) summed
    over each image's pixels."""
    return values.sum(dim=tuple(range(-(x.dim() - 1), 0)))


def bits_per_dim(nll_nats: Tensor | float, dims: int) -> Tensor | float:
    """Nats per image -> bits per dimension."""
    return nll_nats / (dims * math.log(2))


def uniform_noise(shape: tuple[int, ...], generator: torch.Generator | None, device) -> Tensor:
    """U(0, 1) noise, drawn on the CPU from `generator` when given (same draw on any device)."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator).to(device)


class LikelihoodModel(SamplingModule):
    """The VAE family and PixelCNN: one optimizer (`self.optimizer`, a factory given the
    learning rate `self.lr`) with an optional LR schedule (`self.lr_scheduler`, stepped once
    per epoch).

    The update is written out, as in the GANs (manual optimization): Lightning's automatic
    loop (closures, more hooks per step) cost a third of a small VAE's step on a CPU
    (bench/overhead.py). Subclasses define `step_loss(batch)`.
    """

    optimizer = None
    lr: float = 1e-3
    lr_scheduler = None
    data_checked = False

    @property
    def automatic_optimization(self) -> bool:
        return False

    def step_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.optimize(self.step_loss(batch), self.optimizers())

    def configure_optimizers(self):
        optimizer = make_optimizer(self.optimizer, self.parameters(), self.lr)
        if self.lr_scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler(optimizer)}

    def check_binary_once(self, x: Tensor, fix: str) -> None:
        """A Bernoulli likelihood needs binary data: look at the first batch only."""
        if not self.data_checked:
            check_binary(x, fix)
            self.data_checked = True
