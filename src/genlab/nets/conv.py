"""DCGAN generator and discriminator (Radford et al. 2016), with class-conditional variants.

G: a linear layer to `width*4` x 4 x 4, then stride-2 transposed convolutions, BatchNorm and
ReLU on the inner layers, tanh at the output. D mirrors it with stride-2 convolutions and
LeakyReLU(0.2), normalised inner layers and a linear logit. Sizes halve from the image down
to 4 x 4 (odd sizes round up), so 28, 32 and 64 pixels all work, for 1 or 3 channels.

Conditioning: G concatenates a label embedding to z; D adds a projection term
<embed(y), h> to its score (Miyato & Koyama 2018). With `aux_classes`, D also gives class
logits from the same features (ACGAN), and with `twin_classes` a second head's logits
(TAC-GAN's twin classifier, Gong et al. 2019). D returns a `DiscriminatorOutput`.
"""

from collections.abc import Sequence
from math import ceil

import torch
from torch import Tensor, nn

from genlab.errors import check_num_classes, require
from genlab.nets.mlp import with_one_hot
from genlab.nets.outputs import DiscriminatorOutput

NORMS = ("batch", "instance", "layer", "none")


def size_chain(image_size: int) -> list[int]:
    """The feature-map sizes from 4 up to `image_size`: 28 -> [4, 7, 14, 28]."""
    sizes = [image_size]
    while sizes[-1] > 4:
        sizes.append(ceil(sizes[-1] / 2))
    return sizes[::-1]


def check_image_shape(shape: Sequence[int]) -> tuple[int, int]:
    require(len(shape) == 3, f"conv nets take images C x H x W, got data shape {list(shape)}")
    channels, height, width = shape
    require(
        height == width,
        f"conv nets take square images, got {height} x {width}; set data.image_size",
    )
    require(
        8 <= height <= 256 and size_chain(height)[0] == 4,
        f"image_size {height} is not supported by the conv nets (8..256); use data.image_size=28, 32 or 64",
    )
    return channels, height


def normalization(kind: str, channels: int, size: int) -> nn.Module:
    require(kind in NORMS, f"norm must be one of {NORMS} (got {kind!r})")
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.LayerNorm([channels, size, size])
    return nn.Identity()


def init_dcgan_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions and linear layers, N(1, 0.02) for norm scales (DCGAN paper)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif (
            isinstance(layer, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.LayerNorm))
            and layer.weight is not None
        ):
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)


class DCGANGenerator(nn.Module):
    def __init__(
        self,
        latent_dim: int,
        out_shape: Sequence[int],
        num_classes: int = 0,
        width: int = 64,
        embed_dim: int = 32,
        output_activation: str = "tanh",
    ) -> None:
        super().__init__()
        require(latent_dim >= 1, f"model.latent_dim must be >= 1 (got {latent_dim})")
        require(
            output_activation in ("tanh", "none"),
            f"output_activation must be tanh (images) or none (logits), got {output_activation!r}",
        )
        check_num_classes(num_classes)
        channels, image_size = check_image_shape(out_shape)
        self.out_shape = tuple(out_shape)
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        sizes = size_chain(image_size)
        widths = [max(width * 4 // 2**i, width // 2) for i in range(len(sizes))]
        self.project = nn.Sequential(
            nn.Linear(latent_dim + (embed_dim if num_classes else 0), widths[0] * 16, bias=False),
            nn.Unflatten(1, (widths[0], 4, 4)),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        for i, (size_in, size_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
            last = size_out == image_size
            kernel = 4 if size_out == 2 * size_in else 3  # 4 -> 7 needs a 3x3 kernel
            out_channels = channels if last else widths[i + 1]
            layers.append(nn.ConvTranspose2d(widths[i], out_channels, kernel, 2, 1, bias=last))
            if not last:
                layers += [nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
            elif output_activation == "tanh":
                layers.append(nn.Tanh())
        self.upsample = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            require(labels is not None, "this generator is class-conditional: pass labels")
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.upsample(self.project(z))


def dcgan_features(
    channels: int, image_size: int, width: int, norm: str, dropout: float = 0.0
) -> tuple[nn.Sequential, int]:
    """DCGAN's discriminator body: stride-2 convolutions from the image down to 4 x 4,
    LeakyReLU(0.2), normalised inner layers, flattened; and its number of features."""
    require(0 <= dropout < 1, f"model.discriminator.dropout must lie in [0, 1) (got {dropout})")
    require(norm in NORMS, f"norm must be one of {NORMS} (got {norm!r})")
    sizes = size_chain(image_size)[::-1]  # image_size ... 4
    layers: list[nn.Module] = []
    in_channels = channels
    for i, (size_in, size_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        out_channels = min(width * 2**i, width * 4)
        kernel = 4 if size_in == 2 * size_out else 3
        layers.append(
            nn.Conv2d(in_channels, out_channels, kernel, 2, 1, bias=i == 0 or norm == "none")
        )
        if i > 0:  # no normalisation on the first layer (DCGAN)
            layers.append(normalization(norm, out_channels, size_out))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        if dropout:
            layers.append(nn.Dropout2d(dropout))
        in_channels = out_channels
    return nn.Sequential(*layers, nn.Flatten()), in_channels * 16


class DCGANDiscriminator(nn.Module):
    """An image (and a label) -> a score; the label enters by projection. With
    `aux_classes` also class logits (ACGAN), with `twin_classes` a twin head's (TAC-GAN)."""

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int = 0,
        aux_classes: int = 0,
        width: int = 64,
        norm: str = "batch",
        twin_classes: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels, image_size = check_image_shape(in_shape)
        check_num_classes(num_classes)
        require(not twin_classes or aux_classes, "a twin classifier needs the auxiliary one")
        self.features, feature_dim = dcgan_features(channels, image_size, width, norm, dropout)
        self.score = nn.Linear(feature_dim, 1)
        self.projection = nn.Embedding(num_classes, feature_dim) if num_classes else None
        self.classifier = nn.Linear(feature_dim, aux_classes) if aux_classes else None
        self.twin_classifier = nn.Linear(feature_dim, twin_classes) if twin_classes else None
        init_dcgan_weights(self)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> DiscriminatorOutput:
        h = self.features(x)
        score = self.score(h).squeeze(1)
        if self.projection is not None:
            require(labels is not None, "this discriminator is class-conditional: pass labels")
            score = score + (self.projection(labels) * h).sum(dim=1)
        return DiscriminatorOutput(
            score,
            None if self.classifier is None else self.classifier(h),
            None if self.twin_classifier is None else self.twin_classifier(h),
        )


class DCGANEncoder(nn.Module):
    """An image (and a label) -> `out_features` numbers, through DCGAN's discriminator
    body; the one-hot label joins the features before the last layer (a VAE's encoder)."""

    def __init__(
        self,
        in_shape: Sequence[int],
        out_features: int,
        num_classes: int = 0,
        width: int = 64,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        channels, image_size = check_image_shape(in_shape)
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.features, feature_dim = dcgan_features(channels, image_size, width, norm)
        self.head = nn.Linear(feature_dim + num_classes, out_features)
        init_dcgan_weights(self)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.head(with_one_hot(self.features(x), labels, self.num_classes))
