"""Plain torch.nn networks. No Lightning in here.

Every generator is called as `G(z, labels=None)` and every GAN discriminator as
`D(x, labels=None)`; conditional nets use the labels, the others ignore them. A GAN's
discriminator returns a `DiscriminatorOutput` (its scores, and class logits where it has a
class head).

`generator()` and `discriminator()` pick the family from the data's shape (`kind=auto`):
MLPs for points, DCGAN conv nets for images. That lets one model config (say
`model=wgan_gp`) serve every dataset; `kind=mlp` asks for the fully connected nets whatever
the data (cGAN's, on images).
"""

from collections.abc import Sequence

from torch import nn

from genlab.errors import require
from genlab.nets.conv import DCGANDiscriminator, DCGANEncoder, DCGANGenerator
from genlab.nets.mlp import MLPDiscriminator, MLPEncoder, MLPGenerator, init_normal, leaky_relu
from genlab.nets.outputs import DiscriminatorOutput
from genlab.nets.packing import PackedDiscriminator, packed_shape

KINDS = ("auto", "mlp", "dcgan")
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": leaky_relu}

__all__ = ["DiscriminatorOutput", "decoder", "discriminator", "encoder", "generator"]


def fully_connected(kind: str, shape: Sequence[int], role: str) -> bool:
    """Whether `kind` asks for an MLP for data of `shape`."""
    require(kind in KINDS, f"model.{role}.kind must be one of {', '.join(KINDS)} (got {kind!r})")
    require(
        not (kind == "dcgan" and len(shape) == 1),
        f"model.{role}.kind=dcgan makes convolutional nets for images, but the data holds "
        f"points of shape {list(shape)}; use model=gan (its nets are MLPs for points) or "
        f"image data (e.g. data=mnist_mini)",
    )
    return kind == "mlp" or (kind == "auto" and len(shape) == 1)


def generator(
    latent_dim: int,
    out_shape: Sequence[int],
    num_classes: int = 0,
    kind: str = "auto",
    hidden_dims: Sequence[int] = (128, 128, 128),
    width: int = 64,
    batch_norm: bool = False,
    activation: str = "relu",
    init_std: float | None = None,
) -> nn.Module:
    """An MLP (hidden_dims, batch_norm, activation, init_std: N(0, init_std) weights; tanh
    output for images) or DCGAN's generator (width)."""
    if fully_connected(kind, out_shape, "generator"):
        require(
            activation in ACTIVATIONS,
            f"model.generator.activation must be one of {', '.join(ACTIVATIONS)} "
            f"(got {activation!r})",
        )
        net = MLPGenerator(
            latent_dim,
            out_shape,
            hidden_dims,
            num_classes,
            activation=ACTIVATIONS[activation],
            output_activation=nn.Tanh if len(out_shape) > 1 else None,  # images in [-1, 1]
            batch_norm=batch_norm,
        )
        init_normal(net, init_std)
        return net
    return DCGANGenerator(latent_dim, out_shape, num_classes, width=width)


def discriminator(
    in_shape: Sequence[int],
    num_classes: int = 0,
    kind: str = "auto",
    aux_classes: int = 0,
    hidden_dims: Sequence[int] = (128, 128, 128),
    width: int = 64,
    norm: str = "batch",
    twin_classes: int = 0,
    dropout: float = 0.0,
    maxout: int = 0,
    init_std: float | None = None,
    pack: int = 1,
) -> nn.Module:
    """An MLP (hidden_dims, dropout, maxout pieces, init_std) or DCGAN's discriminator
    (width, norm, dropout, and the class heads `aux_classes` and `twin_classes`). With
    `pack=m` it judges m samples at once (PacGAN, `nets/packing.py`)."""
    check_packing(pack, num_classes, aux_classes)
    shape = packed_shape(in_shape, pack)
    if fully_connected(kind, in_shape, "discriminator"):
        require(
            aux_classes == 0 and twin_classes == 0,
            "the auxiliary classifier (ACGAN) needs image data and conv nets; e.g. data=mnist_mini",
        )
        net = MLPDiscriminator(shape, hidden_dims, num_classes, dropout=dropout, maxout=maxout)
        init_normal(net, init_std)
    else:
        require(
            maxout == 0,
            "maxout layers are for the MLP discriminator: drop model.discriminator.maxout",
        )
        net = DCGANDiscriminator(
            shape,
            num_classes,
            aux_classes,
            width=width,
            norm=norm,
            twin_classes=twin_classes,
            dropout=dropout,
        )
    return net if pack == 1 else PackedDiscriminator(net, pack)


def check_packing(pack: int, num_classes: int, aux_classes: int) -> None:
    require(pack >= 1, f"model.pack must be >= 1 (got {pack}); 1 judges samples one by one")
    require(
        pack == 1 or (num_classes == 0 and aux_classes == 0),
        "model.pack packs unconditional samples: a pack has no one label; use an "
        "unconditional model (e.g. model=dcgan) or model.pack=1",
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
    return DCGANEncoder(in_shape, out_features, num_classes, width=width, norm=norm)


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
