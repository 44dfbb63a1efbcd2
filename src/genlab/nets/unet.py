"""pix2pix's U-Net generator (Isola et al. 2017).

An encoder of stride-2 4x4 convolutions down to 1 x 1, and a decoder of stride-2 4x4
transposed convolutions back up, with a skip connection from each encoder level to the
decoder level of the same size. Widths double from `width` up to 8 x `width`; the decoder's
8 x `width` levels (below the innermost) use dropout as the generator's noise, as in the
paper. Images of 2^k pixels (16, 32, 64, 128, 256), any number of channels in and out.
"""

from math import log2

import torch
from torch import Tensor, nn

from genlab.errors import require
from genlab.nets.conv import normalization


def check_power_of_two(image_size: int, net: str) -> int:
    """The number of stride-2 levels from `image_size` down to 1 pixel."""
    depth = int(round(log2(max(image_size, 1))))
    require(
        image_size >= 16 and 2**depth == image_size,
        f"the {net} takes images of 16, 32, 64, 128 or 256 pixels (got {image_size}); "
        f"set data.image_size=32",
    )
    return depth


class UNetGenerator(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        image_size: int,
        width: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        depth = check_power_of_two(image_size, "U-Net")
        widths = [width * min(2**level, 8) for level in range(depth)]
        sizes = [image_size // 2 ** (level + 1) for level in range(depth)]  # after each down
        bias = norm != "batch"  # BatchNorm's shift makes a conv bias redundant

        self.downs = nn.ModuleList()
        previous = in_channels
        for level, (channels, size) in enumerate(zip(widths, sizes, strict=True)):
            inner = 0 < level < depth - 1  # neither the first nor the 1 x 1 level is normalised
            self.downs.append(
                nn.Sequential(
                    nn.LeakyReLU(0.2) if level > 0 else nn.Identity(),
                    nn.Conv2d(previous, channels, 4, stride=2, padding=1, bias=bias or not inner),
                    normalization(norm, channels, size) if inner else nn.Identity(),
                )
            )
            previous = channels

        self.ups = nn.ModuleList()
        for level in reversed(range(depth)):
            # the innermost level takes the bottleneck alone, the others [decoder, skip]
            in_width = widths[level] * (1 if level == depth - 1 else 2)
            last = level == 0
            out_width = out_channels if last else widths[level - 1]
            size = image_size // 2**level
            noisy = dropout > 0 and widths[level] == 8 * width and 0 < level < depth - 1
            self.ups.append(
                nn.Sequential(
                    nn.ReLU(),
                    nn.ConvTranspose2d(in_width, out_width, 4, 2, 1, bias=bias or last),
                    nn.Tanh() if last else normalization(norm, out_width, size),
                    nn.Dropout(dropout) if noisy else nn.Identity(),
                )
            )

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = self.ups[0](skips.pop())
        for up in self.ups[1:]:
            x = up(torch.cat([x, skips.pop()], dim=1))
        return x
