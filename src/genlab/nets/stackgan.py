"""StackGAN's nets (Zhang et al. 2017), conditioned on a class instead of a sentence.

- `ConditioningAugmentation`: the class embedded as (mu, log sigma) of a Gaussian, and the
  condition c = mu + sigma * eps drawn from it (the model adds KL(N(mu, sigma^2) || N(0, I))
  to G's loss). With `augment=False` c is a plain, deterministic class embedding.
- `StageOneGenerator`: G1(z, c), DCGAN's generator at half the image size (14 x 14 for
  28-pixel images): the coarse shape of the object.
- `StageTwoGenerator`: G2(stage-I image, c), the full-size image: the stage-I image encoded
  (one stride-2 convolution), joined with c replicated over the map, residual blocks,
  then two nearest-neighbour upsamplings with 3 x 3 convolutions and tanh. With `skip`
  (genlab's addition, not the paper's) the result is added to stage I's image upsampled,
  before the tanh: G2 starts out returning stage I's image and learns a correction of it
  (the configs say what it measured against the paper's G2).
- The discriminators are DCGAN's with the class entering by projection
  (`stage_one_discriminator` at the stage-I size, `DCGANDiscriminator` at full size).

Each generator has its own conditioning augmentation (the paper's stage II recomputes c
with other weights) and returns a `StageOutput`.
"""

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import check_num_classes, require
from genlab.nets.conv import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights
from genlab.nets.resnet import ResidualBlock


class StageOutput(NamedTuple):
    """A stage's images, and the Gaussian its condition was drawn from (None without
    conditioning augmentation)."""

    image: Tensor
    mu: Tensor | None
    log_sigma: Tensor | None


def check_stackgan_setup(image_shape: Sequence[int], num_classes: int | None) -> None:
    """StackGAN draws labelled images: refuse points, unlabelled data and odd sizes."""
    require(
        num_classes is None or num_classes > 0,
        "StackGAN is class-conditional: set model.num_classes='${data.num_classes}' and use "
        "labelled images (e.g. data=mnist_mini)",
    )
    require(
        num_classes is not None,
        "StackGAN needs labelled images, but the data has no known classes: use data=mnist_mini, "
        "or a data.root with one folder per class and data.num_classes set",
    )
    check_num_classes(num_classes)
    require(
        len(image_shape) == 3,
        f"StackGAN draws images, but the data holds points of shape {list(image_shape)}; "
        f"use image data (e.g. data=mnist_mini)",
    )
    size = image_shape[-1]
    require(
        size % 4 == 0 and size >= 16,
        f"StackGAN's stage II upsamples stage I's images twice from a quarter of the size: "
        f"data.image_size must be a multiple of 4, at least 16 (got {size}); use 28, 32 or 64",
    )


def stage_one_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """The coarse images of stage I: half the size of the data's (28 -> 14)."""
    channels, height, width = image_shape
    return channels, height // 2, width // 2


class ConditioningAugmentation(nn.Module):
    """class -> (mu, log sigma) -> c = mu + sigma * eps; or, without `augment`, class -> c."""

    def __init__(self, num_classes: int, cond_dim: int, augment: bool = True) -> None:
        super().__init__()
        require(cond_dim >= 1, f"model.cond_dim must be >= 1 (got {cond_dim})")
        self.cond_dim = cond_dim
        self.augment = augment
        self.embed = nn.Embedding(num_classes, 2 * cond_dim if augment else cond_dim)
        if augment:  # sigma starts at 1, not at exp of a random number
            with torch.no_grad():
                self.embed.weight[:, cond_dim:].zero_()

    def forward(self, labels: Tensor, eps: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(c, mu, log sigma) for `labels`, with standard normal `eps` (n x cond_dim)."""
        if not self.augment:
            return self.embed(labels), None, None
        mu, log_sigma = self.embed(labels).chunk(2, dim=1)
        return mu + log_sigma.exp() * eps, mu, log_sigma


class StageOneGenerator(nn.Module):
    """(z, class, eps) -> a coarse image of half the data's size."""

    def __init__(
        self,
        latent_dim: int,
        image_shape: Sequence[int],
        num_classes: int,
        cond_dim: int = 16,
        augment: bool = True,
        width: int = 32,
    ) -> None:
        super().__init__()
        check_stackgan_setup(image_shape, num_classes)
        self.conditioning = ConditioningAugmentation(num_classes, cond_dim, augment)
        self.net = DCGANGenerator(latent_dim + cond_dim, stage_one_shape(image_shape), width=width)

    def forward(self, z: Tensor, labels: Tensor, eps: Tensor) -> StageOutput:
        c, mu, log_sigma = self.conditioning(labels, eps)
        return StageOutput(self.net(torch.cat([z, c], dim=1)), mu, log_sigma)


def conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class StageTwoGenerator(nn.Module):
    """(stage-I image, class, eps) -> the full-size image."""

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int,
        cond_dim: int = 16,
        augment: bool = True,
        width: int = 32,
        n_blocks: int = 2,
        skip: bool = True,
    ) -> None:
        super().__init__()
        check_stackgan_setup(image_shape, num_classes)
        require(n_blocks >= 0, f"model.generator2.n_blocks must be >= 0 (got {n_blocks})")
        channels, size, _ = image_shape
        self.conditioning = ConditioningAugmentation(num_classes, cond_dim, augment)
        low = size // 4  # the stage-I image (size / 2) encoded at half its size
        self.encode = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
        )
        self.join = nn.Sequential(*conv_block(2 * width + cond_dim, 2 * width))
        self.residual = nn.Sequential(
            *(ResidualBlock(2 * width, low, "batch") for _ in range(n_blocks))
        )
        self.upsample = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            *conv_block(2 * width, width),
            nn.Upsample(scale_factor=2, mode="nearest"),
            *conv_block(width, width // 2),
            nn.Conv2d(width // 2, channels, 3, padding=1),
        )
        self.size = size
        self.skip = skip
        init_dcgan_weights(self)  # convolutions and norms; the embedding keeps its own

    def forward(self, stage_one: Tensor, labels: Tensor, eps: Tensor) -> StageOutput:
        c, mu, log_sigma = self.conditioning(labels, eps)
        h = self.encode(stage_one)
        c_map = c[:, :, None, None].expand(-1, -1, *h.shape[2:])
        h = self.upsample(self.residual(self.join(torch.cat([h, c_map], dim=1))))
        if self.skip:  # a correction of stage I's image, in tanh's pre-activation
            h = h + upsampled_logits(stage_one, self.size)
        return StageOutput(torch.tanh(h), mu, log_sigma)


def upsampled_logits(images: Tensor, size: int) -> Tensor:
    """atanh of images in [-1, 1] (clamped to +-0.999: +-3.8), upsampled bilinearly."""
    logits = torch.atanh(images.clamp(-0.999, 0.999))
    return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)


def stage_one_discriminator(
    image_shape: Sequence[int], num_classes: int, width: int = 32, norm: str = "batch"
) -> DCGANDiscriminator:
    """D1: DCGAN's discriminator on stage-I images (the data downsampled to half its size),
    the class entering by projection."""
    check_stackgan_setup(image_shape, num_classes)
    return DCGANDiscriminator(stage_one_shape(image_shape), num_classes, width=width, norm=norm)
