"""Plain torch.nn networks. No Lightning in here.

Every generator is called as `G(z, labels=None)` and every discriminator as
`D(x, labels=None)`; conditional nets use the labels, the others ignore them. An
auxiliary-classifier D (ACGAN) returns `(score, class_logits)`.

`generator()` and `discriminator()` pick the family from the data's shape: MLPs for points,
DCGAN conv nets for images. That lets one model config (say `model=wgan_gp`) serve every
dataset; a config may still name a net class directly (cGAN's MLPs on images).
"""

from collections.abc import Sequence

from torch import nn

from genlab.errors import require
from genlab.nets.conv import DCGANDiscriminator, DCGANGenerator
from genlab.nets.mlp import MLPDiscriminator, MLPEncoder, MLPGenerator


def generator(
    latent_dim: int,
    out_shape: Sequence[int],
    num_classes: int = 0,
    hidden_dims: Sequence[int] = (128, 128, 128),
    width: int = 64,
) -> nn.Module:
    """MLP (hidden_dims) for points, DCGAN (width) for images."""
    if len(out_shape) == 1:
        return MLPGenerator(latent_dim, out_shape, hidden_dims, num_classes)
    return DCGANGenerator(latent_dim, out_shape, num_classes, width=width)


def discriminator(
    in_shape: Sequence[int],
    num_classes: int = 0,
    aux_classes: int = 0,
    hidden_dims: Sequence[int] = (128, 128, 128),
    width: int = 64,
    norm: str = "batch",
    twin_classes: int = 0,
    dropout: float = 0.0,
) -> nn.Module:
    """MLP (hidden_dims) for points, DCGAN (width, norm, dropout) for images."""
    if len(in_shape) == 1:
        require(
            aux_classes == 0,
            "the auxiliary classifier (ACGAN) needs image data; e.g. data=mnist_mini",
        )
        return MLPDiscriminator(in_shape, hidden_dims, num_classes)
    return DCGANDiscriminator(
        in_shape,
        num_classes,
        aux_classes,
        width=width,
        norm=norm,
        twin_classes=twin_classes,
        dropout=dropout,
    )


def encoder(
    in_shape: Sequence[int],
    out_features: int,
    num_classes: int = 0,
    kind: str = "mlp",
    hidden_dims: Sequence[int] = (400,),
    width: int = 32,
    norm: str = "batch",
) -> nn.Module:
    """A sample (and a label) -> `out_features` numbers: an MLP on the flattened sample
    (`kind=mlp`, hidden_dims) or DCGAN's strided convolutions (`kind=conv`, width, norm)."""
    require(kind in ("mlp", "conv"), f"model.net must be mlp or conv (got {kind!r})")
    if kind == "mlp":
        return MLPEncoder(in_shape, out_features, hidden_dims, num_classes, activation=nn.ReLU)
    return DCGANDiscriminator(
        in_shape, num_classes, width=width, norm=norm, out_features=out_features
    )


def decoder(
    latent_dim: int,
    out_shape: Sequence[int],
    num_classes: int = 0,
    kind: str = "mlp",
    hidden_dims: Sequence[int] = (400,),
    width: int = 32,
) -> nn.Module:
    """z (and a label) -> one unbounded output per pixel (logits or means): an MLP or
    DCGAN's transposed convolutions without the final tanh."""
    require(kind in ("mlp", "conv"), f"model.net must be mlp or conv (got {kind!r})")
    if kind == "mlp":
        return MLPGenerator(latent_dim, out_shape, hidden_dims, num_classes)
    return DCGANGenerator(latent_dim, out_shape, num_classes, width=width, output_activation="none")
