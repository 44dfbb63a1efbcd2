"""UNIT's nets (Liu, Breuel & Kautz 2017): two autoencoders, one per image domain, that meet
in one latent space, and a discriminator on that space.

Each domain has its own encoder (a 7x7 convolution, `n_down` stride-2 downsamplings,
residual blocks) and its own decoder (residual blocks, `n_down` nearest-neighbour
upsamplings with 5x5 convolutions, a 7x7 convolution to tanh). The last `share_layers`
residual blocks of the encoders are one module used by both, and so are the first
`share_layers` blocks of the decoders (the weight sharing of CoGAN and UNIT): the layers
that carry high-level content are the same for both domains, so a code means the same in
both. `share_layers=0` gives two independent autoencoders of the same shape.

The code is a feature map (channels `width * 2**n_down`, at 1/2**n_down of the image size):
the mean of a Gaussian of unit variance, as in UNIT's VAE.
"""

from torch import Tensor, nn

from genlab.errors import require
from genlab.nets.conv import normalization
from genlab.nets.resnet import ResidualBlock

DOMAINS = ("a", "b")


def residual_blocks(n: int, channels: int, size: int, norm: str) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(channels, size, norm) for _ in range(n)))


class DomainEncoder(nn.Sequential):
    """An image -> the domain's own part of the code (before the shared blocks)."""

    def __init__(
        self, channels: int, image_size: int, width: int, n_down: int, n_res: int, norm: str
    ) -> None:
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, width, 7),
            normalization(norm, width, image_size),
            nn.ReLU(),
        ]
        size = image_size
        for step in range(n_down):
            size //= 2
            in_width, out_width = width * 2**step, width * 2 ** (step + 1)
            layers += [
                nn.Conv2d(in_width, out_width, 4, stride=2, padding=1),
                normalization(norm, out_width, size),
                nn.ReLU(),
            ]
        layers.append(residual_blocks(n_res, width * 2**n_down, size, norm))
        super().__init__(*layers)


class DomainDecoder(nn.Sequential):
    """The code (after the shared blocks) -> an image of the domain, in [-1, 1]."""

    def __init__(
        self, channels: int, image_size: int, width: int, n_down: int, n_res: int, norm: str
    ) -> None:
        size = image_size // 2**n_down
        layers: list[nn.Module] = [residual_blocks(n_res, width * 2**n_down, size, norm)]
        for step in range(n_down, 0, -1):
            size *= 2
            in_width, out_width = width * 2**step, width * 2 ** (step - 1)
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(in_width, out_width, 5, padding=2),
                # UNIT's decoders use layer norm here: instance norm would wash out the
                # global contrast that a code's translation must carry
                normalization("layer" if norm == "instance" else norm, out_width, size),
                nn.ReLU(),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
        super().__init__(*layers)


class CoupledAutoencoders(nn.Module):
    """Encoders and decoders of domains A and B with `share_layers` residual blocks in
    common at the code's side: `encode(x, domain)` and `decode(code, domain)`."""

    def __init__(
        self,
        channels_a: int,
        channels_b: int,
        image_size: int,
        width: int = 32,
        n_down: int = 2,
        n_res: int = 3,
        share_layers: int = 1,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        require(n_down >= 1 and width >= 1, "model.autoencoders: n_down and width must be >= 1")
        require(
            image_size % 2**n_down == 0 and image_size // 2**n_down >= 2,
            f"UNIT's autoencoders halve the image {n_down} times: they need an image size "
            f"divisible by {2**n_down} (got {image_size}); set data.image_size=32",
        )
        require(
            0 <= share_layers <= n_res,
            f"model.share_layers must lie in 0..{n_res}, the residual blocks of each encoder "
            f"and decoder (model.autoencoders.n_res); got {share_layers}",
        )
        self.share_layers = share_layers
        self.code_channels = width * 2**n_down
        self.code_size = image_size // 2**n_down
        own = n_res - share_layers
        sizes = (width, n_down, own, norm)
        self.encoders = nn.ModuleDict(
            {"a": DomainEncoder(channels_a, image_size, *sizes),
             "b": DomainEncoder(channels_b, image_size, *sizes)}
        )  # fmt: skip
        self.decoders = nn.ModuleDict(
            {"a": DomainDecoder(channels_a, image_size, *sizes),
             "b": DomainDecoder(channels_b, image_size, *sizes)}
        )  # fmt: skip
        self.shared_encoder = residual_blocks(
            share_layers, self.code_channels, self.code_size, norm
        )
        self.shared_decoder = residual_blocks(
            share_layers, self.code_channels, self.code_size, norm
        )

    def encode(self, x: Tensor, domain: str) -> Tensor:
        """The code's mean for images of `domain` ('a' or 'b')."""
        return self.shared_encoder(self.encoders[domain](x))

    def decode(self, code: Tensor, domain: str) -> Tensor:
        return self.decoders[domain](self.shared_decoder(code))

    def translator(self, direction: str) -> nn.Module:
        """A module translating images along `direction` ('ab': A -> B, 'ba': B -> A)."""
        return Translation(self, direction[0], direction[1])


class Translation(nn.Module):
    """x of the source domain -> its code's mean -> the target domain's decoder."""

    def __init__(self, autoencoders: CoupledAutoencoders, source: str, target: str) -> None:
        super().__init__()
        require(source in DOMAINS and target in DOMAINS, f"no such direction {source}{target}")
        self.autoencoders = autoencoders
        self.source, self.target = source, target
        # in the autoencoders' mode, so that putting it back after eval mode puts them back
        # as they were (`.train()` would set theirs too)
        self.training = autoencoders.training

    def forward(self, x: Tensor) -> Tensor:
        return self.autoencoders.decode(self.autoencoders.encode(x, self.source), self.target)


class LatentDiscriminator(nn.Module):
    """Tells the codes of domain A (positive) from those of B, one score per code position:
    the encoders learn to make them indistinguishable (one latent space for both domains)."""

    def __init__(self, code_width: int, n_down: int, width: int = 64) -> None:
        """`code_width` and `n_down` as the autoencoders': codes of code_width * 2**n_down
        channels."""
        super().__init__()
        self.channels = code_width * 2**n_down
        self.net = nn.Sequential(
            nn.Conv2d(self.channels, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, code: Tensor) -> Tensor:
        return self.net(code)
