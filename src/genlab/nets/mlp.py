"""Fully connected generator and discriminator, optionally class-conditional.

The label enters as a one-hot vector concatenated to the noise (G) or to the flattened
sample (D), as in Mirza & Osindero's cGAN.
"""

from collections.abc import Callable, Sequence
from math import prod

import torch
from torch import Tensor, nn

from genlab.errors import check_num_classes, require
from genlab.nets.outputs import DiscriminatorOutput


def mlp(
    in_features: int,
    hidden_dims: Sequence[int],
    out_features: int,
    activation: Callable[[], nn.Module],
    batch_norm: bool = False,
    dropout: float = 0.0,
    maxout: int = 0,
) -> nn.Sequential:
    """Linear layers with `activation` (after optional BatchNorm, before optional dropout)
    between them and none after the last one. With `maxout=k`, each hidden layer is a
    maxout layer instead (Goodfellow et al. 2013): k linear pieces per unit, their maximum
    as the unit's output, and no other activation."""
    require(maxout >= 0, f"model.discriminator.maxout must be >= 0 (got {maxout}); 0: no maxout")
    layers: list[nn.Module] = []
    width = in_features
    for hidden in hidden_dims:
        layers.append(nn.Linear(width, hidden * max(maxout, 1)))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden * max(maxout, 1)))
        layers.append(Maxout(maxout) if maxout else activation())
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class Maxout(nn.Module):
    """The largest of each unit's `pieces` inputs: (n, units * pieces) -> (n, units)."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, x: Tensor) -> Tensor:
        return x.unflatten(1, (-1, self.pieces)).amax(dim=2)


def init_normal(module: nn.Module, std: float | None) -> None:
    """Linear weights drawn from N(0, std), biases zero (`std` None: torch's defaults)."""
    if std is None:
        return
    require(std > 0, f"init_std must be > 0 or null (got {std})")
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def with_one_hot(x: Tensor, labels: Tensor | None, num_classes: int) -> Tensor:
    """Concatenate the one-hot labels to `x` for conditional nets; pass `x` through otherwise."""
    if num_classes == 0:
        return x
    require(
        labels is not None, "this net is class-conditional: pass labels (model.num_classes > 0)"
    )
    # F.one_hot checks the labels' range by reading their min and max back on a CPU, twice
    # per call; scatter_ rejects a label out of range all the same
    one_hot = x.new_zeros(len(labels), num_classes).scatter_(1, labels.view(-1, 1), 1.0)
    return torch.cat([x, one_hot], dim=1)


def _check_sizes(latent_dim: int, hidden_dims: Sequence[int], num_classes: int) -> None:
    require(latent_dim >= 1, f"model.latent_dim must be >= 1 (got {latent_dim})")
    require(
        all(h >= 1 for h in hidden_dims),
        f"hidden sizes must be >= 1 (got {list(hidden_dims)}); e.g. model.generator.hidden_dims=[128,128]",
    )
    check_num_classes(num_classes)


class MLPGenerator(nn.Module):
    """z (and a label) -> a sample of shape `out_shape`: points (D,) or images (C, H, W)."""

    def __init__(
        self,
        latent_dim: int,
        out_shape: Sequence[int],
        hidden_dims: Sequence[int] = (128, 128, 128),
        num_classes: int = 0,
        activation: Callable[[], nn.Module] = nn.ReLU,
        output_activation: Callable[[], nn.Module] | None = None,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        out_shape = tuple(out_shape) if isinstance(out_shape, Sequence) else (int(out_shape),)
        _check_sizes(latent_dim, hidden_dims, num_classes)
        require(
            len(out_shape) > 0 and all(s >= 1 for s in out_shape),
            f"the data shape {list(out_shape)} cannot be generated: every size must be >= 1",
        )
        self.latent_dim = latent_dim
        self.out_shape = out_shape
        self.num_classes = num_classes
        self.net = mlp(
            latent_dim + num_classes,
            hidden_dims,
            prod(out_shape),
            activation,
            batch_norm=batch_norm,
        )
        self.output_activation = output_activation() if output_activation else nn.Identity()

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        x = self.net(with_one_hot(z, labels, self.num_classes))
        return self.output_activation(x).view(-1, *self.out_shape)


def leaky_relu() -> nn.Module:
    return nn.LeakyReLU(0.2)


def sample_mlp(
    in_shape: Sequence[int] | int,
    out_features: int,
    hidden_dims: Sequence[int],
    num_classes: int,
    activation: Callable[[], nn.Module],
    dropout: float,
    maxout: int = 0,
) -> nn.Sequential:
    """The MLP of the encoders and discriminators: a flattened sample of `in_shape` and its
    one-hot label (`with_one_hot`) in, `out_features` numbers out."""
    in_shape = tuple(in_shape) if isinstance(in_shape, Sequence) else (int(in_shape),)
    _check_sizes(1, hidden_dims, num_classes)
    return mlp(
        prod(in_shape) + num_classes, hidden_dims, out_features, activation, dropout=dropout,
        maxout=maxout,
    )  # fmt: skip


class MLPEncoder(nn.Module):
    """A sample (and a label) -> `out_features` numbers: a VAE's encoder."""

    def __init__(
        self,
        in_shape: Sequence[int],
        out_features: int,
        hidden_dims: Sequence[int] = (128, 128, 128),
        num_classes: int = 0,
        activation: Callable[[], nn.Module] = leaky_relu,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.net = sample_mlp(in_shape, out_features, hidden_dims, num_classes, activation, dropout)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(with_one_hot(x.flatten(1), labels, self.num_classes))


class MLPDiscriminator(nn.Module):
    """A sample (and a label) -> one unnormalised score per sample; LeakyReLU(0.2) layers,
    or maxout layers of `maxout` pieces (PacGAN's 2-D discriminator: 3 x 200 units, 5
    pieces)."""

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden_dims: Sequence[int] = (128, 128, 128),
        num_classes: int = 0,
        activation: Callable[[], nn.Module] = leaky_relu,
        dropout: float = 0.0,
        maxout: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.net = sample_mlp(in_shape, 1, hidden_dims, num_classes, activation, dropout, maxout)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> DiscriminatorOutput:
        score = self.net(with_one_hot(x.flatten(1), labels, self.num_classes))
        return DiscriminatorOutput(score.squeeze(1))
