"""CycleGAN's ResNet generator (Johnson et al. 2016; Zhu et al. 2017).

A 7x7 convolution, two stride-2 downsamplings, `n_blocks` residual blocks at 1/4 of the
resolution, two stride-2 upsamplings and a 7x7 convolution to tanh. Reflection padding
keeps the borders free of artefacts; instance norm is the paper's choice. Any image size
divisible by 4.
"""

from torch import Tensor, nn

from genlab.errors import require
from genlab.nets.conv import normalization


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, size: int, norm: str, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            normalization(norm, channels, size),
            nn.ReLU(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            normalization(norm, channels, size),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResNetGenerator(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        image_size: int,
        width: int = 64,
        n_blocks: int = 6,
        norm: str = "instance",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        require(
            image_size % 4 == 0 and image_size >= 8,
            f"the ResNet generator needs an image size divisible by 4 (got {image_size}); "
            f"set data.image_size=32",
        )
        require(n_blocks >= 0, f"n_blocks must be >= 0 (got {n_blocks})")
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, width, 7),
            normalization(norm, width, image_size),
            nn.ReLU(),
        ]
        channels, size = width, image_size
        for _ in range(2):  # downsample to 1/4
            size //= 2
            layers += [
                nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1),
                normalization(norm, channels * 2, size),
                nn.ReLU(),
            ]
            channels *= 2
        layers += [ResidualBlock(channels, size, norm, dropout) for _ in range(n_blocks)]
        for _ in range(2):  # and back up
            size *= 2
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 3, 2, padding=1, output_padding=1),
                normalization(norm, channels // 2, size),
                nn.ReLU(),
            ]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
