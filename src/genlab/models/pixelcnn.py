"""PixelCNN as a LightningModule: an exact likelihood, trained by maximum likelihood.

log p(x) = sum_i log p(x_i | x_<i), each factor read off one masked forward pass, so the
test negative log-likelihood is exact (in nats per image, and in bits per dimension).
Sampling is the slow part: one forward pass per pixel.
"""

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from genlab.errors import check_num_classes, require
from genlab.models.base import check_lr, check_optimizer, evaluating
from genlab.models.likelihood import (
    LikelihoodModel,
    bernoulli_nll,
    bits_per_dim,
    per_image,
    uniform_noise,
)


class PixelCNN(LikelihoodModel):
    loss_charts = {"held-out and training NLL": ["loss/nll", "eval/nll"]}

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[[Iterable[nn.Parameter]], Optimizer],
        shape: Iterable[int],
        num_classes: int = 0,
        lr: float = 1e-3,
        lr_scheduler: Callable[[Optimizer], LRScheduler] | None = None,
        sample_batch_size: int = 64,
    ) -> None:
        super().__init__()
        self.lr = check_lr("lr", lr)
        check_optimizer(optimizer, "model.optimizer", lr="model.lr")
        check_num_classes(num_classes)
        self.shape = tuple(shape)
        require(
            len(self.shape) == 3,
            f"{type(self).__name__} models images C x H x W, not data of shape "
            f"{list(self.shape)}; e.g. data=mnist_mini",
        )
        require(
            net.channels == self.shape[0],
            f"the net has {net.channels} channels but the data {self.shape[0]}; leave model.net.channels at ${{data.channels}}",
        )
        self.save_hyperparameters(ignore=["net", "optimizer", "lr_scheduler"], logger=False)
        self.net = net
        self.levels = net.levels
        self.num_classes = num_classes
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.sample_batch_size = max(1, sample_batch_size)

    def sample_shape(self) -> tuple[int, ...]:
        return self.shape  # no need to sample H x W passes to know it

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(x, labels)

    def to_levels(self, x: Tensor) -> Tensor:
        """[-1, 1] -> the integer levels 0..255."""
        return ((x + 1) * 127.5).round().clamp(0, 255).long()

    def from_levels(self, levels: Tensor) -> Tensor:
        return levels.float() / 127.5 - 1

    def nll(self, x: Tensor, labels: Tensor | None) -> Tensor:
        """-log p(x) per image, in nats (exact)."""
        logits = self.net(x, labels)
        if self.levels == 2:
            return bernoulli_nll(logits, x)
        # logits: N x C x levels x H x W; cross_entropy wants the classes in dimension 1
        nll = F.cross_entropy(logits.transpose(1, 2), self.to_levels(x), reduction="none")
        return per_image(nll, x)

    def step_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, labels = batch
        labels = labels if self.conditional else None
        if self.levels == 2:
            self.check_binary_once(x, "or model.net.levels=256 for grey levels")
        loss = self.nll(x, labels).mean()
        self.guard_values = {"loss/nll": loss.detach()}
        if self.logging_this_step():
            nll = loss.detach()
            self.log_step_metrics({"loss/nll": nll, "train/bpd": bits_per_dim(nll, x[0].numel())})
        return loss

    @torch.no_grad()
    def held_out_metrics(
        self, x: Tensor, labels: Tensor | None, seed: int = 0, batch_size: int = 100
    ) -> dict[str, float]:
        """The exact held-out NLL in nats per image and in bits per dimension."""
        labels = labels if self.conditional else None
        total = 0.0
        with evaluating(self):
            for start in range(0, len(x), batch_size):
                xb = x[start : start + batch_size].to(self.device)
                lb = None if labels is None else labels[start : start + batch_size].to(self.device)
                total += float(self.nll(xb, lb).double().sum())
        nll = total / len(x)
        return {"nll": nll, "bpd": bits_per_dim(nll, x[0].numel())}

    @torch.no_grad()
    def sample(
        self, n: int, labels: Tensor | int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Pixel by pixel in raster order: one forward pass per pixel (H x W of them), in
        chunks of `sample_batch_size` images (larger batches fall out of the CPU caches)."""
        labels = self.resolve_labels(n, labels)
        chunks = []
        with evaluating(self):
            for start in range(0, n, self.sample_batch_size):
                stop = min(n, start + self.sample_batch_size)
                chunk_labels = None if labels is None else labels[start:stop]
                chunks.append(self.sample_chunk(stop - start, chunk_labels, generator))
        return torch.cat(chunks)

    def sample_chunk(self, n: int, labels: Tensor | None, generator) -> Tensor:
        channels, height, width = self.shape
        x = torch.zeros((n, channels, height, width), device=self.device)
        for i in range(height):
            for j in range(width):
                # rows below i cannot reach row i through the masks: leave them out
                logits = self.net(x[:, :, : i + 1], labels)[..., i, j]  # N x C (x levels)
                x[:, :, i, j] = self.draw(logits, generator)
        return x

    def draw(self, logits: Tensor, generator: torch.Generator | None) -> Tensor:
        """One pixel of every image from its logits N x C (x levels): values in [-1, 1]."""
        u = uniform_noise(tuple(logits.shape[:2]), generator, self.device)
        if self.levels == 2:
            return (u < torch.sigmoid(logits)).float() * 2 - 1
        cdf = torch.softmax(logits, dim=-1).cumsum(-1)
        level = (cdf < u[..., None]).sum(-1).clamp(max=self.levels - 1)
        return self.from_levels(level)
