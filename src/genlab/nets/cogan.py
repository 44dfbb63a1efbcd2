"""CoGAN's coupled nets (Liu & Tuzel 2016): two DCGAN-style generators that share their
first layers, and two discriminators that share their last layers.

The generators' first layers turn z into high-level structure (which digit, its pose and
stroke), their last layers render it in a domain's pixels; the discriminators mirror that,
reading a domain's pixels in their own first layers and judging structure in the shared
ones. A shared layer is one module held once and run by both domains, so its weights are
counted and updated once; `shared_layers=0` leaves two independent GANs.

G (32 x 32 images): z -> 4 x 4 (linear), 8 x 8, 16 x 16, 32 x 32 (transposed convolutions),
BatchNorm and ReLU inside, tanh at the output: 4 layers. D: 16 x 16, 8 x 8, 4 x 4 (stride-2
convolutions, LeakyReLU(0.2), normalised inner layers), then a linear score: 4 layers.
Each domain keeps at least its generator's last layer and its discriminator's first.
"""

from collections.abc import Sequence

from torch import Tensor, nn

from genlab.errors import require
from genlab.nets.conv import (
    NORMS,
    check_image_shape,
    init_dcgan_weights,
    normalization,
    size_chain,
)

DOMAINS = ("a", "b")


def check_domains(shape_a: Sequence[int], shape_b: Sequence[int]) -> tuple[int, int, int]:
    """The two domains' channels and their common image size."""
    channels_a, size_a = check_image_shape(shape_a)
    channels_b, size_b = check_image_shape(shape_b)
    require(
        size_a == size_b,
        f"CoGAN's coupled nets need both domains at one image size (A {list(shape_a)}, "
        f"B {list(shape_b)}); set data.image_size",
    )
    return channels_a, channels_b, size_a


def check_sharing(shared_layers: int, layers: int) -> int:
    require(
        0 <= shared_layers < layers,
        f"model.share_layers must lie in 0..{layers - 1}: the coupled nets have {layers} "
        f"layers and each domain keeps at least one of its own (got {shared_layers})",
    )
    return shared_layers


def generator_layers(latent_dim: int, channels: int, image_size: int, width: int) -> list:
    """DCGAN's generator as a list of layers, z first, the image last."""
    sizes = size_chain(image_size)
    widths = [max(width * 4 // 2**i, width // 2) for i in range(len(sizes))]
    layers = [
        nn.Sequential(
            nn.Linear(latent_dim, widths[0] * 16, bias=False),
            nn.Unflatten(1, (widths[0], 4, 4)),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
    ]
    for i, (size_in, size_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        last = size_out == image_size
        kernel = 4 if size_out == 2 * size_in else 3  # 4 -> 7 needs a 3x3 kernel
        out_channels = channels if last else widths[i + 1]
        up = nn.ConvTranspose2d(widths[i], out_channels, kernel, 2, 1, bias=last)
        if last:
            layers.append(nn.Sequential(up, nn.Tanh()))
        else:
            layers.append(nn.Sequential(up, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)))
    return layers


def discriminator_layers(channels: int, image_size: int, width: int, norm: str) -> list:
    """DCGAN's discriminator as a list of layers, the image first, the score last."""
    require(norm in NORMS, f"norm must be one of {NORMS} (got {norm!r})")
    sizes = size_chain(image_size)[::-1]  # image_size ... 4
    layers = []
    in_channels = channels
    for i, (size_in, size_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        out_channels = min(width * 2**i, width * 4)
        kernel = 4 if size_in == 2 * size_out else 3
        conv = nn.Conv2d(in_channels, out_channels, kernel, 2, 1, bias=i == 0 or norm == "none")
        # no normalisation on the first layer (DCGAN)
        norm_layer = nn.Identity() if i == 0 else normalization(norm, out_channels, size_out)
        layers.append(nn.Sequential(conv, norm_layer, nn.LeakyReLU(0.2, inplace=True)))
        in_channels = out_channels
    layers.append(nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 16, 1)))
    return layers


class CoupledGenerators(nn.Module):
    """z -> (G_A(z), G_B(z)): G_A = own_a . shared, G_B = own_b . shared, where `shared` is
    the first `shared_layers` layers, one module run by both."""

    def __init__(
        self,
        latent_dim: int,
        shape_a: Sequence[int],
        shape_b: Sequence[int],
        shared_layers: int,
        width: int = 64,
    ) -> None:
        super().__init__()
        require(latent_dim >= 1, f"model.latent_dim must be >= 1 (got {latent_dim})")
        channels_a, channels_b, image_size = check_domains(shape_a, shape_b)
        layers_a = generator_layers(latent_dim, channels_a, image_size, width)
        layers_b = generator_layers(latent_dim, channels_b, image_size, width)
        self.shared_layers = check_sharing(shared_layers, len(layers_a))
        self.shared = nn.Sequential(*layers_a[:shared_layers])  # B's first layers go unused
        self.own = nn.ModuleDict(
            {"a": nn.Sequential(*layers_a[shared_layers:]),
             "b": nn.Sequential(*layers_b[shared_layers:])}
        )  # fmt: skip
        init_dcgan_weights(self)

    def domain(self, name: str) -> nn.Sequential:
        """One domain's generator, G_A ('a') or G_B ('b'): the shared module, then its own."""
        return nn.Sequential(self.shared, self.own[name])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        h = self.shared(z)  # once for both domains
        return self.own["a"](h), self.own["b"](h)


class CoupledDiscriminators(nn.Module):
    """(x, domain) -> one score per image: D_A = shared . own_a, D_B = shared . own_b, where
    `shared` is the last `shared_layers` layers, one module run by both."""

    def __init__(
        self,
        shape_a: Sequence[int],
        shape_b: Sequence[int],
        shared_layers: int,
        width: int = 64,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        channels_a, channels_b, image_size = check_domains(shape_a, shape_b)
        layers_a = discriminator_layers(channels_a, image_size, width, norm)
        layers_b = discriminator_layers(channels_b, image_size, width, norm)
        self.shared_layers = check_sharing(shared_layers, len(layers_a))
        own = len(layers_a) - shared_layers
        self.own = nn.ModuleDict(
            {"a": nn.Sequential(*layers_a[:own]), "b": nn.Sequential(*layers_b[:own])}
        )
        self.shared = nn.Sequential(*layers_a[own:])  # B's last layers go unused
        init_dcgan_weights(self)

    def domain(self, name: str) -> nn.Sequential:
        """One domain's discriminator, D_A ('a') or D_B ('b'): its own layers, then the shared."""
        return nn.Sequential(self.own[name], self.shared)

    def forward(self, x: Tensor, domain: str) -> Tensor:
        return self.shared(self.own[domain](x)).squeeze(1)
