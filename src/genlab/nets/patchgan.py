"""The PatchGAN discriminator of pix2pix and CycleGAN.

A few stride-2 4x4 convolutions and two stride-1 ones give one logit per overlapping
patch instead of one per image: D judges local texture and leaves global structure to
the L1 or cycle loss. With `n_layers=3` each logit sees a 70 x 70 patch; `n_layers=2`
(34 x 34) suits 32-pixel images. pix2pix's D sees the input and the output stacked on
the channel axis (`in_channels` = both); CycleGAN's sees one image.
"""

from collections.abc import Sequence

from torch import Tensor, nn

from genlab.errors import require
from genlab.nets.conv import normalization


class PatchDiscriminator(nn.Module):
    def __init__(
        self,
        in_channels: int | Sequence[int],
        image_size: int,
        width: int = 64,
        n_layers: int = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if not isinstance(in_channels, int):  # pix2pix: the input and output images, stacked
            in_channels = sum(in_channels)
        require(n_layers >= 1, f"the PatchGAN needs n_layers >= 1 (got {n_layers})")
        out_size = image_size // 2**n_layers - 2
        require(
            out_size >= 1,
            f"a PatchGAN of {n_layers} layers needs images of at least {2**n_layers * 3} "
            f"pixels (got {image_size}); lower model.discriminator.n_layers",
        )
        bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        channels, size = width, image_size // 2
        for layer in range(1, n_layers + 1):
            stride = 2 if layer < n_layers else 1
            out_channels = width * min(2**layer, 8)
            size = size // 2 if stride == 2 else size - 1
            layers += [
                nn.Conv2d(channels, out_channels, 4, stride=stride, padding=1, bias=bias),
                normalization(norm, out_channels, size),
                nn.LeakyReLU(0.2),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """One logit per patch: N x 1 x H' x W'."""
        return self.net(x)
