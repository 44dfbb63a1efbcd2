"""PixelCNN's network (van den Oord et al. 2016): masked convolutions, so that the output at
pixel i (raster order) sees only the pixels before i.

The first layer uses mask A (the centre pixel hidden), the later ones mask B (the centre
allowed: by then it holds only information from earlier pixels). The channels of one pixel
are predicted together from the earlier pixels, not one from another. Gated blocks replace
ReLU by tanh(a) * sigmoid(b) (the gated PixelCNN's activation, without its two stacks, so
the blind spot of the plain PixelCNN remains). A class label adds a learned bias to every
block.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import check_num_classes, require


class MaskedConv2d(nn.Conv2d):
    """A same-size convolution whose kernel sees the rows above and the pixels to the left
    (and the centre too for mask B)."""

    def __init__(self, mask_type: str, in_channels: int, out_channels: int, kernel_size: int):
        require(mask_type in ("A", "B"), f"mask_type must be A or B (got {mask_type!r})")
        require(kernel_size % 2 == 1, f"masked convolutions need an odd kernel (got {kernel_size})")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.ones_like(self.weight)
        centre = kernel_size // 2
        mask[:, :, centre, centre + (mask_type == "B") :] = 0
        mask[:, :, centre + 1 :, :] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class MaskedBlock(nn.Module):
    """A residual block: (gated or ReLU) masked-B convolution and a 1x1 convolution."""

    def __init__(self, channels: int, kernel_size: int, gated: bool, num_classes: int) -> None:
        super().__init__()
        self.gated = gated
        self.conv = MaskedConv2d("B", channels, channels * (2 if gated else 1), kernel_size)
        self.out = nn.Conv2d(channels, channels, 1)
        self.embed = (
            nn.Embedding(num_classes, channels * (2 if gated else 1)) if num_classes else None
        )

    def forward(self, x: Tensor, labels: Tensor | None) -> Tensor:
        h = self.conv(F.relu(x) if not self.gated else x)
        if self.embed is not None:
            h = h + self.embed(labels)[:, :, None, None]
        if self.gated:
            a, b = h.chunk(2, dim=1)
            h = torch.tanh(a) * torch.sigmoid(b)
        else:
            h = F.relu(h)
        return x + self.out(h)


def check_levels(levels: int) -> None:
    require(levels in (2, 256), f"model.net.levels must be 2 (binary) or 256 (got {levels})")


def logits_head(hidden: int, channels: int, levels: int) -> nn.Sequential:
    """Features -> per-pixel logits through 1x1 convolutions: one logit per channel for
    binary pixels, `levels` of them otherwise (see `per_pixel`)."""
    out_per_channel = 1 if levels == 2 else levels
    return nn.Sequential(
        nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
        nn.Conv2d(hidden, channels * out_per_channel, 1),
    )  # fmt: skip


def per_pixel(logits: Tensor, channels: int, levels: int) -> Tensor:
    """The head's output as logits C x H x W (binary pixels) or C x levels x H x W."""
    if levels == 2:
        return logits
    n, _, height, width = logits.shape
    return logits.reshape(n, channels, levels, height, width)


class PixelCNNNet(nn.Module):
    """Images C x H x W in [-1, 1] -> per-pixel logits: C x H x W for binary pixels
    (`levels=2`), C x levels x H x W otherwise."""

    def __init__(
        self,
        channels: int,
        levels: int = 2,
        hidden: int = 64,
        num_blocks: int = 7,
        kernel_size: int = 3,
        first_kernel_size: int = 7,
        gated: bool = False,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_levels(levels)
        require(hidden >= 1 and num_blocks >= 0, "model.net.hidden must be >= 1, num_blocks >= 0")
        check_num_classes(num_classes)
        self.channels = channels
        self.levels = levels
        self.num_classes = num_classes
        self.first = MaskedConv2d("A", channels, hidden, first_kernel_size)
        self.embed = nn.Embedding(num_classes, hidden) if num_classes else None
        self.blocks = nn.ModuleList(
            MaskedBlock(hidden, kernel_size, gated, num_classes) for _ in range(num_blocks)
        )
        self.head = logits_head(hidden, channels, levels)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.num_classes:
            require(labels is not None, "this PixelCNN is class-conditional: pass labels")
        h = self.first(x)
        if self.embed is not None:
            h = h + self.embed(labels)[:, :, None, None]
        for block in self.blocks:
            h = block(h, labels)
        return per_pixel(self.head(h), self.channels, self.levels)
